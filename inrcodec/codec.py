"""``COINppCodec``: the COIN++ codec for numcodecs (Zarr format 2 compressors, HDF5 filters).

One chunk ``(*leading, *spatial)`` is encoded as ``prod(leading)`` independent items of the
model's spatial shape, fitted in one batch. The codec's configuration pins the model: its
SHA-256 and the model bytes themselves (zlib + base64) travel in the array metadata, so a
store decodes in a fresh process with nothing but ``inrcodec`` installed.

Chunk modes
-----------
* ``MODE_MODULATIONS`` (0): quantised, entropy-coded latents (+ NaN bitmask when there are NaNs).
* ``MODE_RAW`` (1): the values themselves, zlib-compressed, lossless. Used for chunks a neural
  fit cannot represent: all missing (NaN / fill value), constant (all valid values equal),
  containing +-inf, or with values beside or far outside the model's training range (none within
  ``RANGE_MARGIN`` training ranges of it, or beyond ``OUT_OF_RANGE_LIMIT``: other units or another
  variable; an :class:`OutOfRangeWarning` is emitted), and,
  in error-bounded mode, whenever raw storage is not larger than the bounded encoding.
* ``MODE_BOUNDED`` (2): mode 0 plus the ``residual`` section (:mod:`inrcodec.residual`): with
  ``max_abs_error`` / ``rel_error`` every valid decoded value is within the bound.

Missing values: NaN positions (``nan_mask`` section) and, with ``fill_value=``, positions equal
to the fill value (``fill_mask`` section) are excluded from the fit and from the error bound and
come back bit-exact.
"""

from __future__ import annotations

import base64
import hashlib
import math
import os
import struct
import threading
import warnings
import zlib
from typing import TYPE_CHECKING, Any

import numpy as np
from numcodecs.abc import Codec
from numcodecs.compat import ensure_contiguous_ndarray, ensure_ndarray_like, ndarray_copy

from inrcodec import _limits, _modelcache
from inrcodec.errors import OutOfRangeWarning, PinnedGridError
from inrcodec import chunkformat as cf
from inrcodec import entropy, ratecontrol
from inrcodec import residual as _residual

if TYPE_CHECKING:
    import xarray as xr

    from inrcodec.model import CoinModel

__all__ = ["COINppCodec", "CorruptChunkError", "PinnedModelError", "PinnedGridError", "OutOfRangeWarning",
           "CODEC_ID",
           "OUT_OF_RANGE_LIMIT", "RANGE_MARGIN"]

CODEC_ID = "inrcodec.coinpp"
MODEL_ENCODING = "zlib+base64"
_SUPPORTED_DTYPES = (np.dtype("float32"), np.dtype("float64"))

PinnedModelError = _modelcache.PinnedModelError
CorruptChunkError = cf.CorruptChunkError

#: settings that appear in the configuration only when set (configs of plain codecs stay as before)
_OPTIONAL_SETTINGS = ("max_abs_error", "rel_error", "fill_value", "assume_global_grid", "chunk_shape",
                      "chunk_order", "refine_steps", "target_rmse", "target_ratio")



#: a chunk whose valid values, normalised with the model's statistics (training range -> [0, 1]),
#: fall below ``-OUT_OF_RANGE_LIMIT`` or above ``1 + OUT_OF_RANGE_LIMIT`` is stored raw (lossless)
OUT_OF_RANGE_LIMIT = 10.0
#: a chunk none of whose values come within this many training ranges of the training range is
#: in other units or another variable (Celsius for a Kelvin model): stored raw, with a warning
RANGE_MARGIN = 0.5
#: error-bounded mode codes the latents at ``bits`` and at up to this many minus one smaller
#: widths (those the model has tables for) and keeps the smallest chunk. The narrowest widths
#: often win there (the residual carries the detail), so with the usual tables (1..8 bits)
#: every width up to ``bits`` is tried: each try costs one reconstruction and residual coding,
#: small next to the fit.
BOUNDED_TRIES = 8




def _positive_float(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a positive number or None, got {value!r}")
    value = float(value)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return value


def _encode_model_bytes(data: bytes) -> str:
    return base64.b64encode(zlib.compress(data, 9)).decode("ascii")


def _decode_model_bytes(text: str) -> bytes:
    try:
        return zlib.decompress(base64.b64decode(text.encode("ascii"), validate=True))
    except (ValueError, zlib.error, UnicodeEncodeError) as exc:
        raise PinnedModelError(
            f"the inline model in the codec configuration is not valid {MODEL_ENCODING} data "
            f"({exc}); the store metadata was modified or corrupted"
        ) from None


def _as_shape(values: Any) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f"chunk_shape must be a sequence of ints, got {values!r}") from None
    if any(v < 0 for v in shape):
        raise ValueError(f"chunk_shape must be non-negative, got {shape}")
    return shape


def _as_coord_list(name: str, values: Any) -> list[float] | None:
    if values is None:
        return None
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size < 1:
        raise ValueError(f"{name} must be a 1-D sequence of values, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} values must be finite")
    return [float(v) for v in arr]




