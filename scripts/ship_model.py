"""Dev-time: turn a trained era5 model into a shipped model (inrcodec/data/models/).

    python scripts/ship_model.py RUN_DIR --name t2m-global-2 [--bench BENCH_DIR] [--recalibrate]

Ships RUN_DIR/model.safetensors byte for byte (the bytes its benchmarks measured); with
``--recalibrate`` (a run of an older build) first re-calibrates it exactly as ``train-recipe`` does
today (``recipes.calibrate_model``: training-pool latents, whitening, the preset's clipping range;
whitening twice moves the weights by rounding, so a model of today's build is shipped as it is).
Writes ``inrcodec/data/models/NAME.safetensors`` and its entry in ``models.json`` (SHA-256,
training data, grids; rate-distortion rows from ``benchmarks/climate_heldout.py`` CSVs in
BENCH_DIR, if given). Nothing here runs at install or run time. A shipped name is never given new
weights: stores written with it pin its hash and must keep decoding, so a better model gets a new name.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from inrcodec.models.model import CoinModel
from inrcodec.recipes import calibrate_model, load_recipe, load_recipe_data

OUT = Path(__file__).resolve().parents[1] / "inrcodec" / "data" / "models"


def rd_rows(bench: Path) -> list[str]:
    rows = []
    for csv_path in sorted(bench.glob("*/bench_*.csv")):
        for r in csv.DictReader(open(csv_path)):
            if r["codec"] == "inrcodec" and r.get("compression_ratio") and int(r["bits"]) in (2, 4, 6):
                rows.append(f"{r['dataset']}: {int(r['bits'])} bits {float(r['compression_ratio']):.0f}x, "
                            f"cos(lat) RMSE {float(r['rmse_coslat']):.2f} K, max {float(r['max_abs_error']):.1f} K")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--name", required=True, help="a new name (an existing one is refused)")
    ap.add_argument("--bench")
    ap.add_argument("--recalibrate", action="store_true", help="re-calibrate a model of an older build first")
    args = ap.parse_args()
    index_path = OUT / "models.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {}
    if args.name in index:
        raise SystemExit(f"{args.name!r} is shipped already: stores pin its weights, give the new model a new name")
    model = CoinModel.load(args.run)
    if args.recalibrate:
        recipe = load_recipe("era5")
        rd = load_recipe_data(recipe)
        cal_sets = [(f.values, model.make_grid(f.values.shape[1:], lat=f.lat, lon=f.lon)) for f in rd.fields["train"]]
        model.description["data"] = rd.source  # as train-recipe writes it today
        calibrate_model(model, cal_sets, 2048, 0, recipe.preset("cpu"))
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{args.name}.safetensors"
    model.save(path)
    net = model.network
    index[args.name] = {
        "file": path.name,
        "sha256": model.sha256,
        "summary": "air temperature (K; near-surface, and upper-air where the pool has it) on lat/lon grids; "
                   f"COIN++ SIREN width {net.width}, depth {net.depth}, latent {net.latent_dim} per patch, Meta-SGD, "
                   "patches of about 16 x 16 points (12-96 degrees)",
        "trained_on": model.description["data"] + "; train split only (docs/data.md)",
        "grids": "global or regional lat/lon, about 0.5 to 7.5 degrees (trained at 1.25-10 degrees by coarsening)",
        "training_range_K": [round(model.offset, 2), round(model.offset + model.scale, 2)],
        "recipe": "inrcodec train-recipe era5 --preset cpu (docs/recipes.md)",
        "rate_distortion_data": f"python benchmarks/climate_heldout.py --model {args.name} --sets era5_t_4deg "
                                "era5_t mpi_esm_4deg mpi_esm glosea4_4deg glosea4 e1: held out by source (mpi_esm, "
                                "e1) and by time (era5_t: sub-daily, glosea4); 4deg = 46 x 90",
        "rate_distortion": rd_rows(Path(args.bench)) if args.bench else [],
    }
    index_path.write_text(json.dumps(index, indent=1) + "\n")
    print(path, model.sha256)


if __name__ == "__main__":
    main()
