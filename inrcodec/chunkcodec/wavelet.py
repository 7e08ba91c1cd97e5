"""The ``wavelet`` section (tag 7, format version 5): a float64 field coded by SPERR.

Mode 4 (hybrid) codes the residual ``x - network(x)`` of the fitted items with it, mode 5 the
values themselves (docs/format.md, "Version 5"). The coder is SPERR through
``numcodecs-wasm-sperr``: its WebAssembly build decodes the same bytes to the same floats on every
machine, so the only cross-machine difference in a hybrid chunk is the network's prediction
(``residual.CROSS_MACHINE_ULPS``).

The section is one coder byte and the SPERR stream. The coder byte says how the fitted items are
laid out for SPERR (:func:`layout_shape`): ``CODER_SPERR`` stacks them (a 3-D field whose item axis
SPERR transforms too: right for time steps of one field), ``CODER_SPERR_MOSAIC`` tiles the items of a
2-D model side by side as one plane (right for many small unrelated images, whose own 28 x 28 leave
SPERR few wavelet levels: +1.4 to +4.5 dB at 0.5-2 bpp on the Fashion-MNIST validation split,
docs/benchmarks.md). The encoder tries both and keeps the smaller chunk. The numcodecs wrapper's own
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
from inrcodec.chunkcodec.timing import stage

__all__ = ["CODER_SPERR", "CODER_SPERR_MOSAIC", "WaveletError", "available", "coders", "field_shape",
           "layout_shape", "encode", "decode", "SPERR_HEADER"]

#: the coder byte of a SPERR stream as numcodecs-wasm-sperr 0.2 writes it (float64, 1-3 dims) of
#: the items stacked (:func:`field_shape`)
CODER_SPERR = 1
#: the same coder on the items of a 2-D model tiled as one plane (:func:`mosaic_grid`)
CODER_SPERR_MOSAIC = 2
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


def mosaic_grid(n: int, h: int, w: int) -> tuple[int, int]:
    """(rows, columns) of tiles that hold ``n`` items of ``h x w`` in a plane about as tall as it is
    wide, filled row by row (the last row's empty tiles are padding the decoder drops)."""
    cols = max(1, min(n, int(np.ceil(np.sqrt(n * h / w)))))
    return -(-n // cols), cols


def coders(items_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The coder bytes that can code fitted items of ``items_shape``: the stack always, the mosaic
    for several items of a 2-D model."""
    return (CODER_SPERR, CODER_SPERR_MOSAIC) if len(items_shape) == 3 and items_shape[0] > 1 else (CODER_SPERR,)


def layout_shape(items_shape: tuple[int, ...], coder: int) -> tuple[int, int, int]:
    """The 3-D array SPERR codes for fitted items of ``items_shape`` with ``coder``."""
    if coder not in coders(items_shape):
        raise WaveletError(f"unknown wavelet coder {coder} for items of shape {tuple(items_shape)} (this build "
                           f"knows {CODER_SPERR}: SPERR, {CODER_SPERR_MOSAIC}: SPERR on a mosaic of 2-D items)")
    if coder == CODER_SPERR:
        return field_shape(items_shape)
    n, h, w = (int(s) for s in items_shape)
    rows, cols = mosaic_grid(n, h, w)
    return (1, rows * h, cols * w)


def _to_layout(field: np.ndarray, coder: int) -> np.ndarray:
    shape3 = layout_shape(field.shape, coder)
    if coder == CODER_SPERR:
        return field.reshape(shape3)
    n, h, w = field.shape
    rows, cols = shape3[1] // h, shape3[2] // w
    # padding tiles hold the field's mean: no edge for the wavelets to spend bytes on
    tiles = np.concatenate([field, np.full((rows * cols - n, h, w), float(np.mean(field)))])
    return tiles.reshape(rows, cols, h, w).transpose(0, 2, 1, 3).reshape(shape3)


def _from_layout(arr: np.ndarray, items_shape: tuple[int, ...], coder: int) -> np.ndarray:
    if coder == CODER_SPERR:
        return arr.reshape(items_shape)
    n, h, w = items_shape
    rows, cols = arr.shape[1] // h, arr.shape[2] // w
    return arr.reshape(rows, h, cols, w).transpose(0, 2, 1, 3).reshape(rows * cols, h, w)[:n]


def _wrapper_header(shape3: tuple[int, int, int], stream_len: int) -> bytes:
    """What numcodecs-wasm-sperr writes before the SPERR stream of a float64 array."""
    return (bytes([_DTYPE_F64, len(shape3)]) + b"".join(varint(s) for s in shape3)
            + varint(len(_WRAPPER_VERSION)) + _WRAPPER_VERSION + varint(stream_len))


def _codec(mode: str, value: float):
    return _sperr_class()(mode=mode, **{mode: float(value)})


@stage("wavelet")
def encode(field: np.ndarray, mode: str, value: float, coder: int = CODER_SPERR) -> bytes:
    """The section payload coding ``field`` (fitted items ``(n_items, *spatial)``, finite) with
    SPERR in ``mode`` ``'bpp'``, ``'psnr'`` or ``'pwe'`` at ``value``, laid out as ``coder`` says."""
    arr = np.ascontiguousarray(_to_layout(np.asarray(field, dtype=np.float64), coder))
    out = np.asarray(_codec(mode, value).encode(arr)).tobytes()
    start = len(_wrapper_header(arr.shape, 0)) - 1
    for width in range(1, 6):  # the stream length's varint
        header = _wrapper_header(arr.shape, len(out) - start - width)
        if len(header) == start + width:
            break
    if not out.startswith(header):  # another wrapper format: refuse rather than write unreadable bytes
        raise RuntimeError("numcodecs-wasm-sperr wrote a header this build does not know; "
                           "pin numcodecs-wasm-sperr 0.2 (pyproject.toml)")
    return bytes([coder]) + out[len(header):]


def check(payload: bytes, items_shape: tuple[int, ...]) -> None:
    """Refuse a payload that cannot code ``items_shape`` before SPERR sees it."""
    if len(payload) < 1 + SPERR_HEADER:
        raise WaveletError(f"wavelet section of {len(payload)} bytes is shorter than its headers")
    shape3 = layout_shape(items_shape, payload[0])
    dims = struct.unpack_from("<3I", payload, 3)
    if dims != shape3[::-1]:
        raise WaveletError(f"SPERR stream of dims {dims[::-1]}, the chunk's fitted items are {shape3}")


@stage("wavelet")
def decode(payload: bytes, items_shape: tuple[int, ...]) -> np.ndarray:
    """The float64 field ``(n_items, *spatial)`` of a checked payload; WaveletError if SPERR refuses it."""
    payload = bytes(payload)
    check(payload, items_shape)
    shape3 = layout_shape(items_shape, payload[0])
    stream = payload[1:]
    data = np.frombuffer(_wrapper_header(shape3, len(stream)) + stream, dtype=np.uint8)
    out = np.empty(shape3, dtype=np.float64)
    try:
        _codec("bpp", 1.0).decode(data, out=out)  # the decoder ignores the mode
    except Exception as exc:  # the WebAssembly codec raises plain Exceptions for any bad stream
        raise WaveletError(f"SPERR stream does not decode: {exc}") from None
    if not np.isfinite(out).all():
        raise WaveletError("SPERR stream decodes to non-finite values")
    return _from_layout(out, tuple(items_shape), payload[0])
