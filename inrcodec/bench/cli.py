"""The ``inrcodec bench`` sub-command (its arguments are declared in :mod:`inrcodec.cli`)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from inrcodec.bench.measure import run_bench
from inrcodec.bench.peers import available_peers
from inrcodec.bench.report import write_outputs


def main(args) -> int:
    """Run the benchmark of an argparse namespace, write its files, print the markdown summary."""
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if not args.model:
        print("inrcodec bench: no --model given, benchmarking the peers only", file=sys.stderr)
    _, missing = available_peers(args.peers) if args.peers else ([], {})
    if missing:
        print("inrcodec bench: peers not installed, skipped:", file=sys.stderr)
        for k, v in missing.items():
            print(f"  {k}: {v}", file=sys.stderr)
    res = run_bench(
        args.dataset, models=args.model or (), bits=args.bits, peers=args.peers, quick=args.quick,
        data=args.data or None, variable=args.variable, max_items=args.max_items, repeats=args.repeats,
        log=(lambda s: print(f"  {s}", file=sys.stderr, flush=True)) if not args.quiet else None,
    )
    files = write_outputs(res, args.out, command_line(args))
    print(Path(files["md"]).read_text())
    print("written: " + ", ".join(files.values()))
    return 0


def command_line(args) -> str:
    """The ``inrcodec bench ...`` command that reproduces ``args`` (written into the summary)."""
    parts = ["inrcodec bench", args.dataset]
    if args.model:
        parts += ["--model", *map(str, args.model)]
    parts += ["--bits", *map(str, args.bits)]
    for flag, val in (("--peers", args.peers), ("--data", args.data)):
        if val:
            parts += [flag, *map(str, val)]
    for flag, val in (("--variable", args.variable), ("--max-items", args.max_items), ("--threads", args.threads)):
        if val:
            parts += [flag, str(val)]
    if args.repeats != 1:
        parts += ["--repeats", str(args.repeats)]
    if args.quick:
        parts.append("--quick")
    parts += ["--out", str(args.out)]
    return " ".join(shlex.quote(p) if i > 0 else p for i, p in enumerate(parts))
