"""ERA5-style gridded fields in one canonical form, whatever the file looked like, and time splits.

:func:`load_era5` returns

* an ``xr.DataArray`` with dims exactly ``("time", "lat", "lon")``, float32, NaN kept;
* ``lat`` ascending (degrees north), ``lon`` ascending in ``[-180, 180)`` (degrees east);
* ``time`` sorted ascending, no duplicates.

Everything here is numpy + xarray; nothing imports torch.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Union

import numpy as np
import xarray as xr

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
    ds = _rename_axes(ds, label)
    variable = _pick_variable(ds, variable, label)
    da = _drop_extra_dims(ds[variable], variable, label)
    da = _canonical_coords(da, label)
    attrs = dict(da.attrs)
    attrs["source_variable"] = variable
    da = da.astype("float32")
    da.attrs = attrs
    da.name = variable
    return da


def _rename_axes(ds: xr.Dataset, label: str) -> xr.Dataset:
    """``time``, ``lat``, ``lon`` under those names, whatever the file called them."""
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
    return ds


def gridded_variables(source, engine: str | None = None) -> list[str]:
    """The float data variables of ``source`` (a file, store or Dataset) on its lat/lon grid, in file
    order: what ``train-recipe era5 --variable all`` trains (one model each)."""
    items = _as_list(source)
    ds = _rename_axes(_open(items[0], engine), _describe(items[0]))
    return [str(v) for v, a in ds.data_vars.items() if "lat" in a.dims and "lon" in a.dims and a.dtype.kind == "f"]


def _pick_variable(ds: xr.Dataset, variable: str | None, label: str) -> str:
    """The data variable to read: the one asked for, else ``t2m``, else the only gridded one."""
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
    return variable


def _drop_extra_dims(da: xr.DataArray, variable: str, label: str) -> xr.DataArray:
    """Merge a multi-valued ``expver``, squeeze singleton dims, refuse other extra dims."""
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
    return da


def _canonical_coords(da: xr.DataArray, label: str) -> xr.DataArray:
    """Dims ``(time, lat, lon)`` with only those coordinates; lat ascending, lon ascending in
    ``[-180, 180)``; a field without a time dim gets one of length 1."""
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

    # lat ascending, lon in [-180, 180) ascending
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
