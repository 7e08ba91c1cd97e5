"""Meta-SGD (learned per-latent inner rates) against a fixed inner rate, at equal training steps.

Both variants meta-train the same network on the climate pool's training split with the same
seed and steps, then encode the pool's VALIDATION split (never a test split) with 3 and 10 SGD
steps, float latents. Prints RMSE (K) and encode speed (values/s) per variant and step count,
and the wall time of each training (equal steps cost about equal time: the rates add k numbers).

    python benchmarks/meta_sgd_ablation.py --steps 400 --threads 1
"""

from __future__ import annotations

import argparse
import time

import _smoke
import numpy as np
import torch

from inrcodec.recipes import build_model, pool_batches, load_recipe, load_recipe_data
from inrcodec.training.metalearn import MetaTrainer, TrainConfig
from inrcodec.training.calibration import fit_normalisation


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--depth", type=int, default=3)
    _smoke.add_flag(ap)
    args = ap.parse_args(argv)
    if args.smoke:
        args.steps, args.width, args.depth = 1, 8, 1
    torch.set_num_threads(args.threads)
    recipe = load_recipe("era5")
    rd = load_recipe_data(recipe)
    print("| inner rates | train s | encode steps | validation RMSE (K) | encode values/s |\n|---|---|---|---|---|")
    for meta_sgd in (False, True):
        p = dict(recipe.preset("cpu"), width=args.width, depth=args.depth, meta_sgd=meta_sgd)
        torch.manual_seed(0)
        model = build_model(recipe, p, rd.train.shape[1:])
        fit_normalisation(model, np.concatenate([f.values.ravel() for f in rd.fields["train"]]))
        sampler, val = pool_batches(model, rd.fields, p["points"], seed=0)
        cfg = TrainConfig(steps=args.steps, batch_size=p["batch_size"], outer_lr=p["outer_lr"], inner_lr=p["inner_lr"],
                          inner_steps=p["inner_steps"], val_every=10**9)
        t = time.perf_counter()
        MetaTrainer(model.network, sampler, val, cfg).train(progress=False)
        train_s = time.perf_counter() - t
        model.network.eval()
        for steps in (3, 10):
            err2, n, t_enc = 0.0, 0, 0.0
            for f in rd.fields["val"]:
                g = model.make_grid(f.values.shape[1:], lat=f.lat, lon=f.lon)
                t = time.perf_counter()
                lat = model.encode(f.values, g, steps=steps)
                t_enc += time.perf_counter() - t
                rec = model.decode(lat, g)
                ok = np.isfinite(f.values)
                err2 += float(np.sum((rec[ok] - f.values[ok]) ** 2))
                n += int(ok.sum())
            name = "Meta-SGD (learned)" if meta_sgd else "fixed 1e-2"
            print(f"| {name} | {train_s:.0f} | {steps} | {np.sqrt(err2 / n):.3f} | {n / t_enc:,.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
