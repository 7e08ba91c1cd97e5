"""The wavelet candidates of one chunk (format version 5, issue 24): the network's latents at a
low width plus the SPERR-coded residual (mode 4, *hybrid*), and SPERR alone (mode 5, *wavelet*).

The encoder (:mod:`inrcodec.chunkcodec.encode`) asks for them next to the network-alone chunks
and keeps the smallest chunk that meets the target, so a chunk is never larger than SPERR alone
plus its header:

* ``target_ratio``: the residual gets what the latents leave of the byte budget (SPERR's ``bpp``
  mode), :meth:`WaveletCandidates.at_ratio`;
* ``target_rmse`` (and ``bits`` alone, whose target is the network's RMSE at ``bits``): SPERR's
  ``psnr`` mode, moved towards the target until the chunk's RMSE just meets it,
  :meth:`~WaveletCandidates.at_rmse`;
* ``max_abs_error`` / ``rel_error``: SPERR's point-wise error mode, :meth:`~WaveletCandidates.at_bound`.

The decoder adds the residual to *its* network prediction, which may differ from the encoder's by
``residual.CROSS_MACHINE_ULPS`` float32 eps (docs/reliability.md); the bounded candidates keep
that slack free of the bound, as mode 2 does (``residual.machine_slack``).
"""

from __future__ import annotations

import math

import numpy as np

from inrcodec.chunkcodec import ratecontrol
from inrcodec.chunkcodec import residual as _residual
from inrcodec.chunkcodec import wavelet

__all__ = ["WaveletCandidates", "rate_search", "hybrid_widths", "HYBRID_MAX_BITS", "RATE_TRIES", "RATE_SEARCH_TRIES"]

#: hybrid chunks code their latents at these widths at most: the residual carries the detail,
#: the latents only the large scales (issue 24 measured 2-3 bits)
HYBRID_MAX_BITS = 4
#: SPERR encodes per candidate while its rate is tightened to meet a ratio or RMSE target
RATE_TRIES = 5
#: ``at_rmse(close=...)``: SPERR encodes at most per candidate (the search usually stops at the
#: third or fourth, within ``close`` under the target)
RATE_SEARCH_TRIES = 7
#: decibels added beyond the measured shortfall when an RMSE target was missed
_PSNR_STEP_DB = 0.25
#: ``at_rmse(close=...)``: the first rate (bits per value) tried when nothing better is known, and
#: the lowest and highest rates tried
_START_BPP = 1.0
_MIN_BPP, _MAX_BPP = 1e-4, 64.0
#: the rate search's largest step (log rate: 16 times) and how far under the target (log RMSE) a
#: lossless try counts
_MAX_LOG_STEP = math.log(16.0)
#: bytes the rate searches keep in hand beyond a chunk's overhead (a length varint's worth)
_SLACK_BYTES = 2
_LOG_SPAN = math.log(1e3)
#: the slope of log RMSE against log rate a search assumes after its first try, when nothing
#: better is known (RMSE about 1 / rate)
_SLOPE = -1.0
#: ``at_rmse(close=...)`` stops once the lowest rate that met the target is within this factor of
#: the highest that missed it: a try between them could save at most about that share of the payload,
#: where SPERR's error jumps with its bitplanes (tries at 0.0035, 0.0036, 0.0037 bits per value of
#: a 1-degree chunk: 1.029, 1.001, 0.959 times the target)
BRACKET = 1.05
#: ``at_rmse(limit=...)`` stops at a try under the limit that misses by so much that even an error
#: falling with this slope of log RMSE against log rate (error as rate**-2: steeper than any SPERR
#: search measured, -0.5 to -1) would not meet the target within the limit
LIMIT_SLOPE = -2.0


def hybrid_widths(model, below: int | None = None) -> list[int]:
    """The latent widths hybrid chunks try (with tables, at most ``HYBRID_MAX_BITS``, below ``below``)."""
    top = HYBRID_MAX_BITS if below is None else min(HYBRID_MAX_BITS, below - 1)
    return [b for b in ratecontrol.candidate_bits(model) if b <= top]




