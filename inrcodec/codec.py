"""``COINppCodec``: COIN++ for numcodecs (Zarr 2 compressors) and Zarr 3 (serializer).

One object serves both Zarr formats::

    codec = COINppCodec(model="t2m-global", bits=6, lat=ds.lat, lon=ds.lon)
    ds.to_zarr(store, encoding={"tas": {"serializer": codec, "compressors": None}})   # Zarr 3
    ds.to_zarr(store, zarr_format=2, encoding={"tas": {"compressors": [codec]}})     # Zarr 2

or let :meth:`COINppCodec.for_dataarray` pick chunks and coordinates. The codec is a thin
adapter: the options are a :class:`~inrcodec.settings.CodecSettings`, the model comes from
:mod:`inrcodec.models.modelstore`, and the chunk bytes from the pure functions of
:mod:`inrcodec.chunkcodec`.

The configuration pins the model by SHA-256. A model of your own travels inline (zlib +
base64) in the array metadata, so a store decodes in a fresh process with nothing but inrcodec
installed; a shipped model (:mod:`inrcodec.models.zoo`) is named instead of copied, and inrcodec keeps
every shipped model, under its name and hash, in later releases.
"""

from __future__ import annotations

import base64
import collections.abc
import os
import zlib
from typing import TYPE_CHECKING, Any

import numpy as np
from numcodecs.abc import Codec
from numcodecs.compat import ensure_ndarray_like, ndarray_copy
from zarr.abc.codec import ArrayBytesCodec

from inrcodec import _limits, grids, xarray_encoding
from inrcodec.models import modelstore
from inrcodec.chunkcodec import decode_chunk, encode_chunk
from inrcodec.chunkcodec.context import context
from inrcodec.errors import ModelFileError, PinnedGridError, PinnedModelError
from inrcodec.settings import CodecSettings, variable_settings
from inrcodec.zarr3 import CODEC_ID, INCOMPLETE_KEY, Zarr3Serializer

if TYPE_CHECKING:
    import xarray as xr

    from inrcodec.models.model import CoinModel

__all__ = ["COINppCodec", "CODEC_ID", "INCOMPLETE_KEY"]

#: how the configuration carries the model: its bytes inline, or the name of a shipped model
INLINE, SHIPPED = "zlib+base64", "shipped"


