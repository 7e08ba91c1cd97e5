"""Dev-time script that built the shipped Fashion-MNIST subset in inrcodec/data/fashion_mnist (not used at run time).

Source: Debian ``dataset-fashion-mnist`` (Zalando SE, MIT/Expat licence), the IDX files under
``/usr/share/datasets/fashion-mnist``. ``apt-get install dataset-fashion-mnist`` (development time only).

* train: the first ``N_TRAIN`` images of ``train-images-idx3-ubyte.gz`` whose content is unique;
* validation: the next ``N_VAL`` unique images of the same file (images the train split does not hold);
* test: the first ``N_TEST`` unique images of ``t10k-images-idx3-ubyte.gz`` (Fashion-MNIST's own test set).

"Unique" is by content (sha256 of the 784 bytes): an image identical to one already taken by an earlier split
(or earlier in the same split) is skipped, so no image is in two splits. Labels are not shipped (a codec does
not need them). Stored as uint8 arrays ``train``/``val``/``test`` (N, 28, 28) in one compressed ``.npz``.

Usage: python scripts/build_fashion_mnist.py [/usr/share/datasets/fashion-mnist]
"""

import hashlib
import os
import sys

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "inrcodec")
SRC = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/datasets/fashion-mnist"
N_TRAIN, N_VAL, N_TEST = 4000, 500, 500


def take_unique(images: np.ndarray, n: int, seen: set, start: int = 0) -> tuple[np.ndarray, int]:
    """The first ``n`` images from ``start`` whose content is not in ``seen`` (which grows); and where it stopped."""
    out, i = [], start
    while len(out) < n:
        key = hashlib.sha256(images[i].tobytes()).digest()
        if key not in seen:
            seen.add(key)
            out.append(images[i])
        i += 1
    return np.stack(out), i


def main():
    sys.path.insert(0, os.path.join(ROOT, ".."))
    from inrcodec.datasets.smallimages import read_idx

    train_all = read_idx(os.path.join(SRC, "train-images-idx3-ubyte.gz"))
    test_all = read_idx(os.path.join(SRC, "t10k-images-idx3-ubyte.gz"))
    seen: set = set()
    train, stop = take_unique(train_all, N_TRAIN, seen)
    val, _ = take_unique(train_all, N_VAL, seen, start=stop)
    test, _ = take_unique(test_all, N_TEST, seen)
    out = os.path.join(ROOT, "data", "fashion_mnist", "fashion_mnist_subset.npz")
    np.savez_compressed(out, train=train, val=val, test=test)
    print(out, os.path.getsize(out), "bytes;", {k: v.shape for k, v in (("train", train), ("val", val), ("test", test))})


if __name__ == "__main__":
    main()
