"""The image, speech and MRI recipes on their shipped real data: loaders, disjoint splits, everyday-codec peers."""

import hashlib
import sys

import numpy as np
import pytest

from inrcodec import bench
from inrcodec.bench import modality_peers
from inrcodec.datasets.fileloaders import load_audio, load_image, load_volume
from inrcodec.datasets import modality_sample_paths
from inrcodec.recipes import split_groups, load_recipe, load_recipe_data


def _digests(items, min_std=0.0):
    """Content hashes of the items (optionally only those with some signal: digital silence repeats)."""
    return {hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest() for x in items if np.std(x) > min_std}


# -- loaders on the shipped real samples ------------------------------------------------------------


def test_load_image_reads_a_shipped_photograph_and_a_jpeg(tmp_path):
    from PIL import Image

    path = modality_sample_paths("image")["test"][0]
    img = load_image(path)
    raw = np.asarray(Image.open(path))
    assert img.shape == raw.shape == (256, 256) and img.dtype == np.float32
    np.testing.assert_allclose(img * 255, raw, atol=1e-3)
    Image.fromarray(np.stack([raw] * 3, axis=-1)).save(tmp_path / "p.jpg", quality=95)
    jpg = load_image(tmp_path / "p.jpg")
    assert jpg.shape == (256, 256, 3)
    assert np.sqrt(np.mean((jpg.mean(axis=-1) - img) ** 2)) < 0.02  # JPEG q95 of the same photograph
    (tmp_path / "bad.png").write_bytes(b"no image")
    with pytest.raises(ValueError, match="not an image"):
        load_image(tmp_path / "bad.png")


def test_load_audio_reads_the_shipped_flac_speech():
    x, rate = load_audio(modality_sample_paths("audio")["test"][0])
    assert rate == 16000 and x.dtype == np.float32 and x.shape == (20 * 16000,)
    assert 0.01 < float(np.sqrt(np.mean(x**2))) < 0.5 and np.abs(x).max() <= 1.0  # speech, not silence or noise


def test_load_audio_without_soundfile_says_which_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "soundfile", None)
    with pytest.raises(ImportError, match=r"inrcodec\[audio\]"):
        load_audio(modality_sample_paths("audio")["test"][0])


def test_load_volume_reads_the_shipped_and_nibabels_real_brains():
    import nibabel
    from pathlib import Path

    vol = load_volume(modality_sample_paths("mri")["train"][0])
    assert vol.shape == (80, 96, 80) and vol.dtype == np.float32
    assert vol.min() == 0 and 100 < vol.max() <= 255 and np.array_equal(vol, np.round(vol))
    anat = Path(nibabel.__file__).parent / "tests" / "data" / "anatomical.nii"  # a real T1 in nibabel's wheel
    if anat.exists():
        a = load_volume(anat)
        assert a.shape == (33, 41, 25) and a.std() > 0


def test_load_volume_without_nibabel_says_which_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "nibabel", None)
    with pytest.raises(ImportError, match=r"inrcodec\[mri\]"):
        load_volume(modality_sample_paths("mri")["train"][0])


# -- splits ------------------------------------------------------------------------------------------


def test_shipped_image_and_speech_splits_come_from_different_files():
    for modality in ("image", "audio"):
        files = modality_sample_paths(modality)
        names = {k: {p.name for p in v} for k, v in files.items()}
        assert not (names["train"] & names["val"] or names["train"] & names["test"] or names["val"] & names["test"])
        content = {k: _digests(np.frombuffer(p.read_bytes(), np.uint8) for p in v) for k, v in files.items()}
        assert not (content["train"] & content["test"] or content["val"] & content["test"])


@pytest.mark.parametrize("name", ["image", "audio", "mri"])
def test_recipe_splits_share_no_item(name):
    rd = load_recipe_data(load_recipe(name))
    # audio: prompts contain digital silence, identical in every language; compare items that carry speech
    tr, va, te = (_digests(s, min_std=1e-3 if name == "audio" else 0.0) for s in (rd.train, rd.val, rd.test))
    assert len(te) >= 1 and len(va) >= 1
    assert not (tr & te) and not (tr & va) and not (va & te)
    assert len(tr) > 0.9 * len(rd.train)  # the check above compared nearly every item


def test_mri_validation_and_test_are_different_regions_of_another_brain():
    from inrcodec.recipes.data import _rescale_volume

    recipe = load_recipe("mri")
    rd = load_recipe_data(recipe)
    pct = recipe.data.get("intensity_percentile")  # each volume is scaled as a whole before it is cut
    train_vol, other = (_rescale_volume(load_volume(p), pct) for p in (modality_sample_paths("mri")["train"][0],
                                                                      modality_sample_paths("mri")["test"][0]))
    np.testing.assert_array_equal(np.concatenate(list(rd.train)), train_vol)  # every training slab is Colin27
    joined = np.concatenate(list(rd.val) + list(rd.test))
    np.testing.assert_array_equal(joined, other)  # val = inferior, test = superior slabs of MNI152, no slice twice


