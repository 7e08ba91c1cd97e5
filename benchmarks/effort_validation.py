"""``effort="fast"`` against ``effort="full"`` on the climate pool's validation split: what chose the fast encoder.

Each set is cut into chunks of ``--chunk`` items, every chunk coded on its own by the default codec
(``t2m-global-2``, SPERR candidates on) with each effort, per setting: ratio (input bytes over chunk
bytes), cos(latitude) RMSE, max abs error and encode seconds of all chunks. The sets are validation
data (never test data): ``glosea4`` (13 members, 145 x 192) and ``era5_t`` (20 member-levels, 61 x 120),
each also bilinear on the 4-degree 46 x 90 grid, ``a1b`` (the first 24 years, 37 x 49), and
``era5_t_levels``: one chunk of 8 whose items alternate the 850 and 500 hPa fields (items far from
their chunk's mean, where the fast fit needs more than its fewest steps; ``--chunk 8``).
``--shifts K ...``: every set also moved by K (data units, a row each): data off the level the
network expects (issue 32 case 7, docs/reliability.md).

    python benchmarks/effort_validation.py --threads 2
    python benchmarks/effort_validation.py --sets a1b --settings bits=6 target_rmse=1.0
    python benchmarks/effort_validation.py --efforts fast --chunk 8 --settings target_ratio=200  # one build's
    python benchmarks/effort_validation.py --efforts fast --settings bits=6 --shifts -20 -10 0 10 20  # moved fields
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
import warnings

import _smoke
import numpy as np
from climate_heldout import PAPER_LAT, PAPER_LON, pool_field
from inrcodec.bench.cli import codec_options

from inrcodec import COINppCodec, datasets
from inrcodec.metrics import max_abs_error, rmse_coslat
from inrcodec.training.pool import Field, regrid

SETS = ("glosea4", "glosea4_4deg", "era5_t", "era5_t_4deg", "a1b", "era5_t_levels")
SETTINGS = ("target_ratio=50", "target_ratio=100", "target_ratio=200", "target_ratio=500", "target_ratio=1000",
            "bits=3", "bits=6", "target_rmse=1.0", "target_rmse=2.0")


def validation_set(name: str) -> Field:
    if name == "a1b":
        (da,) = [d for d in datasets.climate_pool("val") if d.name == "a1b"]
        return Field(np.asarray(da.values[:24], np.float32), da.lat.values, da.lon.values, "a1b")
    if name == "era5_t_levels":  # members 0-3 at 850 hPa (items 0-9) and 500 hPa (items 10-19), alternating
        field = pool_field("val", "era5_t")
        return Field(field.values[[0, 10, 1, 11, 2, 12, 3, 13]], field.lat, field.lon, "era5_t levels")
    field = pool_field("val", name.removesuffix("_4deg"))
    return regrid(field, PAPER_LAT, PAPER_LON) if name.endswith("_4deg") else field


def code(field: Field, chunk: int, model: str, options: dict) -> dict:
    x = np.ascontiguousarray(field.values, dtype=np.float32)
    x = x[: len(x) // chunk * chunk]
    codec = COINppCodec(model, lat=field.lat, lon=field.lon, **options)
    size, seconds, ys = 0, 0.0, []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TargetNotMetWarning: the row says what was reached
        for i in range(0, len(x), chunk):
            start = time.perf_counter()
            data = codec.encode(x[i:i + chunk])
            seconds += time.perf_counter() - start
            size += len(data)
            ys.append(codec.decode(data))
    y = np.concatenate(ys)
    return {"ratio": x.nbytes / size, "rmse": rmse_coslat(x, y, field.lat), "max": max_abs_error(x, y), "s": seconds}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", nargs="+", default=list(SETS[:-1]), choices=SETS)
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), metavar="KEY=VALUE[,KEY=VALUE]")
    ap.add_argument("--chunk", type=int, default=4)
    ap.add_argument("--model", default="t2m-global-2")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--efforts", nargs="+", default=["full", "fast"], choices=("full", "fast"),
                    help="the efforts to run (--efforts fast: one build's fast encoder, to hold against another's)")
    ap.add_argument("--shifts", nargs="+", type=float, default=[0.0], metavar="K",
                    help="code every set moved by each K (data units): data off the network's level")
    _smoke.add_flag(ap)
    args = ap.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.smoke:
        args.model, args.sets, args.settings, args.chunk = _smoke.model_dir(), ["era5_t"], ["bits=2"], 2
    print(f"Command: `python {' '.join(map(shlex.quote, sys.argv))}`\n")
    efforts = [e for e in ("full", "fast") if e in args.efforts]
    print("| set | setting | " + " | ".join(f"{e}: ratio, cos RMSE, max err" for e in efforts)
          + f" | encode s {' / '.join(efforts)} |")
    print("|---" * (3 + len(efforts)) + "|")
    for name, shift in [(n, k) for n in args.sets for k in args.shifts]:
        field = validation_set(name)
        if args.smoke:
            field = Field(field.values[:2], field.lat, field.lon, field.name)
        if shift:
            field = Field(field.values + np.float32(shift), field.lat, field.lon, field.name)
            name = f"{name} {shift:+g}"
        for setting in args.settings:
            opts = codec_options(setting.split(","))
            rows = [code(field, args.chunk, args.model, {**opts, "effort": e}) for e in efforts]
            cells = [f"{r['ratio']:.0f}x, {r['rmse']:.3g}, {r['max']:.3g}" for r in rows]
            print(f"| {name} | {setting} | " + " | ".join(cells) + " | " + " / ".join(f"{r['s']:.2f}" for r in rows)
                  + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