def _slope(tried: list[tuple[float, float]], default: float = _SLOPE) -> float:
    """The slope of log RMSE against log rate through the last two ``tried`` (``default`` where
    they do not give a falling one)."""
    if len(tried) > 1 and tried[-2][0] != tried[-1][0]:
        fitted = (tried[-1][1] - tried[-2][1]) / (tried[-1][0] - tried[-2][0])
        if fitted < 0:
            return fitted
    return default


def next_rate(tried: list[tuple[float, float]], goal: float, missed: float | None, met: float | None,
               slope: float = _SLOPE) -> float:
    """The next SPERR rate of an RMSE search: on the line through the last two tries ``(log rate,
    log RMSE)`` at log RMSE ``goal`` (after one try: the line of ``slope``), at most 16 times away;
    inside the bracket of the highest rate that ``missed`` the target and the lowest that ``met``
    it, else halfway between them (in log rate)."""
    r1, e1 = tried[-1]
    slope = _slope(tried, slope)
    step = min(max((goal - e1) / slope, -_MAX_LOG_STEP), _MAX_LOG_STEP)
    rate = r1 + step
    if missed is not None and met is not None:
        lo, hi = math.log(missed), math.log(met)
        if not lo + 0.1 * (hi - lo) < rate < hi - 0.1 * (hi - lo):
            rate = 0.5 * (lo + hi)
    return min(max(math.exp(rate), _MIN_BPP), _MAX_BPP)


def rate_search(measure, target_rmse: float, rate: float, close: float, slope: float = _SLOPE, give_up=None):
    """SPERR's rate searched for the smallest try whose RMSE meets ``target_rmse``, from ``rate`` (bits
    per value): each next rate on the line through the last two tries in log RMSE against log rate
    (:func:`next_rate`, aiming ``close / 2`` under the target), stopping at a try within ``close``
    under it, once the rates that met and missed are within ``BRACKET``, at a miss where
    ``give_up(rate, nbytes, rmse)`` says a higher rate cannot win, or after ``RATE_SEARCH_TRIES``.
    ``measure(rate)`` codes one try: ``(nbytes, rmse, what it made)``. Returns ``(best, tried,
    gave_up)``: ``best`` the smallest meeting try's ``(nbytes, rate, what it made)`` or None,
    ``tried`` the ``(log rate, log RMSE)`` of every try."""
    goal = math.log(target_rmse * (1.0 - close / 2.0))
    floor = math.log(target_rmse) - _LOG_SPAN  # a lossless try's RMSE of 0 counts as this
    best, tried, missed, met = None, [], None, None
    for _ in range(RATE_SEARCH_TRIES):
        nbytes, rmse, made = measure(rate)
        tried.append((math.log(rate), max(math.log(max(rmse, 1e-300)), floor)))
        if rmse <= target_rmse:
            met = rate if met is None else min(met, rate)
            if best is None or nbytes < best[0]:
                best = (nbytes, rate, made)
            if rmse >= (1.0 - close) * target_rmse:
                break
        else:
            missed = rate if missed is None else max(missed, rate)
            if give_up is not None and give_up(rate, nbytes, rmse):
                return best, tried, True
        if met is not None and missed is not None and met <= BRACKET * missed:
            break
        rate = next_rate(tried, goal, missed, met, slope)
    return best, tried, False


