"""Tests for inrcodec.datasets: ERA5-style loading, time splits, the embedded samples, other loaders."""

from __future__ import annotations

import sys
import wave
from importlib import resources

import numpy as np
import pytest
import xarray as xr

from inrcodec import datasets
from inrcodec.datasets import era5, fileloaders
from inrcodec.datasets import embedded_audio, embedded_sample, embedded_sample_path, embedded_samples
from inrcodec.datasets.fileloaders import load_audio, load_image, load_volume
from inrcodec.datasets.era5 import load_era5, split_by_time


@pytest.fixture(scope="module")
def raw_tas() -> xr.Dataset:
    """The shipped tas file as stored: lat ascending, lon 0..358.125."""
    with xr.open_dataset(embedded_sample_path("tas")) as ds:
        return ds.load()


@pytest.fixture(scope="module")
def tas() -> xr.DataArray:
    return embedded_sample("tas")


def _era5_style(raw: xr.Dataset) -> xr.Dataset:
    """What the new Copernicus CDS writes: t2m on (valid_time, latitude descending, longitude), number, expver."""
    ds = raw.rename({"tas": "t2m", "time": "valid_time", "lat": "latitude", "lon": "longitude"})
    ds = ds.isel(latitude=slice(None, None, -1))
    ds = ds.assign_coords(number=0, expver=("valid_time", ["0001"] * ds.sizes["valid_time"]))
    return ds


def _to_pm180(raw: xr.Dataset) -> xr.Dataset:
    """The same field with longitudes -180..178.125 (rolled, as a -180..180 product would store it)."""
    lon = ((raw.lon.values + 180.0) % 360.0) - 180.0
    return raw.assign_coords(lon=lon).sortby("lon")


# ------------------------------------------------------------------------------------------------------------------
# embedded samples
# ------------------------------------------------------------------------------------------------------------------


def test_embedded_tas_is_real_temperature(tas):
    assert tas.dims == ("time", "lat", "lon")
    assert tas.shape == (12, 96, 192)
    assert tas.dtype == np.float32
    assert tas.name == "tas" and tas.attrs["units"] == "K"
    assert np.isfinite(tas.values).all()
    assert 180.0 < float(tas.min()) and float(tas.max()) < 340.0
    assert 240.0 < float(tas.mean()) < 300.0
    assert float(tas.std()) > 5.0
    # a real climate: the tropics are warmer than the poles, and the months differ
    tropics = float(tas.sel(lat=slice(-10, 10)).mean())
    poles = float(tas.where(abs(tas.lat) > 70).mean())
    assert tropics - poles > 30.0
    assert float(tas.std("time").mean()) > 1.0
    assert np.all(np.diff(tas.lat.values) > 0)
    assert np.all(np.diff(tas.lon.values) > 0)
    assert tas.lon.values[0] == -180.0 and tas.lon.values[-1] < 180.0
    assert str(tas.time.values[0])[:7] == "2005-01" and str(tas.time.values[-1])[:7] == "2005-12"


def test_embedded_files_are_clean_cf(raw_tas):
    path = embedded_sample_path("tas")
    assert path.stat().st_size < 1_000_000
    with xr.open_dataset(path) as ds:  # times decode with no special options
        assert np.issubdtype(ds.time.dtype, np.datetime64)
        assert list(ds.data_vars) == ["tas"]
        assert ds.tas.dtype == np.float32
        assert ds.tas.encoding.get("zlib") is True
        assert ds.lat.attrs["units"] == "degrees_north" and ds.lon.attrs["units"] == "degrees_east"
        for key in ("source", "license", "package"):
            assert ds.attrs[key]
        assert "libncarg-data" in ds.attrs["source"]


def test_embedded_hgt500():
    da = embedded_sample("hgt500")
    assert da.shape == (21, 73, 144) and da.dtype == np.float32
    assert da.attrs["units"] == "m"
    assert 4500.0 < float(da.min()) and float(da.max()) < 6200.0
    assert float(da.std()) > 100.0
    assert np.all(np.diff(da.time.values).astype("int64") > 0)


def test_embedded_listing_and_errors():
    assert set(embedded_samples()) == {"tas", "hgt500", "arctic_a0007"}
    assert set(embedded_samples("grid")) == {"tas", "hgt500"}
    assert all(isinstance(v, str) and v for v in embedded_samples().values())
    with pytest.raises(ValueError, match="available"):
        embedded_sample("nope")
    with pytest.raises(ValueError, match="embedded_audio"):
        embedded_sample("arctic_a0007")
    with pytest.raises(ValueError):
        embedded_samples("video")


