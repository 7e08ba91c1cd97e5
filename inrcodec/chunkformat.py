"""The versioned chunk byte format (layout: ``docs/format.md``).

``pack_chunk(header, sections) -> bytes`` and ``unpack_chunk(data) -> (header, sections)``.
This module knows the byte layout and nothing about what the sections mean.

Two layouts: the self-describing versions 1 and 2 (``INRC`` magic, fixed-width fields, the
full 32-byte model hash) and the compact version 3 (varints, a 4-byte ``pin`` instead of the
model hash, no fields the codec configuration already fixes: 16 bytes of overhead for a
one-item 46 x 90 chunk). A header with ``pin`` set is written as version 3; one with
``model_sha256`` as the lowest of versions 1 and 2 that can express it. All versions are read.

Every problem with chunk bytes raises ``CorruptChunkError`` (a ``ValueError``) with a
message saying what is wrong.  The reader checks, in order: magic, format version,
declared total length (truncation / trailing bytes; version 3 has none, its CRC catches both),
CRC32, then parses the body with every length checked against the bytes that remain before
anything is sliced.
"""
from __future__ import annotations

import hashlib
import re
import struct
import zlib
from dataclasses import dataclass
from typing import Iterable, Mapping, Union

import numpy as np

from inrcodec.errors import CorruptChunkError

__all__ = [
    "MAGIC",
    "FORMAT_VERSION",
    "MODE_MODULATIONS",
    "MODE_RAW",
    "MODE_BOUNDED",
    "MODE_PLAIN_RESIDUAL",
    "FLAG_NAN_MASK",
    "SECTION_TAGS",
    "CorruptChunkError",
    "ChunkHeader",
    "PIN_SIZE",
    "model_pin",
    "pack_chunk",
    "unpack_chunk",
]

MAGIC = b"INRC"
#: the newest version this build writes and reads. Headers with a ``pin`` are written as
#: version 3; headers with a ``model_sha256`` as the lowest legacy version that can express
#: them (version 1 unless they use a version-2 feature)
FORMAT_VERSION = 3
SUPPORTED_VERSIONS = (1, 2, 3)
#: version 3 starts with MAGIC[:1] and then the version byte (legacy chunks: the whole MAGIC)
V3_PREFIX = MAGIC[:1] + bytes([3])
PIN_SIZE = 4
_LEGACY_VERSIONS = (1, 2)  # the versions that start with the whole MAGIC

MODE_MODULATIONS = 0  #: latents of the base network (the codec path)
MODE_RAW = 1  #: raw lossless values (constant / all-NaN / non-finite chunks)
MODE_BOUNDED = 2  #: latents + error-bounded residual (format version 2)
MODE_PLAIN_RESIDUAL = 3  #: error-bounded residual of a constant prediction, no network (version 3)
KNOWN_MODES = {MODE_MODULATIONS: "modulations", MODE_RAW: "raw", MODE_BOUNDED: "bounded",
               MODE_PLAIN_RESIDUAL: "plain-residual"}
#: modes whose version-3 header stores no coding byte (no latents)
_MODES_WITHOUT_LATENTS = {MODE_RAW, MODE_PLAIN_RESIDUAL}
#: modes and sections that need format version 3
_V3_MODES = {MODE_PLAIN_RESIDUAL}
_V3_SECTIONS = {"prediction"}
#: modes and sections that need format version 2
_V2_MODES = {MODE_BOUNDED}
_V2_SECTIONS = {"fill_mask"}

FLAG_NAN_MASK = 1 << 0  #: a "nan_mask" section is present
KNOWN_FLAGS = FLAG_NAN_MASK

#: section name <-> u8 tag stored in the chunk
SECTION_TAGS: dict[str, int] = {
    "latents": 1,  # entropy-coded latent symbols
    "nan_mask": 2,  # compressed NaN mask
    "raw_values": 3,  # raw values (mode 1)
    "residual": 4,  # error-bound residual stream (mode 2; reserved in version 1)
    "fill_mask": 5,  # fill value + compressed mask of its positions (version 2)
    "prediction": 6,  # f64 LE constant prediction of mode 3 (version 3)
}
_TAG_NAMES = {v: k for k, v in SECTION_TAGS.items()}

