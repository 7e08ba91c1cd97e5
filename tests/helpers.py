"""Helpers the tests share (in the spirit of numcodecs' ``tests/common.py``): a fresh interpreter,
a hand-edited chunk's CRC put right so that the check under test is the one that refuses it, a
codec's configuration round trip, a store's files by content, an interrupted run, a tiny recipe
network and small data files."""

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


def small_dataset(n=4, lat_desc=False):
    """``n`` global temperature-like fields (``tas``) and a land mask on the tests' small grid
    (latitudes descending with ``lat_desc``)."""
    import numpy as np
    import xarray as xr
    from conftest import global_lat_lon, smooth_field

    lat, lon = global_lat_lon()
    x = smooth_field(n).astype("f4")
    if lat_desc:
        lat, x = lat[::-1], x[:, ::-1]
    ds = xr.Dataset({"tas": (("time", "lat", "lon"), x), "land": (("lat", "lon"), (x[0] > 250).astype("i1"))},
                    coords={"time": np.arange(n), "lat": lat, "lon": lon})
    return ds


def peak_bytes(fn):
    """Peak Python/numpy heap (tracemalloc) while ``fn`` runs, and what it raised."""
    import tracemalloc

    tracemalloc.start()
    err = None
    try:
        fn()
    except Exception as exc:  # noqa: BLE001
        err = exc
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak, err


def store_with_config(path, coin_model, **changes):
    """A Zarr 3 store of ``tas`` whose codec configuration then gets ``changes``; the array's path."""
    import json

    from inrcodec.codec import COINppCodec

    ds = small_dataset(2)
    ds[["tas"]].to_zarr(path, encoding={"tas": COINppCodec.for_dataarray(ds.tas, coin_model, inner_steps=1)},
                        consolidated=False)
    meta = path / "tas" / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["codecs"][0]["configuration"].update(changes)
    meta.write_text(json.dumps(doc))
    return path / "tas"


def config_round_trip(codec):
    """``codec``'s configuration through JSON and ``numcodecs.get_codec``: the codec it gives,
    checked to be the same type, equal, of the same hash and configuration."""
    import json

    import numcodecs

    config = json.loads(json.dumps(codec.get_config()))
    back = numcodecs.get_codec(config)
    assert type(back) is type(codec) and back == codec and hash(back) == hash(codec)
    assert back.get_config() == codec.get_config()
    return back