class COINppCodec(Codec):
    """COIN++ neural compression of float32/float64 chunks.

    Parameters
    ----------
    model : CoinModel, str, os.PathLike or bytes
        The trained model: a :class:`~inrcodec.model.CoinModel`, the path of a model file, a
        directory holding ``model.safetensors`` (as written by ``inrcodec train-recipe --out DIR``),
        or the model file's bytes.
    bits : int
        Bits per latent value (quantisation, ``2**bits`` bins).
    inner_steps : int
        Gradient steps fitting the latents of each item when encoding.
    lat, lon : sequence of float, optional
        Spherical models: latitude/longitude (degrees) of the chunk's spatial extent, pinned in the
        configuration by ``grid_sha256`` (:class:`PinnedGridError` when edited).
    assume_global_grid : bool
        Spherical models without lat/lon: encode only with this set, which says every chunk is a
        global regular grid (latitude cell centres ``-90+d/2 .. 90-d/2`` ascending, longitude
        ``0 .. 360-d``). Decoding never needs it.
    chunk_shape, chunk_order : optional
        The array's chunk shape and memory order, for readers that pass none (Zarr 2): a chunk of
        another shape raises :class:`CorruptChunkError`; ``for_dataarray(zarr_format=2)`` sets them.
    entropy_coding : bool
        Range-code the symbols with the model's count tables (else store them bit-packed).
    model_sha256 : str, optional
        Pin: the model bytes must hash to this, else :class:`PinnedModelError`.
    max_abs_error : float, optional
        Error-bounded mode: every valid decoded value is within this absolute error (data units)
        of the original. The residual after the neural fit is quantized with a step just under
        ``2 * bound`` and entropy coded into the chunk (:mod:`inrcodec.residual`).
    rel_error : float, optional
        Error-bounded mode, relative: the chunk's bound is ``rel_error * (max - min)`` of the
        chunk's valid values (finite, not NaN, not the fill value). With both options the
        chunk's bound is the smaller of the two.
    fill_value : float, optional
        Values equal to it are missing data, like NaN: masked out of the fit and the error
        bound and restored exactly (e.g. the ``_FillValue`` xarray writes in place of NaN).
    refine_steps : int
        Extra Adam steps on the latents after the ``inner_steps`` meta-learned steps
        (``CoinModel.encode(..., refine_steps=)``): better fits for more encode time.
    target_rmse, target_ratio : float, optional
        Rate control (one of them; not with error-bounded mode): per chunk, the latent width is
        chosen among those the model has tables for -- the fewest bits whose RMSE (data units,
        valid values) is at most ``target_rmse``, or the most bits whose compression ratio is at
        least ``target_ratio`` (:mod:`inrcodec.ratecontrol`); ``bits`` is then unused. The chosen
        width is stored in each chunk.

    In error-bounded mode, ``bits`` is the widest latent width tried: the codec also tries up to
    ``BOUNDED_TRIES - 1`` narrower widths (all of them, with the usual 1..8-bit tables) and the
    residual of the chunk mean without the network
    (chunk mode 3), and keeps the smallest chunk (raw values if smaller still).

    Leading dimensions of a chunk (time, level, member) are independent items; the trailing
    ``model.spatial_ndim`` dimensions are the grid. NaN values are masked out of the fit and come
    back NaN at the same positions. Decoding returns the input's dtype, shape and memory order.
    """

    codec_id = CODEC_ID

    def __init__(
        self,
        model: "CoinModel | str | os.PathLike | bytes",
        bits: int = 6,
        inner_steps: int = 10,
        lat: Any = None,
        lon: Any = None,
        entropy_coding: bool = True,
        model_sha256: str | None = None,
        max_abs_error: float | None = None,
        rel_error: float | None = None,
        fill_value: float | None = None,
        assume_global_grid: bool = False,
        chunk_shape: Any = None,
        chunk_order: str | None = None,
        refine_steps: int = 0,
        target_rmse: float | None = None,
        target_ratio: float | None = None,
    ):
        if isinstance(model, (bytes, bytearray, memoryview)):
            m, data, digest = _modelcache.model_from_bytes(bytes(model), model_sha256)
        elif isinstance(model, (str, os.PathLike)):
            m, data, digest = _modelcache.model_from_path(model)
        elif hasattr(model, "to_bytes") and hasattr(model, "sha256"):
            m, data, digest = _modelcache.register_model(model)
        else:
            raise TypeError(
                "model must be a CoinModel, a model file path, a directory holding "
                f"{_modelcache.MODEL_FILENAME}, or model bytes; got {type(model).__name__}"
            )
        if model_sha256 is not None and digest != str(model_sha256).lower():
            raise PinnedModelError(
                f"the model does not match the pinned hash: model_sha256={model_sha256} but the "
                f"model bytes hash to {digest}"
            )
        if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= int(bits) <= 16:
            raise ValueError(f"bits must be an integer in 1..16, got {bits!r}")
        if isinstance(inner_steps, bool) or not isinstance(inner_steps, (int, np.integer)) or int(inner_steps) < 0:
            raise ValueError(f"inner_steps must be a non-negative integer, got {inner_steps!r}")
        if isinstance(refine_steps, bool) or not isinstance(refine_steps, (int, np.integer)) or int(refine_steps) < 0:
            raise ValueError(f"refine_steps must be a non-negative integer, got {refine_steps!r}")
        self.bits = int(bits)
        self.inner_steps = int(inner_steps)
        self.refine_steps = int(refine_steps)
        self.target_rmse = _positive_float("target_rmse", target_rmse)
        self.target_ratio = _positive_float("target_ratio", target_ratio)
        if self.target_rmse is not None and self.target_ratio is not None:
            raise ValueError("pass target_rmse or target_ratio, not both")
        self.lat = _as_coord_list("lat", lat)
        self.lon = _as_coord_list("lon", lon)
        self.entropy_coding = bool(entropy_coding)
        self.max_abs_error = _positive_float("max_abs_error", max_abs_error)
        self.rel_error = _positive_float("rel_error", rel_error)
        if fill_value is not None:
            if isinstance(fill_value, bool) or not isinstance(fill_value, (int, float, np.integer, np.floating)):
                raise ValueError(f"fill_value must be a number or None, got {fill_value!r}")
            fill_value = float(fill_value)
            if math.isnan(fill_value):
                fill_value = None  # NaN is always treated as missing
        self.fill_value = fill_value
        if self.error_bounded and (self.target_rmse is not None or self.target_ratio is not None):
            raise ValueError(
                "target_rmse/target_ratio do not combine with max_abs_error/rel_error: error-bounded "
                "mode already picks, per chunk, the latent width that gives the smallest chunk"
            )
        if (self.lat is None) != (self.lon is None):
            raise ValueError("pass both lat and lon, or neither (a global regular grid is then assumed)")
        if self.lat is not None and m.grid_kind != "spherical":
            raise ValueError(f"lat/lon only apply to spherical models; this model is {m.grid_kind}")
        if self.lat is not None and any(abs(v) > 90.0 for v in self.lat):
            raise ValueError("latitudes must lie in [-90, 90]")
        self.assume_global_grid = bool(assume_global_grid)
        self.chunk_shape = None if chunk_shape is None else _as_shape(chunk_shape)
        if chunk_order not in (None, "C", "F"):
            raise ValueError(f"chunk_order must be 'C', 'F' or None, got {chunk_order!r}")
        self.chunk_order = chunk_order
        self._model = m
        self._model_bytes = data
        self._sha = digest
        self._lock = _modelcache.model_lock(digest)
        self._grids: dict[tuple[int, ...], Any] = {}
        self._grids_lock = threading.Lock()
        self._pin = cf.model_pin(digest, self._grid_key())

    # ------------------------------------------------------------------ properties
    @property
    def model(self) -> "CoinModel":
        return self._model

    @property
    def model_sha256(self) -> str:
        return self._sha

    @property
    def pin(self) -> bytes:
        """The 4-byte version-3 chunk pin: names the model and the grid this codec decodes on."""
        return self._pin

    def _grid_key(self) -> bytes:
        # Without lat/lon (or with exactly the default ones) the grid is the global regular grid
        # of the chunk's shape, which the chunk header stores. Otherwise the key is defined here,
        # from the coordinate values alone, so that pins of stored chunks never change
        # (docs/format.md, "The pin").
        if self.lat is None:
            return b"regular"
        lat, lon = np.asarray(self.lat, "<f8"), np.asarray(self.lon, "<f8")
        default = self._model.make_grid((lat.size, lon.size))
        if np.array_equal(lat, np.asarray(default.lat, "<f8")) and np.array_equal(lon, np.asarray(default.lon, "<f8")):
            return b"regular"
        return hashlib.sha256(b"lat" + lat.tobytes() + b"lon" + lon.tobytes()).digest()

    @property
    def model_bytes(self) -> bytes:
        """The pinned model file's bytes (what ``model_sha256`` hashes)."""
        return self._model_bytes

    # ------------------------------------------------------------------ config
    @property
    def error_bounded(self) -> bool:
        return self.max_abs_error is not None or self.rel_error is not None

    def settings(self) -> dict[str, Any]:
        """The constructor arguments other than the model (new options only when set)."""
        extra = {k: getattr(self, k) for k in _OPTIONAL_SETTINGS if getattr(self, k) not in (None, False)}
        return {
            "bits": self.bits,
            "inner_steps": self.inner_steps,
            "lat": self.lat,
            "lon": self.lon,
            "entropy_coding": self.entropy_coding,
            **extra,
        }

    @property
    def grid_sha256(self) -> str | None:
        """SHA-256 of the lat/lon values (:meth:`SphericalGrid.digest`), None without lat/lon."""
        if self.lat is None:
            return None
        from inrcodec.grids import SphericalGrid

        return SphericalGrid(self.lat, self.lon).digest()

    def get_config(self) -> dict[str, Any]:
        # the new options appear only when set, so configs of plain codecs stay as before
        grid = {} if self.lat is None else {"grid_sha256": self.grid_sha256}
        return {
            "id": self.codec_id,
            **self.settings(),
            **grid,
            "model_sha256": self._sha,
            "model_encoding": MODEL_ENCODING,
            "model": _encode_model_bytes(self._model_bytes),
        }

    def __reduce__(self):
        # Pickles as (hash, raw model bytes, settings); the receiving process parses the model
        # once per hash (_modelcache), so Dask tasks carrying many codecs stay cheap.
        return _rebuild_codec, (self._sha, self._model_bytes, self.settings())

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "COINppCodec":
        config = dict(config)
        config.pop("id", None)
        if "model_sha256" not in config or "model" not in config:
            raise PinnedModelError(
                "the codec configuration lacks the pinned model ('model_sha256' and 'model' keys)"
            )
        enc = config.pop("model_encoding", MODEL_ENCODING)
        if enc != MODEL_ENCODING:
            raise PinnedModelError(f"unknown model_encoding {enc!r} (expected {MODEL_ENCODING!r})")
        pinned = config.pop("model_sha256")
        data = config.pop("model")
        if not isinstance(data, str):
            raise PinnedModelError("the codec configuration's 'model' must be a base64 string")
        grid_pin = config.pop("grid_sha256", None)
        unknown = sorted(set(config) - _config_keys(cls))
        if unknown:
            raise ValueError(
                f"unknown {CODEC_ID} configuration key(s) {unknown}: written by a newer inrcodec, or "
                "edited; upgrade inrcodec or remove them"
            )
        codec = cls(model=_decode_model_bytes(data), model_sha256=pinned, **config)
        if grid_pin is not None and codec.grid_sha256 != grid_pin:
            raise PinnedGridError(
                f"the codec's lat/lon values hash to {codec.grid_sha256} but the configuration pins "
                f"grid_sha256 {grid_pin}: the store metadata was edited; refusing to decode on another grid"
            )
        return codec

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, COINppCodec):
            return False
        return self._key() == other._key()

    def _key(self) -> tuple:
        return (
            self._sha,
            self.bits,
            self.inner_steps,
            None if self.lat is None else tuple(self.lat),
            None if self.lon is None else tuple(self.lon),
            self.entropy_coding,
            self.max_abs_error,
            self.rel_error,
            self.fill_value,
            self.assume_global_grid,
            self.chunk_shape,
            self.chunk_order,
            self.refine_steps,
            self.target_rmse,
            self.target_ratio,
        )

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        grid = "global-regular" if self.lat is None else f"lat[{len(self.lat)}] lon[{len(self.lon)}]"
        grid_s = f", grid={grid}" if self._model.grid_kind == "spherical" else ""
        extra = "".join(f", {k}={v!r}" for k, v in self.settings().items()
                        if k in _OPTIONAL_SETTINGS)
        return (
            f"COINppCodec(model=sha256:{self._sha[:12]}, bits={self.bits}, "
            f"inner_steps={self.inner_steps}{grid_s}, entropy_coding={self.entropy_coding}{extra})"
        )

    # ------------------------------------------------------------------ grids
    def _grid(self, spatial: tuple[int, ...]):
        with self._grids_lock:
            g = self._grids.get(spatial)
        if g is not None:
            return g
        m = self._model
        if m.grid_kind == "spherical" and self.lat is not None:
            if (len(self.lat), len(self.lon)) != tuple(spatial):
                raise ValueError(
                    f"the chunk's spatial shape {spatial} does not match the codec's "
                    f"lat[{len(self.lat)}] x lon[{len(self.lon)}]: a COINppCodec with lat/lon "
                    "describes one spatial extent, so chunk only along the leading (e.g. time) "
                    "dimensions or pass the lat/lon of a single spatial chunk"
                )
            g = m.make_grid(spatial, lat=np.asarray(self.lat), lon=np.asarray(self.lon))
        else:  # cartesian, or spherical without lat/lon: a global regular grid of the chunk's shape
            g = m.make_grid(spatial)
        with self._grids_lock:
            self._grids.setdefault(spatial, g)
        return g

    # ------------------------------------------------------------------ encode
    def _check_input(self, buf) -> np.ndarray:
        if isinstance(buf, np.ndarray) and buf.dtype == object:
            raise TypeError("COINppCodec cannot encode object arrays; it encodes float32/float64 arrays")
        arr = ensure_ndarray_like(buf)
        if not isinstance(arr, np.ndarray):
            arr = np.asarray(arr)
        if arr.dtype == object:
            raise TypeError("COINppCodec cannot encode object arrays; it encodes float32/float64 arrays")
        if arr.dtype.newbyteorder("=") not in _SUPPORTED_DTYPES or arr.dtype.kind != "f":
            extra = ""
            if arr.dtype == np.uint8 and arr.ndim == 1 and not isinstance(buf, np.ndarray):
                extra = (
                    " (a raw byte buffer was given: the codec needs the chunk as an ndarray of "
                    "its shape, as zarr passes it)"
                )
            raise TypeError(f"COINppCodec encodes float32 or float64 arrays, got dtype {arr.dtype}{extra}")
        nd = self._model.spatial_ndim
        if arr.ndim < nd:
            raise ValueError(
                f"the model is {nd}-D ({self._model.grid_kind}); a chunk needs at least {nd} "
                f"dimensions, got shape {arr.shape}"
            )
        if self._model.grid_kind == "spherical" and self.lat is None and not self.assume_global_grid:
            raise ValueError(
                "this spherical codec has no lat/lon: pass lat=/lon= (the chunk's coordinates, or use "
                "COINppCodec.for_dataarray), or assume_global_grid=True if every chunk is a global "
                "regular grid with ascending latitudes"
            )
        return arr

    def chunk_bound(self, valid_values: np.ndarray) -> float | None:
        """The absolute error bound for a chunk whose valid values are ``valid_values`` (None: no bound).

        ``min(max_abs_error, rel_error * (max - min))`` over the options that are set.
        """
        if not self.error_bounded:
            return None
        bounds = []
        if self.max_abs_error is not None:
            bounds.append(self.max_abs_error)
        if self.rel_error is not None and valid_values.size:
            v = np.asarray(valid_values, dtype=np.float64)
            bounds.append(self.rel_error * float(v.max() - v.min()))
        b = min(bounds) if bounds else 0.0
        return b if b > 0 and math.isfinite(b) else None

    def _reconstruct(self, latents: np.ndarray, spatial: tuple[int, ...]) -> np.ndarray:
        """The network reconstruction (float64, physical units) of dequantized latents.

        The one function the encoder (error-bounded mode) and the decoder both use, with the
        same latents array shape, so both run the same CPU float32 computation.
        """
        grid = self._grid(spatial)
        with self._lock:
            return np.asarray(self._model.decode(latents, grid), dtype=np.float64)

    def _raw_chunk(self, arr: np.ndarray, common: dict) -> bytes:
        hdr = cf.ChunkHeader(
            mode=cf.MODE_RAW, patch_shape=None, num_items=None, num_patches=None, latent_dim=None,
            bits=0, quantizer_id=0, entropy_id=0, **common,
        )
        return cf.pack_chunk(hdr, {"raw_values": zlib.compress(arr.tobytes(order=common["order"]), 6)})

    def encode(self, buf) -> bytes:
        arr = self._check_input(buf)
        order = "F" if (arr.ndim > 1 and arr.flags.f_contiguous and not arr.flags.c_contiguous) else "C"
        shape = tuple(int(s) for s in arr.shape)
        nd = self._model.spatial_ndim
        spatial = shape[arr.ndim - nd :]
        common = dict(model_sha256=None, pin=self._pin, dtype=arr.dtype.str, shape=shape, order=order)
        if arr.size == 0:  # nothing to fit: an empty raw chunk (any empty shape round-trips)
            return self._raw_chunk(arr, common)
        # index (logical) order: items along the leading dims; memory order does not matter here
        items = np.ascontiguousarray(arr).reshape((-1, *spatial))
        nan = np.isnan(items)
        has_nan = bool(nan.any())
        fill = None
        if self.fill_value is not None:
            fill = items == self.fill_value
            if not fill.any():
                fill = None
        missing = nan if fill is None else (nan | fill)
        has_missing = has_nan or fill is not None
        finite = items[~missing] if has_missing else items.ravel()
        if (
            items.size == 0
            or arr.size == 0
            or finite.size == 0
            or not bool(np.isfinite(finite).all())
            or bool(finite.min() == finite.max())
        ):
            return self._raw_chunk(arr, common)
        m = self._model
        why = _out_of_range(float(finite.min()), float(finite.max()), m.offset, m.scale)
        if why:
            units = (m.description or {}).get("units")
            expects = f"[{m.offset:g}, {m.offset + m.scale:g}]" + (f" {units}" if units else "")
            warnings.warn(
                f"chunk values [{float(finite.min()):g}, {float(finite.max()):g}] {why} the model's "
                f"training range {expects} (wrong units or variable?); the chunk is stored raw "
                "(lossless) instead",
                OutOfRangeWarning, stacklevel=2,
            )
            return self._raw_chunk(arr, common)
        bound = self.chunk_bound(finite)

        valid_items = ~missing.reshape(items.shape[0], -1).all(axis=1)
        grid = self._grid(spatial)
        values = items[valid_items]
        mask = ~missing[valid_items] if has_missing else None
        with self._lock:
            latents = m.encode(values, grid, steps=self.inner_steps, mask=mask,
                             refine_steps=self.refine_steps)
        cands = _LatentCandidates(self, np.asarray(latents, dtype=np.float32), spatial)
        masks = {}
        if has_nan:
            masks["nan_mask"] = zlib.compress(np.packbits(nan.ravel()).tobytes(), 9)
        if fill is not None:
            masks["fill_mask"] = struct.pack("<d", self.fill_value) + zlib.compress(
                np.packbits(fill.ravel()).tobytes(), 9
            )
        flags = cf.FLAG_NAN_MASK if has_nan else 0
        valid = mask if mask is not None else np.ones(values.shape, dtype=bool)

        def chunk_for(bits: int, mode: int = cf.MODE_MODULATIONS, extra: dict | None = None) -> bytes:
            qid, eid, payload = cands.coded(bits)
            hdr = cf.ChunkHeader(
                mode=mode, patch_shape=None, num_items=None, num_patches=None, latent_dim=None,
                bits=bits, quantizer_id=qid, entropy_id=eid, flags=flags, **common,
            )  # version 3: patches, items and latent size are implied by the model and the masks
            return cf.pack_chunk(hdr, {"latents": payload, **masks, **(extra or {})})

        if bound is None:
            if self.target_rmse is None and self.target_ratio is None:
                return chunk_for(self.bits)
            bits = ratecontrol.bits_for_target(
                ratecontrol.candidate_bits(m), target_rmse=self.target_rmse,
                target_ratio=self.target_ratio, rmse_of=lambda b: cands.rmse(b, values, valid),
                ratio_of=lambda b: arr.nbytes / len(chunk_for(b)),
            )
            return chunk_for(bits)

        # error-bounded: every candidate width meets the bound; keep the smallest chunk, and
        # fall back to the residual of a constant prediction (no network) or raw values
        def bounded(bits: int) -> bytes:
            res = _residual.encode_residual(values, cands.recon(bits), valid, bound, arr.dtype)
            return chunk_for(bits, cf.MODE_BOUNDED, {"residual": res.payload})

        chunks = {b: bounded(b) for b in self._bounded_widths()}
        best = chunks[ratecontrol.smallest(chunks, lambda b: len(chunks[b]))]
        plain = self._plain_residual_chunk(values, valid, bound, arr.dtype, masks, flags, common)
        chunk = plain if len(plain) <= len(best) else best
        raw = self._raw_chunk(arr, common)
        if len(raw) <= len(chunk):
            return raw
        # end-to-end check of the actual bytes through the real decoder (never expected to fail)
        y = self.decode(chunk)
        y64 = np.ascontiguousarray(y).reshape(items.shape).astype(np.float64)
        x64 = items.astype(np.float64)
        with np.errstate(invalid="ignore"):
            bad = ~missing & ~(np.abs(y64 - x64) <= bound)
        if bad.any() or not np.array_equal(np.isnan(y64), nan):
            warnings.warn(
                f"error-bounded chunk failed its decode check at {int(bad.sum())} values; "
                "stored raw (lossless) instead. Please report this as a bug.",
                RuntimeWarning, stacklevel=2,
            )
            return raw
        return chunk

    def _bounded_widths(self) -> list[int]:
        """Bounded mode tries ``bits`` and up to ``BOUNDED_TRIES - 1`` smaller widths with tables."""
        below = [b for b in ratecontrol.candidate_bits(self._model) if b < self.bits]
        return below[-(BOUNDED_TRIES - 1):] + [self.bits] if BOUNDED_TRIES > 1 else [self.bits]

    def _plain_residual_chunk(self, values, valid, bound, dtype, masks, flags, common) -> bytes:
        """Mode 3: the residual of the chunk's mean (no network): what bounded mode never exceeds."""
        prediction = float(np.mean(values[valid], dtype=np.float64))
        res = _residual.encode_residual(values, np.full(values.shape, prediction), valid, bound, dtype)
        hdr = cf.ChunkHeader(
            mode=cf.MODE_PLAIN_RESIDUAL, patch_shape=None, num_items=None, num_patches=None,
            latent_dim=None, bits=0, quantizer_id=0, entropy_id=0, flags=flags, **common,
        )
        return cf.pack_chunk(hdr, {**masks, "residual": res.payload,
                                   "prediction": struct.pack("<d", prediction)})

    # ------------------------------------------------------------------ decode
    def decode(self, buf, out=None):
        """Decode chunk bytes (numcodecs API). With ``out``, the chunk must fill it exactly; with
        ``chunk_shape`` configured (Zarr 2 arrays), the chunk must have that shape."""
        expect_shape = self.chunk_shape
        expect_dtype = None
        if out is not None:
            if not isinstance(out, np.ndarray):
                out = ensure_ndarray_like(out)
            if out.dtype.kind != "f" or out.dtype.itemsize not in (4, 8):
                raise TypeError(f"out= must be a float32 or float64 array, got dtype {out.dtype}")
            expect_dtype = out.dtype
        result = self.decode_chunk(buf, shape=expect_shape, dtype=expect_dtype,
                                   nbytes=None if out is None else out.nbytes)
        if out is not None:
            return ndarray_copy(result, out)
        return result

    def decode_chunk(self, buf, shape=None, dtype=None, nbytes=None) -> np.ndarray:
        """Decode chunk bytes that must fill an array chunk of ``shape`` / ``dtype`` / ``nbytes``.

        The header is checked against these before anything is allocated; a chunk that does not
        fit (another array's chunk file, a short chunk in a longer slot) raises
        :class:`CorruptChunkError`. Readers that know their chunk (the Zarr 3 codec, the HDF5
        filter) call this.
        """
        if isinstance(buf, np.ndarray) and buf.dtype == object:
            raise TypeError("COINppCodec decodes chunk bytes, not object arrays")
        hdr, sections = cf.unpack_chunk(ensure_contiguous_ndarray(buf))
        if hdr.pin is not None and hdr.pin != self._pin:
            raise CorruptChunkError(
                f"chunk pin {hdr.pin.hex()} does not match this codec's pin {self._pin.hex()} "
                f"(model sha256 {self._sha}, {'lat/lon grid' if self.lat else 'regular grid'}): "
                "it was written with another model or grid; refusing to decode it"
            )
        if hdr.model_sha256 is not None and hdr.model_sha256 != self._sha:
            raise CorruptChunkError(
                f"chunk was encoded with model sha256 {hdr.model_sha256}, but this codec's model "
                f"is sha256 {self._sha}; refusing to decode it with a different model"
            )
        cdtype = np.dtype(hdr.dtype)
        cshape = tuple(hdr.shape)
        n = math.prod(cshape)
        if shape is not None and cshape != tuple(int(s) for s in shape):
            raise CorruptChunkError(
                f"chunk holds shape {cshape} but the array chunk it fills is {tuple(shape)} "
                "(a chunk file of another array or position?)"
            )
        if dtype is not None and cdtype.itemsize != np.dtype(dtype).itemsize:
            raise CorruptChunkError(f"chunk holds {cdtype} values but the array is {np.dtype(dtype)}")
        if nbytes is not None and n * cdtype.itemsize != int(nbytes):
            raise CorruptChunkError(
                f"chunk decodes to {n * cdtype.itemsize} bytes (shape {cshape}, {cdtype}) but the "
                f"buffer it fills holds {int(nbytes)}"
            )
        if shape is None and nbytes is None and n * cdtype.itemsize > _limits.MAX_UNPINNED_CHUNK_BYTES:
            raise CorruptChunkError(
                f"chunk declares {n * cdtype.itemsize} decoded bytes (shape {cshape}); refusing "
                "without a known chunk shape (pass out= or decode through zarr/HDF5)"
            )
        if hdr.mode == cf.MODE_RAW:
            raw = _limits.inflate(sections.get("raw_values", b""), n * cdtype.itemsize,
                                  "raw chunk values", CorruptChunkError)
            result = np.frombuffer(raw, dtype=cdtype).reshape(cshape, order=hdr.order).copy(order="A")
        elif hdr.mode in (cf.MODE_MODULATIONS, cf.MODE_BOUNDED, cf.MODE_PLAIN_RESIDUAL):
            result = self._decode_modulations(hdr, sections, cshape, cdtype, hdr.order)
        else:  # pragma: no cover - unpack_chunk rejects unknown modes
            raise CorruptChunkError(f"unknown chunk mode {hdr.mode}")
        if self.chunk_order is not None and result.ndim > 1:
            result = np.asfortranarray(result) if self.chunk_order == "F" else np.ascontiguousarray(result)
        return result

    def _decode_modulations(self, hdr, sections, shape, dtype, order) -> np.ndarray:
        nd = self._model.spatial_ndim
        if len(shape) < nd:
            raise CorruptChunkError(f"chunk shape {shape} has fewer than the model's {nd} spatial dims")
        spatial = shape[len(shape) - nd :]
        n_total = math.prod(shape[: len(shape) - nd])
        # every count is checked against the others and against the bytes present before any
        # array of that size exists (hostile headers must not cost memory)
        if min(spatial, default=1) < 1:
            raise CorruptChunkError(f"chunk shape {shape} has an empty spatial dimension")
        has_fill = "fill_mask" in sections
        legacy = hdr.num_items is not None  # versions 1 and 2 store the counts, version 3 derives them
        if legacy and (hdr.num_items > n_total or (not (hdr.has_nan_mask or has_fill) and hdr.num_items != n_total)):
            raise CorruptChunkError(f"chunk header declares {hdr.num_items} items for shape {shape}")
        if self._model.grid_kind == "spherical":  # the grid is built (lat/lon values) before patching
            if self.lat is not None and tuple(spatial) != (len(self.lat), len(self.lon)):
                raise CorruptChunkError(
                    f"chunk's spatial shape {spatial} is not the codec's lat[{len(self.lat)}] x lon[{len(self.lon)}]"
                )
            if max(spatial) > _limits.MAX_GRID_SIDE:
                raise CorruptChunkError(f"chunk's spatial shape {spatial} exceeds {_limits.MAX_GRID_SIDE} points per side")
        plain = hdr.mode == cf.MODE_PLAIN_RESIDUAL  # no latents: a constant prediction + residual
        tables, expect_patches = {}, 0
        if not plain:
            # the patch count without building the partition (one entry per patch)
            expect_patches = _limits.num_patches(spatial, self._model.patch_points(self._grid(spatial)))
            if legacy and (hdr.num_patches, hdr.latent_dim) != (expect_patches, self._model.latent_dim):
                raise CorruptChunkError(
                    f"chunk header (patches, latent_dim)=({hdr.num_patches}, {hdr.latent_dim}) does not "
                    f"match this chunk and model: ({expect_patches}, {self._model.latent_dim})"
                )
            if hdr.quantizer_id != 1:
                raise CorruptChunkError(f"unknown quantizer_id {hdr.quantizer_id}")
            if not 1 <= hdr.bits <= 16:
                raise CorruptChunkError(f"chunk header declares bits={hdr.bits} (1..16 allowed)")
            tables = {m.entropy_id: m for m in self._model.entropy_models(hdr.bits)}
        if hdr.mode in (cf.MODE_BOUNDED, cf.MODE_PLAIN_RESIDUAL) and "residual" not in sections:  # pragma: no cover
            raise CorruptChunkError("error-bounded chunk without a residual section")
        nan = None
        if hdr.has_nan_mask:
            nan = _unpack_mask(sections["nan_mask"], "NaN mask", (n_total, *spatial))
        fill = fill_value = None
        if has_fill:
            blob = sections["fill_mask"]
            if len(blob) < 8:
                raise CorruptChunkError("fill_mask section is shorter than its 8-byte fill value")
            (fill_value,) = struct.unpack("<d", blob[:8])
            fill = _unpack_mask(blob[8:], "fill mask", (n_total, *spatial))
        missing = nan if fill is None else (fill if nan is None else nan | fill)
        if missing is not None:
            valid_items = ~missing.reshape(n_total, -1).all(axis=1)
        else:
            valid_items = np.ones(n_total, dtype=bool)
        n_items = int(valid_items.sum())
        if legacy:
            part = self._model.partition(self._grid(spatial))
            expect = (n_items, part.num_patches, self._model.latent_dim, tuple(part.patch_shape))
            got = (hdr.num_items, hdr.num_patches, hdr.latent_dim, tuple(hdr.patch_shape))
            if got != expect:
                raise CorruptChunkError(
                    f"chunk header (items, patches, latent_dim, patch_shape)={got} does not match "
                    f"this chunk and model: {expect}"
                )
        payload = sections.get("latents", b"")
        n_sym = n_items * expect_patches
        if not plain and hdr.entropy_id in tables and len(payload) < _limits.min_coded_bytes(
                tables[hdr.entropy_id], n_sym, self._model.latent_dim):
            raise CorruptChunkError(
                f"latents section of {len(payload)} bytes is too short for the "
                f"{n_sym * self._model.latent_dim} symbols this chunk needs"
            )
        items = np.full((n_total, *spatial), np.nan, dtype=dtype.newbyteorder("="))
        if n_items:
            if plain:
                rec = np.full((n_items, *spatial), _prediction(sections["prediction"]))
            else:
                latents = self._latents_of(hdr, sections, n_items, expect_patches)
                rec = self._reconstruct(latents, spatial).reshape((n_items, *spatial))
            if hdr.mode in (cf.MODE_BOUNDED, cf.MODE_PLAIN_RESIDUAL):
                try:
                    rec = _residual.decode_residual(sections["residual"], rec, dtype)
                except _residual.ResidualError as exc:
                    raise CorruptChunkError(f"residual section: {exc}") from None
            items[valid_items] = rec
        if nan is not None:
            items[nan] = np.nan
        if fill is not None:
            items[fill] = fill_value
        result = items.reshape(shape).astype(dtype, copy=False)
        return np.asfortranarray(result) if order == "F" else np.ascontiguousarray(result)

    def _latents_of(self, hdr, sections, n_items: int, num_patches: int) -> np.ndarray:
        """The dequantized latents (n_items, num_patches, latent_dim) of a mode-0/2 chunk."""
        if hdr.quantizer_id != 1:
            raise CorruptChunkError(f"unknown quantizer_id {hdr.quantizer_id}")
        tables = {m.entropy_id: m for m in self._model.entropy_models(hdr.bits)}
        try:
            symbols = entropy.decode_symbols(
                hdr.entropy_id, sections.get("latents", b""),
                (n_items * num_patches, self._model.latent_dim), hdr.bits, tables,
            )
            latents = self._model.quantizer(hdr.bits).dequantize(symbols)
        except ValueError as exc:
            raise CorruptChunkError(f"latent symbols do not decode: {exc}") from None
        return latents.reshape(n_items, num_patches, self._model.latent_dim)

    # ------------------------------------------------------------------ xarray helper
    @classmethod
    def for_dataarray(
        cls,
        da: "xr.DataArray",
        model: "CoinModel | str | os.PathLike | bytes",
        bits: int = 6,
        inner_steps: int = 10,
        zarr_format: int = 3,
        chunks: Any = None,
        entropy_coding: bool = True,
        max_abs_error: float | None = None,
        rel_error: float | None = None,
        fill_value: float | None = None,
        assume_global_grid: bool = False,
        refine_steps: int = 0,
        target_rmse: float | None = None,
        target_ratio: float | None = None,
    ) -> dict[str, Any]:
        """The ``encoding`` entry for ``da`` in ``ds.to_zarr(store, encoding={name: ...})``.

        Chunks come from ``chunks`` (a tuple, or a dict dim -> size), else ``da.encoding["chunks"]``,
        else the dask chunks, else one chunk. Spherical models read lat/lon from the coordinates
        of the last two dimensions and need each chunk to span the whole lat/lon extent.
        ``max_abs_error`` / ``rel_error`` / ``fill_value`` / ``refine_steps`` / ``target_rmse`` /
        ``target_ratio``: see the class. ``fill_value`` defaults to
        ``da.encoding["_FillValue"]`` when that is set (xarray writes it in place of NaN); when you
        add ``"_FillValue"`` to the returned encoding yourself, pass the same number here.
        """
        if fill_value is None:
            fv = da.encoding.get("_FillValue")
            if isinstance(fv, (int, float, np.integer, np.floating)) and not isinstance(fv, bool):
                fill_value = float(fv)
        return _encoding_for(
            cls, da, model, bits=bits, inner_steps=inner_steps, zarr_format=zarr_format,
            chunks=chunks, entropy_coding=entropy_coding, max_abs_error=max_abs_error,
            rel_error=rel_error, fill_value=fill_value, assume_global_grid=assume_global_grid,
            refine_steps=refine_steps, target_rmse=target_rmse, target_ratio=target_ratio,
        )


