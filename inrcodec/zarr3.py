"""The Zarr 3 side of :class:`~inrcodec.codec.COINppCodec`: ``Zarr3Serializer``.

``COINppCodec`` inherits this mixin, so the codec object itself is a Zarr 3
``ArrayBytesCodec``: ``serializer=COINppCodec(...)``. Its ``zarr.json`` entry is
``{"name": "inrcodec.coinpp", "configuration": {...}}`` with the numcodecs configuration's keys.
zarr resolves the name through the ``zarr.codecs`` entry point, so ``zarr.open_array(store)``
works in a fresh process without importing inrcodec first. The mixin needs from its class only
``get_config`` / ``from_config``, ``model``, ``settings`` and the pure chunk functions; it does
not import the codec module.
"""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

import numpy as np
from zarr.abc.codec import ArrayBytesCodec
from zarr.core.common import parse_named_configuration

from inrcodec.chunkcodec import decode_chunk, encode_chunk
from inrcodec.errors import IncompleteStoreWarning

__all__ = ["Zarr3Serializer", "CODEC_ID", "INCOMPLETE_KEY", "IncompleteStoreWarning"]

CODEC_ID = "inrcodec.coinpp"
#: configuration key that ``inrcodec compress`` sets while a store is unfinished
INCOMPLETE_KEY = "store_incomplete"


class Zarr3Serializer(ArrayBytesCodec):
    """The ``ArrayBytesCodec`` methods of COINppCodec (metadata, validation, async coding)."""

    is_fixed_size = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
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
        nd, s = self.model.spatial_ndim, self.settings
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
        return chunk_spec.prototype.buffer.from_bytes(encode_chunk(arr, self.model, self.settings))

    def _decode_sync(self, chunk_bytes, chunk_spec):
        want = chunk_spec.dtype.to_native_dtype()
        # the header is checked against the chunk it fills before anything is allocated
        arr = decode_chunk(chunk_bytes.as_numpy_array(), self.model, self.settings,
                           shape=chunk_spec.shape, dtype=want)
        return chunk_spec.prototype.nd_buffer.from_ndarray_like(arr.astype(want, copy=False))

    async def _encode_single(self, chunk_array, chunk_spec):
        # torch work blocks: run it in a worker thread like zarr's own zstd/blosc/numcodecs codecs
        return await asyncio.to_thread(self._encode_sync, chunk_array, chunk_spec)

    async def _decode_single(self, chunk_bytes, chunk_spec):
        return await asyncio.to_thread(self._decode_sync, chunk_bytes, chunk_spec)


class _MetadataEntry(dict):
    """What ``to_dict`` returns: the Zarr 3 entry ``{"name": ..., "configuration": ...}``.

    Because the codec is a zarr ``Metadata``, zarr-python's Zarr 2 metadata also serialises its
    ``compressor`` through ``to_dict``, and then keeps the result only if it looks like a
    numcodecs codec (``codec_id``, ``get_config``, ...), taking ``get_config()`` as the
    ``.zarray`` entry. This dict is both, so one codec object serves both formats.
    """

    codec_id = CODEC_ID

    def __init__(self, codec):
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

    def from_config(self, config: dict[str, Any]):
        return type(self._codec).from_config(config)
