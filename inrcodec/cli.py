"""The ``inrcodec`` command. Thin: every sub-command calls the library."""

from __future__ import annotations

import argparse
import json
import sys


def _train_recipe(args) -> int:
    from .recipes import list_recipes, train_recipe

    if args.list or not args.name:
        for name, desc in list_recipes().items():
            print(f"{name:8s} {desc}")
        return 0 if args.list else 2
    report = train_recipe(
        args.name, data=args.data or None, variable=args.variable, preset=args.preset, steps=args.steps,
        out=args.out or f"inrcodec-{args.name}", device=args.device, seed=args.seed, resume=args.resume,
        progress=not args.quiet,
    )
    out = args.out or f"inrcodec-{args.name}"
    print(open(f"{out}/report.md").read())
    print(f"model: {report['model_file']} (sha256 {report['model_sha256']})")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="inrcodec", description="COIN++ neural compression for gridded scientific data")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train-recipe", help="meta-train a base network for a dataset recipe")
    p.add_argument("name", nargs="?", help="recipe name (era5, audio, image, mri) or a .toml file")
    p.add_argument("--list", action="store_true", help="list the recipes and exit")
    p.add_argument("--data", nargs="+", help="data files (default: the recipe's embedded sample)")
    p.add_argument("--variable", help="variable to train on (default: t2m, else the only gridded one)")
    p.add_argument("--preset", default="cpu", help="preset in the recipe: cpu (default) or paper")
    p.add_argument("--steps", type=int, help="meta-training steps (default: the preset's)")
    p.add_argument("--out", help="output directory (default: inrcodec-NAME)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.safetensors")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_train_recipe)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"inrcodec: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
