"""Smoke tests of the benchmark code path (inrcodec.bench): tiny data, a tiny untrained model,
only numcodecs core peers required. Checks that the CSV rows are consistent with the bytes and
the decoded values, not how fast or how good anything is."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import global_lat_lon, smooth_field

from inrcodec import bench
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
        assert r["psnr_db"] == pytest.approx(20 * np.log10((float(x.max()) - float(x.min())) / r["rmse"]), rel=1e-9)
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


def test_error_metrics_weighting_and_spectrum():
    lat, _ = global_lat_lon(8, 16)
    x = smooth_field(2, 8, 16)
    m = bench.error_metrics(x, x.copy(), lat)
    assert m["rmse"] == 0 and m["rmse_coslat"] == 0 and m["hf_power_ratio"] == pytest.approx(1.0)
    polar, equatorial = x.copy(), x.copy()
    polar[:, 0] += 1.0  # the row nearest the south pole
    equatorial[:, 4] += 1.0  # a row next to the equator
    mp, me = bench.error_metrics(x, polar, lat), bench.error_metrics(x, equatorial, lat)
    assert mp["rmse"] == pytest.approx(me["rmse"])  # same unweighted error
    assert mp["rmse_coslat"] < me["rmse_coslat"]  # the polar row weighs less
    w = np.cos(np.deg2rad(lat))
    assert me["rmse_coslat"] == pytest.approx(np.sqrt(w[4] / w.sum()))
    smooth = bench.error_metrics(x, np.repeat(x.mean(axis=-1, keepdims=True), 16, axis=-1), lat)
    assert smooth["hf_power_ratio"] == pytest.approx(0.0, abs=1e-12)  # zonal means: no zonal power left


def test_interpolation_and_comparison():
    rows = [
        {"codec": "inrcodec", "label": "inr", "bits_per_value": 0.5, "rmse": 1.0, "written_bytes": 1, "compression_ratio": 64},
        {"codec": "p", "label": "P", "bits_per_value": 0.25, "rmse": 4.0, "written_bytes": 1, "compression_ratio": 128},
        {"codec": "p", "label": "P", "bits_per_value": 1.0, "rmse": 1.0, "written_bytes": 1, "compression_ratio": 32},
    ]
    assert bench.interpolate_rmse(rows[1:], 0.5) == pytest.approx(2.0)  # log-log midpoint
    assert bench.interpolate_rmse(rows[1:], 2.0) is None  # outside the peer's sweep
    (c,) = bench.comparison(rows)
    assert c["peers"] == {"P": pytest.approx(2.0)}


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
