"""Per-process cache of parsed models, keyed by the SHA-256 of their bytes.

A store pins its model by hash and carries the model bytes inline in the array metadata
(see :mod:`inrcodec.codec`). Every codec built from that metadata (one per array, and zarr may
rebuild them) resolves to the same :class:`~inrcodec.model.CoinModel` object here, so weights
are parsed once per process. The cache and the per-model locks are thread-safe: zarr calls
codecs from several threads at once.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from inrcodec.errors import PinnedModelError
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from inrcodec.model import CoinModel

MODEL_FILENAME = "model.safetensors"

_lock = threading.Lock()
_models: dict[str, "CoinModel"] = {}
_model_locks: dict[str, threading.RLock] = {}




def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def resolve_path(path: str | os.PathLike) -> Path:
    """A model file, a directory holding ``model.safetensors`` (``inrcodec train-recipe --out DIR``),
    or the name of a shipped model (:mod:`inrcodec.zoo`) when no such file or directory exists."""
    p = Path(path).expanduser()
    if not p.exists() and isinstance(path, str):
        from inrcodec import zoo

        if zoo.pinned_sha256(path) is not None:
            return zoo.model_path(path)
    if p.is_dir():
        cand = p / MODEL_FILENAME
        if not cand.is_file():
            raise FileNotFoundError(
                f"{p} is a directory without {MODEL_FILENAME}; pass the model file itself or the "
                f"directory written by `inrcodec train-recipe --out DIR`"
            )
        return cand
    if not p.is_file():
        raise FileNotFoundError(
            f"model file not found: {p} (pass a model file, or a directory holding {MODEL_FILENAME})"
        )
    return p


def model_from_bytes(data: bytes, expected_sha256: str | None = None) -> tuple["CoinModel", bytes, str]:
    """Parse (or fetch from the cache) the model whose serialised bytes are ``data``.

    If ``expected_sha256`` is given, the bytes must hash to it, else :class:`PinnedModelError`
    naming both hashes. Returns ``(model, bytes, sha256)``.
    """
    data = bytes(data)
    digest = sha256_hex(data)
    if expected_sha256 is not None and digest != expected_sha256.lower():
        raise PinnedModelError(
            f"the model weights do not match the pinned hash: the configuration pins "
            f"sha256 {expected_sha256} but the inline model bytes hash to {digest}; the store "
            f"metadata was modified or corrupted, refusing to decode with a different model"
        )
    with _lock:
        model = _models.get(digest)
    if model is None:
        from inrcodec.model import CoinModel

        model = CoinModel.from_bytes(data)
        if model.sha256 != digest:
            raise PinnedModelError(
                f"model bytes are not canonical: they hash to {digest} but the parsed model "
                f"re-serialises to sha256 {model.sha256}"
            )
        with _lock:
            model = _models.setdefault(digest, model)
    return model, data, digest


def register_model(model: "CoinModel") -> tuple["CoinModel", bytes, str]:
    """Put an in-memory model in the cache; returns ``(model, bytes, sha256)``.

    If a model with the same hash is cached already, that one is returned (same weights).
    """
    data = bytes(model.to_bytes())
    digest = sha256_hex(data)
    with _lock:
        cached = _models.setdefault(digest, model)
    return cached, data, digest


def model_from_path(path: str | os.PathLike) -> tuple["CoinModel", bytes, str]:
    """The model at ``path`` (see :func:`resolve_path`); a shipped model must match its listed hash."""
    from inrcodec import zoo

    resolved = resolve_path(path)
    pinned = zoo.pinned_sha256(path) if isinstance(path, str) and resolved != Path(path).expanduser() else None
    return model_from_bytes(resolved.read_bytes(), pinned)


def model_lock(digest: str) -> threading.RLock:
    """One lock per model: the encode inner loop (autograd) and decode run one at a time per model.

    torch already spreads a single call over all cores (intra-op threads), so serialising the
    calls that zarr makes from its thread pool avoids oversubscription and any sharing of the
    network's parameters between concurrent autograd graphs.
    """
    with _lock:
        lk = _model_locks.get(digest)
        if lk is None:
            lk = _model_locks[digest] = threading.RLock()
        return lk


def clear() -> None:
    """Empty the cache (tests use it to emulate a fresh process)."""
    with _lock:
        _models.clear()


def cached_model(prefix: str) -> tuple["CoinModel", str] | None:
    """The cached model whose SHA-256 starts with ``prefix`` (a full hash works too), and its hash."""
    with _lock:
        for sha, model in _models.items():
            if sha.startswith(prefix):
                return model, sha
    return None


def cached_hashes() -> list[str]:
    with _lock:
        return list(_models)
