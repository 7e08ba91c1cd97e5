"""The measurements of docs/recipes.md, "Your own archive: train on a sample, compress the rest".

Run in the directory of the page's example (``tas_first.nc``, ``tas_rest.nc``, ``tas-model``):

    python benchmarks/finetune.py lr 3e-4 20   # validation PSNR of 20 outer steps from t2m-global at outer lr 3e-4
    python benchmarks/finetune.py lr 3e-5 20
    python benchmarks/finetune.py compare       # tas_rest.nc coded by t2m-global and by tas-model, 4 and 6 bits
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np


def outer_lr(lr: float, steps: int, data: str = "tas_first.nc") -> None:
    """Meta-training from t2m-global as ``train-recipe --data tas_first.nc`` starts it, at outer lr ``lr``."""
    import torch

    from inrcodec.models import modelstore
    from inrcodec.training.metalearn import MetaTrainer, TrainConfig
    from inrcodec.recipes import load_recipe, load_recipe_data, pool_batches
    from inrcodec.recipes.finetune import start_from

    torch.manual_seed(0)
    recipe = load_recipe("era5")
    model = start_from((modelstore.load("t2m-global"), "t2m-global"), recipe.preset("cpu"))
    sampler, val = pool_batches(model, load_recipe_data(recipe, [data]).fields, 256, 0)
    cfg = TrainConfig(steps=steps, batch_size=32, outer_lr=lr, inner_lr=0.01, inner_steps=3, seed=0,
                      lr_schedule="cosine", val_every=5)
    trainer = MetaTrainer(model.network, sampler, val, cfg)
    print(f"outer lr {lr}: validation PSNR {trainer.validate():.2f} dB before")
    history = trainer.train(progress=False)
    print(", ".join(f"step {s}: {p:.2f} dB" for s, p in zip(history.val_steps, history.val_psnr)))


def compare(data: str = "tas_rest.nc", models=("t2m-global", "tas-model"), widths=(4, 6)) -> None:
    from inrcodec import metrics
    from inrcodec.datasets.era5 import load_era5
    from inrcodec.codec import COINppCodec

    da = load_era5(data)
    x = np.ascontiguousarray(da.values, dtype=np.float32)
    for model in models:
        for bits in widths:
            codec = COINppCodec(model=model, bits=bits, lat=da.lat.values, lon=da.lon.values)
            enc = codec.encode(x)
            dec = codec.decode(enc)
            print(f"{model} {bits} bits: {x.nbytes / len(enc):.0f}x, cos(lat) RMSE "
                  f"{metrics.rmse_coslat(x, dec, da.lat.values):.3f} K, max {metrics.max_abs_error(x, dec):.2f} K")


def smoke() -> None:
    """One outer step and one width on three months of the embedded tas sample (numbers meaningless)."""
    import xarray as xr

    from inrcodec.datasets import embedded_sample_path

    path = os.path.join(_smoke.tmpdir(), "tas_three.nc")
    with xr.open_dataset(embedded_sample_path("tas")) as ds:
        ds.isel(time=slice(0, 3)).to_netcdf(path)
    outer_lr(3e-5, 1, path)
    compare(path, ("t2m-global",), (4,))


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import _smoke

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", nargs="*", help="lr LR STEPS | compare")
    _smoke.add_flag(ap)
    args = ap.parse_args()
    if args.smoke:
        smoke()
    elif args.what[:1] == ["lr"] and len(args.what) == 3:
        outer_lr(float(args.what[1]), int(args.what[2]))
    elif args.what == ["compare"]:
        compare()
    else:
        ap.error("give: lr LR STEPS, or compare")