class COINppCodec(Codec, Zarr3Serializer):
    """COIN++ neural compression of float32/float64 chunks: ``COINppCodec(model, **options)``.

    ``model``: a :class:`~inrcodec.models.model.CoinModel`, a model file, a directory holding
    ``model.safetensors``, a shipped model's name (``inrcodec models``) or model bytes.
    ``options`` (or ``settings=CodecSettings(...)``): see :class:`~inrcodec.settings.CodecSettings`.
    ``model_sha256``: the model must hash to it, else :class:`~inrcodec.errors.PinnedModelError`.
    Leading chunk dims are independent items; the trailing ``model.spatial_ndim`` are the grid.

    >>> codec = COINppCodec("t2m-global", bits=5, assume_global_grid=True)
    >>> COINppCodec.from_config(codec.get_config()) == codec
    True
    """

    codec_id = CODEC_ID
    is_fixed_size = False

    def __init__(self, model: "CoinModel | str | os.PathLike | bytes", settings: CodecSettings | None = None,
                 *, model_sha256: str | None = None, **options: Any):
        settings = CodecSettings.given(settings, options, "COINppCodec()")
        stored = modelstore.load(model, expected_sha256=model_sha256)
        self._settings, self._stored = settings.for_model(stored.model), stored
        self._pin = context(stored.model, self._settings).pin

    # ------------------------------------------------------------------ what it is
    settings = property(lambda self: self._settings, doc="The options (a CodecSettings).")
    stored = property(lambda self: self._stored, doc="The StoredModel (model, bytes, hash, shipped name).")
    model = property(lambda self: self._stored.model, doc="The CoinModel (shared per process by hash).")
    model_sha256 = property(lambda self: self._stored.sha256, doc="SHA-256 of the model bytes.")
    model_bytes = property(lambda self: self._stored.data, doc="The pinned model file's bytes.")
    pin = property(lambda self: self._pin, doc="The 4-byte chunk pin: this model on this grid.")

    @property
    def grid_sha256(self) -> str | None:
        """The configuration's pin of the lat/lon values (:func:`inrcodec.grids.config_grid_sha256`),
        None without lat/lon."""
        s = self._settings
        return None if s.lat is None else grids.config_grid_sha256(s.lat, s.lon)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, COINppCodec) and (self.model_sha256, self._settings) == (
            other.model_sha256, other._settings)

    def __hash__(self) -> int:
        return hash((self.model_sha256, self._settings))

    def __repr__(self) -> str:
        s = self._settings
        name = self._stored.name or f"sha256:{self.model_sha256[:12]}"
        grid = "" if self.model.grid_kind != "spherical" else (
            ", grid=global-regular" if s.lat is None else f", grid=lat[{len(s.lat)}] lon[{len(s.lon)}]")
        opts = "".join(f", {k}={v!r}" for k, v in s.to_dict().items() if k not in ("lat", "lon"))
        return f"COINppCodec(model={name}{grid}{opts})"

    # ------------------------------------------------------------------ numcodecs configuration
    def get_config(self) -> dict[str, Any]:
        grid = {} if self._settings.lat is None else {"grid_sha256": self.grid_sha256}
        return {"id": CODEC_ID, **self._settings.to_dict(), **grid, **_model_config(self._stored)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "COINppCodec":
        model, settings, pinned, grid_pin = _parse_config(config)
        try:
            codec = cls(model, settings, model_sha256=pinned)
        except (LookupError, OSError, AssertionError) as exc:
            # zarr and xarray read these as "no such array" and silently drop the variable
            raise ModelFileError(f"the model the codec configuration pins (sha256 {pinned}) cannot be "
                                 f"loaded: {type(exc).__name__}: {exc}") from exc
        if grid_pin is not None and codec.grid_sha256 != grid_pin:
            raise PinnedGridError(
                f"the codec's lat/lon values hash to {codec.grid_sha256} but the configuration pins "
                f"grid_sha256 {grid_pin}: the store metadata was edited; refusing to decode on another grid"
            )
        return codec

    def __reduce__(self):
        # (hash, bytes, shipped name, settings): the receiving process parses a model once per
        # hash (modelstore). Models every Dask worker holds (modelstore.mark_shipped) and models
        # shipped with inrcodec travel as their hash only.
        sha, name = self.model_sha256, self._stored.name
        data = None if (name is not None or modelstore.is_shipped(sha)) else self.model_bytes
        return _rebuild_codec, (sha, data, name, self._settings.to_dict())

    # ------------------------------------------------------------------ numcodecs coding
    # zarr 3 calls ``await codec.encode(batch)`` / ``await codec.decode(batch)`` with an iterator
    # of (chunk, ArraySpec) pairs; numcodecs callers pass one buffer. The names are shared, so
    # each method serves both, telling them apart by the argument.
    def encode(self, buf):
        if _is_zarr_batch(buf):
            return ArrayBytesCodec.encode(self, buf)
        return encode_chunk(buf, self.model, self._settings)

    def decode(self, buf, out=None):
        """Decode chunk bytes. With ``out``, the chunk must fill it exactly; with ``chunk_shape``
        configured (Zarr 2 arrays), the chunk must have that shape."""
        if out is None and _is_zarr_batch(buf):
            return ArrayBytesCodec.decode(self, buf)
        if out is None:
            return decode_chunk(buf, self.model, self._settings)
        return _decode_into(buf, out, self.model, self._settings)

    # ------------------------------------------------------------------ xarray
    @classmethod
    def for_dataarray(cls, da: "xr.DataArray", model: Any, *, zarr_format: int = 3, chunks: Any = None,
                      settings: CodecSettings | None = None, **options: Any) -> dict[str, Any]:
        """The ``encoding`` entry for ``da`` in ``ds.to_zarr(store, encoding={name: ...})``:
        ``{"serializer": codec, ...}`` (Zarr 3) or ``{"compressors": [codec], ...}`` (Zarr 2).

        ``settings`` or ``options``: the request (:class:`~inrcodec.settings.CodecSettings`);
        the data decides the rest (:func:`inrcodec.xarray_encoding.settings_for_data`): the
        chunks (``chunks``: a tuple or a dict dim -> size, else ``da.encoding["chunks"]``, else
        the dask chunks, else one chunk), lat/lon from the coordinates of spherical models (each
        chunk spans the whole lat/lon extent) and ``fill_value`` from ``da.encoding["_FillValue"]``.
        """
        stored = modelstore.load(model)
        request = CodecSettings.given(settings, options, "COINppCodec.for_dataarray()")
        settings, chunk_shape = xarray_encoding.settings_for_data(da, stored.model, request, chunks, zarr_format)
        return xarray_encoding.encoding_entry(cls(stored, settings), chunk_shape, zarr_format)

    @classmethod
    def for_dataset(cls, ds: "xr.Dataset", models: Any, *, zarr_format: int = 3, chunks: Any = None,
                    settings: CodecSettings | None = None, variable_options: Any = None,
                    **options: Any) -> dict[str, dict[str, Any]]:
        """The ``encoding`` of a whole Dataset, each variable with its own model:
        ``ds.to_zarr(store, encoding=COINppCodec.for_dataset(ds, {"msl": "models/msl", ...}))``.

        ``models``: ``{variable: model}`` (anything :func:`inrcodec.models.modelstore.load` takes),
        or a directory of per-variable models (``train-recipe --variable a,b --out DIR``). Variables
        without a model get no entry (xarray writes them with its defaults); every array pins its
        own model. ``chunks``, ``settings`` / ``options``: as :meth:`for_dataarray`, for every
        variable; ``variable_options``: ``{variable: {option: value}}`` one variable's own
        (``{"tp": {"valid_min": 0.0}}``).

        >>> enc = COINppCodec.for_dataset(ds, {"msl": "models/msl", "u10": "models/u10"}, target_ratio=200)  # doctest: +SKIP
        >>> ds.to_zarr("era5.zarr", encoding=enc)  # doctest: +SKIP
        """
        found = modelstore.variable_models(models) if not isinstance(models, dict) else dict(models)
        if not found:
            raise ValueError(f"for_dataset(): models must be {{variable: model}} or a directory of per-variable "
                             f"models, got {models!r}")
        missing = sorted(set(found) - set(map(str, ds.data_vars)))
        if missing and isinstance(models, dict):
            raise ValueError(f"for_dataset(): models name variables {missing} that {list(map(str, ds.data_vars))} lack")
        request = CodecSettings.given(settings, options, "COINppCodec.for_dataset()")
        suggested = modelstore.variable_codec_options(models) if not isinstance(models, dict) else None
        own = variable_settings({v: request for v in found if v in ds.data_vars}, variable_options, suggested)
        return {str(v): cls.for_dataarray(ds[v], m, zarr_format=zarr_format, chunks=chunks, settings=own[v])
                for v, m in found.items() if v in ds.data_vars}


def _decode_into(buf, out, model, settings):
    if not isinstance(out, np.ndarray):
        out = ensure_ndarray_like(out)
    if out.dtype.kind != "f" or out.dtype.itemsize not in (4, 8):
        raise TypeError(f"out= must be a float32 or float64 array, got dtype {out.dtype}")
    return ndarray_copy(decode_chunk(buf, model, settings, dtype=out.dtype, nbytes=out.nbytes), out)


def _model_config(stored: modelstore.StoredModel) -> dict[str, str]:
    """The configuration keys that pin the model: its hash, and its name or its bytes."""
    if stored.name is not None:
        return {"model_sha256": stored.sha256, "model_encoding": SHIPPED, "model": stored.name}
    return {"model_sha256": stored.sha256, "model_encoding": INLINE,
            "model": base64.b64encode(zlib.compress(stored.data, 9)).decode("ascii")}


def _parse_config(config: dict[str, Any]) -> tuple[Any, CodecSettings, str, str | None]:
    """(model-like, settings, pinned model hash, pinned grid hash) of a configuration."""
    config = dict(config)
    config.pop("id", None)
    if "model_sha256" not in config or "model" not in config:
        raise PinnedModelError("the codec configuration lacks the pinned model ('model_sha256' and 'model' keys)")
    pinned, grid_pin = config.pop("model_sha256"), config.pop("grid_sha256", None)
    model = _model_from_config(config.pop("model_encoding", INLINE), config.pop("model"))
    try:
        settings = CodecSettings.from_dict(config)
    except (TypeError, ValueError) as exc:  # the options a store's metadata holds, not the caller's
        raise type(exc)(f"the codec configuration (a store's metadata) holds an invalid option: {exc}") from None
    return model, settings, pinned, grid_pin


def _is_zarr_batch(buf) -> bool:
    return isinstance(buf, collections.abc.Iterator) or (
        isinstance(buf, list) and bool(buf) and isinstance(buf[0], tuple))


def _model_from_config(encoding: str, model: Any) -> Any:
    """The model-like value a configuration's ``model`` / ``model_encoding`` pair names."""
    if not isinstance(model, str):
        raise PinnedModelError("the codec configuration's 'model' must be a string")
    if encoding == SHIPPED:
        from inrcodec.models import zoo

        if zoo.pinned_sha256(model) is None:
            raise PinnedModelError(
                f"the store names the shipped model {model!r}, which this inrcodec does not ship "
                f"(it ships {sorted(zoo.available())}); upgrade inrcodec"
            )
        return modelstore.ShippedName(model)  # inside the package only, never a path in the cwd
    if encoding != INLINE:
        raise PinnedModelError(f"unknown model_encoding {encoding!r} (expected {INLINE!r} or {SHIPPED!r})")
    what, edited = "the inline model in the codec configuration", "the store metadata was modified or corrupted"
    try:
        blob = base64.b64decode(model.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError) as exc:
        raise PinnedModelError(f"{what} is not valid {INLINE} data ({exc}); {edited}") from None
    try:  # inflated no further than a model may be: the metadata is untrusted
        return _limits.inflate_at_most(blob, _limits.MAX_MODEL_BYTES, what, limit_name=(
            f"the {_limits.MAX_MODEL_BYTES} bytes a model may have (inrcodec._limits.MAX_MODEL_BYTES)"))
    except ValueError as exc:
        raise PinnedModelError(f"{exc}; {edited}") from None


def _rebuild_codec(sha: str, data: bytes | None, name: str | None, settings: dict[str, Any]) -> COINppCodec:
    if data is None and name is None:
        hit = modelstore.cached(sha)
        if hit is None:
            raise PinnedModelError(
                f"model sha256 {sha} was pickled without its bytes (shipped to the workers) but "
                "this process does not hold it; ship it with inrcodec.archive.ship_models(client, ...)"
            )
        data = hit.data
    model = data if data is not None else modelstore.ShippedName(name)
    return COINppCodec(model, CodecSettings.from_dict(settings), model_sha256=sha)
