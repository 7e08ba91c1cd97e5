"""Helpers the tests share (in the spirit of numcodecs' ``tests/common.py``): a fresh interpreter,
a hand-edited chunk's CRC put right so that the check under test is the one that refuses it, a
store's files by content, an interrupted run, a tiny recipe network and a small real sample file."""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

#: the tests' folder (shared data under ``data/``) and the repository's
TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent

#: recipe overrides for a network trained in seconds
TINY = {"width": 8, "depth": 2, "latent_dim": 4, "batch_size": 4, "encode_steps": 2, "outer_points": 32,
        "lr_schedule": "constant"}


def with_crc(body: bytes) -> bytes:
    """``body`` followed by its CRC-32 (little-endian u32): a chunk of format version 3 or later."""
    return bytes(body) + struct.pack("<I", zlib.crc32(bytes(body)) & 0xFFFFFFFF)


def fix_crc(chunk) -> bytes:
    """A whole chunk with its last 4 bytes (the CRC) recomputed over the rest."""
    return with_crc(bytes(chunk[:-4]))


def run_python(code: str, *args: str, timeout: float = 120, text: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """``code`` (dedented) run by a fresh interpreter with ``args``, its output captured."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=text,
                          timeout=timeout, **kwargs)


def file_hashes(root) -> dict[str, str]:
    """Every file under ``root`` (relative path) -> the SHA-256 of its bytes."""
    out = {}
    for base, _, fs in os.walk(root):
        for f in fs:
            p = os.path.join(base, f)
            out[os.path.relpath(p, root)] = hashlib.sha256(Path(p).read_bytes()).hexdigest()
    return out


class Stop(Exception):
    """Raised by :func:`stop_after_first_region` to interrupt a compress run."""


def stop_after_first_region(index, done, total):
    """An ``on_region`` callback that stops the run once its first region is recorded."""
    raise Stop(index)


def monthly_sample(path, name="tas", units="K"):
    """12 monthly global fields (48 x 96) of the embedded sample as one netCDF file."""
    import xarray as xr

    from inrcodec import datasets

    ds = xr.open_dataset(datasets.embedded_sample_path("tas")).isel(lat=slice(None, None, 2), lon=slice(None, None, 2))
    ds = ds.rename({"tas": name}) if name != "tas" else ds
    ds[name].attrs["units"] = units
    ds.load().to_netcdf(path)
    return str(path)
