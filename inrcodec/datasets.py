"""Loaders for real data: ERA5-style netCDF/Zarr fields, the embedded samples, audio, volumes, images.

Everything here is numpy + xarray (plus optional readers); nothing imports torch.

Gridded fields come out of :func:`load_era5` in one canonical form, whatever the file looked like:

* an ``xr.DataArray`` with dims exactly ``("time", "lat", "lon")``, float32, NaN kept;
* ``lat`` ascending (degrees north), ``lon`` ascending in ``[-180, 180)`` (degrees east);
* ``time`` sorted ascending, no duplicates.

>>> from inrcodec.datasets import embedded_sample, split_by_time
>>> tas = embedded_sample("tas")
>>> tas.dims, tas.shape, tas.dtype.name, tas.attrs["units"]
(('time', 'lat', 'lon'), (12, 96, 192), 'float32', 'K')
>>> float(tas.lon[0]), float(tas.lon[-1])
(-180.0, 178.125)
>>> train, val, test = split_by_time(tas)
>>> train.sizes["time"], val.sizes["time"], test.sizes["time"]
(10, 1, 1)
"""

from __future__ import annotations

import os
import wave
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Union

import numpy as np
import xarray as xr

__all__ = [
    "load_era5",
    "split_by_time",
    "embedded_sample",
    "embedded_samples",
    "embedded_sample_path",
    "embedded_audio",
    "climate_pool",
    "climate_pool_sources",
    "load_audio",
    "load_volume",
    "load_image",
    "modality_sample_paths",
]

PathLike = Union[str, "os.PathLike[str]"]

# ---------------------------------------------------------------------------------------------------------------------
# names
# ---------------------------------------------------------------------------------------------------------------------

_TIME_NAMES = ("time", "valid_time", "Time", "TIME", "t")
_LAT_NAMES = ("lat", "latitude", "Latitude", "LATITUDE", "LAT", "Lat", "nav_lat")
_LON_NAMES = ("lon", "longitude", "Longitude", "LONGITUDE", "LON", "Lon", "nav_lon")
# dims that ERA5 files carry and that are meaningless for one field once they have a single value
_ERA5_PREFERRED = "t2m"


# ---------------------------------------------------------------------------------------------------------------------
# ERA5-style gridded fields
# ---------------------------------------------------------------------------------------------------------------------


def load_era5(
    paths_or_dataset: PathLike | xr.Dataset | xr.DataArray | Iterable[PathLike | xr.Dataset | xr.DataArray],
    variable: str | None = None,
    *,
    engine: str | None = None,
) -> xr.DataArray:
    """Load one gridded variable as a float32 ``(time, lat, lon)`` DataArray.

    Parameters
    ----------
    paths_or_dataset
        A netCDF file path (read with the netCDF4 or h5netcdf engine), a Zarr store (a directory, or a path
        ending in ``.zarr``), an ``xr.Dataset`` / ``xr.DataArray``, or a list of any of these. Several inputs
        are concatenated along time (they must share the same lat/lon grid) and sorted by time; duplicate
        time stamps are an error.
    variable
        Name of the data variable. Default: ``t2m`` when present (ERA5's ``2m_temperature``), else the only
        data variable that has both a latitude and a longitude dimension. A ``ValueError`` lists the candidates
        when the choice is ambiguous or the name is unknown.
    engine
        Passed to ``xr.open_dataset`` for netCDF paths (``"netcdf4"``, ``"h5netcdf"``; default: xarray's choice).

    What is normalised
    ------------------
    * names: ``valid_time`` -> ``time``, ``latitude``/``longitude`` -> ``lat``/``lon`` (and a few other spellings);
    * ERA5 extras: ``number`` and ``expver`` are dropped when they are scalar coordinates or singleton dims;
      an ``expver`` dim of several values (ERA5 + ERA5T in one old-CDS download) is merged, first non-NaN wins;
      any other singleton dim (``pressure_level`` of length 1, ``height`` ...) is squeezed away; a dim with
      several values (ensemble ``number``, several levels) is an error: select it first (``ds.sel(...)``);
    * a field without a time dim gets one of length 1 (its scalar ``time`` coordinate, if any, is kept);
    * latitudes are sorted ascending; longitudes are wrapped to ``[-180, 180)`` and sorted ascending
      (so 0..360 and -180..180 inputs give identical arrays); a repeated cyclic column (0 and 360) is dropped;
    * time units xarray cannot decode (``months since ...``, ``years since ...``) are converted to dates;
    * values become float32; fill values are NaN (netCDF ``_FillValue``/``missing_value`` decoding), NaN is kept.

    The variable's attributes (``units``, ``long_name`` ...) are kept; ``attrs["source_variable"]`` names the
    variable read. Non-Dask data are loaded into memory; pass a Dataset opened with ``chunks=`` to stay lazy.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset(
    ...     {"t2m": (("valid_time", "latitude", "longitude"), np.arange(8.0).reshape(1, 2, 4))},
    ...     coords={"valid_time": [np.datetime64("2020-01-01")], "latitude": [10.0, -10.0],
    ...             "longitude": [0.0, 90.0, 180.0, 270.0], "number": 0, "expver": ("valid_time", ["0001"])})
    >>> da = load_era5(ds)
    >>> da.dims, da.dtype.name, da.lat.values.tolist(), da.lon.values.tolist()
    (('time', 'lat', 'lon'), 'float32', [-10.0, 10.0], [-180.0, -90.0, 0.0, 90.0])
    >>> da.sel(lat=10.0, lon=-90.0).item()  # was at longitude 270
    3.0
    """
    items = _as_list(paths_or_dataset)
    if not items:
        raise ValueError("load_era5: no input given")
    arrays = [_standardise(_open(item, engine), variable, _describe(item)) for item in items]
    if len(arrays) == 1:
        da = arrays[0]
    else:
        names = {a.name for a in arrays}
        if len(names) > 1:
            raise ValueError(f"load_era5: the inputs picked different variables {sorted(map(str, names))}; "
                             "pass variable=...")
        try:
            da = xr.concat(arrays, dim="time", join="exact", combine_attrs="override",
                           coords="minimal", compat="override")
        except ValueError as err:
            raise ValueError(f"load_era5: the inputs do not share one lat/lon grid ({err})") from err
    da = da.sortby("time")
    times = da["time"].values
    if len(times) > 1 and len(np.unique(times)) != len(times):
        _, counts = np.unique(times, return_counts=True)
        raise ValueError(f"load_era5: {int((counts > 1).sum())} duplicate time stamp(s) across the inputs "
                         "(overlapping files?)")
    if da.chunks is None:
        da = da.load()
    return da


