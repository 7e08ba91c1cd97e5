"""Smoke tests of the benchmark code path (inrcodec.bench): tiny data, a tiny untrained model,
only numcodecs core peers required. Checks that the CSV rows are consistent with the bytes and
the decoded values, not how fast or how good anything is."""

from __future__ import annotations


import numpy as np
import pytest
from conftest import global_lat_lon, smooth_field
from helpers import REPO

from inrcodec import bench, metrics
from inrcodec.cli import main as cli_main
from inrcodec.codec import COINppCodec
from inrcodec.recipes import RecipeData


@pytest.fixture()
def tiny_data() -> RecipeData:
    lat, lon = global_lat_lon()
    items = smooth_field(5).astype(np.float32)
    return RecipeData(items[:2], items[2:3], items[3:], lat=lat, lon=lon, units="K", source="smooth_field")


def _rmse(a, b) -> float:
    return float(np.sqrt(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)))


def test_bench_rows_consistent_with_bytes(tiny_data, tiny_model, tmp_path):
    res = bench.run_bench(tiny_data, models=[tiny_model], bits=[4, 6], peers=["bitround-zstd"], quick=True,
                          out=tmp_path)
    rows = bench.read_csv(res.files["csv"])
    assert [r["codec"] for r in rows] == ["inrcodec"] * 2 + ["bitround-zstd"] * 2
    x = np.ascontiguousarray(tiny_data.test, dtype=np.float32)
    for r in rows:
        assert r["n_values"] == x.size
        assert r["raw_bytes"] == 4 * x.size
        assert r["compression_ratio"] == pytest.approx(r["raw_bytes"] / r["written_bytes"])
        assert r["bits_per_value"] == pytest.approx(8 * r["written_bytes"] / r["n_values"])
        assert r["psnr_data_range_db"] == pytest.approx(20 * np.log10((float(x.max()) - float(x.min())) / r["rmse"]), rel=1e-9)
        assert r["max_abs_error"] >= r["rmse"] > 0
        assert r["encode_s"] > 0 and r["decode_s"] > 0
        assert r["encode_values_per_s"] == pytest.approx(r["n_values"] / r["encode_s"])
        assert np.isfinite(r["rmse_coslat"]) and np.isfinite(r["hf_power_ratio"])

    # recompute from the codecs themselves: same bytes, same errors
    for r, b in zip(rows[:2], (4, 6)):
        codec = COINppCodec(tiny_model, bits=b, inner_steps=tiny_model.encode_steps, lat=tiny_data.lat, lon=tiny_data.lon)
        enc = codec.encode(x)
        assert r["bits"] == b and r["written_bytes"] == len(enc)
        assert r["rmse"] == pytest.approx(_rmse(codec.decode(enc), x), rel=1e-5)
        assert r["model_bytes"] == len(tiny_model.to_bytes())
    from numcodecs import BitRound, Zstd

    for r, k in zip(rows[2:], (2, 8)):
        enc = Zstd(level=19).encode(BitRound(keepbits=k).encode(x))
        dec = np.frombuffer(BitRound(keepbits=k).decode(Zstd(level=19).decode(enc)), np.float32).reshape(x.shape)
        assert r["written_bytes"] == len(enc)
        assert r["rmse"] == pytest.approx(_rmse(dec, x), rel=1e-9)
        assert r["max_abs_error"] == pytest.approx(float(np.max(np.abs(dec.astype(np.float64) - x))), rel=1e-9)

    for key in ("rd_png", "rd_coslat_png", "spectrum_png", "md"):
        assert (tmp_path / res.files[key].split("/")[-1]).stat().st_size > 0
    md = (tmp_path / "bench_custom.md").read_text()
    assert md.count("| inrcodec latent 8 |") == 2 and md.count("| BitRound + Zstd | keepbits=") == 2

    back = bench.load_result(tmp_path, "custom")  # what write_outputs wrote reads back
    assert [r["written_bytes"] for r in back.rows] == [r["written_bytes"] for r in res.rows]
    np.testing.assert_allclose(back.original_spectrum, res.original_spectrum)
    np.testing.assert_allclose(back.rows[-1]["_spectrum"], res.rows[-1]["_spectrum"])