def _uniform_chunks(da, chunks) -> tuple[int, ...]:
    dims = tuple(da.dims)
    shape = tuple(int(s) for s in da.shape)
    if chunks is None:
        chunks = da.encoding.get("chunks")
    if chunks is None and da.chunks is not None:
        per_dim = da.chunks  # dask: tuple of tuples
        out = []
        for d, c in zip(dims, per_dim):
            if len(set(c[:-1])) > 1 or (len(c) > 1 and c[-1] > c[0]):
                raise ValueError(
                    f"dimension {d!r} has irregular dask chunks {c}; rechunk to a uniform size "
                    "(or pass chunks=...) before writing to Zarr"
                )
            out.append(int(c[0]))
        return tuple(out)
    if chunks is None:
        return shape
    if isinstance(chunks, dict):
        return tuple(int(chunks.get(d, n)) if chunks.get(d, n) not in (None, -1) else n
                     for d, n in zip(dims, shape))
    chunks = tuple(chunks)
    if len(chunks) != len(dims):
        raise ValueError(f"chunks {chunks} has {len(chunks)} entries for {len(dims)} dims {dims}")
    return tuple(n if c in (None, -1) else int(c) for c, n in zip(chunks, shape))


def _encoding_for(cls, da, model, *, bits, inner_steps, zarr_format, chunks, entropy_coding,
                  max_abs_error=None, rel_error=None, fill_value=None, assume_global_grid=False, **options):
    if zarr_format not in (2, 3):
        raise ValueError(f"zarr_format must be 2 or 3, got {zarr_format!r}")
    if da.dtype not in _SUPPORTED_DTYPES:
        raise TypeError(f"COINppCodec encodes float32/float64 variables; {da.name!r} is {da.dtype}")
    if isinstance(model, (str, os.PathLike)):
        model = _modelcache.model_from_path(model)[0]
    elif isinstance(model, (bytes, bytearray, memoryview)):
        model = _modelcache.model_from_bytes(bytes(model))[0]
    nd = model.spatial_ndim
    dims = tuple(da.dims)
    if da.ndim < nd:
        raise ValueError(f"{da.name!r} has dims {dims}; the model needs {nd} spatial (trailing) dims")
    chunk_shape = _uniform_chunks(da, chunks)
    spatial_dims = dims[da.ndim - nd :]
    lat = lon = None
    if model.grid_kind == "spherical":
        for d, c, n in zip(spatial_dims, chunk_shape[da.ndim - nd :], da.shape[da.ndim - nd :]):
            if c < n:
                raise ValueError(
                    f"{da.name!r} is chunked along {d!r} ({c} of {n}); a spherical COIN++ codec "
                    f"describes one lat/lon extent and cannot know the coordinates of each spatial "
                    f"chunk. Chunk only along the leading dimensions (e.g. time: "
                    f"chunks={{{', '.join(repr(x) + ': ...' for x in dims[: da.ndim - nd])}}}) "
                    f"with the whole {spatial_dims} extent in each chunk, or write each spatial "
                    f"region to its own array with its own codec"
                )
        dlat, dlon = spatial_dims
        if dlat in da.coords and dlon in da.coords:
            lat = np.asarray(da[dlat].values, dtype=np.float64)
            lon = np.asarray(da[dlon].values, dtype=np.float64)
            if lat.ndim != 1 or lon.ndim != 1:
                raise ValueError(f"coordinates {dlat!r}/{dlon!r} must be 1-D latitude/longitude in degrees")
            if np.any(np.abs(lat) > 90.0):
                raise ValueError(
                    f"coordinate {dlat!r} has values outside [-90, 90]: the last two dims of "
                    f"{da.name!r} must be latitude, longitude (in that order, degrees)"
                )
        elif not assume_global_grid:
            raise ValueError(
                f"{da.name!r} has no {dlat!r}/{dlon!r} coordinates for this spherical model; add them, "
                "or pass assume_global_grid=True if it is a global regular grid with ascending latitudes"
            )
    # Zarr 2 hands the codec no chunk shape: pin it in the config, so a chunk file of another
    # array is refused instead of reshaped (Zarr 3 and HDF5 pass the shape to decode_chunk)
    pin = dict(chunk_shape=chunk_shape, chunk_order="C") if zarr_format == 2 else {}
    codec = cls(model, bits=bits, inner_steps=inner_steps, lat=lat, lon=lon, entropy_coding=entropy_coding,
                max_abs_error=max_abs_error, rel_error=rel_error, fill_value=fill_value,
                assume_global_grid=assume_global_grid, **pin, **options)
    if zarr_format == 2:
        return {"compressors": [codec], "filters": None, "chunks": chunk_shape}
    from inrcodec.zarr3 import COINppZarr3Codec

    return {"serializer": COINppZarr3Codec(codec=codec), "compressors": None, "filters": None,
            "chunks": chunk_shape}


