"""What the filter does to one chunk: ``cd_values`` -> model and settings -> the chunk functions.

The libhdf5 callbacks (:mod:`inrcodec.hdf5.libhdf5`) hand over the dataset's ``cd_values``
and the chunk bytes; this module parses the words (:mod:`.layout`), finds the model and the grid
(:mod:`.storage`) and calls :func:`inrcodec.chunkcodec.encode_chunk` /
:func:`~inrcodec.chunkcodec.decode_chunk` with the chunk's shape and dtype.
"""

from __future__ import annotations

import sys
import threading

import numpy as np

from inrcodec.chunkcodec import decode_chunk, encode_chunk
from inrcodec.hdf5 import layout, storage

__all__ = ["resolve", "encode", "decode"]

_resolved: dict[tuple[int, ...], tuple] = {}
_lock = threading.Lock()


def resolve(cd) -> tuple:
    """``(model, settings, itemsize, chunk dims)`` for a dataset's ``cd_values``; ``settings``
    carries the grid's lat/lon. Cached per option words (the model is found once per process)."""
    n = layout.user_words(cd)
    key = tuple(int(w) for w in cd[:n])
    with _lock:
        hit = _resolved.get(key)
    if hit is None:
        params = layout.parse(key)
        stored = storage.find_model(params.model_sha256)
        settings = params.settings
        if params.grid_id is not None:
            lat, lon = storage.find_grid(params.grid_id)
            settings = settings.replace(lat=lat, lon=lon)
        with _lock:
            hit = _resolved.setdefault(key, (stored.model, settings))
    itemsize, dims = layout.chunk_layout(cd)
    if dims is None:
        raise ValueError("the filter parameters lack the chunk layout (set_local did not run)")
    return hit + (itemsize, dims)


def _dtype(itemsize: int) -> np.dtype:
    return np.dtype(f"{'<' if sys.byteorder == 'little' else '>'}f{itemsize}")


def encode(cd, src: bytes) -> bytes:
    model, settings, itemsize, dims = resolve(cd)
    return encode_chunk(np.frombuffer(src, dtype=_dtype(itemsize)).reshape(dims), model, settings)


def decode(cd, src: bytes) -> bytes:
    # HDF5 copies exactly prod(dims) * itemsize bytes out of what we return: decode_chunk refuses
    # a chunk of another shape, else HDF5 would read past our buffer
    model, settings, itemsize, dims = resolve(cd)
    dtype = _dtype(itemsize)
    y = decode_chunk(np.frombuffer(src, dtype=np.uint8), model, settings, shape=dims, dtype=dtype)
    return np.ascontiguousarray(y, dtype=dtype).tobytes()