def test_embedded_audio_is_real_speech():
    x, rate = embedded_audio()
    assert rate == 16000 and x.dtype == np.float32 and x.shape == (64000,)
    assert -1.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert float(x.std()) > 0.02
    # speech: loud and quiet stretches (envelope varies a lot across 50 ms frames)
    frames = x[: len(x) // 800 * 800].reshape(-1, 800)
    energy = np.sqrt((frames**2).mean(axis=1))
    assert energy.max() > 20 * np.percentile(energy, 10)


# ------------------------------------------------------------------------------------------------------------------
# load_era5
# ------------------------------------------------------------------------------------------------------------------


def test_era5_names_descending_lat_and_extras(tmp_path, raw_tas, tas):
    path = tmp_path / "era5.nc"
    _era5_style(raw_tas).to_netcdf(path)
    da = load_era5(path)
    assert da.name == "t2m" and da.dims == ("time", "lat", "lon") and da.dtype == np.float32
    assert set(da.coords) == {"time", "lat", "lon"}
    np.testing.assert_array_equal(da.values, tas.values)
    np.testing.assert_array_equal(da.lat.values, tas.lat.values)
    np.testing.assert_array_equal(da.lon.values, tas.lon.values)
    np.testing.assert_array_equal(da.time.values, tas.time.values)


@pytest.mark.parametrize("engine", ["netcdf4", "h5netcdf"])
def test_longitude_conventions_agree(tmp_path, raw_tas, engine):
    p360, p180 = tmp_path / "lon360.nc", tmp_path / "lon180.nc"
    raw_tas.to_netcdf(p360)
    _to_pm180(raw_tas).to_netcdf(p180)
    a, b = load_era5(p360, engine=engine), load_era5(p180, engine=engine)
    xr.testing.assert_identical(a, b)
    # values land at the same place on the sphere: 270E is -90E, 0E stays 0E, 180E is -180E
    lat = float(raw_tas.lat[70])
    for east, signed in ((270.0, -90.0), (0.0, 0.0), (180.0, -180.0), (93.75, 93.75)):
        expected = raw_tas.tas.sel(lat=lat, lon=east).values
        np.testing.assert_array_equal(a.sel(lat=lat, lon=signed).values, expected)


def test_cyclic_longitude_column_dropped(raw_tas):
    cyclic = xr.concat([raw_tas, raw_tas.isel(lon=[0]).assign_coords(lon=[360.0])], dim="lon")
    da = load_era5(cyclic)
    assert da.sizes["lon"] == 192
    np.testing.assert_array_equal(da.values, load_era5(raw_tas).values)


def test_multi_file_concat_sorts_time(tmp_path, raw_tas, tas):
    paths = []
    for i, sl in enumerate([slice(0, 4), slice(4, 9), slice(9, 12)]):
        p = tmp_path / f"part{i}.nc"
        _era5_style(raw_tas.isel(time=sl)).to_netcdf(p)
        paths.append(p)
    da = load_era5([paths[2], paths[0], paths[1]])
    np.testing.assert_array_equal(da.values, tas.values)
    np.testing.assert_array_equal(da.time.values, tas.time.values)
    with pytest.raises(ValueError, match="duplicate"):
        load_era5([paths[0], paths[0]])
    other_grid = _era5_style(raw_tas.isel(time=slice(0, 4), lat=slice(0, 50)))
    with pytest.raises(ValueError, match="grid"):
        load_era5([paths[1], other_grid])


@pytest.mark.filterwarnings("ignore:Failed to open Zarr store with consolidated metadata")
def test_zarr_store(tmp_path, raw_tas, tas):
    store = tmp_path / "era5.zarr"
    _era5_style(raw_tas).drop_vars("expver").to_zarr(store, consolidated=False)
    da = load_era5(store)
    np.testing.assert_array_equal(da.values, tas.values)
    assert da.dims == ("time", "lat", "lon")
    assert da.lat.attrs["units"] == "degrees_north" and da.lon.attrs["units"] == "degrees_east"


def test_variable_choice(raw_tas):
    two = raw_tas.assign(uas=raw_tas.tas - 273.15)
    with pytest.raises(ValueError, match=r"candidates: \['tas', 'uas'\]"):
        load_era5(two)
    assert load_era5(two, variable="uas").name == "uas"
    assert load_era5(two.assign(t2m=raw_tas.tas)).name == "t2m"  # ERA5's name wins
    with pytest.raises(ValueError, match="no variable 'z'"):
        load_era5(two, variable="z")
    with pytest.raises(ValueError, match="not latitude and longitude"):
        load_era5(two.assign(series=("time", np.arange(12.0))), variable="series")
    with pytest.raises(ValueError, match="latitude/longitude"):
        load_era5(xr.Dataset({"x": (("a", "b"), np.zeros((2, 2)))}))


def test_expver_merge_number_and_singletons(raw_tas, tas):
    ds = _era5_style(raw_tas).drop_vars("expver")
    era5 = ds.t2m.where(ds.valid_time < ds.valid_time[8])  # ERA5 up to month 8
    era5t = ds.t2m.where(ds.valid_time >= ds.valid_time[8])  # ERA5T after
    both = xr.concat([era5, era5t], dim=xr.DataArray(["0001", "0005"], dims="expver", name="expver"))
    merged = load_era5(both.to_dataset(name="t2m"))
    np.testing.assert_array_equal(merged.values, tas.values)

    level = ds.expand_dims(pressure_level=[1000.0])
    np.testing.assert_array_equal(load_era5(level).values, tas.values)

    ensemble = xr.concat([ds.drop_vars("number")] * 2, dim="number")
    with pytest.raises(ValueError, match="number"):
        load_era5(ensemble)


def test_single_field_and_nan(raw_tas):
    field = raw_tas.tas.isel(time=3)  # scalar time coordinate, no time dim
    da = load_era5(field)
    assert da.shape == (1, 96, 192)
    assert da.time.values[0] == raw_tas.time.values[3]
    no_time = field.drop_vars("time")
    assert load_era5(no_time).shape == (1, 96, 192)

    holes = raw_tas.tas.astype("float64").where(raw_tas.lat > -60)  # ocean-only style mask
    out = load_era5(holes.to_dataset())
    assert out.dtype == np.float32
    assert np.isnan(out.sel(lat=slice(None, -60))).all()
    assert np.isfinite(out.sel(lat=slice(-59, None))).all()


def test_months_since_time_units(tmp_path):
    ds = xr.Dataset(
        {"hgt": (("time", "lat", "lon"), np.random.default_rng(0).normal(5500, 100, (3, 4, 8)).astype("f4"))},
        coords={"time": ("time", [0.0, 1.0, 13.0], {"units": "months since 1958-1-1 00:00:00"}),
                "lat": [-60.0, -20.0, 20.0, 60.0], "lon": np.arange(0.0, 360.0, 45.0)},
    )
    path = tmp_path / "months.nc"
    ds.to_netcdf(path)
    da = load_era5(path)
    assert [str(t)[:10] for t in da.time.values] == ["1958-01-01", "1958-02-01", "1959-02-01"]


# ------------------------------------------------------------------------------------------------------------------
# split_by_time
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [3, 4, 7, 12, 100])
def test_split_no_leakage(n):
    rng = np.random.default_rng(n)
    times = np.datetime64("2000-01-01") + rng.permutation(n).astype("timedelta64[D]")  # unsorted on purpose
    da = xr.DataArray(np.zeros((n, 2, 3), "f4"), dims=("time", "lat", "lon"), coords={"time": times})
    train, val, test = split_by_time(da)
    parts = [p.time.values for p in (train, val, test)]
    assert all(len(p) >= 1 for p in parts)
    assert sum(len(p) for p in parts) == n
    assert len(np.unique(np.concatenate(parts))) == n
    assert parts[0].max() < parts[1].min() and parts[1].max() < parts[2].min()
    for p in parts:
        assert np.all(np.diff(p).astype("int64") > 0)  # contiguous blocks in time order


