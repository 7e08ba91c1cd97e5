"""The COIN++ HDF5 filter: every option through cd_values, h5py and h5netcdf; old files; registration."""

from __future__ import annotations

import dataclasses
import shutil

import h5py
import numpy as np
import pytest
import xarray as xr

import inrcodec.hdf5 as ih5
from conftest import global_lat_lon, smooth_field
from inrcodec.datasets import embedded_sample
from inrcodec.errors import PinnedModelError
from inrcodec.chunkcodec.residual import cross_machine_tolerance
from inrcodec.settings import CodecSettings
from helpers import TESTS, run_python

LAYOUT1 = TESTS / "data" / "hdf5_v1" / "layout1.h5"
LAT, LON = global_lat_lon()
#: between them, every CodecSettings field set away from its default (the bounded set with a ratio
#: target too: a bound and a target together)
BOUNDED = CodecSettings(bits=5, inner_steps=2, lat=LAT, lon=LON, entropy_coding=False, max_abs_error=1.5,
                        target_ratio=3.0, rel_error=0.05, fill_value=-999.0, refine_steps=1, chunk_shape=(2, 8, 16),
                        chunk_order="C", chunk_dtype="float32")
RATE = CodecSettings(bits=4, inner_steps=1, assume_global_grid=True, target_rmse=3.0, quantizer="uniform",
                     residual_coder="none", residual_interpolation=False, residual_item_detail=False,
                     residual_context=False, residual_levels=False, residual_cubic=False,
                     residual_fine_step=False, residual_compact=False)
RATIO = CodecSettings(bits=4, inner_steps=1, assume_global_grid=True, target_ratio=4.0, time_coding=False,
                      patch_points=3, effort="full", valid_min=100.0, valid_max=400.0, coarse_hybrid=False,
                      sperr_exact_bound=False, sperr_item_dct=False, sperr_corrected=False)
NETWORK_FREE = CodecSettings(inner_steps=1, assume_global_grid=True, target_ratio=4.0, network=False)


@pytest.fixture(scope="module")
def tas():
    return embedded_sample("tas").isel(time=slice(0, 4)).load()


def _field(n: int = 2) -> np.ndarray:
    x = smooth_field(n).astype("f4")
    x[0, 1, 2], x[1, 3, 4] = np.nan, -999.0
    return x


def test_the_settings_above_cover_every_option():
    changed = {f.name for s in (BOUNDED, RATE, RATIO, NETWORK_FREE) for f in dataclasses.fields(s)
               if getattr(s, f.name) != f.default}
    assert changed == CodecSettings.names()


@pytest.mark.parametrize("settings", [BOUNDED, RATE, RATIO, NETWORK_FREE],
                         ids=["bounded", "rmse", "ratio", "free"])
def test_every_option_survives_cd_values(tiny_model, settings):
    filt = ih5.COINpp(tiny_model, settings)
    assert filt.settings == settings and dict(filt)["compression"] == ih5.FILTER_ID
    assert all(isinstance(w, int) and 0 <= w < 2**32 for w in filt.filter_options)
    back = ih5.COINpp.parse_options(filt.filter_options)
    assert back.settings == settings.replace(lat=None, lon=None)
    assert back.model_sha256 == filt.codec.model_sha256 == tiny_model.sha256
    assert (back.grid_id is None) == (settings.lat is None) and back.chunks is None and back.version == 2
    assert ih5.COINpp(tiny_model, settings) == filt and ih5.COINpp(tiny_model, settings.replace(bits=3)) != filt


def test_every_option_survives_an_h5py_write_and_read(tmp_path, tiny_model):
    x = _field()
    bounded, rate = ih5.COINpp(tiny_model, BOUNDED), ih5.COINpp(tiny_model, RATIO)
    path = tmp_path / "opts.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("bounded", data=x, chunks=x.shape, compression=bounded)
        f.create_dataset("ratio", data=smooth_field(2), chunks=(1, 8, 16), **rate)
        ih5.store_model(f, bounded)
    with h5py.File(path) as f:
        assert ih5.COINpp.of(f["bounded"]) == bounded and ih5.COINpp.of(f["bounded"]).settings == BOUNDED
        assert ih5.COINpp.of(f["ratio"]).settings == RATIO
        layout = ih5.COINpp.parse_options(f["bounded"].id.get_create_plist().get_filter(0)[2])
        y, y64 = f["bounded"][...], f["ratio"][...]
    assert (layout.itemsize, layout.chunks) == (4, x.shape)
    valid = np.isfinite(x) & (x != -999.0)
    assert np.isnan(y[0, 1, 2]) and y[1, 3, 4] == -999.0  # NaN and the fill value come back exactly
    assert np.abs(y[valid] - x[valid]).max() <= 1.5 and y64.dtype == np.float64


