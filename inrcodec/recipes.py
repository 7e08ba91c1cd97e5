"""Declarative training recipes: ``inrcodec train-recipe NAME``.

A recipe is a small TOML file in ``recipes/`` (shipped as ``inrcodec._recipes``): the data
loader, the grid kind and patch shape, and named presets (``cpu``, ``paper``) with the
architecture and the learning rates. This module turns a recipe into a trained, calibrated
model file plus a report measured on the held-out split with the real codec bytes.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

PRESET_KEYS = {
    "width", "depth", "latent_dim", "w0", "steps", "batch_size", "outer_lr", "inner_lr",
    "inner_steps", "encode_steps", "inner_points", "outer_points", "patch",
    "meta_sgd", "patch_degrees", "points", "lr_schedule", "quant_num_std",
}
#: the climate pool's held-out splits, reported separately (docs/data.md)
POOL_TEST_SPLITS = ("test-time", "test-source")


@dataclass
class Recipe:
    name: str
    description: str
    modality: str
    data: dict
    model: dict
    presets: dict
    report: dict = field(default_factory=dict)

    def preset(self, name: str) -> dict:
        if name not in self.presets:
            raise ValueError(f"recipe {self.name!r} has no preset {name!r}; it has {sorted(self.presets)}")
        p = dict(self.presets[name])
        unknown = set(p) - PRESET_KEYS
        if unknown:
            raise ValueError(f"recipe {self.name!r} preset {name!r}: unknown keys {sorted(unknown)}")
        return p


def _recipe_files() -> dict[str, str]:
    root = resources.files("inrcodec._recipes")
    return {p.name[:-5]: p.read_text() for p in root.iterdir() if p.name.endswith(".toml")}


def list_recipes() -> dict[str, str]:
    """Recipe names and one-line descriptions."""
    return {name: load_recipe(name).description for name in sorted(_recipe_files())}


def load_recipe(name_or_path) -> Recipe:
    """A recipe by name (``era5``, ``audio``, ``image``, ``mri``) or from a TOML file path."""
    files = _recipe_files()
    if str(name_or_path) in files:
        text = files[str(name_or_path)]
    elif Path(name_or_path).suffix == ".toml" and Path(name_or_path).exists():
        text = Path(name_or_path).read_text()
    else:
        raise ValueError(f"unknown recipe {name_or_path!r}; known: {sorted(files)} (or a path to a .toml file)")
    raw = tomllib.loads(text)
    missing = {"name", "data", "model", "presets"} - set(raw)
    if missing:
        raise ValueError(f"recipe {name_or_path!r} lacks {sorted(missing)}")
    return Recipe(
        name=raw["name"], description=raw.get("description", ""), modality=raw.get("modality", ""),
        data=raw["data"], model=raw["model"], presets=raw["presets"], report=raw.get("report", {}),
    )


# -- data ------------------------------------------------------------------------------------
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
    #: lat/lon recipes: split name -> list of :class:`inrcodec.pool.Field` (several sources and
    #: grids); ``train``/``val``/``test`` above are then the first field of each split
    fields: dict | None = None


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


def _split_groups(groups: list[np.ndarray], fractions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
    from . import datasets

    signal, r = datasets.load_audio(path)
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


def load_recipe_data(recipe: Recipe, paths=None, variable: str | None = None) -> RecipeData:
    """Read the recipe's data (``paths`` or the embedded default) and split it."""
    from . import datasets

    loader, split = recipe.data["loader"], recipe.data.get("split", [0.7, 0.15, 0.15])
    if loader == "era5":
        if not paths and recipe.data["embedded"] == "pool":
            return _climate_pool_data()
        src = list(paths) if paths else [datasets.embedded_sample_path(recipe.data["embedded"])]
        da = datasets.load_era5(src if len(src) > 1 else src[0], variable=variable or recipe.data.get("variable") or None)
        parts = dict(zip(("train", "val", "test-time"), datasets.split_by_time(da, tuple(split))))
        return _field_data({k: [v] for k, v in parts.items()}, ", ".join(str(s) for s in src) + f" [{da.name}]")
    if loader in ("audio", "image", "volume"):
        return _load_modality(recipe, paths, split)
    raise ValueError(f"recipe {recipe.name!r}: unknown data loader {loader!r}")


