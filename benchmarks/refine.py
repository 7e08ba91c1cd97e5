"""Encode-time refinement: rate-distortion gain and encode-time cost of ``refine_steps``.

    python benchmarks/refine.py --model t2m-global --float      # tas is a held-out source for it

Data: the embedded ``tas`` sample's last 2 time steps (held out from the model's training by the
``era5`` recipe's contiguous split when trained on ``tas``), one (2, 96, 192) float32 chunk. For each ``refine_steps`` (Adam steps on the latents after
the ``inner_steps`` meta-learned steps) and each ``bits``: chunk bytes, ratio, RMSE (K) and encode
time (best of ``--repeat``), with values per second. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import time

import _smoke
import numpy as np


def main(argv=None) -> None:
    import torch

    from inrcodec import COINppCodec
    from inrcodec import metrics
    from inrcodec.models import modelstore
    from inrcodec.datasets import embedded_sample

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="/tmp/wt12-era5")
    ap.add_argument("--refine", default="0,10,30")
    ap.add_argument("--bits", default="6,8")
    ap.add_argument("--refine-lr", type=float, default=None,
                    help="override the model's refine_lr (Adam step size); default: the model's own")
    ap.add_argument("--inner-steps", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--float", action="store_true", help="also the RMSE of the unquantized latents")
    ap.add_argument("--threads", type=int, default=2)
    _smoke.add_flag(ap)
    args = ap.parse_args(argv)
    if args.smoke:
        args.model, args.refine, args.bits, args.inner_steps, args.float = _smoke.model_dir(), "0,1", "2", 1, True
    torch.set_num_threads(args.threads)

    da = embedded_sample("tas")
    x = np.ascontiguousarray(da.values[-2:], dtype=np.float32)  # held out from --model's training
    lat, lon = da[da.dims[-2]].values, da[da.dims[-1]].values
    model = modelstore.load(args.model).model
    if args.refine_lr is not None:
        model = type(model).from_bytes(model.to_bytes())  # a copy: the cached model stays as it is
        model.refine_lr = args.refine_lr
        model.changed()
    print(f"data: embedded tas, last 2 time steps, {x.shape} float32 ({x.nbytes} bytes); "
          f"refine step {model.refine_step_size():g}")
    print()
    print("| refine_steps | bits | chunk bytes | ratio | RMSE (K) | encode s | values/s |")
    print("|---|---|---|---|---|---|---|")
    grid = model.make_grid(x.shape[1:], lat=lat, lon=lon)
    for refine in [int(r) for r in args.refine.split(",")]:
        if args.float:  # the fit itself, before quantization
            latents = model.encode(x, grid, steps=args.inner_steps, refine_steps=refine)
            rmse = metrics.rmse(x, model.decode(latents, grid))
            print(f"| {refine} | float32 | - | - | {rmse:.3f} | - | - |", flush=True)
        for bits in [int(b) for b in args.bits.split(",")]:
            codec = COINppCodec(model, bits=bits, inner_steps=args.inner_steps, lat=lat,
                                lon=lon, refine_steps=refine)
            best = None
            for _ in range(args.repeat):
                t = time.perf_counter()
                chunk = codec.encode(x)
                dt = time.perf_counter() - t
                best = dt if best is None else min(best, dt)
            y = codec.decode(chunk).astype(np.float64)
            rmse = metrics.rmse(x, y)
            print(f"| {refine} | {bits} | {len(chunk)} | {x.nbytes / len(chunk):.0f}x | {rmse:.3f} | "
                  f"{best:.2f} | {x.size / best:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
