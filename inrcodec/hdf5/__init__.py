"""COIN++ as an HDF5 filter: plain ``h5py`` and xarray's ``h5netcdf`` engine read and write through it.

Like hdf5plugin, ``import inrcodec.hdf5`` registers the filter (id :data:`FILTER_ID`, name
``inrcodec.coinpp``) with the HDF5 library that h5py uses (and with the netCDF4 wheel's own copy,
when netCDF4 is installed), and :class:`COINpp` is an h5py filter reference. ``import inrcodec`` does not (it does not even import h5py): a process that reads a
filtered dataset must ``import inrcodec.hdf5`` before h5py or xarray reads it::

    import h5py, inrcodec.hdf5 as ih5
    filt = ih5.COINpp(model, bits=6, max_abs_error=0.5, lat=lat, lon=lon)
    with h5py.File("t2m.h5", "w") as f:
        f.create_dataset("t2m", data=x, chunks=(4, nlat, nlon), compression=filt)
        ih5.store_model(f, filt)                       # model + grid travel in the file
    with h5py.File("t2m.h5") as f:                     # any process that imported inrcodec.hdf5
        y = f["t2m"][...]
        ih5.COINpp.of(f["t2m"]).settings               # the options it was written with

    # xarray / h5netcdf
    ds.to_netcdf("t2m.nc", engine="h5netcdf",
                 encoding={"t2m": ih5.xarray_encoding(ds.t2m, model, bits=6, chunks={"time": 4})})
    ih5.store_model("t2m.nc", model, lat=ds.lat, lon=ds.lon)
    xr.open_dataset("t2m.nc", engine="h5netcdf").t2m.values

Modules: :mod:`.layout` (the ``cd_values`` words both ways), :mod:`.filter` (:class:`COINpp`
and the xarray encoding), :mod:`.storage` (models and grids inside files), :mod:`.chunks`
(one chunk through :mod:`inrcodec.chunkcodec`), :mod:`.libhdf5` (ctypes registration).
See ``docs/hdf5.md`` for netCDF4 (its own copy of libhdf5) and an official filter id.
"""

from __future__ import annotations

from inrcodec.hdf5 import libhdf5
from inrcodec.hdf5.filter import COINpp, h5py_kwargs, xarray_encoding
from inrcodec.hdf5.layout import FILTER_ID, FILTER_NAME, FilterParams
from inrcodec.hdf5.libhdf5 import is_registered, register, register_netcdf4
from inrcodec.hdf5.storage import MODELS_GROUP, READ_HINT, load_models, store_model

__all__ = [
    "COINpp", "FilterParams", "FILTER_ID", "FILTER_NAME", "MODELS_GROUP", "READ_HINT", "register",
    "register_netcdf4", "is_registered", "h5py_kwargs", "xarray_encoding", "store_model",
    "load_models", "last_error",
]


def __getattr__(name):
    if name == "last_error":  # the last failure inside the filter; HDF5 only says "filter failed"
        return libhdf5.last_error
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


register()
try:  # netCDF4 loads its own libhdf5: register there too (reading also needs load_models(path))
    register_netcdf4()
except (OSError, RuntimeError) as _exc:  # pragma: no cover - a broken netCDF4 must not break h5py use
    import warnings

    warnings.warn(f"inrcodec.hdf5: could not register the filter with netCDF4's libhdf5: {_exc}", RuntimeWarning,
                  stacklevel=2)
