"""Decode-side limits: checks that run before a reader allocates anything for untrusted bytes.

A chunk's header says how big its output is; these helpers make every size a reader acts on
either pinned by the array it fills or backed by bytes that are actually present, so malformed
or hostile input costs memory and time proportional to the real output.
"""

from __future__ import annotations

import math
import sys
import zlib

import numpy as np

#: zlib never inflates more than ~1032:1; a stream claiming more is refused before inflating
ZLIB_MAX_RATIO = 1100
#: decoded bytes allowed for a chunk whose expected shape nobody pinned (plain ``codec.decode``
#: without ``out=`` or ``chunk_shape``); readers with a known chunk shape never use this
MAX_UNPINNED_CHUNK_BYTES = 1 << 31
#: latitude/longitude points per side of a spherical chunk (0.0003 degrees); a decoder builds the
#: grid's coordinate lists before it can count patches
MAX_GRID_SIDE = 1 << 20


def inflate(blob: bytes, size: int, what: str, error: type[Exception] = ValueError) -> bytes:
    """zlib-decompress ``blob``, which must hold exactly ``size`` bytes, never inflating past that.

    A zlib bomb stops after ``size + 1`` bytes; a short, long or broken stream raises ``error``.
    """
    size = int(size)
    if size > ZLIB_MAX_RATIO * len(blob) + 64:
        raise error(f"{what}: {len(blob)} compressed bytes cannot hold the {size} bytes the header declares")
    d = zlib.decompressobj()
    try:
        out = d.decompress(blob, min(size + 1, sys.maxsize))
    except zlib.error as exc:
        raise error(f"{what} does not decompress: {exc}") from None
    if len(out) > size or (len(out) == size and d.unconsumed_tail):
        raise error(f"{what} decompresses to more than the {size} bytes the header declares")
    if len(out) < size or not d.eof:
        raise error(f"{what} decompresses to {len(out)} bytes, expected {size}")
    return out


def num_patches(shape: tuple[int, ...], patch_shape: tuple[int, ...] | None) -> int:
    """``PatchPartition(shape, patch_shape).num_patches`` without building the partition."""
    if not patch_shape:
        return 1
    return math.prod(-(-int(n) // max(1, min(int(p), int(n)))) if n else 0 for n, p in zip(shape, patch_shape))


def min_coded_bytes(table, n_items: int, k: int) -> int:
    """A lower bound on the range-coded size of ``n_items x k`` symbols under ``table``.

    Every symbol costs at least ``-log2(p_max)`` bits of its table; half of that bound (and a
    few words of slack) is required, so a small payload cannot declare billions of symbols.
    """
    c = np.asarray(table.counts, dtype=np.float64)
    pmax = c.max(axis=1) / c.sum(axis=1)
    per_row = -np.log2(np.minimum(pmax, 1.0))
    bits = n_items * (float(per_row.sum()) if table.per_dimension else k * float(per_row[0]))
    return max(0, int(bits / 16) - 16)
