"""Train the small CPU models used by the rate-distortion benchmark (docs/benchmarks.md,
"Rate-distortion against other codecs"), then run it:

    nice -n 10 python benchmarks/train_bench_models.py          # -> /tmp/bench-{era5-l8,era5-l16,image-l32}
    inrcodec bench era5 --model /tmp/bench-era5-l8 /tmp/bench-era5-l16 --bits 2 3 4 5 6 8 --repeats 3 --out OUT
    inrcodec bench image --model /tmp/bench-image-l32 --bits 2 3 4 6 8 --repeats 3 --out OUT

The step counts are what a shared 2-core machine allowed (~1 s per outer step under load), far
below the recipes' presets; pass --steps-scale to train longer.
"""

from __future__ import annotations

import argparse
import time

import _smoke

from inrcodec.recipes import train_recipe

JOBS = [  # recipe, steps, output directory, preset overrides
    ("era5", 500, "/tmp/bench-era5-l16", {"latent_dim": 16}),
    ("era5", 400, "/tmp/bench-era5-l8", {"latent_dim": 8}),
    ("image", 300, "/tmp/bench-image-l32", {"latent_dim": 32}),
]


SMOKE = {"width": 8, "depth": 1, "latent_dim": 4, "batch_size": 2}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps-scale", type=float, default=1.0)
    _smoke.add_flag(ap)
    args = ap.parse_args(argv)
    jobs = JOBS
    if args.smoke:  # one step of a width-8 network for the first job, into a temporary directory
        (name, _, _, overrides), = JOBS[:1]
        jobs = [(name, 1, _smoke.tmpdir(), {**overrides, **SMOKE})]
    for name, steps, out, overrides in jobs:
        t = time.time()
        r = train_recipe(name, steps=max(1, int(steps * args.steps_scale)), out=out, progress=False,
                         overrides=overrides, **({"calibration_items": 16, "report_bits": [2]} if args.smoke else {}))
        print(f"{out}: {time.time() - t:.0f} s, validation PSNR {r['final_val_psnr']:.2f} dB, sha256 {r['model_sha256'][:12]}")


if __name__ == "__main__":
    main()
