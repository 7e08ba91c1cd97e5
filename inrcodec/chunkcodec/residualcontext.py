"""Residual coder 3: the interpolation predictors' codes range-coded with a model per context.

Coders 1 and 2 (:mod:`~inrcodec.chunkcodec.residual`) code every code of a chunk with one model. An
interpolated value's code is large where the field bends (mountains, coasts, fronts) and zero over
smooth ground, and the decoder already knows which is which before it reads the code: the two
neighbours the value is interpolated from are reconstructed by then, and so are their own codes.
Coder 3 (with predictors 2, 3 and 4 only) sorts each value into a context by

* the slope between those two neighbours, ``|rhat_before - rhat_after| / step`` (float64 IEEE
  operations, alike on every machine), in :data:`SLOPE_EDGES` buckets, and
* the size of their codes, ``|d_before| + |d_after|`` (plus, with predictor 4, the code of the same
  point in the item before), in :data:`CODE_EDGES` buckets,

and codes each context's values with its own two-sided geometric model (``p(j) ~ theta**|j|`` for
``|j| <= K``, plus an escape symbol: coder 2's table). A
group's values are coded context by context in increasing order, each context's in the group's
C order, so the decoder, which walks the groups as the encoder did and knows each value's
context from what it has reconstructed, reads them back group by group. Predictor 4's first item
and its later items (which also see the item before) have separate contexts; the anchors (coded
as they are) have one of their own.

Parameters (the section's ``params`` blob): the number of escapes (u32), a bitmap of the
contexts used (:data:`NUM_CONTEXTS` bits, little-endian bit order), then per context used, in
increasing order, one byte: the codes' mean magnitude as a float8 (:func:`magnitude`), from which
``theta`` and the support ``K`` follow (:func:`geometric`). Escapes: the codes beyond a
context's ``K``, in coding order (packed as coders 1 and 2 pack theirs). Byte layout:
``docs/format.md``, *The residual section*.
"""

from __future__ import annotations

import math
import struct

import numpy as np

from inrcodec.coding import rangecoder

#: code-size buckets: ``|d_before| + |d_after|`` of 0, 1-2, 3 and more; slope buckets (in quantization
#: steps): up to 0.5, 2, 8, 32, and more. Chosen on the validation split (docs/benchmarks.md): finer
#: buckets gain on large fields and lose more on small ones, whose contexts each cost a byte
CODE_EDGES = (0, 2)
SLOPE_EDGES = (0.5, 2.0, 8.0, 32.0)
_PER_TAG = 1 + (len(CODE_EDGES) + 1) * (len(SLOPE_EDGES) + 1)  # the anchors' context, then the others
#: contexts: two tags (predictor 4's later items, which also see the item before, apart from the rest)
NUM_CONTEXTS = 2 * _PER_TAG
#: largest support half-width of a context's model (beyond it: the escape symbol)
MAX_K = 4096


class ContextCodeError(ValueError):
    """Coder 3 parameters or streams that do not decode (worded by the caller)."""


def contexts(near, rhat: np.ndarray, d: np.ndarray, idx, step: float, tag: int,
             previous: np.ndarray | None = None) -> np.ndarray:
    """The context (uint8, flat in the C order of ``rhat[idx]``) of each value of one interpolation
    group. ``near(a)``: ``a``'s two interpolation neighbours of the group's values (``None``: the
    anchors); ``rhat`` / ``d``: the reconstructed residuals and the codes so far (only the neighbours
    are read, which precede the group); ``previous``: predictor 4's codes of the item before (None:
    none); ``tag``: 0 or 1 (:data:`NUM_CONTEXTS`)."""
    base = tag * _PER_TAG
    if near is None:
        return np.full(int(np.count_nonzero(idx)), base, dtype=np.uint8)  # the anchors: a mask
    before, after = near(rhat)
    slope = (np.abs(before - after) / step).ravel()
    d_before, d_after = near(d)
    size = np.abs(d_before) + np.abs(d_after)
    if previous is not None:
        size = size + np.abs(previous[idx])
    size = size.ravel()
    ctx = np.full(slope.shape, base + 1, dtype=np.uint8)  # (NUM_CONTEXTS < 256) + the edges each exceeds
    for edge in SLOPE_EDGES:
        ctx += slope > edge
    for edge in CODE_EDGES:
        ctx += (size > edge) * np.uint8(len(SLOPE_EDGES) + 1)
    return ctx


#: the smallest probability a context's table extends its support to (beyond: the escape symbol)
_TAIL = 2.0**-24


def magnitude(code: int) -> float:
    """The mean code magnitude a parameter byte stands for: 0, then ``(1 + m / 8) * 2**(e - 12)`` for
    ``code = 8 * e + m`` (a float8: steps of at most 12.5 %, from about 2**-12 to 2**20; exact in float64)."""
    if code == 0:
        return 0.0
    e, m = divmod(int(code), 8)
    return math.ldexp(8 + m, e - 15)


_MAGNITUDES = np.array([magnitude(c) for c in range(256)])


def geometric(code: int) -> tuple[int, float]:
    """(K, theta) of a parameter byte: theta the two-sided geometric's for that mean magnitude
    (``(sqrt(1 + a*a) - 1) / a``, IEEE operations alike on every machine), K the first magnitude
    whose weight ``theta**K`` (repeated products) falls below 2**-24, at most :data:`MAX_K`."""
    a = magnitude(code)
    theta = min(max((math.sqrt(1.0 + a * a) - 1.0) / a if a > 0 else 0.0, 1e-6), 1.0 - 1e-9)
    k, w = 0, 1.0
    while w >= _TAIL and k < MAX_K:
        k, w = k + 1, w * theta
    return k, theta