def _as_list(obj) -> list:
    if isinstance(obj, (str, os.PathLike, xr.Dataset, xr.DataArray)):
        return [obj]
    return list(obj)


def _describe(item) -> str:
    if isinstance(item, (str, os.PathLike)):
        return os.fspath(item)
    return f"<{type(item).__name__}>"


def _open(item, engine: str | None) -> xr.Dataset:
    if isinstance(item, xr.DataArray):
        return item.to_dataset(name=item.name if item.name is not None else "data")
    if isinstance(item, xr.Dataset):
        return item
    path = Path(os.fspath(item))
    if not path.exists():
        raise FileNotFoundError(f"load_era5: no such file or store: {path}")
    if path.is_dir() or path.suffix == ".zarr":
        opener = lambda **kw: xr.open_zarr(path, **kw)  # noqa: E731
    else:
        opener = lambda **kw: xr.open_dataset(path, engine=engine, **kw)  # noqa: E731
    try:
        return opener()
    except ValueError as err:  # undecodable times ("months since ...") -> decode them ourselves
        if "time" not in str(err).lower() and "calendar" not in str(err).lower():
            raise
        ds = opener(decode_times=False)
        return _decode_calendar_units(ds)


def _decode_calendar_units(ds: xr.Dataset) -> xr.Dataset:
    """Decode ``months since``/``years since`` time axes (which CF and xarray refuse) to datetime64."""
    for name in list(ds.variables):
        var = ds[name]
        units = str(var.attrs.get("units", ""))
        parts = units.split(" since ")
        if len(parts) != 2 or parts[0].strip().lower() not in ("months", "month", "years", "year"):
            continue
        steps = np.asarray(var.values, dtype="float64")
        if not np.all(np.isfinite(steps)) or not np.allclose(steps, np.round(steps)):
            raise ValueError(f"load_era5: cannot decode fractional '{units}' on {name!r}")
        origin = np.datetime64(_parse_origin(parts[1]), "M")
        per = 12 if parts[0].strip().lower().startswith("year") else 1
        dates = (origin + (np.round(steps).astype("int64") * per).astype("timedelta64[M]")).astype("datetime64[ns]")
        attrs = {k: v for k, v in var.attrs.items() if k not in ("units", "calendar")}
        attrs["original_units"] = units
        ds = ds.assign_coords({name: (var.dims, dates, attrs)}) if name in ds.coords else ds.assign(
            {name: (var.dims, dates, attrs)})
    try:  # the other time variables (bounds, a second axis) in their ordinary CF units
        ds = xr.decode_cf(ds, mask_and_scale=False)
    except ValueError:
        pass
    return ds


