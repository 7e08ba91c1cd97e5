"""The data of a recipe, in physical units, split into train / validation / test without overlap."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inrcodec.recipes.recipe import POOL_TEST_SPLITS, Recipe


@dataclass
class RecipeData:
    """Items (N, *spatial) in physical units, split contiguously; lat/lon for spherical grids."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    lat: np.ndarray | None = None
    lon: np.ndarray | None = None
    units: str = ""
    source: str = ""
    #: lat/lon recipes: split name -> list of :class:`inrcodec.training.pool.Field` (several sources and
    #: grids); ``train``/``val``/``test`` above are then the first field of each split
    fields: dict | None = None
    #: the data variable's name (era5: what ``--init`` checks against the model), and split -> times (era5)
    variable: str = ""
    times: dict | None = None


def _split(items: np.ndarray, fractions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = items.shape[0]
    if n < 3:
        raise ValueError(f"need at least 3 items to split into train/validation/test, got {n}")
    f = np.asarray(fractions, dtype=float) / np.sum(fractions)
    n_val = max(1, int(round(f[1] * n)))
    n_test = max(1, int(round(f[2] * n)))
    n_train = n - n_val - n_test
    if n_train < 1:
        raise ValueError(f"{n} items are too few for the split {list(fractions)}")
    return items[:n_train], items[n_train : n_train + n_val], items[n_train + n_val :]


def split_groups(groups: list[np.ndarray], fractions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Items grouped by source file. With 3 or more files whole files go to one split each (train first, in the
    order given), so no file feeds two splits; with fewer the items of all files are split contiguously."""
    if len(groups) >= 3:
        parts = _split(np.arange(len(groups)), fractions)
        return tuple(np.concatenate([groups[i] for i in idx]) for idx in parts)
    return _split(np.concatenate(groups), fractions)


def _image_tiles(img: np.ndarray, tile, name) -> np.ndarray:
    """A grey image cut into non-overlapping ``tile`` items (the remainder at the right/bottom is dropped)."""
    grey = img.mean(axis=-1) if img.ndim == 3 else img
    th, tw = tile
    if grey.shape[0] < th or grey.shape[1] < tw:
        raise ValueError(f"image {name} is {grey.shape[0]} x {grey.shape[1]}, smaller than the recipe's item {th} x {tw}")
    return np.stack([grey[i : i + th, j : j + tw] for i in range(0, grey.shape[0] - th + 1, th)
                     for j in range(0, grey.shape[1] - tw + 1, tw)]).astype(np.float32)


def _audio_segments(path, seg: int, rate: int | None) -> tuple[np.ndarray, int]:
    from inrcodec.datasets.fileloaders import load_audio

    signal, r = load_audio(path)
    if rate is not None and r != rate:
        raise ValueError(f"{path} is sampled at {r} Hz, the other audio files at {rate} Hz; resample them to one rate")
    n = len(signal) // seg
    if n < 1:
        raise ValueError(f"{path} is shorter ({len(signal)} samples) than one item ({seg} samples)")
    return signal[: n * seg].reshape(n, seg), r


def _volume_slabs(vol: np.ndarray, slab: int, shape=None) -> np.ndarray:
    """Non-overlapping slabs of ``slab`` slices along axis 0, each centre-cropped to ``shape`` (H, W)."""
    h, w = shape or vol.shape[1:]
    i0, j0 = (vol.shape[1] - h) // 2, (vol.shape[2] - w) // 2
    vol = vol[:, i0 : i0 + h, j0 : j0 + w]
    return np.stack([vol[i : i + slab] for i in range(0, vol.shape[0] - slab + 1, slab)])


def _rescale_volume(vol: np.ndarray, percentile: float | None) -> np.ndarray:
    """``vol`` scaled so the ``percentile`` of its foreground (voxels > 0) is 255. MRI intensities are in each
    scanner's (template's) own arbitrary units: without this a model trained on one brain meets the other's
    tissue at intensities it never saw (Colin27's white matter near 130 of 240, MNI152's near 210)."""
    if percentile is None:
        return vol
    fg = vol[np.isfinite(vol) & (vol > 0)]
    ref = float(np.percentile(fg, percentile)) if fg.size else 0.0
    return vol * np.float32(255.0 / ref) if ref > 0 else vol


def load_recipe_data(recipe: Recipe, paths=None, variable: str | None = None) -> RecipeData:
    """Read the recipe's data (``paths`` or the embedded default) and split it."""
    from inrcodec import datasets
    from inrcodec.datasets import era5

    loader, split = recipe.data["loader"], recipe.data.get("split", [0.7, 0.15, 0.15])
    if loader == "era5":
        if not paths and recipe.data["embedded"] == "pool":
            return _climate_pool_data()
        src = list(paths) if paths else [datasets.embedded_sample_path(recipe.data["embedded"])]
        da = era5.load_era5(src if len(src) > 1 else src[0], variable=variable or recipe.data.get("variable") or None)
        parts = dict(zip(("train", "val", "test-time"), era5.split_by_time(da, tuple(split))))
        rd = _field_data({k: [v] for k, v in parts.items()}, ", ".join(str(s) for s in src) + f" [{da.name}]")
        rd.variable, rd.times = str(da.name), {k: v["time"].values for k, v in parts.items()}
        return rd
    if loader in ("audio", "image", "volume"):
        return _load_modality(recipe, paths, split)
    if loader == "smallimage":
        return _small_image_data(recipe, paths, split)
    raise ValueError(f"recipe {recipe.name!r}: unknown data loader {loader!r}")


def _load_modality(recipe: Recipe, paths, split) -> RecipeData:
    """Image, audio and volume recipes: the user's files (split by file when there are 3 or more), or the shipped
    sample, whose splits are fixed by file (different photographs, speakers/languages, brain volumes)."""
    from inrcodec import datasets
    from inrcodec.datasets import fileloaders

    loader = recipe.data["loader"]
    if paths:
        files = {"all": [Path(p) for p in paths]}
        source = ", ".join(str(p) for p in paths)
    else:
        files = datasets.modality_sample_paths(recipe.data["embedded"])
        source = datasets.MODALITY_SAMPLES[recipe.data["embedded"]]["source"]
    if loader == "image":
        tile = recipe.data.get("item", [256, 256])
        groups = {k: [_image_tiles(fileloaders.load_image(p), tile, p) for p in v] for k, v in files.items()}
        units = "intensity in [0, 1]"
    elif loader == "audio":
        seg = recipe.data.get("item", [8 * recipe.model["patch"][0]])[0]
        groups, rate = {}, None
        for k, v in files.items():
            groups[k] = []
            for p in v:
                items, rate = _audio_segments(p, seg, rate)
                groups[k].append(items)
        units = "amplitude in [-1, 1]"
    else:
        pct = recipe.data.get("intensity_percentile")
        vols = {k: [_rescale_volume(fileloaders.load_volume(p), pct) for p in v] for k, v in files.items()}
        shape = tuple(min(s) for s in zip(*(x.shape[1:] for v in vols.values() for x in v)))
        slab = recipe.model["patch"][0]
        groups = {k: [_volume_slabs(x, slab, shape) for x in v] for k, v in vols.items()}
        units = "intensity" if pct is None else f"intensity (each volume scaled: foreground {pct}th percentile = 255)"
        if not paths and files["val"] == files["test"]:  # one volume for both: inferior slabs validate, superior test
            slabs = groups["val"][0]
            groups["val"], groups["test"] = [slabs[: len(slabs) // 2]], [slabs[len(slabs) // 2 :]]
    if paths:
        train, val, test = split_groups(groups["all"], split)
    else:
        train, val, test = (np.concatenate(groups[k]) for k in ("train", "val", "test"))
    return RecipeData(train, val, test, units=units, source=source)


def _small_image_data(recipe: Recipe, paths, split) -> RecipeData:
    """Whole small images (:mod:`inrcodec.datasets.smallimages`): the shipped Fashion-MNIST subset, or the ``--data`` files
    split by file (3+ files) or contiguously. Images an earlier split holds are dropped from later ones (by
    content), and validation/test keep their first ``eval_items`` images (encoding every test item at every
    bit width is the report's cost)."""
    from inrcodec.datasets import smallimages

    if paths:
        parts = split_groups([smallimages.load_small_images(p) for p in paths], split)
        source = ", ".join(str(p) for p in paths)
    else:
        parts = tuple(smallimages.fashion_mnist(k) for k in smallimages.SPLITS)
        source = smallimages.FASHION_SOURCE
    train, val, test = smallimages.drop_shared_images(*parts)
    n = int(recipe.data.get("eval_items", 500))
    return RecipeData(train, val[:n], test[:n], units="intensity in [0, 1]", source=source)


def _field_data(splits: dict, source: str) -> RecipeData:
    """RecipeData from split name -> list of (time, lat, lon) DataArrays."""
    from inrcodec.training.pool import Field

    fields = {}
    for k, das in splits.items():
        # members of one source on one grid (GloSea4's ensemble) become one field of more items
        groups: dict = {}
        for da in das:
            key = (str(da.attrs.get("source", da.name)), da["lat"].values.tobytes(), da["lon"].values.tobytes())
            groups.setdefault(key, []).append(da)
        fields[k] = [
            Field(np.concatenate([np.asarray(d.values, np.float32) for d in g]), np.asarray(g[0]["lat"].values),
                  np.asarray(g[0]["lon"].values), key[0])
            for key, g in groups.items()
        ]
    # the headline test set (bench, plots): the largest held-out-by-source grid, else by time
    test = max(fields.get("test-source", fields.get("test-time")), key=lambda f: f.values[0].size)
    units = str(next(iter(splits.values()))[0].attrs.get("units", ""))
    return RecipeData(fields["train"][0].values, fields["val"][0].values, test.values, lat=test.lat, lon=test.lon,
                      units=units, source=source, fields=fields)


def _climate_pool_data() -> RecipeData:
    """The shipped pool of real near-surface temperature fields (docs/data.md), by split."""
    from inrcodec import datasets

    splits = {k: datasets.climate_pool(k) for k in ("train", "val", *POOL_TEST_SPLITS)}
    names = lambda *ks: ", ".join(sorted({str(da.attrs.get("source", da.name)) for k in ks for da in splits[k]}))
    return _field_data(splits, f"climate pool (trained on: {names('train')}; held out by source: {names('test-source')})")

