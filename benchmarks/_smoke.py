"""The smallest setting of every benchmark (``--smoke``): a tiny untrained model and little data,
so that ``tests/bench/test_benchmarks.py`` runs each script in seconds and a script the docs cite
cannot silently stop working. Smoke numbers mean nothing."""

from __future__ import annotations

import argparse
import atexit
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

HELP = "smallest setting: tiny model and data, seconds, numbers meaningless (tests/bench/test_benchmarks.py)"


def add_flag(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--smoke", action="store_true", help=HELP)


def tmpdir() -> str:
    """A temporary directory, removed when the process exits."""
    out = tempfile.mkdtemp(prefix="inrcodec-smoke-")
    atexit.register(shutil.rmtree, out, True)
    return out


def model_dir() -> str:
    """A directory holding a tiny calibrated spherical model (tests/conftest.py's)."""
    from conftest import build_spherical_model

    out = tmpdir()
    build_spherical_model(width=8, depth=1, latent_dim=4).save(out)
    return out
