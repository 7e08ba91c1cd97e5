"""The versioned chunk byte format (layout: ``docs/format.md``).

``pack_chunk(header, sections) -> bytes`` and ``unpack_chunk(data) -> (header, sections)``.
This module knows the byte layout and nothing about what the sections mean.

Two layouts: the self-describing versions 1 and 2 (``INRC`` magic, fixed-width fields, the
full 32-byte model hash) and the compact version 3 (varints, a 4-byte ``pin`` instead of the
model hash, no fields the codec configuration already fixes: 16 bytes of overhead for a
one-item 46 x 90 chunk). A header with ``pin`` set is written as version 3; one with
``model_sha256`` as the lowest of versions 1 and 2 that can express it. All versions are read.
This module is the dispatch; the compact versions 3-5 live in :mod:`inrcodec.chunkformat.compact`,
versions 1 and 2 in :mod:`inrcodec.chunkformat.legacy`, and the header with the shared constants and
the mode table in :mod:`inrcodec.chunkformat.header`.

Every problem with chunk bytes raises ``CorruptChunkError`` (a ``ValueError``) with a
message saying what is wrong.  The reader checks, in order: magic, format version,
declared total length (truncation / trailing bytes; version 3 has none, its CRC catches both),
CRC32, then parses the body with every length checked against the bytes that remain before
anything is sliced.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Union

import numpy as np

from inrcodec.chunkformat.compact import model_pin, pack_compact, unpack_compact, varint
from inrcodec.chunkformat.header import (
    KNOWN_MODES, U16, V3_MODES, V3_PREFIX, V3_SECTIONS, V4_PREFIX, V5_PREFIX, ChunkHeader, as_bytes_view,
    check_sections, tag_of,
)
from inrcodec.chunkformat.legacy import pack_legacy, unpack_legacy
from inrcodec.errors import CorruptChunkError

__all__ = [
    "model_pin",
    "pack_chunk",
    "unpack_chunk",
    "chunk_mode",
    "mode_counts",
    "varint",
]


# ---------------------------------------------------------------------- packing
SectionsArg = Union[Mapping[Union[str, int], object], Iterable[tuple[Union[str, int], object]]]


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
        code, name = tag_of(tag)
        if name in names:
            raise ValueError(f"section {name!r} given twice")
        names.append(name)
        encoded.append((code, as_bytes_view(payload)))
    if len(encoded) > U16:
        raise ValueError(f"too many sections ({len(encoded)}); at most {U16}")
    if header.has_nan_mask != ("nan_mask" in names):
        raise ValueError(
            "header flag bit 0 (NaN mask present) must be set exactly when a 'nan_mask' "
            f"section is given (flags=0x{header.flags:x}, sections={names})"
        )
    check_sections(header.mode, names, ValueError)
    if not header.version3 and (header.mode in V3_MODES or any(n in V3_SECTIONS for n in names)):
        raise ValueError(f"mode {header.mode} / sections {names} need format version 3 (a header with a pin)")
    if header.version3:
        return pack_compact(header, encoded)  # version 3, 4 or 5
    return pack_legacy(header, encoded, names)


# ---------------------------------------------------------------------- unpacking
def _as_input_view(data) -> memoryview:
    if isinstance(data, np.ndarray):
        return as_bytes_view(data)
    try:
        return as_bytes_view(data)
    except TypeError:
        raise TypeError(
            f"chunk data must be bytes, bytearray, memoryview or a numpy array, "
            f"got {type(data).__name__}"
        ) from None


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
    if bytes(buf[: len(V3_PREFIX)]) in (V3_PREFIX, V4_PREFIX, V5_PREFIX):
        return unpack_compact(buf, expected_pin)
    return unpack_legacy(buf, expected_model_sha256)


def chunk_mode(data) -> int:
    """The mode of valid chunk bytes (for reports: which mode each chunk of a store took)."""
    return unpack_chunk(data)[0].mode


def mode_counts(chunks) -> dict[str, int]:
    """How many of ``chunks`` (chunk bytes) took each mode, by the mode's name (``KNOWN_MODES``);
    chunks that are not valid inrcodec chunks count as ``"unreadable"``."""
    counts: dict[str, int] = {}
    for data in chunks:
        try:
            name = KNOWN_MODES[chunk_mode(data)]
        except (CorruptChunkError, TypeError):
            name = "unreadable"
        counts[name] = counts.get(name, 0) + 1
    return counts
