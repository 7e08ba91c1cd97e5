"""Every benchmark script runs at its smallest setting (``--smoke``, benchmarks/_smoke.py): a
benchmark the docs cite cannot silently rot (issue 21 case 14: ``small_chunks.py`` called a
method that no longer existed). The numbers are meaningless; only that each script completes.

One subprocess runs them all (torch and xarray are imported once), each in a fresh namespace."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from helpers import REPO

ROOT = REPO
SCRIPTS = sorted(p.name for p in (ROOT / "benchmarks").glob("*.py") if not p.name.startswith("_"))
#: a hang guard, not a speed target (speed lives in the benchmarks themselves): seconds one
#: script may take at its smallest setting, on average, before the whole run is stopped
PER_SCRIPT_S = 60

DRIVER = textwrap.dedent("""
    import contextlib, io, json, os, runpy, sys, time, traceback
    # the installed inrcodec, not the checkout's source folder of the same name (python -c puts
    # the working directory first; the source tree lacks the installed inrcodec._recipes)
    sys.path[:] = [p for p in sys.path if p not in ("", os.getcwd())]
    sys.path.insert(0, "benchmarks")
    out = {}
    for script in sys.argv[1:]:
        t = time.perf_counter()
        sys.argv = [script, "--smoke"]
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                runpy.run_path("benchmarks/" + script, run_name="__main__")
            error = None
        except SystemExit as exc:
            error = f"exit status {exc.code}" if exc.code else None
        except BaseException:  # noqa: BLE001 - reported per script
            error = traceback.format_exc()[-3000:]
        out[script] = {"seconds": round(time.perf_counter() - t, 2), "error": error}
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def smoke_runs():
    r = subprocess.run([sys.executable, "-c", DRIVER, *SCRIPTS], cwd=ROOT, capture_output=True, text=True,
                       timeout=PER_SCRIPT_S * len(SCRIPTS))
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_runs_at_its_smallest_setting(script, smoke_runs):
    run = smoke_runs[script]
    assert run["error"] is None, run["error"]


def test_every_benchmark_has_a_smoke_flag():
    for name in SCRIPTS:
        assert "_smoke.add_flag(ap)" in (ROOT / "benchmarks" / name).read_text(), name