def _load_modality(recipe: Recipe, paths, split) -> RecipeData:
    """Image, audio and volume recipes: the user's files (split by file when there are 3 or more), or the shipped
    sample, whose splits are fixed by file (different photographs, speakers/languages, brain volumes)."""
    from . import datasets

    loader = recipe.data["loader"]
    if paths:
        files = {"all": [Path(p) for p in paths]}
        source = ", ".join(str(p) for p in paths)
    else:
        files = datasets.modality_sample_paths(recipe.data["embedded"])
        source = datasets.MODALITY_SAMPLES[recipe.data["embedded"]]["source"]
    if loader == "image":
        tile = recipe.data.get("item", [256, 256])
        groups = {k: [_image_tiles(datasets.load_image(p), tile, p) for p in v] for k, v in files.items()}
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
        vols = {k: [datasets.load_volume(p) for p in v] for k, v in files.items()}
        shape = tuple(min(s) for s in zip(*(x.shape[1:] for v in vols.values() for x in v)))
        slab = recipe.model["patch"][0]
        groups = {k: [_volume_slabs(x, slab, shape) for x in v] for k, v in vols.items()}
        units = "intensity"
        if not paths and files["val"] == files["test"]:  # one volume for both: inferior slabs validate, superior test
            slabs = groups["val"][0]
            groups["val"], groups["test"] = [slabs[: len(slabs) // 2]], [slabs[len(slabs) // 2 :]]
    if paths:
        train, val, test = _split_groups(groups["all"], split)
    else:
        train, val, test = (np.concatenate(groups[k]) for k in ("train", "val", "test"))
    return RecipeData(train, val, test, units=units, source=source)


def _field_data(splits: dict, source: str) -> RecipeData:
    """RecipeData from split name -> list of (time, lat, lon) DataArrays."""
    from .pool import Field

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
    from . import datasets

    splits = {k: datasets.climate_pool(k) for k in ("train", "val", *POOL_TEST_SPLITS)}
    names = lambda *ks: ", ".join(sorted({str(da.attrs.get("source", da.name)) for k in ks for da in splits[k]}))
    return _field_data(splits, f"climate pool (trained on: {names('train')}; held out by source: {names('test-source')})")


# -- training ---------------------------------------------------------------------------------
def build_model(recipe: Recipe, preset: dict, sample_shape) -> "CoinModel":
    from .model import CoinModel
    from .network import ModulatedSiren

    kind = recipe.model["grid"]
    patch = preset.get("patch", recipe.model.get("patch")) or None
    dim_in = 3 if kind == "spherical" else len(sample_shape)
    net = ModulatedSiren(
        dim_in=dim_in, dim_out=1, width=preset["width"], depth=preset["depth"],
        latent_dim=preset["latent_dim"], w0=preset["w0"], meta_sgd=bool(preset.get("meta_sgd", False)),
        inner_lr=preset["inner_lr"],
    )
    degrees = preset.get("patch_degrees", recipe.model.get("patch_degrees")) or None
    return CoinModel(
        net, kind, patch_shape=tuple(patch) if patch else None, extent=recipe.model.get("extent", 1.0),
        inner_lr=preset["inner_lr"], encode_steps=preset["encode_steps"],
        patch_degrees=tuple(degrees) if degrees and patch else None,
    )


def train_recipe(
    name,
    data=None,
    variable: str | None = None,
    preset: str = "cpu",
    steps: int | None = None,
    out="inrcodec-model",
    device: str = "cpu",
    seed: int = 0,
    resume: bool = False,
    progress: bool = True,
    calibration_items: int = 2048,
    overrides: dict | None = None,
    report_bits=None,
) -> dict:
    """Train a base network for a recipe, calibrate its coding tables, write model and report.

    ``overrides`` replaces preset keys (e.g. a tiny ``width`` in tests); ``report_bits`` the
    recipe's list of bit widths to report. Returns the report dict (also written to
    ``OUT/report.json`` and ``OUT/report.md``).
    """
    import torch

    from .metalearn import MetaTrainer, TrainConfig

    t_start = time.time()
    recipe = load_recipe(name)
    p = recipe.preset(preset)
    unknown = set(overrides or {}) - PRESET_KEYS
    if unknown:
        raise ValueError(f"unknown preset keys in overrides: {sorted(unknown)}")
    p.update(overrides or {})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    rd = load_recipe_data(recipe, data, variable)
    model = build_model(recipe, p, rd.train.shape[1:])
    train_fields = rd.fields["train"] if rd.fields else None
    model.fit_normalisation(np.concatenate([f.values.ravel() for f in train_fields]) if train_fields else rd.train)
    model.description = {"recipe": recipe.name, "preset": preset, "data": rd.source, "units": rd.units,
                         "train_items": int(sum(f.values.shape[0] for f in train_fields) if train_fields else rd.train.shape[0]),
                         "item_shape": list(rd.train.shape[1:]),
                         "training_range": [model.offset, model.offset + model.scale]}
    grid = model.make_grid(rd.test.shape[1:], lat=rd.lat, lon=rd.lon)  # rd.lat/lon are those of the test items
    cfg = TrainConfig(
        steps=int(steps if steps is not None else p["steps"]), batch_size=p["batch_size"], outer_lr=p["outer_lr"],
        inner_lr=p["inner_lr"], inner_steps=p["inner_steps"], inner_points=p.get("inner_points"),
        outer_points=p.get("outer_points"), seed=seed, device=device, lr_schedule=p.get("lr_schedule", "constant"),
    )
    cfg.val_every = max(1, min(100, cfg.steps // 10))
    cfg.checkpoint_every = cfg.val_every
    if rd.fields:
        sampler, val_batch = _pool_batches(model, rd.fields, int(p.get("points", 256)), seed)
        model.description["training_grids"] = sampler.describe()
    else:
        sampler, val_batch = model.training_sampler(rd.train, grid), model.validation_batch(rd.val, grid)
    trainer = MetaTrainer(model.network, sampler, val_batch, cfg, out)
    if resume and trainer.checkpoint_path.exists():
        trainer.load_checkpoint()
    history = trainer.train(progress=progress)
    model.network = trainer.network.cpu().eval()
    t_train = time.time() - t_start

    cal_sets = [(f.values, model.make_grid(f.values.shape[1:], lat=f.lat, lon=f.lon)) for f in train_fields] if train_fields else [(rd.train, grid)]
    calibrate_model(model, cal_sets, calibration_items, seed, p)
    path = model.save(out)
    bits = report_bits or recipe.report.get("bits", [4, 5, 6, 8])
    if rd.fields:
        report = evaluate_fields(model, rd.fields, bits)
    else:
        report = evaluate(model, rd, bits, grid)
    report.update(
        recipe=recipe.name, preset=preset, steps=cfg.steps, seed=seed, device=device,
        model_file=str(path), model_sha256=model.sha256, train_seconds=round(t_train, 1),
        total_seconds=round(time.time() - t_start, 1), data=rd.source, units=rd.units,
        split={k: int(sum(f.values.shape[0] for f in fs)) for k, fs in rd.fields.items()} if rd.fields
        else {"train": int(rd.train.shape[0]), "validation": int(rd.val.shape[0]), "test": int(rd.test.shape[0])},
        final_val_psnr=history.val_psnr[-1] if history.val_psnr else None,
        architecture=model.network.config(), patch_shape=model.patch_shape,
    )
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(report_markdown(report))
    _plots(out, history, model, rd, grid, report)
    return report


def calibrate_model(model, cal_sets, calibration_items: int, seed: int, preset: dict) -> None:
    """Quantizer statistics and entropy tables from latents fitted on training items.

    ``cal_sets``: (values, grid) pairs, subsampled to about ``calibration_items`` patches in all.
    A Meta-SGD model first gets unit-scale latent dimensions (``CoinModel.whiten_latents``); the
    preset's ``quant_num_std`` (default 3, the paper's) sets the quantizer's clipping range.
    """
    rng = np.random.default_rng(seed)
    latents = []
    for values, g in cal_sets:
        max_items = max(1, calibration_items // (len(cal_sets) * model.partition(g).num_patches))
        if values.shape[0] > max_items:
            values = values[np.sort(rng.choice(values.shape[0], max_items, replace=False))]
        latents.append(model.encode(values, g).reshape(-1, model.latent_dim))
    latents = np.concatenate(latents)
    if model.network.meta_sgd:
        latents = model.whiten_latents(latents)
    model.calibrate(latents, num_std=float(preset.get("quant_num_std", 3.0)))


def _pool_batches(model, fields: dict, points: int, seed: int):
    """The training sampler and a fixed validation batch of normalised spherical patches."""
    from .pool import Field, SphericalPatchPool

    norm = lambda fs: [Field(model.normalise(f.values), f.lat, f.lon, f.name) for f in fs]
    sampler = SphericalPatchPool(norm(fields["train"]), model.patch_points, points=points)
    val = SphericalPatchPool(norm(fields["val"]), model.patch_points, points=2 * points, jitter=(0.0, 0.0))
    return sampler, val.sample(np.random.default_rng(seed + 1), 128)


def evaluate_fields(model, fields: dict, bits_list) -> dict:
    """:func:`evaluate` on every held-out field (``test-time`` and ``test-source`` splits).

    ``rows``/``baseline``/``test_shape`` are those of the first ``test-source`` field (else the
    first ``test-time`` one); ``tests`` lists every set. The baseline of a set is its own
    time-mean field (what one stored mean field would give).
    """
    tests = []
    for split in ("test-source", "test-time"):
        for f in sorted(fields.get(split, []), key=lambda f: -f.values[0].size):
            g = model.make_grid(f.values.shape[1:], lat=f.lat, lon=f.lon)
            rd = RecipeData(f.values, f.values, f.values, lat=f.lat, lon=f.lon)
            r = evaluate(model, rd, bits_list, g, baseline="the set's own time-mean field (baseline)", entropy_options=(True,))
            r.update(split=split, field=f.name, spacing=[round(v, 3) for v in g.spacing()])
            tests.append(r)
    first = tests[0]
    return {"test_shape": first["test_shape"], "rows": first["rows"], "baseline": first["baseline"], "tests": tests}


def evaluate(model, rd: RecipeData, bits_list, grid, baseline: str = "training mean (baseline)", entropy_options=(False, True)) -> dict:
    """Held-out (test split) error and rate, from the real codec bytes at each bit width.

    lat/lon data also get the cos(latitude)-weighted RMSE (``rmse_coslat``).
    """
    from .codec import COINppCodec

    test = np.ascontiguousarray(rd.test, dtype=np.float32)
    rows = []
    latents = model.encode(test, grid)
    recon = model.decode(latents, grid)
    k_values = latents.size
    m = lambda label, bits, dec, bpv, **kw: _metrics(label, bits, test, dec, bpv, model.scale, lat=rd.lat, **kw)
    rows.append(m("float32 latents", None, recon, 32 * k_values / test.size, estimated=True))
    for b in bits_list:
        for entropy in entropy_options:
            codec = COINppCodec(model, bits=int(b), inner_steps=model.encode_steps,
                                lat=None if rd.lat is None else rd.lat, lon=None if rd.lon is None else rd.lon,
                                entropy_coding=entropy)
            enc = codec.encode(test)
            dec = codec.decode(enc)
            label = f"{b} bits" + (" + entropy coding" if entropy else "")
            rows.append(m(label, int(b), dec, 8 * len(enc) / test.size, nbytes=len(enc)))
    with warnings.catch_warnings():  # cells missing in every item (land in an ocean field) stay NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(rd.train, axis=0)
    clim = m(baseline, None, np.broadcast_to(mean, test.shape), float("nan"))
    return {"test_shape": list(test.shape), "rows": rows, "baseline": clim}


def _metrics(label, bits, original, decoded, bpv, scale, estimated=False, nbytes=None, lat=None) -> dict:
    err = np.asarray(decoded, dtype=np.float64) - original
    valid = np.isfinite(original)
    rmse = float(np.sqrt(np.mean(err[valid] ** 2)))
    weighted = {}
    if lat is not None:
        w = np.broadcast_to(np.cos(np.deg2rad(np.asarray(lat, np.float64)))[:, None], original.shape[-2:])
        w = np.broadcast_to(w, original.shape)[valid]
        weighted["rmse_coslat"] = float(np.sqrt(np.sum(w * err[valid] ** 2) / np.sum(w)))
    err = err[valid]
    return {**weighted,
        "setting": label, "bits": bits, "rmse": rmse, "max_abs_error": float(np.max(np.abs(err))),
        "psnr_db": float(-10 * np.log10(max((rmse / scale) ** 2, 1e-30))),
        "bits_per_value": float(bpv), "compression_ratio": float(32.0 / bpv) if bpv == bpv and bpv > 0 else None,
        "bytes": nbytes, "rate_estimated": estimated,
    }


def report_markdown(r: dict) -> str:
    lines = [
        f"# inrcodec recipe `{r['recipe']}` (preset `{r['preset']}`)", "",
        f"- data: {r['data']}", f"- split (items): {r['split']}", f"- model: `{r['model_file']}` sha256 `{r['model_sha256']}`",
        f"- architecture: {r['architecture']}, patch {r['patch_shape']}",
        f"- meta-training: {r['steps']} steps, {r['train_seconds']} s on {r['device']} (total {r['total_seconds']} s); "
        f"final validation PSNR {r['final_val_psnr']:.2f} dB (3 inner steps, normalised units)" if r.get("final_val_psnr") is not None else "",
        "", f"Held-out test split {r['test_shape']}" + (f" ({r['tests'][0]['split']}: {r['tests'][0]['field']})" if r.get("tests") else "")
        + f"; errors in {r['units'] or 'data units'}; rate from the real chunk bytes "
        "(headers included) except the float32 row, which counts 32 bits per latent value.", "",
    ]
    lines += _rows_markdown(r["rows"] + [r["baseline"]])
    for t in r.get("tests", [])[1:]:
        lines += ["", f"### {t['split']}: {t['field']} {t['test_shape']}, grid spacing {t['spacing']} degrees", ""]
        lines += _rows_markdown(t["rows"] + [t["baseline"]])
    return "\n".join(lines) + "\n"


def _rows_markdown(rows) -> list[str]:
    coslat = "rmse_coslat" in rows[0]
    head = "| setting | bits/value | ratio vs float32 | RMSE |" + (" cos(lat) RMSE |" if coslat else "") + " max abs error | PSNR (dB) |"
    lines = [head, "|---" * head.count(" |") + "|"]
    for row in rows:
        ratio = f"{row['compression_ratio']:.0f}x" if row["compression_ratio"] else "-"
        bpv = f"{row['bits_per_value']:.4f}" if row["bits_per_value"] == row["bits_per_value"] else "-"
        w = f" {row['rmse_coslat']:.4g} |" if coslat else ""
        lines.append(f"| {row['setting']} | {bpv} | {ratio} | {row['rmse']:.4g} |{w} {row['max_abs_error']:.4g} | {row['psnr_db']:.2f} |")
    return lines


def _plots(out: Path, history, model, rd: RecipeData, grid, report) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .metalearn import psnr

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(history.steps, [float(psnr(x)) for x in history.loss], lw=0.5, alpha=0.6, label="train (outer loss)")
    ax.plot(history.val_steps, history.val_psnr, "o-", label="validation")
    ax.set_xlabel("outer step")
    ax.set_ylabel("PSNR (dB)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "learning_curve.png", dpi=100)
    plt.close(fig)

    item = rd.test[:1]
    recon = model.decode(model.encode(item, grid), grid)[0]
    orig = item[0]
    if orig.ndim == 3:  # volumes: the middle slice
        orig, recon = orig[orig.shape[0] // 2], recon[recon.shape[0] // 2]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    if orig.ndim == 1:
        for ax, data, title in zip(axes, (orig, recon, recon - orig), ("original", "reconstruction", "residual")):
            ax.plot(data, lw=0.6)
            ax.set_title(title)
    else:
        origin = "lower" if rd.lat is not None else "upper"
        vmin, vmax = np.nanmin(orig), np.nanmax(orig)
        lim = float(np.nanmax(np.abs(recon - orig))) or 1.0
        for ax, data, title, kw in zip(
            axes, (orig, recon, recon - orig), ("original", "reconstruction (float latents)", "residual"),
            ({"vmin": vmin, "vmax": vmax}, {"vmin": vmin, "vmax": vmax}, {"cmap": "RdBu_r", "vmin": -lim, "vmax": lim}),
        ):
            im = ax.imshow(data, origin=origin, **kw)
            ax.set_title(title)
            fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    fig.savefig(out / "reconstruction.png", dpi=100)
    plt.close(fig)
