"""Pretrained models that ship with inrcodec, by name (like ``compressai.zoo``).

``COINppCodec(model="t2m-global")``, ``COINppCodec.for_dataarray(da, model="t2m-global")`` and
``inrcodec compress --model t2m-global`` use a shipped model without any training; the name is
resolved to the model file inside the package, whose SHA-256 must match the one listed here,
and stores pin that hash like any other model. ``inrcodec models`` lists them.

>>> from inrcodec.models import zoo
>>> "t2m-global" in zoo.available()
True
>>> zoo.model_path("t2m-global").name
't2m-global.safetensors'

The list (``data/models/models.json``) is read once per process.
"""

from __future__ import annotations

import copy
import json
import os
from functools import lru_cache
from importlib import resources
from pathlib import Path

_INDEX = "models.json"
#: the shipped model that an array coded without a network (``CodecSettings.network=False``, a
#: variable no model was trained for) pins: its network is never run, only its grid kind counts
NETWORK_FREE_PIN = "t2m-global-2"


def _root():
    return resources.files("inrcodec").joinpath("data", "models")


@lru_cache(maxsize=1)
def _index() -> dict[str, dict]:
    return json.loads(_root().joinpath(_INDEX).read_text())


def available() -> dict[str, dict]:
    """Shipped models: name -> their entry (file, sha256, training data, grids, measured rate-distortion)."""
    return copy.deepcopy(_index())


def model_path(name: str) -> Path:
    """The file of the shipped model ``name``."""
    models = _index()
    if name not in models:
        raise ValueError(f"no shipped model named {name!r}; shipped: {sorted(models)} (`inrcodec models` lists them)")
    return Path(os.fspath(_root().joinpath(models[name]["file"])))


def pinned_sha256(name: str) -> str | None:
    """The SHA-256 a shipped model's bytes must have (None if ``name`` is not a shipped model)."""
    entry = _index().get(str(name))
    return None if entry is None else entry["sha256"]


def name_of(sha256_prefix: str) -> str | None:
    """The name of the shipped model whose SHA-256 starts with ``sha256_prefix`` (a full hash
    works too), or None if none does."""
    for name, entry in _index().items():
        if entry["sha256"].startswith(sha256_prefix):
            return name
    return None


def describe() -> str:
    """A human-readable list of the shipped models (what ``inrcodec models`` prints)."""
    lines = []
    for name, m in _index().items():
        lines += [f"{name}  sha256 {m['sha256'][:16]}  ({m['file']})", f"  {m['summary']}",
                  f"  trained on: {m['trained_on']}", f"  grids: {m['grids']}"]
        for row in m.get("rate_distortion", []):
            lines.append(f"  {row}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
