"""Error-bounded residual coding (the ``residual`` section of a mode-2 chunk).

After the latents of a chunk are fitted and quantized, the codec reconstructs the chunk from
the *dequantized* latents (the exact function and batch shapes the decoder uses), and codes
the residual ``r = x - recon`` of every valid (not NaN / not fill) value as an integer

    q = rint(r / step),   step = 2 * bound * (1 - MARGIN),   MARGIN = 2**-6.

Decoding computes ``y = dtype(recon + q * step)`` (float64 arithmetic, then one cast to the
chunk's dtype, see :func:`apply`).

Why the bound holds
-------------------
``|r - q*step| <= step/2 = bound*(1 - MARGIN)`` in exact arithmetic.  The float64 product and
sum and the final cast to float32/float64 each add a rounding error, and a decoder running on
another CPU may compute a network output that differs from the encoder's in the last bits
(up to :data:`CROSS_MACHINE_ULPS` float32 eps of the chunk's largest magnitude: the promise of
docs/reliability.md).  No proof is relied on: the encoder simulates the decoder (same
:func:`apply`, same reconstruction) and requires ``|float64(y) - float64(x)| <= bound - slack``
of every valid value, where ``slack`` (:func:`machine_slack`) covers that difference plus one
rounding of the result, so another machine's decoder stays within ``bound``.  ``MARGIN``
usually leaves that room already (``bound/64`` exceeds the slack for bounds above about
``7e-5`` times the data's magnitude: chunks stay byte-identical); below it, the values in the
last sliver of the bound become exceptions.  A constant prediction (mode 3) is computed in
float64 by numpy on every machine alike and needs no slack.  Every value that fails (and every
value whose ``|r/step|`` exceeds ``2**50``, where ``q*step`` is not exact, or whose
reconstruction is not finite) is stored as an *exception*: its flat index and its original
value, bit-exact.  So, on the machine that encoded the chunk, every decoded valid value is
within the bound, by construction and by check.  (``COINppCodec.encode`` additionally decodes
the finished chunk bytes through the real decoder and checks the bound end to end.)

Coding of the integer codes
---------------------------
The codes of all valid items form an integer array ``(n_items, *spatial)`` (0 at missing
positions).  Optional predictor ``1`` replaces it by its n-D Lorenzo difference
(``np.diff(..., prepend=0)`` along each spatial axis; inverse: ``cumsum`` along each axis),
which removes the spatial correlation of smooth residual fields.  Predictors ``2`` and ``3``
(``interpolation``) code the residual instead by multilevel linear interpolation in closed loop
(SZ3's predictor), along the spatial axes or along the items too: each value predicted from the
residuals already reconstructed, the difference quantized (:func:`interpolate_closed`); decoding
is ``y = dtype(float64(recon) + rhat)``. Predictor ``4`` codes the items in turn, each value predicted
by its item's spatial interpolation plus stored weights times the earlier items' reconstructed
detail there (:func:`interpolate_detail_closed`). Predictors ``5`` and ``6`` are ``2`` and ``3`` with
four-point (cubic) interpolation where a value has two known neighbours on each side.  The (possibly predicted)
codes ``d`` are range-coded (:mod:`inrcodec.coding.rangecoder`) with one of two
per-chunk models whose parameters are stored in the section:

* coder ``1`` *histogram*: integer counts of ``d`` over ``[lo, lo + m)`` plus one escape bin;
  probabilities ``counts / counts.sum()`` (exact integers, one division each);
* coder ``2`` *two-sided geometric* (discrete Laplace): ``p(mu + j) ~ theta**|j|`` for
  ``|j| <= K`` plus an escape bin; weights computed by repeated float64 multiplication and
  ``math.fsum`` (deterministic IEEE operations), so encoder and decoder agree bit for bit.

Values outside a model's support are coded as the escape symbol; their ``d`` values are
stored in the escape stream.  The encoder tries every (predictor, coder) pair and keeps
the smallest.  Byte layout (layout 1, or with ``compact`` layout 2's varints): ``docs/format.md``,
section *The residual section*.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from inrcodec._limits import check_inflatable, inflate
from inrcodec.chunkformat import varint
from inrcodec.coding import rangecoder
from inrcodec.chunkcodec import residualcontext
from inrcodec.chunkcodec.timing import stage

__all__ = [
    "MARGIN",
    "CROSS_MACHINE_ULPS",
    "ResidualError",
    "cross_machine_tolerance",
    "machine_slack",
    "effective_step",
    "apply",
    "encode_residual",
    "read_section",
    "decode_residual",
]

MARGIN = 2.0**-6
#: with an exact prediction (mode 3's constant, float64 alike on every machine) the bound needs room
#: only for the decoded value's one rounding to the chunk's dtype: the step's margin is ``2**-m`` for
#: the largest ``m`` up to this whose room, ``bound * 2**-m``, holds two such roundings of the largest
#: valid value (:func:`fine_margin_exponent`; at least 6, ``MARGIN``'s); written with ``fine_step``
#: (``CodecSettings.residual_fine_step``): earlier builds refuse such steps
FINE_MARGIN_MAX = 20
#: the margin exponents a section's step may have (:func:`effective_step`)
MARGIN_EXPONENTS = range(6, FINE_MARGIN_MAX + 1)
LAYOUT_VERSION = 1
#: layout 2 (``compact``, ``CodecSettings.residual_compact``): layout 1's fields with the count, the
#: number of exceptions and the blobs' lengths as varints, the step as its margin exponent (one byte)
#: and the escaped codes as zigzag varints: 48-96 bytes fewer a chunk (held-out single fields), a
#: few per cent of a small field's chunk; earlier builds refuse it
LAYOUT_COMPACT = 2
PREDICTOR_NONE = 0
PREDICTOR_LORENZO = 1
#: multilevel linear interpolation in closed loop (SZ3's predictor): each value is predicted from
#: the residuals already *reconstructed* around it, and the difference quantized (so quantization
#: noise does not enter the prediction), along the spatial axes, or along the items axis too
PREDICTOR_INTERP_SPACE = 2
PREDICTOR_INTERP_ALL = 3
LINEAR = (PREDICTOR_INTERP_SPACE, PREDICTOR_INTERP_ALL)
#: item by item: each value predicted by the spatial interpolation of its item (as predictor 2) plus
#: the reconstructed *detail* there (a residual less the same interpolation of it) of the item before
#: and of the mean of the items before that (:func:`_references`), each times a weight per item and
#: interpolation group stored in the section (int8, in units of 1/:data:`DETAIL_WEIGHT_UNIT`): the
#: small scales of hourly or daily fields (coasts, mountains) persist from one item to the next, and
#: the interpolation alone must code them again in every item
PREDICTOR_INTERP_DETAIL = 4
DETAIL_WEIGHT_UNIT = 64
#: predictor 4 is tried only where an item has this many values: it runs group by group for each item
#: in turn, so a chunk of many small items pays Python's cost per step (1000 items of 8 x 16: 0.48 s
#: to encode against 0.03 s for predictors 0-3), and small items gain little beside their weights
DETAIL_MIN_ITEM_VALUES = 1024
#: predictors 2 and 3 with four-point (cubic) interpolation, SZ3's other predictor: a value with two
#: reconstructed neighbours on each side along its line (``h`` and ``3 h`` away: ``b``, ``a`` and
#: ``b3``, ``a3``) is predicted by ``(9 (b + a) - (b3 + a3)) / 16``, computed as ``0.5 * (b + a) +
#: ((b + a) - (b3 + a3)) * 0.0625`` (float64 IEEE operations, alike on every machine), the others as
#: by predictors 2 and 3. Smooth fields at tight bounds leave smaller codes (:func:`_cubic`)
PREDICTOR_CUBIC_SPACE = 5
PREDICTOR_CUBIC_ALL = 6
#: the linear interpolation predictor each cubic one follows (its axes and groups)
CUBIC_OF = {PREDICTOR_INTERP_SPACE: PREDICTOR_CUBIC_SPACE, PREDICTOR_INTERP_ALL: PREDICTOR_CUBIC_ALL}
#: the closed-loop interpolation predictors along lines (coded and decoded by :func:`interpolate_closed`)
INTERPOLATED = LINEAR + (PREDICTOR_CUBIC_SPACE, PREDICTOR_CUBIC_ALL)
#: the predictors of the residual codes, in the order the encoder tries them (ties keep the first);
#: 2 and 3 only with ``interpolation`` (``CodecSettings.residual_interpolation``), 4 only with
#: ``item_detail`` as well (``CodecSettings.residual_item_detail``), 5 or 6 only with ``cubic``
#: (``CodecSettings.residual_cubic``), for the better of 2 and 3: earlier builds refuse them
PREDICTORS = (PREDICTOR_NONE, PREDICTOR_LORENZO, PREDICTOR_INTERP_SPACE, PREDICTOR_INTERP_ALL,
              PREDICTOR_INTERP_DETAIL, PREDICTOR_CUBIC_SPACE, PREDICTOR_CUBIC_ALL)
CODER_HISTOGRAM = 1
CODER_GEOMETRIC = 2
#: the interpolation predictors' codes with a geometric model per context (:mod:`residualcontext`); tried
#: with ``context`` (``CodecSettings.residual_context``): earlier builds refuse it
CODER_CONTEXT = 3
#: coder 3 with the interpolation's coarser levels (stride above :data:`LEVEL_STRIDE`) in the
#: contexts of its second tag, which predictors 2, 3, 5 and 6 leave unused: coarse and fine codes of the
#: same slope and code size differ, and a model each fits both better; predictors 2, 3, 5 and 6 only, tried
#: with ``levels`` (``CodecSettings.residual_levels``): earlier builds refuse it
CODER_CONTEXT_LEVELS = 4
#: coder 4: the groups of stride above this take the second tag's contexts (chosen on the validation
#: split: 2 and 8 gained less, docs/benchmarks.md)
LEVEL_STRIDE = 4
#: most histogram bins (excluding the escape bin)
MAX_BINS = 4096
#: largest support half-width of the geometric model
MAX_GEOMETRIC_K = 4096
#: |r / step| above this is not coded (q*step would not be exact): stored as an exception
MAX_CODE = 2.0**50
#: what is promised across machines (docs/reliability.md): decoding the same chunk bytes on
#: another CPU (other torch/MKL kernels or thread counts) gives network values within this many
#: float32 eps of the chunk's largest magnitude. Measured: at most 1.7 (MKL_CBWR code paths and
#: 1 vs 2 threads, t2m-global and the test model); 8 leaves room for CPUs not measured.
CROSS_MACHINE_ULPS = 8
_EPS32 = float(np.finfo(np.float32).eps)

_FIXED = struct.Struct("<BBBBddQ")  # version, predictor, coder, reserved, bound, step, count
_BLOB = struct.Struct("<Q")


class ResidualError(ValueError):
    """A residual section that cannot be decoded (wrapped into CorruptChunkError by the codec)."""


def cross_machine_tolerance(values: np.ndarray) -> float:
    """How far decoded network values of a chunk whose values are ``values`` may differ from one
    machine to another: ``CROSS_MACHINE_ULPS`` float32 eps of the largest finite magnitude."""
    v = np.abs(np.asarray(values, dtype=np.float64))
    v = v[np.isfinite(v)]
    return CROSS_MACHINE_ULPS * _EPS32 * float(v.max()) if v.size else 0.0


def machine_slack(recon: np.ndarray, decoded: np.ndarray) -> float:
    """What the encoder keeps free of the bound for a network ``recon``: another machine's
    reconstruction (:func:`cross_machine_tolerance`) plus one rounding of its result."""
    both = np.concatenate([np.ravel(recon), np.ravel(decoded)])
    return cross_machine_tolerance(both) * (CROSS_MACHINE_ULPS + 1) / CROSS_MACHINE_ULPS


def effective_step(bound: float, exponent: int = 6) -> float:
    """The quantization step for an absolute ``bound`` and a margin of ``2**-exponent`` of it
    (``MARGIN``'s by default; :data:`MARGIN_EXPONENTS`)."""
    return 2.0 * float(bound) * (1.0 - 2.0 ** -int(exponent))


def fine_margin_exponent(x: np.ndarray, valid: np.ndarray, bound: float, dtype) -> int:
    """The margin exponent of an exact prediction's step (:data:`FINE_MARGIN_MAX`): the largest ``m``
    (6 to ``FINE_MARGIN_MAX``) with ``bound * 2**-m`` at least two half ulps, in ``dtype``, of the
    largest valid finite magnitude of ``x``."""
    v = np.abs(np.asarray(x)[np.asarray(valid, dtype=bool)].astype(np.dtype(dtype).newbyteorder("=")))
    v = v[np.isfinite(v)]
    if not v.size:
        return 6
    room = float(np.spacing(v.max()))  # two half ulps
    return min(max(math.floor(math.log2(float(bound) / room)), 6), FINE_MARGIN_MAX)


def apply(recon: np.ndarray, q: np.ndarray, step: float, dtype) -> np.ndarray:
    """The decoded values: ``dtype(float64(recon) + float64(q) * step)``. Used by encoder and decoder."""
    out = np.asarray(recon, dtype=np.float64) + np.asarray(q, dtype=np.float64) * float(step)
    return out.astype(np.dtype(dtype).newbyteorder("="))


def apply_reconstructed(recon: np.ndarray, rhat: np.ndarray, dtype) -> np.ndarray:
    """The decoded values of predictors 2, 3, 4, 5 and 6: ``dtype(float64(recon) + rhat)``, ``rhat`` the
    reconstructed residual (:func:`uninterpolate_closed`). Used by encoder and decoder."""
    with np.errstate(invalid="ignore", over="ignore"):
        return (np.asarray(recon, dtype=np.float64) + rhat).astype(np.dtype(dtype).newbyteorder("="))


# ---------------------------------------------------------------------- predictor
def lorenzo(q: np.ndarray) -> np.ndarray:
    d = q
    for ax in range(1, q.ndim):
        d = np.diff(d, axis=ax, prepend=0)
    return d


def unlorenzo(d: np.ndarray) -> np.ndarray:
    q = d
    for ax in range(1, d.ndim):
        q = np.cumsum(q, axis=ax)
    return q


def _interpolation_axes(ndim: int, predictor: int) -> tuple[int, ...]:
    return tuple(range(1 if predictor in (PREDICTOR_INTERP_SPACE, PREDICTOR_CUBIC_SPACE) else 0, ndim))


def _interpolation_steps(shape: tuple[int, ...], axes: tuple[int, ...]):
    """(index, axis, half stride, stride) of every step of the multilevel interpolation, coarsest
    first: at stride ``s``, axis by axis, the points at odd multiples of ``s / 2`` along the axis
    (multiples of ``s / 2`` along the axes done before at this level, of ``s`` along those after)
    are predicted from their neighbours ``s / 2`` away along it, which are known by then. The points
    at multiples of the first stride along every axis (the anchors) are coded as they are."""
    s = 1
    while s < max((shape[a] for a in axes), default=1):
        s *= 2
    while s > 1:
        h = s // 2
        for i, a in enumerate(axes):
            idx = [slice(None)] * len(shape)
            for j, b in enumerate(axes):
                idx[b] = slice(h, None, s) if b == a else slice(0, None, h if j < i else s)
            yield tuple(idx), a, h, s
        s = h


def _line_neighbours(r: np.ndarray, idx: tuple, axis: int, h: int, s: int):
    """(before, after, inside) of the values ``r[idx]``: their neighbours ``h`` before and after along
    ``axis`` (after: the last point where the line ends before it), and where the one after exists."""
    n = r.shape[axis]
    pos = np.arange(h, n, s)
    line = r[tuple(slice(None) if k == axis else sl for k, sl in enumerate(idx))]
    before = np.take(line, pos - h, axis=axis)
    after = np.take(line, np.minimum(pos + h, n - 1), axis=axis)
    inside = (pos + h < n).reshape([-1 if k == axis else 1 for k in range(r.ndim)])
    return before, after, inside


def _interpolated(r: np.ndarray, idx: tuple, axis: int, h: int, s: int) -> np.ndarray:
    """The prediction of ``r[idx]``: the mean of its two neighbours along ``axis`` (the one before
    alone at the end), float64 ``0.5 * (a + b)``, the same on every IEEE machine."""
    before, after, inside = _line_neighbours(r, idx, axis, h, s)
    return np.where(inside, 0.5 * (before + after), before)


def _cubic(r: np.ndarray, idx: tuple, axis: int, h: int, s: int) -> np.ndarray:
    """The prediction of ``r[idx]`` by predictors 5 and 6: where its neighbours ``3 h`` away on both
    sides lie on the line, ``0.5 * (b + a) + ((b + a) - (b3 + a3)) * 0.0625`` (float64, the same on
    every IEEE machine); elsewhere :func:`_interpolated`'s."""
    before, after, inside = _line_neighbours(r, idx, axis, h, s)
    n = r.shape[axis]
    pos = np.arange(h, n, s)
    line = r[tuple(slice(None) if k == axis else sl for k, sl in enumerate(idx))]
    far_before = np.take(line, np.maximum(pos - 3 * h, 0), axis=axis)
    far_after = np.take(line, np.minimum(pos + 3 * h, n - 1), axis=axis)
    four = ((pos >= 3 * h) & (pos + 3 * h < n)).reshape([-1 if k == axis else 1 for k in range(r.ndim)])
    near = before + after
    return np.where(four, 0.5 * near + (near - (far_before + far_after)) * 0.0625,
                    np.where(inside, 0.5 * near, before))


def _neighbours(r: np.ndarray, idx: tuple, axis: int, h: int, s: int) -> tuple[np.ndarray, np.ndarray]:
    """The two values ``r[idx]`` is interpolated from (the one before twice at the end)."""
    before, after, inside = _line_neighbours(r, idx, axis, h, s)
    return before, np.where(inside, after, before)


def _interpolation_groups(shape: tuple[int, ...], predictor: int):
    """(index, prediction or None, neighbours or None) of each step of the closed loop: the anchors
    (predicted 0) first, then :func:`_interpolation_steps`; ``prediction(rhat)`` predicts from what is
    reconstructed, ``neighbours(a)`` gives the two values of ``a`` it interpolates (coder 3's contexts)."""
    steps = list(_interpolation_steps(shape, _interpolation_axes(len(shape), predictor)))
    anchors = np.ones(shape, dtype=bool)
    for idx, *_ in steps:
        anchors[idx] = False
    yield anchors, None, None
    interpolate = _cubic if predictor in CUBIC_OF.values() else _interpolated
    for idx, axis, h, s in steps:
        yield (idx, (lambda rhat, idx=idx, axis=axis, h=h, s=s: interpolate(rhat, idx, axis, h, s)),
               (lambda a, idx=idx, axis=axis, h=h, s=s: _neighbours(a, idx, axis, h, s)))


def _group_strides(shape: tuple[int, ...], predictor: int) -> list[int]:
    """The stride of each group of :func:`_interpolation_groups`, in its order (0: the anchors)."""
    return [0] + [s for *_, s in _interpolation_steps(shape, _interpolation_axes(len(shape), predictor))]


def _code_group(r: np.ndarray, idx, pred, step: float, accept) -> np.ndarray:
    """The codes of ``r[idx]`` predicted by ``pred``: ``rint((r - pred) / step)`` where ``accept(idx,
    rhat_values)`` keeps the coded value, else 0 (the decoder then reconstructs ``pred``)."""
    with np.errstate(invalid="ignore", over="ignore"):
        t = (r[idx] - pred) / step
        codable = np.isfinite(t) & (np.abs(t) <= MAX_CODE)
        dd = np.where(codable, np.rint(np.where(codable, t, 0.0)), 0.0).astype(np.int64)
    keep = codable & accept(idx, pred + dd * step)
    return np.where(keep, dd, 0)


def interpolate_closed(r: np.ndarray, step: float, predictor: int, accept) -> tuple[np.ndarray, np.ndarray]:
    """Codes ``d`` (int64) and reconstruction ``rhat`` (float64) of residuals ``r`` (n_items, *spatial)
    by closed-loop interpolation (``predictor`` 2 or 3): group by group, ``pred``
    from ``rhat`` so far, ``d = rint((r - pred) / step)``, ``rhat = pred + d * step``. ``accept(index,
    rhat_values)`` says which coded values keep their code; the others (and positions it refuses) get
    ``d = 0`` (``rhat = pred``), as the decoder (:func:`uninterpolate_closed`) reconstructs them."""
    d = np.zeros(r.shape, dtype=np.int64)
    rhat = np.zeros(r.shape, dtype=np.float64)
    for idx, predict, _ in _interpolation_groups(r.shape, predictor):
        pred = 0.0 if predict is None else predict(rhat)
        d[idx] = _code_group(r, idx, pred, step, accept)
        rhat[idx] = pred + d[idx] * step
    return d, rhat


def uninterpolate_closed(d: np.ndarray, step: float, predictor: int, codes=None) -> np.ndarray:
    """The reconstruction ``rhat`` of :func:`interpolate_closed`'s codes ``d``; with ``codes`` (a
    :class:`_CodeWalk` that reads coder 3's stream), ``d`` (zeros) is filled group by group as read."""
    rhat = np.zeros(d.shape, dtype=np.float64)
    for idx, predict, near in _interpolation_groups(d.shape, predictor):
        if codes is not None:
            codes.read(d, rhat, idx, near, step)
        pred = 0.0 if predict is None else predict(rhat)
        rhat[idx] = pred + d[idx] * step
    return rhat


def detail_groups(shape: tuple[int, ...]) -> list:
    """The interpolation groups of one item of a chunk ``shape`` (n_items, *spatial): predictor 2's on
    the view ``[t:t + 1]``."""
    return list(_interpolation_groups((1, *shape[1:]), PREDICTOR_INTERP_SPACE))


def detail_weight_count(shape: tuple[int, ...]) -> int:
    """How many weights a predictor-4 section of a chunk ``shape`` stores: one a group for item 1
    (one reference), two for each later item (:func:`_references`)."""
    n = shape[0]
    return len(detail_groups(shape)) * (2 * n - 3) if n >= 2 else 0


def _references(rhat: np.ndarray, t: int, earlier: np.ndarray | None) -> tuple[list, np.ndarray | None]:
    """Item t's references, ``(1, *spatial)``: item t - 1, and from t = 2 the mean of items 0 .. t - 2
    (their sum, added in item order, divided by t - 1): the item before carries what changes slowly,
    the mean of those before it what stays and less of their quantization noise. ``earlier``: that
    sum for item t - 1 (None before t = 3); returns the references and the sum for item t."""
    if t >= 2:
        earlier = rhat[0:1].copy() if t == 2 else earlier + rhat[t - 2:t - 1]
    refs = ([rhat[t - 1:t]] if t else []) + ([earlier / (t - 1)] if t >= 2 else [])
    return refs, earlier


def _detail_parts(cur: np.ndarray, refs: list, idx, predict):
    """(the item's own interpolation, each reference's detail) at ``idx`` (anchors: 0 and its values)."""
    if predict is None:
        return 0.0, [ref[idx] for ref in refs]
    return predict(cur), [ref[idx] - predict(ref) for ref in refs]


def _detail_prediction(own, details: list, weights) -> np.ndarray:
    """``own + w_1 / DETAIL_WEIGHT_UNIT * detail_1 + ...`` left to right (float64 IEEE operations,
    alike on every machine)."""
    pred = own
    for w, detail in zip(weights, details):
        pred = pred + (int(w) / DETAIL_WEIGHT_UNIT) * detail
    return pred


def _detail_weights(details: list, target: np.ndarray) -> list[int]:
    """The least-squares weights (one or two) of ``details`` for ``target``, each in units of
    1/DETAIL_WEIGHT_UNIT as int8; two that are nearly collinear fall back to the first alone."""
    def weight(w: float) -> int:
        return int(min(max(round(w * DETAIL_WEIGHT_UNIT), -128), 127)) if math.isfinite(w) else 0

    a = float(np.sum(details[0] * details[0]))
    p = float(np.sum(details[0] * target))
    alone = weight(p / a) if a > 0 and math.isfinite(a) else 0
    if len(details) == 1:
        return [alone]
    b = float(np.sum(details[0] * details[1]))
    c = float(np.sum(details[1] * details[1]))
    q = float(np.sum(details[1] * target))
    det = a * c - b * b
    if not (det > 1e-9 * a * c and math.isfinite(det)):
        return [alone, 0]
    return [weight((c * p - b * q) / det), weight((a * q - b * p) / det)]


def interpolate_detail_closed(r: np.ndarray, step: float, accept, known: np.ndarray):
    """Codes ``d``, reconstruction ``rhat`` and weights (int8, :func:`detail_weight_count`) of residuals
    ``r`` (n_items, *spatial) by predictor 4, item by item in closed loop. ``accept(t)`` is item t's
    ``accept(index, rhat_values)`` on the views ``[t:t + 1]`` (see :func:`interpolate_closed`); ``known``
    marks the values whose residual is known (valid): the weights are fitted on them."""
    groups = detail_groups(r.shape)
    d = np.zeros(r.shape, dtype=np.int64)
    rhat = np.zeros(r.shape, dtype=np.float64)
    weights, earlier = [], None
    for t in range(r.shape[0]):
        cur, rt, dt, kt = rhat[t:t + 1], r[t:t + 1], d[t:t + 1], known[t:t + 1]
        (refs, earlier), ok = _references(rhat, t, earlier), accept(t)
        for idx, predict, _ in groups:
            if refs:
                own, details = _detail_parts(cur, refs, idx, predict)
                k = kt[idx]
                w = _detail_weights([det[k] for det in details], (rt[idx] - own)[k])
                weights += w
                pred = _detail_prediction(own, details, w)
            else:
                pred = 0.0 if predict is None else predict(cur)
            dt[idx] = _code_group(rt, idx, pred, step, ok)
            cur[idx] = pred + dt[idx] * step
    return d, rhat, np.array(weights, dtype=np.int8)


def uninterpolate_detail_closed(d: np.ndarray, step: float, weights: np.ndarray, codes=None) -> np.ndarray:
    """The reconstruction ``rhat`` of :func:`interpolate_detail_closed`'s codes ``d`` and ``weights``
    (:func:`detail_weight_count` of them, checked by the caller); ``codes``: as in
    :func:`uninterpolate_closed`."""
    groups = detail_groups(d.shape)
    rhat = np.zeros(d.shape, dtype=np.float64)
    at, earlier = 0, None
    for t in range(d.shape[0]):
        cur, dt = rhat[t:t + 1], d[t:t + 1]
        refs, earlier = _references(rhat, t, earlier)
        if codes is not None:
            codes.item(d, t)
        for idx, predict, near in groups:
            if codes is not None:
                codes.read(dt, cur, idx, near, step)
            if refs:
                own, details = _detail_parts(cur, refs, idx, predict)
                pred = _detail_prediction(own, details, weights[at:at + len(refs)])
                at += len(refs)
            else:
                pred = 0.0 if predict is None else predict(cur)
            cur[idx] = pred + dt[idx] * step
    return rhat


class _CodeWalk:
    """Coder 3's walk through the closed loop's groups (:mod:`~inrcodec.chunkcodec.residualcontext`):
    each group's contexts from what precedes it; the decoder :meth:`read` s the group's codes into
    ``d`` from ``reader``, the encoder (no reader) records them with their contexts in ``groups``."""

    def __init__(self, reader=None, strides: list[int] | None = None):
        """``strides``: coder 4's, each group's stride in walking order (:func:`_group_strides`): the
        groups of stride above ``LEVEL_STRIDE`` take the second tag's contexts."""
        self.reader, self.groups = reader, []
        self._tag, self._previous = 0, None
        self._strides, self._at = strides, 0

    def item(self, d: np.ndarray, t: int) -> None:
        """Predictor 4 is at item ``t`` of ``d``: later items also see the codes of the item before."""
        self._tag, self._previous = (1, d[t - 1:t]) if t else (0, None)

    def read(self, d: np.ndarray, rhat: np.ndarray, idx, near, step: float) -> None:
        tag = self._tag
        if self._strides is not None:
            tag, self._at = int(self._strides[self._at] > LEVEL_STRIDE), self._at + 1
        ctx = residualcontext.contexts(near, rhat, d, idx, step, tag, self._previous)
        if self.reader is None:
            self.groups.append((d[idx].ravel(), ctx))
        else:
            d[idx] = self.reader.take(ctx).reshape(np.shape(d[idx]))


def _context_groups(d: np.ndarray, rhat: np.ndarray, step: float, predictor: int, levels: bool = False) -> list:
    """The encoder's ``[(codes, contexts), ...]`` of each group of an interpolation predictor's final
    codes ``d`` and reconstruction ``rhat``, in coding order (the decoder's walk, read from the end);
    ``levels``: coder 4's contexts (predictors 2, 3, 5 and 6)."""
    walk = _CodeWalk(strides=_group_strides(d.shape, predictor) if levels else None)
    if predictor == PREDICTOR_INTERP_DETAIL:
        groups = detail_groups(d.shape)
        for t in range(d.shape[0]):
            walk.item(d, t)
            for idx, _, near in groups:
                walk.read(d[t:t + 1], rhat[t:t + 1], idx, near, step)
    else:
        for idx, _, near in _interpolation_groups(d.shape, predictor):
            walk.read(d, rhat, idx, near, step)
    return walk.groups


def _predict(q: np.ndarray, predictor: int) -> np.ndarray:
    return q if predictor == PREDICTOR_NONE else lorenzo(q)


def _unpredict(d: np.ndarray, predictor: int) -> np.ndarray:
    return d if predictor == PREDICTOR_NONE else unlorenzo(d)


# ---------------------------------------------------------------------- models
def _hist_params(d: np.ndarray) -> tuple[int, np.ndarray]:
    """lo and counts (m + 1 entries, last = escapes) for the flat codes ``d``."""
    if d.size == 0:
        return 0, np.ones(2, dtype=np.int64)
    lo, hi = int(d.min()), int(d.max())
    if hi - lo + 1 > MAX_BINS:
        med = int(np.median(d))
        lo = max(lo, med - MAX_BINS // 2)
        hi = min(hi, lo + MAX_BINS - 1)
    m = hi - lo + 1
    inside = (d >= lo) & (d <= hi)
    counts = np.bincount((d[inside] - lo).astype(np.int64), minlength=m).astype(np.int64)
    counts = np.append(counts, int((~inside).sum()))
    return lo, counts


def _hist_probs(counts: np.ndarray) -> np.ndarray:
    total = int(counts.sum())
    if total <= 0 or total >= 2**53:
        raise ResidualError(f"histogram counts sum to {total}")
    return counts.astype(np.float64) / float(total)


def _geom_params(d: np.ndarray) -> tuple[int, int, float]:
    if d.size == 0:
        return 0, 0, 0.5
    mu = int(np.median(d))
    dev = np.abs(d - mu)
    a = float(dev.mean())
    theta = (math.sqrt(1.0 + a * a) - 1.0) / a if a > 0 else 1e-6
    theta = min(max(theta, 1e-6), 1.0 - 1e-9)
    k = int(min(int(dev.max()), MAX_GEOMETRIC_K))
    return mu, k, float(theta)


def _geom_probs(k: int, theta: float) -> np.ndarray:
    if not (0.0 < theta < 1.0) or not 0 <= k <= MAX_GEOMETRIC_K:
        raise ResidualError(f"bad geometric parameters K={k} theta={theta!r}")
    half = [1.0]
    w = 1.0
    for _ in range(k):
        w = w * theta
        half.append(w)
    weights = half[:0:-1] + half  # theta**k .. theta, 1, theta .. theta**k
    weights.append(max(w * theta, 2.0**-30))  # escape bin
    total = math.fsum(weights)
    return np.array([x / total for x in weights], dtype=np.float64)


def _range_encode(indices: np.ndarray, probs: np.ndarray) -> bytes:
    return rangecoder.encode([(indices, probs)])


def _range_decode(data: bytes, probs: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` code indices of a stream; the range coder's rules (words left after the last value
    are corruption, as in the latent decoders) as a ResidualError."""
    try:
        return rangecoder.decode(data, [(n, probs)])[0]
    except rangecoder.RangeCodeError as exc:
        raise ResidualError(f"residual code stream: {exc}") from None


def _pack_i64(values: np.ndarray) -> bytes:
    return zlib.compress(np.ascontiguousarray(values, dtype="<i8").tobytes(), 6) if values.size else b""


def _unpack_i64(data: bytes, n: int, what: str) -> np.ndarray:
    if n == 0:
        if data:
            raise ResidualError(f"{what}: {len(data)} bytes for 0 entries")
        return np.zeros(0, dtype=np.int64)
    raw = inflate(data, 8 * n, what, ResidualError)
    return np.frombuffer(raw, dtype="<i8").astype(np.int64)


def _read_uleb(payload: bytes, pos: int, what: str) -> tuple[int, int]:
    """(value, position after it) of the canonical LEB128 (the chunk format's :func:`varint`) at ``pos``:
    at most 10 bytes and 64 bits, no trailing zero byte."""
    value = 0
    for i in range(10):
        if pos + i >= len(payload):
            raise ResidualError(f"residual section truncated in its {what}")
        byte = payload[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if byte == 0 and i:
                raise ResidualError(f"residual {what}: non-canonical varint")
            if value >= 2**64:
                raise ResidualError(f"residual {what}: varint beyond 64 bits")
            return value, pos + i + 1
    raise ResidualError(f"residual {what}: varint longer than 10 bytes")


#: layout 2's escaped codes: at most 2**50 in magnitude (``MAX_CODE``), so a zigzag varint of 8 bytes
_ZIGZAG_BYTES = 8


def _pack_zigzag(values: np.ndarray) -> bytes:
    """The int64 ``values`` (|v| <= ``MAX_CODE``) as zigzag LEB128 varints, in order."""
    v = np.asarray(values, dtype=np.int64).ravel()
    if not v.size:
        return b""
    u = ((v << 1) ^ (v >> 63)).astype(np.uint64)
    nbytes = 1 + sum(((u >> np.uint64(7 * k)) != 0).astype(np.int64) for k in range(1, _ZIGZAG_BYTES))
    ends = np.cumsum(nbytes)
    out = np.zeros(int(ends[-1]), dtype=np.uint8)
    for k in range(int(nbytes.max())):
        has = nbytes > k
        more = np.where(nbytes[has] > k + 1, 0x80, 0).astype(np.uint8)
        out[(ends - nbytes)[has] + k] = ((u[has] >> np.uint64(7 * k)) & np.uint64(0x7F)).astype(np.uint8) | more
    return out.tobytes()


def _unpack_zigzag(data: bytes, n: int, what: str) -> np.ndarray:
    """Exactly ``n`` values of :func:`_pack_zigzag`'s ``data`` (canonical, each at most 8 bytes, every
    byte used)."""
    b = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(b < 0x80)
    if ends.size != n or (b.size and (not ends.size or ends[-1] != b.size - 1)):
        raise ResidualError(f"{what}: {len(data)} bytes do not hold {n} varints")
    if not n:
        return np.zeros(0, dtype=np.int64)
    starts = np.concatenate(([0], ends[:-1] + 1))
    nbytes = ends - starts + 1
    if nbytes.max() > _ZIGZAG_BYTES or ((b[ends] == 0) & (nbytes > 1)).any():
        raise ResidualError(f"{what}: a varint longer than {_ZIGZAG_BYTES} bytes or not canonical")
    u = np.zeros(n, dtype=np.uint64)
    for k in range(int(nbytes.max())):
        has = nbytes > k
        u[has] |= (b[starts[has] + k] & np.uint8(0x7F)).astype(np.uint64) << np.uint64(7 * k)
    return ((u >> np.uint64(1)).astype(np.int64)) ^ -((u & np.uint64(1)).astype(np.int64))


def encode_codes(d: np.ndarray, coder: int, pack=_pack_i64) -> tuple[bytes, bytes, bytes]:
    """(params, stream, escapes) for flat codes ``d`` with ``coder``; ``pack``: the escapes' packer
    (layout 1's :func:`_pack_i64`, layout 2's :func:`_pack_zigzag`)."""
    if coder == CODER_HISTOGRAM:
        lo, counts = _hist_params(d)
        m = counts.size - 1
        idx = d - lo
        esc = (idx < 0) | (idx >= m)
        idx = np.where(esc, m, idx)
        params = struct.pack("<qI", lo, m) + zlib.compress(counts.astype("<u4").tobytes(), 9)
        probs = _hist_probs(counts)
    else:
        mu, k, theta = _geom_params(d)
        idx = d - mu + k
        esc = (idx < 0) | (idx > 2 * k)
        idx = np.where(esc, 2 * k + 1, idx)
        params = struct.pack("<qId", mu, k, theta)
        probs = _geom_probs(k, theta)
    return params, _range_encode(idx, probs), pack(d[esc])


class _CodeModel(NamedTuple):
    probs: np.ndarray
    escape: int  # the escape symbol
    base: int  # the code of symbol 0
    total: int | None  # histogram: the number of codes it counted (None: geometric)


def _code_model(coder: int, params: bytes) -> _CodeModel:
    """The symbol model a section's ``params`` describe (small: at most MAX_BINS + 1 entries)."""
    if coder == CODER_HISTOGRAM:
        if len(params) < 12:
            raise ResidualError("histogram parameters truncated")
        lo, m = struct.unpack("<qI", params[:12])
        if not 1 <= m <= MAX_BINS:
            raise ResidualError(f"histogram with {m} bins (1..{MAX_BINS} allowed)")
        raw = inflate(params[12:], 4 * (m + 1), "histogram counts", ResidualError)
        counts = np.frombuffer(raw, dtype="<u4").astype(np.int64)
        return _CodeModel(_hist_probs(counts), m, lo, int(counts.sum()))
    if coder == CODER_GEOMETRIC:
        if len(params) != 20:
            raise ResidualError("geometric parameters must be 20 bytes")
        mu, k, theta = struct.unpack("<qId", params)
        return _CodeModel(_geom_probs(k, theta), 2 * k + 1, mu - k, None)
    raise ResidualError(f"unknown residual coder {coder}")


def _decode_with(model: _CodeModel, stream: bytes, escapes: bytes, n: int, unpack=_unpack_i64) -> np.ndarray:
    idx = _range_decode(stream, model.probs, n)
    esc = idx == model.escape
    d = idx + model.base
    d[esc] = unpack(escapes, int(esc.sum()), "escape values")
    return d


def decode_codes(coder: int, params: bytes, stream: bytes, escapes: bytes, n: int) -> np.ndarray:
    return _decode_with(_code_model(coder, params), stream, escapes, n)


# ---------------------------------------------------------------------- section
@dataclass
class EncodedResidual:
    payload: bytes
    predictor: int
    coder: int
    num_exceptions: int
    #: bytes of (params + stream + escapes) for every (predictor, coder) tried
    sizes: dict


@stage("residual")
def encode_residual(
    x: np.ndarray, recon: np.ndarray, valid: np.ndarray, bound: float, dtype, *, exact_recon: bool = False,
    exact: np.ndarray | None = None, interpolation: bool = False, item_detail: bool = False, context: bool = False,
    levels: bool = False, cubic: bool = False, fine_step: bool = False, compact: bool = False,
) -> EncodedResidual:
    """Residual section for values ``x`` (n_items, *spatial) and reconstruction ``recon`` (same shape).

    ``valid`` marks the values that must meet the bound (False: NaN / fill, restored elsewhere).
    ``exact_recon``: every machine computes ``recon`` bit for bit (a float64 constant), so no
    room is kept for another machine's reconstruction (:func:`machine_slack`). ``exact``: valid
    values stored bit-exact as exceptions whatever the bound (an undeclared fill value).
    ``interpolation``: also try predictors 2 and 3, and with ``item_detail`` predictor 4 where there
    are several items of ``DETAIL_MIN_ITEM_VALUES`` values or more (:data:`PREDICTORS`); ``context``:
    also try their codes with :data:`CODER_CONTEXT`, and with ``levels`` predictor 2's and 3's with
    :data:`CODER_CONTEXT_LEVELS`; ``cubic``: also try the cubic predictor (5 or 6) of the one of 2 and 3
    the one-model coders rank first, where they rank it above predictor 4; ``fine_step``: with
    ``exact_recon``, the step's margin of :func:`fine_margin_exponent` instead of ``MARGIN``;
    ``compact``: layout 2 (:data:`LAYOUT_COMPACT`).
    """
    dtype = np.dtype(dtype)
    bound = float(bound)
    if not (bound > 0 and math.isfinite(bound)):
        raise ValueError(f"bound must be a positive finite number, got {bound!r}")
    x64 = np.asarray(x, dtype=np.float64)
    exponent = fine_margin_exponent(x64, valid, bound, dtype) if fine_step and exact_recon else 6
    step = effective_step(bound, exponent)
    pack_escapes = _pack_zigzag if compact else _pack_i64
    recon64 = np.asarray(recon, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool)
    with np.errstate(invalid="ignore", over="ignore"):
        ratio = np.where(valid, (x64 - recon64) / step, 0.0)
        codable = valid & np.isfinite(ratio) & (np.abs(ratio) <= MAX_CODE)
        q = np.where(codable, np.rint(np.where(codable, ratio, 0.0)), 0.0).astype(np.int64)
        decoded = apply(recon64, q, step, dtype).astype(np.float64)
        slack = 0.0 if exact_recon else machine_slack(recon64[valid], decoded[valid])
        ok = np.abs(decoded - x64) <= bound - slack
    forced = np.zeros(valid.shape, dtype=bool) if exact is None else valid & np.asarray(exact, dtype=bool)
    exc = valid & (~ok | forced)
    q = np.where(exc, 0, q)
    # (predictor, codes, exceptions, the predictor's own blob: predictor 4's weights, reconstruction)
    candidates = [(p, _predict(q, p), exc, None, None) for p in PREDICTORS[:2]]
    if interpolation:
        limit = bound - (0.0 if exact_recon else machine_slack(recon64[valid], np.abs(x64[valid]) + bound))
        r = np.where(valid, x64 - recon64, 0.0)

        def within(y, xs):  # decoded values (as the decoder computes them) within the bound
            with np.errstate(invalid="ignore"):
                return np.abs(y.astype(np.float64) - xs) <= limit

        def accept_in(sel):  # accept(index, rhat) on the values x[sel] (all of them, or one item's view)
            v, f, xs, rc = valid[sel], forced[sel], x64[sel], recon64[sel]
            return lambda idx, rhat: v[idx] & ~f[idx] & within(apply_reconstructed(rc[idx], rhat, dtype), xs[idx])

        def exceptions_of(rhat):
            return valid & (~within(apply_reconstructed(recon64, rhat, dtype), x64) | forced)

        for p in LINEAR:
            d, rhat = interpolate_closed(r, step, p, accept_in(slice(None)))
            candidates.append((p, d, exceptions_of(rhat), None, rhat))
        if item_detail and r.shape[0] > 1 and math.prod(r.shape[1:]) >= DETAIL_MIN_ITEM_VALUES:
            d, rhat, weights = interpolate_detail_closed(
                r, step, lambda t: accept_in(slice(t, t + 1)), valid & ~forced)
            candidates.append((PREDICTOR_INTERP_DETAIL, d, exceptions_of(rhat), weights.tobytes(), rhat))
    best, interpolated = None, None
    sizes = {}

    def offer(size, predictor, coder, blobs, exceptions, exc, own):
        nonlocal best
        sizes[(predictor, coder)] = size
        if best is None or size < best[0]:
            best = (size, predictor, coder, blobs, exceptions, int(exc.sum()), own)

    def one_model(predictor, d, exc, own, rhat):
        nonlocal interpolated
        exceptions = _exceptions(x, dtype, exc)
        for coder in (CODER_HISTOGRAM, CODER_GEOMETRIC):
            blobs = encode_codes(d.ravel(), coder, pack_escapes)
            size = sum(len(b) for b in blobs) + len(exceptions) + len(own or b"")
            offer(size, predictor, coder, blobs, exceptions, exc, own)
            if rhat is not None and (interpolated is None or size < interpolated[0]):
                interpolated = (size, predictor, d, exc, own, rhat, exceptions)

    for candidate in candidates:
        one_model(*candidate)
    linear = interpolated  # (a cubic one offered next replaces it where smaller)
    if cubic and linear is not None and linear[1] in LINEAR:
        # the cubic interpolation along the better of predictor 2's and 3's axes only (one walk more),
        # where it ranks above predictor 4 (which wins on the validation sets' chunks of several items,
        # over the cubic one as well)
        p = CUBIC_OF[linear[1]]
        d, rhat = interpolate_closed(r, step, p, accept_in(slice(None)))
        one_model(p, d, exceptions_of(rhat), None, rhat)
    if context and interpolated is not None:
        # coder 3 on the interpolation predictor the one-model coders rank first only (on the
        # validation sets no other predictor's contexts came out smaller, and each costs a walk), and
        # on the linear one where that is a cubic one (the contexts favour the linear one at looser bounds)
        ranked = [interpolated] + ([linear] if interpolated is not linear else [])
        for _, predictor, d, exc, own, rhat, exceptions in ranked:
            # then coder 4 (the coarser levels' contexts apart) on predictors 2, 3, 5 and 6
            for coder in (CODER_CONTEXT,) + ((CODER_CONTEXT_LEVELS,) if levels and predictor in INTERPOLATED else ()):
                groups = _context_groups(d, rhat, step, predictor, coder == CODER_CONTEXT_LEVELS)
                params, stream, escaped = residualcontext.encode(groups, _geom_probs)
                blobs = (params, stream, pack_escapes(escaped))
                offer(sum(len(b) for b in blobs) + len(exceptions) + len(own or b""), predictor, coder, blobs,
                      exceptions, exc, own)
    _, predictor, coder, (params, stream, escapes), exceptions, n_exc, own = best
    blobs = (params, stream, escapes, exceptions) + (() if own is None else (own,))
    if compact:
        parts = [bytes([LAYOUT_COMPACT, predictor, coder, exponent]), struct.pack("<d", bound), varint(q.size),
                 varint(n_exc)] + [varint(len(blob)) + blob for blob in blobs]
    else:
        parts = [_FIXED.pack(LAYOUT_VERSION, predictor, coder, 0, bound, step, q.size), struct.pack("<Q", n_exc)]
        parts += [_BLOB.pack(len(blob)) + blob for blob in blobs]
    return EncodedResidual(b"".join(parts), predictor, coder, n_exc, sizes)


def _exceptions(x, dtype, exc: np.ndarray) -> bytes:
    """The exceptions blob: the flat indices of ``exc`` (as deltas) and their values, bit-exact."""
    exc_idx = np.flatnonzero(exc.ravel())
    if not exc_idx.size:
        return b""
    exc_vals = np.ascontiguousarray(np.asarray(x, dtype=dtype.newbyteorder("<")).ravel()[exc_idx])
    return zlib.compress(np.diff(exc_idx, prepend=0).astype("<u8").tobytes() + exc_vals.tobytes(), 6)


@dataclass(frozen=True)
class ResidualSection:
    """A residual section whose fields, blobs and symbol model are checked against the values it
    must code (:func:`read_section`); nothing of the chunk's size is allocated yet."""

    predictor: int
    step: float
    count: int
    num_exceptions: int
    #: coders 1 and 2: the one model; coder 3: the contexts' models
    model: "_CodeModel | residualcontext.ContextModel"
    stream: bytes
    escapes: bytes
    exceptions: bytes
    #: predictor 4's weights (int8, :func:`detail_weight_count`), else empty
    weights: bytes = b""
    #: coder 4: the coarser levels' codes in contexts of their own
    levels: bool = False
    #: the section's layout (1, or :data:`LAYOUT_COMPACT`): how its escaped codes are packed
    layout: int = LAYOUT_VERSION


def read_section(payload: bytes, count: int, dtype, exact: bool = False) -> ResidualSection:
    """Check a residual section that must code ``count`` values of ``dtype``; ``ResidualError`` if
    it cannot, before anything of that size exists (a decoder calls it before allocating).
    ``exact``: the section corrects an exact prediction (mode 3), whose step may have a finer margin
    (:data:`MARGIN_EXPONENTS`)."""
    payload = bytes(payload)
    version, predictor, coder, bound, step, n, n_exc, pos = _fields(payload)
    if predictor not in PREDICTORS:
        raise ResidualError(f"unknown residual predictor {predictor}")
    exponents = MARGIN_EXPONENTS if exact else (6,)
    if not (bound > 0 and math.isfinite(bound)) or not any(step == effective_step(bound, m) for m in exponents):
        raise ResidualError(f"inconsistent residual bound {bound!r} / step {step!r}")
    if n != count:
        raise ResidualError(f"residual section codes {n} values, the chunk has {count}")
    if n_exc > count:
        raise ResidualError(f"{n_exc} exceptions for {count} values")
    names = BLOBS + (("weights",) if predictor == PREDICTOR_INTERP_DETAIL else ())
    # (predictor 4's weights: the chunk's shape says how many, checked by decode_residual)
    params, stream, escapes, exceptions, *weights = _blobs(payload, pos, names, version == LAYOUT_COMPACT)
    if coder in (CODER_CONTEXT, CODER_CONTEXT_LEVELS):
        if predictor not in INTERPOLATED + ((PREDICTOR_INTERP_DETAIL,) if coder == CODER_CONTEXT else ()):
            which = " (predictors 2, 3, 5 and 6)" if coder == CODER_CONTEXT_LEVELS else ""
            raise ResidualError(f"residual coder {coder} codes interpolated codes only{which}, "
                                f"not predictor {predictor}")
        model = _context_errors(lambda: residualcontext.ContextModel.parse(params, _geom_probs))
        if model.num_escapes > count:
            raise ResidualError(f"{model.num_escapes} escaped codes for {count} values")
    else:
        model = _code_model(coder, params)
        if model.total is not None and count and model.total != count:  # the encoder counts every code
            raise ResidualError(f"residual histogram counts {model.total} codes, the chunk has {count}")
    check_inflatable(exceptions, n_exc * (8 + np.dtype(dtype).itemsize), "exceptions", ResidualError)
    if bool(exceptions) != bool(n_exc):
        raise ResidualError(f"{len(exceptions)} exception bytes for {n_exc} exceptions")
    return ResidualSection(predictor, step, int(count), int(n_exc), model, stream, escapes, exceptions,
                           *weights, levels=coder == CODER_CONTEXT_LEVELS, layout=version)


def _fields(payload: bytes) -> tuple:
    """(layout, predictor, coder, bound, step, count, exceptions, where the blobs start) of a section
    in layout 1 or 2; a margin exponent of layout 2 beyond :data:`MARGIN_EXPONENTS` gives a step no
    reader accepts."""
    if payload[:1] == bytes([LAYOUT_COMPACT]):
        if len(payload) < 12:
            raise ResidualError(f"residual section of {len(payload)} bytes is too short")
        _, predictor, coder, exponent = payload[:4]
        (bound,) = struct.unpack_from("<d", payload, 4)
        step = effective_step(bound, exponent) if exponent in MARGIN_EXPONENTS else math.nan
        n, pos = _read_uleb(payload, 12, "count")
        n_exc, pos = _read_uleb(payload, pos, "number of exceptions")
        return LAYOUT_COMPACT, predictor, coder, bound, step, n, n_exc, pos
    if len(payload) < _FIXED.size + 8:
        raise ResidualError(f"residual section of {len(payload)} bytes is too short")
    version, predictor, coder, reserved, bound, step, n = _FIXED.unpack_from(payload, 0)
    (n_exc,) = struct.unpack_from("<Q", payload, _FIXED.size)
    if version != LAYOUT_VERSION or reserved != 0:
        raise ResidualError(f"unknown residual layout version {version} / reserved byte {reserved}")
    return version, predictor, coder, bound, step, n, n_exc, _FIXED.size + 8


def _context_errors(fn):
    """``fn()``, coder 3's errors (and its stream's) worded as a ResidualError."""
    try:
        return fn()
    except (residualcontext.ContextCodeError, rangecoder.RangeCodeError) as exc:
        raise ResidualError(f"residual context coder: {exc}") from None


#: the length-prefixed blobs of every residual section, in order (predictor 4 adds its weights)
BLOBS = ("params", "stream", "escapes", "exceptions")


def _blobs(payload: bytes, pos: int, names: tuple[str, ...], compact: bool = False) -> list[bytes]:
    """The length-prefixed blobs ``names`` from ``pos`` on, filling the section (``compact``: layout
    2's varint lengths, else u64)."""
    blobs = []
    for name in names:
        if compact:
            n, pos = _read_uleb(payload, pos, f"{name} blob's length")
        else:
            if pos + 8 > len(payload):
                raise ResidualError(f"residual section truncated before its {name} blob")
            (n,) = _BLOB.unpack_from(payload, pos)
            pos += 8
        if n > len(payload) - pos:
            raise ResidualError(f"residual {name} blob declares {n} bytes, {len(payload) - pos} remain")
        blobs.append(payload[pos : pos + n])
        pos += n
    if pos != len(payload):
        raise ResidualError(f"{len(payload) - pos} unaccounted bytes at the end of the residual section")
    return blobs


@stage("residual")
def decode_residual(payload: "bytes | ResidualSection", recon: np.ndarray, dtype, exact: bool = False) -> np.ndarray:
    """Inverse of :func:`encode_residual`: the decoded values (recon's shape, native ``dtype``).

    ``payload``: the section's bytes, or what :func:`read_section` made of them (``exact``: as there).
    Missing positions hold ``recon`` (the caller overwrites them with NaN / the fill value).
    """
    dtype = np.dtype(dtype)
    recon = np.asarray(recon)
    sec = payload if isinstance(payload, ResidualSection) else read_section(payload, recon.size, dtype, exact)
    if sec.count != recon.size:
        raise ResidualError(f"residual section codes {sec.count} values, the chunk has {recon.size}")
    if sec.predictor == PREDICTOR_INTERP_DETAIL:
        want = detail_weight_count(recon.shape)
        if len(sec.weights) != want:
            raise ResidualError(f"residual section holds {len(sec.weights)} weights, the chunk's shape needs {want}")
    if isinstance(sec.model, residualcontext.ContextModel):  # coders 3, 4: read group by group as reconstructed
        d = np.zeros(recon.shape, dtype=np.int64)
        escaped = _escapes_unpacker(sec)(sec.escapes, sec.model.num_escapes, "escape values")
        walk = _CodeWalk(_context_errors(lambda: residualcontext.Reader(sec.model, sec.stream, escaped, MAX_CODE)),
                         _group_strides(recon.shape, sec.predictor) if sec.levels else None)
        rhat = _context_errors(lambda: _uninterpolate(d, sec, walk))
        _context_errors(walk.reader.finish)
        return _with_exceptions(apply_reconstructed(recon, rhat, dtype), sec, dtype)
    d = _decode_with(sec.model, sec.stream, sec.escapes, sec.count, _escapes_unpacker(sec)).reshape(recon.shape)
    q = d if sec.predictor in INTERPOLATED + (PREDICTOR_INTERP_DETAIL,) else _unpredict(d, sec.predictor)
    if q.size and max(int(q.max()), -int(q.min())) > MAX_CODE:  # never written: larger codes are exceptions
        raise ResidualError(f"residual codes reach {max(int(q.max()), -int(q.min()))}, beyond the {int(MAX_CODE)} "
                            "a section holds")
    if sec.predictor in INTERPOLATED + (PREDICTOR_INTERP_DETAIL,):
        out = apply_reconstructed(recon, _uninterpolate(d, sec), dtype)
    else:
        out = apply(recon, q, sec.step, dtype)
    return _with_exceptions(out, sec, dtype)


def _escapes_unpacker(sec: ResidualSection):
    return _unpack_zigzag if sec.layout == LAYOUT_COMPACT else _unpack_i64


def _uninterpolate(d: np.ndarray, sec: ResidualSection, codes=None) -> np.ndarray:
    """The reconstructed residual of an interpolation predictor's codes ``d`` (or, with ``codes``,
    of the codes it reads into ``d``)."""
    if sec.predictor == PREDICTOR_INTERP_DETAIL:
        return uninterpolate_detail_closed(d, sec.step, np.frombuffer(sec.weights, dtype=np.int8), codes)
    return uninterpolate_closed(d, sec.step, sec.predictor, codes)


def _with_exceptions(out: np.ndarray, sec: ResidualSection, dtype) -> np.ndarray:
    """``out`` with the section's exceptions written in, bit-exact."""
    if sec.num_exceptions:
        n_exc = sec.num_exceptions
        raw = inflate(sec.exceptions, n_exc * (8 + dtype.itemsize), "exceptions", ResidualError)
        idx = np.cumsum(np.frombuffer(raw[: 8 * n_exc], dtype="<u8").astype(np.uint64))
        if idx.size and int(idx[-1]) >= out.size:
            raise ResidualError("exception index out of range")
        vals = np.frombuffer(raw[8 * n_exc :], dtype=dtype.newbyteorder("<"))
        out.reshape(-1)[idx.astype(np.int64)] = vals
    return out


def residual_info(payload: bytes) -> dict:
    """The fixed fields of a residual section (for tests and tools)."""
    version, predictor, coder, bound, step, count, n_exc, _ = _fields(bytes(payload))
    return {"version": version, "predictor": predictor, "coder": coder, "bound": bound,
            "step": step, "count": count, "num_exceptions": n_exc}