def test_user_files_go_whole_to_one_split():
    groups = [np.full((2, 4), i, np.float32) for i in range(5)]
    train, val, test = split_groups(groups, [0.6, 0.2, 0.2])
    ids = [set(np.unique(s).tolist()) for s in (train, val, test)]
    assert ids == [{0.0, 1.0, 2.0}, {3.0}, {4.0}]
    few = split_groups(groups[:2], [0.5, 0.25, 0.25])  # two files: contiguous split of their items
    assert sum(len(s) for s in few) == 4


def test_image_recipe_with_user_photographs(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        p = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (300, 520), dtype=np.uint8)).save(p)
        paths.append(p)
    rd = load_recipe_data(load_recipe("image"), paths)
    assert rd.train.shape == rd.val.shape == rd.test.shape == (2, 256, 256)  # 2 tiles per 300 x 520 photo
    Image.fromarray(np.zeros((100, 100), np.uint8)).save(tmp_path / "small.png")
    with pytest.raises(ValueError, match="smaller than the recipe's item"):
        load_recipe_data(load_recipe("image"), [tmp_path / "small.png"] * 3)


# -- everyday codecs ---------------------------------------------------------------------------------


def _roundtrip(name, params, x):
    codec = bench.PEERS[name].make(params, x)
    data = codec.encode(x)
    return data, codec.decode(data, x)


@pytest.mark.parametrize("name,key,low,high", [("jpeg", "quality", 10, 90), ("webp", "quality", 10, 90),
                                               ("jpeg2000-2d", "ratio", 64, 4)])
def test_image_peers_trade_bytes_for_error_on_a_real_photo(name, key, low, high):
    x = load_recipe_data(load_recipe("image")).test[:2]
    small, rec_small = _roundtrip(name, {key: low}, x)
    big, rec_big = _roundtrip(name, {key: high}, x)
    err = lambda r: float(np.sqrt(np.mean((r - x) ** 2)))  # noqa: E731
    assert rec_big.shape == x.shape and len(big) > len(small) and err(rec_big) < err(rec_small) < 0.2
    assert len(big) < x.size  # under 8 bits per pixel
    assert _roundtrip(name, {key: low}, x)[0] == small  # deterministic


def test_volume_peers_per_slice_and_3d():
    x = load_recipe_data(load_recipe("mri")).test[:1]
    data, rec = _roundtrip("jpeg2000-slices", {"ratio": 8}, x)
    assert rec.shape == x.shape and len(data) < x.size and np.sqrt(np.mean((rec - x) ** 2)) < 10
    for name, params in (("sperr-3d", {"pwe_rel": 0.02}), ("sz3-3d", {"eb_rel": 0.01})):
        if bench.PEERS[name].missing():
            continue
        data, rec = _roundtrip(name, params, x)
        assert rec.shape == x.shape and len(data) < x.size
        span = float(x.max() - x.min())
        assert np.max(np.abs(rec - x)) <= 0.02 * span * 1.001  # their point-wise bound holds in 3-D


@pytest.mark.parametrize("name", ["mp3", "opus"])
def test_speech_peers_hit_their_bitrate_on_real_speech(name):
    pytest.importorskip("av")
    x = load_recipe_data(load_recipe("audio")).test[:25]  # 5 s of French speech
    data, rec = _roundtrip(name, {"kbps": 32}, x)
    kbps = 8 * len(data) / (x.size / 16000) / 1000
    assert 28 < kbps < 40
    snr = 10 * np.log10(np.mean(x**2) / np.mean((rec - x) ** 2))
    assert snr > 10  # aligned: the decoder's delay is removed (a shifted signal would have SNR near 0)


def test_bench_picks_the_modality_peers_and_plots_psnr(tmp_path):
    assert bench.default_peers("image") == ["jpeg", "webp", "jpeg2000-2d"]
    assert bench.default_peers("climate") == bench.SCIENTIFIC_PEERS and "mp3" not in bench.SCIENTIFIC_PEERS
    res = bench.run_bench("image", quick=True, max_items=1, out=tmp_path)
    assert {r["codec"] for r in res.rows} == {"jpeg", "webp", "jpeg2000-2d"}
    assert res.info["modality"] == "image" and (tmp_path / "bench_image_psnr.png").stat().st_size > 0
    assert modality_peers.rate_axis("audio") == ("kbps (16 kHz)", 16.0)
