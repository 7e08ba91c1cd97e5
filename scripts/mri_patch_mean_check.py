"""Issue 23: does the mri recipe learn more than each patch's mean? One short, controlled run.

Meta-trains the recipe's cpu preset (with JSON overrides) for a few steps, encodes the VALIDATION slabs and prints
their PSNR (peak = training range, all voxels and foreground only) next to the patch-mean reconstruction's.

    OMP_NUM_THREADS=1 nice -n 15 python scripts/mri_patch_mean_check.py recipes/mri.toml '{"steps": 120}'
    ... '{"steps": 120, "inner_lr": 0.01}'          # one preset key changed
    ... '{"steps": 120, "intensity_percentile": null}'  # no per-volume intensity scaling
"""

import json
import sys
import time

import numpy as np
import torch

from inrcodec.training.metalearn import MetaTrainer, TrainConfig
from inrcodec.recipes import build_model, load_recipe, load_recipe_data
from inrcodec.recipes.report import patch_means
from inrcodec.training.calibration import fit_normalisation, training_sampler


def main(recipe_path: str, overrides: dict) -> dict:
    torch.set_num_threads(1)
    recipe = load_recipe(recipe_path)
    steps = overrides.pop("steps")
    if "intensity_percentile" in overrides:
        recipe.data["intensity_percentile"] = overrides.pop("intensity_percentile")
    p = {**recipe.preset("cpu"), **overrides}
    rd = load_recipe_data(recipe)
    torch.manual_seed(0)
    model = build_model(recipe, p, rd.train.shape[1:])
    fit_normalisation(model, rd.train)
    grid = model.make_grid(rd.val.shape[1:])
    cfg = TrainConfig(steps=steps, batch_size=p["batch_size"], outer_lr=p["outer_lr"], inner_lr=p["inner_lr"],
                      inner_steps=p["inner_steps"], inner_points=p.get("inner_points"), outer_points=p.get("outer_points"))
    trainer = MetaTrainer(model.network, training_sampler(model, rd.train, grid), None, cfg)
    t0 = time.time()
    history = trainer.train(progress=False)
    seconds = time.time() - t0
    model.network.eval()
    val = model.normalise(rd.val)
    recon = model.normalise(model.decode(model.encode(rd.val, grid), grid))
    means = model.normalise(patch_means(model, rd.val, grid))
    fg = val > 0.02  # brain, not the zero background around it
    psnr = lambda rec, m=slice(None): round(float(-10 * np.log10(np.mean((rec - val)[m] ** 2))), 2)
    return {"overrides": overrides, "steps": steps, "s_per_step": round(seconds / steps, 2),
            "train_psnr_last20": round(float(-10 * np.log10(np.mean(history.loss[-20:]))), 2),
            "val_psnr": psnr(recon), "val_patch_mean_psnr": psnr(means),
            "val_fg_psnr": psnr(recon, fg), "val_fg_patch_mean_psnr": psnr(means, fg)}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], json.loads(sys.argv[2]))))
