"""The ``wavelet`` section (tag 7, format version 5): a float64 field coded by SPERR.

Mode 4 (hybrid) codes the residual ``x - network(x)`` of the fitted items with it, mode 5 the
values themselves (docs/format.md, "Version 5"). The coder is SPERR through
``numcodecs-wasm-sperr``: its WebAssembly build decodes the same bytes to the same floats on every
machine, so the only cross-machine difference in a hybrid chunk is the network's prediction
(``residual.CROSS_MACHINE_ULPS``).

The section is one coder byte (``CODER_SPERR``) and the SPERR stream. The numcodecs wrapper's own
header (dtype, shape, format version, stream length: 13 bytes of a 46 x 90 chunk, a fifth of a
chunk at 1000x) is left out: the decoder knows all of it and rebuilds it. Before SPERR sees a
byte the decoder checks the stream's own dimensions against the chunk's, so untrusted bytes
cannot make it allocate more than the chunk it fills.
"""

from __future__ import annotations

import struct
from functools import lru_cache

import numpy as np

from inrcodec.chunkformat import varint  # the wrapper writes the same LEB128 as the chunk format

__all__ = ["CODER_SPERR", "WaveletError", "available", "field_shape", "encode", "decode", "SPERR_HEADER"]

#: the coder byte of a SPERR stream as numcodecs-wasm-sperr 0.2 writes it (float64, 1-3 dims)
CODER_SPERR = 1
#: the numcodecs-sperr wrapper format the stream belongs to (part of its header we rebuild)
_WRAPPER_VERSION = b"0.2.0"
_DTYPE_F64 = 1
#: SPERR's own header: a version byte, a flags byte and three u32 dims (x fastest)
SPERR_HEADER = 14


class WaveletError(ValueError):
    """A wavelet section that cannot be decoded (the decoder words it as a CorruptChunkError)."""


@lru_cache(maxsize=1)
def _sperr_class():
    try:
        from numcodecs_wasm_sperr import Sperr
    except ImportError:  # a core dependency (pyproject.toml); a broken install says so here
        return None
    return Sperr


def available(spatial_ndim: int) -> bool:
    """Whether chunks of a model with ``spatial_ndim`` spatial dims can take the wavelet modes
    (1-D, 2-D and 3-D models: SPERR codes 3 dims, see :func:`field_shape`)."""
    return spatial_ndim in (1, 2, 3) and _sperr_class() is not None


def field_shape(items_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """The 3-D array SPERR codes for fitted items of shape ``(n_items, *spatial)``: the rows of one
    plane (1-D models), the stack of items (2-D), or the volumes stacked along their first axis (3-D:
    consecutive slabs of one volume, the usual chunking along it, become that volume again)."""
    if len(items_shape) == 2:
        return (1, int(items_shape[0]), int(items_shape[1]))
    if len(items_shape) == 3:
        return tuple(int(s) for s in items_shape)
    if len(items_shape) == 4:
        n, d, h, w = (int(s) for s in items_shape)
        return (n * d, h, w)
    raise ValueError(f"the wavelet modes code items of 1-D, 2-D or 3-D models, got shape {items_shape}")


def _wrapper_header(shape3: tuple[int, int, int], stream_len: int) -> bytes:
    """What numcodecs-wasm-sperr writes before the SPERR stream of a float64 array."""
    return (bytes([_DTYPE_F64, len(shape3)]) + b"".join(varint(s) for s in shape3)
            + varint(len(_WRAPPER_VERSION)) + _WRAPPER_VERSION + varint(stream_len))


def _codec(mode: str, value: float):
    return _sperr_class()(mode=mode, **{mode: float(value)})


def encode(field: np.ndarray, mode: str, value: float) -> bytes:
    """The section payload coding ``field`` (fitted items ``(n_items, *spatial)``, finite) with
    SPERR in ``mode`` ``'bpp'``, ``'psnr'`` or ``'pwe'`` at ``value``."""
    arr = np.ascontiguousarray(field, dtype=np.float64).reshape(field_shape(field.shape))
    out = np.asarray(_codec(mode, value).encode(arr)).tobytes()
    start = len(_wrapper_header(arr.shape, 0)) - 1
    for width in range(1, 6):  # the stream length's varint
        header = _wrapper_header(arr.shape, len(out) - start - width)
        if len(header) == start + width:
            break
    if not out.startswith(header):  # another wrapper format: refuse rather than write unreadable bytes
        raise RuntimeError("numcodecs-wasm-sperr wrote a header this build does not know; "
                           "pin numcodecs-wasm-sperr 0.2 (pyproject.toml)")
    return bytes([CODER_SPERR]) + out[len(header):]


def check(payload: bytes, items_shape: tuple[int, ...]) -> None:
    """Refuse a payload that cannot code ``items_shape`` before SPERR sees it."""
    shape3 = field_shape(items_shape)
    if len(payload) < 1 + SPERR_HEADER:
        raise WaveletError(f"wavelet section of {len(payload)} bytes is shorter than its headers")
    if payload[0] != CODER_SPERR:
        raise WaveletError(f"unknown wavelet coder {payload[0]} (this build knows {CODER_SPERR}: SPERR)")
    dims = struct.unpack_from("<3I", payload, 3)
    if dims != shape3[::-1]:
        raise WaveletError(f"SPERR stream of dims {dims[::-1]}, the chunk's fitted items are {shape3}")


def decode(payload: bytes, items_shape: tuple[int, ...]) -> np.ndarray:
    """The float64 field ``(n_items, *spatial)`` of a checked payload; WaveletError if SPERR refuses it."""
    payload = bytes(payload)
    check(payload, items_shape)
    shape3 = field_shape(items_shape)
    stream = payload[1:]
    data = np.frombuffer(_wrapper_header(shape3, len(stream)) + stream, dtype=np.uint8)
    out = np.empty(shape3, dtype=np.float64)
    try:
        _codec("bpp", 1.0).decode(data, out=out)  # the decoder ignores the mode
    except Exception as exc:  # the WebAssembly codec raises plain Exceptions for any bad stream
        raise WaveletError(f"SPERR stream does not decode: {exc}") from None
    if not np.isfinite(out).all():
        raise WaveletError("SPERR stream decodes to non-finite values")
    return out.reshape(items_shape)