DTYPE_CODES: dict[str, int] = {"<f4": 1, "<f8": 2, ">f4": 3, ">f8": 4}
_DTYPE_BY_CODE = {v: k for k, v in DTYPE_CODES.items()}
ORDER_CODES: dict[str, int] = {"C": 0, "F": 1}
_ORDER_BY_CODE = {v: k for k, v in ORDER_CODES.items()}

MAX_NDIM = 8

# preamble: magic, version u8, header flags u8, header length u16, total length u64
_PREAMBLE = struct.Struct("<4sBBHQ")
_PREAMBLE_SIZE = _PREAMBLE.size  # 16
_CRC_SIZE = 4
_SECTION_HEAD = struct.Struct("<BQ")  # tag, length
_TAIL = struct.Struct("<QQIBBBI")  # num_items, num_patches, latent_dim, bits, qid, eid, flags
_MIN_HEADER_LEN = 32 + 4 + 1 + _TAIL.size  # sha, dtype/order/mode/ndim, patch ndim, tail
_MIN_CHUNK_LEN = _PREAMBLE_SIZE + _MIN_HEADER_LEN + 2 + _CRC_SIZE

_U8, _U16, _U32, _U64 = 2**8 - 1, 2**16 - 1, 2**32 - 1, 2**64 - 1
_HEX64 = re.compile(r"[0-9a-f]{64}")




# ---------------------------------------------------------------------- header
def _uint(name: str, value, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"ChunkHeader.{name} must be an int, got {value!r}")
    value = int(value)
    if not 0 <= value <= maximum:
        raise ValueError(f"ChunkHeader.{name} must be in 0..{maximum}, got {value}")
    return value


def _dims(name: str, value, maximum: int) -> tuple[int, ...]:
    try:
        dims = tuple(value)
    except TypeError:
        raise ValueError(f"ChunkHeader.{name} must be a tuple of ints, got {value!r}") from None
    if len(dims) > MAX_NDIM:
        raise ValueError(f"ChunkHeader.{name} has {len(dims)} dims; at most {MAX_NDIM} allowed")
    return tuple(_uint(f"{name}[{i}]", d, maximum) for i, d in enumerate(dims))


