"""``CodecSettings``: the one list of COIN++ codec options.

Every front door is derived from this dataclass: the numcodecs configuration
(``COINppCodec.get_config`` / ``from_config``), the Zarr 3 ``configuration``, pickling, the HDF5
filter's ``cd_values``, ``COINppCodec.for_dataarray`` and the ``inrcodec compress`` flags
(``add_arguments`` / ``from_arguments`` / ``to_arguments``). An option added here reaches all of
them. One object travels from the command line down to the chunk functions; the doors that see
the data set the fields it decides (``data_fields``: lat/lon, the chunk layout), and a codec
resolves ``inner_steps=None`` to its model's ``encode_steps`` (``for_model``), so every written
configuration names a number.

>>> s = CodecSettings(bits=5, max_abs_error=0.1, inner_steps=3)
>>> s.to_dict()  # doctest: +NORMALIZE_WHITESPACE
{'bits': 5, 'inner_steps': 3, 'lat': None, 'lon': None, 'entropy_coding': True, 'max_abs_error': 0.1,
 'quantizer': 'midtread', 'time_coding': True, 'patch_points': 0, 'effort': 'fast',
     'residual_coder': 'sperr'}
>>> CodecSettings.from_dict(s.to_dict()) == s
True
>>> s.to_arguments()
['--bits', '5', '--inner-steps', '3', '--max-abs-error', '0.1']
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["CodecSettings", "MAX_INNER_STEPS", "MAX_REFINE_STEPS", "EFFORTS"]

#: how hard the encoder works per chunk (``CodecSettings.effort``)
EFFORTS = ("fast", "full")

#: the most inner-loop steps per item: the paper and the recipes use 3-10, and each step is a
#: forward and backward pass over the chunk (10_000 is hours per chunk on a CPU). A count read
#: from store metadata is trusted by every later append, so an edited 10**12 must not get in.
MAX_INNER_STEPS = 10_000
#: the most extra Adam steps on the latents (docs/benchmarks.md measures 10-30, where the coded
#: chunk already stops improving): same reason; ten times the inner bound, as a refine step skips
#: the meta-learned machinery and is cheaper
MAX_REFINE_STEPS = 100_000


_UNSET = object()


def _option(default: Any, help: str, *, always: bool = False, from_data: bool = False, legacy: Any = _UNSET,
            choices: tuple | None = None, shown_default: str | None = None) -> Any:
    """A settings field. ``always``: written to configurations even at its default (the options
    of the first format; the later ones appear only when set, so older configurations stay
    byte-identical). ``from_data``: the data decides it (lat/lon from the coordinates, the chunk
    layout from the array): the doors that see the data set it, so it is no ``inrcodec compress``
    flag and a request's value is replaced. ``legacy``: for an option whose default changed the
    coding, what a configuration without its key means (what builds before the option did):
    ``from_dict`` fills it in and ``to_dict`` writes the key whenever the value is not it, so
    new codecs carry the new default explicitly and stored configurations keep their bytes.
    ``shown_default``: what the flag's help says the default is, when not the value itself."""
    return field(default=default, metadata={"help": help, "always": always, "from_data": from_data,
                                            "legacy": default if legacy is _UNSET else legacy,
                                            "choices": choices, "shown_default": shown_default})


def _int(name: str, value: Any, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo or (hi is not None and value > hi):
        rng = f"in {lo}..{hi}" if hi is not None else f">= {lo}"
        raise ValueError(f"{name} must be an integer {rng}, got {value!r}")
    return int(value)


def _bool(name: str, value: Any) -> bool:
    """A switch: True or False (numpy's too, and 0 or 1), never a string (``"False"`` is truthy)."""
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, (int, np.integer)) and value in (0, 1)):
        return bool(value)
    raise ValueError(f"{name} must be True or False, got {value!r}")


def _finite(name: str, value: Any, positive: bool = False) -> float | None:
    what = "a positive finite number" if positive else "a finite number"
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be {what} or None, got {value!r}")
    value = float(value)
    if not (math.isfinite(value) and (value > 0 or not positive)):
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return value


