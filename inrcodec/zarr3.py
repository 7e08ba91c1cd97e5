"""``COINppZarr3Codec``: COIN++ as a Zarr format 3 array-to-bytes codec (``serializer=``).

Zarr 3 arrays accept only zarr codec classes (a numcodecs codec is refused as ``serializer``
or ``compressors``), so this thin ``ArrayBytesCodec`` wraps a :class:`~inrcodec.codec.COINppCodec`.
Its ``zarr.json`` entry is ``{"name": "inrcodec.coinpp", "configuration": {...}}`` with the same
configuration keys as the numcodecs codec (model hash and inline model bytes included). zarr
resolves the name through the ``zarr.codecs`` entry point ``inrcodec.coinpp`` (the entry point
name must equal the ``name`` in the metadata), so ``zarr.open_array(store)`` works in a fresh
process without importing ``inrcodec`` first.
"""

from __future__ import annotations

import asyncio
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from zarr.abc.codec import ArrayBytesCodec
from zarr.core.common import parse_named_configuration

from inrcodec.codec import CODEC_ID, COINppCodec
from inrcodec.errors import IncompleteStoreWarning

if TYPE_CHECKING:
    from typing import Self

    from zarr.core.array_spec import ArraySpec
    from zarr.core.buffer import Buffer, NDBuffer

__all__ = ["COINppZarr3Codec", "IncompleteStoreWarning"]

#: configuration key that ``inrcodec compress`` sets while a store is unfinished
INCOMPLETE_KEY = "store_incomplete"




@dataclass(frozen=True)
class COINppZarr3Codec(ArrayBytesCodec):
    """Zarr 3 serializer running COIN++ on each chunk.

    ``COINppZarr3Codec(model=..., bits=6, ...)`` takes the arguments of
    :class:`~inrcodec.codec.COINppCodec` (error-bounded options ``max_abs_error`` / ``rel_error``
    and ``fill_value`` included; they round-trip through ``to_dict``/``from_dict`` like the rest),
    or ``COINppZarr3Codec(codec=COINppCodec(...))``.
    Use it as ``zarr.create_array(..., serializer=COINppZarr3Codec(...), compressors=None)``
    (the chunk bytes are already entropy coded; a default zstd after them only costs time).
    """

    is_fixed_size = False

    codec: COINppCodec

    def __init__(self, codec: COINppCodec | None = None, **kwargs: Any) -> None:
        if codec is None:
            codec = COINppCodec(**kwargs)
        elif kwargs:
            raise TypeError("pass either codec=COINppCodec(...) or the COINppCodec arguments, not both")
        if not isinstance(codec, COINppCodec):
            raise TypeError(f"codec must be a COINppCodec, got {type(codec).__name__}")
        object.__setattr__(self, "codec", codec)

    # ------------------------------------------------------------------ metadata
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        _, configuration = parse_named_configuration(data, CODEC_ID, require_configuration=True)
        configuration = dict(configuration)
        if configuration.pop(INCOMPLETE_KEY, False):
            warnings.warn(
                "this inrcodec store is incomplete (its compress run was interrupted): unwritten "
                "regions read as NaN; run `inrcodec info STORE` for the command that resumes it",
                IncompleteStoreWarning, stacklevel=2,
            )
        return cls(codec=COINppCodec.from_config(configuration))

    def to_dict(self) -> dict[str, Any]:
        config = self.codec.get_config()
        config.pop("id", None)
        return {"name": CODEC_ID, "configuration": config}

    def __repr__(self) -> str:
        return f"COINppZarr3Codec({self.codec!r})"

    def validate(self, *, shape, dtype, chunk_grid) -> None:
        native = dtype.to_native_dtype()
        if native.kind != "f" or native.newbyteorder("=") not in (np.dtype("f4"), np.dtype("f8")):
            raise TypeError(f"the inrcodec.coinpp codec encodes float32/float64 arrays, not {native}")
        nd = self.codec.model.spatial_ndim
        if len(shape) < nd:
            raise ValueError(f"the model needs {nd} spatial (trailing) dims; the array has shape {shape}")
        chunk_shape = getattr(chunk_grid, "chunk_shape", None)
        codec = self.codec
        if chunk_shape is not None and codec.lat is not None:
            spatial = tuple(chunk_shape[len(chunk_shape) - nd :])
            if spatial != (len(codec.lat), len(codec.lon)):
                raise ValueError(
                    f"chunks {tuple(chunk_shape)}: the spatial chunk {spatial} does not match the "
                    f"codec's lat[{len(codec.lat)}] x lon[{len(codec.lon)}]; chunk only along the "
                    f"leading (e.g. time) dims so each chunk spans the whole lat/lon extent"
                )

    def compute_encoded_size(self, input_byte_length: int, chunk_spec: ArraySpec) -> int:
        raise NotImplementedError

    # ------------------------------------------------------------------ coding
    def _encode_sync(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> Buffer | None:
        arr = np.asarray(chunk_array.as_numpy_array())
        want = chunk_spec.dtype.to_native_dtype()
        if arr.dtype != want:
            arr = arr.astype(want)
        if chunk_spec.order == "F" and arr.ndim > 1:
            arr = np.asfortranarray(arr)
        else:
            arr = np.ascontiguousarray(arr)
        return chunk_spec.prototype.buffer.from_bytes(self.codec.encode(arr))

    def _decode_sync(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> NDBuffer:
        want = chunk_spec.dtype.to_native_dtype()
        # the header is checked against the chunk it fills before anything is allocated
        arr = self.codec.decode_chunk(chunk_bytes.as_numpy_array(), shape=chunk_spec.shape, dtype=want)
        if arr.dtype != want:
            arr = arr.astype(want)
        return chunk_spec.prototype.nd_buffer.from_ndarray_like(arr)

    async def _encode_single(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> Buffer | None:
        # torch work blocks: run it in a worker thread like zarr's own zstd/blosc/numcodecs codecs
        return await asyncio.to_thread(self._encode_sync, chunk_array, chunk_spec)

    async def _decode_single(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> NDBuffer:
        return await asyncio.to_thread(self._decode_sync, chunk_bytes, chunk_spec)
