"""The one chooser of the chunk encoder: the search branches of :mod:`~inrcodec.chunkcodec.encode`
produce candidate chunks, and :func:`choose` keeps one for what the settings ask.

* ``bits`` alone, or an error bound (every candidate keeps it): the fewest bytes;
* ``target_rmse``: the fewest bytes among the candidates that meet it, else the lowest RMSE;
* ``target_ratio``: the lowest RMSE among the candidates within it, else the fewest bytes.

Ties keep the earlier candidate, so the order the encoder offers them in is part of the bytes it
writes.

>>> choose([Candidate(b"abcd", 1.0), Candidate(b"ab", 2.0), Candidate(b"abc", 1.5)], 8, target_rmse=1.6)
2
>>> choose([Candidate(b"abcd", 1.0), Candidate(b"ab", 2.0)], 8, target_ratio=4.0)
1
>>> choose([Candidate(b"abc"), Candidate(b"ab"), Candidate(b"xy")])
1
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

__all__ = ["Candidate", "choose"]


class Candidate(NamedTuple):
    """A finished chunk and its errors over the chunk's valid values (NaN where not measured:
    only the targets that need them read them)."""

    data: bytes
    rmse: float = math.nan
    max_error: float = math.nan


def choose(candidates: Sequence[Candidate], nbytes: int | None = None, *, target_rmse: float | None = None,
           target_ratio: float | None = None) -> int:
    """The index of the candidate kept (see the module doc); ``nbytes``: the input chunk's bytes,
    which a ratio is measured against (needed with a target)."""
    if not candidates:
        raise ValueError("no candidates")
    if target_rmse is not None and target_ratio is not None:
        raise ValueError("give at most one of target_rmse and target_ratio")
    idx = range(len(candidates))
    size = [len(c.data) for c in candidates]
    fewest = min(idx, key=lambda i: (size[i], i))
    if target_rmse is not None:
        ok = [i for i in idx if candidates[i].rmse <= target_rmse]
        return min(ok, key=lambda i: (size[i], i)) if ok else min(idx, key=lambda i: (candidates[i].rmse, i))
    if target_ratio is not None:
        ok = [i for i in idx if nbytes / size[i] >= target_ratio]
        return min(ok, key=lambda i: (candidates[i].rmse, i)) if ok else fewest
    return fewest