def _positive(name: str, value: Any) -> float | None:
    return _finite(name, value, positive=True)


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
    inner_steps: int | None = _option(
        None, "gradient steps fitting each item's latents when encoding (None: the model's encode_steps, "
        "resolved by for_model)", always=True, legacy=10, shown_default="the model's encode_steps")
    lat: tuple[float, ...] | None = _option(
        None, "latitudes (degrees) of the chunk's spatial extent (spherical models)", always=True, from_data=True)
    lon: tuple[float, ...] | None = _option(
        None, "longitudes (degrees) of the chunk's spatial extent (spherical models)", always=True, from_data=True)
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
        None, "the array's chunk shape, for readers that pass none (Zarr 2)", from_data=True)
    chunk_order: str | None = _option(None, "the array's chunk memory order 'C' or 'F' (Zarr 2)", from_data=True)
    chunk_dtype: str | None = _option(
        None, "the array's dtype 'float32' or 'float64', for readers that pass none (Zarr 2)", from_data=True)
    refine_steps: int = _option(0, "extra Adam steps on the latents after the meta-learned steps")
    target_rmse: float | None = _option(
        None, "rate control: per chunk, the fewest bits whose RMSE (data units) is at most this (with an error "
        "bound: the fewest bytes meeting both)")
    target_ratio: float | None = _option(
        None, "rate control: per chunk, the most bits whose compression ratio is at least this (with an error "
        "bound: the lowest RMSE within the ratio that keeps the bound)")
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
    effort: str = _option(
        "fast", "'fast': fit the mean of the chunk's items, then each item from it in a few steps on a subset of "
        "every patch's points, and weigh only the candidates that can still win; 'full': fit every item from zero "
        "on every point and weigh every candidate (the builds before it; several times slower)", legacy="full",
        choices=EFFORTS)
    residual_coder: str = _option(
        "sperr", "'sperr': per chunk, also try the network's residual coded by SPERR (hybrid) and SPERR alone "
        "and keep the smallest chunk that meets the target (format version 5); 'none': the network alone",
        legacy="none", choices=("sperr", "none"))
    residual_interpolation: bool = _option(
        True, "error-bounded residuals: also try predicting their codes by multilevel linear interpolation "
        "(SZ3's predictor) along the spatial axes and along the items too, keeping the smallest (earlier builds "
        "cannot read such chunks); off: the Lorenzo difference only", legacy=False)
    residual_item_detail: bool = _option(
        True, "error-bounded residuals, with residual_interpolation: also try predicting each item from its own "
        "interpolation plus the earlier items' reconstructed detail, weighted per level (earlier builds cannot "
        "read such chunks)", legacy=False)
    residual_context: bool = _option(
        True, "error-bounded residuals, with residual_interpolation: also try coding the interpolated codes with "
        "a model per context (the slope between and the codes of the two values each one is interpolated from; "
        "earlier builds cannot read such chunks)", legacy=False)
    residual_levels: bool = _option(
        True, "error-bounded residuals, with residual_context: also try the contexts with the interpolation's "
        "coarser levels apart from its finest (earlier builds cannot read such chunks)", legacy=False)
    residual_cubic: bool = _option(
        True, "error-bounded residuals, with residual_interpolation: also try four-point (cubic) interpolation "
        "where a value has two known neighbours on each side (earlier builds cannot read such chunks)", legacy=False)
    residual_fine_step: bool = _option(
        True, "error-bounded residuals of the chunk's mean (no network): quantize with a step that keeps only "
        "the room the decoded values' rounding needs (a margin of the bound down to 2**-20, not 2**-6; earlier "
        "builds cannot read such chunks)", legacy=False)
    residual_compact: bool = _option(
        True, "error-bounded residuals: write their sections' fields and lengths as varints and their escaped "
        "codes as zigzag varints (layout 2: about 50-100 bytes fewer a chunk; earlier builds cannot read such chunks)",
        legacy=False)
    coarse_hybrid: bool = _option(
        True, "hybrid chunks: also try the network evaluated at every second grid point of each axis and "
        "interpolated linearly (mode 6: decodes about three times faster; earlier builds cannot read such chunks), "
        "keeping per chunk the better of the two", legacy=False)
    sperr_item_dct: bool = _option(
        True, "SPERR chunks (hybrid and SPERR alone) of 2 to 16 items of a 2-D model, at a ratio or RMSE target "
        "or bits: also code the items' DCT along the item axis (SPERR transforms no axis shorter than 9: time "
        "steps stacked 8 to a chunk were coded as separate fields), before their plain stack (earlier builds "
        "cannot read such chunks)", legacy=False)
    sperr_corrected: bool = _option(
        True, "an error bound with a ratio or RMSE target: also try SPERR alone at a rate, the values its decode "
        "misses by more than the bound corrected by an error-bounded residual (mode 7; earlier builds cannot read "
        "such chunks)", legacy=False)
    sperr_exact_bound: bool = _option(
        True, "error-bounded chunks of SPERR alone: first try SPERR's point-wise tolerance at the bound itself "
        "(every decode is checked; off: 1/64 under it only)", legacy=False)
    valid_min: float | None = _option(None, "the data's physical minimum (precipitation: 0): decoded values "
                                      "below it are raised to it, so none leaks below; data below it are refused")
    valid_max: float | None = _option(None, "the data's physical maximum (a fraction: 1): decoded values above "
                                      "it are lowered to it; data above it are refused")
    network: bool = _option(
        True, "fit and code the model's network; off: SPERR alone at the target (mode 5), or within the bound "
        "the smaller of SPERR alone and the chunk's mean plus residual (mode 3), the network never run: for "
        "a variable no model was trained for (needs target_ratio, target_rmse or an error bound)")

    def __post_init__(self) -> None:
        clean = {
            "bits": _int("bits", self.bits, 1, 16),
            "inner_steps": None if self.inner_steps is None else _int("inner_steps", self.inner_steps, 0,
                                                                      MAX_INNER_STEPS),
            "refine_steps": _int("refine_steps", self.refine_steps, 0, MAX_REFINE_STEPS),
            "lat": _coords("lat", self.lat),
            "lon": _coords("lon", self.lon),
            "entropy_coding": _bool("entropy_coding", self.entropy_coding),
            "assume_global_grid": _bool("assume_global_grid", self.assume_global_grid),
            "fill_value": _fill(self.fill_value),
            "chunk_shape": _shape(self.chunk_shape),
            "chunk_dtype": _float_dtype(self.chunk_dtype),
            "time_coding": _bool("time_coding", self.time_coding),
            "patch_points": None if self.patch_points is None else _int("patch_points", self.patch_points, 0, 255),
            **{k: _positive(k, getattr(self, k)) for k in
               ("max_abs_error", "rel_error", "target_rmse", "target_ratio")},
            "valid_min": _finite("valid_min", self.valid_min),
            "valid_max": _finite("valid_max", self.valid_max),
            "network": _bool("network", self.network),
            "residual_interpolation": _bool("residual_interpolation", self.residual_interpolation),
            "residual_item_detail": _bool("residual_item_detail", self.residual_item_detail),
            "residual_context": _bool("residual_context", self.residual_context),
            "residual_levels": _bool("residual_levels", self.residual_levels),
            "residual_cubic": _bool("residual_cubic", self.residual_cubic),
            "residual_fine_step": _bool("residual_fine_step", self.residual_fine_step),
            "residual_compact": _bool("residual_compact", self.residual_compact),
            "coarse_hybrid": _bool("coarse_hybrid", self.coarse_hybrid),
            "sperr_item_dct": _bool("sperr_item_dct", self.sperr_item_dct),
            "sperr_corrected": _bool("sperr_corrected", self.sperr_corrected),
            "sperr_exact_bound": _bool("sperr_exact_bound", self.sperr_exact_bound),
        }
        for k, v in clean.items():
            object.__setattr__(self, k, v)
        if self.valid_min is not None and self.valid_max is not None and not self.valid_min < self.valid_max:
            raise ValueError(f"valid_min ({self.valid_min}) must be below valid_max ({self.valid_max})")
        if self.residual_coder not in ("sperr", "none"):
            raise ValueError(f"residual_coder must be 'sperr' or 'none', got {self.residual_coder!r}")
        if self.effort not in EFFORTS:
            raise ValueError(f"effort must be one of {EFFORTS}, got {self.effort!r}")
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
        if not self.network and not (self.rate_controlled or self.error_bounded):
            raise ValueError("network=False needs target_ratio, target_rmse, max_abs_error or rel_error: "
                             "bits is the network's rate, and without the network there is none")
        if not self.network and self.rate_controlled and self.residual_coder != "sperr":
            raise ValueError("network=False meets a target_ratio or target_rmse with SPERR: residual_coder must "
                             "be 'sperr'")
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

    def check_model(self, model: Any, *, encoding: bool = False) -> None:
        """Raise ValueError when these settings cannot code with ``model`` (a CoinModel);
        ``encoding``: also the rules for writing (a spherical model needs the grid it encodes on)."""
        if self.lat is not None and model.grid_kind != "spherical":
            raise ValueError(f"lat/lon only apply to spherical models; this model is {model.grid_kind}")
        if encoding and model.grid_kind == "spherical" and self.lat is None and not self.assume_global_grid:
            # stores written before this rule decode as they always did: reading never checks it
            raise ValueError(
                "this spherical codec has no lat/lon: pass lat=/lon= (the chunk's coordinates, or use "
                "COINppCodec.for_dataarray), or assume_global_grid=True if every chunk is a global "
                "regular grid with ascending latitudes"
            )

    def for_model(self, model: Any) -> "CodecSettings":
        """These settings checked against ``model`` and with ``inner_steps`` resolved (None: the
        model's ``encode_steps``): what a codec holds and every configuration names."""
        self.check_model(model)
        return self if self.inner_steps is not None else self.replace(inner_steps=int(model.encode_steps))

    @classmethod
    def given(cls, settings: "CodecSettings | None", options: dict[str, Any], caller: str) -> "CodecSettings":
        """The settings a door was given: ``settings=CodecSettings(...)`` or the fields as keyword
        ``options``, not both (``caller`` names the door in the errors)."""
        if settings is not None:
            if options:
                raise TypeError(f"{caller}: pass settings=CodecSettings(...) or the codec options as keywords, "
                                "not both")
            if not isinstance(settings, cls):
                raise TypeError(f"{caller}: settings must be a CodecSettings, got {type(settings).__name__}")
            return settings
        unknown = sorted(set(options) - cls.names())
        if unknown:
            raise TypeError(f"{caller} got unknown option(s) {unknown}; the codec options are {sorted(cls.names())}")
        return cls(**options)

    @classmethod
    def data_fields(cls) -> tuple[str, ...]:
        """The fields the data decides (coordinates, chunk layout): set by the doors that see it."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.metadata["from_data"])

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
    def add_arguments(cls, parser) -> None:
        """Add a flag per option the request decides (``--max-abs-error``, ``--no-entropy-coding``,
        ...) to ``parser`` (an argparse parser or argument group); :meth:`from_arguments` reads
        them back and :meth:`to_arguments` writes them. Unset flags keep the defaults."""
        for f in dataclasses.fields(cls):
            if f.metadata["from_data"]:
                continue
            name, shown = "--" + f.name.replace("_", "-"), f.metadata["shown_default"] or f.default
            help = f"{f.metadata['help']} (default: {shown})"
            if _both_ways(f):
                parser.add_argument(name, dest=f.name, default=None, action=argparse.BooleanOptionalAction, help=help)
            elif f.metadata["choices"]:
                parser.add_argument(name, dest=f.name, default=None, choices=f.metadata["choices"], help=help)
            elif f.name == "patch_points":
                parser.add_argument(name, dest=f.name, type=_patch_argument, default=None, help=help)
            elif _is_bool(f):
                parser.add_argument(_bool_flag(f, not f.default), dest=f.name, default=None,
                                    action="store_false" if f.default else "store_true",
                                    help=("turn off: " if f.default else "") + f.metadata["help"])
            else:
                kind = int if f.type in ("int", int, "int | None") else float
                parser.add_argument(name, dest=f.name, type=kind, default=None, help=help)

    @classmethod
    def parse_option(cls, name: str, text: str) -> Any:
        """The value of option ``name`` (``valid_min`` or ``valid-min``) written as ``text`` on a
        command line (``0``, ``true``, ``sperr``, ``model``); checked when settings are made of it."""
        fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata["from_data"]}
        key = name.replace("-", "_")
        if key not in fields:
            raise ValueError(f"unknown codec option {name!r}; the options are {sorted(fields)}")
        f, text = fields[key], text.strip()
        if _is_bool(f):
            if text.lower() not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                raise ValueError(f"option {key} takes true or false, got {text!r}")
            return text.lower() in ("true", "1", "yes", "on")
        if f.metadata["choices"] or f.type in ("str", str):
            return text
        if key == "patch_points":  # as the flag reads it (``auto``, ``model``, N), and from_arguments maps it
            value = _patch_argument(text)
            return None if value == "model" else value
        try:
            return int(text) if f.type in ("int", int, "int | None") else float(text)
        except ValueError:
            raise ValueError(f"option {key} takes a number, got {text!r}") from None

    @classmethod
    def from_arguments(cls, args: argparse.Namespace) -> "CodecSettings":
        """The settings of parsed :meth:`add_arguments` flags (those not given keep the defaults)."""
        given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
                 if not f.metadata["from_data"] and getattr(args, f.name, None) is not None}
        if given.get("patch_points") == "model":
            given["patch_points"] = None
        return cls(**given)

    def to_arguments(self) -> list[str]:
        """The :meth:`add_arguments` flags that give these settings (the fields the data decides
        left out): ``from_arguments(parse(to_arguments()))`` is ``self`` without them."""
        out: list[str] = []
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.metadata["from_data"] or v == f.default:
                continue
            if _is_bool(f):
                out.append(_bool_flag(f, v))
            else:  # patch_points=None: the model's own patches
                out += ["--" + f.name.replace("_", "-"), "model" if v is None else str(v)]
        return out


def _is_bool(f: dataclasses.Field) -> bool:
    return f.type in ("bool", bool)


def _both_ways(f: dataclasses.Field) -> bool:
    """A bool whose default changed: a flag for each value (``--time-coding`` / ``--no-time-coding``)."""
    return _is_bool(f) and f.metadata["legacy"] != f.default


def _bool_flag(f: dataclasses.Field, value: bool) -> str:
    return ("--" if value else "--no-") + f.name.replace("_", "-")


def variable_settings(per_variable: dict[str, CodecSettings], options=None, suggested=None) -> dict[str, CodecSettings]:
    """Each variable's settings: ``per_variable`` with its own ``options`` (``{variable: {option:
    value}}``, e.g. ``{"tp": {"valid_min": 0.0}}``) and, where the request left an option at its
    default, the ``suggested`` ones (what a directory of per-variable models was trained to be used
    with, ``modelstore.variable_codec_options``; for variables not coded here they are ignored).
    ``options`` naming a variable not coded, an unknown option or one the data decide are errors."""
    options, suggested = dict(options or {}), dict(suggested or {})
    unknown = sorted(set(options) - set(per_variable))
    if unknown:
        raise ValueError(f"variable_options name {unknown}, which are not encoded here (encoded: {sorted(per_variable)})")
    data_fields, names = set(CodecSettings.data_fields()), CodecSettings.names()
    for var, opts in options.items():
        fixed, bad = sorted(set(opts) & data_fields), sorted(set(opts) - names)
        if bad:
            raise ValueError(f"variable_options[{var!r}]: unknown codec option(s) {bad}; the codec options are "
                             f"{sorted(names - data_fields)}")
        if fixed:
            raise ValueError(f"variable_options[{var!r}]: {fixed} come from the data, not from a request")
    defaults, out = CodecSettings(), {}
    for v, s in per_variable.items():
        kept = {k: x for k, x in suggested.get(v, {}).items()
                if k in names and k not in data_fields and getattr(s, k) == getattr(defaults, k)}
        changes = {**kept, **options.get(v, {})}
        out[v] = s.replace(**changes) if changes else s
    return out