@dataclass(frozen=True)
class ChunkHeader:
    """Everything a decoder needs besides the sections.

    model_sha256  64 hex chars (stored lower-case): sha256 of the base network file
                  (versions 1 and 2; None in version 3, which stores ``pin`` instead).
    dtype         '<f4', '<f8', '>f4' or '>f8' (anything ``np.dtype`` maps to these).
    shape         the chunk's shape, 0..8 dims, each 0..2**64-1.
    order         'C' or 'F' memory order of the original chunk.
    mode          0 = modulations, 1 = raw lossless values, 2 = modulations + error-bounded
                  residual (see ``KNOWN_MODES``; mode 2 needs format version 2).
    patch_shape   0..8 dims, each 0..2**32-1.
    num_items, num_patches   u64;  latent_dim u32;  bits, quantizer_id, entropy_id u8.
    flags         u32, bit 0 = a "nan_mask" section is present; other bits must be 0.
    pin           version 3 only: ``PIN_SIZE`` bytes naming the base network and grid
                  (:func:`model_pin`). With a pin, ``patch_shape``, ``num_items``,
                  ``num_patches`` and ``latent_dim`` are not stored (the model and the chunk's
                  masks imply them) and must be None; ``bits``, ``quantizer_id`` and
                  ``entropy_id`` are stored only in modes 0 and 2 (bits 1..16, ids 0..3) and
                  are 0 in mode 1.
    """

    model_sha256: str | None
    dtype: str
    shape: tuple[int, ...]
    order: str
    mode: int
    patch_shape: tuple[int, ...] | None
    num_items: int | None
    num_patches: int | None
    latent_dim: int | None
    bits: int
    quantizer_id: int
    entropy_id: int
    flags: int = 0
    pin: bytes | None = None

    @property
    def version3(self) -> bool:
        return self.pin is not None

    def __post_init__(self) -> None:
        sha = self.model_sha256
        if self.pin is not None:
            if sha is not None:
                raise ValueError("ChunkHeader takes model_sha256 (versions 1, 2) or pin (version 3), not both")
            if not isinstance(self.pin, (bytes, bytearray)) or len(self.pin) != PIN_SIZE:
                raise ValueError(f"ChunkHeader.pin must be {PIN_SIZE} bytes, got {self.pin!r}")
            object.__setattr__(self, "pin", bytes(self.pin))
            self._check_v3()
        elif not isinstance(sha, str) or not _HEX64.fullmatch(sha.lower()):
            raise ValueError(f"ChunkHeader.model_sha256 must be 64 hex characters, got {sha!r}")
        dtype = None
        if isinstance(self.dtype, (str, np.dtype)):
            try:
                dtype = np.dtype(self.dtype).str
            except (TypeError, ValueError):
                pass
        if dtype not in DTYPE_CODES:
            raise ValueError(
                f"ChunkHeader.dtype must be one of {sorted(DTYPE_CODES)}, got {self.dtype!r}"
            )
        if not isinstance(self.order, str) or self.order not in ORDER_CODES:
            raise ValueError(f"ChunkHeader.order must be 'C' or 'F', got {self.order!r}")
        mode = _uint("mode", self.mode, _U8)
        if mode not in KNOWN_MODES:
            raise ValueError(
                f"ChunkHeader.mode {mode} is unknown (this build knows {sorted(KNOWN_MODES)})"
            )
        flags = _uint("flags", self.flags, _U32)
        if flags & ~KNOWN_FLAGS:
            raise ValueError(
                f"ChunkHeader.flags 0x{flags:x} sets unknown bits (known mask 0x{KNOWN_FLAGS:x})"
            )
        values = {
            "model_sha256": None if sha is None else sha.lower(),
            "dtype": dtype,
            "shape": _dims("shape", self.shape, _U64),
            "mode": mode,
        }
        if self.pin is None:
            values.update({
                "patch_shape": _dims("patch_shape", self.patch_shape, _U32),
                "num_items": _uint("num_items", self.num_items, _U64),
                "num_patches": _uint("num_patches", self.num_patches, _U64),
                "latent_dim": _uint("latent_dim", self.latent_dim, _U32),
            })
        values.update({
            "bits": _uint("bits", self.bits, _U8),
            "quantizer_id": _uint("quantizer_id", self.quantizer_id, _U8),
            "entropy_id": _uint("entropy_id", self.entropy_id, _U8),
            "flags": flags,
        })
        for name, value in values.items():
            object.__setattr__(self, name, value)
        if self.pin is not None and self.mode not in _MODES_WITHOUT_LATENTS:
            if not (1 <= self.bits <= 16 and self.quantizer_id <= 3 and self.entropy_id <= 3):
                raise ValueError(
                    "a version-3 header (pin set) stores bits 1..16 and quantizer/entropy ids "
                    f"0..3; got bits={self.bits}, quantizer_id={self.quantizer_id}, "
                    f"entropy_id={self.entropy_id}"
                )

    def _check_v3(self) -> None:
        implied = {k: getattr(self, k) for k in ("patch_shape", "num_items", "num_patches", "latent_dim")}
        if any(v is not None for v in implied.values()):
            raise ValueError(
                "a version-3 header (pin set) does not store patch_shape, num_items, num_patches "
                f"or latent_dim (the model and the chunk imply them); pass None, got {implied}"
            )
        if self.mode in _MODES_WITHOUT_LATENTS and (self.bits, self.quantizer_id, self.entropy_id) != (0, 0, 0):
            raise ValueError(f"a version-3 mode-{self.mode} header (raw or plain residual, no latents) "
                             "has bits, quantizer_id, entropy_id = 0")

    @property
    def has_nan_mask(self) -> bool:
        return bool(self.flags & FLAG_NAN_MASK)

    def _encode(self) -> bytes:
        parts = [
            bytes.fromhex(self.model_sha256),
            struct.pack(
                "<BBBB",
                DTYPE_CODES[self.dtype],
                ORDER_CODES[self.order],
                self.mode,
                len(self.shape),
            ),
            struct.pack(f"<{len(self.shape)}Q", *self.shape),
            struct.pack("<B", len(self.patch_shape)),
            struct.pack(f"<{len(self.patch_shape)}I", *self.patch_shape),
            _TAIL.pack(
                self.num_items,
                self.num_patches,
                self.latent_dim,
                self.bits,
                self.quantizer_id,
                self.entropy_id,
                self.flags,
            ),
        ]
        return b"".join(parts)


