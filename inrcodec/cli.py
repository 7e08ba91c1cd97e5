"""The ``inrcodec`` command. Thin: every sub-command calls the library."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys


def os_error_message(exc: OSError, command: str) -> str:
    """One line for an operating-system error: what failed where, and what to do."""
    import errno

    where = f" ({exc.filename})" if exc.filename else ""
    hint = {errno.ENOSPC: "free some space", errno.EDQUOT: "free some space (disk quota exceeded)",
            errno.EROFS: "the file system is read-only: write somewhere else",
            errno.EBUSY: "the path is in use (a mount point?): write to a path inside it",
            errno.EACCES: "no permission: write somewhere else"}.get(exc.errno, "")
    if command == "compress" and hint:
        hint += "; an unfinished store resumes when the same command is run again"
    return f"{exc.strerror or exc}{where}" + (f": {hint}" if hint else "")


def _train_recipe(args) -> int:
    from .recipes import check_resumable, list_recipes, train_recipe, train_variables, variable_list

    if args.list or not args.name:
        for name, desc in list_recipes().items():
            print(f"{name:8s} {desc}")
        return 0 if args.list else 2
    several = variable_list(args.variable, args.data)
    if args.resume:
        check_resumable(args.out or f"inrcodec-{args.name}", several)
    if several is not None:  # one model per variable, each in OUT/VARIABLE
        out = args.out or f"inrcodec-{args.name}"
        reports = train_variables(
            args.name, several, out, minutes=args.minutes, data=args.data or None, preset=args.preset,
            steps=args.steps, device=args.device, seed=args.seed, resume=args.resume, progress=not args.quiet,
            init=args.init)
        print(f"{'variable':10s} {'units':8s} {'init':24s} {'steps':>6s}  model")
        for var, r in reports.items():
            init = (r.get("init") or {}).get("name") or (r.get("init") or {}).get("sha256", "")[:12] or "none (scratch)"
            print(f"{var:10s} {str(r.get('units') or '')[:8]:8s} {init[:24]:24s} {r.get('steps', 0):6d}  {r['model_file']}")
        print(f"compress a file with these models: inrcodec compress IN.nc OUT.zarr --model {out}")
        return 0
    report = train_recipe(
        args.name, data=args.data or None, variable=args.variable, preset=args.preset, steps=args.steps,
        out=args.out or f"inrcodec-{args.name}", device=args.device, seed=args.seed, resume=args.resume,
        progress=not args.quiet, init=args.init, minutes=args.minutes,
    )
    out = args.out or f"inrcodec-{args.name}"
    print(open(f"{out}/report.md").read())
    print(f"model: {report['model_file']} (sha256 {report['model_sha256']})")
    return 0


def _recipe_names() -> list[str]:
    from .recipes import list_recipes

    return sorted(list_recipes())


def _presets_help() -> str:
    """The presets of every recipe, e.g. ``era5: cpu, cpu-p32, paper; audio: cpu, paper``."""
    from .recipes import list_recipes, load_recipe

    return "; ".join(f"{name}: {', '.join(sorted(load_recipe(name).presets))}" for name in list_recipes())


def tune_malloc() -> None:
    """Process-wide glibc malloc settings for a compress run (the CLI's process only; docs/archive.md).

    Every encode allocates and frees tensors larger than glibc's dynamic mmap threshold (at most
    32 MiB), which then come from fresh mmaps and cost a page fault per 4 KiB page each time; a fixed
    64 MiB threshold (and trim threshold) keeps them in the heap. Threads each get a malloc arena
    (up to 8 per core), which nearly doubles a threaded run's peak memory; one is enough (measured,
    docs/archive.md).
    Settings already given in the environment (MALLOC_*_) win.
    """
    import ctypes
    import os

    if not sys.platform.startswith("linux"):
        return
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        return
    for env, param, value in (("MALLOC_ARENA_MAX", -8, 1), ("MALLOC_MMAP_THRESHOLD_", -3, 64 << 20),
                              ("MALLOC_TRIM_THRESHOLD_", -1, 64 << 20)):
        if env not in os.environ:
            mallopt(param, value)


def _compress(args) -> int:
    from .archive import compress_dataset, format_report
    from .settings import CodecSettings

    tune_malloc()
    model, models = model_arguments(args.model)
    # one CodecSettings from the flags (inner_steps unset: the model's own, resolved with the model)
    with _compiled_fit(args.compile_fit):
        rep = compress_dataset(
            args.input, args.output, model=model, models=models, variables=args.variables,
            settings=CodecSettings.from_arguments(args),
            variable_options=variable_option_arguments(args.variable_option), chunks=args.chunks,
            scheduler=args.scheduler, workers=args.workers, overwrite=args.overwrite, progress=not args.quiet,
            device=args.device,
        )
    print(format_report(rep))
    return 0


@contextlib.contextmanager
def _compiled_fit(on: bool):
    """``--compile-fit``: ``INRCODEC_COMPILE_FIT=1`` for the run (worker processes started in it
    inherit it), as it was after; off, the environment decides."""
    import os

    from .models.fitting import COMPILE_ENV

    before = os.environ.get(COMPILE_ENV)
    if on:
        os.environ[COMPILE_ENV] = "1"
    try:
        yield
    finally:
        if on and before is None:
            os.environ.pop(COMPILE_ENV, None)
        elif on:
            os.environ[COMPILE_ENV] = before


def model_arguments(values: list[str]) -> tuple[str | None, dict[str, str] | None]:
    """``--model`` given once (a model, or a directory of per-variable models) -> (model, None);
    ``--model VAR=MODEL`` repeated -> (None, {VAR: MODEL})."""
    pairs = [v for v in values if "=" in v]
    if not pairs:
        if len(values) > 1:
            raise ValueError("--model given several times: name the variable of each, --model VAR=MODEL")
        return values[0], None
    if len(pairs) != len(values):
        raise ValueError("--model: give one model (or a directory of per-variable models), or VAR=MODEL for each "
                         f"variable, not both: {values}")
    models: dict[str, str] = {}
    for pair in pairs:
        var, _, model = pair.partition("=")
        if not var or not model or var in models:
            raise ValueError(f"--model {pair!r}: expected VAR=MODEL, each variable once")
        models[var] = model
    return None, models


def variable_option_arguments(values: list[str] | None) -> dict[str, dict]:
    """``--variable-option VAR.OPTION=VALUE`` repeated -> ``{VAR: {option: value}}``."""
    from .settings import CodecSettings

    out: dict[str, dict] = {}
    for item in values or ():
        target, sep, text = item.partition("=")
        var, dot, name = target.rpartition(".")
        if not (sep and dot and var and name and text):
            raise ValueError(f"--variable-option {item!r}: expected VAR.OPTION=VALUE, e.g. tp.valid_min=0")
        key = name.replace("-", "_")
        if key in out.get(var, {}):
            raise ValueError(f"--variable-option {item!r}: {var}.{key} given twice")
        out.setdefault(var, {})[key] = CodecSettings.parse_option(name, text)
    return out


def _decompress(args) -> int:
    from .archive import decompress_store

    print(decompress_store(args.store, args.output, progress=not args.quiet, overwrite=args.overwrite))
    return 0


def _info(args) -> int:
    from .archive import check_complete, format_info, store_info

    info = store_info(args.store)
    print(json.dumps(info, indent=1) if args.json else format_info(info))
    check_complete(args.store)  # an unfinished store: the message says how to resume, exit 2
    return 0


def _models(args) -> int:
    from inrcodec.models import zoo

    print(json.dumps(zoo.available(), indent=1) if args.json else zoo.describe(), end="")
    return 0


def _output_flags(p, what: str) -> None:
    p.add_argument("--overwrite", action="store_true", help=f"replace an existing {what}")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def main(argv=None) -> int:
    from .settings import CodecSettings

    parser = argparse.ArgumentParser(prog="inrcodec", description="COIN++ neural compression for gridded scientific data")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train-recipe", help="meta-train a base network for a dataset recipe")
    p.add_argument("name", nargs="?", help=f"recipe name ({', '.join(_recipe_names())}) or a .toml file")
    p.add_argument("--list", action="store_true", help="list the recipes and exit")
    p.add_argument("--data", nargs="+", help="data files (default: the recipe's embedded sample)")
    p.add_argument("--variable", help="variable to train on (default: t2m, else the only gridded one); several, "
                   "comma-separated, or 'all' (every float lat/lon variable): one model each, in OUT/VARIABLE, "
                   "--minutes shared by them")
    p.add_argument("--preset", default="cpu", help=f"preset in the recipe ({_presets_help()})")
    p.add_argument("--steps", type=int, help="meta-training steps (default: the preset's)")
    p.add_argument("--minutes", type=float, help="wall-clock budget: training stops in time to calibrate and report "
                   "within it (estimated from a timed encode), or at --steps, whichever comes first")
    p.add_argument("--init", default="auto", help="model to start from: a shipped name, a model file or train-recipe "
                   "directory, prior (the recipe's shipped network for any variable, normalised to the data's own "
                   "range), or none (default: with --data, the recipe's shipped model when the data are its "
                   "variable, e.g. t2m-global for t2m/tas; without --data, none)")
    p.add_argument("--out", help="output directory (default: inrcodec-NAME; with several variables it holds one "
                   "directory per variable)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.safetensors")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_train_recipe)

    p = sub.add_parser("compress", help="compress a netCDF/HDF5/Zarr dataset into a Zarr store (Dask, resumable)")
    p.add_argument("input", help="netCDF/HDF5 file or Zarr store")
    p.add_argument("output", help="Zarr store to write (an unfinished run of the same request resumes)")
    p.add_argument("--model", required=True, action="append",
                   help="model file, train-recipe output directory, or a shipped model's name (inrcodec models); "
                   "a directory of per-variable models (train-recipe --variable a,b --out DIR) codes each variable "
                   "with its own; or VAR=MODEL, repeated, one per variable")
    p.add_argument("--variables", help="comma-separated variables to encode (default: all the model can encode, or "
                   "the variables that have a model)")
    codec_options = p.add_argument_group("codec options (inrcodec.settings.CodecSettings)")
    CodecSettings.add_arguments(codec_options)
    p.add_argument("--variable-option", action="append", metavar="VAR.OPTION=VALUE",
                   help="a codec option of one variable (repeatable), e.g. tp.valid_min=0: decoded precipitation "
                   "stays non-negative while the other variables keep the options above")
    p.add_argument("--chunks", help="chunk size along the region dim, e.g. time=24 (default)")
    p.add_argument("--scheduler", default="threads", help="threads (default), processes, or a dask.distributed address")
    p.add_argument("--workers", type=int, help="start a LocalCluster of N processes (or N processes with --scheduler processes)")
    p.add_argument("--device", help="cpu (default), cuda or auto: where workers run the model")
    p.add_argument("--compile-fit", action="store_true",
                   help="fit with torch.compile'd kernels (INRCODEC_COMPILE_FIT=1): about 1.25x the archive "
                   "throughput on CPU; needs a C++ compiler, compiles for about 10 s once (docs/usage.md)")
    _output_flags(p, "store")
    p.set_defaults(func=_compress)

    p = sub.add_parser("decompress", help="decode a compressed Zarr store into a netCDF file")
    p.add_argument("store")
    p.add_argument("output", help="netCDF file to write")
    _output_flags(p, "output file")
    p.set_defaults(func=_decompress)

    p = sub.add_parser("info", help="variables, codec, pinned model, bits and ratio of a Zarr store")
    p.add_argument("store")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_info)

    p = sub.add_parser("models", help="list the pretrained models that ship with inrcodec (use them by name as --model)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_models)

    from .bench import cli as bench_cli

    p = sub.add_parser("bench", help=bench_cli.HELP)
    bench_cli.add_arguments(p)
    p.set_defaults(func=bench_cli.main)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError) as exc:
        print(f"inrcodec: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk, a read-only or busy file system: one line, not a traceback
        print(f"inrcodec: error: {os_error_message(exc, args.command)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
