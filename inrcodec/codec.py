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
  containing +-inf, or with values far outside the model's training range (more than
  ``OUT_OF_RANGE_LIMIT`` training ranges away; an :class:`OutOfRangeWarning` is emitted), and,
  in error-bounded mode, whenever raw storage is not larger than the bounded encoding.
* ``MODE_BOUNDED`` (2): mode 0 plus the ``residual`` section (:mod:`inrcodec.residual`): with
  ``max_abs_error`` / ``rel_error`` every valid decoded value is within the bound.

Missing values: NaN positions (``nan_mask`` section) and, with ``fill_value=``, positions equal
to the fill value (``fill_mask`` section) are excluded from the fit and from the error bound and
come back bit-exact.
"""

from __future__ import annotations

import base64
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

from inrcodec import _modelcache
from inrcodec import chunkformat as cf
from inrcodec import entropy
from inrcodec import residual as _residual

if TYPE_CHECKING:
    import xarray as xr

    from inrcodec.model import CoinModel

__all__ = ["COINppCodec", "CorruptChunkError", "PinnedModelError", "OutOfRangeWarning", "CODEC_ID",
           "OUT_OF_RANGE_LIMIT"]

CODEC_ID = "inrcodec.coinpp"
MODEL_ENCODING = "zlib+base64"
_SUPPORTED_DTYPES = (np.dtype("float32"), np.dtype("float64"))

PinnedModelError = _modelcache.PinnedModelError
CorruptChunkError = cf.CorruptChunkError

#: a chunk whose valid values, normalised with the model's statistics (training range -> [0, 1]),
#: fall below ``-OUT_OF_RANGE_LIMIT`` or above ``1 + OUT_OF_RANGE_LIMIT`` is stored raw (lossless)
OUT_OF_RANGE_LIMIT = 10.0


class OutOfRangeWarning(UserWarning):
    """A chunk's values lie far outside the model's training range (e.g. Pa for a model trained
    in K); the chunk was stored raw (lossless) instead of with the neural codec."""


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
        Spherical models: latitude/longitude (degrees) of the chunk's spatial extent. Without
        them a global regular grid of the chunk's shape is assumed (latitude cell centres
        ``-90+d/2 .. 90-d/2``, longitude ``0 .. 360-d``).
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
        self.bits = int(bits)
        self.inner_steps = int(inner_steps)
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
        if (self.lat is None) != (self.lon is None):
            raise ValueError("pass both lat and lon, or neither (a global regular grid is then assumed)")
        if self.lat is not None and m.grid_kind != "spherical":
            raise ValueError(f"lat/lon only apply to spherical models; this model is {m.grid_kind}")
        if self.lat is not None and any(abs(v) > 90.0 for v in self.lat):
            raise ValueError("latitudes must lie in [-90, 90]")
        self._model = m
        self._model_bytes = data
        self._sha = digest
        self._lock = _modelcache.model_lock(digest)
        self._grids: dict[tuple[int, ...], Any] = {}
        self._grids_lock = threading.Lock()

    # ------------------------------------------------------------------ properties
    @property
    def model(self) -> "CoinModel":
        return self._model

    @property
    def model_sha256(self) -> str:
        return self._sha

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
        extra = {k: getattr(self, k) for k in ("max_abs_error", "rel_error", "fill_value")
                 if getattr(self, k) is not None}
        return {
            "bits": self.bits,
            "inner_steps": self.inner_steps,
            "lat": self.lat,
            "lon": self.lon,
            "entropy_coding": self.entropy_coding,
            **extra,
        }

    def get_config(self) -> dict[str, Any]:
        # the new options appear only when set, so configs of plain codecs stay as before
        return {
            "id": self.codec_id,
            **self.settings(),
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
        return cls(model=_decode_model_bytes(data), model_sha256=pinned, **config)

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
        )

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        grid = "global-regular" if self.lat is None else f"lat[{len(self.lat)}] lon[{len(self.lon)}]"
        grid_s = f", grid={grid}" if self._model.grid_kind == "spherical" else ""
        extra = "".join(f", {k}={getattr(self, k)!r}" for k in ("max_abs_error", "rel_error", "fill_value")
                        if getattr(self, k) is not None)
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
            mode=cf.MODE_RAW, patch_shape=(), num_items=0, num_patches=0, latent_dim=0,
            bits=0, quantizer_id=0, entropy_id=0, **common,
        )
        return cf.pack_chunk(hdr, {"raw_values": zlib.compress(arr.tobytes(order=common["order"]), 6)})

    def encode(self, buf) -> bytes:
        arr = self._check_input(buf)
        order = "F" if (arr.ndim > 1 and arr.flags.f_contiguous and not arr.flags.c_contiguous) else "C"
        shape = tuple(int(s) for s in arr.shape)
        nd = self._model.spatial_ndim
        spatial = shape[arr.ndim - nd :]
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
        common = dict(model_sha256=self._sha, dtype=arr.dtype.str, shape=shape, order=order)
        if (
            items.size == 0
            or finite.size == 0
            or not bool(np.isfinite(finite).all())
            or bool(finite.min() == finite.max())
        ):
            return self._raw_chunk(arr, common)
        m = self._model
        lo_n = (float(finite.min()) - m.offset) / m.scale
        hi_n = (float(finite.max()) - m.offset) / m.scale
        if lo_n < -OUT_OF_RANGE_LIMIT or hi_n > 1.0 + OUT_OF_RANGE_LIMIT:
            warnings.warn(
                f"chunk values [{float(finite.min()):g}, {float(finite.max()):g}] lie more than "
                f"{OUT_OF_RANGE_LIMIT:g} training ranges outside the model's training range "
                f"[{m.offset:g}, {m.offset + m.scale:g}] (wrong units or variable?); the chunk is "
                "stored raw (lossless) instead",
                OutOfRangeWarning, stacklevel=2,
            )
            return self._raw_chunk(arr, common)
        bound = self.chunk_bound(finite)

        valid_items = ~missing.reshape(items.shape[0], -1).all(axis=1)
        grid = self._grid(spatial)
        values = items[valid_items]
        mask = ~missing[valid_items] if has_missing else None
        with self._lock:
            latents = m.encode(values, grid, steps=self.inner_steps, mask=mask)
        latents = np.asarray(latents, dtype=np.float32)
        q = m.quantizer(self.bits)
        symbols = q.quantize(latents.reshape(-1, latents.shape[-1]))
        tables = m.entropy_models(self.bits) if self.entropy_coding else []
        entropy_id, payload = entropy.encode_symbols(symbols, self.bits, tables)
        sections = {"latents": payload}
        if has_nan:
            sections["nan_mask"] = zlib.compress(np.packbits(nan.ravel()).tobytes(), 9)
        if fill is not None:
            sections["fill_mask"] = struct.pack("<d", self.fill_value) + zlib.compress(
                np.packbits(fill.ravel()).tobytes(), 9
            )
        mode = cf.MODE_MODULATIONS
        if bound is not None:
            # reconstruct from the DEQUANTIZED latents exactly as the decoder will
            deq = q.dequantize(symbols).reshape(latents.shape)
            recon = self._reconstruct(deq, spatial)
            valid = ~missing[valid_items] if has_missing else np.ones(values.shape, dtype=bool)
            res = _residual.encode_residual(values, recon, valid, bound, arr.dtype)
            sections["residual"] = res.payload
            mode = cf.MODE_BOUNDED
        hdr = cf.ChunkHeader(
            mode=mode,
            patch_shape=m.partition(grid).patch_shape,
            num_items=int(valid_items.sum()),
            num_patches=int(latents.shape[1]),
            latent_dim=int(latents.shape[2]),
            bits=self.bits,
            quantizer_id=q.quantizer_id,
            entropy_id=entropy_id,
            flags=cf.FLAG_NAN_MASK if has_nan else 0,
            **common,
        )
        chunk = cf.pack_chunk(hdr, sections)
        if mode == cf.MODE_BOUNDED:
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

    # ------------------------------------------------------------------ decode
    def decode(self, buf, out=None):
        if isinstance(out, np.ndarray) and out.dtype == object:
            raise TypeError("COINppCodec cannot decode into an object array")
        if isinstance(buf, np.ndarray) and buf.dtype == object:
            raise TypeError("COINppCodec decodes chunk bytes, not object arrays")
        hdr, sections = cf.unpack_chunk(ensure_contiguous_ndarray(buf))
        if hdr.model_sha256 != self._sha:
            raise CorruptChunkError(
                f"chunk was encoded with model sha256 {hdr.model_sha256}, but this codec's model "
                f"is sha256 {self._sha}; refusing to decode it with a different model"
            )
        dtype = np.dtype(hdr.dtype)
        shape = tuple(hdr.shape)
        order = hdr.order
        n = math.prod(shape)
        if hdr.mode == cf.MODE_RAW:
            try:
                raw = zlib.decompress(sections.get("raw_values", b""))
            except zlib.error as exc:
                raise CorruptChunkError(f"raw chunk values do not decompress: {exc}") from None
            if len(raw) != n * dtype.itemsize:
                raise CorruptChunkError(
                    f"raw chunk holds {len(raw)} bytes, expected {n * dtype.itemsize} for "
                    f"shape {shape} dtype {dtype}"
                )
            result = np.frombuffer(raw, dtype=dtype).reshape(shape, order=order).copy(order="A")
        elif hdr.mode in (cf.MODE_MODULATIONS, cf.MODE_BOUNDED):
            result = self._decode_modulations(hdr, sections, shape, dtype, order)
        else:  # pragma: no cover - unpack_chunk rejects unknown modes
            raise CorruptChunkError(f"unknown chunk mode {hdr.mode}")
        if out is not None:
            return ndarray_copy(result, out)
        return result

    def _decode_modulations(self, hdr, sections, shape, dtype, order) -> np.ndarray:
        nd = self._model.spatial_ndim
        if len(shape) < nd:
            raise CorruptChunkError(f"chunk shape {shape} has fewer than the model's {nd} spatial dims")
        spatial = shape[len(shape) - nd :]
        n_total = math.prod(shape[: len(shape) - nd])
        nan = None
        if hdr.has_nan_mask:
            nan = _unpack_mask(sections["nan_mask"], "NaN mask", (n_total, *spatial))
        fill = fill_value = None
        if "fill_mask" in sections:
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
        part = self._model.partition(self._grid(spatial))
        expect = (n_items, part.num_patches, self._model.latent_dim, tuple(part.patch_shape))
        got = (hdr.num_items, hdr.num_patches, hdr.latent_dim, tuple(hdr.patch_shape))
        if got != expect:
            raise CorruptChunkError(
                f"chunk header (items, patches, latent_dim, patch_shape)={got} does not match "
                f"this chunk and model: {expect}"
            )
        if hdr.quantizer_id != 1:
            raise CorruptChunkError(f"unknown quantizer_id {hdr.quantizer_id}")
        tables = {m.entropy_id: m for m in self._model.entropy_models(hdr.bits)}
        try:
            symbols = entropy.decode_symbols(
                hdr.entropy_id, sections.get("latents", b""),
                (hdr.num_items * hdr.num_patches, hdr.latent_dim), hdr.bits, tables,
            )
            latents = self._model.quantizer(hdr.bits).dequantize(symbols)
        except ValueError as exc:
            raise CorruptChunkError(f"latent symbols do not decode: {exc}") from None
        latents = latents.reshape(hdr.num_items, hdr.num_patches, hdr.latent_dim)
        items = np.full((n_total, *spatial), np.nan, dtype=dtype.newbyteorder("="))
        if hdr.mode == cf.MODE_BOUNDED and "residual" not in sections:  # pragma: no cover - unpack checks
            raise CorruptChunkError("bounded chunk without a residual section")
        if n_items:
            rec = self._reconstruct(latents, spatial).reshape((n_items, *spatial))
            if hdr.mode == cf.MODE_BOUNDED:
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
    ) -> dict[str, Any]:
        """The ``encoding`` entry for ``da`` in ``ds.to_zarr(store, encoding={name: ...})``.

        Chunks come from ``chunks`` (a tuple, or a dict dim -> size), else ``da.encoding["chunks"]``,
        else the dask chunks, else one chunk. Spherical models read lat/lon from the coordinates
        of the last two dimensions and need each chunk to span the whole lat/lon extent.
        ``max_abs_error`` / ``rel_error`` / ``fill_value``: see the class. ``fill_value`` defaults to
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
            rel_error=rel_error, fill_value=fill_value,
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
                  max_abs_error=None, rel_error=None, fill_value=None):
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
    codec = cls(model, bits=bits, inner_steps=inner_steps, lat=lat, lon=lon, entropy_coding=entropy_coding,
                max_abs_error=max_abs_error, rel_error=rel_error, fill_value=fill_value)
    if zarr_format == 2:
        return {"compressors": [codec], "filters": None, "chunks": chunk_shape}
    from inrcodec.zarr3 import COINppZarr3Codec

    return {"serializer": COINppZarr3Codec(codec=codec), "compressors": None, "filters": None,
            "chunks": chunk_shape}


def _rebuild_codec(sha: str, data: bytes, settings: dict[str, Any]) -> COINppCodec:
    model = _modelcache.model_from_bytes(data, sha)[0]
    return COINppCodec(model, model_sha256=sha, **settings)


def _unpack_mask(blob: bytes, what: str, shape: tuple[int, ...]) -> np.ndarray:
    """A zlib-compressed, bit-packed boolean mask section of ``shape``; CorruptChunkError if not."""
    try:
        packed = np.frombuffer(zlib.decompress(blob), dtype=np.uint8)
    except zlib.error as exc:
        raise CorruptChunkError(f"{what} does not decompress: {exc}") from None
    count = math.prod(shape)
    if packed.size != (count + 7) // 8:
        raise CorruptChunkError(f"{what} holds {packed.size} bytes, expected {(count + 7) // 8}")
    return np.unpackbits(packed, count=count).astype(bool).reshape(shape)
