"""The ``fashion`` recipe: whole small images (Fashion-MNIST), one latent each."""

import gzip
import struct

import numpy as np
import pytest

from inrcodec.recipes import load_recipe, load_recipe_data, train_recipe
from inrcodec.datasets.smallimages import SPLITS, drop_shared_images, fashion_mnist, image_keys, read_idx


def _write_idx(path, images: np.ndarray) -> None:
    header = struct.pack(">4B", 0, 0, 8, 3) + struct.pack(">3I", *images.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + images.astype(np.uint8).tobytes())


def _disjoint(*splits) -> bool:
    keys = [set(image_keys(s)) for s in splits]
    return all(not keys[i] & keys[j] for i in range(len(keys)) for j in range(i + 1, len(keys)))


def test_shipped_subset_splits_share_no_image_by_content():
    rd = load_recipe_data(load_recipe("fashion"))
    assert rd.train.shape[1:] == rd.val.shape[1:] == rd.test.shape[1:] == (28, 28)
    assert len(rd.train) >= 1000 and len(rd.val) >= 100 and len(rd.test) >= 100
    assert _disjoint(rd.train, rd.val, rd.test)
    assert 0.0 <= rd.train.min() and rd.train.max() <= 1.0
    # the recipe's splits are the shipped ones, whole
    assert np.array_equal(rd.test, fashion_mnist("test")) and np.array_equal(rd.train, fashion_mnist("train"))


def test_user_files_with_duplicates_across_splits_never_overlap(tmp_path):
    rng = np.random.default_rng(0)
    a, b, c = (rng.integers(0, 256, (n, 6, 5), dtype=np.uint8) for n in (8, 4, 4))
    b[1], c[2], c[3] = a[3], a[0], b[0]  # the same images in two files, as re-releases of a set often hold
    paths = [tmp_path / f"{k}-idx3-ubyte.gz" for k in "abc"]
    for p, x in zip(paths, (a, b, c)):
        _write_idx(p, x)
    rd = load_recipe_data(load_recipe("fashion"), [str(p) for p in paths])
    assert (len(rd.train), len(rd.val), len(rd.test)) == (8, 3, 2)
    assert _disjoint(rd.train, rd.val, rd.test)
    assert np.array_equal(rd.train, a / np.float32(255))


def test_drop_shared_images_keeps_the_first_split_whole():
    x = np.arange(5 * 4, dtype=np.float32).reshape(5, 2, 2) / 20
    train, val = drop_shared_images(np.concatenate([x, x[:1]]), x[2:])
    assert len(train) == 6 and len(val) == 0


def test_read_idx_refuses_other_files(tmp_path):
    p = tmp_path / "x-idx3-ubyte"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(16))
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(p)
    p.write_bytes(struct.pack(">4B3I", 0, 0, 8, 3, 2, 2, 2) + bytes(7))  # one byte short
    with pytest.raises(ValueError, match="data bytes"):
        read_idx(p)
    with pytest.raises(ValueError, match="split must be"):
        fashion_mnist("validation")
    assert SPLITS == ("train", "val", "test")


def test_tiny_training_run_learns_more_than_the_mean_image(tmp_path):
    # real images through --data (.npy files, one per split) to keep the report's encodes few
    files = []
    for split, n in (("train", 400), ("val", 16), ("test", 24)):
        files.append(tmp_path / f"{split}.npy")
        np.save(files[-1], np.round(fashion_mnist(split)[:n] * 255).astype(np.uint8))
    tiny = {"width": 32, "depth": 3, "latent_dim": 16, "batch_size": 16, "encode_steps": 5,
            "inner_points": 128, "outer_points": 128}
    report = train_recipe("fashion", data=[str(f) for f in files], steps=50, out=tmp_path / "m", progress=False,
                          overrides=tiny, report_bits=[6], calibration_items=64)
    rows = {r["setting"]: r for r in report["rows"]}
    mean_image = report["baseline"]["rmse"]  # every test image reconstructed as the mean training image
    assert report["split"] == {"train": 400, "validation": 16, "test": 24}
    assert rows["float32 latents"]["rmse"] < 0.9 * mean_image
    assert rows["6 bits + entropy coding"]["rmse"] < 0.9 * mean_image


@pytest.mark.parametrize("name", ["jpeg-mosaic", "webp-mosaic", "jpeg2000-mosaic"])
def test_mosaic_peers_pay_headers_once_and_give_back_every_image(name):
    from inrcodec.bench.peers import PEERS

    x = fashion_mnist("val")[:60]  # 60 images: a 6 x 10 mosaic
    single = PEERS[name.replace("-mosaic", "-2d" if name.startswith("jpeg2000") else "")]
    codecs = [PEERS[name].make(p, x) for p in (PEERS[name].sweep(x)[1], PEERS[name].sweep(x)[-2])]
    (small, rec_small), (large, rec_large) = sorted(((len(c.encode(x)), c.decode(c.encode(x), x)) for c in codecs),
                                                    key=lambda t: t[0])
    assert rec_large.shape == x.shape and small < large
    err = lambda r: float(np.sqrt(np.mean((r - x) ** 2)))
    assert err(rec_large) < err(rec_small) < 0.2  # more bytes, less error; each image comes back in its place
    per_image = min(len(single.make(p, x).encode(x)) for p in single.sweep(x))
    assert small < per_image  # one set of headers instead of 60: below the per-image codec's lowest rate
