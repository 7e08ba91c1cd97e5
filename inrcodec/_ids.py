"""The chunk format's numeric ids of its latent codings, in one home: the quantizer of the latents
(``ChunkHeader.quantizer_id``) and their entropy coder (``ChunkHeader.entropy_id``).

The chunk format (``chunkformat``) checks which version may name them; the coders
(``coding.quantize``, ``coding.entropy``) write and read them; ``chunkcodec.latents`` pairs them.
"""

from __future__ import annotations

#: uniform symbols clipped to the model's calibrated range (format versions 1-3)
QUANTIZER_UNIFORM = 1
#: mid-tread symbols with a zero level (format version 4, only with ``ENTROPY_PARAMETRIC``)
QUANTIZER_MIDTREAD = 2

#: bit-packed symbols, no entropy coding
ENTROPY_RAW = 0
#: one count table for every latent dimension
ENTROPY_SHARED = 1
#: a count table per latent dimension
ENTROPY_PER_DIMENSION = 2
#: the parametric coder of mid-tread symbols (format version 4)
ENTROPY_PARAMETRIC = 3
