"""The compact chunk layout, versions 3, 4 and 5 (docs/format.md): varints, a 4-byte ``pin``
instead of the model hash, no field the model or the codec configuration fixes.

:func:`pack_compact` and :func:`unpack_compact` are what ``chunkformat.pack_chunk`` and
``unpack_chunk`` call for a header with a pin; the mode table and the section checks are
:mod:`inrcodec.chunkformat.header`'s.
"""
from __future__ import annotations

import hashlib
import struct
import zlib

from inrcodec.chunkformat.header import (
    CRC_SIZE, DTYPE_BY_CODE, DTYPE_CODES, FLAG_NAN_MASK, KNOWN_MODES, MAX_NDIM, MODES_WITHOUT_LATENTS, ORDER_BY_CODE,
    ORDER_CODES, PIN_SIZE, SECTION_TAGS, TAG_NAMES, U64, V3_PREFIX, V4_PREFIX, V5_MODES, V5_PREFIX, ChunkHeader,
    Reader, check_sections,
)
from inrcodec.errors import CorruptChunkError

__all__ = ["model_pin", "pack_compact", "unpack_compact", "varint"]

# layout byte: bits 0-3 ndim, bit 4 order (1 = F), bits 5-6 dtype code - 1, bit 7 reserved
# content byte: bits 0-1 mode, bits 2-7 one bit per section tag 1..6 (present)
# coding byte (modes 0 and 2 only): bits 0-3 bits - 1, bits 4-5 quantizer_id, bits 6-7 entropy_id
# version 4, modes 0 and 2 only: then one varint, patch aim << 1 | predict (aim 0 = the model's patch)
# version 5 (modes 4 to 7 only): the content is a varint, bits 0-2 mode, bits 3-8 one bit per
# section tag 1..6; the "wavelet" section (tag 7) has no bit: it is present exactly in modes 4 to 7
# (and, its tag being the highest, runs to the checksum). Mode 4 has the coding byte and latent layout.
_V3_MIN_LEN = len(V3_PREFIX) + PIN_SIZE + 2 + CRC_SIZE


def model_pin(model_sha256: str, grid_key: bytes) -> bytes:
    """The version-3 ``pin``: the first ``PIN_SIZE`` bytes of
    ``sha256(b"inrcodec-pin-v3" || raw model sha256 || grid_key)``. ``grid_key`` names the grid
    the codec decodes on (the codec passes a grid digest, or ``b"regular"`` for the global
    regular grid implied by the chunk's shape)."""
    h = hashlib.sha256(b"inrcodec-pin-v3")
    h.update(bytes.fromhex(model_sha256))
    h.update(bytes(grid_key))
    return h.digest()[:PIN_SIZE]


def varint(value: int) -> bytes:
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


def pack_compact(header: ChunkHeader, encoded: list[tuple[int, memoryview]]) -> bytes:
    """Version 3, 4 or 5 chunk bytes (``header.version``) of a header with a ``pin`` and checked
    sections (``(tag, payload)``)."""
    encoded = sorted(encoded, key=lambda item: item[0])  # sections in tag order
    present = 0
    for code, _ in encoded:
        present |= 1 << (code - 1)
    version = header.version
    out = bytearray({3: V3_PREFIX, 4: V4_PREFIX, 5: V5_PREFIX}[version])
    out += header.pin
    out.append(len(header.shape) | ORDER_CODES[header.order] << 4 | (DTYPE_CODES[header.dtype] - 1) << 5)
    if version == 5:
        out += varint(header.mode | (present & ~(1 << (SECTION_TAGS["wavelet"] - 1))) << 3)
    else:
        out.append(header.mode | present << 2)
    if header.mode not in MODES_WITHOUT_LATENTS:
        out.append((header.bits - 1) | header.quantizer_id << 4 | header.entropy_id << 6)
        if version >= 4:
            out += varint(header.patch_aim << 1 | header.predict)
    for d in header.shape:
        out += varint(d)
    for _, payload in encoded[:-1]:  # the last section runs to the checksum
        out += varint(len(payload))
    for _, payload in encoded:
        out += payload
    out += struct.pack("<I", zlib.crc32(out) & 0xFFFFFFFF)
    return bytes(out)