def _parse_origin(text: str) -> str:
    """'1958-1-1 00:00:00' -> '1958-01'."""
    date = text.strip().split()[0].split("T")[0]
    pieces = date.split("-")
    year = int(pieces[0])
    month = int(pieces[1]) if len(pieces) > 1 else 1
    return f"{year:04d}-{month:02d}"


def _find(ds: xr.Dataset, names: tuple[str, ...]) -> str | None:
    for n in names:
        if n in ds.dims or n in ds.coords:
            return n
    return None


def _standardise(ds: xr.Dataset, variable: str | None, label: str) -> xr.DataArray:
    # 1. names
    renames = {}
    for target, names in (("time", _TIME_NAMES), ("lat", _LAT_NAMES), ("lon", _LON_NAMES)):
        found = _find(ds, names)
        if found is None or found == target:
            continue
        if target in ds.variables and target not in ds.dims:  # e.g. a scalar 'time' beside a 'valid_time' dim
            ds = ds.drop_vars(target)
        renames[found] = target
    if renames:
        ds = ds.rename(renames)
    if "lat" not in ds.dims or "lon" not in ds.dims:
        raise ValueError(f"load_era5: {label} has no 1-D latitude/longitude dims (dims: {dict(ds.sizes)}); "
                         f"expected one of {_LAT_NAMES} and one of {_LON_NAMES}")

    # 2. variable
    gridded = [str(v) for v, a in ds.data_vars.items() if "lat" in a.dims and "lon" in a.dims]
    if variable is None:
        if _ERA5_PREFERRED in gridded:
            variable = _ERA5_PREFERRED
        elif len(gridded) == 1:
            variable = gridded[0]
        else:
            raise ValueError(f"load_era5: cannot choose a variable in {label}: "
                             f"{'several' if gridded else 'no'} data variables on the lat/lon grid "
                             f"(candidates: {gridded}; all data variables: {sorted(map(str, ds.data_vars))}); "
                             "pass variable=...")
    elif variable not in ds.data_vars:
        raise ValueError(f"load_era5: no variable {variable!r} in {label} "
                         f"(candidates: {gridded}; all data variables: {sorted(map(str, ds.data_vars))})")
    elif variable not in gridded:
        raise ValueError(f"load_era5: variable {variable!r} in {label} has dims {ds[variable].dims}, "
                         f"not latitude and longitude (candidates: {gridded})")
    da = ds[variable]

    # 3. extra dims: merge multi-valued expver, squeeze singletons, refuse the rest
    if "expver" in da.dims and da.sizes["expver"] > 1:
        merged = da.isel(expver=0, drop=True)
        for i in range(1, da.sizes["expver"]):
            merged = merged.combine_first(da.isel(expver=i, drop=True))
        da = merged
    for dim in [d for d in da.dims if d not in ("time", "lat", "lon")]:
        if da.sizes[dim] == 1:
            da = da.isel({dim: 0}, drop=True)
        else:
            raise ValueError(f"load_era5: variable {variable!r} in {label} has an extra dim {dim!r} of size "
                             f"{da.sizes[dim]}; select one value first, e.g. ds.sel({dim}=...)")

    # 4. time
    if "time" not in da.dims:
        if "time" in da.coords and da["time"].ndim == 0:
            da = da.expand_dims("time")
        else:
            da = da.expand_dims(time=[np.datetime64("NaT", "ns")])
    # keep only the three index coordinates (drops number, expver, height, surface ...)
    da = da.reset_coords(drop=True)
    for c in list(da.coords):
        if c not in ("time", "lat", "lon"):
            da = da.drop_vars(c)
    da = da.transpose("time", "lat", "lon")
    for c in ("lat", "lon"):
        if c not in da.coords:
            raise ValueError(f"load_era5: {label} has a {c!r} dim without coordinate values")

    # 5. lat ascending, lon in [-180, 180) ascending
    lon = np.asarray(da["lon"].values, dtype="float64")
    wrapped = ((lon + 180.0) % 360.0) - 180.0
    wrapped = np.where(np.isclose(wrapped, 180.0), -180.0, wrapped)
    da = da.assign_coords(lon=wrapped, lat=np.asarray(da["lat"].values, dtype="float64"))
    _, first = np.unique(np.round(wrapped, 9), return_index=True)
    if len(first) != len(wrapped):  # a cyclic point (0 and 360) -> keep the first occurrence
        da = da.isel(lon=np.sort(first))
    da = da.sortby("lat").sortby("lon")
    da["lat"].attrs = {"standard_name": "latitude", "long_name": "latitude", "units": "degrees_north"}
    da["lon"].attrs = {"standard_name": "longitude", "long_name": "longitude", "units": "degrees_east",
                       "comment": "wrapped to [-180, 180) and sorted by inrcodec.datasets.load_era5"}

    # 6. float32, attrs
    attrs = dict(da.attrs)
    attrs["source_variable"] = variable
    da = da.astype("float32")
    da.attrs = attrs
    da.name = variable
    return da


