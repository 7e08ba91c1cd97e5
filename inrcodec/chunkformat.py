"""The versioned chunk byte format (layout: ``docs/format.md``).

``pack_chunk(header, sections) -> bytes`` and ``unpack_chunk(data) -> (header, sections)``.
This module knows the byte layout and nothing about what the sections mean.

Every problem with chunk bytes raises ``CorruptChunkError`` (a ``ValueError``) with a
message saying what is wrong.  The reader checks, in order: magic, format version,
declared total length (truncation / trailing bytes), CRC32, then parses the body with
every length checked against the bytes that remain before anything is sliced.
"""
from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass
from typing import Iterable, Mapping, Union

import numpy as np

__all__ = [
    "MAGIC",
    "FORMAT_VERSION",
    "MODE_MODULATIONS",
    "MODE_RAW",
    "MODE_BOUNDED",
    "FLAG_NAN_MASK",
    "SECTION_TAGS",
    "CorruptChunkError",
    "ChunkHeader",
    "pack_chunk",
    "unpack_chunk",
]

MAGIC = b"INRC"
#: the newest version this build writes and reads; a chunk is written with the lowest
#: version that can express it (version 1 unless it uses a version-2 feature)
FORMAT_VERSION = 2
SUPPORTED_VERSIONS = (1, 2)

MODE_MODULATIONS = 0  #: latents of the base network (the codec path)
MODE_RAW = 1  #: raw lossless values (constant / all-NaN / non-finite chunks)
MODE_BOUNDED = 2  #: latents + error-bounded residual (format version 2)
KNOWN_MODES = {MODE_MODULATIONS: "modulations", MODE_RAW: "raw", MODE_BOUNDED: "bounded"}
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


class CorruptChunkError(ValueError):
    """The one exception for bad chunk bytes (truncated, bad magic, unsupported
    version, checksum mismatch, inconsistent fields, wrong base network)."""


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

    model_sha256  64 hex chars (stored lower-case): sha256 of the base network file.
    dtype         '<f4', '<f8', '>f4' or '>f8' (anything ``np.dtype`` maps to these).
    shape         the chunk's shape, 0..8 dims, each 0..2**64-1.
    order         'C' or 'F' memory order of the original chunk.
    mode          0 = modulations, 1 = raw lossless values, 2 = modulations + error-bounded
                  residual (see ``KNOWN_MODES``; mode 2 needs format version 2).
    patch_shape   0..8 dims, each 0..2**32-1.
    num_items, num_patches   u64;  latent_dim u32;  bits, quantizer_id, entropy_id u8.
    flags         u32, bit 0 = a "nan_mask" section is present; other bits must be 0.
    """

    model_sha256: str
    dtype: str
    shape: tuple[int, ...]
    order: str
    mode: int
    patch_shape: tuple[int, ...]
    num_items: int
    num_patches: int
    latent_dim: int
    bits: int
    quantizer_id: int
    entropy_id: int
    flags: int = 0

    def __post_init__(self) -> None:
        sha = self.model_sha256
        if not isinstance(sha, str) or not _HEX64.fullmatch(sha.lower()):
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
            "model_sha256": sha.lower(),
            "dtype": dtype,
            "shape": _dims("shape", self.shape, _U64),
            "mode": mode,
            "patch_shape": _dims("patch_shape", self.patch_shape, _U32),
            "num_items": _uint("num_items", self.num_items, _U64),
            "num_patches": _uint("num_patches", self.num_patches, _U64),
            "latent_dim": _uint("latent_dim", self.latent_dim, _U32),
            "bits": _uint("bits", self.bits, _U8),
            "quantizer_id": _uint("quantizer_id", self.quantizer_id, _U8),
            "entropy_id": _uint("entropy_id", self.entropy_id, _U8),
            "flags": flags,
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)

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
    if header.mode == MODE_BOUNDED and "residual" not in names:
        raise ValueError("mode 2 (bounded) chunks need a 'residual' section")
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
    data, expected_model_sha256: str | None = None
) -> tuple[ChunkHeader, dict[str, bytes]]:
    """Parse chunk bytes (bytes / bytearray / memoryview / uint8 ndarray).

    Returns ``(header, sections)``, sections as an insertion-ordered
    ``{name: bytes}``.  With ``expected_model_sha256``, a chunk written by another
    base network raises ``CorruptChunkError`` naming both hashes.
    """
    buf = _as_input_view(data)
    size = len(buf)

    # 1. magic
    head = bytes(buf[: len(MAGIC)])
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
    if version not in SUPPORTED_VERSIONS:
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