# ---------------------------------------------------------------------- packing
SectionsArg = Union[Mapping[Union[str, int], object], Iterable[tuple[Union[str, int], object]]]


def _tag_of(tag) -> tuple[int, str]:
    if isinstance(tag, str):
        if tag not in SECTION_TAGS:
            raise ValueError(f"unknown section name {tag!r} (known: {sorted(SECTION_TAGS)})")
        return SECTION_TAGS[tag], tag
    if isinstance(tag, (int, np.integer)) and not isinstance(tag, bool) and int(tag) in _TAG_NAMES:
        return int(tag), _TAG_NAMES[int(tag)]
    raise ValueError(f"unknown section tag {tag!r} (known: {SECTION_TAGS})")


def _as_bytes_view(obj) -> memoryview:
    if isinstance(obj, np.ndarray):
        obj = np.ascontiguousarray(obj)
        return memoryview(obj.reshape(-1).view(np.uint8))
    view = memoryview(obj)
    if not view.c_contiguous:
        view = memoryview(view.tobytes())
    return view.cast("B") if (view.format != "B" or view.ndim != 1) else view


def pack_chunk(header: ChunkHeader, sections: SectionsArg) -> bytes:
    """Serialise ``header`` and ``sections`` (a mapping or an ordered list of
    ``(name_or_tag, bytes-like)``; names from ``SECTION_TAGS``) into chunk bytes."""
    if not isinstance(header, ChunkHeader):
        raise TypeError(f"header must be a ChunkHeader, got {type(header).__name__}")
    items = list(sections.items()) if isinstance(sections, Mapping) else list(sections)
    encoded: list[tuple[int, memoryview]] = []
    names: list[str] = []
    for item in items:
        try:
            tag, payload = item
        except (TypeError, ValueError):
            raise ValueError(f"sections must be (tag, bytes) pairs, got {item!r}") from None
        code, name = _tag_of(tag)
        if name in names:
            raise ValueError(f"section {name!r} given twice")
        names.append(name)
        encoded.append((code, _as_bytes_view(payload)))
    if len(encoded) > _U16:
        raise ValueError(f"too many sections ({len(encoded)}); at most {_U16}")
    if header.has_nan_mask != ("nan_mask" in names):
        raise ValueError(
            "header flag bit 0 (NaN mask present) must be set exactly when a 'nan_mask' "
            f"section is given (flags=0x{header.flags:x}, sections={names})"
        )
    if header.mode in (MODE_BOUNDED, MODE_PLAIN_RESIDUAL) and "residual" not in names:
        raise ValueError(f"mode {header.mode} ({KNOWN_MODES[header.mode]}) chunks need a 'residual' section")
    if header.mode == MODE_PLAIN_RESIDUAL and "prediction" not in names:
        raise ValueError("mode 3 (plain-residual) chunks need a 'prediction' section")
    if not header.version3 and (header.mode in _V3_MODES or any(n in _V3_SECTIONS for n in names)):
        raise ValueError(f"mode {header.mode} / sections {names} need format version 3 (a header with a pin)")
    if header.version3:
        return _pack_v3(header, encoded)
    version = _version_for(header.mode, names)
    body = header._encode()
    if len(body) > _U16:  # cannot happen with <= 8 dims, kept as a guard
        raise ValueError("header too long")
    total = (
        _PREAMBLE_SIZE
        + len(body)
        + 2
        + sum(_SECTION_HEAD.size + len(p) for _, p in encoded)
        + _CRC_SIZE
    )
    out = bytearray()
    out += _PREAMBLE.pack(MAGIC, version, 0, len(body), total)
    out += body
    out += struct.pack("<H", len(encoded))
    for code, payload in encoded:
        out += _SECTION_HEAD.pack(code, len(payload))
        out += payload
    out += struct.pack("<I", zlib.crc32(out) & 0xFFFFFFFF)
    assert len(out) == total
    return bytes(out)


