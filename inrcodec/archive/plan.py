"""What a compress run writes: the variables, the region dimension, the regions and each
variable's Zarr encoding (COIN++ codecs for the encoded ones, lossless for the rest)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from inrcodec.codec import COINppCodec
from inrcodec.models.modelstore import StoredModel
from inrcodec.settings import CodecSettings, variable_settings

__all__ = ["WritePlan", "make_plan", "open_input", "encodable_variables", "parse_chunks"]

_BOUNDS_DIMS = ("bnds", "bounds", "nv", "nbnd", "nb2", "vertices")
#: the region size along ``time`` when ``chunks`` is not given
DEFAULT_REGION = 24


@dataclass
class WritePlan:
    """The layout of one compress run."""

    ds: Any  # the input, chunked one region per Zarr chunk, non-region variables loaded
    variables: list[str]  # COIN++-encoded
    dim: str | None  # the region dimension
    size: int | None  # the region (chunk) size along ``dim``
    regions: list[list[int]]  # [start, stop) along ``dim``
    deferred: list[str]  # variables written region by region (the others at initialisation)
    encoding: dict[str, dict]
    codecs: dict[str, COINppCodec]
    #: each encoded variable's model and settings (one model for all, or one per variable)
    models: dict[str, StoredModel] = field(default_factory=dict)
    settings: dict[str, CodecSettings] = field(default_factory=dict)

    def distinct_models(self) -> list[StoredModel]:
        """The models of the run, each once."""
        return list({s.sha256: s for s in self.models.values()}.values())

    def region_dataset(self):
        """The variables written region by region (None when there are none)."""
        import xarray as xr

        return xr.Dataset({n: self.ds[n].variable for n in self.deferred}) if self.deferred else None


def open_input(path, engine: str | None = None):
    """The input dataset, lazily (Dask): netCDF/HDF5 through xarray, or a Zarr store."""
    import xarray as xr

    p = str(path)
    if engine is None and (p.rstrip("/").endswith(".zarr") or Path(p, "zarr.json").exists()
                           or Path(p, ".zgroup").exists()):
        engine = "zarr"
    if engine == "zarr":
        return xr.open_zarr(p, chunks={}, decode_timedelta=False)
    return xr.open_dataset(p, engine=engine, chunks={}, decode_timedelta=False)


def encodable_variables(ds, model) -> list[str]:
    """The data variables ``model`` (a CoinModel) can encode: float, with its spatial dims trailing.

    Spherical models: the last two dims are named ``lat*``, ``lon*``. Cartesian models: at least
    ``spatial_ndim`` dims, none of them a bounds dimension.
    """
    out = []
    for name, da in ds.data_vars.items():
        if da.dtype.kind != "f" or da.ndim < model.spatial_ndim:
            continue
        dims = [str(d).lower() for d in da.dims]
        if any(d in _BOUNDS_DIMS for d in dims):
            continue
        if model.grid_kind == "spherical" and not (dims[-2].startswith("lat") and dims[-1].startswith("lon")):
            continue
        out.append(str(name))
    return out


def parse_chunks(chunks) -> dict[str, int] | None:
    """``{"time": 24}`` or ``"time=24[,level=1]"`` -> ``{"time": 24}`` (None: not given)."""
    if chunks is None or chunks == "":
        return None
    if isinstance(chunks, dict):
        return {str(k): int(v) for k, v in chunks.items()}
    out = {}
    for part in str(chunks).split(","):
        k, _, v = part.partition("=")
        if not v:
            raise ValueError(f"chunks must look like 'time=24[,level=1]', got {chunks!r}")
        out[k.strip()] = int(v)
    return out


def choose_variables(ds, variables: Iterable[str] | str | None, model, input) -> list[str]:
    """The variables to encode: those named (checked to exist and be float), else every one ``model``
    can encode."""
    if isinstance(variables, str):
        variables = [v.strip() for v in variables.split(",") if v.strip()]
    variables = list(variables) if variables else encodable_variables(ds, model)
    missing = [v for v in variables if v not in ds.variables]
    if missing:
        raise ValueError(f"variables {missing} are not in {input}; it has {sorted(map(str, ds.data_vars))}")
    if not variables:
        raise ValueError(f"no variable of {input} can be encoded by this {model.grid_kind} model; pass variables=")
    not_float = [v for v in variables if ds[v].dtype.kind != "f"]
    if not_float:
        raise ValueError(f"variables {not_float} are not float ({', '.join(str(ds[v].dtype) for v in not_float)}); "
                         "COIN++ encodes float variables only: leave them out of --variables (they are copied losslessly)")
    return variables


def _region_layout(ds, variables: list[str], chunks: dict[str, int] | None, nd: int, input):
    """(dim, size, regions): the region dimension is the first key of ``chunks``, else ``time``,
    else the first leading dim of the encoded variables."""
    if chunks and next(iter(chunks)) not in ds.dims:
        raise ValueError(f"--chunks names dimension {next(iter(chunks))!r}, which {input} does not have "
                         f"(dimensions: {', '.join(map(str, ds.dims))})")
    leading = [d for v in variables for d in ds[v].dims[: ds[v].ndim - nd]]
    dim = next(iter(chunks)) if chunks else ("time" if "time" in leading else (str(leading[0]) if leading else None))
    if dim is None:
        return None, None, []
    size = chunks.get(dim) if chunks else DEFAULT_REGION
    if size is None or size < 1:
        raise ValueError(f"chunk size along {dim!r} must be >= 1")
    n = int(ds.sizes[dim])
    return dim, size, [[a, min(a + size, n)] for a in range(0, n, size)]


def cf_encoding(enc: dict) -> dict:
    """The CF keys of a variable's encoding that a Zarr store (and netCDF) understands."""
    keep = ("dtype", "_FillValue", "scale_factor", "add_offset", "units", "calendar")
    return {k: v for k, v in enc.items() if k in keep}