def _config_keys(cls) -> set[str]:
    """The configuration keys ``from_config`` accepts: the constructor's settings."""
    import inspect

    return set(inspect.signature(cls.__init__).parameters) - {"self", "model", "model_sha256"}


def _out_of_range(lo: float, hi: float, offset: float, scale: float) -> str:
    """Why a chunk with values in [lo, hi] cannot be a field the model was trained on ('' if it can).

    Data in other units (Celsius for a Kelvin model, hPa for Pa) lies beside the training range:
    a chunk none of whose values come within ``RANGE_MARGIN`` training ranges of it is refused.
    """
    lo_n, hi_n = (lo - offset) / scale, (hi - offset) / scale
    if lo_n < -OUT_OF_RANGE_LIMIT or hi_n > 1.0 + OUT_OF_RANGE_LIMIT:
        return f"lie more than {OUT_OF_RANGE_LIMIT:g} training ranges outside"
    if hi_n < -RANGE_MARGIN or lo_n > 1.0 + RANGE_MARGIN:
        return f"do not come within {RANGE_MARGIN:g} training ranges of"
    return ""


def _rebuild_codec(sha: str, data: bytes, settings: dict[str, Any]) -> COINppCodec:
    model = _modelcache.model_from_bytes(data, sha)[0]
    return COINppCodec(model, model_sha256=sha, **settings)