def _version_for(mode: int, names) -> int:
    """The lowest format version that can express a chunk with this mode and these sections."""
    if mode in _V2_MODES or any(n in _V2_SECTIONS for n in names):
        return 2
    return 1


# ---------------------------------------------------------------------- version 3 (compact)
# layout byte: bits 0-3 ndim, bit 4 order (1 = F), bits 5-6 dtype code - 1, bit 7 reserved
# content byte: bits 0-1 mode, bits 2-7 one bit per section tag 1..6 (present)
# coding byte (modes 0 and 2 only): bits 0-3 bits - 1, bits 4-5 quantizer_id, bits 6-7 entropy_id
_V3_MIN_LEN = len(V3_PREFIX) + PIN_SIZE + 2 + _CRC_SIZE


def model_pin(model_sha256: str, grid_key: bytes) -> bytes:
    """The version-3 ``pin``: the first ``PIN_SIZE`` bytes of
    ``sha256(b"inrcodec-pin-v3" || raw model sha256 || grid_key)``. ``grid_key`` names the grid
    the codec decodes on (the codec passes a grid digest, or ``b"regular"`` for the global
    regular grid implied by the chunk's shape)."""
    h = hashlib.sha256(b"inrcodec-pin-v3")
    h.update(bytes.fromhex(model_sha256))
    h.update(bytes(grid_key))
    return h.digest()[:PIN_SIZE]