@pytest.mark.filterwarnings("ignore::inrcodec.errors.OutOfRangeWarning")  # tas partly beside the tiny model's range
def test_fresh_process_reads_with_the_model_and_grid_from_the_file(tmp_path, tiny_model, tas):
    x = tas.values
    path = tmp_path / "t.h5"
    with h5py.File(path, "w") as f:
        ih5.store_model(f, tiny_model, lat=tas.lat.values, lon=tas.lon.values)
        f.create_dataset("t2m", data=x, chunks=(2, 96, 192),
                         compression=ih5.COINpp(tiny_model, bits=6, inner_steps=2, lat=tas.lat.values, lon=tas.lon.values))
    with h5py.File(path) as f:
        y, stored = f["t2m"][...], f["t2m"].id.get_storage_size()
    assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
    assert stored < x.nbytes / 50
    np.save(tmp_path / "y.npy", y)
    r = run_python(f"""
        import h5py, numpy as np, inrcodec.hdf5
        from inrcodec.models import modelstore
        assert modelstore.cached("") is None
        with h5py.File({str(path)!r}) as f:
            y = f["t2m"][0:2]
        np.testing.assert_array_equal(y, np.load({str(tmp_path / 'y.npy')!r})[0:2])
        print("ok")
    """)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr
    with h5py.File(path, "a") as f:
        f["t2m"][3] = x[0]  # writes go through the filter too (read-modify-write of the chunk)
        assert np.isfinite(f["t2m"][3]).all()


@pytest.mark.filterwarnings("ignore::inrcodec.errors.OutOfRangeWarning")  # tas partly beside the tiny model's range
def test_files_of_the_first_layout_still_decode(tmp_path):
    """layout1.h5 was written by the filter of commit a939806 (tests/data/hdf5_v1/make_hdf5_v1.py)."""
    path = tmp_path / "layout1.h5"
    shutil.copy(LAYOUT1, path)
    with h5py.File(path, "a") as f:
        params = ih5.COINpp.parse_options(f["tas"].id.get_create_plist().get_filter(0)[2])
        assert params.version == 1 and (params.itemsize, params.chunks) == (4, (2, 8, 16))
        # a stored configuration: the options added later take their legacy values
        assert params.settings == CodecSettings.from_dict(dict(bits=5, inner_steps=2))
        assert ih5.COINpp.of(f["tas"]).settings == CodecSettings.from_dict(dict(bits=5, inner_steps=2, lat=LAT, lon=LON))
        assert ih5.COINpp.of(f["tas_global"]).settings == CodecSettings.from_dict(dict(
            bits=4, inner_steps=1, entropy_coding=False, assume_global_grid=True))
        for name in ("tas", "tas_global"):  # written on another machine: the cross-machine promise
            expected = f["expected_" + name][...]
            np.testing.assert_allclose(f[name][...], expected, rtol=0, atol=cross_machine_tolerance(expected))
        f["tas"][1] = f["expected_tas"][0]  # re-encoding through the old words works too
        assert np.abs(f["tas"][1] - f["expected_tas"][0]).max() < 50


def test_xarray_h5netcdf_carries_every_option_and_the_fill_value(tmp_path, tiny_model):
    ds = xr.Dataset({"tas": (("time", "lat", "lon"), _field(4))}, coords={"time": np.arange(4), "lat": LAT, "lon": LON})
    opts = {k: v for k, v in BOUNDED.to_dict().items() if k not in ("lat", "lon", "chunk_shape", "chunk_order",
                                                                     "chunk_dtype")}
    enc = ih5.xarray_encoding(ds.tas, tiny_model, chunks={"time": 2}, **opts)
    assert enc["_FillValue"] == -999.0 and enc["chunksizes"] == (2, 8, 16)
    path = tmp_path / "x.nc"
    ds.to_netcdf(path, engine="h5netcdf", encoding={"tas": enc})
    ih5.store_model(path, tiny_model, lat=LAT, lon=LON)
    with h5py.File(path) as f:
        assert ih5.COINpp.of(f["tas"]).settings == BOUNDED.replace(chunk_shape=None, chunk_order=None, chunk_dtype=None)
    back = xr.open_dataset(path, engine="h5netcdf").tas.values
    x = ds.tas.values
    missing = ~np.isfinite(x) | (x == -999.0)
    assert np.array_equal(np.isnan(back), missing)  # xarray masks the fill value to NaN on reading
    assert np.abs(back[~missing] - x[~missing]).max() <= 1.5
    # the fill value also comes from the variable's own encoding
    ds.tas.encoding["_FillValue"] = -999.0
    assert ih5.xarray_encoding(ds.tas, tiny_model)["_FillValue"] == -999.0


