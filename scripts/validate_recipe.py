"""Score a trained recipe model on its recipe's VALIDATION split (the split settings are chosen on).

The same measurement as the report of ``inrcodec train-recipe`` (real chunk bytes at each bit width, entropy
coded), but on the validation items instead of the test items; PSNR here is ``psnr_data_range`` (peak = the range
of the validation split), as ``inrcodec bench`` reports it. ``--encode-steps`` overrides the model's inner steps
at encode time (no retraining needed to compare them).

Usage: python scripts/validate_recipe.py MODEL_DIR [--bits 3 4 6 8] [--encode-steps N] [--data FILES...]
"""

import argparse

import numpy as np

from inrcodec import metrics
from inrcodec.models.model import CoinModel
from inrcodec.recipes import load_recipe, load_recipe_data
from inrcodec.recipes.data import RecipeData
from inrcodec.recipes.report import evaluate


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--bits", type=int, nargs="+", default=[3, 4, 6, 8])
    ap.add_argument("--encode-steps", type=int)
    ap.add_argument("--data", nargs="+")
    args = ap.parse_args(argv)
    model = CoinModel.load(args.model)
    if args.encode_steps:
        model.encode_steps = args.encode_steps
    recipe = load_recipe(model.description["recipe"])
    rd = load_recipe_data(recipe, args.data)
    val = RecipeData(rd.train, rd.val, rd.val, units=rd.units)
    r = evaluate(model, val, args.bits, model.make_grid(rd.val.shape[1:]), entropy_options=(True,))
    rate = 16.0 if recipe.modality == "audio" else 1.0  # kbps at 16 kHz, else bits per pixel
    print(f"validation split {list(rd.val.shape)} of {args.model} ({recipe.name}, encode steps {model.encode_steps})")
    print("| setting | rate | RMSE | max abs error | PSNR (dB, data range) |\n|---|---|---|---|---|")
    for row in r["rows"] + [r["baseline"]]:
        psnr = metrics.psnr_from_mse(row["rmse"] ** 2, metrics.data_range(rd.val))
        print(f"| {row['setting']} | {row['bits_per_value'] * rate:.3f} | {row['rmse']:.4g} | "
              f"{row['max_abs_error']:.4g} | {float(np.asarray(psnr)):.2f} |")


if __name__ == "__main__":
    main()
