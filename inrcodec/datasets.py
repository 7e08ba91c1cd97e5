"""Loaders for real data: ERA5-style netCDF/Zarr fields, the embedded samples, audio, volumes, images.

Everything here is numpy + xarray (plus optional readers); nothing imports torch. This module is
the one place to import them from; they live in :mod:`inrcodec.era5` (gridded fields, time
splits), :mod:`inrcodec.samples` (the data shipped in ``inrcodec/data``) and
:mod:`inrcodec.fileloaders` (audio, volumes, images).

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

from .era5 import PathLike, load_era5, split_by_time  # noqa: F401
from .fileloaders import load_audio, load_image, load_volume
from .samples import (
    CLIMATE_SPLITS, MODALITY_SAMPLES, climate_pool, climate_pool_sources, embedded_audio, embedded_sample,
    embedded_sample_path, embedded_samples, modality_sample_paths,
)

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
    "CLIMATE_SPLITS",
    "MODALITY_SAMPLES",
]
