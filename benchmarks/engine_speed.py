"""Engine speed on this machine: meta-training steps/s, encode and decode values/s.

    python benchmarks/engine_speed.py --width 64 --depth 4 --latent-dim 16 --threads 2

Uses the embedded real temperature sample (12 x 96 x 192) on a spherical grid in 16 x 16
patches. Prints a markdown table row; docs/benchmarks.md records the numbers and the command.
"""

from __future__ import annotations

import argparse
import platform
import time

import _smoke
import numpy as np
import torch

from inrcodec import datasets
from inrcodec.training.metalearn import MetaTrainer, TrainConfig
from inrcodec.models.model import CoinModel
from inrcodec.models.network import ModulatedSiren
from inrcodec.training.calibration import fit_normalisation, training_sampler


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--latent-dim", type=int, default=16)
    ap.add_argument("--patch", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--outer-points", type=int, default=128)
    ap.add_argument("--train-steps", type=int, default=50)
    ap.add_argument("--encode-steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--device", default="cpu")
    _smoke.add_flag(ap)
    args = ap.parse_args(argv)
    if args.smoke:
        args.width, args.depth, args.latent_dim, args.batch_size, args.outer_points = 8, 1, 4, 2, 16
        args.train_steps, args.encode_steps = 1, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    da = datasets.embedded_sample("tas")
    values = da.values.astype(np.float32)
    net = ModulatedSiren(3, 1, width=args.width, depth=args.depth, latent_dim=args.latent_dim, w0=30.0)
    model = CoinModel(net, "spherical", patch_shape=(args.patch, args.patch), encode_steps=args.encode_steps)
    fit_normalisation(model, values)
    grid = model.make_grid(values.shape[1:], lat=da.lat.values, lon=da.lon.values)
    cfg = TrainConfig(steps=args.train_steps, batch_size=args.batch_size, outer_lr=1e-3,
                      outer_points=args.outer_points, val_every=10**9, device=args.device)
    trainer = MetaTrainer(net, training_sampler(model, values, grid), None, cfg)
    warm = 1 if args.smoke else 3
    trainer.train(steps=warm, progress=False)  # warm-up
    t = time.perf_counter()
    trainer.train(steps=warm + args.train_steps, progress=False)
    steps_per_s = args.train_steps / (time.perf_counter() - t)
    model.network = trainer.network.cpu().eval()

    t = time.perf_counter()
    latents = model.encode(values, grid)
    encode_s = time.perf_counter() - t
    t = time.perf_counter()
    model.decode(latents, grid)
    decode_s = time.perf_counter() - t
    n = values.size
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {args.device}")
    print("| width x depth, latent | patch | batch | meta-train steps/s | encode values/s "
          f"({args.encode_steps} steps) | decode values/s |")
    print("|---|---|---|---|---|---|")
    print(f"| {args.width} x {args.depth}, {args.latent_dim} | {args.patch}x{args.patch} | {args.batch_size} "
          f"| {steps_per_s:.1f} | {n / encode_s:,.0f} | {n / decode_s:,.0f} |")


if __name__ == "__main__":
    main()