def _encodings(ds, plan_vars, models: dict[str, StoredModel], settings: dict[str, CodecSettings], dim, size):
    encoding: dict[str, dict] = {}
    codecs: dict[str, COINppCodec] = {}
    for n in ds.variables:
        var, name = ds[n], str(n)
        chunks = tuple(size if d == dim else int(s) for d, s in zip(var.dims, var.shape))
        if name in plan_vars:
            data = var.astype(var.dtype if var.dtype in (np.float32, np.float64) else np.float32)
            data.encoding = {}  # the input's _FillValue is already NaN here; fill_value is the request's
            # the request's settings; for_dataarray sets what the data decides (lat/lon)
            enc = COINppCodec.for_dataarray(data, models[name], zarr_format=3, chunks=chunks, settings=settings[name])
            enc["_FillValue"] = np.nan  # NaN stays NaN: the codec masks it (never a numeric fill)
            enc["dtype"] = data.dtype
            codecs[name] = enc["serializer"]
        else:
            enc = cf_encoding(var.encoding)
            if chunks:
                enc["chunks"] = chunks
        encoding[name] = enc
    return encoding, codecs


def variable_models(ds, variables, stored: StoredModel | dict[str, StoredModel], settings: CodecSettings,
                    input, variable_options=None, suggested=None) -> tuple[dict[str, StoredModel], dict[str, CodecSettings]]:
    """Each variable to encode with its model and settings (``inner_steps`` resolved per model).

    ``stored``: one model (the variables named, else every one it can encode) or ``{variable:
    model}`` (those variables, else the ones named, each with its own; a variable without a model
    is an error, never another variable's model). ``variable_options``: ``{variable: {option:
    value}}`` that variable's settings differ in, ``suggested`` those its model directory suggests
    (:func:`inrcodec.settings.variable_settings`)."""
    models, per_variable = _variable_models(ds, variables, stored, settings, input)
    return models, variable_settings(per_variable, variable_options, suggested)


def _variable_models(ds, variables, stored, settings: CodecSettings, input):
    if isinstance(stored, dict):
        # without a model, a variable is coded at the target without a network (never with another
        # variable's model): those named, and when none are named every lat/lon one of a spherical run
        free = settings.rate_controlled or settings.error_bounded
        first = next(iter(stored.values())).model
        others = [] if variables or not free or first.grid_kind != "spherical" else [
            v for v in encodable_variables(ds, first) if v not in stored]
        names = choose_variables(ds, variables or [*stored, *others], None, input)
        unmapped = [v for v in names if v not in stored]
        if unmapped and not free:
            raise ValueError(f"variables {unmapped} have no model (models are given for {sorted(stored)}); "
                             "add VAR=MODEL for each, give a target (--target-ratio, --target-rmse or an error "
                             "bound: they are then coded without a network), or leave them out of the variables "
                             "(they are copied losslessly)")
        pin = _network_free_model() if unmapped else None
        models = {v: stored[v] if v in stored else pin for v in names}
        for v, m in models.items():  # each variable must be one its model can encode
            if v not in encodable_variables(ds[[v]], m.model):
                raise ValueError(f"variable {v!r} {tuple(ds[v].dims)} cannot be encoded by its {m.model.grid_kind} model")
        if len({m.model.spatial_ndim for m in models.values()}) > 1:
            raise ValueError("the models of one compress run must code the same number of spatial dims")
        return models, {v: (settings if v in stored else settings.replace(network=False)).for_model(m.model)
                        for v, m in models.items()}
    models = dict.fromkeys(choose_variables(ds, variables, stored.model, input), stored)
    return models, {v: settings.for_model(m.model) for v, m in models.items()}


def _network_free_model() -> StoredModel:
    """The model a variable coded without a network pins (``network=False``: its network is never
    run, so only its grid kind matters): the shipped ``zoo.NETWORK_FREE_PIN``, pinned by name."""
    from inrcodec.models import modelstore, zoo

    return modelstore.load(zoo.NETWORK_FREE_PIN)


def make_plan(input, ds, variables, stored: StoredModel | dict[str, StoredModel], settings: CodecSettings,
              chunks, variable_options=None, suggested=None) -> WritePlan:
    """Lay out a compress run of ``ds`` (from :func:`open_input`) with ``stored``'s model, or each
    variable with its own, and each variable's own options (:func:`variable_models`)."""
    models, per_variable = variable_models(ds, variables, stored, settings, input, variable_options, suggested)
    variables = list(models)
    nd = next(iter(models.values())).model.spatial_ndim
    dim, size, regions = _region_layout(ds, variables, parse_chunks(chunks), nd, input)
    names = list(ds.variables)
    deferred = [str(n) for n in names if dim is not None and dim in ds[n].dims and n not in ds.indexes]
    ds = ds.chunk({d: (size if d == dim else -1) for d in ds.dims})
    for n in names:  # what is written at initialisation is loaded now
        if str(n) not in deferred and n not in ds.indexes and n in ds.data_vars:
            ds[n] = ds[n].load()
    ds = ds.assign_coords({c: ds[c].load() for c in ds.coords if str(c) not in deferred})
    encoding, codecs = _encodings(ds, variables, models, per_variable, dim, size)
    for n in list(ds.variables):
        ds[n].encoding = {}
    return WritePlan(ds, variables, dim, size, regions, deferred, encoding, codecs, models, per_variable)