def _fit_mean(a: float) -> int:
    """The parameter byte of a context whose codes' mean magnitude is ``a``: the nearest in ratio."""
    if a <= 0:
        return 0
    return int(np.argmin(np.abs(np.log2(_MAGNITUDES[1:] / a)))) + 1


class ContextModel:
    """Each used context's parameter byte (:func:`geometric`), from a section's parameters."""

    def __init__(self, params: dict[int, int], num_escapes: int, probs):
        self.params, self.num_escapes = params, num_escapes
        self._probs, self._tables = probs, {}

    def table(self, ctx: int) -> tuple[int, object]:
        """(K, the range coder's model) of context ``ctx``."""
        if ctx not in self.params:
            raise ContextCodeError(f"a value falls in context {ctx}, which the section has no model for")
        if ctx not in self._tables:
            k, theta = geometric(self.params[ctx])
            self._tables[ctx] = (k, rangecoder.model(self._probs(k, theta)))
        return self._tables[ctx]

    def pack(self) -> bytes:
        bitmap = np.zeros(NUM_CONTEXTS, dtype=bool)
        bitmap[list(self.params)] = True
        return (struct.pack("<I", self.num_escapes) + np.packbits(bitmap, bitorder="little").tobytes()
                + bytes(self.params[c] for c in sorted(self.params)))

    @classmethod
    def parse(cls, params: bytes, probs) -> "ContextModel":
        nbitmap = -(-NUM_CONTEXTS // 8)
        if len(params) < 4 + nbitmap:
            raise ContextCodeError("context parameters truncated")
        (num_escapes,) = struct.unpack_from("<I", params, 0)
        bits = np.unpackbits(np.frombuffer(params[4:4 + nbitmap], np.uint8), bitorder="little")
        if bits[NUM_CONTEXTS:].any():
            raise ContextCodeError("context bitmap sets bits beyond the last context")
        used = np.flatnonzero(bits[:NUM_CONTEXTS]).tolist()
        if len(params) != 4 + nbitmap + len(used):
            raise ContextCodeError(f"context parameters of {len(params)} bytes for {len(used)} contexts")
        return cls(dict(zip(used, params[4 + nbitmap:])), int(num_escapes), probs)


def encode(groups: list[tuple[np.ndarray, np.ndarray]], probs) -> tuple[bytes, bytes, np.ndarray]:
    """(params, stream, escaped codes) of the codes of ``groups`` ``[(codes, contexts), ...]`` (flat
    int64 arrays, in coding order); ``probs(K, theta)``: the geometric table."""
    all_ctx = np.concatenate([ctx for _, ctx in groups])
    count = np.bincount(all_ctx, minlength=NUM_CONTEXTS)
    total = np.bincount(all_ctx, weights=np.abs(np.concatenate([codes for codes, _ in groups])).astype(np.float64),
                        minlength=NUM_CONTEXTS)
    used = np.flatnonzero(count).tolist()
    model = ContextModel({c: _fit_mean(total[c] / count[c]) for c in used}, 0, probs)
    tables = {c: model.table(c) for c in used}
    ks = np.zeros(NUM_CONTEXTS, dtype=np.int64)
    ks[used] = [tables[c][0] for c in used]
    segments, escapes = [], []
    for codes, ctx in groups:
        if not codes.size:
            continue
        order = np.argsort(ctx, kind="stable")  # context by context, each in the group's order
        c_sorted, v_sorted = ctx[order], codes[order]
        k = ks[c_sorted]
        sym = v_sorted + k
        esc = (sym < 0) | (sym > 2 * k)
        escapes.append(v_sorted[esc])
        sym = np.where(esc, 2 * k + 1, sym)
        bounds = np.flatnonzero(np.diff(c_sorted)) + 1
        for start, stop in zip([0, *bounds.tolist()], [*bounds.tolist(), sym.size]):
            segments.append((sym[start:stop], tables[int(c_sorted[start])][1]))
    escaped = np.concatenate(escapes) if escapes else np.zeros(0, dtype=np.int64)
    model.num_escapes = int(escaped.size)
    return model.pack(), rangecoder.encode(segments), escaped


class Reader:
    """Reads a coder-3 stream back group by group (:meth:`take`), then :meth:`finish` checks it ended."""

    def __init__(self, model: ContextModel, stream: bytes, escapes: np.ndarray, max_code: float):
        """``escapes``: the section's ``model.num_escapes`` escaped codes (int64), unpacked."""
        self._escapes = escapes
        if self._escapes.size and int(np.abs(self._escapes).max()) > max_code:
            raise ContextCodeError(f"an escaped code reaches beyond the {int(max_code)} a section holds")
        self._model, self._used = model, 0
        self._decoder = rangecoder.Decoder(stream)

    def take(self, ctx: np.ndarray) -> np.ndarray:
        """The codes (int64, flat) of one group whose values have contexts ``ctx``."""
        order = np.argsort(ctx, kind="stable")  # the encoder's order: context by context
        counts = np.bincount(ctx, minlength=NUM_CONTEXTS)
        parts = []
        for c in np.flatnonzero(counts).tolist():
            k, table = self._model.table(c)
            sym = self._decoder.decode(int(counts[c]), table)
            esc = sym == 2 * k + 1
            n = int(np.count_nonzero(esc))
            if self._used + n > self._escapes.size:
                raise ContextCodeError("the stream escapes more codes than the section holds")
            vals = sym - k
            if n:
                vals[esc] = self._escapes[self._used:self._used + n]
                self._used += n
            parts.append(vals)
        out = np.empty(ctx.size, dtype=np.int64)
        if parts:
            out[order] = np.concatenate(parts)
        return out

    def finish(self) -> None:
        self._decoder.finish()
        if self._used != self._escapes.size:
            raise ContextCodeError(f"{self._escapes.size - self._used} escape values left unread")
