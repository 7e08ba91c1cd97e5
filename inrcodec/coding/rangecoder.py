"""The one range coder of the chunk format: every entropy-coded stream (the latent symbols of
entropy ids 1-3 and the error-bounded residual's codes) is written and read here.

It is constriction's queue range coder (``constriction.stream.queue``) with
``Categorical(probabilities, perfect=False)`` models. A stream is its little-endian u32 words as
bytes; groups of symbols are coded one after another into one stream, each with its own model.
constriction quantizes the float64 probabilities to its fixed point deterministically; a release
that changed that would change the bitstream, so constriction is pinned (0.5.x).

One rule for what is corrupt (:class:`RangeCodeError`): bytes that are not whole u32 words, words
for no symbols, a stream constriction refuses, and words left after the last symbol (a valid
stream ends where its symbols do). One rule for interrupts: KeyboardInterrupt, SystemExit,
GeneratorExit and MemoryError pass through; everything constriction raises (plain exceptions and
pyo3 panics, which are BaseExceptions) is a :class:`RangeCodeError`.

>>> import numpy as np
>>> probs = np.array([0.5, 0.25, 0.25])
>>> stream = encode([(np.array([0, 1, 2, 0]), probs)])
>>> len(stream) % 4, decode(stream, [(4, probs)])[0].tolist()
(0, [0, 1, 2, 0])
>>> decode(stream + bytes(8), [(4, probs)])  # words past the last symbol
Traceback (most recent call last):
...
inrcodec.coding.rangecoder.RangeCodeError: range-coded stream has data left after the last symbol
"""

from __future__ import annotations

from typing import Iterable, Sequence

import constriction
import numpy as np

__all__ = ["RangeCodeError", "model", "encode", "decode", "Decoder"]

_Categorical = constriction.stream.model.Categorical
#: what passes through a decode untouched; anything else raised inside it is a RangeCodeError
_PASS_THROUGH = (KeyboardInterrupt, SystemExit, GeneratorExit, MemoryError)


class RangeCodeError(ValueError):
    """A range-coded stream that does not decode to the symbols asked for."""


def model(probabilities) -> object:
    """The constriction model of float64 ``probabilities`` (one per symbol value 0..n-1); build it
    once where the same table codes many streams."""
    return _Categorical(np.asarray(probabilities, dtype=np.float64), perfect=False)


def _model_of(m):
    return m if isinstance(m, _Categorical) else model(m)


def encode(groups: Iterable[tuple[np.ndarray, object]]) -> bytes:
    """One stream of ``groups`` ``[(symbols, model or probabilities), ...]``, coded in order
    (symbols: non-negative ints below the table's length, any shape, C order)."""
    enc = constriction.stream.queue.RangeEncoder()
    for symbols, m in groups:
        s = np.ascontiguousarray(symbols, dtype=np.int32).reshape(-1)
        if s.size:
            enc.encode(s, _model_of(m))
    return np.asarray(enc.get_compressed(), dtype="<u4").tobytes()


def _words(data) -> np.ndarray:
    buf = bytes(data)
    if len(buf) % 4:
        raise RangeCodeError(f"range-coded stream must be a whole number of 32-bit words, got {len(buf)} bytes")
    return np.frombuffer(buf, dtype="<u4").astype(np.uint32)  # an owned, aligned copy for constriction


def decode(data, groups: Sequence[tuple[int, object]]) -> list[np.ndarray]:
    """The symbols of a stream: one int64 array per group ``[(count, model or probabilities), ...]``,
    decoded in order; :class:`RangeCodeError` where the stream is corrupt (module docstring)."""
    reader = Decoder(data)
    out = [reader.decode(int(n), m) for n, m in groups]
    reader.finish()
    return out


class Decoder:
    """A stream read one group at a time, for a reader that learns the next group's count and model
    from what it has read (:func:`decode` reads a known list); :meth:`finish` applies the end rule."""

    def __init__(self, data):
        self._words = _words(data)
        self._dec = None

    def decode(self, count: int, m) -> np.ndarray:
        """The next ``count`` symbols (int64), coded with ``m`` (a model or probabilities)."""
        if not count:
            return np.zeros(0, dtype=np.int64)
        try:
            if self._dec is None:
                self._dec = constriction.stream.queue.RangeDecoder(self._words)
            return np.asarray(self._dec.decode(_model_of(m), int(count)), dtype=np.int64)
        except BaseException as exc:  # constriction raises plain exceptions or pyo3 panics
            if isinstance(exc, _PASS_THROUGH):
                raise
            raise RangeCodeError(f"invalid range-coded stream: {exc}") from None

    def finish(self) -> None:
        """:class:`RangeCodeError` unless the stream ends where the symbols read so far do."""
        if self._dec is None:
            if self._words.size:
                raise RangeCodeError(f"range-coded stream of {4 * self._words.size} bytes for no symbols")
            return
        try:
            exhausted = self._dec.maybe_exhausted()
        except BaseException as exc:
            if isinstance(exc, _PASS_THROUGH):
                raise
            raise RangeCodeError(f"invalid range-coded stream: {exc}") from None
        if not exhausted:
            raise RangeCodeError("range-coded stream has data left after the last symbol")
