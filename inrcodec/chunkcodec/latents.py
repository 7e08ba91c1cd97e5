"""``LatentCoder``: quantisation and entropy coding of latents with a model's tables.

In the spirit of CompressAI's latent codecs: ``compress`` turns latents into the ``latents``
section payload at a bit width, ``decompress`` turns it back into dequantised latents. The
quantizer (``quantize``) and the count tables (``entropy``) belong to the model file.

Two codings: the uniform quantizer (id 1) with the model's count tables (entropy ids 0-2), and
the mid-tread quantizer (id 2, format version 4) with the parametric coder (entropy id 3),
optionally predicting each item from the previous one (``predict``): the mid-tread step and the
parametric scale base come from the model's quantizer statistics, the scales from the chunk.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from inrcodec import _limits
from inrcodec._ids import ENTROPY_PARAMETRIC, ENTROPY_RAW, QUANTIZER_MIDTREAD, QUANTIZER_UNIFORM
from inrcodec.chunkcodec.timing import stage
from inrcodec.coding import entropy
from inrcodec.coding.bitpack import fixed_nbytes
from inrcodec.coding.quantize import MidTreadQuantizer
from inrcodec.errors import CorruptChunkError

__all__ = ["LatentCoder", "CodedLatents"]

#: the quantizer ids of ``CodecSettings.quantizer``'s names (the ids' home: inrcodec._ids)
QUANTIZERS = {"uniform": QUANTIZER_UNIFORM, "midtread": QUANTIZER_MIDTREAD}


class CodedLatents(NamedTuple):
    quantizer_id: int
    entropy_id: int
    payload: bytes
    symbols: np.ndarray
    #: the latents the decoder will see, ``(n, latent_dim)`` float32 (mid-tread; None: uniform)
    dequantized: np.ndarray | None = None
    predict: int = 0


def midtread(model, bits: int):
    """The mid-tread quantizer of ``model`` at ``bits`` (its calibrated mean, std and num_std)."""
    q = model.quantizer(min(int(bits), 16))  # the statistics (and a clear error without them)
    return MidTreadQuantizer(q.mean, q.std, int(bits), q.num_std)


def _base(q) -> float:
    """The latents' standard deviation in mid-tread symbols: the parametric scales' unit."""
    return float(1 << q.bits) / (2.0 * q.num_std)


def _groups(n_items: int, per_item: int, limit: int, predict: bool) -> list[tuple[int, int]]:
    """(count, limit) of the symbol groups of a parametric payload: all items against the mean,
    or with ``predict`` the first item against the mean and the rest as differences."""
    if predict and n_items > 1:
        return [(per_item, limit), ((n_items - 1) * per_item, 2 * limit)]
    return [(n_items * per_item, limit)]


class _UniformLatents:
    """Quantizer id 1 (format versions 1-3): uniform symbols clipped to the model's calibrated range,
    coded with the model's count tables (entropy ids 1-2) or bit-packed (id 0)."""

    quantizer_id = QUANTIZER_UNIFORM

    def __init__(self, model, entropy_coding: bool):
        self.model, self.entropy_coding = model, entropy_coding

    def compress(self, latents: np.ndarray, bits: int) -> CodedLatents:
        q = self.model.quantizer(bits)
        symbols = q.quantize(latents.reshape(-1, latents.shape[-1]))
        tables = self.model.entropy_models(bits) if self.entropy_coding else []
        eid, payload = entropy.encode_symbols(symbols, bits, tables)
        return CodedLatents(q.quantizer_id, eid, payload, symbols)

    def dequantize(self, coded: CodedLatents, bits: int) -> np.ndarray:
        return self.model.quantizer(bits).dequantize(coded.symbols)

    def check_payload(self, payload: bytes, bits: int, entropy_id: int, count: int, items, predict: int) -> None:
        tables = {t.entropy_id: t for t in self.model.entropy_models(bits)}
        k = self.model.latent_dim
        if entropy_id == ENTROPY_RAW:  # bit-packed: the size is exact
            if len(payload) != fixed_nbytes(count * k, bits):
                raise CorruptChunkError(
                    f"bit-packed latents section of {len(payload)} bytes does not hold the {count * k} "
                    f"symbols of {bits} bits this chunk needs ({fixed_nbytes(count * k, bits)} bytes)"
                )
        elif entropy_id not in tables:
            raise CorruptChunkError(f"latents use entropy_id {entropy_id}, which this model has no table for "
                                    f"at bits={bits}")
        elif len(payload) < _limits.min_coded_bytes(tables[entropy_id], count, k):
            raise CorruptChunkError(
                f"latents section of {len(payload)} bytes is too short for the {count * k} symbols "
                "this chunk needs"
            )

    def decompress(self, payload: bytes, bits: int, entropy_id: int, count: int, items, predict: int) -> np.ndarray:
        tables = {t.entropy_id: t for t in self.model.entropy_models(bits)}
        try:
            symbols = entropy.decode_symbols(entropy_id, payload, (count, self.model.latent_dim), bits, tables)
            return self.model.quantizer(bits).dequantize(symbols)
        except ValueError as exc:
            raise CorruptChunkError(f"latent symbols do not decode: {exc}") from None


