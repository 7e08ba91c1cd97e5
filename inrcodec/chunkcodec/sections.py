"""The payloads of the sections that are not coded latents, residuals or wavelets: each one's
pack and read side by side (layouts: docs/format.md).

* ``nan_mask``: the chunk's NaN positions, bit-packed (``np.packbits``, C order) and zlib-compressed;
* ``fill_mask``: the fill value (f64 LE) and its positions, as the NaN mask;
* ``prediction``: mode 3's constant prediction, one finite f64 LE;
* ``raw_values``: mode 1's values in the chunk's dtype and memory order, zlib-compressed.

Every reader refuses with ``CorruptChunkError`` what its packer cannot have written, and inflates
no more than the chunk's shape allows (``_limits.inflate``).

>>> import numpy as np
>>> mask = np.array([[True, False, False], [False, False, True]])
>>> bool((read_mask(pack_mask(mask), "NaN mask", mask.shape) == mask).all())
True
>>> read_prediction(pack_prediction(273.15))
273.15
"""

from __future__ import annotations

import math
import struct
import zlib

import numpy as np

from inrcodec import _limits
from inrcodec.errors import CorruptChunkError

__all__ = ["pack_mask", "read_mask", "pack_fill_mask", "read_fill_mask", "pack_prediction", "read_prediction",
           "pack_raw_values", "read_raw_values"]


def pack_mask(mask: np.ndarray) -> bytes:
    """A boolean mask as the ``nan_mask`` section holds it (and the fill mask after its value)."""
    return zlib.compress(np.packbits(np.asarray(mask, dtype=bool).ravel()).tobytes(), 9)


def read_mask(blob: bytes, what: str, shape: tuple[int, ...]) -> np.ndarray:
    """The boolean mask of ``shape`` that :func:`pack_mask` wrote; CorruptChunkError if not."""
    count = math.prod(shape)
    packed = np.frombuffer(_limits.inflate(blob, (count + 7) // 8, what, CorruptChunkError), dtype=np.uint8)
    return np.unpackbits(packed, count=count).astype(bool).reshape(shape)


def pack_fill_mask(fill_value: float, mask: np.ndarray) -> bytes:
    """The ``fill_mask`` section: the fill value, then where it is."""
    return struct.pack("<d", fill_value) + pack_mask(mask)


def read_fill_mask(blob: bytes, shape: tuple[int, ...]) -> tuple[np.ndarray, float]:
    """(mask of ``shape``, fill value) of a ``fill_mask`` section; CorruptChunkError if not."""
    if len(blob) < 8:
        raise CorruptChunkError("fill_mask section is shorter than its 8-byte fill value")
    (fill_value,) = struct.unpack("<d", blob[:8])
    return read_mask(blob[8:], "fill mask", shape), fill_value


def pack_prediction(value: float) -> bytes:
    """Mode 3's ``prediction`` section."""
    return struct.pack("<d", value)


def read_prediction(blob: bytes) -> float:
    """The finite f64 of a ``prediction`` section; CorruptChunkError if not."""
    if len(blob) != 8:
        raise CorruptChunkError(f"prediction section holds {len(blob)} bytes, expected 8")
    (value,) = struct.unpack("<d", blob)
    if not math.isfinite(value):
        raise CorruptChunkError(f"prediction section holds a non-finite value {value!r}")
    return value


def pack_raw_values(arr: np.ndarray, order: str) -> bytes:
    """Mode 1's ``raw_values`` section: the chunk's bytes in its memory ``order``, compressed."""
    return zlib.compress(arr.tobytes(order=order), 6)


def read_raw_values(blob: bytes, dtype: np.dtype, shape: tuple[int, ...], order: str) -> np.ndarray:
    """The values of a ``raw_values`` section, exactly ``shape`` of ``dtype`` in ``order``;
    CorruptChunkError if the section holds anything else."""
    raw = _limits.inflate(blob, math.prod(shape) * dtype.itemsize, "raw chunk values", CorruptChunkError)
    return np.frombuffer(raw, dtype=dtype).reshape(shape, order=order).copy(order="A")
