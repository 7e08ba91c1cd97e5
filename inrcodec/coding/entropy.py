"""Entropy coding of quantized latent symbols.

Symbol arrays have shape ``(N, k)``: N latent vectors (items x patches) of k dims,
values in ``[0, 2**bits)``.  Three codings, identified by ``entropy_id`` in the
chunk header:

* ``0`` raw: fixed-length bit packing, ``bits`` bits per symbol (``pack_fixed``, from
  :mod:`inrcodec.coding.bitpack`).
  Always available, needs no table.
* ``1`` shared: one categorical table for every symbol (the COIN++ paper).
* ``2`` per-dimension: one categorical table per latent dimension (k tables).
* ``3`` parametric (chunk format version 4, mid-tread symbols): signed symbols in groups, each
  coded with a discrete Laplace or Gaussian whose family and scale one parameter byte gives
  (``encode_parametric`` / ``decode_parametric``; probabilities from ``parametric_probabilities``,
  deterministic: decimal arithmetic, float64 products and ``math.fsum``).

Tables are *integer counts* (np.int64, every entry >= 1), stored with the model.
Before they are handed to the range coder (:mod:`inrcodec.coding.rangecoder`, constriction's
``Categorical(..., perfect=False)``) they are turned into probabilities as
``counts / counts.sum()`` in float64.  That is one correctly rounded IEEE-754
division per entry, so encoder and decoder derive bit-identical probabilities on
every IEEE machine; constriction then quantizes them to its fixed-point
representation deterministically.  NOTE: that fixed-point quantization belongs to
constriction; a constriction release that changed it would change the bitstream,
so pin constriction (0.5.x) and treat an upgrade as a format change.

Stream layout: the range coder emits little-endian u32 words; the payload is those
words as bytes (so its length is a multiple of 4; decoders check that first).
Shared model: symbols are coded in C order (row by row).  Per-dimension model:
column by column (all N symbols of dimension 0 with table 0, then dimension 1 ...).

Decoding never trusts the payload: bytes that are not a valid stream raise ``ValueError``
(the range coder's one rule: :class:`~inrcodec.coding.rangecoder.RangeCodeError`) or decode to
*some* in-range symbols (the chunk CRC catches corruption upstream); the result always has
exactly the requested shape.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Iterable, Mapping, Sequence

import numpy as np

from inrcodec._ids import ENTROPY_PER_DIMENSION, ENTROPY_RAW, ENTROPY_SHARED
from inrcodec.coding import rangecoder
from inrcodec.coding.bitpack import check_bits, check_symbols, pack_fixed, unpack_fixed

__all__ = [
    "MAX_TABLE_BITS",
    "CategoricalEntropyModel",
    "encode_symbols",
    "decode_symbols",
    "encode_parametric",
    "decode_parametric",
]

#: largest ``bits`` for which a categorical table may exist (4096 entries per table)
MAX_TABLE_BITS = 12
# float64 represents every integer below 2**53 exactly; keep count sums below that
_MAX_COUNT_SUM = 2**53


# ---------------------------------------------------------------------- helpers
def _check_shape(shape: Sequence[int]) -> tuple[int, int]:
    try:
        shp = tuple(int(d) for d in shape)
    except TypeError:
        raise ValueError(f"shape must be a sequence of two ints, got {shape!r}") from None
    if len(shp) != 2 or any(d < 0 for d in shp):
        raise ValueError(f"shape must be (N, k) with N, k >= 0, got {shape!r}")
    return shp  # type: ignore[return-value]


# ---------------------------------------------------------------------- categorical
class CategoricalEntropyModel:
    """Integer count tables for the range coder.

    ``counts``: np.int64 array ``(1, 2**bits)`` (shared table, ``entropy_id`` 1) or
    ``(k, 2**bits)`` (one table per latent dimension, ``entropy_id`` 2); every
    entry >= 1, each row's sum < 2**53.  ``bits`` must be 1..12 (larger alphabets get
    no table: use the raw coder).  ``per_dimension`` defaults to ``counts.shape[0] > 1``;
    pass it explicitly for a per-dimension model with k == 1.
    """

    def __init__(self, counts: np.ndarray, per_dimension: bool | None = None):
        c = np.asarray(counts)
        if c.ndim != 2 or c.shape[0] < 1:
            raise ValueError(f"count table must have shape (rows, 2**bits), got {c.shape}")
        if c.dtype.kind not in "iu":
            raise ValueError(f"count table must be integer, got dtype {c.dtype}")
        n = c.shape[1]
        if n < 2 or n & (n - 1):
            raise ValueError(f"count table width must be 2**bits (bits >= 1), got {n}")
        bits = n.bit_length() - 1
        if bits > MAX_TABLE_BITS:
            raise ValueError(
                f"no entropy table for bits={bits}: tables are limited to bits <= {MAX_TABLE_BITS}"
            )
        if c.dtype == np.uint64 and c.size and int(c.max()) >= 2**63:
            raise ValueError("count table entries must fit in int64")
        c = c.astype(np.int64)
        if c.size and int(c.min()) < 1:
            raise ValueError("every count must be >= 1 (no symbol may have zero probability)")
        # exact row sums (split into 32-bit halves so nothing overflows); a sum below
        # 2**53 makes every partial float64 sum exact, whatever the summation order
        hi = (c >> 32).sum(axis=1)
        lo = (c & 0xFFFFFFFF).sum(axis=1)
        for r in range(c.shape[0]):
            total = (int(hi[r]) << 32) + int(lo[r])
            if total >= _MAX_COUNT_SUM:
                raise ValueError(f"count table row {r} sums to {total} >= 2**53")
        if per_dimension is None:
            per_dimension = c.shape[0] > 1
        per_dimension = bool(per_dimension)
        if not per_dimension and c.shape[0] != 1:
            raise ValueError(f"a shared table must have exactly one row, got {c.shape[0]}")
        c.setflags(write=False)
        self._counts = c
        self._bits = bits
        self._per_dimension = per_dimension
        self._models: list | None = None  # constriction models, built lazily

    # -------------------------------------------------------------- properties
    @property
    def counts(self) -> np.ndarray:
        """Read-only int64 table ``(rows, 2**bits)``."""
        return self._counts

    @property
    def bits(self) -> int:
        return self._bits

    @property
    def per_dimension(self) -> bool:
        return self._per_dimension

    @property
    def latent_dim(self) -> int | None:
        """k for a per-dimension model, None for a shared one (codes any k)."""
        return self._counts.shape[0] if self._per_dimension else None

    @property
    def entropy_id(self) -> int:
        return ENTROPY_PER_DIMENSION if self._per_dimension else ENTROPY_SHARED

    def probabilities(self) -> np.ndarray:
        """float64 ``counts / counts.sum()`` per row: exactly what constriction receives."""
        c = self._counts.astype(np.float64)
        return c / c.sum(axis=1, keepdims=True)

    def __repr__(self) -> str:
        kind = f"per_dimension k={self._counts.shape[0]}" if self._per_dimension else "shared"
        return f"CategoricalEntropyModel(bits={self._bits}, {kind})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CategoricalEntropyModel):
            return NotImplemented
        return (
            self._per_dimension == other._per_dimension
            and self._counts.shape == other._counts.shape
            and bool(np.array_equal(self._counts, other._counts))
        )

    __hash__ = None  # type: ignore[assignment]

    def __getstate__(self) -> dict:  # constriction models are not picklable: rebuild lazily
        state = self.__dict__.copy()
        state["_models"] = None
        return state

    # -------------------------------------------------------------- fitting
    @classmethod
    def fit(cls, symbols: np.ndarray, bits: int, per_dimension: bool) -> "CategoricalEntropyModel":
        """Count symbols ``(N, k)`` (+1 smoothing: no zero probabilities)."""
        bits = check_bits(bits, 1, MAX_TABLE_BITS, "CategoricalEntropyModel.fit")
        s = check_symbols(symbols, bits)
        n = 1 << bits
        if per_dimension:
            k = s.shape[1]
            if k < 1:
                raise ValueError("per-dimension tables need k >= 1 latent dimensions")
            idx = (np.arange(k, dtype=np.int64)[None, :] * n + s.astype(np.int64)).reshape(-1)
            counts = np.bincount(idx, minlength=k * n).reshape(k, n)
        else:
            counts = np.bincount(s.reshape(-1).astype(np.int64), minlength=n).reshape(1, n)
        return cls(counts.astype(np.int64) + 1, per_dimension=bool(per_dimension))

    # -------------------------------------------------------------- storage
    def to_arrays(self) -> dict[str, np.ndarray]:
        """``{"counts": int64 (rows, 2**bits), "entropy_id": int64 (1,)}`` (safetensors-ready)."""
        return {
            "counts": np.array(self._counts, dtype=np.int64, copy=True),
            "entropy_id": np.array([self.entropy_id], dtype=np.int64),
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> "CategoricalEntropyModel":
        if "counts" not in arrays:
            raise ValueError("entropy model arrays need a 'counts' entry")
        per_dimension = None
        if "entropy_id" in arrays:
            eid = np.asarray(arrays["entropy_id"]).reshape(-1)
            if eid.size != 1 or eid.dtype.kind not in "iu":
                raise ValueError(f"'entropy_id' must be one integer, got {arrays['entropy_id']!r}")
            eid = int(eid[0])
            if eid not in (ENTROPY_SHARED, ENTROPY_PER_DIMENSION):
                raise ValueError(f"unknown categorical entropy_id {eid} (expected 1 or 2)")
            per_dimension = eid == ENTROPY_PER_DIMENSION
        return cls(np.asarray(arrays["counts"]), per_dimension=per_dimension)

    # -------------------------------------------------------------- coding
    def _constriction_models(self) -> list:
        if self._models is None:
            probs = self.probabilities()
            self._models = [rangecoder.model(row) for row in probs]
        return self._models

    def _check_k(self, k: int) -> None:
        if self._per_dimension and k != self._counts.shape[0]:
            raise ValueError(
                f"per-dimension entropy model has {self._counts.shape[0]} tables "
                f"but the symbols have k={k} dimensions"
            )

    def encode(self, symbols: np.ndarray) -> bytes:
        """Range-code symbols ``(N, k)``; returns the payload (a multiple of 4 bytes)."""
        s = check_symbols(symbols, self._bits)
        self._check_k(s.shape[1])
        models = self._constriction_models()
        if self._per_dimension:
            return rangecoder.encode((s[:, j], model) for j, model in enumerate(models))
        return rangecoder.encode([(s, models[0])])

    def decode(self, data: bytes | bytearray | memoryview, shape: Sequence[int]) -> np.ndarray:
        """Inverse of ``encode``: uint32 array of exactly ``shape`` = (N, k).

        ``ValueError`` for a payload that is not whole u32 words, that constriction
        rejects, or that has data left over after all symbols were decoded.
        """
        n_items, k = _check_shape(shape)
        self._check_k(k)
        models = self._constriction_models()
        groups = [(n_items, m) for m in models] if self._per_dimension else [(n_items * k, models[0])]
        columns = rangecoder.decode(data, groups)
        out = np.stack(columns, axis=1) if self._per_dimension and k else columns[0].reshape(n_items, k) if columns \
            else np.zeros((n_items, k), dtype=np.int64)
        out = out.astype(np.uint32, copy=False)
        if out.shape != (n_items, k):  # defensive: constriction returned a wrong count
            raise ValueError(f"range decoder returned shape {out.shape}, expected {(n_items, k)}")
        if out.size and int(out.max()) >= (1 << self._bits):
            raise ValueError("range decoder returned an out-of-range symbol")
        return out


# ---------------------------------------------------------------------- selection
def encode_symbols(
    symbols: np.ndarray,
    bits: int,
    models: Iterable[CategoricalEntropyModel | None] = (),
) -> tuple[int, bytes]:
    """Code ``symbols (N, k)`` with the raw coder and with every given model; return
    ``(entropy_id, payload)`` of the smallest payload (ties: raw, then list order).

    ``None`` entries are skipped (e.g. ``CoinModel.entropy_model`` had no table).
    A model with different ``bits``, a per-dimension model with a different k, or
    two models with the same ``entropy_id`` raise ``ValueError``.
    """
    bits = check_bits(bits, 1, 16, "encode_symbols")
    s = check_symbols(symbols, bits)
    best_id, best = ENTROPY_RAW, pack_fixed(s, bits)
    seen: set[int] = set()
    for model in models:
        if model is None:
            continue
        if not isinstance(model, CategoricalEntropyModel):
            raise ValueError(f"expected CategoricalEntropyModel, got {type(model).__name__}")
        if model.bits != bits:
            raise ValueError(f"entropy model is for bits={model.bits}, symbols use bits={bits}")
        if model.entropy_id in seen:
            raise ValueError(f"two entropy models with entropy_id {model.entropy_id}")
        seen.add(model.entropy_id)
        payload = model.encode(s)
        if len(payload) < len(best):
            best_id, best = model.entropy_id, payload
    return best_id, best


def decode_symbols(
    entropy_id: int,
    payload: bytes | bytearray | memoryview,
    shape: Sequence[int],
    bits: int,
    models_by_id: Mapping[int, CategoricalEntropyModel | None] | None = None,
) -> np.ndarray:
    """Inverse of ``encode_symbols``: uint32 ``(N, k)``; ``ValueError`` on anything wrong."""
    bits = check_bits(bits, 1, 16, "decode_symbols")
    n_items, k = _check_shape(shape)
    if entropy_id == ENTROPY_RAW:
        return unpack_fixed(payload, bits, n_items * k).reshape(n_items, k)
    model = (models_by_id or {}).get(entropy_id)
    if model is None:
        raise ValueError(
            f"payload uses entropy_id {entropy_id} but no such entropy model is available "
            f"(have {sorted(i for i, m in (models_by_id or {}).items() if m is not None)})"
        )
    if model.entropy_id != entropy_id:
        raise ValueError(
            f"models_by_id[{entropy_id}] is an entropy model with entropy_id {model.entropy_id}"
        )
    if model.bits != bits:
        raise ValueError(f"entropy model is for bits={model.bits}, the chunk uses bits={bits}")
    return model.decode(payload, (n_items, k))


# ---------------------------------------------------------------------- parametric (entropy_id 3)
#: a parameter byte: bit 7 = family (0 discrete Laplace, 1 discrete Gaussian), bits 0-6 = scale
#: index ``j``: the scale is ``base * 2**((j - SCALE_CENTRE) / 8)`` symbols, ``base`` the latents'
#: standard deviation in symbols (``2**bits / (2 * num_std)``)
SCALE_CENTRE = 64
PARAMETRIC_FAMILIES = ("laplace", "gaussian")
#: weight floor relative to the mode: every symbol of the alphabet stays codable (an escape)
_WEIGHT_FLOOR = 2.0**-40


@lru_cache(maxsize=256)
def parametric_probabilities(param: int, limit: int, base: float) -> np.ndarray:
    """float64 probabilities of the symbols ``-limit .. limit`` under parameter byte ``param``.

    Deterministic on every machine: the decay factor is computed with :mod:`decimal` (every
    operation correctly rounded) and rounded once to float64; the weights are repeated float64
    multiplications, summed with ``math.fsum``: the encoder and decoder hand constriction the
    same numbers (as ``inrcodec.chunkcodec.residual`` does for its geometric coder).
    """
    import decimal

    family, j = param >> 7, param & 0x7F
    with decimal.localcontext(decimal.Context(prec=40)):
        scale = decimal.Decimal(base) * ((decimal.Decimal(j - SCALE_CENTRE) / 8) * decimal.Decimal(2).ln()).exp()
        if family == 0:  # discrete Laplace p(i) ~ theta**|i|, theta = exp(-sqrt(2) / std)
            factor = float((-decimal.Decimal(2).sqrt() / scale).exp())
        else:  # discrete Gaussian p(i) ~ r**(i*i), r = exp(-1 / (2 std**2))
            factor = float((-1 / (2 * scale * scale)).exp())
    half = [1.0]
    w, g = 1.0, factor
    g2 = factor * factor
    for _ in range(limit):
        if family == 0:
            w = w * factor
        else:
            w, g = w * g, g * g2
        half.append(max(w, _WEIGHT_FLOOR))
    weights = half[:0:-1] + half
    total = math.fsum(weights)
    out = np.array([x / total for x in weights], dtype=np.float64)
    out.setflags(write=False)
    return out


def _parametric_cost(symbols: np.ndarray, probs: np.ndarray, limit: int) -> float:
    return float(-np.log2(probs[symbols + limit]).sum())


def best_parameter(symbols: np.ndarray, limit: int, base: float) -> int:
    """The parameter byte (family and scale) that codes ``symbols`` (int, |s| <= limit) in the
    fewest bits: a moment estimate of the scale per family, then its neighbours."""
    s = np.asarray(symbols, dtype=np.int64).reshape(-1)
    if s.size == 0:
        return 0
    rms = math.sqrt(float(np.mean(s.astype(np.float64) ** 2)))
    best = None
    for family in (0, 1):
        std = rms if family else math.sqrt(2.0) * float(np.mean(np.abs(s)))
        j0 = 0 if std <= 0 else int(round(SCALE_CENTRE + 8 * math.log2(std / base)))
        for j in range(j0 - 2, j0 + 3):
            if 0 <= j <= 0x7F:
                param = family << 7 | j
                cost = _parametric_cost(s, parametric_probabilities(param, limit, base), limit)
                if best is None or cost < best[0]:
                    best = (cost, param)
    if best is None:  # every estimate was off the scale: the nearest end
        return 0x7F if rms > base else 0
    return best[1]


def encode_parametric(groups: Sequence[tuple[np.ndarray, int]], base: float) -> bytes:
    """Range-code groups of signed symbols ``[(symbols, limit), ...]`` (each with the parameter
    that suits it best); returns the parameter bytes (one per non-empty group) and the words."""
    params, coded = bytearray(), []
    for symbols, limit in groups:
        s = np.asarray(symbols, dtype=np.int64).reshape(-1)
        if not s.size:
            continue
        if int(np.abs(s).max()) > limit:
            raise ValueError(f"symbol beyond the alphabet +-{limit}")
        param = best_parameter(s, limit, base)
        params.append(param)
        coded.append((s + limit, parametric_probabilities(param, limit, base)))
    return bytes(params) + rangecoder.encode(coded)


def parametric_header(data, groups: Sequence[tuple[int, int]], base: float) -> tuple[list[np.ndarray], memoryview]:
    """The probability tables of a parametric payload and its words; ``ValueError`` if it has
    too few bytes for its parameters or for the symbols (a lower bound, checked before any
    symbol array exists). ``groups``: ``[(count, limit), ...]``."""
    buf = memoryview(bytes(data))
    live = [(n, lim) for n, lim in groups if n]
    if len(buf) < len(live):
        raise ValueError(f"parametric payload of {len(buf)} bytes lacks its {len(live)} parameter bytes")
    tables, min_bits = [], 0.0
    for i, (n, lim) in enumerate(live):
        probs = parametric_probabilities(int(buf[i]), lim, base)
        tables.append(probs)
        min_bits += n * -math.log2(min(float(probs.max()), 1.0 - 2.0**-24))
    words = buf[len(live):]
    if len(words) < max(0, int(min_bits / 16) - 16):
        raise ValueError(f"parametric payload of {len(buf)} bytes is too short for its {sum(n for n, _ in live)} symbols")
    return tables, words


def decode_parametric(data, groups: Sequence[tuple[int, int]], base: float) -> list[np.ndarray]:
    """Inverse of :func:`encode_parametric`: one int64 array per group (``[(count, limit), ...]``)."""
    tables, words = parametric_header(data, groups, base)
    live = iter(tables)
    symbols = rangecoder.decode(words, [(n, next(live) if n else None) for n, _ in groups])
    return [got - lim for got, (_, lim) in zip(symbols, groups)]
