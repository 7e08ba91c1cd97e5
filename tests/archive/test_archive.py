"""Archive compression (inrcodec.archive + the compress/decompress/info sub-commands) on real data."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle

import numpy as np
import pytest
import xarray as xr


from conftest import build_spherical_model, global_lat_lon, smooth_field
from helpers import Stop, file_hashes, stop_after_first_region
from inrcodec import archive
from inrcodec.models import modelstore
from inrcodec.cli import main as cli_main
from inrcodec.codec import COINppCodec
from inrcodec.datasets import embedded_sample
from inrcodec.settings import CodecSettings

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
VARS = ["tas", "tas_lagged"]
KW = dict(variables=VARS, chunks="time=2", inner_steps=2, progress=False)


@pytest.fixture(scope="module")
def archive_input(tmp_path_factory):
    """6 months of real near-surface temperature (96 x 192) + a second float variable, an int8
    mask, an int32 series, a CF-packed int16 variable, time bounds and attributes."""
    d = tmp_path_factory.mktemp("archive")
    tas = embedded_sample("tas").isel(time=slice(0, 6))
    ds = xr.Dataset({"tas": tas, "tas_lagged": (tas.roll(time=1, roll_coords=False) + 1.5).astype("f4")})
    ds["tas_lagged"].attrs = {"units": "K", "long_name": "lagged temperature"}
    ds["land"] = (("lat", "lon"), (tas.isel(time=0).values > 280).astype("i1"), {"flag_values": [0, 1]})
    ds["count"] = (("time",), np.arange(6, dtype="i4") * 7)
    ds["packed"] = (("time", "lat", "lon"), tas.values.astype("f8"))
    ds["time_bnds"] = (("time", "bnds"), np.stack([np.arange(6.0), np.arange(6.0) + 1], 1))
    ds.attrs = {"title": "inrcodec archive test", "history": "made by tests/archive/test_archive.py"}
    enc = {"packed": {"dtype": "i2", "scale_factor": 0.01, "add_offset": 250.0, "_FillValue": -32768},
           "tas": {"zlib": True, "chunksizes": (1, 96, 192)}}
    path = d / "in.nc"
    ds.to_netcdf(path, encoding=enc)
    model = d / "model"
    build_spherical_model().save(model)
    return str(path), str(model), d


def _check_lossless(inp, store):
    a = xr.open_dataset(inp)
    b = xr.open_zarr(store, consolidated=False)
    assert a.attrs == b.attrs
    for v in a.variables:
        np.testing.assert_equal(dict(a[v].attrs), dict(b[v].attrs), err_msg=v)
        if v not in VARS:
            assert a[v].identical(b[v]), v
            assert a[v].dtype == b[v].dtype
    # CF packing of the copied variable survives (stored int16 with scale/offset)
    assert b.packed.encoding["dtype"] == np.dtype("i2")
    assert b.packed.encoding["scale_factor"] == 0.01


def test_threads_and_localcluster_agree(archive_input):
    inp, model, d = archive_input
    rep = archive.compress_dataset(inp, d / "threads.zarr", model, overwrite=True, **KW)
    assert set(rep["variables"]) == set(VARS)
    for v in VARS:
        r = rep["variables"][v]
        assert r["chunk_ratio"] > 10 and np.isfinite(r["rmse"]) and r["max_abs_error"] >= r["rmse"]
    assert "packed" in rep["copied"] and "land" in rep["copied"]
    _check_lossless(inp, d / "threads.zarr")
    rep2 = archive.compress_dataset(inp, d / "cluster.zarr", model, overwrite=True, workers=2, **KW)
    _check_lossless(inp, d / "cluster.zarr")
    a, b = archive.open_store(d / "threads.zarr"), archive.open_store(d / "cluster.zarr")
    for v in VARS:
        np.testing.assert_array_equal(a[v].values, b[v].values)
        assert rep2["variables"][v]["rmse"] == pytest.approx(rep["variables"][v]["rmse"])
    # the codec is deterministic: the two schedulers wrote the same chunk bytes
    fa, fb = file_hashes(d / "threads.zarr"), file_hashes(d / "cluster.zarr")
    assert {k: v for k, v in fa.items() if k.startswith("tas")} == {k: v for k, v in fb.items() if k.startswith("tas")}


def test_interrupted_run_resumes_to_identical_store(archive_input):
    inp, model, d = archive_input
    archive.compress_dataset(inp, d / "full.zarr", model, overwrite=True, **KW)
    # threads scheduler: a region still running when the callback stops the run finishes first
    # (unrecorded, so the resume writes it again, with the same bytes)
    with pytest.raises(Stop):
        archive.compress_dataset(inp, d / "resumed.zarr", model, overwrite=True,
                                 on_region=stop_after_first_region, **KW)
    assert json.loads((d / "resumed.zarr" / archive.PROGRESS_FILE).read_text())["done"] in ([0], [1], [2])
    info = archive.store_info(d / "resumed.zarr")
    assert info["progress"] == {"complete": False, "done": 1, "regions": 3}
    with pytest.raises(archive.IncompleteStoreError, match="1 of 3 regions written, resume with: inrcodec compress "
                       ".* --variables tas,tas_lagged --inner-steps 2 --chunks time=2$"):
        archive.check_complete(d / "resumed.zarr")
    seen = []
    rep = archive.compress_dataset(inp, d / "resumed.zarr", model, on_region=lambda *a: seen.append(a), **KW)
    assert rep["resumed_regions"] == 1 and [a[1:] for a in seen] == [(2, 3), (3, 3)]
    assert not (d / "resumed.zarr" / archive.PROGRESS_FILE).exists()
    full, resumed = file_hashes(d / "full.zarr"), file_hashes(d / "resumed.zarr")
    assert len(full) > 20 and full == resumed


def test_existing_store_of_another_request_is_refused(archive_input):
    inp, model, d = archive_input
    with pytest.raises(Stop):
        archive.compress_dataset(inp, d / "other.zarr", model, overwrite=True, scheduler="synchronous",
                                 on_region=stop_after_first_region, **KW)
    with pytest.raises(archive.StoreMismatchError, match="another request"):
        archive.compress_dataset(inp, d / "other.zarr", model, **dict(KW, inner_steps=3))
    with pytest.raises(archive.StoreMismatchError, match="another request"):  # any codec option counts
        archive.compress_dataset(inp, d / "other.zarr", model, **dict(KW, refine_steps=1))
    archive.compress_dataset(inp, d / "other.zarr", model, **KW)
    with pytest.raises(archive.StoreMismatchError, match="overwrite"):
        archive.compress_dataset(inp, d / "other.zarr", model, **KW)


def test_default_variables_are_the_encodable_floats(archive_input):
    inp, model, _ = archive_input
    m = build_spherical_model()
    ds = xr.open_dataset(inp)
    # floats on (.., lat, lon); not the int mask, not the bounds; the CF-packed one decodes to float
    assert archive.encodable_variables(ds, m) == ["tas", "tas_lagged", "packed"]


def test_shipped_models_travel_as_their_hash_to_workers(tiny_model):
    """ship_models: the worker holds the model, codecs pickle without it and still code there."""
    codec = COINppCodec(tiny_model, assume_global_grid=True, bits=5, inner_steps=1)
    x = smooth_field(2).astype("f4")
    client, cluster = archive.make_client(None, 1)
    try:
        assert len(pickle.dumps(codec)) > len(tiny_model.to_bytes())  # not shipped: the model inline
        assert archive.ship_models(client, [tiny_model]) == [codec.model_sha256]
        assert len(pickle.dumps(codec)) < 1000
        data = client.submit(lambda c, a: bytes(c.encode(a)), codec, x).result()
        assert data == codec.encode(x)  # the worker encoded with the very same model
    finally:
        modelstore.unmark_shipped(codec.model_sha256)
        client.close()
        cluster.close()
    assert len(pickle.dumps(codec)) > len(tiny_model.to_bytes())


def test_cli_compress_fits_compiled_only_when_asked(archive_input, monkeypatch):
    """``--compile-fit``: the run's fits take the compiled step (here the step uncompiled, so the
    test needs no compiler), the same store as without it up to rounding; the environment is as
    it was after."""
    from inrcodec.models import fitting

    inp, model, d = archive_input
    used = []

    def step():
        def counted(*args):
            used.append(1)
            return fitting._step(*args)
        return counted

    monkeypatch.setattr(fitting, "_compiled_step", step)
    monkeypatch.setattr(fitting, "_FUSED_FAILED", [])
    monkeypatch.delenv(fitting.COMPILE_ENV, raising=False)
    args = ["--model", model, "--variables", "tas", "--chunks", "time=3", "--inner-steps", "2", "--quiet"]
    assert cli_main(["compress", inp, str(d / "eager.zarr"), *args, "--overwrite"]) == 0
    assert not used
    assert cli_main(["compress", inp, str(d / "fused.zarr"), *args, "--overwrite", "--compile-fit"]) == 0
    assert used and fitting.COMPILE_ENV not in os.environ
    a, b = archive.open_store(str(d / "eager.zarr")), archive.open_store(str(d / "fused.zarr"))
    np.testing.assert_allclose(b["tas"].values, a["tas"].values, atol=1e-3 * float(np.ptp(a["tas"].values)))


def test_cli_compress_info_decompress(archive_input, capsys):
    inp, model, d = archive_input
    out = str(d / "cli.zarr")
    assert cli_main(["compress", inp, out, "--model", model, "--variables", "tas,tas_lagged",
                     "--chunks", "time=3", "--inner-steps", "2", "--quiet", "--overwrite"]) == 0
    text = capsys.readouterr().out
    assert "tas_lagged" in text and "rmse" in text and "ratio" in text
    assert cli_main(["info", out, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    t = info["variables"]["tas"]
    assert t["codec"] == "inrcodec.coinpp" and t["settings"]["bits"] == 6 and len(t["model_sha256"]) == 64
    assert t["settings"]["inner_steps"] == 2
    assert t["chunk_ratio"] > 10 and info["variables"]["land"]["codec"] != "inrcodec.coinpp"
    assert cli_main(["info", out]) == 0
    text = capsys.readouterr().out
    assert f"chunk ratio {info['chunk_ratio']}" in text and f"store ratio {info['store_ratio']}" in text
    nc = str(d / "back.nc")
    assert cli_main(["decompress", out, nc, "--quiet"]) == 0
    a, b, z = xr.open_dataset(inp), xr.open_dataset(nc), archive.open_store(out)
    for v in a.variables:
        if v in VARS:
            np.testing.assert_array_equal(b[v].values, z[v].values)
        else:
            assert a[v].identical(b[v]), v
    assert a.attrs == b.attrs


def test_killed_process_resumes_to_identical_store(archive_input):
    """SIGKILL a real compress process after its first regions, then resume it."""
    import json
    import signal
    import subprocess
    import sys
    import time

    inp, model, d = archive_input
    kw = dict(KW, chunks="time=1")
    archive.compress_dataset(inp, d / "full1.zarr", model, overwrite=True, **kw)
    out = d / "killed.zarr"
    # a real compress process that pauses after each recorded region, so the kill lands mid-run
    script = (f"import time; from inrcodec.archive import compress_dataset; compress_dataset({inp!r}, {str(out)!r}, "
              f"{model!r}, variables={VARS!r}, chunks='time=1', inner_steps=2, progress=False, overwrite=True, "
              f"on_region=lambda *a: time.sleep(0.5))")
    cmd = [sys.executable, "-c", script]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    progress = out / archive.PROGRESS_FILE
    deadline = time.time() + 120
    done = []
    while time.time() < deadline and proc.poll() is None:
        try:
            done = json.loads(progress.read_text())["done"]
        except (OSError, ValueError, KeyError):
            done = []
        if len(done) >= 1:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the compress process finished before it could be killed"
    assert 1 <= len(done) < 6
    rep = archive.compress_dataset(inp, out, model, **kw)
    assert rep["resumed_regions"] >= 1
    assert file_hashes(d / "full1.zarr") == file_hashes(out)


# ------------------------------------------------------------------ every codec option, both doors
#: three sets, because rate control and error bounds exclude each other; together they set every
#: option that is an ``inrcodec compress`` flag (lat/lon and the chunk layout come from the data)
OPTION_SETS = {
    "bounded": dict(bits=5, inner_steps=1, entropy_coding=False, max_abs_error=0.5, rel_error=0.01, target_rmse=0.3,
                    fill_value=-999.0, assume_global_grid=True, refine_steps=1, residual_interpolation=False),
    "target_rmse": dict(target_rmse=1.5, inner_steps=1, quantizer="uniform", residual_coder="none",
                        residual_item_detail=False, residual_context=False, residual_levels=False,
                        residual_cubic=False, residual_fine_step=False, residual_compact=False),
    "target_ratio": dict(target_ratio=30.0, inner_steps=1, time_coding=False, patch_points=3, effort="full",
                         valid_min=-1000.0, valid_max=400.0, coarse_hybrid=False, sperr_exact_bound=False,
                         sperr_item_dct=False, sperr_corrected=False),
    "network_free": dict(target_ratio=20.0, network=False),
}
FLAG_OPTIONS = {f.name for f in dataclasses.fields(CodecSettings) if not f.metadata["from_data"]}


@pytest.fixture(scope="module")
def small_input(tmp_path_factory):
    """4 smooth global fields (8 x 16) with one fill value, and a tiny model directory."""
    d = tmp_path_factory.mktemp("small")
    lat, lon = global_lat_lon()
    x = smooth_field(4).astype("f4")
    x[1, 2, 3] = -999.0
    ds = xr.Dataset({"tas": (("time", "lat", "lon"), x), "tas2": (("time", "lat", "lon"), x + 1.0)},
                    coords={"time": np.arange(4), "lat": lat, "lon": lon})
    ds.to_netcdf(d / "in.nc")
    build_spherical_model().save(d / "model")
    return str(d / "in.nc"), str(d / "model"), d


def _coinpp_config(store, name="tas") -> dict:
    meta = json.loads((store / name / "zarr.json").read_text())
    (config,) = [c["configuration"] for c in meta["codecs"] if c["name"] == "inrcodec.coinpp"]
    return config


def _flags(options: dict) -> list[str]:
    out = []
    for k, v in options.items():
        flag = k.replace("_", "-")
        out += ([f"--{flag}"] if v else [f"--no-{flag}"]) if isinstance(v, bool) else [f"--{flag}", str(v)]
    return out


def test_the_option_sets_cover_every_compress_flag():
    assert {k for opts in OPTION_SETS.values() for k in opts} == FLAG_OPTIONS
    defaults = CodecSettings()
    for opts in OPTION_SETS.values():
        assert all(getattr(CodecSettings(**opts), k) != getattr(defaults, k) for k in opts if k != "inner_steps")


@pytest.mark.parametrize("door", ["compress_dataset", "cli"])
@pytest.mark.parametrize("name", sorted(OPTION_SETS))
def test_every_option_reaches_the_store_configuration(small_input, door, name, capsys):
    inp, model, d = small_input
    options, out = OPTION_SETS[name], d / f"{door}-{name}.zarr"
    if door == "cli":
        assert cli_main(["compress", inp, str(out), "--model", model, "--variables", "tas", "--chunks", "time=2",
                         "--quiet", "--overwrite", *_flags(options)]) == 0, capsys.readouterr().err
    else:
        archive.compress_dataset(inp, out, model, variables=["tas"], settings=CodecSettings(**options),
                                 chunks="time=2", progress=False, evaluate=False, overwrite=True)
    config = _coinpp_config(out)
    want = CodecSettings(**options).to_dict()
    # an option at its legacy value (quantizer="uniform") is left out of the configuration
    assert {k: config[k] for k in options if k in want} == {k: want[k] for k in options if k in want}
    stored = CodecSettings.from_dict({k: v for k, v in config.items() if k in CodecSettings.names()})
    assert {k: getattr(stored, k) for k in options} == {k: getattr(CodecSettings(**options), k) for k in options}
    assert len(config["lat"]) == 8 and len(config["lon"]) == 16  # from the data's coordinates
    back = archive.open_store(out).tas.values
    if "fill_value" in options:  # restored exactly, like the error bound holds for the rest
        assert back[1, 2, 3] == -999.0
        ref = xr.open_dataset(inp).tas.values
        assert np.nanmax(np.abs(back - ref)) <= options["max_abs_error"] + 1e-5
    assert np.isfinite(back).all()


def test_compress_dataset_inner_steps_default_to_the_models_and_options_are_checked(small_input):
    inp, model, d = small_input
    kw = dict(variables=["tas"], chunks="time=4", progress=False, evaluate=False, overwrite=True)
    archive.compress_dataset(inp, d / "default.zarr", model, **kw)
    assert _coinpp_config(d / "default.zarr")["inner_steps"] == modelstore.load(model).model.encode_steps == 3
    with pytest.raises(TypeError, match="unknown option"):
        archive.compress_dataset(inp, d / "bad.zarr", model, bitz=5, **kw)
    with pytest.raises(TypeError, match="not both"):
        archive.compress_dataset(inp, d / "bad.zarr", model, settings=CodecSettings(), bits=5, **kw)
    assert not (d / "bad.zarr").exists()


# ------------------------------------------------------------------ sizes: chunk and store ratios
def test_store_holds_the_model_once_per_array_and_info_reports_both_ratios(small_input):
    inp, model, d = small_input
    out = d / "sizes.zarr"
    rep = archive.compress_dataset(inp, out, model, variables=["tas", "tas2"], chunks="time=2",
                                   inner_steps=1, progress=False, overwrite=True)
    files = {os.path.relpath(os.path.join(r, f), out): os.path.getsize(os.path.join(r, f))
             for r, _, fs in os.walk(out) for f in fs}
    chunk_files = {p: n for p, n in files.items() if os.path.basename(p) != "zarr.json"}
    info = archive.store_info(out)
    decoded = sum(int(np.prod(e["shape"])) * np.dtype(e["dtype"]).itemsize for e in info["variables"].values())
    assert info["decoded_bytes"] == decoded and info["store_bytes"] == sum(files.values())
    assert info["chunk_bytes"] == sum(chunk_files.values())
    assert info["chunk_ratio"] == round(decoded / sum(chunk_files.values()), 3)
    assert info["store_ratio"] == round(decoded / sum(files.values()), 3) < info["chunk_ratio"]
    assert {k: rep[k] for k in ("store_bytes", "store_ratio", "chunk_ratio")} == {
        k: info[k] for k in ("store_bytes", "store_ratio", "chunk_ratio")}
    tas = info["variables"]["tas"]
    assert tas["chunk_ratio"] == round(tas["decoded_bytes"] / sum(
        n for p, n in chunk_files.items() if p.startswith("tas" + os.sep)), 3)
    # not consolidated, and the inline model is in each COIN++ array's metadata once, nowhere else
    assert "consolidated_metadata" not in json.loads((out / "zarr.json").read_text()) or json.loads(
        (out / "zarr.json").read_text())["consolidated_metadata"] is None
    inline = _coinpp_config(out)["model"].encode()
    holders = {p: (out / p).read_bytes().count(inline) for p in files}
    assert {p: n for p, n in holders.items() if n} == {os.path.join("tas", "zarr.json"): 1,
                                                       os.path.join("tas2", "zarr.json"): 1}


def test_a_shipped_model_is_named_not_copied_into_the_store(small_input):
    inp, _, d = small_input
    out = d / "shipped.zarr"
    archive.compress_dataset(inp, out, "t2m-global", variables=["tas"], chunks="time=4", inner_steps=1,
                             progress=False, evaluate=False, overwrite=True)
    config = _coinpp_config(out)
    assert config["model"] == "t2m-global" and config["model_sha256"] == modelstore.load("t2m-global").sha256
    info = archive.store_info(out)
    assert info["variables"]["tas"]["model"] == "t2m-global"
    assert info["store_bytes"] < len(modelstore.load("t2m-global").data) / 10


def test_preset_help_lists_every_preset_of_every_recipe(capsys):
    from inrcodec.recipes import list_recipes, load_recipe

    with pytest.raises(SystemExit):
        cli_main(["train-recipe", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in list_recipes():
        assert f"{name}: {', '.join(sorted(load_recipe(name).presets))}" in text
    assert "cpu-p32" in text
