"""The self-describing chunk layouts, versions 1 and 2 (layout: ``docs/format.md``).

``INRC`` magic, fixed-width little-endian fields and the full 32-byte model hash. This build
still writes them for headers that carry a ``model_sha256`` (no ``pin``) and reads them all.
:func:`inrcodec.chunkformat.pack_chunk` / ``unpack_chunk`` dispatch here.

The reader checks, in order: magic, format version, declared total length (truncation /
trailing bytes), CRC32, then parses the body with every length checked against the bytes that
remain before anything is sliced.
"""
from __future__ import annotations

import struct
import zlib

from inrcodec.chunkformat.header import (
    CRC_SIZE, DTYPE_BY_CODE, DTYPE_CODES, FORMAT_VERSION, KNOWN_MODES, LEGACY_VERSIONS, MAGIC, MAX_NDIM,
    ORDER_BY_CODE, ORDER_CODES, SECTION_TAGS, TAG_NAMES, U16, V2_MODES, V2_SECTIONS, V3_MODES,
    V3_SECTIONS, V5_SECTIONS, ChunkHeader, Reader, check_sections,
)
from inrcodec.errors import CorruptChunkError

# preamble: magic, version u8, header flags u8, header length u16, total length u64
_PREAMBLE = struct.Struct("<4sBBHQ")
_PREAMBLE_SIZE = _PREAMBLE.size  # 16
_SECTION_HEAD = struct.Struct("<BQ")  # tag, length
_TAIL = struct.Struct("<QQIBBBI")  # num_items, num_patches, latent_dim, bits, qid, eid, flags
_MIN_HEADER_LEN = 32 + 4 + 1 + _TAIL.size  # sha, dtype/order/mode/ndim, patch ndim, tail
MIN_CHUNK_LEN = _PREAMBLE_SIZE + _MIN_HEADER_LEN + 2 + CRC_SIZE


# ---------------------------------------------------------------------- writing
def _encode_header(header: ChunkHeader) -> bytes:
    parts = [
        bytes.fromhex(header.model_sha256),
        struct.pack("<BBBB", DTYPE_CODES[header.dtype], ORDER_CODES[header.order], header.mode, len(header.shape)),
        struct.pack(f"<{len(header.shape)}Q", *header.shape),
        struct.pack("<B", len(header.patch_shape)),
        struct.pack(f"<{len(header.patch_shape)}I", *header.patch_shape),
        _TAIL.pack(header.num_items, header.num_patches, header.latent_dim, header.bits,
                   header.quantizer_id, header.entropy_id, header.flags),
    ]
    return b"".join(parts)


def _version_for(mode: int, names) -> int:
    """The lowest format version that can express a chunk with this mode and these sections."""
    if mode in V2_MODES or any(n in V2_SECTIONS for n in names):
        return 2
    return 1