def unpack_compact(buf: memoryview, expected_pin: bytes | None) -> tuple[ChunkHeader, dict[str, bytes]]:
    """(header, sections) of version 3, 4 or 5 chunk bytes (the version byte says which)."""
    size = len(buf)
    version = buf[1]
    if size < _V3_MIN_LEN:
        raise CorruptChunkError(f"truncated at byte {size} of at least {_V3_MIN_LEN}")
    (stored_crc,) = struct.unpack("<I", buf[size - CRC_SIZE :])
    computed_crc = zlib.crc32(buf[: size - CRC_SIZE]) & 0xFFFFFFFF
    if stored_crc != computed_crc:
        raise CorruptChunkError(
            f"checksum mismatch: stored CRC32 0x{stored_crc:08x}, computed 0x{computed_crc:08x} "
            "(a version-3 chunk has no length field: truncation and trailing bytes show here)"
        )
    r = Reader(buf, len(V3_PREFIX), size - CRC_SIZE, f"version-{version} header")
    pin = bytes(r.take(PIN_SIZE, "pin"))
    if expected_pin is not None and pin != bytes(expected_pin):
        raise CorruptChunkError(
            f"chunk pin {pin.hex()} does not match the codec's pin {bytes(expected_pin).hex()}: "
            "it was written with another base network or grid"
        )
    (layout,) = r.unpack("<B", "layout byte")
    if layout & 0x80:
        raise CorruptChunkError(f"reserved bit set in layout byte 0x{layout:02x}")
    ndim, order_code, dtype_code = layout & 0x0F, layout >> 4 & 1, (layout >> 5 & 3) + 1
    if ndim > MAX_NDIM:
        raise CorruptChunkError(f"shape has {ndim} dims; at most {MAX_NDIM} allowed")
    mode, present = _read_content(r, version)
    if mode not in KNOWN_MODES:
        raise CorruptChunkError(f"unknown chunk mode {mode} (this build knows {sorted(KNOWN_MODES)})")
    bits = qid = eid = 0
    if mode not in MODES_WITHOUT_LATENTS:
        (coding,) = r.unpack("<B", "coding byte")
        bits, qid, eid = (coding & 0x0F) + 1, coding >> 4 & 3, coding >> 6
    aim = predict = 0
    if version >= 4 and mode not in MODES_WITHOUT_LATENTS:
        latent_layout = _read_varint(r, "latent layout (patch aim, predict)")
        aim, predict = latent_layout >> 1, latent_layout & 1
        if aim > 255:
            raise CorruptChunkError(f"patch aim {aim} exceeds 255 points")
    shape = tuple(_read_varint(r, f"shape[{i}]") for i in range(ndim))
    codes = [code for code in sorted(TAG_NAMES) if present >> (code - 1) & 1]
    lengths = [_read_varint(r, f"length of section {TAG_NAMES[c]!r}") for c in codes[:-1]]
    sections: dict[str, bytes] = {}
    for code, length in zip(codes, lengths + [None]):
        name = TAG_NAMES[code]
        length = r.end - r.pos if length is None else length
        sections[name] = bytes(r.take(length, f"section {name!r}"))
    if r.pos != r.end:
        raise CorruptChunkError(f"{r.end - r.pos} unaccounted bytes before the checksum")
    check_sections(mode, sections, CorruptChunkError)
    try:
        header = ChunkHeader(
            model_sha256=None, dtype=DTYPE_BY_CODE[dtype_code], shape=shape,
            order=ORDER_BY_CODE[order_code], mode=mode, patch_shape=None, num_items=None,
            num_patches=None, latent_dim=None, bits=bits, quantizer_id=qid, entropy_id=eid,
            flags=FLAG_NAN_MASK if "nan_mask" in sections else 0, pin=pin, patch_aim=aim, predict=predict,
        )
    except ValueError as exc:
        raise CorruptChunkError(f"invalid header field: {exc}") from None
    if header.version != version:  # one way to write every header: version 3 cannot name the new coding
        raise CorruptChunkError(
            f"a version-{version} chunk with quantizer_id {qid}, entropy_id {eid}, patch aim {aim}, "
            f"predict {predict} (that is version {header.version})"
        )
    return header, sections


def _read_content(r: "Reader", version: int) -> tuple[int, int]:
    """(mode, section presence bits: bit ``tag - 1``) of the content byte (versions 3, 4) or varint
    (version 5, where the ``wavelet`` section is implied by the mode)."""
    if version < 5:
        (content,) = r.unpack("<B", "content byte")
        return content & 3, content >> 2
    content = _read_varint(r, "content (mode, sections)")
    mode, present = content & 7, content >> 3
    if present >> (SECTION_TAGS["wavelet"] - 1):
        raise CorruptChunkError(f"version-5 content 0x{content:x} names sections beyond tag 6")
    if mode in V5_MODES:
        present |= 1 << (SECTION_TAGS["wavelet"] - 1)
    return mode, present


def _read_varint(r: "Reader", field: str) -> int:
    value = shift = 0
    for i in range(10):  # a u64 needs at most 10 bytes
        (byte,) = r.unpack("<B", field)
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            if byte == 0 and i > 0:
                raise CorruptChunkError(f"{field}: non-canonical varint (trailing zero byte)")
            if value > U64:
                raise CorruptChunkError(f"{field}: varint exceeds 64 bits")
            return value
    raise CorruptChunkError(f"{field}: varint longer than 10 bytes")
