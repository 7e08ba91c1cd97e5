"""An RMSE target with a bound (issue 33 item 2): ``target_rmse`` with ``max_abs_error`` against the
best SZ3 and SPERR settings that meet both, chunk by chunk, in one run.

Each chunk of ``--chunk`` items is coded by inrcodec at ``target_rmse=R, max_abs_error=E`` (the
model a new user gets, default options) and each peer is searched for its fewest bytes that meet
both (RMSE at most R and every value within E): SZ3's absolute bound and SPERR's point-wise bound
at the loosest bound up to E whose RMSE is at most R, SPERR's rate at the lowest that meets both
(log-space bisections of ``--tries`` tries each, the smallest meeting try kept). RMSE is the plain
RMSE over a chunk's values, what ``target_rmse`` means; a ratio is float32 bytes over the sum of the
chunk bytes. The last column is inrcodec's ratio over the best peer's.

Data: ``benchmarks/speed.py``'s sets (``era5_t_1deg``: the climate pool's ERA5 850 and 500 hPa
temperature bilinearly to 1 degree; ``glosea4``: GloSea4 at 1.25 x 1.875 degrees; ``era5_t``: the
same ERA5 at 3 degrees), the test split unless ``--split val``; none of it seen by training.

    python benchmarks/combined_target.py --threads 2 --sets era5_t_1deg glosea4 --chunks 2
    python benchmarks/combined_target.py --codec-option residual_context=false    # the build before
"""

from __future__ import annotations

import argparse
import shlex
import sys

import _smoke
import hybrid_bound
import numpy as np
from speed import SETS, SPLITS, _sperr, data_set

from inrcodec import COINppCodec
from inrcodec.bench.cli import codec_options
from inrcodec.metrics import max_abs_error, rmse as plain_rmse
from inrcodec.training.pool import Field

#: the peers and the setting each is searched over: an absolute bound, a point-wise bound, a rate
PEERS = ("SZ3 (abs)", "SPERR (pwe)", "SPERR (bpp)")


def _peer(name: str, value: float):
    """The peer codec at one setting, or None where it is not installed (SZ3 is a bench extra)."""
    if name == "SPERR (bpp)":
        return _sperr("bpp", value)
    return hybrid_bound._peer("SZ3" if name == "SZ3 (abs)" else "SPERR", value)


def errors(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(plain RMSE, max abs error) of ``y`` against ``x``."""
    return plain_rmse(x, y), max_abs_error(x, y)


def _try(name: str, value: float, x: np.ndarray) -> tuple[int, float, float] | None:
    codec = _peer(name, value)
    if codec is None:
        return None
    data = np.asarray(codec.encode(x)).tobytes()
    y = np.asarray(codec.decode(np.frombuffer(data, np.uint8))).reshape(x.shape)
    return (len(data), *errors(x, y))


def best_peer(name: str, x: np.ndarray, rmse: float, bound: float, tries: int) -> tuple[int, float, float, float] | None:
    """(bytes, RMSE, max error, setting) of the peer's smallest chunk found that meets both, or None
    (not installed, or no try met both). Bounds: the loosest up to ``bound``; a rate: the lowest."""
    rate = name == "SPERR (bpp)"
    lo, hi = (0.01, 32.0) if rate else (bound / 1000.0, bound)
    best = None
    value = hi if not rate else lo
    for _ in range(tries):
        got = _try(name, value, x)
        if got is None:
            return None
        meets = got[1] <= rmse and got[2] <= bound
        if meets and (best is None or got[0] < best[0]):
            best = (*got, value)
        if meets == rate:  # a rate that meets: try lower; a bound that misses: try tighter
            hi = value
        else:
            lo = value
        if not rate and meets and value == bound:
            break  # the loosest bound allowed already meets the RMSE
        value = float(np.sqrt(lo * hi))
    return best


def run(field: Field, rmse: float, bound: float, chunk: int, chunks: int, model: str, tries: int,
        options: dict | None = None) -> dict:
    """Per set: inrcodec's and each peer's total bytes, worst RMSE and max error over the chunks, and
    whether every chunk met both; ``options``: further codec options of inrcodec's."""
    codec = COINppCodec(model, lat=field.lat, lon=field.lon, target_rmse=rmse, max_abs_error=bound, **(options or {}))
    rows = {"inrcodec": [0, 0.0, 0.0, True]} | {name: [0, 0.0, 0.0, True] for name in PEERS}
    nbytes = 0
    for first in range(0, min(len(field.values), chunk * chunks) - chunk + 1, chunk):
        x = np.ascontiguousarray(field.values[first:first + chunk], np.float32)
        nbytes += x.nbytes
        data = codec.encode(x)
        e, m = errors(x, np.asarray(codec.decode(data)).reshape(x.shape))
        _add(rows["inrcodec"], len(data), e, m, e <= rmse * (1 + 1e-9) and m <= bound)
        for name in PEERS:
            found = best_peer(name, x, rmse, bound, tries)
            if found is None and _peer(name, bound) is None:
                rows.pop(name, None)
                continue
            _add(rows[name], *(found[:3] if found else (x.nbytes, 0.0, 0.0)), found is not None)
    return {"nbytes": nbytes, "rows": rows}


def _add(row: list, size: int, e: float, m: float, met: bool) -> None:
    row[0] += size
    row[1], row[2], row[3] = max(row[1], e), max(row[2], m), row[3] and met


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", nargs="+", default=["era5_t_1deg", "glosea4"], choices=SETS)
    ap.add_argument("--target-rmse", type=float, default=1.0)
    ap.add_argument("--max-abs-error", type=float, default=5.0)
    ap.add_argument("--split", default="test", choices=sorted(SPLITS))
    ap.add_argument("--chunk", type=int, default=8, help="items per chunk")
    ap.add_argument("--chunks", type=int, default=1, help="chunks per set (each coded on its own)")
    ap.add_argument("--tries", type=int, default=12, help="tries of each peer's search per chunk")
    ap.add_argument("--model", default="t2m-global-2")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--codec-option", action="append", default=[], metavar="KEY=VALUE",
                    help="a further inrcodec codec option (repeatable), e.g. residual_context=false")
    _smoke.add_flag(ap)
    args = ap.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.smoke:
        args.model, args.sets, args.chunk, args.chunks, args.tries = _smoke.model_dir(), ["era5_t"], 2, 1, 3
    print(f"Command: `python {' '.join(map(shlex.quote, sys.argv))}`\n")
    print(f"`target_rmse={args.target_rmse:g}, max_abs_error={args.max_abs_error:g}`; a peer's row is its "
          "smallest chunk meeting both, per chunk (worst RMSE and max error over the chunks).\n")
    print("| set | chunks | codec | ratio | RMSE | max err | meets both | inrcodec / this |")
    print("|---" * 8 + "|")
    for name in args.sets:
        field = data_set(name, args.split)
        out = run(field, args.target_rmse, args.max_abs_error, args.chunk, args.chunks, args.model, args.tries,
                  codec_options(args.codec_option))
        ours = out["rows"]["inrcodec"][0]
        n = max(1, min(len(field.values), args.chunk * args.chunks) // args.chunk)
        for codec, (size, e, m, met) in out["rows"].items():
            print(f"| {name} | {n} x {args.chunk} x {' x '.join(map(str, field.values.shape[1:]))} | {codec} | "
                  f"{out['nbytes'] / size:.2f}x | {e:.3g} | {m:.3g} | {'yes' if met else 'no'} | "
                  f"{size / ours:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