def test_split_sizes_and_errors(tas):
    train, val, test = split_by_time(tas, (0.5, 0.25, 0.25))
    assert (train.sizes["time"], val.sizes["time"], test.sizes["time"]) == (6, 3, 3)
    with pytest.raises(ValueError, match="at least 3"):
        split_by_time(tas.isel(time=slice(0, 2)))
    with pytest.raises(ValueError, match="positive"):
        split_by_time(tas, (1.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="time"):
        split_by_time(tas.isel(time=0))


# ------------------------------------------------------------------------------------------------------------------
# audio, images, volumes
# ------------------------------------------------------------------------------------------------------------------


def _write_wav(path, data: bytes, channels: int, width: int, rate: int = 8000):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(data)


def test_load_audio_formats(tmp_path):
    stereo = np.array([[0, 32767], [-32768, -32768], [16384, 0]], "<i2")
    _write_wav(tmp_path / "s.wav", stereo.tobytes(), 2, 2, 22050)
    x, rate = load_audio(tmp_path / "s.wav")
    assert rate == 22050 and x.dtype == np.float32
    np.testing.assert_allclose(x, [32767 / 65536, -1.0, 0.25], atol=1e-6)

    _write_wav(tmp_path / "u8.wav", bytes([128, 255, 0]), 1, 1)
    np.testing.assert_allclose(load_audio(tmp_path / "u8.wav")[0], [0.0, 127 / 128, -1.0])

    v24 = np.array([0, (1 << 22), -(1 << 23)], "<i4")
    raw24 = b"".join(int(v).to_bytes(3, "little", signed=True) for v in v24)
    _write_wav(tmp_path / "p24.wav", raw24, 1, 3)
    np.testing.assert_allclose(load_audio(tmp_path / "p24.wav")[0], [0.0, 0.5, -1.0])

    (tmp_path / "bad.wav").write_bytes(b"not a wav file at all")
    with pytest.raises(ValueError, match="WAV"):
        load_audio(tmp_path / "bad.wav")


def test_load_image_png(tmp_path):
    import matplotlib.image as mpimg

    img = np.random.default_rng(1).random((5, 7, 3)).astype("f4")
    mpimg.imsave(tmp_path / "a.png", img)
    out = load_image(tmp_path / "a.png")
    assert out.shape == (5, 7, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, img, atol=1 / 255 + 1e-6)
    assert load_image(tmp_path / "a.png", drop_alpha=False).shape == (5, 7, 4)


def test_load_volume_without_nibabel(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "nibabel", None)
    with pytest.raises(ImportError, match="pip install nibabel"):
        load_volume(tmp_path / "x.nii.gz")


def test_load_volume_with_nibabel(tmp_path):
    nib = pytest.importorskip("nibabel")
    vol = np.arange(24, dtype="f4").reshape(2, 3, 4)
    nib.save(nib.Nifti1Image(vol, np.eye(4)), str(tmp_path / "v.nii.gz"))
    np.testing.assert_array_equal(load_volume(tmp_path / "v.nii.gz"), vol)


DATASET_MODULES = (datasets, era5, fileloaders)


def test_docstring_examples_run():
    import doctest

    results = [doctest.testmod(m, optionflags=doctest.ELLIPSIS) for m in DATASET_MODULES]
    assert sum(r.failed for r in results) == 0 and sum(r.attempted for r in results) > 10


@pytest.mark.parametrize("module", DATASET_MODULES, ids=lambda m: m.__name__)
def test_module_has_no_torch(module):
    src = open(module.__file__).read()
    assert "import torch" not in src


# ------------------------------------------------------------------------------------------------------------------
# the climate pool
# ------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pool() -> dict:
    return {split: datasets.climate_pool(split) for split in datasets.CLIMATE_SPLITS}


def test_climate_pool_arrays_are_canonical(pool):
    sources = {s["name"]: s for s in datasets.climate_pool_sources()}
    seen = set()
    for split, arrays in pool.items():
        for da in arrays:
            seen.add(da.attrs["source"])
            assert da.dims == ("time", "lat", "lon") and da.dtype == np.float32, da.name
            for c in ("lat", "lon", "time"):
                assert np.all(np.diff(da[c].values) > np.zeros_like(np.diff(da[c].values))), (da.name, c)
            assert da.lon.values.min() >= -180.0 and da.lon.values.max() < 180.0
            assert da.attrs["units"] == "K" and da.attrs["split"] == split
            assert (resources.files("inrcodec") / "data" / da.attrs["licence"]).is_file()
            finite = da.values[np.isfinite(da.values)]
            assert 180.0 < finite.min() and finite.max() < 340.0, da.name  # kelvin, not deg C
            info = sources[da.attrs["source"]]
            assert da.shape[1:] == info["shape"][1:] and da.sizes["time"] == info["times"][split]
    assert seen == set(sources)
    coads = next(da for da in pool["train"] if da.name == "coads")
    assert 0.3 < float(np.isnan(coads.values).mean()) < 0.6  # land masked as NaN


def test_climate_pool_splits_share_no_validity_time(pool):
    times = {}
    for split, arrays in pool.items():
        for da in arrays:
            times.setdefault(da.attrs["source"], {}).setdefault(split, set()).update(da.time.values.tolist())
    for source, by_split in times.items():
        splits = list(by_split)
        for i, a in enumerate(splits):
            for b in splits[i + 1:]:
                assert not by_split[a] & by_split[b], (source, a, b)
    # time order: train < val < test-time within every training source
    for source, by_split in times.items():
        if "train" in by_split:
            assert max(by_split["train"]) < min(by_split["val"]) and max(by_split["val"]) < min(by_split["test-time"])
    # E1 shares A1B's model: its years may only be A1B's test-time years
    assert times["e1"]["test-source"] <= times["a1b"]["test-time"]


def test_climate_pool_held_out_sources_stay_out(pool):
    held_out = {s["name"] for s in datasets.climate_pool_sources() if s["role"] == "test-source"}
    assert held_out == {"mpi_esm", "e1"}
    assert {da.attrs["source"] for da in pool["test-source"]} == held_out
    for split in ("train", "val", "test-time"):
        assert not {da.attrs["source"] for da in pool[split]} & held_out, split
    with pytest.raises(ValueError, match="split must be one of"):
        datasets.climate_pool("test")
