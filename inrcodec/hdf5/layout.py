"""The filter's ``cd_values`` layout, both ways: options to unsigned 32-bit words and back.

Layout 2 (written since issue #14)::

    [0] 2 (the layout version)
    [1] n: the length in bytes of the JSON that follows
    [2 : 2 + ceil(n / 4)] UTF-8 JSON, 4 bytes a word (big-endian), zero padded:
        CodecSettings.to_dict() without lat/lon, plus "model_sha256" (the model's full
        SHA-256) and, with lat/lon, "grid_id" (names the grid stored in the file)
    then, appended by the filter's set_local callback at dataset creation:
    itemsize (4 or 8), ndim, chunk dims...

Every codec option travels, and an option added to :class:`~inrcodec.settings.CodecSettings`
travels without a change here. A file whose JSON names an option this inrcodec does not know
refuses to decode with a one-line error ("written by a newer inrcodec").

Layout 1 (files written before; read only)::

    [0] 1 | flags << 8 (1: entropy coding, 2: lat/lon grid)
    [1] bits | inner_steps << 8
    [2:6] the first 16 bytes of the model's SHA-256
    [6:8] grid id (0, 0 without lat/lon: a global regular grid)
    then the same chunk layout words.

The lat/lon values and the model are too large for ``cd_values`` (an HDF5 object header
message is at most 64 KiB; h5py shows at most 256 values): :mod:`inrcodec.hdf5.storage` keeps
them in the file. Every chunk carries a 4-byte pin of the model's SHA-256 and the grid (format
versions 3 and 4; versions 1 and 2 carried the full SHA-256), checked at decode.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

from inrcodec.settings import CodecSettings

__all__ = ["FILTER_ID", "FILTER_NAME", "FilterParams", "parse", "user_words", "chunk_layout", "MAX_USER_WORDS"]

#: Filter id, from the range 32768-65535 that HDF5 leaves for unregistered (testing/private) use.
FILTER_ID = 47017
FILTER_NAME = b"inrcodec.coinpp (COIN++ neural codec; pip install inrcodec; import inrcodec.hdf5)"
#: h5py reads back at most 256 values; this leaves room for the chunk layout of 32 dims
MAX_USER_WORDS = 200
_V1_WORDS = 8


@dataclass(frozen=True)
class FilterParams:
    """What a dataset's ``cd_values`` say.

    ``settings`` has no lat/lon (``grid_id`` names them); ``model_sha256`` is the model's full
    SHA-256, or its first 32 hex digits in layout-1 files. ``itemsize`` and ``chunks`` are
    None until HDF5 has run the filter's set_local callback (at dataset creation).
    """

    model_sha256: str
    settings: CodecSettings
    grid_id: str | None = None
    itemsize: int | None = None
    chunks: tuple[int, ...] | None = None
    version: int = 2

    def to_cd_values(self) -> tuple[int, ...]:
        """The layout-2 words of these parameters (without the chunk layout)."""
        body = self.settings.replace(lat=None, lon=None).to_dict()
        del body["lat"], body["lon"]
        body["model_sha256"] = self.model_sha256
        if self.grid_id is not None:
            body["grid_id"] = self.grid_id
        data = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        padded = data + b"\0" * (-len(data) % 4)
        words = (2, len(data)) + struct.unpack(f">{len(padded) // 4}I", padded)
        if len(words) > MAX_USER_WORDS:
            raise ValueError(f"the filter options need {len(words)} cd_values words, more than {MAX_USER_WORDS}")
        return words


def user_words(cd) -> int:
    """How many leading words of ``cd`` are the options (the rest is the chunk layout)."""
    version = cd[0] & 0xFF if len(cd) else None
    if version == 1 and len(cd) >= _V1_WORDS:
        return _V1_WORDS
    if version == 2 and cd[0] == 2 and len(cd) >= 2 and 2 + -(-cd[1] // 4) <= len(cd):
        return 2 + -(-cd[1] // 4)
    raise ValueError(f"not inrcodec filter parameters (layout version {version}, {len(cd)} words)")


def chunk_layout(cd) -> tuple[int | None, tuple[int, ...] | None]:
    """``(itemsize, chunk dims)`` that set_local appended to ``cd``; (None, None) before it ran."""
    tail = [int(w) for w in cd[user_words(cd):]]
    if not tail:
        return None, None
    if len(tail) < 2 or len(tail) != 2 + tail[1]:
        raise ValueError(f"malformed chunk layout words {tail} after the inrcodec filter options")
    return tail[0], tuple(tail[2:])


def parse(cd) -> FilterParams:
    """The :class:`FilterParams` of ``cd_values`` (layout 1 or 2, with or without chunk layout)."""
    cd = [int(w) for w in cd]
    n = user_words(cd)
    head = cd[:n]
    itemsize, chunks = chunk_layout(cd)
    params = _parse_v1(head) if n == _V1_WORDS and head[0] & 0xFF == 1 else _parse_v2(head)
    return FilterParams(params.model_sha256, params.settings, params.grid_id, itemsize, chunks, params.version)


def _parse_v2(head: list[int]) -> FilterParams:
    raw = struct.pack(f">{len(head) - 2}I", *head[2:])[: head[1]]
    try:
        body = json.loads(raw.decode())
    except (UnicodeDecodeError, ValueError):
        raise ValueError("the inrcodec filter options are not valid JSON (damaged cd_values)") from None
    if not isinstance(body, dict) or not isinstance(body.get("model_sha256"), str):
        raise ValueError("the inrcodec filter options lack the model's SHA-256 (damaged cd_values)")
    sha, gid = body.pop("model_sha256"), body.pop("grid_id", None)
    return FilterParams(sha, CodecSettings.from_dict(body), gid)


def _parse_v1(head: list[int]) -> FilterParams:
    flags = head[0] >> 8
    prefix = struct.pack(">4I", *head[2:6]).hex()
    gid = struct.pack(">2I", *head[6:8]).hex() if flags & 2 else None
    # layout 1 wrote no lat/lon only for global regular grids (assume_global_grid=True)
    settings = CodecSettings.from_dict(dict(bits=head[1] & 0xFF, inner_steps=head[1] >> 8,
                                            entropy_coding=bool(flags & 1), assume_global_grid=gid is None))
    return FilterParams(prefix, settings, gid, version=1)