class _MidTreadLatents:
    """Quantizer id 2 (format version 4): mid-tread symbols with a zero level, parametric range
    coding (entropy id 3), each item optionally predicted from the previous one (``predict``)."""

    quantizer_id = QUANTIZER_MIDTREAD

    def __init__(self, model, predict: bool):
        self.model, self.predict = model, predict

    def compress(self, latents: np.ndarray, bits: int) -> CodedLatents:
        """With ``predict`` (and more than one item) the items are coded both ways and the smaller
        payload is kept: the prediction is a level of the same lattice (``mean + j * step``), so
        both give the same latents (up to the clipping of far outliers) and the choice only
        changes the bytes."""
        q = midtread(self.model, bits)
        n_items = latents.shape[0] if latents.ndim > 2 else 1
        items = np.asarray(latents, dtype=np.float64).reshape(n_items, -1)
        k = latents.shape[-1]
        best = None
        for predict in ((False, True) if self.predict and n_items > 1 else (False,)):
            symbols, deq = q.quantize(items, predict=predict)
            parts, start, flat = [], 0, symbols.reshape(-1)
            for count, limit in _groups(n_items, items.shape[1], q.limit, predict):
                parts.append((flat[start:start + count], limit))
                start += count
            payload = entropy.encode_parametric(parts, _base(q))
            if best is None or len(payload) < len(best.payload):
                best = CodedLatents(QUANTIZER_MIDTREAD, ENTROPY_PARAMETRIC, payload, symbols.reshape(-1, k),
                                    deq.astype(np.float32).reshape(-1, k), int(predict))
        return best

    def dequantize(self, coded: CodedLatents, bits: int) -> np.ndarray:
        return coded.dequantized

    def _quantizer(self, bits: int):
        try:
            return midtread(self.model, bits)
        except ValueError as exc:  # a model without quantizer statistics cannot have written it
            raise CorruptChunkError(f"mid-tread latents, but {exc}") from None

    def _groups(self, q, count: int, items: int | None, predict: int) -> list[tuple[int, int]]:
        k = self.model.latent_dim
        items = count if items is None else int(items)
        if items and count % items:
            raise CorruptChunkError(f"{count} latent vectors do not split into {items} items")
        return _groups(items, (count // items) * k if items else 0, q.limit, bool(predict))

    def check_payload(self, payload: bytes, bits: int, entropy_id: int, count: int, items, predict: int) -> None:
        q = self._quantizer(bits)
        try:
            entropy.parametric_header(payload, self._groups(q, count, items, predict), _base(q))
        except ValueError as exc:
            raise CorruptChunkError(f"latents section: {exc}") from None

    def decompress(self, payload: bytes, bits: int, entropy_id: int, count: int, items, predict: int) -> np.ndarray:
        q = self._quantizer(bits)
        try:
            parts = entropy.decode_parametric(payload, self._groups(q, count, items, predict), _base(q))
        except ValueError as exc:
            raise CorruptChunkError(f"latent symbols do not decode: {exc}") from None
        n_items = count if items is None else int(items)
        symbols = np.concatenate(parts).reshape(n_items, -1) if n_items else np.zeros((0, 0), np.int64)
        return q.dequantize(symbols, predict=bool(predict)).astype(np.float32).reshape(count, self.model.latent_dim)


class LatentCoder:
    """Codes the latents of one model; ``entropy_coding=False`` stores symbols bit-packed. The
    quantizer named in ``quantizer`` writes; a payload is read by the one its ``quantizer_id``
    names (:class:`_UniformLatents`, :class:`_MidTreadLatents`: one protocol, ``compress``,
    ``dequantize``, ``check_payload``, ``decompress``)."""

    def __init__(self, model, entropy_coding: bool = True, quantizer: str = "uniform", predict: bool = False):
        self.model = model
        self.entropy_coding = entropy_coding
        self.quantizer = quantizer
        self.predict = bool(predict)
        self._by_id = {QUANTIZER_UNIFORM: _UniformLatents(model, entropy_coding),
                       QUANTIZER_MIDTREAD: _MidTreadLatents(model, self.predict)}

    @stage("latents")
    def compress(self, latents: np.ndarray, bits: int) -> CodedLatents:
        """Latents ``(items, ..., latent_dim)`` -> the ``latents`` section payload at ``bits``."""
        return self._by_id[QUANTIZERS[self.quantizer]].compress(latents, bits)

    def dequantize(self, coded: CodedLatents, bits: int) -> np.ndarray:
        """The latents the decoder will see for ``coded`` (flat ``(n, latent_dim)``)."""
        return self._by_id[coded.quantizer_id].dequantize(coded, bits)

    @staticmethod
    def check_header(bits: int, quantizer_id: int, entropy_id: int | None = None) -> None:
        """Refuse (CorruptChunkError) a quantizer or width no chunk can have."""
        if quantizer_id not in (QUANTIZER_UNIFORM, QUANTIZER_MIDTREAD):
            raise CorruptChunkError(f"unknown quantizer_id {quantizer_id}")
        if not 1 <= bits <= 16:
            raise CorruptChunkError(f"chunk header declares bits={bits} (1..16 allowed)")
        if quantizer_id == QUANTIZER_MIDTREAD and bits > 12:
            raise CorruptChunkError(f"chunk header declares a mid-tread quantizer with bits={bits} (1..12 allowed)")
        if entropy_id is not None and (quantizer_id == QUANTIZER_MIDTREAD) != (entropy_id == ENTROPY_PARAMETRIC):
            raise CorruptChunkError(f"quantizer_id {quantizer_id} does not go with entropy_id {entropy_id} "
                                    "(the mid-tread quantizer, id 2, is coded with entropy id 3, and only it)")

    def check_payload(self, payload: bytes, *, bits: int, quantizer_id: int, entropy_id: int, count: int,
                      items: int | None = None, predict: int = 0) -> None:
        """Refuse (CorruptChunkError) a payload too short for ``count`` latent vectors, before
        anything of that size is allocated. ``items``: how many items the ``count`` vectors
        belong to (mid-tread with ``predict``)."""
        self.check_header(bits, quantizer_id, entropy_id)
        self._by_id[quantizer_id].check_payload(payload, bits, entropy_id, count, items, predict)

    @stage("latents")
    def decompress(self, payload: bytes, *, bits: int, quantizer_id: int, entropy_id: int, count: int,
                   items: int | None = None, predict: int = 0) -> np.ndarray:
        """The dequantised latents ``(count, latent_dim)`` of a ``latents`` section payload."""
        self.check_header(bits, quantizer_id, entropy_id)
        return self._by_id[quantizer_id].decompress(payload, bits, entropy_id, count, items, predict)
