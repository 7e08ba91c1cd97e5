"""Encode-time refinement: rate-distortion gain and encode-time cost of ``refine_steps``.

    nice -n 10 python benchmarks/refine.py --model /tmp/wt12-era5

Data: the embedded ``tas`` sample's held-out test split of the ``era5`` recipe (the last 2 time
steps, one (2, 96, 192) float32 chunk). For each ``refine_steps`` (Adam steps on the latents after
the ``inner_steps`` meta-learned steps) and each ``bits``: chunk bytes, ratio, RMSE (K) and encode
time (best of ``--repeat``), with values per second. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main(argv=None) -> None:
    import torch

    from inrcodec import COINppCodec
    from inrcodec.recipes import load_recipe, load_recipe_data

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="/tmp/wt12-era5")
    ap.add_argument("--refine", default="0,10,30,100")
    ap.add_argument("--bits", default="4,6")
    ap.add_argument("--inner-steps", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    rd = load_recipe_data(load_recipe("era5"))
    x = np.ascontiguousarray(rd.test, dtype=np.float32)
    print(f"data: era5 recipe test split of the embedded tas sample, {x.shape} float32 ({x.nbytes} bytes)")
    print()
    print("| refine_steps | bits | chunk bytes | ratio | RMSE (K) | encode s | values/s |")
    print("|---|---|---|---|---|---|---|")
    for refine in [int(r) for r in args.refine.split(",")]:
        for bits in [int(b) for b in args.bits.split(",")]:
            codec = COINppCodec(args.model, bits=bits, inner_steps=args.inner_steps, lat=rd.lat,
                                lon=rd.lon, refine_steps=refine)
            best = None
            for _ in range(args.repeat):
                t = time.perf_counter()
                chunk = codec.encode(x)
                dt = time.perf_counter() - t
                best = dt if best is None else min(best, dt)
            y = codec.decode(chunk).astype(np.float64)
            rmse = float(np.sqrt(np.mean((y - x) ** 2)))
            print(f"| {refine} | {bits} | {len(chunk)} | {x.nbytes / len(chunk):.0f}x | {rmse:.3f} | "
                  f"{best:.2f} | {x.size / best:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