def pack_legacy(header: ChunkHeader, encoded: list[tuple[int, memoryview]], names: list[str]) -> bytes:
    """Version 1 or 2 chunk bytes of a header with ``model_sha256`` and checked sections
    (``(tag, payload)`` in the given order)."""
    version = _version_for(header.mode, names)
    body = _encode_header(header)
    if len(body) > U16:  # cannot happen with <= 8 dims, kept as a guard
        raise ValueError("header too long")
    total = (
        _PREAMBLE_SIZE
        + len(body)
        + 2
        + sum(_SECTION_HEAD.size + len(p) for _, p in encoded)
        + CRC_SIZE
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


# ---------------------------------------------------------------------- reading
def unpack_legacy(buf: memoryview, expected_model_sha256: str | None) -> tuple[ChunkHeader, dict[str, bytes]]:
    """Parse version-1/2 chunk bytes (anything that does not start like version 3)."""
    version, header_len, total = _check_preamble(buf)
    body_end = total - CRC_SIZE
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
    sections = _read_sections(buf, _PREAMBLE_SIZE + header_len, body_end)
    _check_sections(header, sections, version)
    return header, sections


def _check_preamble(buf: memoryview) -> tuple[int, int, int]:
    """Magic, version, declared length and CRC; ``(version, header length, total length)``."""
    size = len(buf)
    # 1. magic (versions 3, 4 and 5 keep; a later one would keep MAGIC[:1] and then its version byte, like version 3)
    head = bytes(buf[: len(MAGIC)])
    if size >= 2 and head[:1] == MAGIC[:1] and buf[1] < 0x20:
        raise CorruptChunkError(
            f"unsupported format version {buf[1]} (this build reads up to {FORMAT_VERSION})"
        )
    if head != MAGIC:
        if size < len(MAGIC) and MAGIC.startswith(head):
            raise CorruptChunkError(
                f"truncated at byte {size} of at least {MIN_CHUNK_LEN} (inside the magic)"
            )
        raise CorruptChunkError(f"bad magic {head!r}: expected {MAGIC!r} (not an inrcodec chunk)")
    # 2. version
    if size < len(MAGIC) + 1:
        raise CorruptChunkError(f"truncated at byte {size} of at least {MIN_CHUNK_LEN}")
    version = buf[len(MAGIC)]
    if version not in LEGACY_VERSIONS:
        raise CorruptChunkError(
            f"unsupported format version {version} (this build reads up to {FORMAT_VERSION})"
        )
    # 3. declared length: truncation / trailing bytes
    if size < _PREAMBLE_SIZE:
        raise CorruptChunkError(f"truncated at byte {size} of at least {MIN_CHUNK_LEN}")
    _, _, header_flags, header_len, total = _PREAMBLE.unpack(buf[:_PREAMBLE_SIZE])
    if size < total:
        raise CorruptChunkError(f"truncated at byte {size} of {total}")
    if size > total:
        raise CorruptChunkError(
            f"{size - total} trailing bytes after the end of the chunk "
            f"(declared length {total}, got {size} bytes)"
        )
    if total < MIN_CHUNK_LEN:
        raise CorruptChunkError(
            f"declared chunk length {total} is shorter than the minimum {MIN_CHUNK_LEN}"
        )
    # 4. checksum, before any body field is interpreted
    (stored_crc,) = struct.unpack("<I", buf[total - CRC_SIZE : total])
    computed_crc = zlib.crc32(buf[: total - CRC_SIZE]) & 0xFFFFFFFF
    if stored_crc != computed_crc:
        raise CorruptChunkError(
            f"checksum mismatch: stored CRC32 0x{stored_crc:08x}, computed 0x{computed_crc:08x}"
        )
    # 5. body (checksummed, but still parsed defensively)
    if header_flags != 0:
        raise CorruptChunkError(
            f"unsupported header flags 0x{header_flags:02x} (format version {version} defines none)"
        )
    return version, header_len, total


def _read_sections(buf: memoryview, start: int, body_end: int) -> dict[str, bytes]:
    r = Reader(buf, start, body_end, "sections")
    (count,) = r.unpack("<H", "section count")
    sections: dict[str, bytes] = {}
    for i in range(count):
        code, length = r.unpack(_SECTION_HEAD, f"section {i} header")
        name = TAG_NAMES.get(code)
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
    return sections


def _check_sections(header: ChunkHeader, sections: dict[str, bytes], version: int) -> None:
    """The sections a legacy chunk has agree with its header flags, mode and version."""
    if header.has_nan_mask != ("nan_mask" in sections):
        raise CorruptChunkError(
            f"NaN-mask flag is {'set' if header.has_nan_mask else 'clear'} but the chunk "
            f"{'lacks' if header.has_nan_mask else 'has'} a 'nan_mask' section"
        )
    if header.mode in V3_MODES or any(n in V3_SECTIONS or n in V5_SECTIONS for n in sections):
        raise CorruptChunkError(
            f"mode {header.mode} / sections {list(sections)} need format version 3 or 5, "
            f"the chunk says version {version}"
        )
    if version < 2:
        if header.mode in V2_MODES:
            raise CorruptChunkError(
                f"mode {header.mode} ({KNOWN_MODES[header.mode]}) needs format version 2, "
                f"the chunk says version {version}"
            )
        late = [n for n in sections if n in V2_SECTIONS]
        if late:
            raise CorruptChunkError(
                f"section {late[0]!r} needs format version 2, the chunk says version {version}"
            )
    check_sections(header.mode, sections, CorruptChunkError)


def _parse_header(buf: memoryview, start: int, end: int) -> ChunkHeader:
    r = Reader(buf, start, end, "header")
    sha = bytes(r.take(32, "model_sha256")).hex()
    dtype_code, order_code, mode, ndim = r.unpack("<BBBB", "dtype/order/mode/ndim")
    if dtype_code not in DTYPE_BY_CODE:
        raise CorruptChunkError(f"unknown dtype code {dtype_code} (known: {DTYPE_BY_CODE})")
    if order_code not in ORDER_BY_CODE:
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
            model_sha256=sha, dtype=DTYPE_BY_CODE[dtype_code], shape=tuple(shape),
            order=ORDER_BY_CODE[order_code], mode=mode, patch_shape=tuple(patch_shape),
            num_items=num_items, num_patches=num_patches, latent_dim=latent_dim, bits=bits,
            quantizer_id=qid, entropy_id=eid, flags=flags,
        )
    except ValueError as exc:
        raise CorruptChunkError(f"invalid header field: {exc}") from None