class WaveletCandidates:
    """The wavelet payloads of one input chunk at a target (``values``: the fitted items, ``valid``:
    their valid positions; ``nbytes`` and ``dtype``: the input chunk's).

    Every method takes the chunk's ``overhead`` (its bytes without the wavelet payload: header,
    latents, masks; the payload, the last section, adds its own length) and ``prediction``: None
    for SPERR alone, or a callable returning the network's reconstruction of the items (float64,
    exactly as the decoder computes it; called only when a payload is made). ``at_ratio`` and
    ``at_rmse`` return the payload with the RMSE and the maximum error of what it decodes to
    (:meth:`decoded`), ``at_bound`` the payload alone; packing it into a chunk (a
    :class:`~inrcodec.chunkcodec.choose.Candidate`) is the encoder's
    (:mod:`inrcodec.chunkcodec.encode`)."""

    #: where a rate search starts when nothing better is known (bits per value), and the slope of
    #: log RMSE against log rate it assumes after its first try
    START_BPP, SLOPE = _START_BPP, _SLOPE
    #: the bytes a rate search counts beside a payload against its ``limit``
    SLACK = _SLACK_BYTES

    def __init__(self, values: np.ndarray, valid: np.ndarray, nbytes: int, dtype):
        self.valid, self.nbytes, self.dtype = valid, int(nbytes), np.dtype(dtype)
        self.x64 = values.astype(np.float64)
        self.mean = float(np.mean(self.x64[valid]))
        #: where the next rate search (``at_rmse`` with ``close``) starts, in bits per value: the
        #: rate of the last chunk that met an RMSE target, or what the encoder knows before
        self.rate_start = self.START_BPP
        #: the slope of log RMSE against log rate through the last two tries of the last search
        self.last_slope = _SLOPE
        #: whether the last rate search ended at a try that missed its target with a chunk of its
        #: ``limit`` bytes or more (every chunk that meets it is larger)
        self.missed_at_limit = False
        #: per layout, SPERR's bytes beyond its rate where a payload at a ratio target last came out
        #: over its budget (its header, the mean, ...): a later payload in that layout is first tried
        #: at the rate that leaves room for them
        self._fixed: dict[int, float] = {}

    # ------------------------------------------------------------------ one candidate
    def field(self, recon) -> np.ndarray:
        """What SPERR codes: the residual of the network's reconstruction ``recon`` (0 where
        missing), or without one the values (their mean where missing: no jump for the wavelets
        to spend bytes on)."""
        if recon is None:
            return np.where(self.valid, self.x64, self.mean)
        return np.where(self.valid, self.x64 - recon.reshape(self.x64.shape), 0.0)

    def decoded(self, payload: bytes, recon=None) -> np.ndarray:
        """The values the decoder computes (on this machine) from a payload over ``recon``."""
        field = wavelet.decode(payload, self.x64.shape)
        if recon is not None:
            field = recon.reshape(field.shape) + field
        return field.astype(self.dtype.newbyteorder("="))

    def errors(self, y: np.ndarray) -> tuple[float, float]:
        """(RMSE, max abs error) of decoded values ``y`` over the valid values."""
        err = np.abs(y.astype(np.float64)[self.valid] - self.x64[self.valid])
        return float(np.sqrt(np.mean(err * err))), float(err.max(initial=0.0))

    # ------------------------------------------------------------------ the three targets
    def at_ratio(self, overhead: int, target_ratio: float, coder: int = wavelet.CODER_SPERR,
                 prediction=None) -> tuple[bytes, float, float] | None:
        """The payload that keeps the chunk within ``nbytes / target_ratio`` bytes (SPERR at the rate
        the rest of the chunk leaves), with the chunk's RMSE and max error; None when the rest fills the budget."""
        budget = int(self.nbytes / target_ratio)
        room = budget - overhead - _SLACK_BYTES
        if room < wavelet.SPERR_HEADER + 8:
            return None
        recon = None if prediction is None else prediction()
        field = self.field(recon)
        size = int(np.prod(wavelet.layout_shape(field.shape, coder)))  # what SPERR's bpp counts (mosaic: padding too)
        bpp = 8.0 * room / size if coder not in self._fixed else 0.98 * 8.0 * (room - self._fixed[coder]) / size
        for _ in range(RATE_TRIES):
            if not bpp > 0:
                return None
            payload = wavelet.encode(field, "bpp", bpp, coder)
            if overhead + len(payload) <= budget:
                return payload, *self.errors(self.decoded(payload, recon))
            # SPERR writes about bpp * n / 8 bytes plus a fixed part (its header, the mean, ...)
            fixed = len(payload) - _SLACK_BYTES - bpp * size / 8.0
            self._fixed[coder] = fixed
            bpp = 0.98 * 8.0 * (room - fixed) / size
        return None

    def at_rmse(self, overhead: int, target_rmse: float, coder: int = wavelet.CODER_SPERR, prediction=None,
                close: float = 0.0, limit: int | None = None,
                slope: float = SLOPE) -> tuple[bytes, float, float] | None:
        """The payload of the smallest of ``RATE_TRIES`` chunks whose RMSE meets ``target_rmse``,
        with that RMSE and its max error; None when none does.

        ``close`` = 0 (``effort="full"``): SPERR's PSNR setting, moved towards the target after each
        try. ``close`` > 0 (``effort="fast"``): SPERR's rate (bits per value), on the line through
        the last two tries in log RMSE against log rate, kept inside what the tries have
        bracketed (after the first try: the line of ``slope``, e.g. a search's ``last_slope`` on
        like data), stopping at the first try within ``close`` under the target, or at a try that
        misses it with a chunk of at least ``limit`` bytes (a higher rate only grows). The rate search
        gives smaller chunks: SPERR's size is not monotone in its PSNR setting on network
        residuals (docs/benchmarks.md, "Encode speed (issue 30)").
        """
        recon = None if prediction is None else prediction()
        field = self.field(recon)
        if close:
            return self._at_rmse_by_rate(overhead, recon, field, target_rmse, coder, close, limit, slope)
        span = float(field.max() - field.min())
        if not span > 0:
            span = abs(float(field.flat[0])) or 1.0
        psnr, best = 20.0 * math.log10(span / target_rmse), None
        for _ in range(RATE_TRIES):
            payload = wavelet.encode(field, "psnr", max(psnr, 1.0), coder)
            rmse, worst = self.errors(self.decoded(payload, recon))
            if rmse <= target_rmse and (best is None or len(payload) < len(best[0])):
                best = (payload, rmse, worst)
            # SPERR's PSNR mode over- or undershoots the RMSE asked: move by the measured miss
            # (a missed target by a little more, so that the next try meets it)
            psnr += 20.0 * math.log10(max(rmse, 1e-300) / target_rmse) + (_PSNR_STEP_DB if rmse > target_rmse else 0.02)
        return best

    def _at_rmse_by_rate(self, overhead: int, recon, field: np.ndarray, target_rmse: float, coder: int,
                         close: float, limit: int | None, slope: float) -> tuple[bytes, float, float] | None:
        rate, at_limit = self.rate_start, math.inf
        if limit is not None:  # start where the chunk fills ``limit``: a miss there ends the search
            size = int(np.prod(wavelet.layout_shape(field.shape, coder)))
            at_limit = max(8.0 * (limit - overhead - _SLACK_BYTES - wavelet.SPERR_HEADER) / size, _MIN_BPP)
            rate = min(rate, at_limit)

        def measure(rate: float):
            payload = wavelet.encode(field, "bpp", rate, coder)
            rmse, worst = self.errors(self.decoded(payload, recon))
            return len(payload), rmse, (payload, rmse, worst)

        def give_up(rate: float, nbytes: int, rmse: float) -> bool:
            return limit is not None and (overhead + _SLACK_BYTES + nbytes >= limit
                                          or rate * (rmse / target_rmse) ** (-1.0 / LIMIT_SLOPE) >= at_limit)

        best, tried, self.missed_at_limit = rate_search(measure, target_rmse, rate, close, slope, give_up)
        self.last_slope = _slope(tried, slope)
        if best is None:
            return None
        self.rate_start = best[1]
        return best[2]

    def at_bound(self, bound: float, coder: int = wavelet.CODER_SPERR, prediction=None,
                 exact: bool = False) -> bytes | None:
        """The payload whose every valid value decodes within ``bound`` (SPERR's point-wise error
        mode, at ``1 - residual.MARGIN`` of it); None when this machine's decode check fails (the
        bound is never trusted unchecked). Over a prediction, ``residual.machine_slack`` is kept
        free for another machine's network. ``exact``: SPERR alone is first tried at the bound
        itself (its WebAssembly decodes alike everywhere, and the check still decides)."""
        recon = None if prediction is None else prediction()
        field = self.field(recon)
        slack = 0.0  # SPERR alone: WebAssembly decodes alike everywhere
        if recon is not None:
            slack = _residual.machine_slack(recon.reshape(field.shape)[self.valid], self.x64[self.valid])
        limit = bound - slack
        if not limit > 0:
            return None
        tolerances = ([limit] if exact and recon is None else []) + [limit * (1.0 - _residual.MARGIN)]
        for tolerance in tolerances:
            payload = wavelet.encode(field, "pwe", tolerance, coder)
            y = self.decoded(payload, recon).astype(np.float64)
            if (np.abs(y - self.x64)[self.valid] <= limit).all():
                return payload
        return None
