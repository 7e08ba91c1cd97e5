"""The ``inrcodec bench`` sub-command: its flags (:func:`add_arguments`, which :mod:`inrcodec.cli`
calls), its run (:func:`main`) and the command line that reproduces a run, rebuilt from the same
declaration of the flags."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from inrcodec.bench.measure import SPLITS, run_bench
from inrcodec.bench.outputs import write_outputs
from inrcodec.bench.peers import available_peers

HELP = "rate-distortion benchmark against SZ3, ZFP, SPERR, BitRound+Zstd, JPEG 2000, ..."

#: ``(flag, add_argument keywords)`` of every argument, in the order of a written command line
ARGUMENTS = (
    ("dataset", dict(help="recipe name (see inrcodec train-recipe --list): its held-out test split")),
    ("--model", dict(nargs="+", help="inrcodec model file(s) or train-recipe output dir(s), e.g. several latent sizes")),
    ("--bits", dict(nargs="*", type=int, default=[4, 5, 6, 8], help="inrcodec bit widths (default 4 5 6 8; "
                    "none with --target-ratio alone)")),
    ("--target-ratio", dict(nargs="+", type=float, help="also inrcodec at these compression ratios (rate control: "
                            "per chunk the network, hybrid or SPERR chunk with the lowest RMSE within the ratio)")),
    ("--codec-option", dict(action="append", metavar="OPTION=VALUE", help="an inrcodec codec option for every inrcodec "
                            "row (repeatable), e.g. max_abs_error=0.5 or residual_coder=none (inrcodec compress --help "
                            "lists them)")),
    ("--peers", dict(nargs="+", help="peer codecs (default: the modality's: JPEG/WebP/JPEG 2000 for image, MP3/Opus "
                     "for audio, JPEG/JPEG 2000 per slice + SPERR/SZ3 3-D for mri, scientific codecs for era5; see "
                     "inrcodec.bench.PEERS)")),
    ("--data", dict(nargs="+", help="data files (default: the recipe's embedded sample)")),
    ("--variable", dict(help="variable (default: the recipe's)")),
    ("--split", dict(choices=SPLITS, default="test", help="the held-out split measured: test (default; the "
                     "numbers to report) or validation (to choose settings on)")),
    ("--max-items", dict(type=int, help="only the first N items of the split")),
    ("--threads", dict(type=int, default=0, help="torch threads (default: torch's)")),
    ("--repeats", dict(type=int, default=1, help="timed runs per point, median reported (default 1)")),
    ("--quick", dict(action="store_true", help="tiny sweep: two settings per peer, first two bit widths")),
    ("--out", dict(default="inrcodec-bench", help="output directory: CSV, PNG, markdown (default inrcodec-bench)")),
    ("--quiet", dict(action="store_true", help="no progress lines")),
)
_ALWAYS_WRITTEN = ("--bits", "--out")  # written into a command line even at their defaults
_NOT_WRITTEN = ("--quiet",)  # changes nothing measured


def add_arguments(parser) -> None:
    """Declare the sub-command's arguments on ``parser`` (an ``argparse`` parser)."""
    for flag, options in ARGUMENTS:
        parser.add_argument(flag, **options)


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
        target_ratios=args.target_ratio or (), split=args.split, codec_options=codec_options(args.codec_option),
        log=(lambda s: print(f"  {s}", file=sys.stderr, flush=True)) if not args.quiet else None,
    )
    files = write_outputs(res, args.out, command_line(args))
    print(Path(files["md"]).read_text())
    print("written: " + ", ".join(files.values()))
    return 0


def codec_options(values) -> dict:
    """``--codec-option OPTION=VALUE`` repeated -> ``{option: value}`` (values read as the compress
    flags read them)."""
    from inrcodec.settings import CodecSettings

    out: dict = {}
    for item in values or ():
        name, sep, text = item.partition("=")
        if not (sep and name and text):
            raise ValueError(f"--codec-option {item!r}: expected OPTION=VALUE, e.g. max_abs_error=0.5")
        out[name.replace("-", "_")] = CodecSettings.parse_option(name, text)
    return out


def command_line(args) -> str:
    """The ``inrcodec bench ...`` command that reproduces ``args`` (written into the summary):
    every argument given a value other than its default."""
    parts = ["inrcodec bench"]
    for flag, options in ARGUMENTS:
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if not flag.startswith("-"):
            parts.append(str(value))
        elif flag in _NOT_WRITTEN or (flag not in _ALWAYS_WRITTEN and (not value or value == options.get("default"))):
            continue
        elif options.get("action") == "store_true":
            parts.append(flag)
        elif options.get("action") == "append":
            for v in value:
                parts += [flag, str(v)]
        else:
            parts += [flag, *map(str, value if options.get("nargs") else [value])]
    return " ".join(shlex.quote(p) if i > 0 else p for i, p in enumerate(parts))
