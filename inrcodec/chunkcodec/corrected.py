"""Mode 7 (*corrected wavelet*, issue 33): SPERR alone at a rate, its decode corrected within an error
bound by a residual section.

SPERR at a rate or RMSE target spends its bits where the error is large on average, so a few of its
values miss a bound that its RMSE is far under: on GloSea4's hourly chunks at 1 K RMSE, 0.1 % of the
values lie beyond 5 K. Its point-wise mode holds every value to the bound by coding all of them
more finely (on that validation chunk the best SPERR or SZ3 setting meeting ``target_rmse=1,
max_abs_error=5`` took 9,386 bytes, SPERR on the items' DCT at 1 K 2,613). Here SPERR codes the
field at a rate (any layout, the items' DCT too)
and the error-bounded residual (:func:`inrcodec.chunkcodec.residual.encode_residual`) codes what
its decode misses by more than the bound: at a loose bound nearly every code is 0 and costs a few
hundredths of a bit. SPERR's WebAssembly and the items' DCT decode to the same floats on every
machine (docs/format.md), so the residual corrects an exact prediction, as mode 3's does, and needs
no room for another machine's.

The encoder (:mod:`inrcodec.chunkcodec.encode`) asks for it when an error bound comes with a
target: :func:`at_rmse` searches SPERR's rate for the smallest chunk whose corrected RMSE meets
``target_rmse`` in each layout (:func:`climbed` then tries higher rates for the best),
:func:`at_ratio` for the highest rate whose chunk keeps ``target_ratio``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inrcodec.chunkcodec import hybrid
from inrcodec.chunkcodec import residual as _residual
from inrcodec.chunkcodec import wavelet

__all__ = ["Corrected", "corrected", "at_rmse", "climbed", "at_ratio", "RATE_TRIES", "CLOSE"]

#: SPERR encodes (each with its residual) at most per ratio search (an RMSE search: ``hybrid.RATE_SEARCH_TRIES``)
RATE_TRIES = 7
#: an RMSE search stops at a try within this share under the target
CLOSE = 0.03
#: past the RMSE target's rate, :func:`climbed` tries rates this many times higher while the chunk
#: shrinks
RATE_UP = 1.5
#: a ratio search fills its budget to this share of it after a first try over it
_FILL = 0.98


@dataclass(frozen=True)
class Corrected:
    """SPERR's payload at ``rate``, the residual section over its decode, and the corrected values'
    RMSE and max error (over the valid values, as the decoder computes them)."""

    wavelet: bytes
    residual: bytes
    coder: int
    rate: float
    rmse: float
    max_error: float

    @property
    def nbytes(self) -> int:
        return len(self.wavelet) + len(self.residual)


def corrected(cands: hybrid.WaveletCandidates, coder: int, rate: float, residual_of) -> Corrected:
    """SPERR alone at ``rate`` bits per value in layout ``coder``, corrected by ``residual_of(y)``
    (the residual section's payload over SPERR's float64 decode ``y``, within the bound)."""
    payload = wavelet.encode(cands.field(None), "bpp", rate, coder)
    y = wavelet.decode(payload, cands.x64.shape)
    section = residual_of(y)
    z = _residual.decode_residual(section, y, cands.dtype, exact=True)
    return Corrected(payload, section, coder, rate, *cands.errors(z))


def at_rmse(cands: hybrid.WaveletCandidates, coder: int, target_rmse: float, residual_of,
            limit: int | None = None) -> Corrected | None:
    """The smallest corrected chunk found whose RMSE meets ``target_rmse``: SPERR's rate searched as
    :meth:`hybrid.WaveletCandidates.at_rmse` searches it (:func:`hybrid.rate_search`), from the rate
    of the last chunk that met an RMSE target; None when no try meets it. ``limit``: the search stops
    at a try that misses the target with payloads of at least so many bytes (another layout's chunk
    in hand: a higher rate adds SPERR's bytes, and at a loose bound the residual's are few)."""
    def measure(rate: float):
        got = corrected(cands, coder, rate, residual_of)
        return got.nbytes, got.rmse, got

    best, _, _ = hybrid.rate_search(measure, target_rmse, cands.rate_start, CLOSE,
                                    give_up=lambda rate, nbytes, rmse: limit is not None and nbytes >= limit)
    return None if best is None else best[2]


def climbed(cands: hybrid.WaveletCandidates, best: Corrected, residual_of) -> Corrected:
    """``best`` (a chunk of :func:`at_rmse`), or the chunk at a rate ``RATE_UP`` times higher, and so
    on, while that is smaller: where the bound, not the RMSE, is what costs, the residual's bytes
    fall faster than SPERR's grow."""
    while True:
        got = corrected(cands, best.coder, best.rate * RATE_UP, residual_of)
        if got.nbytes >= best.nbytes:
            return best
        best = got


def at_ratio(cands: hybrid.WaveletCandidates, coder: int, budget: int, residual_of) -> Corrected | None:
    """The corrected chunk at the highest SPERR rate found whose payloads fit ``budget`` bytes (the
    lowest RMSE within a ratio: SPERR's error falls with its rate); None when none does. The first
    try fills the budget with SPERR alone, each next one leaves room for the residual the try before
    needed."""
    size = int(np.prod(wavelet.layout_shape(cands.x64.shape, coder)))
    room = budget
    for _ in range(RATE_TRIES):
        rate = 8.0 * room / size
        if not rate > 0:
            return None
        got = corrected(cands, coder, rate, residual_of)
        if got.nbytes <= budget:
            return got
        # SPERR writes about rate * size / 8 bytes; leave room for the rest (its header, the residual)
        room = _FILL * (budget - (got.nbytes - rate * size / 8.0))
    return None
