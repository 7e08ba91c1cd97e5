"""Every error inrcodec raises on purpose, in one hierarchy.

``except inrcodec.InrcodecError`` catches all of them. Each is also a ``ValueError`` (bad bytes,
bad metadata, a wrong model are bad values), so code written before this hierarchy keeps working.

- :class:`CorruptChunkError`: chunk bytes that do not parse, or do not fit the array they fill.
- :class:`ModelFileError`: a model file that does not parse or validate.
- :class:`PinnedModelError`: model bytes whose SHA-256 is not the one pinned (store metadata,
  the model list of the package, or ``expected_sha256=``). A :class:`ModelFileError`.
- :class:`PinnedGridError`: lat/lon values whose hash is not the ``grid_sha256`` pinned.
- :class:`StoreMismatchError`, :class:`IncompleteStoreError`, :class:`StoreLockedError`:
  ``inrcodec compress`` stores.

Warnings: :class:`OutOfRangeWarning` (a chunk stored raw, or coded without the network, because
its values are not the model's variable), :class:`IncompleteStoreWarning` (reading an unfinished store),
:class:`TargetNotMetWarning` (rate control could not meet ``target_rmse`` / ``target_ratio``).
"""

from __future__ import annotations

__all__ = [
    "InrcodecError", "CorruptChunkError", "ModelFileError", "PinnedModelError", "PinnedGridError",
    "StoreMismatchError", "IncompleteStoreError", "StoreLockedError", "OutOfRangeWarning", "IncompleteStoreWarning",
    "TargetNotMetWarning", "TargetCostWarning",
]


class InrcodecError(ValueError):
    """Base class of the errors inrcodec raises on purpose."""


class CorruptChunkError(InrcodecError):
    """Chunk bytes that do not parse, fail their checksum, or do not fit the array they fill."""


class ModelFileError(InrcodecError):
    """A model file (or model bytes) that does not parse or validate."""


class PinnedModelError(ModelFileError):
    """Model bytes that do not hash to the SHA-256 pinned for them."""


class PinnedGridError(InrcodecError):
    """The codec's lat/lon values do not hash to the ``grid_sha256`` its configuration pins."""


class StoreMismatchError(InrcodecError):
    """``inrcodec compress --resume`` on a store written from another input or with other settings."""


class IncompleteStoreError(InrcodecError):
    """A store whose ``inrcodec compress`` run did not finish."""


class StoreLockedError(InrcodecError):
    """Another process is writing the store (``inrcodec compress`` holds a lock on its output)."""


class OutOfRangeWarning(UserWarning):
    """A chunk's values lie far outside the model's training range (e.g. Pa for a model trained
    in K); the chunk was stored raw (lossless) instead of with the neural codec, or, when
    error-bounded, coded within the bound without the network (the message says which)."""


class IncompleteStoreWarning(UserWarning):
    """The array belongs to a store whose ``inrcodec compress`` run did not finish: the regions it
    never wrote read as NaN. ``inrcodec info STORE`` says which command resumes it."""


class TargetNotMetWarning(UserWarning):
    """Rate control found no latent width that meets ``target_rmse`` / ``target_ratio`` for a
    chunk; the chunk was coded at the closest width, and the message says what it reached."""


class TargetCostWarning(UserWarning):
    """A ``target_ratio`` was met at several times the RMSE that the network reaches a little short
    of the ratio (SPERR alone squeezed past what the network can give): the message says both, so
    the user can choose the ratio or the error."""