def _varint(value: int) -> bytes:
    """Unsigned LEB128 (7 bits per byte, low first, high bit = more bytes follow)."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _pack_v3(header: ChunkHeader, encoded: list[tuple[int, memoryview]]) -> bytes:
    encoded = sorted(encoded, key=lambda item: item[0])  # sections in tag order
    present = 0
    for code, _ in encoded:
        present |= 1 << (code - 1)
    out = bytearray(V3_PREFIX)
    out += header.pin
    out.append(len(header.shape) | ORDER_CODES[header.order] << 4 | (DTYPE_CODES[header.dtype] - 1) << 5)
    out.append(header.mode | present << 2)
    if header.mode not in _MODES_WITHOUT_LATENTS:
        out.append((header.bits - 1) | header.quantizer_id << 4 | header.entropy_id << 6)
    for d in header.shape:
        out += _varint(d)
    for _, payload in encoded[:-1]:  # the last section runs to the checksum
        out += _varint(len(payload))
    for _, payload in encoded:
        out += payload
    out += struct.pack("<I", zlib.crc32(out) & 0xFFFFFFFF)
    return bytes(out)


def _unpack_v3(buf: memoryview, expected_pin: bytes | None) -> tuple[ChunkHeader, dict[str, bytes]]:
    size = len(buf)
    if size < _V3_MIN_LEN:
        raise CorruptChunkError(f"truncated at byte {size} of at least {_V3_MIN_LEN}")
    (stored_crc,) = struct.unpack("<I", buf[size - _CRC_SIZE :])
    computed_crc = zlib.crc32(buf[: size - _CRC_SIZE]) & 0xFFFFFFFF
    if stored_crc != computed_crc:
        raise CorruptChunkError(
            f"checksum mismatch: stored CRC32 0x{stored_crc:08x}, computed 0x{computed_crc:08x} "
            "(a version-3 chunk has no length field: truncation and trailing bytes show here)"
        )
    r = _Reader(buf, len(V3_PREFIX), size - _CRC_SIZE, "version-3 header")
    pin = bytes(r.take(PIN_SIZE, "pin"))
    if expected_pin is not None and pin != bytes(expected_pin):
        raise CorruptChunkError(
            f"chunk pin {pin.hex()} does not match the codec's pin {bytes(expected_pin).hex()}: "
            "it was written with another base network or grid"
        )
    layout, content = r.unpack("<BB", "layout/content bytes")
    if layout & 0x80:
        raise CorruptChunkError(f"reserved bit set in layout byte 0x{layout:02x}")
    ndim, order_code, dtype_code = layout & 0x0F, layout >> 4 & 1, (layout >> 5 & 3) + 1
    if ndim > MAX_NDIM:
        raise CorruptChunkError(f"shape has {ndim} dims; at most {MAX_NDIM} allowed")
    mode, present = content & 3, content >> 2
    if mode not in KNOWN_MODES:
        raise CorruptChunkError(f"unknown chunk mode {mode} (this build knows {sorted(KNOWN_MODES)})")
    bits = qid = eid = 0
    if mode not in _MODES_WITHOUT_LATENTS:
        (coding,) = r.unpack("<B", "coding byte")
        bits, qid, eid = (coding & 0x0F) + 1, coding >> 4 & 3, coding >> 6
    shape = tuple(_read_varint(r, f"shape[{i}]") for i in range(ndim))
    codes = [code for code in sorted(_TAG_NAMES) if present >> (code - 1) & 1]
    lengths = [_read_varint(r, f"length of section {_TAG_NAMES[c]!r}") for c in codes[:-1]]
    sections: dict[str, bytes] = {}
    for code, length in zip(codes, lengths + [None]):
        name = _TAG_NAMES[code]
        length = r.end - r.pos if length is None else length
        sections[name] = bytes(r.take(length, f"section {name!r}"))
    if r.pos != r.end:
        raise CorruptChunkError(f"{r.end - r.pos} unaccounted bytes before the checksum")
    needs = {MODE_BOUNDED: ("residual",), MODE_PLAIN_RESIDUAL: ("residual", "prediction")}
    for name in needs.get(mode, ()):
        if name not in sections:
            raise CorruptChunkError(f"mode {mode} ({KNOWN_MODES[mode]}) chunk lacks its {name!r} section")
    try:
        header = ChunkHeader(
            model_sha256=None, dtype=_DTYPE_BY_CODE[dtype_code], shape=shape,
            order=_ORDER_BY_CODE[order_code], mode=mode, patch_shape=None, num_items=None,
            num_patches=None, latent_dim=None, bits=bits, quantizer_id=qid, entropy_id=eid,
            flags=FLAG_NAN_MASK if "nan_mask" in sections else 0, pin=pin,
        )
    except ValueError as exc:
        raise CorruptChunkError(f"invalid header field: {exc}") from None
    return header, sections


def _read_varint(r: "_Reader", field: str) -> int:
    value = shift = 0
    for i in range(10):  # a u64 needs at most 10 bytes
        (byte,) = r.unpack("<B", field)
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            if byte == 0 and i > 0:
                raise CorruptChunkError(f"{field}: non-canonical varint (trailing zero byte)")
            if value > _U64:
                raise CorruptChunkError(f"{field}: varint exceeds 64 bits")
            return value
    raise CorruptChunkError(f"{field}: varint longer than 10 bytes")


# ---------------------------------------------------------------------- unpacking
def _as_input_view(data) -> memoryview:
    if isinstance(data, np.ndarray):
        return _as_bytes_view(data)
    try:
        return _as_bytes_view(data)
    except TypeError:
        raise TypeError(
            f"chunk data must be bytes, bytearray, memoryview or a numpy array, "
            f"got {type(data).__name__}"
        ) from None


class _Reader:
    """Bounds-checked cursor over ``buf[start:end]``."""

    def __init__(self, buf: memoryview, start: int, end: int, what: str):
        self.buf, self.pos, self.end, self.what = buf, start, end, what

    def take(self, n: int, field: str) -> memoryview:
        if n < 0 or n > self.end - self.pos:
            raise CorruptChunkError(
                f"{self.what}: field {field} needs {n} bytes at offset {self.pos} but only "
                f"{self.end - self.pos} remain"
            )
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str | struct.Struct, field: str) -> tuple:
        st = fmt if isinstance(fmt, struct.Struct) else struct.Struct(fmt)
        return st.unpack(self.take(st.size, field))


def unpack_chunk(
    data, expected_model_sha256: str | None = None, expected_pin: bytes | None = None
) -> tuple[ChunkHeader, dict[str, bytes]]:
    """Parse chunk bytes (bytes / bytearray / memoryview / uint8 ndarray).

    Returns ``(header, sections)``, sections as an insertion-ordered
    ``{name: bytes}`` (tag order in version 3).  With ``expected_model_sha256``, a version-1/2
    chunk written by another base network raises ``CorruptChunkError`` naming both hashes;
    with ``expected_pin``, so does a version-3 chunk whose pin differs.
    """
    buf = _as_input_view(data)
    size = len(buf)
    if bytes(buf[: len(V3_PREFIX)]) == V3_PREFIX:
        return _unpack_v3(buf, expected_pin)

    # 1. magic (a version > 3 would keep MAGIC[:1] and then its version byte, like version 3)
    head = bytes(buf[: len(MAGIC)])
    if size >= 2 and head[:1] == MAGIC[:1] and buf[1] < 0x20:
        raise CorruptChunkError(
            f"unsupported format version {buf[1]} (this build reads up to {FORMAT_VERSION})"
        )
    if head != MAGIC:
        if size < len(MAGIC) and MAGIC.startswith(head):
            raise CorruptChunkError(
                f"truncated at byte {size} of at least {_MIN_CHUNK_LEN} (inside the magic)"
            )
        raise CorruptChunkError(f"bad magic {head!r}: expected {MAGIC!r} (not an inrcodec chunk)")
    # 2. version
    if size < len(MAGIC) + 1:
        raise CorruptChunkError(f"truncated at byte {size} of at least {_MIN_CHUNK_LEN}")
    version = buf[len(MAGIC)]
    if version not in _LEGACY_VERSIONS:
        raise CorruptChunkError(
            f"unsupported format version {version} (this build reads up to {FORMAT_VERSION})"
        )
    # 3. declared length: truncation / trailing bytes
    if size < _PREAMBLE_SIZE:
        raise CorruptChunkError(f"truncated at byte {size} of at least {_MIN_CHUNK_LEN}")
    _, _, header_flags, header_len, total = _PREAMBLE.unpack(buf[:_PREAMBLE_SIZE])
    if size < total:
        raise CorruptChunkError(f"truncated at byte {size} of {total}")
    if size > total:
        raise CorruptChunkError(
            f"{size - total} trailing bytes after the end of the chunk "
            f"(declared length {total}, got {size} bytes)"
        )
    if total < _MIN_CHUNK_LEN:
        raise CorruptChunkError(
            f"declared chunk length {total} is shorter than the minimum {_MIN_CHUNK_LEN}"
        )
    # 4. checksum, before any body field is interpreted
    (stored_crc,) = struct.unpack("<I", buf[total - _CRC_SIZE : total])
    computed_crc = zlib.crc32(buf[: total - _CRC_SIZE]) & 0xFFFFFFFF
    if stored_crc != computed_crc:
        raise CorruptChunkError(
            f"checksum mismatch: stored CRC32 0x{stored_crc:08x}, computed 0x{computed_crc:08x}"
        )
    # 5. body (checksummed, but still parsed defensively)
    if header_flags != 0:
        raise CorruptChunkError(
            f"unsupported header flags 0x{header_flags:02x} (format version {version} defines none)"
        )
    body_end = total - _CRC_SIZE
    if header_len > body_end - _PREAMBLE_SIZE:
        raise CorruptChunkError(
            f"header length {header_len} runs past the end of the chunk body "
            f"({body_end - _PREAMBLE_SIZE} bytes)"
        )
    header = _parse_header(buf, _PREAMBLE_SIZE, _PREAMBLE_SIZE + header_len)

    if expected_model_sha256 is not None:
        expected = str(expected_model_sha256).lower()
        if header.model_sha256 != expected:
            raise CorruptChunkError(
                f"chunk written by base network {header.model_sha256} but the codec is "
                f"pinned to {expected}"
            )

    r = _Reader(buf, _PREAMBLE_SIZE + header_len, body_end, "sections")
    (count,) = r.unpack("<H", "section count")
    sections: dict[str, bytes] = {}
    for i in range(count):
        code, length = r.unpack(_SECTION_HEAD, f"section {i} header")
        name = _TAG_NAMES.get(code)
        if name is None:
            raise CorruptChunkError(
                f"unknown section tag {code} in section {i} (this build knows {SECTION_TAGS})"
            )
        if name in sections:
            raise CorruptChunkError(f"section {name!r} appears twice")
        if length > r.end - r.pos:
            raise CorruptChunkError(
                f"section {name!r} declares {length} bytes at offset {r.pos} but only "
                f"{r.end - r.pos} remain"
            )
        sections[name] = bytes(r.take(length, f"section {name!r}"))
    if r.pos != body_end:
        raise CorruptChunkError(
            f"{body_end - r.pos} unaccounted bytes between the last section and the checksum"
        )
    if header.has_nan_mask != ("nan_mask" in sections):
        raise CorruptChunkError(
            f"NaN-mask flag is {'set' if header.has_nan_mask else 'clear'} but the chunk "
            f"{'lacks' if header.has_nan_mask else 'has'} a 'nan_mask' section"
        )
    if header.mode in _V3_MODES or any(n in _V3_SECTIONS for n in sections):
        raise CorruptChunkError(
            f"mode {header.mode} / sections {list(sections)} need format version 3, "
            f"the chunk says version {version}"
        )
    if version < 2:
        if header.mode in _V2_MODES:
            raise CorruptChunkError(
                f"mode {header.mode} ({KNOWN_MODES[header.mode]}) needs format version 2, "
                f"the chunk says version {version}"
            )
        late = [n for n in sections if n in _V2_SECTIONS]
        if late:
            raise CorruptChunkError(
                f"section {late[0]!r} needs format version 2, the chunk says version {version}"
            )
    if header.mode == MODE_BOUNDED and "residual" not in sections:
        raise CorruptChunkError("mode 2 (bounded) chunk lacks its 'residual' section")
    return header, sections


def _parse_header(buf: memoryview, start: int, end: int) -> ChunkHeader:
    r = _Reader(buf, start, end, "header")
    sha = bytes(r.take(32, "model_sha256")).hex()
    dtype_code, order_code, mode, ndim = r.unpack("<BBBB", "dtype/order/mode/ndim")
    if dtype_code not in _DTYPE_BY_CODE:
        raise CorruptChunkError(f"unknown dtype code {dtype_code} (known: {_DTYPE_BY_CODE})")
    if order_code not in _ORDER_BY_CODE:
        raise CorruptChunkError(f"unknown order code {order_code} (known: 0=C, 1=F)")
    if ndim > MAX_NDIM:
        raise CorruptChunkError(f"shape has {ndim} dims; at most {MAX_NDIM} allowed")
    shape = r.unpack(f"<{ndim}Q", "shape")
    (pndim,) = r.unpack("<B", "patch ndim")
    if pndim > MAX_NDIM:
        raise CorruptChunkError(f"patch shape has {pndim} dims; at most {MAX_NDIM} allowed")
    patch_shape = r.unpack(f"<{pndim}I", "patch_shape")
    num_items, num_patches, latent_dim, bits, qid, eid, flags = r.unpack(_TAIL, "counts/ids")
    if r.pos != end:
        raise CorruptChunkError(
            f"header length mismatch: fields end at offset {r.pos}, declared end {end}"
        )
    try:
        return ChunkHeader(
            model_sha256=sha,
            dtype=_DTYPE_BY_CODE[dtype_code],
            shape=tuple(shape),
            order=_ORDER_BY_CODE[order_code],
            mode=mode,
            patch_shape=tuple(patch_shape),
            num_items=num_items,
            num_patches=num_patches,
            latent_dim=latent_dim,
            bits=bits,
            quantizer_id=qid,
            entropy_id=eid,
            flags=flags,
        )
    except ValueError as exc:
        raise CorruptChunkError(f"invalid header field: {exc}") from None