def test_xarray_h5netcdf_roundtrip_and_netcdf4_engine(tmp_path, tiny_model, tas):
    ds = xr.Dataset({"tas": tas, "land": (("lat", "lon"), (tas[0].values > 280).astype("i1"))})
    ds.attrs["title"] = "hdf5 filter test"
    path = tmp_path / "x.nc"
    enc = {"tas": ih5.xarray_encoding(ds.tas, tiny_model, bits=6, inner_steps=2, chunks={"time": 2})}
    assert np.isnan(enc["tas"]["_FillValue"])
    ds.to_netcdf(path, engine="h5netcdf", encoding=enc)
    ih5.store_model(path, tiny_model, lat=ds.lat.values, lon=ds.lon.values)
    back = xr.open_dataset(path, engine="h5netcdf")
    assert back.tas.shape == ds.tas.shape and back.tas.dtype == np.float32
    assert back.land.identical(ds.land) and back.attrs["title"] == "hdf5 filter test"
    assert set(back.variables) == {"tas", "land", "time", "lat", "lon"}  # the model group stays out of the way
    np.save(tmp_path / "t.npy", back.tas.values)
    # netCDF4's own libhdf5 (registered by the import), in a fresh process: load the models, read
    r = run_python(f"""
        import numpy as np, xarray as xr, inrcodec.hdf5 as ih5
        ih5.load_models({str(path)!r})
        v = xr.open_dataset({str(path)!r}, engine="netcdf4").tas.values
        np.testing.assert_array_equal(v, np.load({str(tmp_path / 't.npy')!r}))
        print("ok")
    """)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


def test_import_inrcodec_leaves_hdf5_alone_and_import_inrcodec_hdf5_registers():
    r = run_python("""
        import sys, inrcodec
        assert "h5py" not in sys.modules, "import inrcodec imported h5py"
        import h5py
        assert not h5py.h5z.filter_avail(47017)
        import inrcodec.hdf5
        assert h5py.h5z.filter_avail(inrcodec.hdf5.FILTER_ID) and inrcodec.hdf5.is_registered()
        import ctypes, netCDF4._netCDF4  # netCDF4's own libhdf5 got it too
        assert ctypes.CDLL(netCDF4._netCDF4.__file__).H5Zfilter_avail(47017) > 0
        print("ok")
    """)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


def test_reader_without_the_filter_gets_an_error_naming_it(tmp_path, tiny_model, tas):
    path = tmp_path / "t.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("t2m", data=tas.values, chunks=(2, 96, 192),
                         compression=ih5.COINpp(tiny_model, inner_steps=1, assume_global_grid=True))
    r = run_python(f"""
        import h5py
        h5py._errors.unsilence_errors()  # print HDF5's error stack
        with h5py.File({str(path)!r}) as f:
            f["t2m"][...]
    """)
    assert r.returncode != 0
    assert "OSError" in r.stderr
    assert "required filter 'inrcodec.coinpp" in r.stderr and "import inrcodec.hdf5" in r.stderr


def test_bad_parameters_and_models_are_refused(tmp_path, tiny_model, other_model):
    with pytest.raises(ValueError, match="assume_global_grid=True"):
        ih5.COINpp(tiny_model)
    with pytest.raises(ValueError, match="not inrcodec filter parameters"):
        ih5.COINpp.parse_options((3, 0, 0))
    with pytest.raises(TypeError, match="not both"):
        ih5.COINpp(tiny_model, RATE, bits=3)
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as f:  # a model dataset named by another model's hash
        f.create_dataset(f"{ih5.MODELS_GROUP}/{other_model.sha256}", data=np.frombuffer(tiny_model.to_bytes(), "u1"))
    with pytest.raises(PinnedModelError, match="do not match the pinned hash"):
        ih5.load_models(path)


def test_a_shipped_model_is_not_copied_into_the_file_and_still_decodes(tmp_path, tas):
    path = tmp_path / "shipped.h5"
    filt = ih5.COINpp("t2m-global", bits=6, inner_steps=2, lat=tas.lat.values, lon=tas.lon.values)
    with h5py.File(path, "w") as f:
        f.create_dataset("tas", data=tas.values[:2], chunks=(2, 96, 192), compression=filt)
        ih5.store_model(f, filt)
        assert filt.codec.model_sha256 not in f[ih5.MODELS_GROUP]  # only the grid is stored
    assert path.stat().st_size < len(filt.codec.model_bytes) / 4
    np.save(tmp_path / "x.npy", tas.values[:2])
    r = run_python(f"""
        import h5py, numpy as np, inrcodec.hdf5
        from inrcodec.models import modelstore
        assert modelstore.cached("") is None
        with h5py.File({str(path)!r}) as f:
            y = f["tas"][...]
        print(float(np.sqrt(np.mean((y - np.load({str(tmp_path / 'x.npy')!r})) ** 2))))
    """)
    assert r.returncode == 0, r.stderr
    assert float(r.stdout.strip().splitlines()[-1]) < 3.0
