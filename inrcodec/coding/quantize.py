"""Latents <-> integer symbols.

``UniformQuantizer`` is the quantizer of the COIN++ paper: clip every latent value
to ``mean +- num_std * std`` (one global mean/std over all latent values), then split
that range into ``2**bits`` bins of equal width.  ``quantize`` returns the bin index
(a uint32 symbol), ``dequantize`` returns the bin centre.

It is deliberately small: the chunk header stores ``quantizer_id`` (this class is
id 1), so a better quantizer can be added later under a new id without touching
chunks written with this one.

Arithmetic is done in float64 and only the final reconstruction is cast to float32,
so the same parameters give the same symbols / values on every IEEE-754 machine.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from inrcodec._ids import QUANTIZER_MIDTREAD, QUANTIZER_UNIFORM

__all__ = ["UniformQuantizer", "MidTreadQuantizer"]

_MIN_BITS = 1
_MAX_BITS = 16


def _finite_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"UniformQuantizer.{name} must be a real number, got {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise ValueError(f"UniformQuantizer.{name} must be finite, got {out!r}")
    return out


@dataclass(frozen=True)
class UniformQuantizer:
    """Uniform scalar quantizer over ``[mean - num_std*std, mean + num_std*std]``.

    Fields
    ------
    mean, std : float
        Global statistics of the latents (``std >= 0``; ``std == 0`` puts every
        value into bin 0, whose centre is ``mean``).
    bits : int
        ``1..16``; there are ``2**bits`` bins and symbols lie in ``[0, 2**bits)``.
    num_std : float
        Half-width of the range in standard deviations (``> 0``), 3 in the paper.

    Values outside the range are clipped to it; the largest value ``hi`` maps to the
    last bin.  For values inside the range, ``|dequantize(quantize(x)) - x| <= bin_width / 2``
    (plus float32 rounding of the result).
    """

    mean: float
    std: float
    bits: int
    num_std: float = 3.0

    #: identifies this quantizer in chunk headers (``ChunkHeader.quantizer_id``)
    quantizer_id = QUANTIZER_UNIFORM  # class attribute (no annotation: not a dataclass field)

    def __post_init__(self) -> None:
        mean = _finite_float("mean", self.mean)
        std = _finite_float("std", self.std)
        num_std = _finite_float("num_std", self.num_std)
        if std < 0:
            raise ValueError(f"UniformQuantizer.std must be >= 0, got {std!r}")
        if num_std <= 0:
            raise ValueError(f"UniformQuantizer.num_std must be > 0, got {num_std!r}")
        bits = self.bits
        if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
            raise ValueError(f"UniformQuantizer.bits must be an int, got {bits!r}")
        bits = int(bits)
        if not _MIN_BITS <= bits <= _MAX_BITS:
            raise ValueError(
                f"UniformQuantizer.bits must be in {_MIN_BITS}..{_MAX_BITS}, got {bits}"
            )
        lo, hi = mean - num_std * std, mean + num_std * std
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError(
                f"UniformQuantizer range mean +- num_std*std overflows: mean={mean!r}, "
                f"std={std!r}, num_std={num_std!r}"
            )
        # normalise numpy scalars to plain Python numbers (JSON-safe, hashable)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        object.__setattr__(self, "num_std", num_std)
        object.__setattr__(self, "bits", bits)

    # ------------------------------------------------------------------ geometry
    @property
    def num_bins(self) -> int:
        return 1 << self.bits

    @property
    def lo(self) -> float:
        return self.mean - self.num_std * self.std

    @property
    def hi(self) -> float:
        return self.mean + self.num_std * self.std

    @property
    def bin_width(self) -> float:
        return (self.hi - self.lo) / self.num_bins

    # ------------------------------------------------------------------ mapping
    def quantize(self, latents: np.ndarray) -> np.ndarray:
        """Latent values (any shape, real dtype) -> uint32 symbols of the same shape.

        NaN raises ``ValueError``; +-inf are clipped like any out-of-range value.
        """
        x = np.asarray(latents)
        if x.dtype.kind not in "fiub":
            raise ValueError(f"latents must be a real numeric array, got dtype {x.dtype}")
        x = x.astype(np.float64, copy=False)
        if np.isnan(x).any():
            raise ValueError("latents contain NaN; cannot quantize")
        lo, width = self.lo, self.bin_width
        if width == 0.0:  # std == 0: one point, everything is bin 0 (centre == mean)
            return np.zeros(x.shape, dtype=np.uint32)
        t = np.floor((np.clip(x, lo, self.hi) - lo) / width)
        return np.clip(t, 0, self.num_bins - 1).astype(np.uint32)

    def dequantize(self, symbols: np.ndarray) -> np.ndarray:
        """Symbols (integer array in ``[0, 2**bits)``) -> float32 bin centres."""
        s = np.asarray(symbols)
        if s.dtype.kind not in "iu":
            raise ValueError(f"symbols must be an integer array, got dtype {s.dtype}")
        if s.size and (s.min() < 0 or s.max() >= self.num_bins):
            raise ValueError(
                f"symbols must lie in [0, {self.num_bins}) for bits={self.bits}, "
                f"got range [{s.min()}, {s.max()}]"
            )
        centres = self.lo + (s.astype(np.float64) + 0.5) * self.bin_width
        return centres.astype(np.float32)

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(cls, latents: np.ndarray, bits: int, num_std: float = 3.0) -> "UniformQuantizer":
        """Global mean/std of all latent values (COIN++).  Needs >= 1 finite value, no NaN/inf."""
        x = np.asarray(latents)
        if x.dtype.kind not in "fiub":
            raise ValueError(f"latents must be a real numeric array, got dtype {x.dtype}")
        x = x.astype(np.float64, copy=False)
        if x.size == 0:
            raise ValueError("cannot fit a quantizer to an empty latent array")
        if not np.isfinite(x).all():
            raise ValueError("cannot fit a quantizer: latents contain NaN or inf")
        mean = float(x.mean())
        std = float(x.std())
        if not math.isfinite(std):  # overflow for huge magnitudes
            raise ValueError("cannot fit a quantizer: latent std overflows float64")
        return cls(mean=mean, std=max(std, 0.0), bits=bits, num_std=num_std)

    # ------------------------------------------------------------------ (de)serialise
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (plain floats/ints); ``from_dict`` inverts it exactly."""
        return {
            "kind": "uniform",
            "quantizer_id": self.quantizer_id,
            "mean": self.mean,
            "std": self.std,
            "bits": self.bits,
            "num_std": self.num_std,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "UniformQuantizer":
        if not isinstance(d, dict):
            raise ValueError(f"quantizer description must be a dict, got {type(d).__name__}")
        if d.get("kind", "uniform") != "uniform":
            raise ValueError(f"not a uniform quantizer description: kind={d.get('kind')!r}")
        qid = d.get("quantizer_id", cls.quantizer_id)
        if qid != cls.quantizer_id:
            raise ValueError(
                f"quantizer_id {qid!r} does not match UniformQuantizer ({cls.quantizer_id})"
            )
        missing = [k for k in ("mean", "std", "bits") if k not in d]
        if missing:
            raise ValueError(f"quantizer description is missing {', '.join(missing)}")
        unknown = set(d) - {"kind", "quantizer_id", "mean", "std", "bits", "num_std"}
        if unknown:
            raise ValueError(f"quantizer description has unknown keys {sorted(unknown)}")
        return cls(
            mean=d["mean"], std=d["std"], bits=d["bits"], num_std=d.get("num_std", 3.0)
        )


@dataclass(frozen=True)
class MidTreadQuantizer:
    """Mid-tread scalar quantizer (``quantizer_id`` 2): zero (the mean, or the prediction) is a level.

    ``step = 2 * num_std * std / 2**bits`` (the bin width :class:`UniformQuantizer` has at the same
    ``bits``; ``bits`` 1..12). A latent ``x`` with base ``b`` (the mean, or with ``predict`` the
    dequantised latent of the previous item: closed-loop prediction) becomes the signed symbol
    ``s = clip(rint((x - b) / step), -limit, limit)`` and is dequantised to ``b + s * step``
    (float64, cast to float32 only for the network). ``limit`` is ``2**(bits + 1)``
    (``4 * num_std`` standard deviations) for a symbol against the mean and twice that for a
    difference from the previous item, so refined latents far outside the uniform quantizer's
    clipping range stay codable. Encoder and decoder run the same float64 operations in the same
    order, so they agree bit for bit on every IEEE-754 machine.
    """

    mean: float
    std: float
    bits: int
    num_std: float = 3.0

    quantizer_id = QUANTIZER_MIDTREAD
    MAX_BITS = 12

    def __post_init__(self) -> None:
        if isinstance(self.bits, bool) or not isinstance(self.bits, (int, np.integer)) or not 1 <= int(self.bits) <= self.MAX_BITS:
            raise ValueError(f"MidTreadQuantizer.bits must be in 1..{self.MAX_BITS}, got {self.bits}")
        ref = UniformQuantizer(self.mean, self.std, int(self.bits), self.num_std)  # the same checks
        for name in ("mean", "std", "num_std", "bits"):
            object.__setattr__(self, name, getattr(ref, name))

    @property
    def step(self) -> float:
        return 2.0 * self.num_std * self.std / float(1 << self.bits)

    @property
    def limit(self) -> int:
        """Largest |symbol| against the mean (differences: ``2 * limit``)."""
        return 1 << (self.bits + 1)

    def quantize(self, latents: np.ndarray, predict: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Latents ``(n_items, m)`` -> (int64 symbols, float64 dequantised latents), both ``(n_items, m)``.

        ``predict``: item ``i > 0`` is coded against the dequantised item ``i - 1``."""
        x = np.asarray(latents, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"latents must be (n_items, m), got shape {x.shape}")
        if np.isnan(x).any():
            raise ValueError("latents contain NaN; cannot quantize")
        step, lim = self.step, self.limit
        if not predict:
            s = np.zeros(x.shape, np.int64) if step == 0 else np.clip(np.rint((x - self.mean) / step), -lim, lim).astype(np.int64)
            return s, self.dequantize(s)
        s = np.zeros(x.shape, np.int64)
        deq = np.empty(x.shape, np.float64)
        for i in range(x.shape[0]):
            base, bound = (self.mean, lim) if i == 0 else (deq[i - 1], 2 * lim)
            if step:
                s[i] = np.clip(np.rint((x[i] - base) / step), -bound, bound)
            deq[i] = base + s[i].astype(np.float64) * step
        return s, deq

    def dequantize(self, symbols: np.ndarray, predict: bool = False) -> np.ndarray:
        """Signed symbols ``(n_items, m)`` -> float64 latents (the encoder's exact values)."""
        s = np.asarray(symbols)
        if s.dtype.kind not in "iu":
            raise ValueError(f"symbols must be an integer array, got dtype {s.dtype}")
        s = s.astype(np.float64)
        if not predict:
            return self.mean + s * self.step
        deq = np.empty(s.shape, np.float64)
        for i in range(s.shape[0]):
            deq[i] = (self.mean if i == 0 else deq[i - 1]) + s[i] * self.step
        return deq
