"""``COINppCodec``: COIN++ for numcodecs (Zarr 2 compressors) and Zarr 3 (serializer).

One object serves both Zarr formats::

    codec = COINppCodec(model="t2m-global", bits=6, lat=ds.lat, lon=ds.lon)
    ds.to_zarr(store, encoding={"tas": {"serializer": codec, "compressors": None}})   # Zarr 3
    ds.to_zarr(store, zarr_format=2, encoding={"tas": {"compressors": [codec]}})     # Zarr 2

or let :meth:`COINppCodec.for_dataarray` pick chunks and coordinates. The codec is a thin
adapter: the options are a :class:`~inrcodec.settings.CodecSettings`, the model comes from
:mod:`inrcodec.modelstore`, and the chunk bytes from the pure functions of
:mod:`inrcodec.chunkcodec`.

The configuration pins the model by SHA-256. A model of your own travels inline (zlib +
base64) in the array metadata, so a store decodes in a fresh process with nothing but inrcodec
installed; a shipped model (:mod:`inrcodec.zoo`) is named instead of copied, and inrcodec keeps
every shipped model, under its name and hash, in later releases.
"""

from __future__ import annotations

import asyncio
import base64
import collections.abc
import os
import warnings
import zlib
from typing import TYPE_CHECKING, Any

import numpy as np
from numcodecs.abc import Codec
from numcodecs.compat import ensure_ndarray_like, ndarray_copy
from zarr.abc.codec import ArrayBytesCodec
from zarr.core.common import parse_named_configuration

from inrcodec import modelstore
from inrcodec.chunkcodec import decode_chunk, encode_chunk
from inrcodec.chunkcodec.context import context
from inrcodec.errors import IncompleteStoreWarning, PinnedGridError, PinnedModelError
from inrcodec.settings import CodecSettings

if TYPE_CHECKING:
    import xarray as xr

    from inrcodec.model import CoinModel

__all__ = ["COINppCodec", "CODEC_ID", "INCOMPLETE_KEY"]

CODEC_ID = "inrcodec.coinpp"
#: how the configuration carries the model: its bytes inline, or the name of a shipped model
INLINE, SHIPPED = "zlib+base64", "shipped"
#: configuration key that ``inrcodec compress`` sets while a store is unfinished
INCOMPLETE_KEY = "store_incomplete"
_MODEL_KEYS = ("model_sha256", "model_encoding", "model", "grid_sha256")


