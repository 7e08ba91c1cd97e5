"""Training a recipe: the base network, meta-training, calibration of the coding tables."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from inrcodec.errors import InrcodecError
from inrcodec.recipes.data import RecipeData, load_recipe_data
from inrcodec.recipes.finetune import finetune_preset, init_record, resolve_init, start_from
from inrcodec.recipes.recipe import PRESET_KEYS, Recipe, load_recipe
from inrcodec.recipes.report import evaluate, evaluate_fields, plots, report_markdown
from inrcodec.training.calibration import (
    calibrate, fit_normalisation, training_sampler, validation_batch, whiten_latents,
)

if TYPE_CHECKING:
    from inrcodec.models.model import CoinModel


def build_model(recipe: Recipe, preset: dict, sample_shape) -> "CoinModel":
    from inrcodec.models.model import CoinModel
    from inrcodec.models.network import ModulatedSiren

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
    init="auto",
    minutes: float | None = None,
) -> dict:
    """Train a base network for a recipe, calibrate its coding tables, write model and report.

    ``overrides`` replaces preset keys (e.g. a tiny ``width`` in tests); ``report_bits`` the
    recipe's list of bit widths to report. ``init``: the model to start from (``"auto"``: with
    ``data``, the recipe's shipped model when the data are its variable; ``"none"``: random;
    else a shipped name, model file or directory, see :mod:`inrcodec.recipes.finetune`).
    ``minutes``: a wall-clock budget for this call; meta-training stops early enough to leave what
    calibration and the report are estimated to take (:func:`_after_training_seconds`); they always
    run. Returns the report dict (also written to ``OUT/report.json`` and ``OUT/report.md``).
    """
    import torch

    t_start, t0 = time.time(), time.monotonic()
    if minutes is not None and not minutes > 0:
        raise ValueError(f"--minutes must be a positive number of minutes, got {minutes}")
    if steps is not None and (isinstance(steps, bool) or int(steps) != steps or steps < 0):
        raise ValueError(f"--steps must be a whole number of meta-training steps, 0 or more, got {steps}")
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
    start = resolve_init(recipe, init, rd, model, data_given=bool(data))
    train_fields = rd.fields["train"] if rd.fields else None
    train_values = np.concatenate([f.values.ravel() for f in train_fields]) if train_fields else rd.train
    if start is None:
        fit_normalisation(model, train_values)
    else:  # weights, Meta-SGD rates and normalisation of the init model
        p = finetune_preset(recipe, p, overrides)
        model = start_from(start, p)
        if len(start) > 2 and start[2]:  # --init prior: the data's own normalisation
            fit_normalisation(model, train_values)
    model.description = {"recipe": recipe.name, "preset": preset, "data": rd.source, "units": rd.units,
                         "train_items": int(sum(f.values.shape[0] for f in train_fields) if train_fields else rd.train.shape[0]),
                         "item_shape": list(rd.train.shape[1:]),
                         "training_range": [model.offset, model.offset + model.scale],
                         **({"init": init_record(start)} if start else {})}
    grid = model.make_grid(rd.test.shape[1:], lat=rd.lat, lon=rd.lon)  # rd.lat/lon are those of the test items
    n_steps = int(steps if steps is not None else p["steps"])
    cal_sets = _grid_sets(model, train_fields) if train_fields else [(rd.train, grid)]
    bits = report_bits or recipe.report.get("bits", [4, 5, 6, 8])
    deadline = None
    if minutes is not None:  # the report encodes each test set at float latents and each bit width (x entropy options)
        test_sets = _grid_sets(model, rd.fields.get("test-source", []) + rd.fields["test-time"]) if rd.fields else [(rd.test, grid)]
        passes = 1 + len(bits) * (1 if rd.fields else 2)
        after = _after_training_seconds(model, cal_sets, test_sets, calibration_items, passes)
        deadline = t0 + 60.0 * minutes - after
        if deadline <= time.monotonic():  # else the run would write an untrained model without a word
            raise InrcodecError(
                f"--minutes {minutes:g} leaves no time to meta-train: calibration and the report are estimated at "
                f"{after / 60:.1f} min on this machine (under load, this estimate grows); give more minutes")
    history = _meta_train(model, rd, grid, p, n_steps, seed, device, out, resume, progress, deadline)
    t_train = time.time() - t_start

    calibrate_model(model, cal_sets, calibration_items, seed, p)
    path = model.save(out)
    report = evaluate_fields(model, rd.fields, bits) if rd.fields else evaluate(model, rd, bits, grid)
    report.update(
        recipe=recipe.name, preset=preset, steps=history.steps[-1] if history.steps else 0, planned_steps=n_steps,
        budget_minutes=minutes, init=init_record(start), seed=seed, device=device,
        time_ranges={k: [_time_text(t[0]), _time_text(t[-1])] for k, t in rd.times.items()} if rd.times else None,
        model_file=str(path), model_sha256=model.sha256, train_seconds=round(t_train, 1),
        total_seconds=round(time.time() - t_start, 1), data=rd.source, units=rd.units,
        split={k: int(sum(f.values.shape[0] for f in fs)) for k, fs in rd.fields.items()} if rd.fields
        else {"train": int(rd.train.shape[0]), "validation": int(rd.val.shape[0]), "test": int(rd.test.shape[0])},
        final_val_psnr=history.val_psnr[-1] if history.val_psnr else None,
        architecture=model.network.config(), patch_shape=model.patch_shape,
        codec_options=suggested_codec_options(train_values),
    )
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(report_markdown(report))
    plots(out, history, model, rd, grid, report)
    return report


def check_resumable(out, variables: list[str] | None = None) -> None:
    """``--resume`` asks to continue a run: refuse it when ``out`` (or, with several ``variables``,
    every ``out/VARIABLE``) holds no checkpoint, rather than start a fresh run without a word.
    (:func:`train_recipe`'s ``resume=True`` itself continues a checkpoint when there is one.)"""
    from inrcodec.training.metalearn import CHECKPOINT_FILE

    dirs = [Path(out)] if variables is None else [Path(out) / v for v in variables]
    if not any((d / CHECKPOINT_FILE).exists() for d in dirs):
        where = dirs[0] / CHECKPOINT_FILE if variables is None else f"{Path(out)}/<variable>/{CHECKPOINT_FILE}"
        raise InrcodecError(f"--resume: {where} does not exist, so there is no run to continue; leave out --resume "
                            "to start one")


def variable_list(variable: str | None, data) -> list[str] | None:
    """The variables of ``--variable`` when it names several (``"msl,u10"``, or ``"all"``: every float
    lat/lon variable of the first data file); None for one variable or none (one model, as before)."""
    if variable is None or ("," not in variable and variable != "all"):
        return None
    if variable == "all":
        if not data:
            raise ValueError("--variable all needs --data: the variables are those of the files")
        from inrcodec.datasets.era5 import gridded_variables

        names = gridded_variables(data)
        if not names:
            raise ValueError(f"--variable all: {data[0] if isinstance(data, (list, tuple)) else data} has no float "
                             "variable on a lat/lon grid")
        return names
    names = [v.strip() for v in variable.split(",") if v.strip()]
    if len(set(names)) != len(names):
        raise ValueError(f"--variable names a variable twice: {variable}")
    if data:  # every name checked before the first one trains
        from inrcodec.datasets.era5 import gridded_variables

        have = gridded_variables(data)
        missing = [v for v in names if v not in have]
        if missing:
            raise ValueError(f"--variable {variable}: {missing} not among the float lat/lon variables of the data {have}")
    return names


#: a variable whose training values are all >= 0 with at least this share exactly 0 (precipitation,
#: snow: accumulated quantities) is suggested ``valid_min=0``: a lossy decode leaks below 0 where it
#: is dry, and raising those values to 0 only comes closer to data that are >= 0 (docs/archive.md)
ZERO_SHARE = 0.01


def suggested_codec_options(values) -> dict:
    """The codec options a model trained on ``values`` (physical units) suggests for its variable:
    ``{"valid_min": 0.0}`` for non-negative data with exact zeros (``ZERO_SHARE``), else {}."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size and float(v.min()) >= 0.0 and float(np.mean(v == 0.0)) >= ZERO_SHARE:
        return {"valid_min": 0.0}
    return {}


def train_variables(name, variables: list[str], out, minutes: float | None = None, **kwargs) -> dict[str, dict]:
    """One model per variable (:func:`train_recipe` each), written to ``out/VARIABLE``.

    ``minutes`` is the budget of the whole run: each variable gets the time left divided by the
    variables left, so what one does not use passes on. Each variable is normalised in its own units
    and starts from the recipe's shipped model only where that model's variable fits (``init="auto"``;
    its report says which). Returns ``{variable: report}``; ``out/summary.json`` lists them.
    """
    out = Path(out)
    t0 = time.monotonic()
    reports: dict[str, dict] = {}
    for i, var in enumerate(variables):
        share = None
        if minutes is not None:
            share = (60.0 * minutes - (time.monotonic() - t0)) / 60.0 / (len(variables) - i)
            if not share > 0:
                raise InrcodecError(f"--minutes {minutes:g} ran out before {var!r} ({', '.join(reports)} trained); "
                                    "give more minutes")
        reports[var] = train_recipe(name, variable=var, out=out / var, minutes=share, **kwargs)
    summary = {v: {"model_file": r["model_file"], "model_sha256": r["model_sha256"], "init": r.get("init"),
                   "units": r.get("units"), "steps": r.get("steps"), "train_seconds": r.get("train_seconds"),
                   "codec_options": r.get("codec_options", {})}
               for v, r in reports.items()}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return reports


def _time_text(t) -> str:
    """A time to the second (datetime64), else as the calendar object prints it."""
    return str(np.datetime_as_string(t, unit="s")) if isinstance(t, np.datetime64) else str(t)


def _grid_sets(model, fields) -> list:
    """(values, grid) of each :class:`~inrcodec.training.pool.Field`."""
    return [(f.values, model.make_grid(f.values.shape[1:], lat=f.lat, lon=f.lon)) for f in fields]


def _after_training_seconds(model, cal_sets, test_sets, calibration_items: int, passes: int) -> float:
    """What calibration and the report will take, from one timed encode of one item: the calibration
    patches, and every test patch ``passes`` times (float latents and each bit width). Encoding costs the
    same with trained weights, so ``--minutes`` can stop meta-training in time for both."""
    values, g = cal_sets[0]
    model.encode(values[:1], g)  # the first call pays for torch's start
    t = time.monotonic()
    model.encode(values[:1], g)
    per_patch = (time.monotonic() - t) / model.partition(g).num_patches
    patches = lambda v, g, limit: min(v.shape[0], limit) * model.partition(g).num_patches
    cal = sum(patches(v, g, _calibration_items(model, g, len(cal_sets), calibration_items)) for v, g in cal_sets)
    return per_patch * (cal + passes * sum(patches(v, g, v.shape[0]) for v, g in test_sets))


def _meta_train(model, rd: RecipeData, grid, p: dict, steps: int, seed: int, device: str, out: Path, resume: bool,
                progress: bool, deadline: float | None = None):
    """Meta-train ``model.network`` on the recipe's training split (checkpoints in ``out``); the history."""
    from inrcodec.training.metalearn import MetaTrainer, TrainConfig

    cfg = TrainConfig(
        steps=steps, batch_size=p["batch_size"], outer_lr=p["outer_lr"],
        inner_lr=p["inner_lr"], inner_steps=p["inner_steps"], inner_points=p.get("inner_points"),
        outer_points=p.get("outer_points"), seed=seed, device=device, lr_schedule=p.get("lr_schedule", "constant"),
    )
    cfg.val_every = max(1, min(100, cfg.steps // 10))
    cfg.checkpoint_every = cfg.val_every
    if rd.fields:
        sampler, val_batch = pool_batches(model, rd.fields, int(p.get("points", 256)), seed)
        model.description["training_grids"] = sampler.describe()
    else:
        sampler, val_batch = training_sampler(model, rd.train, grid), validation_batch(model, rd.val, grid)
    trainer = MetaTrainer(model.network, sampler, val_batch, cfg, out)
    if resume and trainer.checkpoint_path.exists():
        trainer.load_checkpoint()
    history = trainer.train(progress=progress, deadline=deadline)
    model.network = trainer.network.cpu().eval()
    return history


def calibrate_model(model, cal_sets, calibration_items: int, seed: int, preset: dict) -> None:
    """Quantizer statistics and entropy tables from latents fitted on training items.

    ``cal_sets``: (values, grid) pairs, subsampled to about ``calibration_items`` patches in all.
    A Meta-SGD model first gets unit-scale latent dimensions (:func:`~inrcodec.training.calibration.whiten_latents`); the
    preset's ``quant_num_std`` (default 3, the paper's) sets the quantizer's clipping range.
    """
    rng = np.random.default_rng(seed)
    latents = []
    for values, g in cal_sets:
        max_items = _calibration_items(model, g, len(cal_sets), calibration_items)
        if values.shape[0] > max_items:
            values = values[np.sort(rng.choice(values.shape[0], max_items, replace=False))]
        latents.append(model.encode(values, g).reshape(-1, model.latent_dim))
    latents = np.concatenate(latents)
    if model.network.meta_sgd:
        latents = whiten_latents(model, latents)
    calibrate(model, latents, num_std=float(preset.get("quant_num_std", 3.0)))


def _calibration_items(model, grid, n_sets: int, calibration_items: int) -> int:
    """Items of one of ``n_sets`` calibration sets on ``grid`` (about ``calibration_items`` patches in all)."""
    return max(1, calibration_items // (n_sets * model.partition(grid).num_patches))


def pool_batches(model, fields: dict, points: int, seed: int):
    """The training sampler and a fixed validation batch of normalised spherical patches."""
    from inrcodec.training.pool import Field, SphericalPatchPool

    norm = lambda fs: [Field(model.normalise(f.values), f.lat, f.lon, f.name) for f in fs]
    sampler = SphericalPatchPool(norm(fields["train"]), model.patch_points, points=points)
    val = SphericalPatchPool(norm(fields["val"]), model.patch_points, points=2 * points, jitter=(0.0, 0.0))
    return sampler, val.sample(np.random.default_rng(seed + 1), 128)

