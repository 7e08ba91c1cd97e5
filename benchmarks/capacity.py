"""Network capacity against speed for the era5 recipe (issue 20): which size to ship for CPUs.

For each size (width x depth, latents per patch) the script meta-trains the era5 recipe's cpu preset
on the climate pool for the same number of steps (``train``), then measures on the pool's
validation split only (``measure``):

* ``meta``: cos(lat) RMSE in K of the float latents after the model's encode steps (what the codec
  stores before quantization);
* ``floor``: the same latents refined with ``--floor-steps`` Adam steps (to convergence): what this
  network could represent with a perfect prior. ``meta`` / ``floor`` shows the prior's share of the
  error, ``floor`` the capacity limit;
* encode and decode speed in values per second (one torch thread unless ``--threads``).

``--test NAME ...`` measures held-out test sets instead, once settings are chosen: the sets of
``benchmarks/climate_heldout.py`` (e.g. ``era5_t``, ``mpi_esm_4deg``) or files of
``scripts/make_heldout_surface.py`` (``FILE`` or ``FILE:4deg``, variable ``t2m``, split ``test``).

Validation sets: ``era5_t`` (ERA5 850 hPa temperature, 2017-01-02 00 UTC, the first 6 members at 3
degrees: sub-daily weather) and ``glosea4`` (one monthly-mean globe, 1.25 x 1.875 degrees). Training is resumable
(``--resume`` checkpoints in OUT/NAME), so a long run can be stopped and started again::

    nohup python benchmarks/capacity.py train --steps 1500 --out capacity &
    python benchmarks/capacity.py measure --out capacity
    python benchmarks/capacity.py measure --out capacity --models t2m-global   # a shipped model too
    python benchmarks/capacity.py measure --sizes --models t2m-global NEW --test era5_t heldout_gfs.nc:4deg
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import _smoke
from climate_heldout import pool_field
from inrcodec.metrics import rmse_coslat
from inrcodec.training.pool import Field

#: name -> preset overrides of the era5 recipe's cpu preset
SIZES = {
    "w96-d4-k16": {},
    "w96-d4-k32": {"latent_dim": 32},
    "w128-d5-k16": {"width": 128, "depth": 5},
    "w192-d6-k32": {"width": 192, "depth": 6, "latent_dim": 32},
}
#: validation set -> fields measured (the converged fit of a 145 x 192 GloSea4 globe costs 6 of era5_t's)
VAL_SETS = {"era5_t": 6, "glosea4": 1}


def _test_field(name: str) -> Field:
    from climate_heldout import test_sets
    from heldout_rd import load  # imports climate_heldout too

    if name.endswith(".nc") or ".nc:" in name:
        path, _, grid = name.partition(":")
        return load(path, "t2m", "test", grid or "native", 1)[1]
    return test_sets()[name]


def train(args) -> None:
    from inrcodec.recipes.train import train_recipe

    for name in args.sizes:
        out = Path(args.out) / name
        if (out / "report.json").exists() and json.loads((out / "report.json").read_text())["steps"] >= args.steps:
            print(f"{name}: done", flush=True)
            continue
        t = time.time()
        overrides = dict(SIZES[name], **({"width": 8, "depth": 2} if args.smoke else {}))
        train_recipe("era5", steps=args.steps, out=out, overrides=overrides, resume=True, progress=not args.quiet,
                     report_bits=[5], calibration_items=256 if args.smoke else 2048, init="none")
        print(f"{name}: trained {args.steps} steps in {time.time() - t:.0f} s", flush=True)


def measure(args) -> list[dict]:
    import torch

    from inrcodec.models import modelstore

    torch.set_num_threads(args.threads)
    models = [(n, Path(args.out) / n) for n in args.sizes if (Path(args.out) / n).exists()]
    models += [(m, m) for m in args.models or []]
    rows = []
    for name, where in models:
        model = modelstore.load(str(where)).model
        for set_name in args.test or VAL_SETS:
            f = _test_field(set_name) if args.test else pool_field("val", set_name)
            items = args.items or (None if args.test else VAL_SETS[set_name])
            if items:
                f = Field(f.values[:items], f.lat, f.lon, f.name)
            grid = model.make_grid(f.values.shape[1:], lat=f.lat, lon=f.lon)
            t = time.perf_counter()
            latents = model.encode(f.values, grid)
            t_enc = time.perf_counter() - t
            t = time.perf_counter()
            meta = rmse_coslat(f.values, model.decode(latents, grid), f.lat)
            t_dec = time.perf_counter() - t
            floor = (rmse_coslat(f.values, model.decode(model.encode(f.values, grid, refine_steps=args.floor_steps),
                                                        grid), f.lat) if args.floor_steps else None)
            n = f.values.size
            net = model.network
            rows.append({"model": name, "set": set_name, "width": net.width, "depth": net.depth,
                         "latents_per_patch": model.latent_dim, "patches": int(latents.shape[1]),
                         "values_per_latent": round(n / latents.size, 1), "meta_rmse": round(meta, 3),
                         "floor_rmse": None if floor is None else round(floor, 3),
                         "prior_share": None if floor is None else round(1 - floor / meta, 3),
                         "encode_values_per_s": round(n / t_enc), "decode_values_per_s": round(n / t_dec)})
            print(json.dumps(rows[-1]), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "capacity-test" if args.test else "capacity"
    (out / f"{stem}.json").write_text(json.dumps(rows, indent=1))
    lines = ["| model | set | width x depth | latents / patch | values / latent | meta RMSE (K) | floor RMSE (K) "
             "| prior's share | encode values/s | decode values/s |", "|" + "---|" * 10]
    for r in rows:
        lines.append(f"| {r['model']} | {r['set']} | {r['width']} x {r['depth']} | {r['latents_per_patch']} | "
                     f"{r['values_per_latent']} | {r['meta_rmse']} | {r['floor_rmse'] or '-'} | "
                     f"{'-' if r['prior_share'] is None else format(r['prior_share'], '.0%')} | "
                     f"{r['encode_values_per_s']:,} | {r['decode_values_per_s']:,} |")
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", nargs="?", choices=["train", "measure"])
    ap.add_argument("--sizes", nargs="*", choices=sorted(SIZES), default=list(SIZES))
    ap.add_argument("--models", nargs="*", help="(measure) other models too: shipped names, files or directories")
    ap.add_argument("--steps", type=int, default=1500, help="(train) meta-training steps per size")
    ap.add_argument("--floor-steps", type=int, default=1000, help="(measure) Adam steps of the converged fit (0: none)")
    ap.add_argument("--test", nargs="+", help="(measure) held-out test sets instead of the validation sets")
    ap.add_argument("--items", type=int, help="(measure) only the first N fields of each set (default: validation "
                    "era5_t 6, glosea4 1; test sets all)")
    ap.add_argument("--threads", type=int, default=1, help="(measure) torch threads")
    ap.add_argument("--out", default="capacity")
    ap.add_argument("--quiet", action="store_true")
    _smoke.add_flag(ap)
    args = ap.parse_args(argv)
    if args.smoke:
        args.out, args.steps, args.floor_steps, args.items, args.quiet = _smoke.tmpdir(), 2, 2, 1, True
        args.sizes = args.sizes[:1]
        train(args)
        measure(args)
        return 0
    if args.what is None:
        ap.error("say what: train or measure")
    train(args) if args.what == "train" else measure(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
