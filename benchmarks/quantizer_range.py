"""Choose the quantizer's clipping range on the climate pool's VALIDATION split.

For a model (any era5-recipe model; ``--whiten`` first folds per-dimension latent scales into
it, as ``train-recipe`` does for Meta-SGD models): encode every validation field once (float
latents), then for each range (+-N std) and bit width print RMSE (K, all validation values) and
the cross-entropy in bits per latent under tables counted on training latents.

    python benchmarks/quantizer_range.py --model RUN_DIR --whiten     # RUN_DIR: train-recipe --out
    python benchmarks/quantizer_range.py --model t2m-global           # already whitened
"""

from __future__ import annotations

import argparse

import _smoke
import numpy as np


def main(argv=None) -> int:
    from inrcodec import metrics
    from inrcodec.models import modelstore
    from inrcodec.coding.entropy import CategoricalEntropyModel
    from inrcodec.models.model import CoinModel
    from inrcodec.coding.quantize import UniformQuantizer
    from inrcodec.recipes import load_recipe, load_recipe_data
    from inrcodec.training.calibration import whiten_latents

    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--whiten", action="store_true")
    ap.add_argument("--ranges", nargs="+", type=float, default=[3, 4, 5, 6, 8])
    ap.add_argument("--bits", nargs="+", type=int, default=[3, 4, 6])
    _smoke.add_flag(ap)
    args = ap.parse_args(argv)
    if args.smoke:
        args.model, args.ranges, args.bits = _smoke.model_dir(), [3.0], [3]
    elif not args.model:
        ap.error("--model is required")
    model = CoinModel.from_bytes(modelstore.load(args.model).model.to_bytes())  # a private copy
    rd = load_recipe_data(load_recipe("era5"))
    rng = np.random.default_rng(0)
    grid = lambda f: model.make_grid(f.values.shape[1:], lat=f.lat, lon=f.lon)
    cal = np.concatenate([
        model.encode(f.values[np.sort(rng.choice(len(f.values), min(len(f.values), 6), replace=False))], grid(f)).reshape(-1, model.latent_dim)
        for f in rd.fields["train"]])
    if args.whiten:
        cal = whiten_latents(model, cal)
    mean, std = float(cal.mean()), float(cal.std())
    val = [(f, grid(f), model.encode(f.values, grid(f))) for f in rd.fields["val"]]

    def rmse(latents_of):  # over every validation field's finite values together
        recon = [model.decode(latents_of(lat), g).ravel() for f, g, lat in val]
        return metrics.rmse(np.concatenate([f.values.ravel() for f, _, _ in val]), np.concatenate(recon))

    print(f"float latents: RMSE {rmse(lambda z: z):.3f} K")
    print("| range | " + " | ".join(f"{b} bits: RMSE K / bits per latent" for b in args.bits) + " |")
    for ns in args.ranges:
        cells = []
        for b in args.bits:
            q = UniformQuantizer(mean, std, b, num_std=ns)
            counts = np.asarray(CategoricalEntropyModel.fit(q.quantize(cal), b, per_dimension=False).to_arrays()["counts"], np.float64).ravel()
            p = (counts + 1e-9) / (counts + 1e-9).sum()
            sym = np.concatenate([q.quantize(z.reshape(-1, model.latent_dim)).ravel() for _, _, z in val]).astype(int)
            deq = lambda z, q=q: q.dequantize(q.quantize(z.reshape(-1, model.latent_dim))).reshape(z.shape)
            cells.append(f"{rmse(deq):.3f} / {float(-np.log2(p[sym]).mean()):.3f}")
        print(f"| +-{ns:g} std | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