def _unpack_mask(blob: bytes, what: str, shape: tuple[int, ...]) -> np.ndarray:
    """A zlib-compressed, bit-packed boolean mask section of ``shape``; CorruptChunkError if not."""
    count = math.prod(shape)
    packed = np.frombuffer(_limits.inflate(blob, (count + 7) // 8, what, CorruptChunkError), dtype=np.uint8)
    return np.unpackbits(packed, count=count).astype(bool).reshape(shape)


def _prediction(blob: bytes) -> float:
    """The f64 constant of a mode-3 chunk's ``prediction`` section; CorruptChunkError if not."""
    if len(blob) != 8:
        raise CorruptChunkError(f"prediction section holds {len(blob)} bytes, expected 8")
    (value,) = struct.unpack("<d", blob)
    if not math.isfinite(value):
        raise CorruptChunkError(f"prediction section holds a non-finite value {value!r}")
    return value


class _LatentCandidates:
    """The fitted latents of one chunk, coded at any bit width on demand (memoised per width)."""

    def __init__(self, codec: COINppCodec, latents: np.ndarray, spatial: tuple[int, ...]):
        self._codec, self._latents, self._spatial = codec, latents, spatial
        self._coded: dict[int, tuple] = {}
        self._recon: dict[int, np.ndarray] = {}

    def _quantized(self, bits: int) -> tuple:
        if bits not in self._coded:
            m = self._codec.model
            q = m.quantizer(bits)
            symbols = q.quantize(self._latents.reshape(-1, self._latents.shape[-1]))
            tables = m.entropy_models(bits) if self._codec.entropy_coding else []
            eid, payload = entropy.encode_symbols(symbols, bits, tables)
            self._coded[bits] = (q, symbols, eid, payload)
        return self._coded[bits]

    def coded(self, bits: int) -> tuple[int, int, bytes]:
        """(quantizer_id, entropy_id, latents section payload) at ``bits``."""
        q, _, eid, payload = self._quantized(bits)
        return q.quantizer_id, eid, payload

    def recon(self, bits: int) -> np.ndarray:
        """The reconstruction from the dequantized latents, exactly as the decoder computes it."""
        if bits not in self._recon:
            q, symbols, _, _ = self._quantized(bits)
            deq = q.dequantize(symbols).reshape(self._latents.shape)
            self._recon[bits] = self._codec._reconstruct(deq, self._spatial)
        return self._recon[bits]

    def rmse(self, bits: int, values: np.ndarray, valid: np.ndarray) -> float:
        """RMSE (data units) of the reconstruction at ``bits`` over the valid values."""
        err = self.recon(bits).reshape(values.shape)[valid] - values[valid].astype(np.float64)
        return float(np.sqrt(np.mean(err * err)))
