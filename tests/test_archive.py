"""Archive compression (inrcodec.archive + the compress/decompress/info sub-commands) on real data."""

from __future__ import annotations

import hashlib
import os
import pickle
import warnings

import numpy as np
import pytest
import xarray as xr

from conftest import build_spherical_model
from inrcodec import archive
from inrcodec.cli import main as cli_main
from inrcodec.codec import COINppCodec
from inrcodec.datasets import embedded_sample

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
    ds.attrs = {"title": "inrcodec archive test", "history": "made by tests/test_archive.py"}
    enc = {"packed": {"dtype": "i2", "scale_factor": 0.01, "add_offset": 250.0, "_FillValue": -32768},
           "tas": {"zlib": True, "chunksizes": (1, 96, 192)}}
    path = d / "in.nc"
    ds.to_netcdf(path, encoding=enc)
    model = d / "model"
    build_spherical_model().save(model)
    return str(path), str(model), d


def _files(root):
    out = {}
    for base, _, fs in os.walk(root):
        for f in fs:
            p = os.path.join(base, f)
            out[os.path.relpath(p, root)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out


def _check_lossless(inp, store):
    a = xr.open_dataset(inp)
    b = xr.open_zarr(store)
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
        assert r["ratio"] > 10 and np.isfinite(r["rmse"]) and r["max_abs_error"] >= r["rmse"]
    assert "packed" in rep["copied"] and "land" in rep["copied"]
    _check_lossless(inp, d / "threads.zarr")
    rep2 = archive.compress_dataset(inp, d / "cluster.zarr", model, overwrite=True, workers=2, **KW)
    _check_lossless(inp, d / "cluster.zarr")
    a, b = xr.open_zarr(d / "threads.zarr"), xr.open_zarr(d / "cluster.zarr")
    for v in VARS:
        np.testing.assert_array_equal(a[v].values, b[v].values)
        assert rep2["variables"][v]["rmse"] == pytest.approx(rep["variables"][v]["rmse"])
    # the codec is deterministic: the two schedulers wrote the same chunk bytes
    fa, fb = _files(d / "threads.zarr"), _files(d / "cluster.zarr")
    assert {k: v for k, v in fa.items() if k.startswith("tas")} == {k: v for k, v in fb.items() if k.startswith("tas")}


def test_interrupted_run_resumes_to_identical_store(archive_input):
    inp, model, d = archive_input
    archive.compress_dataset(inp, d / "full.zarr", model, overwrite=True, **KW)
    part = archive.compress_dataset(inp, d / "resumed.zarr", model, overwrite=True, _stop_after=1, **KW)
    assert part["stopped"] and part["done"] == [0]
    assert (d / "resumed.zarr" / archive.PROGRESS_FILE).exists()
    info = archive.store_info(d / "resumed.zarr")
    assert info["progress"] == {"complete": False, "done": 1, "regions": 3}
    rep = archive.compress_dataset(inp, d / "resumed.zarr", model, **KW)
    assert rep["resumed_regions"] == 1
    assert not (d / "resumed.zarr" / archive.PROGRESS_FILE).exists()
    full, resumed = _files(d / "full.zarr"), _files(d / "resumed.zarr")
    assert len(full) > 20 and full == resumed


def test_existing_store_of_another_request_is_refused(archive_input):
    inp, model, d = archive_input
    archive.compress_dataset(inp, d / "other.zarr", model, overwrite=True, _stop_after=1, **KW)
    with pytest.raises(archive.StoreMismatchError, match="another request"):
        archive.compress_dataset(inp, d / "other.zarr", model, **dict(KW, inner_steps=3))
    archive.compress_dataset(inp, d / "other.zarr", model, **KW)
    with pytest.raises(archive.StoreMismatchError, match="overwrite"):
        archive.compress_dataset(inp, d / "other.zarr", model, **KW)


def test_default_variables_are_the_encodable_floats(archive_input):
    inp, model, _ = archive_input
    m = build_spherical_model()
    ds = xr.open_dataset(inp)
    # floats on (.., lat, lon); not the int mask, not the bounds; the CF-packed one decodes to float
    assert archive.encodable_variables(ds, m) == ["tas", "tas_lagged", "packed"]


def test_codec_pickles_model_once_and_hash_only_when_shipped(tiny_model):
    codec = COINppCodec(tiny_model, assume_global_grid=True, bits=5)
    n_model = len(tiny_model.to_bytes())
    one = len(pickle.dumps(codec))
    two = len(pickle.dumps([codec, COINppCodec(tiny_model, assume_global_grid=True, bits=5)]))
    assert n_model < one < n_model + 2000
    assert two < one + 2000  # the model bytes object is shared: pickled once
    archive._SHIPPED.add(codec.model_sha256)
    try:
        small = pickle.dumps(codec)
    finally:
        archive._SHIPPED.discard(codec.model_sha256)
    assert len(small) < 1000
    back = pickle.loads(small)
    assert back == codec and back.model is codec.model  # from the per-process cache


def test_cli_compress_info_decompress(archive_input, capsys):
    inp, model, d = archive_input
    out = str(d / "cli.zarr")
    assert cli_main(["compress", inp, out, "--model", model, "--variables", "tas,tas_lagged",
                     "--chunks", "time=3", "--inner-steps", "2", "--quiet", "--overwrite"]) == 0
    text = capsys.readouterr().out
    assert "tas_lagged" in text and "rmse" in text and "ratio" in text
    assert cli_main(["info", out, "--json"]) == 0
    import json

    info = json.loads(capsys.readouterr().out)
    t = info["variables"]["tas"]
    assert t["codec"] == "inrcodec.coinpp" and t["bits"] == 6 and len(t["model_sha256"]) == 64
    assert t["ratio"] > 10 and info["variables"]["land"]["codec"] != "inrcodec.coinpp"
    nc = str(d / "back.nc")
    assert cli_main(["decompress", out, nc, "--quiet"]) == 0
    a, b, z = xr.open_dataset(inp), xr.open_dataset(nc), xr.open_zarr(out)
    for v in a.variables:
        if v in VARS:
            np.testing.assert_array_equal(b[v].values, z[v].values)
        else:
            assert a[v].identical(b[v]), v
    assert a.attrs == b.attrs


def test_killed_process_resumes_to_identical_store(archive_input):
    """SIGKILL a real `inrcodec compress` process after its first regions, then resume it."""
    import json
    import signal
    import subprocess
    import sys
    import time

    inp, model, d = archive_input
    kw = dict(KW, chunks="time=1")
    archive.compress_dataset(inp, d / "full1.zarr", model, overwrite=True, **kw)
    out = d / "killed.zarr"
    cmd = [sys.executable, "-m", "inrcodec.cli", "compress", inp, str(out), "--model", model,
           "--variables", ",".join(VARS), "--chunks", "time=1", "--inner-steps", "2", "--quiet", "--overwrite"]
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
    assert _files(d / "full1.zarr") == _files(out)
