"""Zarr 3 support: :class:`~inrcodec.codec.COINppCodec` is itself a Zarr 3 ``ArrayBytesCodec``.

Use it as ``serializer=COINppCodec(...)``. zarr resolves the codec name ``inrcodec.coinpp`` in
``zarr.json`` through the ``zarr.codecs`` entry point, so ``zarr.open_array(store)`` works in a
fresh process without importing inrcodec first. ``COINppZarr3Codec`` is the name earlier
releases used for the Zarr 3 wrapper; it is the same class now.
"""

from inrcodec.codec import INCOMPLETE_KEY, COINppCodec
from inrcodec.errors import IncompleteStoreWarning

COINppZarr3Codec = COINppCodec

__all__ = ["COINppZarr3Codec", "IncompleteStoreWarning", "INCOMPLETE_KEY"]
