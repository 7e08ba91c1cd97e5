"""``LatentCoder``: quantisation and entropy coding of latents with a model's tables.

In the spirit of CompressAI's latent codecs: ``compress`` turns latents into the ``latents``
section payload at a bit width, ``decompress`` turns it back into dequantised latents. The
quantizer (``quantize``) and the count tables (``entropy``) belong to the model file.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from inrcodec import _limits, entropy
from inrcodec.errors import CorruptChunkError

__all__ = ["LatentCoder", "CodedLatents"]

#: the only quantizer chunks name today (uniform, clipped to the model's calibrated range)
UNIFORM_QUANTIZER = 1


class CodedLatents(NamedTuple):
    quantizer_id: int
    entropy_id: int
    payload: bytes
    symbols: np.ndarray


class LatentCoder:
    """Codes the latents of one model; ``entropy_coding=False`` stores symbols bit-packed."""

    def __init__(self, model, entropy_coding: bool = True):
        self.model = model
        self.entropy_coding = entropy_coding

    def compress(self, latents: np.ndarray, bits: int) -> CodedLatents:
        """Latents ``(..., latent_dim)`` -> the ``latents`` section payload at ``bits``."""
        q = self.model.quantizer(bits)
        symbols = q.quantize(latents.reshape(-1, latents.shape[-1]))
        tables = self.model.entropy_models(bits) if self.entropy_coding else []
        eid, payload = entropy.encode_symbols(symbols, bits, tables)
        return CodedLatents(q.quantizer_id, eid, payload, symbols)

    def dequantize(self, coded: CodedLatents, bits: int) -> np.ndarray:
        """The latents the decoder will see for ``coded`` (flat ``(n, latent_dim)``)."""
        return self.model.quantizer(bits).dequantize(coded.symbols)

    @staticmethod
    def check_header(bits: int, quantizer_id: int) -> None:
        """Refuse (CorruptChunkError) a quantizer or width no chunk can have."""
        if quantizer_id != UNIFORM_QUANTIZER:
            raise CorruptChunkError(f"unknown quantizer_id {quantizer_id}")
        if not 1 <= bits <= 16:
            raise CorruptChunkError(f"chunk header declares bits={bits} (1..16 allowed)")

    def check_payload(self, payload: bytes, *, bits: int, quantizer_id: int, entropy_id: int, count: int) -> None:
        """Refuse (CorruptChunkError) a payload too short for ``count`` latent vectors, before
        anything of that size is allocated."""
        self.check_header(bits, quantizer_id)
        tables = {t.entropy_id: t for t in self.model.entropy_models(bits)}
        k = self.model.latent_dim
        if entropy_id == entropy.ENTROPY_RAW:  # bit-packed: the size is exact
            if len(payload) != entropy.fixed_nbytes(count * k, bits):
                raise CorruptChunkError(
                    f"bit-packed latents section of {len(payload)} bytes does not hold the {count * k} "
                    f"symbols of {bits} bits this chunk needs ({entropy.fixed_nbytes(count * k, bits)} bytes)"
                )
        elif entropy_id not in tables:
            raise CorruptChunkError(f"latents use entropy_id {entropy_id}, which this model has no table for "
                                    f"at bits={bits}")
        elif len(payload) < _limits.min_coded_bytes(tables[entropy_id], count, k):
            raise CorruptChunkError(
                f"latents section of {len(payload)} bytes is too short for the {count * k} symbols "
                "this chunk needs"
            )

    def decompress(self, payload: bytes, *, bits: int, quantizer_id: int, entropy_id: int, count: int) -> np.ndarray:
        """The dequantised latents ``(count, latent_dim)`` of a ``latents`` section payload."""
        if quantizer_id != UNIFORM_QUANTIZER:
            raise CorruptChunkError(f"unknown quantizer_id {quantizer_id}")
        tables = {t.entropy_id: t for t in self.model.entropy_models(bits)}
        try:
            symbols = entropy.decode_symbols(entropy_id, payload, (count, self.model.latent_dim), bits, tables)
            return self.model.quantizer(bits).dequantize(symbols)
        except ValueError as exc:
            raise CorruptChunkError(f"latent symbols do not decode: {exc}") from None
