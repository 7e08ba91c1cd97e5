"""Fixed-length bit packing of symbol arrays: the raw coder (``entropy_id`` 0), which needs no
table, and the argument checks every symbol coder shares.
"""
from __future__ import annotations

import numpy as np

_MAX_FIXED_BITS = 32


def check_bits(bits: int, lo: int, hi: int, what: str) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
        raise ValueError(f"{what}: bits must be an int, got {bits!r}")
    bits = int(bits)
    if not lo <= bits <= hi:
        raise ValueError(f"{what}: bits must be in {lo}..{hi}, got {bits}")
    return bits


def check_symbols(symbols: np.ndarray, bits: int, *, ndim: int | None = 2) -> np.ndarray:
    s = np.asarray(symbols)
    if ndim is not None and s.ndim != ndim:
        raise ValueError(f"symbols must have {ndim} dims (N, k), got shape {s.shape}")
    if s.dtype.kind not in "iu":
        raise ValueError(f"symbols must be an integer array, got dtype {s.dtype}")
    if s.size:
        smin, smax = int(s.min()), int(s.max())
        if smin < 0 or smax >= (1 << bits):
            raise ValueError(
                f"symbols must lie in [0, {1 << bits}) for bits={bits}, got range [{smin}, {smax}]"
            )
    return s


def fixed_nbytes(count: int, bits: int) -> int:
    """The exact payload size of ``count`` symbols of ``bits`` bits (what ``pack_fixed`` writes)."""
    return (int(count) * int(bits) + 7) // 8


def pack_fixed(symbols: np.ndarray, bits: int) -> bytes:
    """Fixed-length code: each symbol (flattened in C order) as ``bits`` bits, LSB first,
    bit-packed little-endian into ``ceil(count * bits / 8)`` bytes; pad bits are 0."""
    bits = check_bits(bits, 1, _MAX_FIXED_BITS, "pack_fixed")
    s = check_symbols(symbols, bits, ndim=None).reshape(-1).astype(np.uint64)
    shifts = np.arange(bits, dtype=np.uint64)
    bitplane = ((s[:, None] >> shifts) & np.uint64(1)).astype(np.uint8)
    return np.packbits(bitplane.reshape(-1), bitorder="little").tobytes()


def unpack_fixed(data: bytes | bytearray | memoryview, bits: int, count: int) -> np.ndarray:
    """Inverse of ``pack_fixed``: uint32 array of exactly ``count`` symbols.

    ``ValueError`` if the length is not exactly ``ceil(count * bits / 8)`` or a pad bit is set.
    """
    bits = check_bits(bits, 1, _MAX_FIXED_BITS, "unpack_fixed")
    count = int(count)
    if count < 0:
        raise ValueError(f"unpack_fixed: count must be >= 0, got {count}")
    buf = memoryview(data).cast("B") if not isinstance(data, (bytes, bytearray)) else data
    expected = fixed_nbytes(count, bits)
    if len(buf) != expected:
        raise ValueError(
            f"fixed-length payload for {count} symbols of {bits} bits must be "
            f"{expected} bytes, got {len(buf)}"
        )
    raw = np.frombuffer(bytes(buf), dtype=np.uint8)
    allbits = np.unpackbits(raw, bitorder="little")
    if allbits[count * bits:].any():
        raise ValueError("fixed-length payload has non-zero padding bits")
    planes = allbits[: count * bits].reshape(count, bits).astype(np.uint32)
    weights = np.left_shift(np.uint32(1), np.arange(bits, dtype=np.uint32))
    # sum of distinct powers of two: exact in uint64, fits uint32 for bits <= 32
    return (planes.astype(np.uint64) @ weights.astype(np.uint64)).astype(np.uint32)