def split_by_time(
    da: xr.DataArray | xr.Dataset, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> tuple:
    """Split along ``time`` into contiguous (train, val, test) blocks, in time order, without overlap.

    The data are sorted by time first. Each block has at least one step (so ``len(time) >= 3`` is required);
    the validation and test sizes are ``round(n * fraction)`` (at least 1) and training gets the rest.

    >>> import numpy as np, xarray as xr
    >>> da = xr.DataArray(np.zeros((10, 2, 2)), dims=("time", "lat", "lon"), coords={"time": np.arange(10)})
    >>> [part.time.values.tolist() for part in split_by_time(da, (0.6, 0.2, 0.2))]
    [[0, 1, 2, 3, 4, 5], [6, 7], [8, 9]]
    """
    if "time" not in da.dims:
        raise ValueError(f"split_by_time: no 'time' dim (dims: {tuple(da.dims)})")
    f = np.asarray(fractions, dtype="float64")
    if f.shape != (3,) or not np.all(np.isfinite(f)) or np.any(f <= 0):
        raise ValueError(f"split_by_time: fractions must be three positive numbers, got {fractions!r}")
    f = f / f.sum()
    n = int(da.sizes["time"])
    if n < 3:
        raise ValueError(f"split_by_time: need at least 3 time steps for non-empty train/val/test, got {n}")
    if "time" in da.coords:
        da = da.sortby("time")
    n_val = max(1, int(round(n * f[1])))
    n_test = max(1, int(round(n * f[2])))
    while n - n_val - n_test < 1:  # tiny n: give training at least one step
        if n_val >= n_test:
            n_val -= 1
        else:
            n_test -= 1
    n_train = n - n_val - n_test
    return (
        da.isel(time=slice(0, n_train)),
        da.isel(time=slice(n_train, n_train + n_val)),
        da.isel(time=slice(n_train + n_val, n)),
    )


# ---------------------------------------------------------------------------------------------------------------------
# embedded samples
# ---------------------------------------------------------------------------------------------------------------------

_SAMPLES: Mapping[str, dict] = {
    "tas": {
        "kind": "grid",
        "file": "tas_mpi_esm_lr_2005.nc",
        "description": "near-surface air temperature (K), MPI-ESM-LR CMIP5 historical, monthly means of 2005; "
                       "12 x 96 x 192 (T63 Gaussian grid); from Debian libncarg-data (UCAR BSD-style licence)",
    },
    "hgt500": {
        "kind": "grid",
        "file": "hgt500_1958_1977.nc",
        "description": "500 hPa geopotential height (m), 2.5 degree global grid, Jan 1958 and every February "
                       "1958-1977; 21 x 73 x 144; from Debian libncarg-data (UCAR BSD-style licence)",
    },
    "arctic_a0007": {
        "kind": "audio",
        "file": "arctic_a0007.wav",
        "description": "4 s of read English speech (CMU ARCTIC, speaker awb, utterance a0007), mono 16 kHz "
                       "16-bit; from PyPI pysptk 1.0.1 (CMU ARCTIC licence, free for any use)",
    },
}


def embedded_samples(kind: str | None = None) -> dict[str, str]:
    """Names of the samples shipped in ``inrcodec/data`` with one-line descriptions.

    ``kind``: ``"grid"`` (load with :func:`embedded_sample`), ``"audio"`` (:func:`embedded_audio`) or None (all).

    >>> sorted(embedded_samples("grid"))
    ['hgt500', 'tas']
    >>> list(embedded_samples("audio"))
    ['arctic_a0007']
    """
    if kind not in (None, "grid", "audio"):
        raise ValueError(f"embedded_samples: kind must be None, 'grid' or 'audio', got {kind!r}")
    return {k: v["description"] for k, v in _SAMPLES.items() if kind is None or v["kind"] == kind}


def embedded_sample_path(name: str = "tas") -> Path:
    """Filesystem path of a shipped sample (for ``--data`` options and tools that want a file name).

    >>> embedded_sample_path("tas").name
    'tas_mpi_esm_lr_2005.nc'
    """
    if name not in _SAMPLES:
        raise ValueError(f"unknown embedded sample {name!r}; available: {embedded_samples()}")
    ref = resources.files("inrcodec").joinpath("data", _SAMPLES[name]["file"])
    path = Path(os.fspath(ref)) if isinstance(ref, os.PathLike) else None
    if path is None or not path.is_file():
        raise FileNotFoundError(f"embedded sample {name!r} is not on the filesystem ({ref}); "
                                "use embedded_sample()/embedded_audio(), which read it through importlib.resources")
    return path


def _read_resource(name: str, reader):
    ref = resources.files("inrcodec").joinpath("data", _SAMPLES[name]["file"])
    with resources.as_file(ref) as path:
        return reader(path)


def embedded_sample(name: str = "tas") -> xr.DataArray:
    """A shipped gridded sample, through :func:`load_era5` (so ``(time, lat, lon)``, float32, lon in [-180, 180)).

    >>> da = embedded_sample("hgt500")
    >>> da.shape, da.attrs["units"], str(da.time.values[-1])[:10]
    ((21, 73, 144), 'm', '1977-02-01')
    """
    if name not in _SAMPLES or _SAMPLES[name]["kind"] != "grid":
        hint = " (an audio sample: use embedded_audio)" if name in _SAMPLES else ""
        raise ValueError(f"unknown gridded sample {name!r}{hint}; available: {embedded_samples('grid')}")

    def reader(path):
        with xr.open_dataset(path) as ds:
            return load_era5(ds.load())

    return _read_resource(name, reader)


def embedded_audio(name: str = "arctic_a0007") -> tuple[np.ndarray, int]:
    """A shipped audio sample as ``(samples float32 in [-1, 1], sample_rate)``.

    >>> x, rate = embedded_audio()
    >>> x.shape, x.dtype.name, rate
    ((64000,), 'float32', 16000)
    """
    if name not in _SAMPLES or _SAMPLES[name]["kind"] != "audio":
        raise ValueError(f"unknown audio sample {name!r}; available: {embedded_samples('audio')}")
    return _read_resource(name, load_audio)


# ---------------------------------------------------------------------------------------------------------------------
# the climate pool (near-surface temperature from several sources, split by validity time and by source)
# ---------------------------------------------------------------------------------------------------------------------

CLIMATE_SPLITS = ("train", "val", "test-time", "test-source")

# Files under inrcodec/data/climate/ (built by scripts/make_climate_pool.py; each carries a per-time ``split``
# coordinate). Held-out sources ("test-source") are never part of train/val/test-time.
_CLIMATE_SOURCES: Mapping[str, dict] = {
    "glosea4": {"file": "climate/glosea4_ts.nc", "held_out": False, "licence": "LICENSE-iris-sample-data.txt",
                "description": "GloSea4 seasonal forecast, monthly mean surface (skin) temperature, 13 members, "
                               "validity months 2011-08..2012-01, global 1.25 x 1.875 degrees (Met Office, OGL)"},
    "a1b": {"file": "climate/a1b_tas.nc", "held_out": False, "licence": "LICENSE-iris-sample-data.txt",
            "description": "Met Office climate run, SRES A1B, annual mean 1.5 m air temperature 1860-2099, "
                           "North America 1.25 x 1.875 degrees (OGL)"},
    "coads": {"file": "climate/coads_airt.nc", "held_out": False, "licence": "LICENSE-ferret-datasets.txt",
              "description": "COADS monthly climatology of marine air temperature, global 2 degrees, "
                             "ocean only (NaN over land) (NOAA/PMEL Ferret data)"},
    "ncep": {"file": "climate/ncep_air.nc", "held_out": False, "licence": "LICENSE-hvsampledata.txt",
             "description": "NCEP/NCAR Reanalysis 1, 6-hourly air temperature at sigma 0.995, 2014-02-24..28, "
                            "North America 2.5 degrees (NOAA PSL)"},
    "e1": {"file": "climate/e1_tas.nc", "held_out": True, "licence": "LICENSE-iris-sample-data.txt",
           "description": "same Met Office model as a1b, E1 scenario, annual means 2076-2099 (inside a1b's "
                          "test-time years), North America 1.25 x 1.875 degrees (OGL); held out by source"},
    "mpi_esm": {"file": "tas_mpi_esm_lr_2005.nc", "held_out": True, "licence": "LICENSE-libncarg-data.txt",
                "description": "MPI-ESM-LR CMIP5 historical, monthly mean near-surface air temperature 2005, "
                               "global T63 (about 1.87 degrees) (UCAR BSD-style); held out by source"},
}


def _open_climate_source(name: str) -> xr.Dataset:
    """The stored file of one pool source, loaded into memory, with a ``split`` label on every time step."""
    ref = resources.files("inrcodec").joinpath("data", *_CLIMATE_SOURCES[name]["file"].split("/"))
    with resources.as_file(ref) as path, xr.open_dataset(path) as ds:
        ds = ds.load()
    if "split" not in ds.coords:  # a shipped sample that is held out as a whole
        ds = ds.assign_coords(split=("time", np.full(ds.sizes["time"], "test-source")))
    return ds


def _climate_arrays(name: str, ds: xr.Dataset) -> list[xr.DataArray]:
    """Canonical (time, lat, lon) arrays of one source: one per ensemble member where there are members."""
    info = _CLIMATE_SOURCES[name]
    members = ds["member"].values.tolist() if "member" in ds.dims else [None]
    out = []
    for m in members:
        part = ds if m is None else ds.sel(member=m)
        da = load_era5(part)
        da.name = name if m is None else f"{name}_m{int(m):03d}"
        da.attrs.update({"source": name, "licence": info["licence"], "licence_summary": str(ds.attrs.get(
            "licence", ds.attrs.get("license", ""))), "institution": str(ds.attrs.get("institution", ""))})
        if m is not None:
            da.attrs["member"] = int(m)
        out.append(da)
    return out


def climate_pool(split: str) -> list[xr.DataArray]:
    """The shipped near-surface temperature pool for one split, as canonical ``(time, lat, lon)`` float32 arrays.

    ``split``: ``"train"``, ``"val"``, ``"test-time"`` (training sources, later validity times than val) or
    ``"test-source"`` (sources never in train/val: MPI-ESM-LR ``tas`` and the E1 subset). Within a source the
    splits are contiguous blocks of validity times (about 70/15/15) and share no validity time. GloSea4 gives
    one array per ensemble member (named ``glosea4_m000`` ...): its members share validity times, and all
    members of one month are in the same split. Every array has ``.name`` and attrs ``source``, ``licence``
    (the licence file in ``inrcodec/data``), ``split``; masked points (COADS land) are NaN.
    Settings are chosen on ``"val"``; both test splits stay untouched until the final measurement.

    >>> [(da.name, da.shape) for da in climate_pool("test-source")]
    [('e1', (24, 37, 49)), ('mpi_esm', (12, 96, 192))]
    >>> train = climate_pool("train")
    >>> len(train), sorted({da.attrs["source"] for da in train})
    (16, ['a1b', 'coads', 'glosea4', 'ncep'])
    """
    if split not in CLIMATE_SPLITS:
        raise ValueError(f"climate_pool: split must be one of {CLIMATE_SPLITS}, got {split!r}")
    out = []
    for name in _CLIMATE_SOURCES:
        ds = _open_climate_source(name)
        keep = ds["split"].values.astype(str) == split
        if not keep.any():
            continue
        for da in _climate_arrays(name, ds.isel(time=np.flatnonzero(keep))):
            da.attrs["split"] = split
            out.append(da)
    return out


def climate_pool_sources() -> list[dict]:
    """One dict per pool source: name, role, description, licence, grid spacing, shape and split sizes.

    ``dlat``/``dlon`` are the median spacings in degrees; ``shape`` is ``(time, lat, lon)`` of one array (per
    member for GloSea4); ``members`` counts the arrays; ``times`` counts the validity times in each split.

    >>> info = {s["name"]: s for s in climate_pool_sources()}
    >>> info["glosea4"]["shape"], info["glosea4"]["members"], info["glosea4"]["times"]
    ((6, 145, 192), 13, {'train': 4, 'val': 1, 'test-time': 1, 'test-source': 0})
    >>> info["mpi_esm"]["role"], info["coads"]["dlat"]
    ('test-source', 2.0)
    """
    out = []
    for name, info in _CLIMATE_SOURCES.items():
        ds = _open_climate_source(name)
        first = _climate_arrays(name, ds)[0]
        labels = ds["split"].values.astype(str)
        out.append({
            "name": name,
            "role": "test-source" if info["held_out"] else "train/val/test-time",
            "description": info["description"],
            "licence": info["licence"],
            "file": info["file"],
            "dlat": float(np.median(np.diff(first["lat"].values))),
            "dlon": float(np.median(np.diff(first["lon"].values))),
            "lat_range": (float(first["lat"].values[0]), float(first["lat"].values[-1])),
            "lon_range": (float(first["lon"].values[0]), float(first["lon"].values[-1])),
            "shape": tuple(int(n) for n in first.shape),
            "members": int(ds.sizes.get("member", 1)),
            "times": {s: int((labels == s).sum()) for s in CLIMATE_SPLITS},
        })
    return out


# ---------------------------------------------------------------------------------------------------------------------
# other modalities
# ---------------------------------------------------------------------------------------------------------------------


def load_audio(path: PathLike) -> tuple[np.ndarray, int]:
    """Read an audio file as ``(mono float32 samples in [-1, 1], sample_rate)``.

    Any format libsndfile reads (WAV, FLAC, OGG/Vorbis, MP3 ...) through ``soundfile`` (``pip install
    'inrcodec[audio]'``). Without soundfile, PCM WAV is still read with the stdlib ``wave`` module (8-bit unsigned,
    16-, 24- and 32-bit integer). Several channels are averaged to mono; integers are scaled by ``2**(bits-1)``
    (int16 -32768 -> -1.0). A ``.npy`` file holding a 1-D float array is also accepted (sample rate from a
    ``<name>.rate`` side file, else 16000).

    >>> import tempfile, wave, numpy as np, os
    >>> p = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> with wave.open(p, "wb") as w:
    ...     w.setnchannels(1); w.setsampwidth(2); w.setframerate(8000)
    ...     w.writeframes(np.array([0, 16384, -32768], "<i2").tobytes())
    >>> x, rate = load_audio(p)
    >>> x.tolist(), rate
    ([0.0, 0.5, -1.0], 8000)
    """
    path = Path(os.fspath(path))
    if path.suffix == ".npy":
        x = np.load(path, allow_pickle=False).astype("float32")
        if x.ndim == 2:
            x = x.mean(axis=1, dtype="float32")
        rate_file = path.with_suffix(".rate")
        rate = int(rate_file.read_text().strip()) if rate_file.exists() else 16000
        return np.clip(x, -1.0, 1.0).astype("float32"), rate
    try:
        import soundfile
    except ImportError:
        if path.suffix.lower() != ".wav":
            raise ImportError(f"load_audio: reading {path.suffix or 'this'} files needs soundfile: "
                              "pip install 'inrcodec[audio]' (or pip install soundfile)") from None
        return _load_wav_stdlib(path)
    if not path.exists():
        raise FileNotFoundError(f"load_audio: no such file: {path}")
    try:
        x, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as err:
        raise ValueError(f"load_audio: cannot read {path}: not an audio file libsndfile reads "
                         f"(WAV, FLAC, OGG, MP3 ...): {err}") from err
    x = x.mean(axis=1, dtype="float32") if x.shape[1] > 1 else x[:, 0]
    return np.clip(x, -1.0, 1.0).astype("float32"), int(rate)


def _load_wav_stdlib(path: Path) -> tuple[np.ndarray, int]:
    """PCM WAV through the stdlib ``wave`` module, for installs without soundfile."""
    try:
        with wave.open(str(path), "rb") as w:
            channels, width, rate, frames = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            raw = w.readframes(frames)
    except wave.Error as err:
        raise ValueError(f"load_audio: {path} is not a PCM WAV file the stdlib can read ({err}); "
                         "pip install 'inrcodec[audio]' to read other formats") from err
    if width == 1:
        x = (np.frombuffer(raw, dtype="u1").astype("float32") - 128.0) / 128.0
    elif width in (2, 4):
        x = (np.frombuffer(raw, dtype=f"<i{width}").astype("float64") / float(1 << (8 * width - 1))).astype("float32")
    elif width == 3:  # little-endian 24-bit: sign-extend into int32
        b = np.frombuffer(raw, dtype="u1").reshape(-1, 3)
        v = np.pad(b, ((0, 0), (1, 0))).copy().view("<i4").ravel() >> 8
        x = v.astype("float32") / float(1 << 23)
    else:
        raise ValueError(f"load_audio: unsupported sample width {width} bytes in {path}")
    if channels > 1:
        x = x.reshape(-1, channels).mean(axis=1, dtype="float32")
    return np.clip(x, -1.0, 1.0).astype("float32"), int(rate)


def load_volume(path: PathLike) -> np.ndarray:
    """Read a 3-D volume as float32: NIfTI (``.nii``/``.nii.gz``, scaling slope/intercept applied) through nibabel,
    or a ``.npy`` array. The array is returned in the file's voxel order (no reorientation).

    NIfTI needs nibabel (``pip install 'inrcodec[mri]'``); without it this raises ImportError saying so.

    >>> vol = load_volume(modality_sample_paths("mri")["train"][0])  # doctest: +SKIP
    >>> vol.shape, vol.dtype.name  # doctest: +SKIP
    ((80, 96, 80), 'float32')
    """
    path = Path(os.fspath(path))
    if path.suffix == ".npy":
        return np.asarray(np.load(path, allow_pickle=False), dtype=np.float32)
    try:
        import nibabel
    except ImportError as err:
        raise ImportError("load_volume needs nibabel to read NIfTI files: pip install 'inrcodec[mri]' "
                          "(or pip install nibabel)") from err
    try:
        img = nibabel.load(os.fspath(path))
    except nibabel.filebasedimages.ImageFileError as err:
        raise ValueError(f"load_volume: {path} is not a volume nibabel reads: {err}") from err
    vol = np.asarray(img.get_fdata(dtype=np.float32), dtype=np.float32)
    if vol.ndim == 4 and vol.shape[3] == 1:
        vol = vol[..., 0]
    if vol.ndim != 3:
        raise ValueError(f"load_volume: {path} holds a {vol.ndim}-D array {vol.shape}; expected a 3-D volume")
    return vol


def load_image(path: PathLike, *, drop_alpha: bool = True) -> np.ndarray:
    """Read an image (PNG, JPEG, and whatever else Pillow reads) as float32 in [0, 1], ``(H, W)`` or ``(H, W, C)``.

    8-bit images are divided by 255, 16-bit ones by 65535; palette images become RGB(A). With ``drop_alpha`` an RGBA
    image becomes RGB (and grey+alpha becomes grey). Pillow comes with matplotlib, a dependency.

    >>> import tempfile, os, numpy as np
    >>> from PIL import Image
    >>> p = os.path.join(tempfile.mkdtemp(), "g.png")
    >>> Image.fromarray(np.array([[0, 51], [204, 255]], np.uint8)).save(p)
    >>> load_image(p).tolist()
    [[0.0, 0.20000000298023224], [0.800000011920929, 1.0]]
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(os.fspath(path)) as img:
            img.load()
            if img.mode == "P":
                img = img.convert("RGBA" if "transparency" in img.info else "RGB")
            elif img.mode in ("1", "CMYK", "YCbCr", "LAB", "HSV"):
                img = img.convert("L" if img.mode == "1" else "RGB")
            arr = np.asarray(img)
    except UnidentifiedImageError as err:
        raise ValueError(f"load_image: {path} is not an image Pillow reads: {err}") from err
    if np.issubdtype(arr.dtype, np.integer):
        arr = arr.astype("float64") / (255.0 if arr.dtype == np.uint8 else 65535.0)  # 16-bit: I;16 or I
    img = arr.astype("float32")
    if drop_alpha and img.ndim == 3 and img.shape[2] in (2, 4):
        img = img[..., :-1]
        if img.shape[2] == 1:
            img = img[..., 0]
    return np.clip(img, 0.0, 1.0)


# ---------------------------------------------------------------------------------------------------------------------
# shipped image, speech and MRI samples (scripts/build_modality_samples.py; licences in inrcodec/data/LICENSE-*)
# ---------------------------------------------------------------------------------------------------------------------

MODALITY_SAMPLES: Mapping[str, dict] = {
    "image": {
        "dir": "images",
        "splits": {"train": "train/*.png", "val": "val/*.png", "test": "test/*.png"},
        "source": "22 OpenCV sample photographs (Debian opencv-doc 4.6.0), grey 256 x 256; different photographs "
                  "per split; Apache-2.0 AND BSD-3-Clause (inrcodec/data/LICENSE-opencv-samples.txt)",
    },
    "audio": {
        "dir": "speech",
        "splits": {"train": "train_en.flac", "val": "val_es.flac", "test": "test_fr.flac"},
        "source": "Asterisk core sound prompts (Debian asterisk-core-sounds-*-g722 1.6.1), 16 kHz: train 60 s English "
                  "(Allison Smith), validation 12 s Spanish (same speaker), test 20 s French (June Wallack); "
                  "CC-BY-SA-3.0 (inrcodec/data/LICENSE-asterisk-core-sounds.txt)",
    },
    "mri": {
        "dir": "mri",
        "splits": {"train": "colin27_2mm.nii.gz", "val": "mni152_2009a_2mm.nii.gz",
                   "test": "mni152_2009a_2mm.nii.gz"},
        "source": "T1 brain MRI at 2 mm, 80 x 96 x 80 (axial slices first): train Colin27 (Debian mricron-data, "
                  "BSD-3-clause), validation the inferior and test the superior slabs of the MNI ICBM152 2009a "
                  "template (nilearn wheel; MNI permissive terms) (inrcodec/data/LICENSE-mri.txt)",
    },
}


def modality_sample_paths(modality: str) -> dict[str, list[Path]]:
    """Files of a shipped image/speech/MRI sample by split: ``{"train": [...], "val": [...], "test": [...]}``.

    >>> {k: [p.name for p in v] for k, v in modality_sample_paths("audio").items()}
    {'train': ['train_en.flac'], 'val': ['val_es.flac'], 'test': ['test_fr.flac']}
    >>> len(modality_sample_paths("image")["train"])
    15
    """
    if modality not in MODALITY_SAMPLES:
        raise ValueError(f"unknown modality sample {modality!r}; available: {sorted(MODALITY_SAMPLES)}")
    spec = MODALITY_SAMPLES[modality]
    root = Path(os.fspath(resources.files("inrcodec").joinpath("data", spec["dir"])))
    out = {split: sorted(root.glob(pattern)) for split, pattern in spec["splits"].items()}
    empty = [k for k, v in out.items() if not v]
    if empty:
        raise FileNotFoundError(f"shipped {modality} sample incomplete under {root}: no files for {empty}")
    return out
