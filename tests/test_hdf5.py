"""The COIN++ HDF5 filter: h5py, xarray's h5netcdf engine, netCDF4's own libhdf5."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest
import xarray as xr

import inrcodec.hdf5 as ih5
from inrcodec.datasets import embedded_sample


@pytest.fixture(scope="module")
def tas():
    return embedded_sample("tas").isel(time=slice(0, 4)).load()


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)


def test_h5py_roundtrip_and_fresh_process(tmp_path, tiny_model, tas):
    assert ih5.is_registered()
    x = tas.values
    path = tmp_path / "t.h5"
    with h5py.File(path, "w") as f:
        ih5.store_model(f, tiny_model, lat=tas.lat.values, lon=tas.lon.values)
        f.create_dataset("t2m", data=x, chunks=(2, 96, 192),
                         **ih5.h5py_kwargs(tiny_model, bits=6, inner_steps=2, lat=tas.lat.values, lon=tas.lon.values))
        f.create_dataset("t2m_64", data=x.astype("f8"), chunks=(1, 96, 192),
                         **ih5.h5py_kwargs(tiny_model, bits=4, inner_steps=2, assume_global_grid=True))
    with h5py.File(path) as f:
        y, y64 = f["t2m"][...], f["t2m_64"][...]
        stored = f["t2m"].id.get_storage_size()
    assert y.shape == x.shape and y.dtype == np.float32 and y64.dtype == np.float64
    assert stored < x.nbytes / 50
    assert np.isfinite(y).all() and np.isfinite(y64).all()
    # a fresh process finds the model and the grid in the file: same values
    np.save(tmp_path / "y.npy", y)
    r = _run(f"""
        import h5py, numpy as np, inrcodec.hdf5
        from inrcodec import _modelcache
        assert not _modelcache.cached_hashes()
        with h5py.File({str(path)!r}) as f:
            y = f["t2m"][0:2]
        np.testing.assert_array_equal(y, np.load({str(tmp_path / 'y.npy')!r})[0:2])
        print("ok")
    """)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr
    with h5py.File(path, "a") as f:
        f["t2m"][3] = x[0]  # writes go through the filter too (read-modify-write of the chunk)
        assert np.isfinite(f["t2m"][3]).all()


def test_reader_without_the_filter_gets_an_error_naming_it(tmp_path, tiny_model, tas):
    path = tmp_path / "t.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("t2m", data=tas.values, chunks=(2, 96, 192), **ih5.h5py_kwargs(tiny_model, inner_steps=1, assume_global_grid=True))
    r = _run(f"""
        import h5py
        h5py._errors.unsilence_errors()  # print HDF5's error stack
        with h5py.File({str(path)!r}) as f:
            f["t2m"][...]
    """)
    assert r.returncode != 0
    assert "OSError" in r.stderr
    assert "required filter 'inrcodec.coinpp" in r.stderr and "import inrcodec.hdf5" in r.stderr


def test_xarray_h5netcdf_roundtrip_and_netcdf4_engine(tmp_path, tiny_model, tas):
    ds = xr.Dataset({"tas": tas, "land": (("lat", "lon"), (tas[0].values > 280).astype("i1"))})
    ds.attrs["title"] = "hdf5 filter test"
    path = tmp_path / "x.nc"
    enc = {"tas": ih5.xarray_encoding(ds.tas, tiny_model, bits=6, inner_steps=2, chunks={"time": 2})}
    ds.to_netcdf(path, engine="h5netcdf", encoding=enc)
    ih5.store_model(path, tiny_model, lat=ds.lat.values, lon=ds.lon.values)
    back = xr.open_dataset(path, engine="h5netcdf")
    assert back.tas.shape == ds.tas.shape and back.tas.dtype == np.float32
    assert back.land.identical(ds.land) and back.attrs["title"] == "hdf5 filter test"
    assert set(back.variables) == {"tas", "land", "time", "lat", "lon"}  # the model group stays out of the way
    np.save(tmp_path / "t.npy", back.tas.values)
    # netCDF4's own libhdf5, in a fresh process: register there, load the models, read
    r = _run(f"""
        import numpy as np, xarray as xr, inrcodec.hdf5 as ih5
        assert ih5.register_netcdf4()
        ih5.load_models({str(path)!r})
        v = xr.open_dataset({str(path)!r}, engine="netcdf4").tas.values
        np.testing.assert_array_equal(v, np.load({str(tmp_path / 't.npy')!r}))
        print("ok")
    """)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr
