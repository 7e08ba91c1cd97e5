"""``encode_chunk(array, model, settings) -> bytes``: one chunk through the COIN++ encoder.

The pipeline: check the input, split off what a network cannot represent (empty, constant,
non-finite or out-of-range chunks are stored raw), mask NaN / fill values, fit the latents
(``CoinModel.encode``), then write one of the chunk modes (:mod:`inrcodec.chunkformat`):

* plain: latents at ``settings.bits``, or at the width rate control picks (``ratecontrol``);
* error-bounded: every candidate width plus a residual, the no-network residual (mode 3) and
  the raw values, keeping the smallest; the chosen bytes are decoded again as a final check;
* with ``settings.residual_coder == "sperr"`` (issue 24), each of the above also weighs the hybrid
  chunks (latents at a low width + SPERR-coded residual, mode 4) and SPERR alone (mode 5) of
  :mod:`inrcodec.chunkcodec.hybrid`, keeping the smallest chunk that meets the target; at
  ``bits``, a chunk far from the network's level is fitted moved to it where that fits better,
  the hybrid's SPERR residual carrying the move (:data:`LEVEL_SHIFT`).
"""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np
from numcodecs.compat import ensure_ndarray_like

from inrcodec import chunkformat as cf
from inrcodec.chunkformat.header import (
    KNOWN_MODES, ChunkHeader, FLAG_NAN_MASK, MODE_BOUNDED, MODE_HYBRID, MODE_MODULATIONS, MODE_PLAIN_RESIDUAL, MODE_RAW,
    MODE_HYBRID_COARSE, MODE_WAVELET, MODE_WAVELET_CORRECTED, PREDICT_NONE, PREDICT_PREVIOUS,
)
from inrcodec.chunkcodec import corrected, hybrid, patching, ratecontrol, wavelet
from inrcodec.chunkcodec.choose import Candidate, choose
from inrcodec.chunkcodec import sections as section_payloads
from inrcodec.chunkcodec import residual as _residual
from inrcodec.chunkcodec.context import ChunkContext, context
from inrcodec.chunkcodec.decode import decode_chunk
from inrcodec.chunkcodec.latents import LatentCoder
from inrcodec.chunkcodec.timing import stage
from inrcodec.errors import OutOfRangeWarning, TargetCostWarning, TargetNotMetWarning

__all__ = ["encode_chunk", "check_input", "OUT_OF_RANGE_LIMIT", "RANGE_MARGIN", "OUT_OF_RANGE_SHARE",
           "RANGE_TOLERANCE", "BOUNDED_TRIES"]

SUPPORTED_DTYPES = (np.dtype("float32"), np.dtype("float64"))
#: a chunk whose valid values, normalised with the model's statistics (training range -> [0, 1]),
#: fall below ``-OUT_OF_RANGE_LIMIT`` or above ``1 + OUT_OF_RANGE_LIMIT`` is stored raw (lossless)
OUT_OF_RANGE_LIMIT = 10.0
#: a chunk none of whose values come within this many training ranges of the training range is
#: in other units or another variable (Celsius for a Kelvin model): stored raw, with a warning
RANGE_MARGIN = 0.5
#: a chunk more than this share of whose valid values lie more than ``RANGE_TOLERANCE``
#: training ranges outside the training range is stored raw, with a warning: the network decodes
#: to about the training range only (t2m-global, 2 months of real tas: Kelvin + 60 has 71% of
#: its values out, RMSE 55 K; x 1.3 84%, 82 K; + 30 29%, 17 K; + 20 0.1%, 9 K, not caught; the
#: normal data 0%, 2.0 K; docs/reliability.md)
OUT_OF_RANGE_SHARE = 0.05
RANGE_TOLERANCE = 0.05
#: where most of a chunk's valid values lie far outside the training range (its data in other
#: units, not a fill), a repeated far value is taken for an undeclared fill value only where it
#: covers this share of the chunk's valid values: quantized data repeat their values too (ERA5
#: pressure in Pa, 8 hours at 1 degree: 77 k distinct values among 521 k, none more than 395 times),
#: and keeping every repeat exact made such a chunk 37x larger than the bound needs
FILL_MIN_SHARE = 0.01
#: error-bounded mode codes the latents at ``bits`` and at up to this many minus one smaller
#: widths (those the model has tables for) and keeps the smallest chunk. The narrowest widths
#: often win there (the residual carries the detail), so with the usual tables (1..8 bits)
#: every width up to ``bits`` is tried: each try costs one reconstruction and residual coding,
#: small next to the fit.
BOUNDED_TRIES = 8
#: ``effort="fast"``, ``target_ratio``: candidates whose RMSE is within this share of the best one's
#: are told apart by their maximum error (the lower wins)
MAX_ERROR_MARGIN = 0.02
#: ``target_ratio``: a chunk met by the wavelet candidates at this many times the RMSE of the best
#: network candidate short of the ratio is coded with a ``TargetCostWarning``
COSTLY_TARGET = 2.0
#: an error bound with ``target_rmse``: the bounded chunks tried, at the bound and at tighter ones
#: while the RMSE target is missed
BOUND_TRIES = 4
#: ``effort="fast"``: the items a network candidate's RMSE is estimated on before it is measured
ESTIMATE_ITEMS = 2
#: ``effort="fast"``, ``target_ratio``: a patch size is probed on ``ESTIMATE_ITEMS`` items
#: (:func:`_probe_outclassed`) only in chunks of at least this many times as many items
PROBE_SHARE = 4
#: ``effort="fast"``, ``target_ratio``: a patch size whose narrowest width, probed on
#: ``ESTIMATE_ITEMS`` items (:func:`_probe_outclassed`), is estimated to fall short of the ratio by
#: more than this factor is dropped where a rival meets it (the extrapolated bytes were within 6 %
#: of the whole chunk's on real 1-degree ERA5 pressure)
PROBE_SHORT = 1.1
#: ``effort="fast"``: a network-alone candidate whose estimated RMSE is this many times the best
#: candidate's that meets a ratio target is dropped unmeasured (on its probe pair:
#: ``PROBE_OUTCLASSED``), the hybrid search within a ratio stops at a hybrid this many times
#: worse, and the bounded search at a chunk this many times larger
OUTCLASSED = 1.25
#: ``effort="fast"``, a ratio target: a patch size whose probe pair (:func:`_probe_outclassed`)
#: reaches this many times the best rival's RMSE is not fitted whole. The pair's RMSE at the ratio's
#: width was 7 % under to 2 % over the whole chunk's (validation split: 1- and 3-degree
#: temperature, mpi_esm, glosea4, real msl, u10, v10 at 100x to 1000x, 16 pairs; the bits probe's
#: pairs 10.7 % under to 7.8 % over): a size dropped here would need a larger overestimate than any
#: seen to win. At 1.25 a size just under it (real v10 at 400x: 1.22) had every size fitted whole
PROBE_OUTCLASSED = 1.15
#: ``effort="fast"``, a ratio target: a network-alone candidate whose RMSE estimated on
#: ``ESTIMATE_ITEMS`` items is this many times the best chunk's once the hybrids are searched is
#: not reconstructed whole. The estimates were 0.7 % under to 3.5 % over the whole chunk's RMSE
#: (validation split: 1-degree and 3-degree temperature, real msl, u10, v10 at 100x, 400x and 1000x)
NEAR_BEST = 1.1
#: ``effort="fast"``, an RMSE target: a hybrid width whose chunk, estimated on ``ESTIMATE_ITEMS``
#: items (:class:`_HybridProbe`), is this many times the smallest chunk in hand is not searched. The
#: estimate is rough: losing widths were estimated at 1.1-5.5 times that chunk on the validation
#: split, and the width that won on held-out MPI-ESM at ``bits=3`` at 1.3 times
HYBRID_OUTCLASSED = 2.0
#: ``bits`` on a large chunk (:func:`_alone_at_bits`): the network alone and each hybrid width,
#: estimated on the probe pair's own fit, are outclassed by SPERR alone at this many times its
#: bytes. There the pair's hybrid estimates were 0.98-1.26 times the whole chunk's hybrid at the
#: same RMSE, and the best width 1.29 times SPERR alone or more (validation split, 1-degree
#: temperature, msl, u10 and v10 at 5, 6 and 8 bits, 40 widths; a level-shifted chunk aside): a
#: width estimated at 1.3 times would need a larger overestimate than any seen to win
PAIR_OUTCLASSED = 1.3
#: :class:`_HybridProbe`'s SPERR searches stop at the first try within this share under the target
#: (an estimate needs fewer tries than a chunk)
PROBE_CLOSE = 0.1
#: :class:`_HybridProbe` runs where an item has at least this many values: on the validation and
#: held-out grids up to 145 x 192 (28 k values an item) no probe ever skipped a width (40 settings,
#: +3 % encode time), on 1-degree globes (65 k) every probe did
PROBE_MIN_ITEM_VALUES = 1 << 15
#: ``effort="fast"``: SPERR's RMSE search stops at the first try within this share under the target
CLOSE_ENOUGH = 0.03
#: the same for SPERR alone at ``bits`` met from the probe pair (:func:`_alone_at_bits`): its target,
#: the pair's RMSE, is itself about the chunk's (10.7 % under to 7.8 % over it), and a chunk anywhere
#: in the window lies on SPERR's curve, so a wider one costs no rate-distortion, only the tries
BITS_CLOSE = 0.1
#: :class:`_ProbeFit` fits its pair on a subset of this many points per latent (the chunk's fit:
#: ``fitting.FIT_POINTS_PER_LATENT``) where an item has ``PROBE_MIN_ITEM_VALUES`` values or more:
#: half the pair's fit, and its RMSE at 6 bits within -1.7 to +0.9 % of the fit on 4 (validation
#: split, 1-degree temperature, msl, u10, v10; 7 chunks; up to +7.5 % on one test chunk, whose bits
#: chunk moved along SPERR's curve). On 3-degree items (7 k values) the smaller subset took more
#: steps and the probes 0.1 s longer (0.24 -> 0.34 s of fit at ``target_ratio=400``)
PROBE_POINTS_PER_LATENT = 2
#: :class:`_ProbeFit` measures its pair's RMSE on every ``PROBE_SAMPLE_SHARE``-th point of each
#: patch (a pseudo-random share per patch, :func:`_sample_rows`) where an item has
#: ``PROBE_MIN_ITEM_VALUES`` values or more: within -0.9 to +1.2 % of the RMSE on every point, in
#: a third of the time (validation split at 6 bits, 1-degree temperature, msl, u10, v10, three
#: samplings; the pair itself is 10.7 % under to 7.8 % over its chunk). A regular subgrid of
#: the same size was 5.6 % under to 5.6 % over: a network's error differs from point to point of a patch
PROBE_SAMPLE_SHARE = 4
#: ``effort="fast"``, an error bound, a large chunk (:func:`_probed`) that the chunk's mean plus
#: residual codes best so far: the network is fitted whole only where a width's chunk, estimated on
#: the probe pair (:func:`_network_outclassed_within`), is under this many times that chunk. The
#: pair's estimates were 7 % under to 8 % over the chunk's smallest network chunk on the validation
#: split (1-degree temperature, real msl, u10, v10 at three bounds each; 15 chunk-bounds)
BOUNDED_PROBE_OUTCLASSED = 1.15
#: the bounded probe is made on items of this many values or more (:func:`_probed`), fewer
#: than the other probes': on the validation split it paid on GloSea4's items of 27,840 values
#: (three bounds: 5.3 -> 3.8 s, the same bytes) and cost 0.05-0.1 s a chunk on items of 1,813-7,320
#: (A1B, 4- and 3-degree temperature), whose whole fit is short; on the test split MPI-ESM's items of
#: 18,432 values lost 0.2 s a chunk to it (docs/benchmarks.md, "Eleventh round")
BOUNDED_PROBE_MIN_ITEM_VALUES = 24576
#: an error bound, a chunk of several items: SPERR alone is not tried where its payload for the
#: first item alone, times the items, is this many times the chunk's mean plus residual or more
#: (:func:`_alone_outclassed_within`). Stacking the items (SPERR's third axis) made SPERR alone at
#: most 1.35x smaller than that estimate on the validation split (1- and 3-degree temperature,
#: GloSea4, A1B at 37 x 49, real msl, u10 and v10, chunks of 8 at three bounds each), so it cannot
#: win there. Items of fewer than ``ALONE_PROBE_MIN_ITEM_VALUES`` values are not probed: SPERR's
#: stream header weighs on one small item's payload (4 items of 8 x 16: SPERR alone won a chunk
#: whose estimate was over 1.5 times the mean plus residual)
ALONE_OUTCLASSED = 1.5
ALONE_PROBE_MIN_ITEM_VALUES = 1024
#: ``effort="fast"``, ``bits`` with SPERR: a chunk whose mean lies more than this many training
#: ranges from the network's own level (its field at zero latents) is fitted moved to that level,
#: and only its hybrid and SPERR-alone chunks are offered (the hybrid's SPERR residual carries the
#: move as its mean). Fitted where it lies, data 10-20 K off a temperature network's level were
#: coded at 1.4-5x the error of the same fields unmoved, at the network's loosened RMSE (issue 32
#: case 7); moved, at the same error. A chunk near the level keeps its own: there the network's
#: level-dependent structure helps (era5_t's 850 hPa fields, 4.6 K under it: 2.24 K where they lie,
#: 2.43 K moved). Chosen on the climate pool's validation split (docs/reliability.md).
LEVEL_SHIFT = 0.06


def check_input(buf, model, settings) -> np.ndarray:
    """The chunk as a float32/float64 ndarray with the model's spatial dims, or a clear error."""
    if isinstance(buf, np.ndarray) and buf.dtype == object:
        raise TypeError("COINppCodec cannot encode object arrays; it encodes float32/float64 arrays")
    arr = ensure_ndarray_like(buf)
    if not isinstance(arr, np.ndarray):
        arr = np.asarray(arr)
    if arr.dtype == object:
        raise TypeError("COINppCodec cannot encode object arrays; it encodes float32/float64 arrays")
    if arr.dtype.newbyteorder("=") not in SUPPORTED_DTYPES or arr.dtype.kind != "f":
        extra = ""
        if arr.dtype == np.uint8 and arr.ndim == 1 and not isinstance(buf, np.ndarray):
            extra = (" (a raw byte buffer was given: the codec needs the chunk as an ndarray of "
                     "its shape, as zarr passes it)")
        raise TypeError(f"COINppCodec encodes float32 or float64 arrays, got dtype {arr.dtype}{extra}")
    nd = model.spatial_ndim
    if arr.ndim < nd:
        raise ValueError(f"the model is {nd}-D ({model.grid_kind}); a chunk needs at least {nd} "
                         f"dimensions, got shape {arr.shape}")
    settings.check_model(model, encoding=True)
    _check_pinned_layout(arr, settings)
    widths = ratecontrol.candidate_bits(model)
    if settings.rate_controlled and settings.bits > max(widths):
        warnings.warn(f"bits={settings.bits} is not used: with target_rmse / target_ratio each chunk's latent width is "
                      f"chosen among the widths this model has coding tables for ({min(widths)}-{max(widths)})",
                      UserWarning, stacklevel=4)
    return arr


def _check_pinned_layout(arr: np.ndarray, settings) -> None:
    """A chunk must be what the configuration pins for readers that pass no shape or dtype
    (Zarr 2): anything else would write bytes no reader can read back."""
    shape, dtype = settings.chunk_shape, settings.chunk_dtype
    if (shape is None or tuple(arr.shape) == shape) and (dtype is None or arr.dtype.itemsize == np.dtype(dtype).itemsize):
        return
    raise ValueError(
        f"chunk of shape {tuple(arr.shape)} ({arr.dtype}) but the codec pins chunk_shape {shape} "
        f"({dtype}), the array's chunks when it was made; refusing to write a chunk no reader "
        "could read back. Make the codec for the chunks written: "
        "COINppCodec.for_dataarray(da, model, zarr_format=2, chunks=...) and leave its 'chunks' as they are"
    )


class _Chunk:
    """One input chunk split into items (leading dims) with its missing-value masks."""

    def __init__(self, arr: np.ndarray, spatial_ndim: int, fill_value: float | None):
        self.arr = arr
        self.order = "F" if (arr.ndim > 1 and arr.flags.f_contiguous and not arr.flags.c_contiguous) else "C"
        self.shape = tuple(int(s) for s in arr.shape)
        self.spatial = self.shape[arr.ndim - spatial_ndim:]
        self.empty = arr.size == 0
        if self.empty:  # nothing to fit: stored as an empty raw chunk (any empty shape round-trips)
            self.has_nan, self.fill, self.finite = False, None, arr.ravel()
            return
        # index (logical) order: items along the leading dims; memory order does not matter here
        self.items = np.ascontiguousarray(arr).reshape((-1, *self.spatial))
        self.nan = np.isnan(self.items)
        self.has_nan = bool(self.nan.any())
        fill = None if fill_value is None else self.items == fill_value
        self.fill = fill if fill is not None and fill.any() else None
        self.missing = self.nan if self.fill is None else (self.nan | self.fill)
        self.has_missing = self.has_nan or self.fill is not None
        self.finite = self.items[~self.missing] if self.has_missing else self.items.ravel()

    def trivial(self) -> bool:
        """Nothing a network should fit: empty, all missing, non-finite, or constant."""
        f = self.finite
        return self.empty or f.size == 0 or not bool(np.isfinite(f).all()) or bool(f.min() == f.max())


def _out_of_range(finite: np.ndarray, lo: float, hi: float, offset: float, scale: float, bounded: bool) -> str:
    """Why a chunk with valid values ``finite`` in [lo, hi] cannot be a field the model decodes
    ('' if it can).

    Data in other units (Celsius for a Kelvin model, hPa for Pa) lies beside the training range:
    a chunk none of whose values come within ``RANGE_MARGIN`` training ranges of it is refused.
    Offset or scaled data reaches partly outside it, where the network does not decode: more
    than ``OUT_OF_RANGE_SHARE`` of the values beyond ``RANGE_TOLERANCE`` is refused too, unless
    the chunk is error-bounded (its residual holds the bound wherever the network decodes).
    """
    lo_n, hi_n = (lo - offset) / scale, (hi - offset) / scale
    if lo_n < -OUT_OF_RANGE_LIMIT or hi_n > 1.0 + OUT_OF_RANGE_LIMIT:
        return f"lie more than {OUT_OF_RANGE_LIMIT:g} training ranges outside"
    if hi_n < -RANGE_MARGIN or lo_n > 1.0 + RANGE_MARGIN:
        return f"do not come within {RANGE_MARGIN:g} training ranges of"
    if bounded or (lo_n >= -RANGE_TOLERANCE and hi_n <= 1.0 + RANGE_TOLERANCE):
        return ""
    outside = (finite < offset - RANGE_TOLERANCE * scale) | (finite > offset + (1.0 + RANGE_TOLERANCE) * scale)
    share = float(np.count_nonzero(outside)) / finite.size
    return f"have {share:.1%} of their values outside" if share > OUT_OF_RANGE_SHARE else ""


def _check_valid_range(finite: np.ndarray, settings) -> None:
    """Data outside ``valid_min`` / ``valid_max`` would decode clipped, beyond any promise: refused."""
    lo, hi = settings.valid_min, settings.valid_max
    if finite.size and lo is not None and float(finite.min()) < lo:
        raise ValueError(f"the chunk holds values down to {float(finite.min()):g}, below valid_min={lo:g}: "
                         "decoded values are raised to it; pass the data's real minimum, or none")
    if finite.size and hi is not None and float(finite.max()) > hi:
        raise ValueError(f"the chunk holds values up to {float(finite.max()):g}, above valid_max={hi:g}: "
                         "decoded values are lowered to it; pass the data's real maximum, or none")


def _out_of_range_reason(finite: np.ndarray, model, settings) -> str:
    """'' when the model can code the chunk, else the warning's start: which values, and why."""
    lo, hi = float(finite.min()), float(finite.max())
    why = _out_of_range(finite, lo, hi, model.offset, model.scale, settings.error_bounded)
    if not why:
        return ""
    units = (model.description or {}).get("units")
    expects = f"[{model.offset:g}, {model.offset + model.scale:g}]" + (f" {units}" if units else "")
    return (f"chunk values [{lo:g}, {hi:g}] {why} the model's training range {expects} (wrong units, offset or "
            "variable?), where the network cannot decode them")


def _undeclared_fill(values: np.ndarray, valid: np.ndarray, model) -> np.ndarray:
    """The valid values far outside the training range (beyond ``OUT_OF_RANGE_LIMIT`` training
    ranges) that occur more than once (in a chunk most of whose values lie out there, at least
    ``FILL_MIN_SHARE`` of its valid values): a fill value nobody declared (-9999), which a user's
    mask needs back bit for bit, not within a bound."""
    lo = model.offset - OUT_OF_RANGE_LIMIT * model.scale
    hi = model.offset + (1.0 + OUT_OF_RANGE_LIMIT) * model.scale
    far = valid & ((values < lo) | (values > hi))
    if not far.any():
        return far
    distinct, counts = np.unique(values[far], return_counts=True)
    fill = counts > 1
    n_valid = int(valid.sum())
    if int(far.sum()) > n_valid / 2:  # the chunk's data lie out there: only a dominant repeat is a fill
        fill &= counts >= FILL_MIN_SHARE * n_valid
    return far & np.isin(values, distinct[fill])


def _without_network(settings, model, writer: "_Writer", values, valid, reason: str) -> bytes:
    """A chunk the network cannot decode: raw (lossless); when error-bounded, the smaller of
    raw and the codings that need no network (the chunk's mean plus residual, SPERR alone) within
    the bound; values that look like an undeclared fill value are kept bit-exact (only the
    residual can: SPERR alone is tried when there are none); at a ratio or RMSE target, SPERR
    alone at it (raw where none meets it)."""
    raw, how = writer.raw(), "stored raw (lossless)"
    bound = settings.chunk_bound(writer.chunk.finite)
    best = raw
    if bound is None and settings.rate_controlled:
        found = _sperr_alone_at_target(settings, writer, _wavelets(settings, model, writer, values, valid))
        if found is not None:
            best, how = found, "coded without it by SPERR alone at the target (wavelet mode)"
    if bound is not None:
        exact = _undeclared_fill(values, valid, model)
        best = _network_free_within(settings, model, writer, values, valid, bound, exact)
        if cf.chunk_mode(best) != MODE_RAW:
            how = (f"coded without it within the error bound ({KNOWN_MODES[cf.chunk_mode(best)]} mode"
                   + (f"; {int(exact.sum())} repeated values far outside the range, an undeclared fill value?, "
                      "kept exact" if exact.any() else "") + ")")
    warnings.warn(f"{reason}; the chunk is {how}", OutOfRangeWarning, stacklevel=4)
    return best


def _network_free_within(settings, model, writer: "_Writer", values, valid, bound: float, exact=None) -> bytes:
    """The smallest of raw, the chunk's mean plus residual and SPERR alone (each layout) within
    ``bound``, checked by decoding; ``exact``: values to keep bit-exact (then the residual only)."""
    raw = writer.raw()
    exact = exact if exact is not None and exact.any() else None
    tries = [writer.plain_residual(values, valid, bound, exact=exact)]
    if settings.residual_coder == "sperr" and _sperr_takes(model, values) and exact is None:
        waves = _WaveletChunks(writer, values, valid, exact_bound=settings.sperr_exact_bound)
        tries += [c for k in wavelet.pointwise_coders(values.shape) if (c := waves.at_bound(None, 0, bound, k))]
    best = _fewest([raw, *tries])
    if best is not raw and not _decodes_within(best, model, settings, writer.chunk, bound):
        return raw
    return best


def _network_free(settings, model, writer: "_Writer", values, valid) -> bytes:
    """``network=False``: the chunk coded without fitting or running the network: within the
    bound, :func:`_network_free_within`; at a ratio or RMSE target, SPERR alone (the better layout:
    lower RMSE within a ratio, fewer bytes at an RMSE); raw, with a ``TargetNotMetWarning``, where
    no SPERR chunk meets the target."""
    bound = settings.chunk_bound(writer.chunk.finite)
    if bound is not None:
        if not settings.rate_controlled:
            return _network_free_within(settings, model, writer, values, valid, bound)
        waves = _wavelets(settings, model, writer, values, valid)
        found = _sperr_alone_at_target(settings, writer, waves)
        found = [] if found is None else [_scored(found, model, settings, writer.chunk)]
        corrected_tries = _corrected_alone(settings, model, writer.chunk, waves, bound, found)
        limit = _smallest_meeting_both(settings, found + corrected_tries, bound)
        tries = _tightening(settings, model, writer.chunk, bound,
                            lambda b: _network_free_within(settings, model, writer, values, valid, b), limit)
        return _within_and_at_target(settings, writer.chunk, tries + found + corrected_tries, bound)
    found = _sperr_alone_at_target(settings, writer, _wavelets(settings, model, writer, values, valid))
    if found is None:
        want = (f"target_ratio {settings.target_ratio:g}" if settings.target_ratio is not None
                else f"target_rmse {settings.target_rmse:g}")
        warnings.warn(f"{want} not reached without the network (network=False): no SPERR chunk meets it, "
                      "the chunk is stored raw (lossless)", TargetNotMetWarning, stacklevel=4)
        return writer.raw()
    return found


def _sperr_alone_at_target(settings, writer: "_Writer", waves) -> bytes | None:
    """SPERR alone at the settings' ratio or RMSE target in its better layout (lower RMSE within a
    ratio, fewer bytes at an RMSE), or None when no SPERR chunk meets it (or ``waves`` is None:
    :func:`_wavelets`)."""
    alone = _fast_alone(settings, waves, items=_ItemsAlone.of(waves, settings.target_rmse)) if waves is not None else []
    if not alone:
        return None
    return _better_alone(alone, settings, writer.chunk.arr.nbytes)[0]


class _LatentCandidates:
    """The fitted latents of one chunk (with one patch aim), coded at any bit width on demand
    (memoised per width)."""

    def __init__(self, ctx: ChunkContext, coder: LatentCoder, latents: np.ndarray, spatial, aim: int = 0,
                 level: float = 0.0):
        self._ctx, self._coder, self._latents, self._spatial = ctx, coder, latents, spatial
        #: the latents fit the values less ``level`` (``recon`` is the network's output, without it)
        self.aim, self.level = aim, level
        self._coded: dict[int, tuple] = {}
        self._recon: dict[int, np.ndarray] = {}
        self._recon_items: dict[tuple, np.ndarray] = {}

    @property
    def patches(self) -> int:
        """Latent vectors per item."""
        return self._latents.shape[1]

    def coded(self, bits: int):
        if bits not in self._coded:
            self._coded[bits] = self._coder.compress(self._latents, bits)
        return self._coded[bits]

    def coded_first(self, bits: int):
        """The first item's latents coded alone at ``bits``."""
        return self._coder.compress(self._latents[:1], bits)

    def recon(self, bits: int) -> np.ndarray:
        """The reconstruction from the dequantised latents, exactly as the decoder computes it."""
        if bits not in self._recon:
            deq = self._coder.dequantize(self.coded(bits), bits).reshape(self._latents.shape)
            self._recon[bits] = self._ctx.reconstruct(deq, self._spatial, self.aim)
        return self._recon[bits]

    def recon_coarse(self, bits: int) -> np.ndarray:
        """The reconstruction of a coarse hybrid (mode 6) from the dequantised latents, exactly as
        the decoder computes it (``ChunkContext.reconstruct_coarse``)."""
        key = ("coarse", bits)
        if key not in self._recon_items:
            deq = self._coder.dequantize(self.coded(bits), bits).reshape(self._latents.shape)
            self._recon_items[key] = self._ctx.reconstruct_coarse(deq, self._spatial, self.aim)
        return self._recon_items[key]

    def rmse(self, bits: int, values: np.ndarray, valid: np.ndarray) -> float:
        """RMSE (data units) of the reconstruction at ``bits`` (plus ``level``) over the valid values."""
        return _rmse(self.recon(bits), values, valid, self.level)

    def max_error(self, bits: int, values: np.ndarray, valid: np.ndarray, dtype) -> float:
        """The maximum error (data units) over the valid values of the reconstruction at ``bits``
        as the decoder returns it: plus ``level``, in the chunk's ``dtype``."""
        y = self.recon(bits).reshape(values.shape)[valid]
        y = (y + self.level if self.level else y).astype(np.dtype(dtype).newbyteorder("="))
        return float(np.abs(y.astype(np.float64) - values[valid]).max(initial=0.0))

    def estimated_rmse(self, bits: int, values: np.ndarray, valid: np.ndarray) -> float:
        """:meth:`rmse` measured on ``ESTIMATE_ITEMS`` evenly spaced items only (all of them when
        the chunk has no more): what the search asks before it pays for a whole reconstruction.
        On items of ``PROBE_MIN_ITEM_VALUES`` values or more, on a share of their points
        (:meth:`sampled_rmse`) unless their reconstruction is in hand."""
        n = self._latents.shape[0]
        pick = _estimate_items(n)
        if pick.size == n or bits in self._recon:
            return self.rmse(bits, values, valid)
        if _large_items(self._spatial):
            return self.sampled_rmse(bits, values[pick], valid[pick], PROBE_SAMPLE_SHARE, items=pick)
        return _rmse(self.recon_items(bits, pick), values[pick], valid[pick], self.level)

    def sampled_rmse(self, bits: int, values: np.ndarray, valid: np.ndarray, share: int,
                     items: np.ndarray | None = None) -> float:
        """:meth:`rmse` of ``items`` (None: every item; ``values``, ``valid``: theirs) estimated on a
        pseudo-random ``1 / share`` of each patch's points (:func:`_sample_rows`; those
        :meth:`PatchPartition.assemble` keeps, so that no grid point counts twice), or measured on
        every point where their reconstruction is in hand or none of those points is valid."""
        known = self._recon_in_hand(bits, items)
        if known is not None:
            return _rmse(known, values, valid, self.level)
        part = self._ctx.model.partition(self._ctx.grid(self._spatial), self.aim)
        points = math.prod(part.patch_shape)
        rows = _sample_rows(part.num_patches, points, max(1, points // share))
        key = ("sampled", bits, share, None if items is None else items.tobytes())
        if key not in self._recon_items:
            deq = self._coder.dequantize(self.coded(bits), bits).reshape(self._latents.shape)
            deq = deq if items is None else deq[items]
            self._recon_items[key] = self._ctx.reconstruct_at(deq, self._spatial, rows, self.aim)
        n = len(values)

        def at_rows(a: np.ndarray) -> np.ndarray:
            return np.take_along_axis(part.extract(a).reshape(n, part.num_patches, points), rows[None], axis=2)

        kept = np.take_along_axis(part.kept_mask().reshape(part.num_patches, points), rows, axis=1)
        ok = at_rows(valid) & kept[None]
        if not ok.any():
            whole = self.recon(bits) if items is None else self.recon_items(bits, items)
            return _rmse(whole, values, valid, self.level)
        err = self._recon_items[key][ok] - at_rows(values)[ok].astype(np.float64)
        if self.level:
            err += self.level
        return float(np.sqrt(np.mean(err * err)))

    def _recon_in_hand(self, bits: int, items: np.ndarray | None) -> np.ndarray | None:
        """The reconstruction of ``items`` (None: every item) at ``bits`` where one was made, else None."""
        if bits in self._recon:
            return self._recon[bits] if items is None else self._recon[bits][items]
        return None if items is None else self._recon_items.get((bits, items.tobytes()))

    def recon_items(self, bits: int, items: np.ndarray) -> np.ndarray:
        """:meth:`recon` of the chosen ``items`` only (memoised per width)."""
        if bits in self._recon:
            return self._recon[bits][items]
        key = (bits, items.tobytes())
        if key not in self._recon_items:
            deq = self._coder.dequantize(self.coded(bits), bits).reshape(self._latents.shape)[items]
            self._recon_items[key] = self._ctx.reconstruct(deq, self._spatial, self.aim)
        return self._recon_items[key]


@functools.lru_cache(maxsize=16)
def _sample_rows(num_patches: int, points: int, count: int) -> np.ndarray:
    """(num_patches, count) flat point indices, ascending: each patch's own pseudo-random
    ``count`` of its ``points``, ranked by a fixed integer hash (splitmix64) of the patch and point,
    so that every machine and numpy version samples alike."""
    z = np.arange(num_patches * points, dtype=np.uint64).reshape(num_patches, points) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    rows = np.sort(np.argsort(z, axis=1, kind="stable")[:, :count], axis=1)
    rows.setflags(write=False)
    return rows


def _rmse(recon: np.ndarray, values: np.ndarray, valid: np.ndarray, level: float = 0.0) -> float:
    err = recon.reshape(values.shape)[valid] - values[valid].astype(np.float64)
    if level:
        err += level
    return float(np.sqrt(np.mean(err * err)))


class _Writer:
    """Packs the chunk modes of one input chunk (shared header fields and mask sections)."""

    def __init__(self, chunk: _Chunk, pin: bytes, fill_value: float | None, residual: dict | None = None):
        self.chunk = chunk
        #: the residual coder's options (:func:`_residual_options`; none: predictors 0 and 1, layout 1)
        self.residual_options = dict(residual or {})
        self.common = dict(model_sha256=None, pin=pin, dtype=chunk.arr.dtype.str, shape=chunk.shape,
                           order=chunk.order)
        self.masks: dict[str, bytes] = {}
        self.flags = 0
        if chunk.has_nan:
            self.masks["nan_mask"] = section_payloads.pack_mask(chunk.nan)
            self.flags = FLAG_NAN_MASK
        if chunk.fill is not None:
            self.masks["fill_mask"] = section_payloads.pack_fill_mask(fill_value, chunk.fill)

    def _pack(self, mode: int, sections: dict, bits=0, qid=0, eid=0, flags=0, aim=0, predict=0) -> bytes:
        hdr = ChunkHeader(mode=mode, patch_shape=None, num_items=None, num_patches=None, latent_dim=None,
                          bits=bits, quantizer_id=qid, entropy_id=eid, flags=flags, patch_aim=aim,
                          predict=predict, **self.common)
        return cf.pack_chunk(hdr, sections)

    def raw(self) -> bytes:
        arr = self.chunk.arr
        return self._pack(MODE_RAW, {"raw_values": section_payloads.pack_raw_values(arr, self.chunk.order)})

    def latents(self, cands: _LatentCandidates, bits: int, mode: int = MODE_MODULATIONS,
                extra: dict | None = None) -> bytes:
        # versions 3 and 4: patches, items and latent size are implied by the model, the masks
        # and (version 4) the patch aim
        c = cands.coded(bits)
        predict = PREDICT_PREVIOUS if c.predict and c.symbols.shape[0] > cands.patches else PREDICT_NONE
        return self._pack(mode, {"latents": c.payload, **self.masks, **(extra or {})}, bits,
                          c.quantizer_id, c.entropy_id, self.flags, cands.aim, predict)

    def hybrid(self, cands: _LatentCandidates, bits: int, payload: bytes, coarse: bool = False) -> bytes:
        """Mode 4: the latents at ``bits`` and the wavelet-coded residual of their reconstruction;
        ``coarse``: mode 6, of their reconstruction on the coarse grid (``recon_coarse``)."""
        return self.latents(cands, bits, MODE_HYBRID_COARSE if coarse else MODE_HYBRID, {"wavelet": payload})

    def wavelet(self, payload: bytes) -> bytes:
        """Mode 5: the wavelet-coded values, no network."""
        return self._pack(MODE_WAVELET, {**self.masks, "wavelet": payload}, flags=self.flags)

    def corrected(self, payload: bytes, residual: bytes) -> bytes:
        """Mode 7: SPERR alone's payload and the residual section correcting its decode within a bound."""
        return self._pack(MODE_WAVELET_CORRECTED, {**self.masks, "residual": residual, "wavelet": payload},
                          flags=self.flags)

    def residual(self, values, recon, valid, bound: float, **kw) -> _residual.EncodedResidual:
        """The residual section of ``values`` over ``recon`` within ``bound``
        (:func:`residual.encode_residual`, with this chunk's dtype and predictors)."""
        return _residual.encode_residual(values, recon, valid, bound, self.chunk.arr.dtype,
                                         **self.residual_options, **kw)

    def plain_residual(self, values, valid, bound: float, exact=None) -> bytes:
        """Mode 3: the residual of the chunk's mean (no network): what bounded mode never exceeds.
        ``exact``: values kept bit-exact (exceptions), left out of the mean."""
        rest = valid if exact is None else valid & ~exact
        prediction = float(np.mean(values[rest if rest.any() else valid], dtype=np.float64))
        res = self.residual(values, np.full(values.shape, prediction), valid, bound, exact_recon=True, exact=exact)
        return self._pack(MODE_PLAIN_RESIDUAL, {**self.masks, "residual": res.payload,
                                                "prediction": section_payloads.pack_prediction(prediction)},
                          flags=self.flags)


def _residual_options(settings) -> dict:
    """:func:`residual.encode_residual`'s options the settings turn on: the interpolation predictors,
    the earlier items' detail, the codes' contexts and those by level, the cubic interpolation, mode 3's
    finer step and section layout 2 (``residual_*``; off in configurations written before each)."""
    return dict(interpolation=settings.residual_interpolation, item_detail=settings.residual_item_detail,
                context=settings.residual_context, levels=settings.residual_levels, cubic=settings.residual_cubic,
                fine_step=settings.residual_fine_step, compact=settings.residual_compact)


def encode_chunk(array, model, settings) -> bytes:
    """Encode one chunk ``(*leading, *spatial)`` with ``model`` (a CoinModel) and ``settings``
    (a :class:`~inrcodec.settings.CodecSettings`); returns version-3, 4 or 5 chunk bytes."""
    arr = check_input(array, model, settings)
    ctx = context(model, settings)
    chunk = _Chunk(arr, model.spatial_ndim, settings.fill_value)
    writer = _Writer(chunk, ctx.pin, settings.fill_value, _residual_options(settings))
    _check_valid_range(chunk.finite, settings)
    if chunk.trivial():
        return writer.raw()
    valid_items = ~chunk.missing.reshape(chunk.items.shape[0], -1).all(axis=1)
    values = chunk.items[valid_items]
    mask = ~chunk.missing[valid_items] if chunk.has_missing else None
    valid = mask if mask is not None else np.ones(values.shape, dtype=bool)
    if not settings.network:
        return _network_free(settings, model, writer, values, valid)
    reason = _out_of_range_reason(chunk.finite, model, settings)
    if reason:
        return _without_network(settings, model, writer, values, valid, reason)
    coder = LatentCoder(model, settings.entropy_coding, settings.quantizer, settings.time_coding)
    grid = ctx.grid(chunk.spatial)

    fits: dict[tuple, _LatentCandidates] = {}

    def fitted(aim: int, items=None, level: float = 0.0, points_per_latent: int | None = None) -> _LatentCandidates:
        """The latent candidates of every item at ``aim``, or of ``items`` only (an index array), each
        fitted once; ``level``: fitted to the values less it (:data:`LEVEL_SHIFT`);
        ``points_per_latent``: the fast fit's subset (None: the fit's own)."""
        key = (aim, level) if items is None else (aim, level, tuple(np.asarray(items).tolist()), points_per_latent)
        if key in fits:
            return fits[key]
        x, m = (values, mask) if items is None else (values[items], None if mask is None else mask[items])
        if level:
            x = x - x.dtype.type(level)
        with ctx.lock, stage("fit"):
            latents = model.encode(x, grid, steps=settings.inner_steps, mask=m,
                                   refine_steps=settings.refine_steps, patch_aim=aim, fit=settings.effort,
                                   points_per_latent=points_per_latent)
        cands = fits[key] = _LatentCandidates(ctx, coder, np.asarray(latents, dtype=np.float32), chunk.spatial, aim,
                                               level)
        return cands

    waves = _wavelets(settings, model, writer, values, valid)
    bound = settings.chunk_bound(chunk.finite)
    if bound is not None and not settings.rate_controlled:
        return _bounded(settings, model, fitted, patching.aim_for(model, grid, settings), writer, values, valid,
                        bound, waves)
    if not settings.rate_controlled:
        aim = patching.aim_for(model, grid, settings)
        level = _level_shift(settings, model, ctx, chunk.spatial, aim, values, valid, waves)
        found = _alone_at_bits(settings, model, fitted, aim, writer, values, valid, waves, level)
        if found is not None:
            return found
        if level and _moved_fits_better(settings, fitted, aim, level, values, valid):
            found = _at_bits(settings, model, fitted(aim, level=level), writer, values, valid, waves)
            if found is not None:
                return found
        return _at_bits(settings, model, fitted(aim), writer, values, valid, waves)
    aims = {aim: model.partition(grid, aim).num_patches for aim in patching.candidate_aims(model, grid, settings)}
    if bound is None:
        return _rate_controlled(settings, model, fitted, aims, writer, values, valid, waves)
    with warnings.catch_warnings():  # the target is judged on the chunk chosen below
        warnings.simplefilter("ignore", TargetNotMetWarning)
        tries = [_scored(_rate_controlled(settings, model, fitted, aims, writer, values, valid, waves), model,
                         settings, chunk)]
    aim = patching.aim_for(model, grid, settings)
    # the corrected chunk is listed last (ties keep the earlier) but coded first: it caps the tightening
    corrected_tries = _corrected_alone(settings, model, chunk, waves, bound, tries)
    limit = _smallest_meeting_both(settings, tries + corrected_tries, bound)
    tries += _tightening(settings, model, chunk, bound,
                         lambda b: _bounded(settings, model, fitted, aim, writer, values, valid, b, waves), limit)
    tries += _pointwise_alone(settings, model, chunk, waves, bound, limit)
    tries += corrected_tries
    return _within_and_at_target(settings, chunk, tries, bound)


def _smallest_meeting_both(settings, tries: list[Candidate], bound: float) -> int | None:
    """At ``target_rmse`` with a bound: the bytes of the smallest of ``tries`` that meets both (what
    a tighter bound's chunk, larger than the looser one's, cannot beat: :func:`_tightening`), or None."""
    if settings.target_rmse is None:
        return None
    return min((len(c.data) for c in tries if c.max_error <= bound and c.rmse <= settings.target_rmse),
               default=None)


def _pointwise_alone(settings, model, chunk: _Chunk, waves, bound: float, limit: int | None = None) -> list[Candidate]:
    """An error bound with a target: SPERR alone in its point-wise mode, in each layout, at the bound
    and, while ``target_rmse`` is missed, at tighter bounds (:func:`_tightening`). The bounded search
    keeps its smallest chunk, which at a loose bound can miss the RMSE that SPERR's point-wise chunk
    at the same bound meets: on GloSea4 at 1.25 degrees with ``target_rmse=1.0, max_abs_error=5.0``
    the bounded chunks met both only at a tighter bound, 46.6x, where SPERR alone at 5 K met both at
    95.4x (test split, ``benchmarks/combined_target.py``)."""
    if waves is None:
        return []
    return [c for coder in wavelet.pointwise_coders(waves.shape)
            for c in _tightening(settings, model, chunk, bound, lambda b, k=coder: waves.at_bound(None, 0, b, k),
                                 limit)]


def _corrected_alone(settings, model, chunk: _Chunk, waves, bound: float, target: list[Candidate]) -> list[Candidate]:
    """An error bound with a target: SPERR alone at the target, its decode corrected within the bound
    (mode 7, :mod:`inrcodec.chunkcodec.corrected`; ``settings.sperr_corrected``). Its point-wise mode
    holds every value to the bound; at a loose bound with an RMSE target few values miss it at the
    target's rate: on GloSea4 at 1.25 degrees, ``target_rmse=1.0, max_abs_error=5.0`` took 3,129 bytes
    where SPERR's point-wise chunk took 9,386 (validation split, ``benchmarks/combined_target.py``).
    None where ``target`` (the target's own chunk, scored; none where none met it) keeps the bound: that
    chunk is the smallest at the RMSE, or the lowest RMSE within the ratio, of the candidates SPERR
    alone is among, and a corrected chunk is SPERR alone at about the same rate plus a residual section
    (or at a lower rate, within a ratio)."""
    if waves is None or not settings.sperr_corrected or (target and target[0].max_error <= bound):
        return []
    found = waves.corrected_at(bound, settings.target_rmse, settings.target_ratio)
    return [] if found is None else [_scored(found, model, settings, chunk)]


def _tightening(settings, model, chunk: _Chunk, bound: float, bounded_at, limit: int | None = None) -> list[Candidate]:
    """``bounded_at(b)`` (a chunk within ``b``, or None where there is none) at the bound, then at
    tighter bounds while an RMSE target is missed, up to ``BOUND_TRIES`` chunks (:func:`_scored`): a
    bounded chunk's RMSE grows with its bound, and its bytes fall with it, so the tightening stops
    at a chunk of ``limit`` bytes or more (one that meets both is in hand at that size)."""
    tries, b = [], bound
    for _ in range(BOUND_TRIES):
        data = bounded_at(b)
        if data is None:  # a coder that cannot keep this bound
            break
        tries.append(_scored(data, model, settings, chunk))
        rmse = tries[-1].rmse
        if settings.target_rmse is None or rmse <= settings.target_rmse:
            break
        if limit is not None and len(data) >= limit:
            break
        b *= min(0.9, max(0.5, settings.target_rmse / rmse))
    return tries


def _scored(data: bytes, model, settings, chunk: _Chunk) -> Candidate:
    """The chunk with its errors through the real decoder (:func:`_errors_of`)."""
    return Candidate(data, *_errors_of(data, model, settings, chunk))


def _errors_of(data: bytes, model, settings, chunk: _Chunk) -> tuple[float, float]:
    """(RMSE, max abs error) of a chunk's valid values through the real decoder; NaN where a
    valid value decodes to NaN or a missing one does not."""
    y = np.ascontiguousarray(decode_chunk(data, model, settings)).reshape(chunk.items.shape).astype(np.float64)
    if not np.array_equal(np.isnan(y), chunk.nan):
        return math.nan, math.nan
    d = np.abs(y - chunk.items.astype(np.float64))[~chunk.missing]
    return (float(np.sqrt(np.mean(d * d))), float(d.max())) if d.size else (0.0, 0.0)


def _within_and_at_target(settings, chunk: _Chunk, tries: list[Candidate], bound: float) -> bytes:
    """An error bound with a target: of the :func:`_scored` chunks in ``tries`` whose every valid
    value decodes within ``bound``, at ``target_rmse`` the smallest that meets it, at
    ``target_ratio`` the lowest RMSE within the ratio; where none meets the target, the closest (the
    bound is kept either way) with a ``TargetNotMetWarning`` saying what was reached."""
    kept = [c for c in tries if c.max_error <= bound]
    if not kept:  # never expected: the bounded tries keep the bound or are raw
        return tries[-1].data
    data, rmse, _ = kept[choose(kept, chunk.arr.nbytes, target_rmse=settings.target_rmse,
                                target_ratio=settings.target_ratio)]
    ratio = chunk.arr.nbytes / len(data)
    if settings.target_rmse is not None and rmse > settings.target_rmse:
        want = f"target_rmse {settings.target_rmse:g}"
    elif settings.target_ratio is not None and ratio < settings.target_ratio:
        want = f"target_ratio {settings.target_ratio:g}"
    else:
        return data
    warnings.warn(f"{want} not reached within the error bound {bound:g}: best RMSE {rmse:.3g} at {ratio:.3g}x, "
                  "every value within the bound", TargetNotMetWarning, stacklevel=4)
    return data


def _rate_controlled(settings, model, fitted, aims: dict, writer: _Writer, values, valid, waves) -> bytes:
    """Rate control: the width for each candidate patch size (``aims``: aim -> patches per item),
    then the best of those and of the wavelet candidates (those meet the target or are not offered).

    ``effort="fast"`` codes SPERR alone first, drops a network-alone candidate whose RMSE
    estimated on a few items (:meth:`_LatentCandidates.estimated_rmse`) is ``OUTCLASSED`` by what
    meets a ratio target already (at a patch size other than the hybrids', judged on those items'
    own fit first, :func:`_probe_outclassed`), tries hybrids at the largest patches only, in
    SPERR's better layout (:func:`_fast_hybrids`), and reconstructs a network-alone candidate
    within a ratio whole only where its estimate is within ``NEAR_BEST`` of the best chunk then."""
    fast = settings.effort == "fast"
    nbytes = writer.chunk.arr.nbytes
    alone, items = [], None
    if fast and waves is not None:
        items = _ItemsAlone.of(waves, settings.target_rmse)
        alone = _fast_alone(settings, waves, items=items)
    found_alone = [c for c, _ in alone]
    # one per network-alone candidate, in order: [Candidate, choice], the Candidate's RMSE an
    # estimate until it is reconstructed whole (the latents to do so in ``later``)
    network, later, fits = [], {}, []
    hybrid_aim = min(aims, key=aims.get)  # the fewest patches (the first of equals)
    probing = fast  # until a probe finds the network in the race
    for aim in aims:
        tried = [c for c, _ in network]
        if probing and aim != hybrid_aim:
            rivals = [(len(c.data), c.rmse) for c in tried + found_alone
                      if _meets(settings, nbytes / len(c.data), c.rmse)]
            if rivals and _probe_outclassed(settings, model, fitted, aim, writer, values, valid, rivals):
                continue
            probing = not rivals
        cands = fitted(aim)
        fits.append(cands)
        sizes = [len(c.data) for c in tried + found_alone
                 if settings.target_rmse is not None and c.rmse <= settings.target_rmse]
        if fast and sizes:  # an RMSE target met already: only widths whose chunk is smaller can win
            choice = _rmse_choice_below(settings, model, cands, writer, values, valid, min(sizes))
            if choice is None:
                continue
        else:
            choice = _choice_for(settings, model, cands, writer, values, valid)
        data = writer.latents(cands, choice.bits)
        if fast and settings.target_ratio is not None and choice.met:
            rivals = [c.rmse for c in tried + found_alone if nbytes / len(c.data) >= settings.target_ratio]
            estimate = cands.estimated_rmse(choice.bits, values, valid)
            if rivals and estimate > OUTCLASSED * min(rivals):
                continue
            later[len(network)] = (cands, choice.bits)
            network.append([Candidate(data, estimate), choice])
            continue
        network.append([_network_alone(cands, choice.bits, data, values, valid, writer), choice])
    tried = [c for c, _ in network]
    if fast and alone:
        tried += found_alone
        best, coder = _better_alone(alone, settings, nbytes)
        tried += _fast_hybrids(settings, model, waves, min(fits, key=lambda c: c.patches), coder, tried, alone=best,
                               items=items)
    elif waves is not None:
        tried += _wavelet_targets(settings, model, waves, fits)
    if later:
        measured = [c.rmse for i, c in enumerate(tried)
                    if i not in later and nbytes / len(c.data) >= settings.target_ratio]
        for i in sorted(later, key=lambda i: tried[i].rmse):  # the lowest estimate first: it sets the best
            if measured and tried[i].rmse > NEAR_BEST * min(measured):
                tried[i] = None
                continue
            tried[i] = network[i][0] = _network_alone(*later[i], tried[i].data, values, valid, writer)
            measured.append(tried[i].rmse)
        keep = [i for i, c in enumerate(tried) if c is not None]
        tried, network = [tried[i] for i in keep], [network[i] for i in keep if i < len(network)]
    choices = [choice for _, choice in network] + [None] * (len(tried) - len(network))
    pick = choose(tried, nbytes, target_rmse=settings.target_rmse, target_ratio=settings.target_ratio)
    if fast and settings.target_ratio is not None:
        pick = _lower_max_error(settings, model, writer.chunk, tried, pick)
    if choices[pick] is not None:
        _warn_if_missed(settings, model, choices[pick])
    elif settings.target_ratio is not None:
        _warn_if_costly(settings, model, tried, choices, pick, nbytes)
    return tried[pick].data


def _network_alone(cands: _LatentCandidates, bits: int, data: bytes, values, valid, writer: _Writer) -> Candidate:
    """The network-alone chunk ``data`` of ``cands`` at ``bits``, with its errors (reconstructed whole)."""
    dtype = writer.chunk.arr.dtype
    return Candidate(data, cands.rmse(bits, values, valid), cands.max_error(bits, values, valid, dtype))


def _warn_if_costly(settings, model, tried: list[Candidate], choices: list, pick: int, nbytes: int) -> None:
    """A ratio met by a wavelet chunk at ``COSTLY_TARGET`` times the RMSE of a network candidate
    short of the ratio is said, with both, never kept silent (``TargetCostWarning``)."""
    ratio, rmse = nbytes / len(tried[pick].data), tried[pick].rmse
    short = [(nbytes / len(c.data), c.rmse) for c, choice in zip(tried, choices)
             if choice is not None and not choice.met]
    if not short:
        return
    r_net, e_net = min(short, key=lambda t: t[1])
    if rmse > COSTLY_TARGET * e_net:
        units = (model.description or {}).get("units")
        u = f" {units}" if units else ""
        warnings.warn(f"target_ratio {settings.target_ratio:g} met at {ratio:.0f}x by SPERR alone with an RMSE of "
                      f"{rmse:.3g}{u}, {rmse / e_net:.1f} times the {e_net:.3g}{u} the network reaches at "
                      f"{r_net:.0f}x: a lower ratio, or target_rmse, keeps the error", TargetCostWarning, stacklevel=4)


def _lower_max_error(settings, model, chunk: _Chunk, tried: list[Candidate], pick: int) -> int:
    """``effort="fast"``, ``target_ratio``: of the candidates within the ratio whose RMSE is within
    ``MAX_ERROR_MARGIN`` of the pick's, the one with the lowest maximum error (as decoded; ties: the
    pick, then the earlier): the RMSE search alone lets the maximum error drift."""
    nbytes, best = chunk.arr.nbytes, tried[pick].rmse
    if nbytes / len(tried[pick].data) < settings.target_ratio:
        return pick
    close = [i for i, c in enumerate(tried) if i != pick and nbytes / len(c.data) >= settings.target_ratio
             and c.rmse <= (1.0 + MAX_ERROR_MARGIN) * best]
    if not close:
        return pick
    # the search measured most candidates' maximum error as the decoder returns them; the decoder
    # clips to a valid range, which the search does not
    clipped = settings.valid_min is not None or settings.valid_max is not None
    worst = {i: _errors_of(tried[i].data, model, settings, chunk)[1]
             if clipped or math.isnan(tried[i].max_error) else tried[i].max_error for i in [pick, *close]}
    return min([pick, *close], key=lambda i: (worst[i], i != pick, i))


def _probe_outclassed(settings, model, fitted, aim: int, writer: _Writer, values, valid, rivals) -> bool:
    """``effort="fast"``: whether the network alone at ``aim`` is ``OUTCLASSED`` by ``rivals``
    (``(bytes, RMSE)`` of the chunks that meet the target already), judged on the probe items'
    own fit (:class:`_ProbeFit`), so that an outclassed patch size costs a fraction of a chunk's
    fit. ``target_ratio``: their RMSE at the width the ratio allows is ``PROBE_OUTCLASSED`` times
    the best rival's, or no width reaches the ratio within ``PROBE_SHORT``. ``target_rmse``: at the
    widest width whose chunk is smaller than the smallest rival's (the error falls with the width),
    their RMSE is ``OUTCLASSED`` times the target."""
    if ESTIMATE_ITEMS * PROBE_SHARE > values.shape[0]:  # too large a share of the chunk's fit to pay twice
        return False
    probe = _ProbeFit(fitted, aim, writer, values.shape[0])
    widths = ratecontrol.candidate_bits(model)
    if settings.target_ratio is not None:
        choice = ratecontrol.bits_for_target(widths, target_ratio=settings.target_ratio,
                                             ratio_of=lambda b: writer.chunk.arr.nbytes / probe.chunk_bytes(b))
        # short of the ratio, only the narrowest width (the choice then) can still reach it
        short = not choice.met and choice.reached * PROBE_SHORT < settings.target_ratio
        rival = min(e for _, e in rivals)
        return short or probe.rmse(choice.bits, values, valid) > PROBE_OUTCLASSED * rival
    limit = min(size for size, _ in rivals)
    affordable = [b for b in widths if probe.chunk_bytes(b) < limit]
    return not affordable or probe.rmse(affordable[-1], values, valid) > OUTCLASSED * settings.target_rmse


def _hybrids_outclassed(model, waves, probe: "_ProbeFit", target_rmse: float, alone: bytes, coder: int, limit: int,
                        below: int | None = None, items: "_ItemsAlone | None" = None) -> bool:
    """Whether every hybrid width (below ``below``) of the probe pair's fit, at ``target_rmse`` in
    layout ``coder``, has latents alone of ``limit`` bytes or more (the smallest chunk that meets
    it) or is estimated ``PAIR_OUTCLASSED`` by it (:class:`_HybridProbe`, scaled by SPERR
    ``alone``'s bytes)."""
    hybrids = _HybridProbe(waves, probe.cands, coder, target_rmse, alone, probe, items)
    return all(probe.chunk_bytes(b) >= limit or hybrids.outclassed(b, limit, PAIR_OUTCLASSED)
               for b in hybrid.hybrid_widths(model, below))


class _ProbeFit:
    """Two neighbouring items in the middle of a chunk of ``n`` items, fitted alone at ``aim``: a
    patch size or a width judged on them costs a fraction of the chunk's fit. Their latent bytes
    are extrapolated to the whole chunk (:meth:`chunk_bytes`)."""

    def __init__(self, fitted, aim: int, writer: _Writer, n: int, level: float = 0.0):
        self.n, self.writer = n, writer
        self.pick = np.array([n // 2 - 1, n // 2], dtype=np.intp)
        self.large = _large_items(writer.chunk.items.shape[1:])
        self.cands = fitted(aim, self.pick, level=level,
                            points_per_latent=PROBE_POINTS_PER_LATENT if self.large else None)

    def chunk_bytes(self, bits: int) -> float:
        """The chunk of every item's latents at ``bits``, estimated as the first item's bytes and
        the second's over it (what time coding codes every later item with), counted for every item."""
        cands = self.cands
        both, first = len(cands.coded(bits).payload), len(cands.coded_first(bits).payload)
        return len(self.writer.latents(cands, bits)) - both + first + (self.n - 1) * max(both - first, 0)

    def rmse(self, bits: int, values: np.ndarray, valid: np.ndarray) -> float:
        """The RMSE at ``bits`` over the two items (``values``, ``valid``: the whole chunk's); on
        large items measured on a share of their points (``PROBE_SAMPLE_SHARE``)."""
        if self.large:
            return self.cands.sampled_rmse(bits, values[self.pick], valid[self.pick], PROBE_SAMPLE_SHARE)
        return self.cands.rmse(bits, values[self.pick], valid[self.pick])


def _meets(settings, ratio: float, rmse: float) -> bool:
    """Whether a chunk of ``ratio`` and ``rmse`` meets the settings' ratio or RMSE target."""
    if settings.target_ratio is not None:
        return ratio >= settings.target_ratio
    return rmse <= settings.target_rmse


def _estimate_items(n: int) -> np.ndarray:
    """The ``ESTIMATE_ITEMS`` evenly spaced items of ``n`` that estimates are made on."""
    return np.unique(np.round(np.linspace(0, n - 1, min(n, ESTIMATE_ITEMS))).astype(np.intp))


def _fast_alone(settings, waves, target_rmse=None, items: "_ItemsAlone | None" = None,
                close: float = CLOSE_ENOUGH) -> list[tuple]:
    """SPERR alone at the target (``target_rmse`` overrides the settings'), in each layout:
    ``(Candidate, layout)`` of those that meet it. At an RMSE target a later layout starts at the
    size of the smallest chunk in hand and stops when it misses there (SPERR's rate only adds
    bits, so its error cannot rise with its size); the first starts where SPERR alone meets it on
    ``items`` (their rate and slope), when given."""
    rmse_target = target_rmse is not None or settings.target_rmse is not None
    out = []
    for coder in waves.coders:
        limit = min((len(c.data) for c, _ in out), default=None) if rmse_target else None
        search = dict(close=close, limit=limit) if rmse_target else {}
        seed = items.seed(coder) if items is not None and limit is None else None
        if seed is not None:
            waves.rate_start, search["slope"] = seed
        found = _at_target(settings, waves, None, 0, coder, target_rmse, **search)
        if found is not None:
            out.append((found, coder))
    return out


def _at_target(settings, waves, cands, bits: int, coder: int, target_rmse=None, **search):
    """One wavelet candidate at the settings' target (``target_rmse`` overrides an RMSE target;
    ``search``: the options of ``at_rmse``)."""
    target_rmse = settings.target_rmse if target_rmse is None else target_rmse
    if target_rmse is not None:
        return waves.at_rmse(cands, bits, target_rmse, coder, **search)
    return waves.at_ratio(cands, bits, settings.target_ratio, coder)


def _better_alone(alone, settings, nbytes: int) -> tuple[bytes, int]:
    """The better SPERR-alone chunk (:func:`choose`: lower RMSE within a ratio, else fewer bytes)
    and its layout: the hybrids are coded in that layout only."""
    found, coder = alone[choose([c for c, _ in alone], nbytes, target_rmse=settings.target_rmse,
                                target_ratio=settings.target_ratio)]
    return found.data, coder


def _fewest(chunks: list[bytes]) -> bytes:
    """The chunk :func:`choose` keeps without a target (``bits`` alone, an error bound): the
    fewest bytes, the earlier of equals."""
    return chunks[choose([Candidate(d) for d in chunks])]


def _fast_hybrids(settings, model, waves, cands, coder: int, tried, below: int | None = None,
                  target_rmse=None, alone: bytes | None = None, items: "_ItemsAlone | None" = None) -> list[Candidate]:
    """``effort="fast"``: hybrids of ``cands`` in layout ``coder``, widest latents first. Within a
    ratio, until one's RMSE is ``OUTCLASSED`` by the best candidate's so far (narrower latents
    leave a rougher residual); at an RMSE, every width whose latents alone are smaller than the
    smallest chunk that meets it (narrower latents cost fewer bytes, so no width rules out the
    next). Stopping at the first width that does worse than the one before lost 8 % RMSE at 50x on
    the validation split: the best width is not always next to the second best. ``items``: SPERR alone
    searched on the estimate items already (its seed), which the hybrids' probe then reuses."""
    target_rmse = settings.target_rmse if target_rmse is None else target_rmse
    nbytes = waves.nbytes
    out = []
    probe = _HybridProbe(waves, cands, coder, target_rmse, alone, items=items) \
        if target_rmse is not None and alone else None
    for bits in reversed(hybrid.hybrid_widths(model, below)):
        if target_rmse is not None:
            rivals = [len(c.data) for c in tried + out if c.rmse <= target_rmse]
            if rivals and len(waves.writer.latents(cands, bits)) >= min(rivals):
                continue
            if rivals and probe is not None and probe.outclassed(bits, min(rivals)):
                continue
            found = waves.at_rmse(cands, bits, target_rmse, coder, close=CLOSE_ENOUGH,
                                  limit=min(rivals) if rivals else None)
            score = None if found is None else len(found.data)
        else:
            rivals = [c.rmse for c in tried + out if nbytes / len(c.data) >= settings.target_ratio]
            found = waves.at_ratio(cands, bits, settings.target_ratio, coder)
            score = None if found is None else found.rmse
        if found is None:
            continue
        out.append(found)
        if target_rmse is None and rivals and score > OUTCLASSED * min(rivals):
            break
    return out


def _probed(shape: tuple[int, ...], min_item_values: int | None = None) -> bool:
    """Whether a chunk of ``shape`` (items first) is large enough for searches on its
    ``ESTIMATE_ITEMS`` items to pay (:class:`_ItemsAlone`, :class:`_HybridProbe`): ``PROBE_SHARE``
    times as many items or more, each of ``min_item_values`` (default ``PROBE_MIN_ITEM_VALUES``)
    values or more."""
    least = PROBE_MIN_ITEM_VALUES if min_item_values is None else min_item_values
    return ESTIMATE_ITEMS * PROBE_SHARE <= shape[0] and math.prod(shape[1:]) >= least


def _large_items(item_shape: tuple[int, ...]) -> bool:
    """Whether items of ``item_shape`` have ``PROBE_MIN_ITEM_VALUES`` values or more: large enough
    for estimates on a share of their points and for probe pairs on fewer fit points."""
    return math.prod(item_shape) >= PROBE_MIN_ITEM_VALUES


class _ItemsAlone:
    """``effort="fast"``, an RMSE target, a large chunk (:func:`_probed`): SPERR alone searched on
    the ``ESTIMATE_ITEMS`` items first, at a quarter of a whole chunk's cost per try, tells the whole
    chunk's search where to start (the rate that met the target there and the slope of its last
    two tries), so that it takes two or three tries where it took up to seven. ``pick``: other
    items than the ``ESTIMATE_ITEMS`` ones, e.g. a probe pair's, whose hybrid estimates then start
    from what SPERR alone took there (:attr:`found`)."""

    def __init__(self, waves: "_WaveletChunks", target_rmse: float, pick: np.ndarray | None = None):
        self.pick = _estimate_items(waves.shape[0]) if pick is None else pick
        self.payloads = waves.items(self.pick)
        self.target = target_rmse
        #: per layout, the bytes of the payload that met the target on the items (:meth:`seed`)
        self.found: dict[int, int] = {}

    @staticmethod
    def of(waves: "_WaveletChunks", target_rmse: float | None,
           pick: np.ndarray | None = None) -> "_ItemsAlone | None":
        """The estimate items (or ``pick``) of ``waves``' chunk at ``target_rmse``, or None where there
        is no RMSE target or the chunk is too small to pay for them."""
        if target_rmse is None or not _probed(waves.shape):
            return None
        return _ItemsAlone(waves, target_rmse, pick)

    def seed(self, coder: int) -> tuple[float, float] | None:
        """(rate, slope) of SPERR alone meeting the target on the items in layout ``coder``, or
        None where it misses there."""
        found = self.payloads.at_rmse(0, self.target, coder, close=CLOSE_ENOUGH)
        if found is None:
            return None
        self.found[coder] = len(found[0])
        return self.payloads.rate_start, self.payloads.last_slope


class _HybridProbe:
    """``effort="fast"``, an RMSE target, chunks of ``PROBE_SHARE * ESTIMATE_ITEMS`` items or more
    of ``PROBE_MIN_ITEM_VALUES`` values or more each: a hybrid width is first coded on the
    ``ESTIMATE_ITEMS`` items only, and its whole chunk estimated as its latents plus that SPERR
    payload scaled by what SPERR alone takes for the whole chunk (``alone``, in the same layout)
    over what it takes for those items; a width whose estimate is ``HYBRID_OUTCLASSED`` by the
    smallest chunk in hand is not reconstructed whole. Once a width is estimated to beat that
    chunk, the narrower ones are searched unprobed (as the patch-size probes stop once the network
    is in the race): where hybrids win, probing costs about a third of each width's search."""

    def __init__(self, waves: "_WaveletChunks", cands: _LatentCandidates, coder: int, target_rmse: float,
                 alone: bytes, probe: "_ProbeFit | None" = None, items: _ItemsAlone | None = None):
        self.waves, self.cands, self.coder, self.target = waves, cands, coder, target_rmse
        self.alone = len(alone)
        #: ``cands`` fitted to the probe pair alone (:func:`_alone_at_bits`): it gives the latents
        #: and their reconstruction, on its own items, instead of the chunk's fit
        self.probe = probe
        #: the probe items (None: no probing, the chunk is too small or a width was estimated to win)
        self.pick = probe.pick if probe is not None else (
            _estimate_items(waves.shape[0]) if _probed(waves.shape) else None)
        self._payloads = None
        self._scale = None
        if items is not None and self.pick is not None and coder in items.found \
                and np.array_equal(items.pick, self.pick):  # SPERR alone was searched on these items already
            self._payloads, self._scale = items.payloads, self.alone / items.found[coder]

    def _scale_of(self) -> float | None:
        """The whole chunk's SPERR-alone bytes over the probe items' (None: SPERR alone misses there)."""
        if self._payloads is None:
            self._payloads = self.waves.items(self.pick)
            found = self._payloads.at_rmse(0, self.target, self.coder, close=PROBE_CLOSE)
            if found is None:  # a few items may need more than the chunk's rate (SPERR's fixed part)
                self._payloads.rate_start = hybrid.WaveletCandidates.START_BPP
                found = self._payloads.at_rmse(0, self.target, self.coder, close=PROBE_CLOSE)
            self._scale = None if found is None else self.alone / len(found[0])
        return self._scale

    def estimate(self, bits: int, cap: float | None = None) -> float | None:
        """The hybrid chunk's bytes at ``bits``, estimated on the probe items (None: SPERR misses
        there); ``math.inf`` where they are found to exceed ``cap``: a width whose latents alone do
        is not reconstructed, and the SPERR search stops at a try that misses the target with a
        payload that takes the estimate past it (SPERR's size only grows with its rate)."""
        scale = self._scale_of()
        if scale is None:
            return None
        latents = len(self.waves.writer.latents(self.cands, bits)) if self.probe is None \
            else self.probe.chunk_bytes(bits)
        if cap is not None and latents >= cap:
            return math.inf
        # the search's limit counts its slack beside the payload: it stops at a payload over the cap's
        limit = None if cap is None or not scale > 0 else \
            math.floor((cap - latents) / scale) + 1 + hybrid.WaveletCandidates.SLACK
        recon = self.cands.recon_items(bits, self.pick) if self.probe is None else self._pair_recon(bits)
        found = self._payloads.at_rmse(0, self.target, self.coder, lambda: recon, close=PROBE_CLOSE, limit=limit)
        if found is None:
            return math.inf if self._payloads.missed_at_limit else None
        return latents + len(found[0]) * scale

    def _pair_recon(self, bits: int) -> np.ndarray:
        """The probe pair's reconstruction at ``bits`` that its hybrid is estimated over: the coarse
        one (mode 6) where the chunk's hybrids may take it, which costs about half as much here
        (the network at a quarter of the points) and decided no chunk otherwise than the full one
        (1-degree ERA5 temperature at 5, 6 and 8 bits, validation split: the same bytes, 0.1 s less
        a chunk; a hybrid it does not find outclassed is still coded both ways)."""
        cands = self.probe.cands
        return cands.recon_coarse(bits) if self.waves.coarse is not False else cands.recon(bits)

    def outclassed(self, bits: int, limit: int, margin: float | None = None) -> bool:
        """Whether width ``bits`` is estimated over ``margin`` (default ``HYBRID_OUTCLASSED``) times
        the ``limit`` bytes."""
        cap = (HYBRID_OUTCLASSED if margin is None else margin) * limit
        estimate = None if self.pick is None else self.estimate(bits, cap)
        if estimate is None:
            return False
        if estimate > cap:
            return True
        if estimate <= limit:  # expected to beat the chunk in hand: the narrower widths are searched unprobed
            self.pick = None
        return False


def _sperr_takes(model, values) -> bool:
    """Whether SPERR may code this chunk; a chunk too large for its decode to fit SPERR's
    WebAssembly memory on any machine is said, and coded without it."""
    if not wavelet.available(model.spatial_ndim):
        return False
    if wavelet.available(model.spatial_ndim, values.size):
        return True
    warnings.warn(f"a chunk of {values.size} values is coded without SPERR (residual_coder='sperr'): SPERR decodes "
                  f"at most {wavelet.MAX_VALUES} values in one chunk within half of its "
                  f"{wavelet.WASM_MEMORY_BYTES >> 30} GiB of WebAssembly memory; write smaller chunks to use it",
                  UserWarning, stacklevel=5)
    return False


def _wavelets(settings, model, writer: _Writer, values, valid):
    """The wavelet candidates of this chunk, when the settings and the model allow them."""
    if settings.residual_coder != "sperr" or not _sperr_takes(model, values):
        return None
    return _WaveletChunks(writer, values, valid, coarse=settings.coarse_hybrid, exact_bound=settings.sperr_exact_bound,
                          item_dct=settings.sperr_item_dct)


class _WaveletChunks:
    """The wavelet candidates of one chunk as chunk bytes: :class:`hybrid.WaveletCandidates` makes
    the SPERR payloads, which are packed here alone (mode 5, ``cands`` None) or after the latents
    of ``cands`` at ``bits`` (mode 4, a hybrid; mode 6, a coarse hybrid); each method returns what
    its payload method does, the payload packed into its chunk.

    With ``coarse`` (``settings.coarse_hybrid``), the chunk's first hybrid is coded over both the
    network's reconstruction and its coarse one (:mod:`inrcodec.chunkcodec.coarse`), and every
    later hybrid of the chunk over the one that did better there (:attr:`coarse`): the coarse
    one decodes about three times faster and, the interpolation smoothing the network's finest
    wiggles, was often the better (validation split: 4 % to 7 % lower RMSE at 200x and 500x on
    3- and 4-degree ERA5 temperature), but not where the network draws real detail (regional
    A1B at 200x: 14 % higher)."""

    def __init__(self, writer: _Writer, values: np.ndarray, valid: np.ndarray, coarse: bool = False,
                 exact_bound: bool = False, item_dct: bool = False):
        self.writer, self.shape = writer, values.shape
        #: the layouts the rate and RMSE searches try, in order (``settings.sperr_item_dct``:
        #: the items' DCT first)
        self.coders = wavelet.search_coders(values.shape, item_dct)
        #: SPERR alone within a bound is first tried at the bound itself (``settings.sperr_exact_bound``)
        self.exact_bound = exact_bound
        self.payloads = hybrid.WaveletCandidates(values, valid, writer.chunk.arr.nbytes, writer.chunk.arr.dtype)
        self.nbytes = self.payloads.nbytes
        #: SPERR alone within a bound, per (bound, layout): the bounded search and the point-wise
        #: tries of a bound with a target (:func:`_pointwise_alone`) ask for the same chunk
        self._alone_within: dict[tuple[float, int], bytes | None] = {}
        #: whether hybrids predict from the coarse reconstruction: None until the chunk's first
        #: hybrid was coded both ways (False throughout without ``coarse``)
        self.coarse: bool | None = None if coarse else False

    @property
    def rate_start(self) -> float:
        return self.payloads.rate_start

    @rate_start.setter
    def rate_start(self, bpp: float) -> None:
        self.payloads.rate_start = bpp

    def items(self, pick: np.ndarray) -> hybrid.WaveletCandidates:
        """The wavelet payloads of the ``pick`` items alone, their searches starting at this
        chunk's rate (bits per value: about theirs)."""
        full = self.payloads
        part = hybrid.WaveletCandidates(full.x64[pick], full.valid[pick], full.nbytes * pick.size // self.shape[0],
                                        full.dtype)
        part.rate_start = full.rate_start
        return part

    def _pack(self, cands, bits: int, payload: bytes, coarse: bool = False) -> bytes:
        return self.writer.wavelet(payload) if cands is None else self.writer.hybrid(cands, bits, payload, coarse)

    @staticmethod
    def _prediction(cands, bits: int, coarse: bool = False):
        """The reconstruction a payload corrects, as a callable (None for SPERR alone)."""
        if cands is None:
            return None
        return (lambda: cands.recon_coarse(bits)) if coarse else (lambda: cands.recon(bits))

    def _chunk_of(self, cands, bits: int, coarse: bool):
        """(the chunk's bytes without its payload, :meth:`_prediction`)"""
        return len(self._pack(cands, bits, b"", coarse)), self._prediction(cands, bits, coarse)

    def _both_ways(self, cands, search, better):
        """``search(coarse)`` over the prediction the chunk's hybrids use: for the first hybrid
        both, keeping (and from then on using) the coarse one where ``better(coarse's, full's)``
        or the full one finds nothing."""
        if cands is None or self.coarse is not None:
            return search(cands is not None and self.coarse)
        full, coarse = search(False), search(True)
        if full is None and coarse is None:
            return None
        self.coarse = full is None or (coarse is not None and better(coarse, full))
        return coarse if self.coarse else full

    def at_ratio(self, cands, bits: int, target_ratio: float, coder: int = wavelet.CODER_SPERR):
        def search(coarse: bool):
            overhead, prediction = self._chunk_of(cands, bits, coarse)
            found = self.payloads.at_ratio(overhead, target_ratio, coder, prediction)
            return None if found is None else Candidate(self._pack(cands, bits, found[0], coarse), *found[1:])
        return self._both_ways(cands, search, lambda a, b: a.rmse < b.rmse)

    def at_rmse(self, cands, bits: int, target_rmse: float, coder: int = wavelet.CODER_SPERR, close: float = 0.0,
                limit: int | None = None, slope: float = hybrid.WaveletCandidates.SLOPE):
        def search(coarse: bool):
            overhead, prediction = self._chunk_of(cands, bits, coarse)
            found = self.payloads.at_rmse(overhead, target_rmse, coder, prediction, close=close, limit=limit,
                                          slope=slope)
            return None if found is None else Candidate(self._pack(cands, bits, found[0], coarse), *found[1:])
        return self._both_ways(cands, search, lambda a, b: len(a.data) < len(b.data))

    def at_bound(self, cands, bits: int, bound: float, coder: int = wavelet.CODER_SPERR) -> bytes | None:
        if cands is None and (bound, coder) in self._alone_within:
            return self._alone_within[bound, coder]

        def search(coarse: bool):
            payload = self.payloads.at_bound(bound, coder, self._prediction(cands, bits, coarse), self.exact_bound)
            return None if payload is None else self._pack(cands, bits, payload, coarse)
        data = self._both_ways(cands, search, lambda a, b: len(a) < len(b))
        if cands is None:
            self._alone_within[bound, coder] = data
        return data

    def corrected_at(self, bound: float, target_rmse: float | None = None,
                     target_ratio: float | None = None) -> bytes | None:
        """Mode 7: SPERR alone corrected within ``bound``, at ``target_rmse`` the smallest chunk found
        meeting it over the layouts of :attr:`coders` (each but the first stopped where it misses with
        more bytes than the best in hand), at ``target_ratio`` the highest rate found within it in the
        first layout; None where no try meets the target."""
        x, valid = self.payloads.x64, self.payloads.valid

        def residual_of(y: np.ndarray) -> bytes:
            return self.writer.residual(x, y, valid, bound, exact_recon=True).payload

        if target_rmse is not None:
            best = None
            for coder in self.coders:
                found = corrected.at_rmse(self.payloads, coder, target_rmse, residual_of,
                                          None if best is None else best.nbytes)
                if found is not None and (best is None or found.nbytes < best.nbytes):
                    best = found
            best = None if best is None else corrected.climbed(self.payloads, best, residual_of)
        else:  # the residual's length, a varint before the last section's payload, may take 4 bytes
            budget = int(self.nbytes / target_ratio) - len(self.writer.corrected(b"", b"")) - 4
            best = corrected.at_ratio(self.payloads, self.coders[0], budget, residual_of)
        return None if best is None else self.writer.corrected(best.wavelet, best.residual)

    def tries(self, model, fits, below: int | None = None) -> list[tuple]:
        """The (latent candidates, width, coder) a chunk's wavelet search tries: SPERR alone
        ``(None, 0, coder)`` first, then the hybrid of each fitted patch aim in ``fits`` at each of
        ``hybrid.hybrid_widths``, each in every layout of :attr:`coders`."""
        widths = hybrid.hybrid_widths(model, below)
        return [(None, 0, c) for c in self.coders] + [(cands, b, c) for cands in fits for b in widths
                                                       for c in self.coders]


def _wavelet_targets(settings, model, waves, fits, below: int | None = None, target_rmse=None):
    """(chunk, RMSE) of SPERR alone and of every fitted patch aim's hybrid at each low width that
    meet the target (``target_rmse`` overrides the settings'; ``below``: widths under it)."""
    out = []
    for cands, bits, coder in waves.tries(model, fits, below):
        found = _at_target(settings, waves, cands, bits, coder, target_rmse)
        if found is not None:
            out.append(found)
    return out


def _at_bits(settings, model, cands, writer: _Writer, values, valid, waves) -> bytes | None:
    """``bits`` alone: the latents at ``bits``, or the smallest wavelet candidate at least as accurate
    (``effort="fast"``: SPERR alone first, then hybrids in its better layout, :func:`_fast_hybrids`).
    Latents fitted at a level (:data:`LEVEL_SHIFT`) set the RMSE only, and are no chunk alone:
    None where no wavelet candidate meets it."""
    data = writer.latents(cands, settings.bits)
    if waves is None:
        return data
    rmse = cands.rmse(settings.bits, values, valid)
    if settings.effort != "fast":
        found = _wavelet_targets(settings, model, waves, [cands], below=settings.bits, target_rmse=rmse)
        return _fewest([data] + [c.data for c in found])
    waves.rate_start = 8.0 * len(data) / values.size  # SPERR alone at the network's RMSE: about its bytes
    items = _ItemsAlone.of(waves, rmse)
    alone = _fast_alone(settings, waves, target_rmse=rmse, items=items)
    tried = ([] if cands.level else [Candidate(data, rmse)]) + [c for c, _ in alone]
    if alone:
        best, coder = _better_alone(alone, settings, waves.nbytes)
        tried += _fast_hybrids(settings, model, waves, cands, coder, tried, below=settings.bits, target_rmse=rmse,
                               alone=best, items=items)
    return tried[choose(tried)].data if tried else None


def _alone_at_bits(settings, model, fitted, aim: int, writer: _Writer, values, valid, waves,
                   level: float = 0.0) -> bytes | None:
    """``effort="fast"``, ``bits`` with SPERR, a large chunk (:func:`_probed`): SPERR alone at the
    RMSE the network reaches at ``bits`` on the probe items' own fit (:class:`_ProbeFit`; with a
    ``level`` (:func:`_level_shift`), the lower of it and their fit moved to that level), where the
    network alone and every hybrid width (:class:`_HybridProbe`), estimated on those items, are
    ``PAIR_OUTCLASSED`` by it; else None, and the chunk is fitted whole (:func:`_at_bits`). The
    chunk's fit and reconstruction are most of what ``bits`` costs, and on 1-degree globes SPERR
    alone met the network's RMSE at 5-8 bits in a 3.6th to a 26th of its bytes (validation split).
    The RMSE aimed at is the two items', fitted on ``PROBE_POINTS_PER_LATENT`` points, not the
    chunk's: 2.2 % to 0.1 % under it at 5-8 bits there (10.7 % under to 7.8 % over on the test split:
    the pair's fit starts from their own mean, closer to each than the chunk's, and sees fewer
    points), so such a chunk meets ``bits`` about, not at least. Not at ``bits`` up to
    ``patching.AUTO_MAX_BITS``, whose large patches make a small chunk that is cheap to fit: there
    the network was never outclassed and the probe added 0.5-1 s (validation split)."""
    if waves is None or settings.effort != "fast" or settings.bits <= patching.AUTO_MAX_BITS \
            or not _probed(values.shape):
        return None
    probe = own = _ProbeFit(fitted, aim, writer, len(values))
    if level:
        moved = _ProbeFit(fitted, aim, writer, len(values), level)
        if moved.rmse(settings.bits, values, valid) < own.rmse(settings.bits, values, valid):
            probe = moved  # the target and the hybrids' latents; a moved fit is no chunk alone
    target = probe.rmse(settings.bits, values, valid)
    network = own.chunk_bytes(settings.bits)
    waves.rate_start = 8.0 * network / values.size  # SPERR alone at the network's RMSE: at most about its bytes
    items = _ItemsAlone.of(waves, target, pick=probe.pick)  # the pair: its hybrid estimates reuse the search
    alone = _fast_alone(settings, waves, target_rmse=target, items=items, close=BITS_CLOSE)
    if not alone:
        return None
    best, coder = _better_alone(alone, settings, waves.nbytes)
    if network <= PAIR_OUTCLASSED * len(best):
        return None
    return best if _hybrids_outclassed(model, waves, probe, target, best, coder, len(best), settings.bits,
                                       items) else None


def _level_shift(settings, model, ctx: ChunkContext, spatial, aim: int, values, valid, waves) -> float:
    """How far (data units) the chunk's valid values lie from the network's level on them, where
    that is more than ``LEVEL_SHIFT`` training ranges and a hybrid can carry it; else 0."""
    if waves is None or settings.effort != "fast":
        return 0.0
    prior = np.broadcast_to(ctx.prior_field(spatial, aim), values.shape)[valid]
    shift = float(np.mean(values[valid], dtype=np.float64)) - float(np.mean(prior))
    return shift if abs(shift) > LEVEL_SHIFT * model.scale else 0.0


def _moved_fits_better(settings, fitted, aim: int, level: float, values, valid) -> bool:
    """Whether latents fitted to the values less ``level`` reach a lower RMSE at ``bits`` than the
    chunk's own fit (which ``bits`` needs either way), judged on the ``ESTIMATE_ITEMS`` items: the
    moved latents are fitted on those alone first (on every item of a chunk that has no more)."""
    pick = _estimate_items(len(values))
    moved = fitted(aim, items=None if pick.size == len(values) else pick, level=level)
    return moved.rmse(settings.bits, values[pick], valid[pick]) < fitted(aim).estimated_rmse(settings.bits, values, valid)


def _choice_for(settings, model, cands: _LatentCandidates, writer: _Writer, values, valid):
    """The width rate control picks for these latents (a ``ratecontrol.TargetChoice``)."""
    return ratecontrol.bits_for_target(
        ratecontrol.candidate_bits(model), target_rmse=settings.target_rmse,
        target_ratio=settings.target_ratio, rmse_of=lambda b: cands.rmse(b, values, valid),
        ratio_of=lambda b: writer.chunk.arr.nbytes / len(writer.latents(cands, b)),
    )


def _rmse_choice_below(settings, model, cands: _LatentCandidates, writer: _Writer, values, valid, limit: int):
    """``effort="fast"``, ``target_rmse``: the fewest bits whose RMSE meets the target among the
    widths whose chunk is smaller than ``limit`` bytes (the smallest chunk that meets it already),
    or None: a larger chunk cannot be picked over that one, so it is never reconstructed, and
    neither is a width whose RMSE estimated on a few items is ``OUTCLASSED`` times the target (the
    first width that is not is found by bisection)."""
    target = settings.target_rmse
    widths = [b for b in ratecontrol.candidate_bits(model) if len(writer.latents(cands, b)) < limit]
    lo, hi = 0, len(widths)  # the first width whose estimate is not outclassed (the error falls with bits)
    while lo < hi:
        mid = (lo + hi) // 2
        if cands.estimated_rmse(widths[mid], values, valid) > OUTCLASSED * target:
            lo = mid + 1
        else:
            hi = mid
    for bits in widths[lo:]:
        if (r := cands.rmse(bits, values, valid)) <= target:
            return ratecontrol.TargetChoice(bits, True, r)
    return None


def _warn_if_missed(settings, model, choice) -> None:
    """The chosen candidate's target was not met: the closest is coded, but never silently."""
    if not choice.met:
        if settings.target_rmse is not None:
            units = (model.description or {}).get("units")
            want = f"target_rmse {settings.target_rmse:g}"
            best = f"{choice.reached:.3g}" + (f" {units}" if units else "")
        else:
            want, best = f"target_ratio {settings.target_ratio:g}", f"{choice.reached:.3g}x"
        warnings.warn(f"{want} not reached: best {best} at {choice.bits} bits", TargetNotMetWarning, stacklevel=4)


def _bounded_widths(settings, model) -> list[int]:
    """Bounded mode tries ``bits`` and up to ``BOUNDED_TRIES - 1`` smaller widths with tables."""
    below = [b for b in ratecontrol.candidate_bits(model) if b < settings.bits]
    return below[-(BOUNDED_TRIES - 1):] + [settings.bits] if BOUNDED_TRIES > 1 else [settings.bits]


def _bounded(settings, model, fitted, aim: int, writer: _Writer, values, valid, bound: float, waves=None) -> bytes:
    """Error-bounded: every candidate width meets the bound; keep the smallest chunk, falling
    back to the residual of a constant prediction (no network), to the wavelet candidates (SPERR's
    point-wise error mode, with ``waves``) or to the raw values. The chunk's latents are
    ``fitted(aim)``; with ``effort="fast"``, fitted only where a probe pair says the network can
    win (:func:`_network_outclassed_within`)."""
    def with_residual(bits: int) -> bytes:
        cands = fitted(aim)
        res = writer.residual(values, cands.recon(bits), valid, bound)
        return writer.latents(cands, bits, MODE_BOUNDED, {"residual": res.payload})

    if settings.effort == "fast":
        chunk = _fast_bounded(settings, model, fitted, aim, writer, values, valid, bound, waves, with_residual)
    else:
        cands = fitted(aim)
        chunks = {b: with_residual(b) for b in _bounded_widths(settings, model)}
        best = _fewest(list(chunks.values()))  # ascending widths: the narrower of equals
        chunk = _fewest([writer.plain_residual(values, valid, bound), best])
        if waves is not None:
            found = [d for d in (waves.at_bound(c, b, bound, k) for c, b, k in waves.tries(model, [cands]))
                     if d is not None]
            chunk = _fewest([chunk] + found)
    raw = writer.raw()
    if _fewest([raw, chunk]) is raw:
        return raw
    return chunk if _decodes_within(chunk, model, settings, writer.chunk, bound) else raw


def _fast_bounded(settings, model, fitted, aim: int, writer: _Writer, values, valid, bound: float, waves,
                  with_residual) -> bytes:
    """``effort="fast"``: the smallest of the no-network residual, SPERR alone (each layout), and,
    each from the narrowest width up, the network's residual and the hybrids in SPERR's better
    layout; each until one is ``OUTCLASSED`` by the best chunk so far or larger than the width
    before it (past the valley); a width whose latents alone are no smaller than the best chunk
    is not reconstructed. On the validation split (1- and 3-degree temperature, mpi_esm, glosea4,
    real msl, u10, v10 at bounds of 0.1, 0.5 and 1; 25 chunks and bounds for the residual, 26 for
    the hybrids) the valley's stop kept each one's smallest residual chunk but for one, whose last
    width was 0.1 % under its first, and every smallest hybrid (the narrowest, or the widest where
    they fell with the width; no hybrid beat SPERR alone there); the residual widths took up to 5
    fewer reconstructions, the hybrids 2 of 4 on the winds and msl (tried from the widest down
    until then). A large chunk whose mean plus residual beats SPERR alone is fitted whole only where
    its probe pair says a network chunk can come near it (:func:`_network_outclassed_within`)."""
    best = plain = writer.plain_residual(values, valid, bound)
    coder = None
    if waves is not None and _alone_outclassed_within(waves, bound, len(plain)):
        coder = wavelet.CODER_SPERR  # the hybrids in the stacked layout, which SPERR alone codes best there
    elif waves is not None:
        alone = [(found, k) for k in wavelet.pointwise_coders(values.shape)
                 if (found := waves.at_bound(None, 0, bound, k))]
        if alone:
            smallest, coder = alone[choose([Candidate(found) for found, _ in alone])]
            best = _fewest([best, smallest])
    if best is plain and _probed(values.shape, BOUNDED_PROBE_MIN_ITEM_VALUES) and _network_outclassed_within(
            settings, model, _ProbeFit(fitted, aim, writer, len(values)), writer, values, valid, bound, len(plain)):
        return best
    cands = fitted(aim)
    for widths, code in ((_bounded_widths(settings, model), with_residual),
                         (hybrid.hybrid_widths(model) if coder is not None else (),
                          lambda b: waves.at_bound(cands, b, bound, coder))):
        before = None  # the chunk of the width before
        for bits in widths:
            if len(writer.latents(cands, bits)) >= len(best):
                continue
            found = code(bits)
            if found is None:
                continue
            if len(found) > OUTCLASSED * len(best) or (before is not None and len(found) > before):
                break
            best, before = _fewest([best, found]), len(found)
    return best


def _alone_outclassed_within(waves: _WaveletChunks, bound: float, plain: int) -> bool:
    """Whether SPERR alone within ``bound`` cannot come near ``plain`` bytes (the chunk's mean plus
    residual): a chunk of several items of ``ALONE_PROBE_MIN_ITEM_VALUES`` values or more whose first
    item's SPERR payload, times the items, is ``ALONE_OUTCLASSED`` times ``plain`` or more (one item's SPERR encode and decode, against both
    layouts of the whole chunk, each with its decode: up to a fifth of a bounded 1-degree chunk's
    encode)."""
    n = waves.shape[0]
    if n < 2 or math.prod(waves.shape[1:]) < ALONE_PROBE_MIN_ITEM_VALUES:
        return False
    first = waves.items(np.arange(1)).at_bound(bound, wavelet.CODER_SPERR, None, waves.exact_bound)
    return first is not None and len(first) * n >= ALONE_OUTCLASSED * plain


def _network_outclassed_within(settings, model, probe: _ProbeFit, writer: _Writer, values, valid, bound: float,
                               plain: int) -> bool:
    """Whether no width of the network's residual can come near ``plain`` bytes (the chunk's mean
    plus residual, smaller than SPERR alone): each width's chunk is estimated on the probe pair, its
    latents as :meth:`_ProbeFit.chunk_bytes` and its residual as ``plain`` times the pair's residual
    over the network's reconstruction against the pair's residual over their mean, from the narrowest
    width up past the valley (as :func:`_fast_bounded`); outclassed where every estimate is
    ``BOUNDED_PROBE_OUTCLASSED`` times ``plain`` or more. The hybrids are then left out too: SPERR
    alone is larger than the mean plus residual there, and on the validation split no hybrid came
    within 1.2 times it (1-degree temperature, real msl, u10, v10 at three bounds each). The
    chunk's fit, the widths' reconstructions and the hybrids' SPERR searches are most of a bounded
    chunk's time, and on 1-degree data the mean plus residual won every chunk of the validation
    split (the network's smallest chunk 1.03-2.84 times it)."""
    pick = probe.pick
    pv, pm = values[pick], valid[pick]
    mean = float(np.mean(pv[pm], dtype=np.float64)) if pm.any() else 0.0
    own = len(writer.residual(pv, np.full(pv.shape, mean), pm, bound, exact_recon=True).payload)
    before = None
    for bits in _bounded_widths(settings, model):
        latents = probe.chunk_bytes(bits)
        if latents >= BOUNDED_PROBE_OUTCLASSED * plain:
            continue
        estimate = latents + plain * len(writer.residual(pv, probe.cands.recon(bits), pm, bound).payload) / own
        if estimate < BOUNDED_PROBE_OUTCLASSED * plain:
            return False
        if before is not None and estimate > before:
            break
        before = estimate
    return True


@stage("check")
def _decodes_within(data: bytes, model, settings, chunk: _Chunk, bound: float) -> bool:
    """End-to-end check of the actual bytes through the real decoder (never expected to fail)."""
    y = decode_chunk(data, model, settings)
    y64 = np.ascontiguousarray(y).reshape(chunk.items.shape).astype(np.float64)
    x64 = chunk.items.astype(np.float64)
    with np.errstate(invalid="ignore"):
        bad = ~chunk.missing & ~(np.abs(y64 - x64) <= bound)
    if bad.any() or not np.array_equal(np.isnan(y64), chunk.nan):
        warnings.warn(
            f"error-bounded chunk failed its decode check at {int(bad.sum())} values; "
            "stored raw (lossless) instead. Please report this as a bug.",
            RuntimeWarning, stacklevel=4,
        )
        return False
    return True