class COINppCodec(Codec, ArrayBytesCodec):
    """COIN++ neural compression of float32/float64 chunks.

    Parameters
    ----------
    model : CoinModel, str, os.PathLike or bytes
        A :class:`~inrcodec.model.CoinModel`, a model file, a directory holding
        ``model.safetensors`` (``inrcodec train-recipe --out DIR``), the name of a shipped model
        (``inrcodec models``), or the model file's bytes.
    settings : CodecSettings, optional
        The options; or pass them as keywords (``bits=5, max_abs_error=0.1``), see
        :class:`~inrcodec.settings.CodecSettings` for every option and what it does.
    model_sha256 : str, optional
        Pin: the model bytes must hash to this, else :class:`~inrcodec.errors.PinnedModelError`.

    Leading dimensions of a chunk (time, level, member) are independent items; the trailing
    ``model.spatial_ndim`` dimensions are the grid. NaN values (and ``fill_value``) are masked
    out of the fit and come back exactly. Decoding returns the input's dtype, shape and order.

    >>> from inrcodec import COINppCodec
    >>> codec = COINppCodec("t2m-global", bits=5, assume_global_grid=True)
    >>> COINppCodec.from_config(codec.get_config()) == codec
    True
    """

    codec_id = CODEC_ID
    is_fixed_size = False

    def __init__(self, model: "CoinModel | str | os.PathLike | bytes", settings: CodecSettings | None = None,
                 *, model_sha256: str | None = None, **options: Any):
        if settings is not None and options:
            raise TypeError("pass settings=CodecSettings(...) or the options as keywords, not both")
        if settings is not None and not isinstance(settings, CodecSettings):
            raise TypeError(f"settings must be a CodecSettings, got {type(settings).__name__}")
        settings = settings if settings is not None else CodecSettings(**options)
        stored = modelstore.load(model, expected_sha256=model_sha256)
        settings.check_model(stored.model)
        self._settings, self._stored = settings, stored
        self._pin = context(stored.model, settings).pin

    # ------------------------------------------------------------------ what it is
    @property
    def settings(self) -> CodecSettings:
        return self._settings

    @property
    def model(self) -> "CoinModel":
        return self._stored.model

    @property
    def model_sha256(self) -> str:
        return self._stored.sha256

    @property
    def model_bytes(self) -> bytes:
        """The pinned model file's bytes (what ``model_sha256`` hashes)."""
        return self._stored.data

    @property
    def pin(self) -> bytes:
        """The 4-byte version-3 chunk pin: names the model and the grid this codec decodes on."""
        return self._pin

    @property
    def grid_sha256(self) -> str | None:
        """SHA-256 of the lat/lon values (:meth:`SphericalGrid.digest`), None without lat/lon."""
        if self._settings.lat is None:
            return None
        from inrcodec.grids import SphericalGrid

        return SphericalGrid(self._settings.lat, self._settings.lon).digest()

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
        if self._stored.name is not None:
            model = {"model_encoding": SHIPPED, "model": self._stored.name}
        else:
            model = {"model_encoding": INLINE,
                     "model": base64.b64encode(zlib.compress(self.model_bytes, 9)).decode("ascii")}
        return {"id": CODEC_ID, **self._settings.to_dict(), **grid, "model_sha256": self.model_sha256, **model}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "COINppCodec":
        config = dict(config)
        config.pop("id", None)
        if "model_sha256" not in config or "model" not in config:
            raise PinnedModelError("the codec configuration lacks the pinned model ('model_sha256' and 'model' keys)")
        pinned, grid_pin = config.pop("model_sha256"), config.pop("grid_sha256", None)
        model = _model_from_config(config.pop("model_encoding", INLINE), config.pop("model"))
        codec = cls(model, CodecSettings.from_dict(config), model_sha256=pinned)
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
        if not isinstance(out, np.ndarray):
            out = ensure_ndarray_like(out)
        if out.dtype.kind != "f" or out.dtype.itemsize not in (4, 8):
            raise TypeError(f"out= must be a float32 or float64 array, got dtype {out.dtype}")
        result = decode_chunk(buf, self.model, self._settings, dtype=out.dtype, nbytes=out.nbytes)
        return ndarray_copy(result, out)

    # ------------------------------------------------------------------ Zarr 3 serializer
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "COINppCodec":
        _, configuration = parse_named_configuration(data, CODEC_ID, require_configuration=True)
        configuration = dict(configuration)
        if configuration.pop(INCOMPLETE_KEY, False):
            warnings.warn(
                "this inrcodec store is incomplete (its compress run was interrupted): unwritten "
                "regions read as NaN; run `inrcodec info STORE` for the command that resumes it",
                IncompleteStoreWarning, stacklevel=2,
            )
        return cls.from_config(configuration)

    def to_dict(self) -> dict[str, Any]:
        return _MetadataEntry(self)

    def validate(self, *, shape, dtype, chunk_grid) -> None:
        native = dtype.to_native_dtype()
        if native.kind != "f" or native.newbyteorder("=") not in (np.dtype("f4"), np.dtype("f8")):
            raise TypeError(f"the inrcodec.coinpp codec encodes float32/float64 arrays, not {native}")
        nd, s = self.model.spatial_ndim, self._settings
        if len(shape) < nd:
            raise ValueError(f"the model needs {nd} spatial (trailing) dims; the array has shape {shape}")
        chunk_shape = getattr(chunk_grid, "chunk_shape", None)
        if chunk_shape is not None and s.lat is not None:
            spatial = tuple(chunk_shape[len(chunk_shape) - nd:])
            if spatial != (len(s.lat), len(s.lon)):
                raise ValueError(
                    f"chunks {tuple(chunk_shape)}: the spatial chunk {spatial} does not match the "
                    f"codec's lat[{len(s.lat)}] x lon[{len(s.lon)}]; chunk only along the "
                    f"leading (e.g. time) dims so each chunk spans the whole lat/lon extent"
                )

    def compute_encoded_size(self, input_byte_length: int, chunk_spec) -> int:
        raise NotImplementedError

    def _encode_sync(self, chunk_array, chunk_spec):
        arr = np.asarray(chunk_array.as_numpy_array())
        want = chunk_spec.dtype.to_native_dtype()
        arr = arr.astype(want) if arr.dtype != want else arr
        arr = np.asfortranarray(arr) if chunk_spec.order == "F" and arr.ndim > 1 else np.ascontiguousarray(arr)
        return chunk_spec.prototype.buffer.from_bytes(encode_chunk(arr, self.model, self._settings))

    def _decode_sync(self, chunk_bytes, chunk_spec):
        want = chunk_spec.dtype.to_native_dtype()
        # the header is checked against the chunk it fills before anything is allocated
        arr = decode_chunk(chunk_bytes.as_numpy_array(), self.model, self._settings,
                           shape=chunk_spec.shape, dtype=want)
        return chunk_spec.prototype.nd_buffer.from_ndarray_like(arr.astype(want, copy=False))

    async def _encode_single(self, chunk_array, chunk_spec):
        # torch work blocks: run it in a worker thread like zarr's own zstd/blosc/numcodecs codecs
        return await asyncio.to_thread(self._encode_sync, chunk_array, chunk_spec)

    async def _decode_single(self, chunk_bytes, chunk_spec):
        return await asyncio.to_thread(self._decode_sync, chunk_bytes, chunk_spec)

    # ------------------------------------------------------------------ xarray
    @classmethod
    def for_dataarray(cls, da: "xr.DataArray", model: Any, *, zarr_format: int = 3, chunks: Any = None,
                      **options: Any) -> dict[str, Any]:
        """The ``encoding`` entry for ``da`` in ``ds.to_zarr(store, encoding={name: ...})``.

        ``options`` are :class:`~inrcodec.settings.CodecSettings` options. Chunks come from
        ``chunks`` (a tuple, or a dict dim -> size), else ``da.encoding["chunks"]``, else the
        dask chunks, else one chunk. Spherical models read lat/lon from the coordinates of the
        last two dimensions and need each chunk to span the whole lat/lon extent.
        ``fill_value`` defaults to ``da.encoding["_FillValue"]`` when that is set.
        """
        from inrcodec.xarray_encoding import encoding_for

        return encoding_for(cls, da, model, zarr_format=zarr_format, chunks=chunks, **options)