def test_error_metrics_weighting_and_spectrum():
    lat, _ = global_lat_lon(8, 16)
    x = smooth_field(2, 8, 16)
    m = metrics.error_metrics(x, x.copy(), lat)
    assert m["rmse"] == 0 and m["rmse_coslat"] == 0 and m["hf_power_ratio"] == pytest.approx(1.0)
    polar, equatorial = x.copy(), x.copy()
    polar[:, 0] += 1.0  # the row nearest the south pole
    equatorial[:, 4] += 1.0  # a row next to the equator
    mp, me = metrics.error_metrics(x, polar, lat), metrics.error_metrics(x, equatorial, lat)
    assert mp["rmse"] == pytest.approx(me["rmse"])  # same unweighted error
    assert mp["rmse_coslat"] < me["rmse_coslat"]  # the polar row weighs less
    w = np.cos(np.deg2rad(lat))
    assert me["rmse_coslat"] == pytest.approx(np.sqrt(w[4] / w.sum()))
    smooth = metrics.error_metrics(x, np.repeat(x.mean(axis=-1, keepdims=True), 16, axis=-1), lat)
    assert smooth["hf_power_ratio"] == pytest.approx(0.0, abs=1e-12)  # zonal means: no zonal power left


def test_psnr_is_named_by_its_peak_and_skips_missing_cells():
    orig = np.array([[0.0, 5.0], [10.0, np.nan]])
    rec = orig + 0.1
    rec[1, 1] = 1e6  # under a missing original: not an error
    assert metrics.rmse(orig, rec) == pytest.approx(0.1)
    assert metrics.psnr_data_range(orig, rec) == pytest.approx(40.0)  # peak 10
    assert metrics.psnr_training_range(orig, rec, 20.0) == pytest.approx(20 * np.log10(200.0))
    # the training curves' PSNR: the same errors in normalised units (training range -> [0, 1])
    mse_normalised = (metrics.rmse(orig, rec) / 20.0) ** 2
    assert metrics.psnr_normalised(mse_normalised) == pytest.approx(metrics.psnr_training_range(orig, rec, 20.0))
    assert metrics.psnr_data_range(orig, orig) == float("inf")


def _timing_rows(inr_encode_s: float, fourier_encode_s: float) -> list[dict]:
    row = {"dataset": "d", "params": "{}", "n_values": 100, "raw_bytes": 400, "written_bytes": 10,
           "compression_ratio": 40.0, "bits_per_value": 0.8, "max_abs_error": 3.0, "psnr_data_range_db": 20.0,
           "rmse_coslat": float("nan"), "hf_power_ratio": 1.0, "decode_s": 0.1, "note": ""}
    return [
        {**row, "codec": "inrcodec", "label": "inrcodec latent 8", "setting": "m 4 bits", "rmse": 1.0,
         "encode_s": inr_encode_s, "encode_values_per_s": 100 / inr_encode_s},
        {**row, "codec": "fourier-network", "label": "Fourier-feature network", "setting": "fourier_features=8",
         "rmse": 2.0, "encode_s": fourier_encode_s, "encode_values_per_s": 100 / fourier_encode_s},
    ]


@pytest.mark.parametrize("inr_s,fourier_s,says", [(2.0, 0.1, "inrcodec 20x slower"), (0.1, 0.5, "inrcodec 5.0x faster")])
def test_markdown_says_whether_inrcodec_encodes_slower_or_faster(inr_s, fourier_s, says):
    info = {**bench.machine_info(), "test_shape": [1, 10, 10], "source": "test", "repeats": 1, "data_range": 10.0,
            "units": "K", "lat_lon": False}
    md = bench.markdown(bench.BenchResult("d", _timing_rows(inr_s, fourier_s), {}, info, np.zeros(3)))
    (line,) = [ln for ln in md.splitlines() if ln.startswith("- fourier_features=8")]
    assert line.endswith(says)
    (c,) = bench.fourier_comparison(_timing_rows(inr_s, fourier_s))
    assert c["encode_time_ratio"] == pytest.approx(inr_s / fourier_s)


