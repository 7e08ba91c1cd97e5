"""The one place a model-like argument becomes a model: resolve, verify, cache by content hash.

``load(model_like)`` accepts a :class:`~inrcodec.models.model.CoinModel`, a model file, a directory
holding ``model.safetensors`` (``inrcodec train-recipe --out DIR``), the name of a shipped model
(:mod:`inrcodec.models.zoo`) or the model file's bytes, and returns a :class:`StoredModel`: the parsed
model, its bytes and their SHA-256. Every codec, filter and benchmark goes through here, so a
hash mismatch is always a :class:`~inrcodec.errors.PinnedModelError`, and a process parses the
weights of a hash once, however many codecs zarr builds from the same metadata.

The cache holds its own copy of each model, parsed from the bytes: changing a ``CoinModel``
after a codec was made from it does not change what that codec encodes with (the hash would
no longer name the weights).

It also remembers which models every Dask worker already holds (:func:`mark_shipped`): a codec
of such a model pickles as its hash only (``COINppCodec.__reduce__``).

>>> from inrcodec.models import modelstore
>>> stored = modelstore.load("t2m-global")
>>> stored.name, stored.sha256 == modelstore.load(stored.data).sha256
('t2m-global', True)
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from inrcodec._limits import MAX_MODEL_BYTES
from inrcodec.errors import ModelFileError, PinnedModelError

if TYPE_CHECKING:
    from inrcodec.models.model import CoinModel

__all__ = ["StoredModel", "ShippedName", "load", "cached", "mark_shipped", "unmark_shipped", "is_shipped",
           "clear", "resolve_path", "read_shipped", "variable_models"]

_lock = threading.Lock()
_models: dict[str, "StoredModel"] = {}
_shipped: set[str] = set()


class StoredModel(NamedTuple):
    model: "CoinModel"
    data: bytes
    sha256: str
    #: the shipped model these bytes are (:mod:`inrcodec.models.zoo`), else None
    name: str | None = None


class ShippedName(str):
    """A shipped model's name that must resolve inside the package only (what a store's codec
    configuration names): never a file or directory of that name in the working directory."""


def resolve_path(path: str | os.PathLike) -> Path:
    """A model file, a directory holding ``model.safetensors``, or the name of a shipped model
    (:mod:`inrcodec.models.zoo`) when no such file or directory exists."""
    if isinstance(path, str) and not Path(path).expanduser().exists():
        from inrcodec.models import zoo

        if zoo.pinned_sha256(path) is not None:
            return zoo.model_path(path)
    from inrcodec.models import modelfile  # torch: not at import time (``import inrcodec`` stays light)

    try:
        return modelfile.file_in(path)
    except FileNotFoundError as exc:
        from inrcodec.models import zoo

        if isinstance(path, str) and zoo.pinned_sha256(path) is not None:  # a local path shadows the name
            raise FileNotFoundError(f"{exc}. {path!r} is also the name of a shipped model, but a path of that name "
                                    "exists here and takes precedence; to use the shipped model, run from another "
                                    "directory or rename the local one") from None
        raise


def variable_models(path: Any) -> dict[str, Path] | None:
    """``{variable: model file}`` when ``path`` is a directory of per-variable models (what
    ``train-recipe --variable a,b --out DIR`` writes: ``DIR/a/model.safetensors``, ...), else None
    (a model file, a model directory, a name)."""
    from inrcodec.models.modelfile import MODEL_FILENAME

    if isinstance(path, ShippedName) or not isinstance(path, (str, os.PathLike)):
        return None
    p = Path(path).expanduser()
    if not p.is_dir() or (p / MODEL_FILENAME).exists():
        return None
    found = {d.name: d / MODEL_FILENAME for d in sorted(p.iterdir()) if (d / MODEL_FILENAME).is_file()}
    return found or None


def variable_codec_options(path: Any) -> dict[str, dict]:
    """``{variable: {option: value}}`` the per-variable models of directory ``path`` were trained to be
    used with (the ``codec_options`` of its ``summary.json``, e.g. ``valid_min=0`` for precipitation);
    {} for anything else or a directory without them. Checked when settings are made of them."""
    import json

    if variable_models(path) is None:
        return {}
    try:
        summary = json.loads((Path(path).expanduser() / "summary.json").read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(summary, dict):
        return {}
    return {str(v): dict(e["codec_options"]) for v, e in summary.items()
            if isinstance(e, dict) and isinstance(e.get("codec_options"), dict) and e["codec_options"]}


def read_shipped(name: str) -> tuple[bytes, str]:
    """(bytes, pinned SHA-256) of the shipped model ``name``, read from inside the package.

    A missing or unreadable file is a :class:`PinnedModelError`, never a ``FileNotFoundError``:
    zarr reads that as "no such array" and would drop the variable from the dataset.
    """
    from inrcodec.models import zoo

    pinned = zoo.pinned_sha256(name)
    if pinned is None:
        raise PinnedModelError(f"{name!r} is not a shipped model (this inrcodec ships {sorted(zoo.available())})")
    path = zoo.model_path(name)
    try:
        return path.read_bytes(), pinned
    except OSError as exc:
        raise PinnedModelError(f"the shipped model {name!r} (sha256 {pinned}) cannot be read from this inrcodec "
                               f"installation ({path}: {exc.strerror}); reinstall inrcodec") from None


def _names_shipped(model_like: str) -> bool:
    """A string names a shipped model when it is marked so, or when no such path exists."""
    if isinstance(model_like, ShippedName):
        return True
    from inrcodec.models import zoo

    return not Path(model_like).expanduser().exists() and zoo.pinned_sha256(model_like) is not None


def load(model_like: Any, expected_sha256: str | None = None) -> StoredModel:
    """The :class:`StoredModel` for a CoinModel, a path, a directory, a shipped name, bytes, a
    StoredModel or a codec (the model it pins).

    With ``expected_sha256`` the bytes must hash to it, else :class:`PinnedModelError`.
    """
    if isinstance(model_like, StoredModel) and expected_sha256 in (None, model_like.sha256):
        return model_like  # verified when it was loaded
    model_like = getattr(model_like, "model_bytes", model_like)  # a codec: the model it pins
    if isinstance(model_like, StoredModel):
        model_like = model_like.data
    if isinstance(model_like, (bytes, bytearray, memoryview)):
        _check_size(memoryview(model_like).nbytes, "model bytes")
        data, pinned = bytes(model_like), None
    elif isinstance(model_like, str) and _names_shipped(model_like):
        data, pinned = read_shipped(model_like)
    elif isinstance(model_like, (str, os.PathLike)):
        path = resolve_path(model_like)
        _check_size(path.stat().st_size, f"model file {path}")
        data, pinned = path.read_bytes(), None
    elif hasattr(model_like, "to_bytes") and hasattr(model_like, "sha256"):
        data, pinned = bytes(model_like.to_bytes()), None
    else:
        from inrcodec.models.modelfile import MODEL_FILENAME

        raise TypeError(
            "model must be a CoinModel, a model file path, a directory holding "
            f"{MODEL_FILENAME}, a shipped model name, or model bytes; got {type(model_like).__name__}"
        )
    digest = hashlib.sha256(data).hexdigest()  # the one hash of a load: the cache's key
    for want, what in ((pinned, "the list of shipped models"), (expected_sha256, "the configuration")):
        if want is not None and digest != str(want).lower():
            raise PinnedModelError(
                f"the model weights do not match the pinned hash: {what} pins sha256 {want} but "
                f"the model bytes hash to {digest}; refusing to use a different model"
            )
    with _lock:
        hit = _models.get(digest)
    return hit if hit is not None else _parse(data, digest)


def _check_size(nbytes: int, what: str) -> None:
    """ModelFileError for more than MAX_MODEL_BYTES: a model is read whole before it is parsed."""
    if nbytes > MAX_MODEL_BYTES:
        raise ModelFileError(f"{what}: {nbytes} bytes, more than the {MAX_MODEL_BYTES} a model file may have "
                             "(inrcodec._limits.MAX_MODEL_BYTES)")


def _parse(data: bytes, digest: str) -> StoredModel:
    from inrcodec.models import zoo
    from inrcodec.models.model import CoinModel

    entry = StoredModel(CoinModel.from_hashed_bytes(data, digest), data, digest, zoo.name_of(digest))
    with _lock:
        return _models.setdefault(digest, entry)


def cached(prefix: str) -> StoredModel | None:
    """The cached model whose SHA-256 starts with ``prefix`` (a full hash works too)."""
    with _lock:
        for sha, entry in _models.items():
            if sha.startswith(prefix):
                return entry
    return None


def mark_shipped(sha256: str) -> None:
    """Every worker of the current Dask cluster holds this model: codecs pickle without its bytes."""
    with _lock:
        _shipped.add(sha256)


def unmark_shipped(sha256: str) -> None:
    with _lock:
        _shipped.discard(sha256)


def is_shipped(sha256: str) -> bool:
    with _lock:
        return sha256 in _shipped


def clear() -> None:
    """Empty the cache (as in a fresh process)."""
    with _lock:
        _models.clear()
        _shipped.clear()