class _MetadataEntry(dict):
    """What ``to_dict`` returns: the Zarr 3 entry ``{"name": ..., "configuration": ...}``.

    Because the codec is a zarr ``Metadata``, zarr-python's Zarr 2 metadata also serialises its
    ``compressor`` through ``to_dict``, and then keeps the result only if it looks like a
    numcodecs codec (``codec_id``, ``get_config``, ...), taking ``get_config()`` as the
    ``.zarray`` entry. This dict is both, so one codec object serves both formats.
    """

    codec_id = CODEC_ID

    def __init__(self, codec: COINppCodec):
        config = codec.get_config()
        config.pop("id")
        super().__init__(name=CODEC_ID, configuration=config)
        self._codec = codec

    def get_config(self) -> dict[str, Any]:
        return self._codec.get_config()

    def encode(self, buf):
        return self._codec.encode(buf)

    def decode(self, buf, out=None):
        return self._codec.decode(buf, out)

    @staticmethod
    def from_config(config: dict[str, Any]) -> COINppCodec:
        return COINppCodec.from_config(config)


def _is_zarr_batch(buf) -> bool:
    return isinstance(buf, collections.abc.Iterator) or (
        isinstance(buf, list) and bool(buf) and isinstance(buf[0], tuple))


def _model_from_config(encoding: str, model: Any) -> Any:
    """The model-like value a configuration's ``model`` / ``model_encoding`` pair names."""
    if not isinstance(model, str):
        raise PinnedModelError("the codec configuration's 'model' must be a string")
    if encoding == SHIPPED:
        from inrcodec import zoo

        if zoo.pinned_sha256(model) is None:
            raise PinnedModelError(
                f"the store names the shipped model {model!r}, which this inrcodec does not ship "
                f"(it ships {sorted(zoo.available())}); upgrade inrcodec"
            )
        return model
    if encoding != INLINE:
        raise PinnedModelError(f"unknown model_encoding {encoding!r} (expected {INLINE!r} or {SHIPPED!r})")
    try:
        return zlib.decompress(base64.b64decode(model.encode("ascii"), validate=True))
    except (ValueError, zlib.error, UnicodeEncodeError) as exc:
        raise PinnedModelError(
            f"the inline model in the codec configuration is not valid {INLINE} data ({exc}); "
            "the store metadata was modified or corrupted"
        ) from None


def _rebuild_codec(sha: str, data: bytes | None, name: str | None, settings: dict[str, Any]) -> COINppCodec:
    if data is None and name is None:
        hit = modelstore.cached(sha)
        if hit is None:
            raise PinnedModelError(
                f"model sha256 {sha} was pickled without its bytes (shipped to the workers) but "
                "this process does not hold it; ship it with inrcodec.archive.ship_models(client, ...)"
            )
        data = hit.data
    return COINppCodec(data if data is not None else name, CodecSettings.from_dict(settings), model_sha256=sha)
