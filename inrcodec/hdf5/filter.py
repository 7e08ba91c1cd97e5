"""``COINpp``: the filter as an h5py filter reference (the hdf5plugin convention).

An instance holds a model and a :class:`~inrcodec.settings.CodecSettings` and owns the
``cd_values`` both ways: ``COINpp(model, **options).filter_options`` are the words written into
the dataset's filter pipeline, and :meth:`COINpp.parse_options` / :meth:`COINpp.of` read them
back (:mod:`.layout` is the byte layout).
"""

from __future__ import annotations

from typing import Any

import h5py
import numpy as np

from inrcodec.codec import COINppCodec
from inrcodec.hdf5 import layout, storage
from inrcodec.hdf5.layout import FILTER_ID, FilterParams
from inrcodec.settings import CodecSettings

__all__ = ["COINpp", "h5py_kwargs", "xarray_encoding"]


class COINpp(h5py.filters.FilterRefBase):
    """The COIN++ HDF5 filter for ``h5py.Group.create_dataset``.

    ``model`` is anything :func:`inrcodec.models.modelstore.load` takes (a CoinModel, a model file or
    directory, a shipped model name, model bytes) or a :class:`~inrcodec.COINppCodec`, whose
    settings are then the default. Options are :class:`~inrcodec.settings.CodecSettings` fields,
    as keywords or as ``settings=``. Spherical models need ``lat``/``lon`` (the dataset's
    coordinates) or ``assume_global_grid=True``::

        f.create_dataset("t2m", data=x, chunks=(4, nlat, nlon),
                         compression=COINpp(model, bits=6, lat=lat, lon=lon))
        f.create_dataset("t2m", data=x, chunks=..., **COINpp(model, bits=6, lat=lat, lon=lon))
    """

    filter_name = "inrcodec.coinpp"
    filter_id = FILTER_ID

    def __init__(self, model: Any, settings: CodecSettings | None = None, **options: Any):
        if isinstance(model, COINppCodec) and settings is None and not options:
            codec = model  # its model and settings: the codec it is, not a second one from its bytes
        else:
            codec = COINppCodec(model.stored if isinstance(model, COINppCodec) else model, settings, **options)
        codec.settings.check_model(codec.model, encoding=True)  # a filter is made to write
        #: the :class:`~inrcodec.COINppCodec` of this model and these settings (model, hash, bytes)
        self.codec = codec
        s = codec.settings
        gid = None if s.lat is None else storage.remember_grid(s.lat, s.lon)
        self.filter_options = FilterParams(codec.model_sha256, s, gid).to_cd_values()

    @property
    def settings(self) -> CodecSettings:
        return self.codec.settings

    def __repr__(self) -> str:
        return f"COINpp({self.codec!r})"

    @staticmethod
    def parse_options(cd_values) -> FilterParams:
        """What ``cd_values`` (this filter's, any layout version) say: model hash, settings
        without lat/lon, grid id, and the chunk layout once HDF5 has appended it."""
        return layout.parse(cd_values)

    @classmethod
    def of(cls, dataset) -> "COINpp":
        """The filter of an h5py ``dataset``, with its model and grid (from this process, else
        from the dataset's file): ``COINpp.of(f["t2m"]).settings`` are the options it was written with."""
        dcpl = dataset.id.get_create_plist()
        for i in range(dcpl.get_nfilters()):
            fid, _, cd, _ = dcpl.get_filter(i)
            if fid == FILTER_ID:
                params = layout.parse(cd)
                settings = params.settings
                if params.grid_id is not None:
                    lat, lon = storage.find_grid(params.grid_id)
                    settings = settings.replace(lat=lat, lon=lon)
                return cls(storage.find_model(params.model_sha256), settings)
        raise ValueError(f"dataset {dataset.name} does not use the inrcodec filter (id {FILTER_ID})")


def h5py_kwargs(model: Any, **options: Any) -> dict[str, Any]:
    """``{"compression": FILTER_ID, "compression_opts": cd_values}``: same as ``**COINpp(model, **options)``."""
    return dict(COINpp(model, **options))


def xarray_encoding(da, model: Any, *, chunks: Any = None, **options: Any) -> dict[str, Any]:
    """The ``encoding`` entry for ``da`` in ``ds.to_netcdf(path, engine="h5netcdf", encoding=...)``.

    Chunks, lat/lon and ``fill_value`` are chosen as by :meth:`COINppCodec.for_dataarray`
    (spherical models: each chunk spans the whole lat/lon extent). ``_FillValue`` is
    ``fill_value`` when set (xarray writes missing values as it, the codec restores it exactly),
    else NaN (missing values reach the codec as NaN and are masked out of the fit).
    """
    enc = COINppCodec.for_dataarray(da, model, zarr_format=3, chunks=chunks, **options)
    filt = COINpp(enc["serializer"])  # the codec for_dataarray made
    fill = filt.settings.fill_value
    return {"compression": FILTER_ID, "compression_opts": filt.filter_options, "chunksizes": tuple(enc["chunks"]),
            "_FillValue": np.nan if fill is None else fill}
