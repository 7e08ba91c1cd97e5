"""``CodecSettings``: the one list of COIN++ codec options.

Every front door is derived from this dataclass: the numcodecs configuration
(``COINppCodec.get_config`` / ``from_config``), the Zarr 3 ``configuration``, pickling, the HDF5
filter's ``cd_values``, ``COINppCodec.for_dataarray`` and the ``inrcodec compress`` flags. An
option added here reaches all of them.

>>> s = CodecSettings(bits=5, max_abs_error=0.1)
>>> s.to_dict()  # doctest: +NORMALIZE_WHITESPACE
{'bits': 5, 'inner_steps': 10, 'lat': None, 'lon': None, 'entropy_coding': True, 'max_abs_error': 0.1,
 'quantizer': 'midtread', 'time_coding': True, 'patch_points': 0, 'residual_coder': 'sperr'}
>>> CodecSettings.from_dict(s.to_dict()) == s
True
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["CodecSettings", "MAX_INNER_STEPS", "MAX_REFINE_STEPS"]

#: the most inner-loop steps per item: the paper and the recipes use 3-10, and each step is a
#: forward and backward pass over the chunk (10_000 is hours per chunk on a CPU). A count read
#: from store metadata is trusted by every later append, so an edited 10**12 must not get in.
MAX_INNER_STEPS = 10_000
#: the most extra Adam steps on the latents (docs/benchmarks.md measures 10-30, where the coded
#: chunk already stops improving): same reason; ten times the inner bound, as a refine step skips
#: the meta-learned machinery and is cheaper
MAX_REFINE_STEPS = 100_000


_UNSET = object()


def _option(default: Any, help: str, *, always: bool = False, flag: bool = True, legacy: Any = _UNSET,
            choices: tuple | None = None) -> Any:
    """A settings field. ``always``: written to configurations even at its default (the options
    of the first format; the later ones appear only when set, so older configurations stay
    byte-identical). ``flag``: exposed as an ``inrcodec compress`` flag (lat/lon and the chunk
    layout come from the data instead). ``legacy``: for an option whose default changed the
    coding, what a configuration without its key means (what builds before the option did):
    ``from_dict`` fills it in and ``to_dict`` writes the key whenever the value is not it, so
    new codecs carry the new default explicitly and stored configurations keep their bytes."""
    return field(default=default, metadata={"help": help, "always": always, "flag": flag,
                                            "legacy": default if legacy is _UNSET else legacy,
                                            "choices": choices})


def _int(name: str, value: Any, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo or (hi is not None and value > hi):
        rng = f"in {lo}..{hi}" if hi is not None else f">= {lo}"
        raise ValueError(f"{name} must be an integer {rng}, got {value!r}")
    return int(value)


def _positive(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a positive number or None, got {value!r}")
    value = float(value)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return value


def _coords(name: str, values: Any) -> tuple[float, ...] | None:
    if values is None:
        return None
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size < 1:
        raise ValueError(f"{name} must be a 1-D sequence of values, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} values must be finite")
    return tuple(float(v) for v in arr)


def _shape(values: Any) -> tuple[int, ...] | None:
    if values is None:
        return None
    try:
        shape = tuple(int(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f"chunk_shape must be a sequence of ints, got {values!r}") from None
    if any(v < 0 for v in shape):
        raise ValueError(f"chunk_shape must be non-negative, got {shape}")
    return shape


def _float_dtype(value: Any) -> str | None:
    if value is None:
        return None
    try:
        dtype = np.dtype(value)
    except TypeError:
        dtype = None
    if dtype is None or dtype.kind != "f" or dtype.itemsize not in (4, 8):
        raise ValueError(f"chunk_dtype must be 'float32' or 'float64', got {value!r}")
    return dtype.name


def _fill(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"fill_value must be a number or None, got {value!r}")
    value = float(value)
    return None if math.isnan(value) else value  # NaN is always treated as missing


def _patch_argument(text: str) -> int | str:
    """``--patch-points``: an integer 0..255, ``auto`` (0) or ``model`` (the model's own patch)."""
    if text in ("auto", "model"):
        return 0 if text == "auto" else "model"
    return int(text)


@dataclass(frozen=True)
class CodecSettings:
    """The options of a COIN++ codec (everything but the model). Frozen and validated."""

    bits: int = _option(6, "bits per latent value (2**bits quantisation bins)", always=True)
    inner_steps: int = _option(10, "gradient steps fitting each item's latents when encoding", always=True)
    lat: tuple[float, ...] | None = _option(
        None, "latitudes (degrees) of the chunk's spatial extent (spherical models)", always=True, flag=False)
    lon: tuple[float, ...] | None = _option(
        None, "longitudes (degrees) of the chunk's spatial extent (spherical models)", always=True, flag=False)
    entropy_coding: bool = _option(True, "range-code the latent symbols with the model's tables", always=True)
    max_abs_error: float | None = _option(
        None, "error-bounded mode: every valid decoded value is within this absolute error")
    rel_error: float | None = _option(
        None, "error-bounded mode: bound = rel_error * (max - min) of each chunk's valid values")
    fill_value: float | None = _option(
        None, "values equal to this are missing data like NaN: not fitted, restored exactly")
    assume_global_grid: bool = _option(
        False, "spherical models without lat/lon: every chunk is a global regular grid")
    chunk_shape: tuple[int, ...] | None = _option(
        None, "the array's chunk shape, for readers that pass none (Zarr 2)", flag=False)
    chunk_order: str | None = _option(None, "the array's chunk memory order 'C' or 'F' (Zarr 2)", flag=False)
    chunk_dtype: str | None = _option(
        None, "the array's dtype 'float32' or 'float64', for readers that pass none (Zarr 2)", flag=False)
    refine_steps: int = _option(0, "extra Adam steps on the latents after the meta-learned steps")
    target_rmse: float | None = _option(
        None, "rate control: per chunk, the fewest bits whose RMSE (data units) is at most this")
    target_ratio: float | None = _option(
        None, "rate control: per chunk, the most bits whose compression ratio is at least this")
    quantizer: str = _option(
        "midtread", "latent quantizer: 'midtread' (zero is a level, parametric entropy coding, format "
        "version 4) or 'uniform' (the paper's, the model's count tables)", legacy="uniform",
        choices=("midtread", "uniform"))
    time_coding: bool = _option(
        True, "code each item (time step) of a chunk as the difference from the previous one "
        "(mid-tread quantizer)", legacy=False)
    patch_points: int | None = _option(
        0, "patch side in grid points the model's patch rule aims at (inside its trained degrees); "
        "0: chosen per chunk (by grid resolution, or by rate control); 'model': the model's own",
        legacy=None)
    residual_coder: str = _option(
        "sperr", "'sperr': per chunk, also try the network's residual coded by SPERR (hybrid) and SPERR alone "
        "and keep the smallest chunk that meets the target (format version 5); 'none': the network alone",
        legacy="none", choices=("sperr", "none"))

    def __post_init__(self) -> None:
        clean = {
            "bits": _int("bits", self.bits, 1, 16),
            "inner_steps": _int("inner_steps", self.inner_steps, 0, MAX_INNER_STEPS),
            "refine_steps": _int("refine_steps", self.refine_steps, 0, MAX_REFINE_STEPS),
            "lat": _coords("lat", self.lat),
            "lon": _coords("lon", self.lon),
            "entropy_coding": bool(self.entropy_coding),
            "assume_global_grid": bool(self.assume_global_grid),
            "fill_value": _fill(self.fill_value),
            "chunk_shape": _shape(self.chunk_shape),
            "chunk_dtype": _float_dtype(self.chunk_dtype),
            "time_coding": bool(self.time_coding),
            "patch_points": None if self.patch_points is None else _int("patch_points", self.patch_points, 0, 255),
            **{k: _positive(k, getattr(self, k)) for k in
               ("max_abs_error", "rel_error", "target_rmse", "target_ratio")},
        }
        for k, v in clean.items():
            object.__setattr__(self, k, v)
        if self.residual_coder not in ("sperr", "none"):
            raise ValueError(f"residual_coder must be 'sperr' or 'none', got {self.residual_coder!r}")
        if self.quantizer not in ("midtread", "uniform"):
            raise ValueError(f"quantizer must be 'midtread' or 'uniform', got {self.quantizer!r}")
        if not self.entropy_coding or self.bits > 12:
            # bit-packed symbols (no entropy coding) and widths above 12 need the uniform
            # quantizer; the mid-tread one is always range-coded with its parametric model
            object.__setattr__(self, "quantizer", "uniform")
        if self.quantizer == "uniform":  # predicting items needs the mid-tread quantizer
            object.__setattr__(self, "time_coding", False)
        if self.chunk_order not in (None, "C", "F"):
            raise ValueError(f"chunk_order must be 'C', 'F' or None, got {self.chunk_order!r}")
        if self.target_rmse is not None and self.target_ratio is not None:
            raise ValueError("pass target_rmse or target_ratio, not both")
        if self.error_bounded and (self.target_rmse is not None or self.target_ratio is not None):
            raise ValueError(
                "target_rmse/target_ratio do not combine with max_abs_error/rel_error: error-bounded "
                "mode already picks, per chunk, the latent width that gives the smallest chunk"
            )
        if (self.lat is None) != (self.lon is None):
            raise ValueError("pass both lat and lon, or neither (a global regular grid is then assumed)")
        if self.lat is not None and any(abs(v) > 90.0 for v in self.lat):
            raise ValueError("latitudes must lie in [-90, 90]")

    # ------------------------------------------------------------------ derived
    @property
    def error_bounded(self) -> bool:
        return self.max_abs_error is not None or self.rel_error is not None

    @property
    def rate_controlled(self) -> bool:
        return self.target_rmse is not None or self.target_ratio is not None

    def chunk_bound(self, valid_values: np.ndarray) -> float | None:
        """The absolute error bound of a chunk whose valid values are ``valid_values`` (None: no
        bound): ``min(max_abs_error, rel_error * (max - min))`` over the options that are set."""
        if not self.error_bounded:
            return None
        bounds = [] if self.max_abs_error is None else [self.max_abs_error]
        if self.rel_error is not None and valid_values.size:
            v = np.asarray(valid_values, dtype=np.float64)
            bounds.append(self.rel_error * float(v.max() - v.min()))
        b = min(bounds) if bounds else 0.0
        return b if b > 0 and math.isfinite(b) else None

    def check_model(self, model: Any) -> None:
        """Raise ValueError when these settings cannot encode with ``model`` (a CoinModel)."""
        if self.lat is not None and model.grid_kind != "spherical":
            raise ValueError(f"lat/lon only apply to spherical models; this model is {model.grid_kind}")

    def replace(self, **changes: Any) -> "CodecSettings":
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ dict form
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready options: those of the first format always, later ones only when set (not
        their legacy value: what a configuration without the key means, see ``from_dict``)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.metadata["always"] or v != f.metadata["legacy"]:  # (fill_value=0.0 is set: 0.0 != None)
                out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    def explicit_legacy(self) -> dict[str, Any]:
        """The options ``to_dict`` leaves out because they hold their legacy value although
        today's default differs: keywords that rebuild these settings need them."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.metadata["legacy"] != f.default and getattr(self, f.name) == f.metadata["legacy"]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CodecSettings":
        """The settings of a configuration; a key it lacks takes its *legacy* value (what the
        build that wrote it did), so a stored configuration encodes as it always did."""
        unknown = sorted(set(data) - cls.names())
        if unknown:
            raise ValueError(
                f"unknown codec setting(s) {unknown}: written by a newer inrcodec, or edited; "
                "upgrade inrcodec or remove them"
            )
        legacy = {f.name: f.metadata["legacy"] for f in dataclasses.fields(cls) if f.metadata["legacy"] != f.default}
        return cls(**{**legacy, **data})

    @classmethod
    def names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    # ------------------------------------------------------------------ command line
    @classmethod
    def add_arguments(cls, parser, defaults: dict[str, str] | None = None) -> None:
        """Add a flag per option (``--max-abs-error``, ``--no-entropy-coding``, ...) to ``parser``
        (an argparse parser or argument group); :meth:`options_from_arguments` reads them back. Unset flags
        keep the defaults; ``defaults`` overrides what the help says a default is."""
        for f in dataclasses.fields(cls):
            if not f.metadata["flag"]:
                continue
            name = "--" + f.name.replace("_", "-")
            if f.metadata["legacy"] != f.default and f.type in ("bool", bool):  # both ways
                parser.add_argument(name, dest=f.name, default=None, action=argparse.BooleanOptionalAction,
                                    help=f"{f.metadata['help']} (default: {f.default})")
            elif f.metadata["choices"]:
                parser.add_argument(name, dest=f.name, default=None, choices=f.metadata["choices"],
                                    help=f"{f.metadata['help']} (default: {f.default})")
            elif f.name == "patch_points":
                parser.add_argument(name, dest=f.name, type=_patch_argument, default=None,
                                    help=f"{f.metadata['help']} (default: {f.default})")
            elif f.type in ("bool", bool):
                negated = "--no-" + f.name.replace("_", "-")
                parser.add_argument(negated if f.default else name, dest=f.name, default=None,
                                    action="store_false" if f.default else "store_true",
                                    help=("turn off: " if f.default else "") + f.metadata["help"])
            else:
                kind = int if f.type in ("int", int) else float
                default = (defaults or {}).get(f.name, f.default)
                parser.add_argument(name, dest=f.name, type=kind, default=None,
                                    help=f"{f.metadata['help']} (default: {default})")

    @classmethod
    def options_from_arguments(cls, args: argparse.Namespace) -> dict[str, Any]:
        """The options whose flags were given (``CodecSettings(**options)`` validates them)."""
        out = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
               if f.metadata["flag"] and getattr(args, f.name, None) is not None}
        if out.get("patch_points") == "model":
            out["patch_points"] = None
        return out
