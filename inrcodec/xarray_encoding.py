"""The xarray ``encoding`` entry of a variable for COIN++ (``COINppCodec.for_dataarray``).

Chooses uniform chunks, reads lat/lon from the coordinates of spherical models, and returns
``{"serializer": codec, ...}`` for Zarr 3 or ``{"compressors": [codec], ...}`` for Zarr 2.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from inrcodec.models import modelstore

__all__ = ["encoding_for", "uniform_chunks"]


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


def encoding_for(cls, da, model: Any, *, zarr_format: int = 3, chunks: Any = None, **options: Any) -> dict[str, Any]:
    """The encoding entry of ``da`` for ``to_zarr``, with a ``cls`` (COINppCodec) codec.

    ``options`` are :class:`~inrcodec.settings.CodecSettings` options. Chunks come from
    ``chunks`` (a tuple, or a dict dim -> size), else ``da.encoding["chunks"]``, else the dask
    chunks, else one chunk. Spherical models read lat/lon from the coordinates of the last two
    dimensions and need each chunk to span the whole lat/lon extent. ``fill_value`` defaults to
    ``da.encoding["_FillValue"]`` when that is set (xarray writes it in place of NaN).
    """
    if zarr_format not in (2, 3):
        raise ValueError(f"zarr_format must be 2 or 3, got {zarr_format!r}")
    if da.dtype not in (np.dtype("float32"), np.dtype("float64")):
        raise TypeError(f"COINppCodec encodes float32/float64 variables; {da.name!r} is {da.dtype}")
    if options.get("fill_value") is None:
        fv = da.encoding.get("_FillValue")
        if isinstance(fv, (int, float, np.integer, np.floating)) and not isinstance(fv, bool):
            options["fill_value"] = float(fv)
    stored = modelstore.load(model)
    nd = stored.model.spatial_ndim
    if da.ndim < nd:
        raise ValueError(f"{da.name!r} has dims {tuple(da.dims)}; the model needs {nd} spatial (trailing) dims")
    chunk_shape = uniform_chunks(da, chunks)
    if stored.model.grid_kind == "spherical":
        options["lat"], options["lon"] = _lat_lon(da, stored.model, chunk_shape,
                                                  options.get("assume_global_grid", False))
    if zarr_format == 2:
        # Zarr 2 hands the codec no chunk shape or dtype: pin them in the config, so a chunk file
        # of another array is refused instead of reshaped (Zarr 3 and HDF5 pass them to decode_chunk)
        codec = cls(stored, chunk_shape=chunk_shape, chunk_order="C", chunk_dtype=da.dtype.name, **options)
        return {"compressors": [codec], "filters": None, "chunks": chunk_shape}
    return {"serializer": cls(stored, **options), "compressors": None, "filters": None, "chunks": chunk_shape}