def test_csvs_written_before_psnr_was_named_still_read(tmp_path):
    old = tmp_path / "bench_old.csv"
    old.write_text("dataset,codec,rmse,psnr_db,note\nera5,sz3,0.5,31.5,\n")
    (row,) = bench.read_csv(old)
    assert row["psnr_data_range_db"] == 31.5 and "psnr_db" not in row
    committed = bench.read_csv(REPO / "docs" / "img" / "bench_era5.csv")
    assert committed and all(r["psnr_data_range_db"] > 0 for r in committed if r["written_bytes"])


def test_interpolation_and_comparison():
    rows = [
        {"codec": "inrcodec", "label": "inr", "bits_per_value": 0.5, "rmse": 1.0, "written_bytes": 1,
         "compression_ratio": 64, "max_abs_error": 9.0, "rmse_coslat": 1.0},
        {"codec": "p", "label": "P", "bits_per_value": 0.25, "rmse": 4.0, "written_bytes": 1,
         "compression_ratio": 128, "max_abs_error": 8.0, "rmse_coslat": 4.0},
        {"codec": "p", "label": "P", "bits_per_value": 1.0, "rmse": 1.0, "written_bytes": 1,
         "compression_ratio": 32, "max_abs_error": 2.0, "rmse_coslat": 1.0},
    ]
    assert bench.interpolate_rmse(rows[1:], 0.5) == pytest.approx(2.0)  # log-log midpoint
    assert bench.interpolate_rmse(rows[1:], 2.0) is None  # outside the peer's sweep
    assert bench.interpolate_max(rows[1:], 0.5) == pytest.approx(4.0)
    assert bench.interpolate_ratio(rows[1:], 2.0) == pytest.approx(64.0)  # ratio at equal (cos) RMSE
    assert bench.interpolate_ratio(rows[1:], 0.5) is None
    (c,) = bench.comparison(rows)
    assert c["peers"] == {"P": pytest.approx(2.0)} and c["max"] == {"P": pytest.approx(4.0)}


def test_every_markdown_table_shows_max_abs_error_for_every_codec():
    rows = _timing_rows(1.0, 1.0)
    info = {**bench.machine_info(), "test_shape": [1, 10, 10], "source": "test", "repeats": 1, "data_range": 10.0,
            "units": "K", "lat_lon": False}
    md = bench.markdown(bench.BenchResult("d", rows + [{**rows[1], "bits_per_value": 1.6, "rmse": 0.5,
                                                         "max_abs_error": 1.5}], {}, info, np.zeros(3)))
    tables = [ln for ln in md.splitlines() if ln.startswith("| ") and "max abs err" in ln]
    assert len(tables) == 2  # the points and the peers at inrcodec's rate
    assert "| m 4 bits | 40x | 1 (3) | 2 (3) |" in md  # the peer's point at inrcodec's rate


def test_chunked_peer_counts_each_chunk_on_its_own(tiny_model):
    from inrcodec.bench.measure import InrcodecPeer

    x = smooth_field(5, seed=2).astype("f4")
    codec = COINppCodec(tiny_model, bits=4, inner_steps=1, assume_global_grid=True)
    chunked = bench.ChunkedPeer(InrcodecPeer(codec), 2)
    data = chunked.encode(x)
    assert len(data) == sum(len(codec.encode(x[i:i + 2])) for i in (0, 2, 4))  # chunks of 2, 2, 1 items
    np.testing.assert_array_equal(chunked.decode(data, x), np.concatenate([codec.decode(codec.encode(x[i:i + 2]))
                                                                           for i in (0, 2, 4)]))


@pytest.mark.filterwarnings("ignore::inrcodec.errors.TargetNotMetWarning")  # the tiny model misses 30x on some chunks
def test_target_ratio_rows_are_the_rate_controlled_codec(tiny_data, tiny_model, tmp_path):
    """``--target-ratio``: one row per model and ratio, coded with ``target_ratio`` (the width, and
    with the default residual coder the chunk mode, chosen per chunk), none of them over budget."""
    res = bench.run_bench(tiny_data, models=[tiny_model], bits=[], target_ratios=[8, 30], peers=[], out=tmp_path)
    rows = bench.read_csv(res.files["csv"])
    assert [r["setting"].split()[-1] for r in rows] == ["target_ratio=8.0", "target_ratio=30.0"]
    x = np.ascontiguousarray(tiny_data.test, dtype=np.float32)
    for r, ratio in zip(rows, (8, 30)):
        assert r["bits"] in (None, "") and r["compression_ratio"] >= ratio
        codec = COINppCodec(tiny_model, target_ratio=ratio, lat=tiny_data.lat, lon=tiny_data.lon)
        enc = codec.encode(x)
        assert r["written_bytes"] == len(enc)
        assert r["rmse"] == pytest.approx(_rmse(codec.decode(enc), x), rel=1e-5)
    assert rows[0]["rmse"] < rows[1]["rmse"]  # more bytes, less error


