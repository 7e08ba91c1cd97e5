"""The COIN++ chunk pipeline as two pure functions; every front door is an adapter over them.

>>> from inrcodec.chunkcodec import decode_chunk, encode_chunk  # doctest: +SKIP
>>> data = encode_chunk(array, model, CodecSettings(bits=6))     # doctest: +SKIP
>>> decode_chunk(data, model, CodecSettings(bits=6)).shape == array.shape  # doctest: +SKIP

``encode_chunk(array, model, settings) -> bytes`` (:mod:`.encode`) and
``decode_chunk(data, model, settings, *, shape=None, dtype=None, nbytes=None) -> ndarray``
(:mod:`.decode`), with ``model`` a :class:`~inrcodec.models.model.CoinModel` and ``settings`` a
:class:`~inrcodec.settings.CodecSettings`. :mod:`.latents` quantises and entropy codes
latents; :mod:`.context` holds what chunks of one model and grid share (pin, grids, lock);
:mod:`.patching` chooses a chunk's patch size, :mod:`.ratecontrol` its latent width,
:mod:`.choose` which finished chunk is kept, and :mod:`.residual` codes the error-bounded residual.
"""

from inrcodec.chunkcodec.decode import decode_chunk
from inrcodec.chunkcodec.encode import encode_chunk

__all__ = ["encode_chunk", "decode_chunk"]
