"""Small whole images (Fashion-MNIST and the like) for the ``fashion`` recipe: one image is one item.

* :func:`read_idx` reads the IDX files of MNIST-style sets (``*-idx3-ubyte``, gzipped or not), e.g. the full
  Fashion-MNIST of Debian's ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``);
* :func:`fashion_mnist` is the subset shipped in ``inrcodec/data/fashion_mnist`` (built by
  ``scripts/build_fashion_mnist.py``; MIT licence, ``inrcodec/data/LICENSE-fashion-mnist.txt``);
* :func:`load_small_images` reads the recipe's ``--data`` files (IDX, ``.npy`` or ``.npz``);
* :func:`drop_shared_images` removes from later splits any image whose content an earlier split holds.

Everything here is numpy; nothing imports torch. Pixels come out as float32 in [0, 1] (uint8 / 255).
"""

from __future__ import annotations

import gzip
import hashlib
import os
from importlib import resources
from pathlib import Path

import numpy as np

SPLITS = ("train", "val", "test")
FASHION_SOURCE = ("Fashion-MNIST (Zalando SE; Debian dataset-fashion-mnist), grey 28 x 28: train and validation "
                  "from its training file, test from its t10k file, no image in two splits; MIT "
                  "(inrcodec/data/LICENSE-fashion-mnist.txt)")
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An IDX file (MNIST's format; ``.gz`` is decompressed) as a numpy array of its stored type and shape.

    >>> import tempfile, struct
    >>> p = os.path.join(tempfile.mkdtemp(), "x-idx3-ubyte")
    >>> _ = open(p, "wb").write(struct.pack(">4B3I", 0, 0, 8, 3, 2, 1, 2) + bytes([1, 2, 3, 4]))
    >>> read_idx(p).tolist()
    [[[1, 2]], [[3, 4]]]
    """
    path = Path(os.fspath(path))
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise ValueError(f"read_idx: {path} is not an IDX file (magic bytes {raw[:4].hex()})")
    ndim = raw[3]
    shape = tuple(int(n) for n in np.frombuffer(raw, ">u4", ndim, 4))
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - 4 - 4 * ndim != expected:
        raise ValueError(f"read_idx: {path} holds {len(raw) - 4 - 4 * ndim} data bytes, its header {shape} says {expected}")
    return np.frombuffer(raw, dtype, offset=4 + 4 * ndim).reshape(shape)


def _as_unit(images: np.ndarray, name) -> np.ndarray:
    """(N, H, W) images as float32 in [0, 1]: 8-bit integers / 255, floats kept (and checked)."""
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"{name}: expected images (N, H, W), got shape {images.shape}")
    if np.issubdtype(images.dtype, np.integer):
        if images.min(initial=0) < 0 or images.max(initial=0) > 255:
            raise ValueError(f"{name}: integer pixels must be 8-bit (0..255)")
        return images.astype(np.float32) / np.float32(255.0)
    x = images.astype(np.float32)
    if not np.isfinite(x).all() or x.min(initial=0) < 0 or x.max(initial=0) > 1:
        raise ValueError(f"{name}: float pixels must be finite and in [0, 1]")
    return x


def fashion_mnist(split: str) -> np.ndarray:
    """The shipped Fashion-MNIST subset of one split (``train``, ``val``, ``test``), float32 (N, 28, 28) in [0, 1].

    >>> [fashion_mnist(s).shape for s in SPLITS]
    [(4000, 28, 28), (500, 28, 28), (500, 28, 28)]
    """
    if split not in SPLITS:
        raise ValueError(f"fashion_mnist: split must be one of {SPLITS}, got {split!r}")
    ref = resources.files("inrcodec").joinpath("data", "fashion_mnist", "fashion_mnist_subset.npz")
    with resources.as_file(ref) as path, np.load(path, allow_pickle=False) as z:
        return _as_unit(z[split], f"fashion_mnist[{split}]")


def load_small_images(path: str | os.PathLike) -> np.ndarray:
    """One ``--data`` file of small images as float32 (N, H, W) in [0, 1]: an IDX file (``*-idx3-ubyte[.gz]``),
    a ``.npy`` array or a ``.npz`` whose arrays are concatenated in stored order."""
    path = Path(os.fspath(path))
    if not path.exists():
        raise FileNotFoundError(f"load_small_images: no such file: {path}")
    if path.suffix == ".npy":
        return _as_unit(np.load(path, allow_pickle=False), path)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            return _as_unit(np.concatenate([z[k] for k in z.files]), path)
    return _as_unit(read_idx(path), path)


def image_keys(images: np.ndarray) -> list[bytes]:
    """The sha256 of every image's bytes (float32 C order): equal keys, equal content."""
    x = np.ascontiguousarray(images, dtype=np.float32)
    return [hashlib.sha256(item.tobytes()).digest() for item in x]


def drop_shared_images(*splits: np.ndarray) -> tuple[np.ndarray, ...]:
    """The splits with every image whose content an earlier split holds removed (the first split is kept whole),
    so that no image is in two splits whatever the files' order and duplicates."""
    seen: set = set()
    out = []
    for i, x in enumerate(splits):
        keys = image_keys(x)
        keep = np.array([k not in seen for k in keys], dtype=bool) if i else np.ones(len(keys), bool)
        seen.update(keys)
        out.append(x[keep])
    return tuple(out)
