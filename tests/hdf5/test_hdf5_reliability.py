"""Hostile cases of docs/reliability.md for the HDF5 filter: each test is named for what it
holds, and says its review and case (reviews 1-3: issues 13, 21 and 32) first."""

from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np
import pytest
from conftest import global_lat_lon, smooth_field
from helpers import peak_bytes, run_python

import inrcodec.hdf5 as ih5
from inrcodec.codec import COINppCodec
from inrcodec.errors import ModelFileError


def test_short_chunk_in_hdf5_slot_is_refused(tmp_path, tiny_model):
    """Case 4 of the first reliability review (docs/reliability.md)."""
    lat, lon = global_lat_lon()
    x = smooth_field(2).astype("f4")
    codec = COINppCodec(tiny_model, inner_steps=1, lat=lat, lon=lon)
    p = tmp_path / "short.h5"
    with h5py.File(p, "w") as f:
        ih5.store_model(f, tiny_model, lat=lat, lon=lon)
        d = f.create_dataset("tas", data=x, chunks=(2, 8, 16), **ih5.h5py_kwargs(tiny_model, inner_steps=1, lat=lat, lon=lon))
        d.id.write_direct_chunk((0, 0, 0), codec.encode(x[:1].copy()))
    with h5py.File(p) as f, pytest.raises(OSError):
        f["tas"][...]
    assert "shape (1, 8, 16)" in ih5.last_error and "(2, 8, 16)" in ih5.last_error


def test_hdf5_grid_found_by_name_is_checked_by_content(tmp_path, tiny_model):
    """Case 5 of the first reliability review (docs/reliability.md)."""
    lat, lon = global_lat_lon()
    x = smooth_field(2).astype("f4")
    good, evil = tmp_path / "good.h5", tmp_path / "evil.h5"
    for p in (good, evil):
        with h5py.File(p, "w") as f:
            ih5.store_model(f, tiny_model, lat=lat, lon=lon)
            f.create_dataset("tas", data=x, chunks=(2, 8, 16), **ih5.h5py_kwargs(tiny_model, inner_steps=1, lat=lat, lon=lon))
    with h5py.File(good) as f:
        expect = f["tas"][...]
    with h5py.File(evil, "a") as f:  # same grid name, longitudes shifted
        g = f[ih5.MODELS_GROUP]
        name = next(n for n in g if n.startswith("grid_"))
        v = g[name][()]
        v[2 + len(lat):] += 45.0
        g[name][...] = v
    np.save(tmp_path / "expect.npy", expect)
    code = f"""
        import h5py, numpy as np, inrcodec.hdf5
        try:
            with h5py.File({str(evil)!r}) as f:
                f["tas"][...]
        except OSError:
            pass
        with h5py.File({str(good)!r}) as f:
            np.testing.assert_array_equal(f["tas"][...], np.load({str(tmp_path / 'expect.npy')!r}))
        print("ok")
    """
    r = run_python(code)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-2000:]


def test_hdf5_datasets_name_what_a_reader_needs(tmp_path, tiny_model):
    """Case 9 of the first reliability review (docs/reliability.md)."""
    lat, lon = global_lat_lon()
    p = tmp_path / "hint.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("tas", data=smooth_field(2).astype("f4"), chunks=(2, 8, 16),
                         **ih5.h5py_kwargs(tiny_model, inner_steps=1, lat=lat, lon=lon))
        ih5.store_model(f, tiny_model, lat=lat, lon=lon)
    r = subprocess.run([sys.executable, "-c", f"import h5py; print(h5py.File({str(p)!r})['tas'].attrs['inrcodec'])"],
                       capture_output=True, text=True, timeout=60)
    assert "pip install inrcodec" in r.stdout and "import inrcodec.hdf5" in r.stdout


def test_chained_h5py_read_without_with(tmp_path, tiny_model):
    """Case 12 of the first reliability review (docs/reliability.md)."""
    lat, lon = global_lat_lon()
    x = smooth_field(2).astype("f4")
    p = tmp_path / "chain.h5"
    with h5py.File(p, "w") as f:
        ih5.store_model(f, tiny_model, lat=lat, lon=lon)
        f.create_dataset("tas", data=x, chunks=(2, 8, 16), **ih5.h5py_kwargs(tiny_model, inner_steps=1, lat=lat, lon=lon))
    r = subprocess.run([sys.executable, "-c", f"import h5py, inrcodec.hdf5; print(h5py.File({str(p)!r})['tas'][...].shape)"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "(2, 8, 16)" in r.stdout, r.stderr[-2000:]


def test_hdf5_model_and_grid_entries_are_checked_before_reading(tmp_path, tiny_model):
    """Case 8 of the second reliability review (docs/reliability.md)."""
    from inrcodec._limits import MAX_MODEL_BYTES

    lat, lon = global_lat_lon()
    x = smooth_field(2).astype("f4")
    p = tmp_path / "huge_entry.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("tas", data=x, chunks=(2, 8, 16), **ih5.h5py_kwargs(tiny_model, inner_steps=1, lat=lat, lon=lon))
        g = f.require_group(ih5.MODELS_GROUP)  # never written: a few KB on disk, 2 GiB when read
        g.create_dataset(tiny_model.sha256, shape=(2 << 30,), dtype="u1", chunks=(1 << 20,))
    assert p.stat().st_size < 300_000
    peak, err = peak_bytes(lambda: ih5.load_models(p))
    assert isinstance(err, ModelFileError), err
    assert f"holds {2 << 30} values, more than the {MAX_MODEL_BYTES}" in str(err) and peak < 8 << 20, (err, peak)
    with h5py.File(p, "a") as f:  # a grid entry of the wrong kind, and one too large
        g = f[ih5.MODELS_GROUP]
        del g[tiny_model.sha256]
        g.create_dataset("grid_0123456789abcdef", shape=(1 << 28,), dtype="f8", chunks=(1 << 16,))
        for name, ds in (("grid_0123456789abcdef", None), ("grid_fedcba9876543210", "i8")):
            if ds:
                g.create_dataset(name, shape=(4,), dtype=ds)
            peak, err = peak_bytes(lambda: ih5.load_models(f))
            assert isinstance(err, ModelFileError) and peak < 8 << 20, (err, peak)
            del g[name]
    # the filter, finding the model in the open file, says why and stays small (fresh process: no cache)
    with h5py.File(p, "a") as f:
        f[ih5.MODELS_GROUP].create_dataset(tiny_model.sha256, shape=(2 << 30,), dtype="u1", chunks=(1 << 20,))
    code = f"""
        import resource, h5py, inrcodec.hdf5 as ih5
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            with h5py.File({str(p)!r}) as f:
                f["tas"][...]
        except OSError:
            print("refused", ih5.last_error)
        print("grew_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
    """
    r = run_python(code)
    assert "refused" in r.stdout and "more than the" in r.stdout, (r.stdout, r.stderr[-2000:])
    assert int(r.stdout.split("grew_kb")[1]) < 200_000
