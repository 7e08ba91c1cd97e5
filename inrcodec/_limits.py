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
#: the largest model file a reader accepts (inline in a codec configuration, in an HDF5 file, on
#: disk): 300 times the shipped t2m-global (215 KB); a width-512, depth-10 SIREN mapping 1024
#: latents to its shifts (about 7.9 M float32, 32 MB) fits twice. A model is read whole before
#: it is parsed, so this bounds what a hostile or corrupt model entry can cost a reader.
MAX_MODEL_BYTES = 64 << 20
#: latitude/longitude points per side of a spherical chunk (0.0003 degrees); a decoder builds the
#: grid's coordinate lists before it can count patches
MAX_GRID_SIDE = 1 << 20


def check_inflatable(blob: bytes, size: int, what: str, error: type[Exception] = ValueError) -> None:
    """Refuse ``size`` bytes declared for ``len(blob)`` compressed ones: more than zlib can inflate."""
    if int(size) > ZLIB_MAX_RATIO * len(blob) + 64:
        raise error(f"{what}: {len(blob)} compressed bytes cannot hold the {int(size)} bytes the header declares")


def inflate(blob: bytes, size: int, what: str, error: type[Exception] = ValueError) -> bytes:
    """zlib-decompress ``blob``, which must hold exactly ``size`` bytes, never inflating past that.

    A zlib bomb stops after ``size + 1`` bytes; a short, long or broken stream raises ``error``.
    """
    size = int(size)
    check_inflatable(blob, size, what, error)
    out = inflate_at_most(blob, size, what, error, f"the {size} bytes the header declares")
    if len(out) < size:
        raise error(f"{what} decompresses to {len(out)} bytes, expected {size}")
    return out


def inflate_at_most(blob: bytes, limit: int, what: str, error: type[Exception] = ValueError,
                    limit_name: str = "") -> bytes:
    """zlib-decompress a whole stream of at most ``limit`` bytes, stopping after ``limit + 1``."""
    d = zlib.decompressobj()
    try:
        out = d.decompress(blob, min(int(limit) + 1, sys.maxsize))
    except zlib.error as exc:
        raise error(f"{what} does not decompress: {exc}") from None
    if len(out) > limit:
        raise error(f"{what} decompresses to more than {limit_name or f'{limit} bytes'}")
    if not d.eof:
        raise error(f"{what} is a truncated zlib stream ({len(out)} bytes decompressed)")
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