def test_validation_split_is_measured_in_place_of_the_test_split(tiny_data, tiny_model):
    res = bench.run_bench(tiny_data, models=[tiny_model], bits=[4], peers=["bitround-zstd"], quick=True,
                          split="validation", name="smooth")
    assert res.dataset == "smooth-validation" and res.info["test_shape"] == list(tiny_data.val.shape)
    codec = COINppCodec(tiny_model, bits=4, lat=tiny_data.lat, lon=tiny_data.lon)
    assert res.rows[0]["written_bytes"] == len(codec.encode(np.ascontiguousarray(tiny_data.val, dtype=np.float32)))
    with pytest.raises(ValueError, match="split"):
        bench.run_bench(tiny_data, models=[tiny_model], split="train")


def test_missing_peer_is_reported_and_others_run(monkeypatch, tmp_path, tiny_model_dir, capsys):
    fake = bench.Peer("fake-peer", "Fake", ("no_such_module_for_inrcodec_tests",), "fake-peer-package",
                      make=None, sweep=lambda x: [{}], quick=lambda x: [{}])
    monkeypatch.setitem(bench.PEERS, "fake-peer", fake)
    ok, missing = bench.available_peers(["bitround-zstd", "fake-peer"])
    assert [p.name for p in ok] == ["bitround-zstd"]
    assert "pip install fake-peer-package" in missing["fake-peer"]

    rc = cli_main(["bench", "era5", "--model", tiny_model_dir, "--bits", "3", "--quick", "--max-items", "1",
                   "--peers", "bitround-zstd", "fake-peer", "--out", str(tmp_path), "--quiet"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "fake-peer" in err and "pip install fake-peer-package" in err
    rows = bench.read_csv(tmp_path / "bench_era5.csv")
    assert [r["codec"] for r in rows] == ["inrcodec", "bitround-zstd", "bitround-zstd"]
    assert all(r["n_values"] == 96 * 192 for r in rows)
    assert "Peers not installed" in (tmp_path / "bench_era5.md").read_text()


def test_heldout_rd_encodes_the_split_chunk_by_chunk(tmp_path, tiny_model_dir, monkeypatch, capsys):
    """benchmarks/heldout_rd.py on a file laid out like make_heldout_weather.py's: only the split's
    members, chunks of one member's times, real chunk bytes, the equal-RMSE table."""
    import sys

    import xarray as xr

    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import heldout_rd

    lat, lon = global_lat_lon()
    values = smooth_field(3 * 4).astype("f4").reshape(3, 4, *lat.shape, *lon.shape)
    ds = xr.Dataset({"t850": (("member", "time", "lat", "lon"), values)},
                    coords={"member": [0, 1, 2], "time": np.arange(4), "lat": lat, "lon": lon,
                            "split": ("member", ["val", "test", "test"])})
    ds.to_netcdf(tmp_path / "w.nc")
    monkeypatch.setattr(sys, "argv", ["heldout_rd.py"])
    assert heldout_rd.main(["--data", str(tmp_path / "w.nc"), "--split", "test", "--chunk", "2", "--model",
                            tiny_model_dir, "--bits", "3", "--codec-option", "inner_steps=1", "--peers", "sz3",
                            "--out", str(tmp_path / "out")]) == 0
    rows = bench.read_csv(tmp_path / "out" / "heldout_t850_test_native_inner_steps1.csv")
    inr = rows[0]
    assert inr["codec"] == "inrcodec" and inr["n_values"] == 2 * 4 * lat.size * lon.size
    from inrcodec.codec import COINppCodec

    codec = COINppCodec(tiny_model_dir, bits=3, inner_steps=1, lat=lat, lon=lon)
    chunks = values[1:].reshape(-1, lat.size, lon.size)
    assert inr["written_bytes"] == sum(len(codec.encode(chunks[i:i + 2])) for i in range(0, 8, 2))
    from inrcodec.bench.peers import available_peers

    out = capsys.readouterr().out
    if available_peers(["sz3"])[0]:  # the equal-RMSE table needs a peer (`pip install ".[bench]"`)
        assert "Ratio at equal cos RMSE" in out
    else:
        assert "peer sz3 not installed" in out and "Ratio at equal cos RMSE" not in out


@pytest.mark.parametrize("argv", [
    ["era5"],
    ["mri", "--model", "a", "b c", "--bits", "3", "--peers", "sz3-3d", "--data", "x y.nii.gz", "--variable", "t",
     "--max-items", "3", "--threads", "2", "--repeats", "3", "--quick", "--out", "o"],
    ["fashion", "--model", "m", "--bits", "--target-ratio", "16", "32.5", "--split", "validation"],
    ["era5", "--model", "m", "--codec-option", "max_abs_error=0.5", "--codec-option", "residual_coder=none"],
])
def test_the_written_bench_command_line_parses_back_to_the_same_run(argv):
    """``inrcodec bench`` declares its flags once (bench/cli.py): the command line written into a
    summary is rebuilt from that declaration and reproduces the run."""
    import argparse
    import shlex

    from inrcodec.bench import cli as bench_cli

    parser = argparse.ArgumentParser()
    bench_cli.add_arguments(parser)
    args = parser.parse_args([*argv, "--quiet"])
    line = bench_cli.command_line(args)
    assert line.startswith("inrcodec bench ") and "--quiet" not in line
    assert vars(parser.parse_args([*shlex.split(line)[2:], "--quiet"])) == vars(args)


def test_sperr_rate_peer_spends_the_bits_it_is_given():
    """The "sperr-bpp" peer is SPERR's rate mode (what inrcodec's wavelet chunks use), next to the
    point-wise error "sperr": its bytes follow bpp, and more bits give a smaller error."""
    pytest.importorskip("numcodecs_wasm_sperr")
    x = smooth_field(4, seed=3).astype("f4")
    peer = bench.PEERS["sperr-bpp"]
    assert "sperr-bpp" in bench.SCIENTIFIC_PEERS and "sperr" in bench.SCIENTIFIC_PEERS
    sizes, errors = [], []
    for params in ({"bpp": 0.5}, {"bpp": 2.0}, {"bpp": 8.0}):
        codec = peer.make(params, x)
        data = codec.encode(x)
        y = codec.decode(data, x)
        assert y.shape == x.shape and np.isfinite(y).all()
        sizes.append(len(data))
        errors.append(_rmse(x, y))
    assert sizes[0] < sizes[1] < sizes[2] and sizes[2] <= 8.0 * x.size / 8 + 1024
    assert errors[0] > errors[1] > errors[2]


def test_codec_options_reach_every_inrcodec_row(tiny_data, tiny_model, tmp_path):
    """``inrcodec bench --codec-option OPTION=VALUE`` (issue 34: what the benchmark scripts re-implemented):
    every inrcodec row is the codec with those options, e.g. an error bound."""
    from inrcodec.bench import cli as bench_cli

    options = bench_cli.codec_options(["max_abs_error=0.5", "residual-coder=none"])
    assert options == {"max_abs_error": 0.5, "residual_coder": "none"}
    res = bench.run_bench(tiny_data, models=[tiny_model], bits=[4], peers=[], codec_options=options, out=tmp_path)
    (row,) = bench.read_csv(res.files["csv"])
    x = np.ascontiguousarray(tiny_data.test, dtype=np.float32)
    codec = COINppCodec(tiny_model, bits=4, lat=tiny_data.lat, lon=tiny_data.lon, **options)
    enc = codec.encode(x)
    assert row["written_bytes"] == len(enc) and row["max_abs_error"] <= 0.5
    with pytest.raises(ValueError, match="OPTION=VALUE"):
        bench_cli.codec_options(["max_abs_error"])

