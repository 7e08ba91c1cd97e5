"""What a DataArray decides of its COIN++ codec (behind ``COINppCodec.for_dataarray``).

:func:`settings_for_data` takes the request's :class:`~inrcodec.settings.CodecSettings` and sets
the fields the data decides: uniform chunks, lat/lon from the coordinates of spherical models,
the Zarr 2 chunk layout and the fill value; :func:`encoding_entry` is the entry around the codec,
``{"serializer": codec, ...}`` for Zarr 3 or ``{"compressors": [codec], ...}`` for Zarr 2. The
codec builds itself between the two, so this module needs neither it nor its class.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from inrcodec.settings import CodecSettings

__all__ = ["settings_for_data", "encoding_entry", "uniform_chunks"]


def uniform_chunks(da, chunks) -> tuple[int, ...]:
    """One chunk shape for ``da``: ``chunks`` (tuple or dim -> size), else the encoding's, else
    the dask chunks (which must be uniform), else the whole array."""
    dims = tuple(da.dims)
    shape = tuple(int(s) for s in da.shape)
    if chunks is None:
        chunks = da.encoding.get("chunks")
    if chunks is None and da.chunks is not None:
        out = []
        for d, c in zip(dims, da.chunks):  # dask: tuple of tuples
            if len(set(c[:-1])) > 1 or (len(c) > 1 and c[-1] > c[0]):
                raise ValueError(
                    f"dimension {d!r} has irregular dask chunks {c}; rechunk to a uniform size "
                    "(or pass chunks=...) before writing to Zarr"
                )
            out.append(int(c[0]))
        return tuple(out)
    if chunks is None:
        return shape
    if isinstance(chunks, dict):
        return tuple(int(chunks.get(d, n)) if chunks.get(d, n) not in (None, -1) else n
                     for d, n in zip(dims, shape))
    chunks = tuple(chunks)
    if len(chunks) != len(dims):
        raise ValueError(f"chunks {chunks} has {len(chunks)} entries for {len(dims)} dims {dims}")
    return tuple(n if c in (None, -1) else int(c) for c, n in zip(chunks, shape))


def _lat_lon(da, model, chunk_shape, assume_global_grid: bool):
    """The lat/lon values of a spherical ``da`` (None, None when the grid is assumed global)."""
    nd, dims = model.spatial_ndim, tuple(da.dims)
    spatial_dims = dims[da.ndim - nd:]
    for d, c, n in zip(spatial_dims, chunk_shape[da.ndim - nd:], da.shape[da.ndim - nd:]):
        if c < n:
            raise ValueError(
                f"{da.name!r} is chunked along {d!r} ({c} of {n}); a spherical COIN++ codec "
                f"describes one lat/lon extent and cannot know the coordinates of each spatial "
                f"chunk. Chunk only along the leading dimensions (e.g. time: "
                f"chunks={{{', '.join(repr(x) + ': ...' for x in dims[: da.ndim - nd])}}}) "
                f"with the whole {spatial_dims} extent in each chunk, or write each spatial "
                f"region to its own array with its own codec"
            )
    dlat, dlon = spatial_dims
    if dlat not in da.coords or dlon not in da.coords:
        if assume_global_grid:
            return None, None
        raise ValueError(
            f"{da.name!r} has no {dlat!r}/{dlon!r} coordinates for this spherical model; add them, "
            "or pass assume_global_grid=True if it is a global regular grid with ascending latitudes"
        )
    lat = np.asarray(da[dlat].values, dtype=np.float64)
    lon = np.asarray(da[dlon].values, dtype=np.float64)
    if lat.ndim != 1 or lon.ndim != 1:
        raise ValueError(f"coordinates {dlat!r}/{dlon!r} must be 1-D latitude/longitude in degrees")
    if np.any(np.abs(lat) > 90.0):
        raise ValueError(
            f"coordinate {dlat!r} has values outside [-90, 90]: the last two dims of "
            f"{da.name!r} must be latitude, longitude (in that order, degrees)"
        )
    return lat, lon


def settings_for_data(da, model, settings: CodecSettings, chunks: Any = None,
                      zarr_format: int = 3) -> tuple[CodecSettings, tuple[int, ...]]:
    """``(settings, chunk shape)`` for encoding ``da`` with ``model`` (a CoinModel): the request's
    ``settings`` with every field the data decides (:meth:`CodecSettings.data_fields`) taken from
    ``da``, and ``fill_value`` from ``da.encoding["_FillValue"]`` when the request sets none
    (xarray writes it in place of NaN). Chunks: see :func:`uniform_chunks`."""
    if zarr_format not in (2, 3):
        raise ValueError(f"zarr_format must be 2 or 3, got {zarr_format!r}")
    if da.dtype not in (np.dtype("float32"), np.dtype("float64")):
        raise TypeError(f"COINppCodec encodes float32/float64 variables; {da.name!r} is {da.dtype}")
    nd = model.spatial_ndim
    if da.ndim < nd:
        raise ValueError(f"{da.name!r} has dims {tuple(da.dims)}; the model needs {nd} spatial (trailing) dims")
    chunk_shape = uniform_chunks(da, chunks)
    data: dict[str, Any] = dict.fromkeys(CodecSettings.data_fields())
    if model.grid_kind == "spherical":
        data["lat"], data["lon"] = _lat_lon(da, model, chunk_shape, settings.assume_global_grid)
    if zarr_format == 2:
        # Zarr 2 hands the codec no chunk shape or dtype: pin them in the config, so a chunk file
        # of another array is refused instead of reshaped (Zarr 3 and HDF5 pass them to decode_chunk)
        data.update(chunk_shape=chunk_shape, chunk_order="C", chunk_dtype=da.dtype.name)
    fv = da.encoding.get("_FillValue")
    if settings.fill_value is None and isinstance(fv, (int, float, np.integer, np.floating)) and not isinstance(fv, bool):
        data["fill_value"] = float(fv)
    return settings.replace(**data), chunk_shape


def encoding_entry(codec, chunk_shape: tuple[int, ...], zarr_format: int = 3) -> dict[str, Any]:
    """The ``to_zarr`` encoding entry of ``codec`` (a COINppCodec) for chunks ``chunk_shape``."""
    if zarr_format == 2:
        return {"compressors": [codec], "filters": None, "chunks": chunk_shape}
    return {"serializer": codec, "compressors": None, "filters": None, "chunks": chunk_shape}
