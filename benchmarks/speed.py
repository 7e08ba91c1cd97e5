"""Encode and decode speed next to SPERR's, in one run, with ratio and error and where the time goes.

For each data set and codec setting, every chunk is coded by ``COINppCodec`` (the model a new user
gets, default options) and by SPERR (numcodecs-wasm-sperr, the same float32 chunk) at the matching
setting: ``bits=B`` against SPERR at inrcodec's achieved bits per value, ``target_ratio=R`` against
SPERR at ``32 / R`` bits per value, ``max_abs_error=E`` against SPERR's point-wise error ``E``.
Rows give values/s, the time as a multiple of SPERR's, ratio, cos(latitude) RMSE and max error, the
chunk modes, and the encode seconds per stage (``inrcodec.chunkcodec.timing``: fit, reconstruct,
wavelet, latents, residual, check, other).

Data (none of it seen by training or any choice of settings unless ``--split val``):

* ``era5_t``: the climate pool's test-time ERA5 temperature at 850 and 500 hPa (10 members each,
  one 12-hourly analysis), 3 degrees (61 x 120);
* ``era5_t_1deg``: the same fields bilinearly interpolated to 1 degree (181 x 360): the size of an
  hourly 1-degree archive's chunk, smoother than real 1-degree data (speed, not rate-distortion);
* ``glosea4``: the pool's test-time GloSea4 month, 13 members at 1.25 x 1.875 degrees (145 x 192);
* ``mpi_esm`` (not in the default sets): the pool's held-out-by-source MPI-ESM-LR 2005 monthly
  2 m temperature, 12 x 96 x 192, where the network knows the data (hybrid chunks).

A setting may name several options, comma-separated: ``bits=6,residual_coder=none`` times the
network-alone chunks (mode 0) and their decode.

Usage::

    python benchmarks/speed.py --threads 2                         # all sets, all settings
    python benchmarks/speed.py --sets era5_t_1deg --settings bits=6 target_ratio=400
    python benchmarks/speed.py --codec-option effort=full          # the builds before issue 30
    python benchmarks/speed.py --sets era5_t --archive 2           # inrcodec compress against the chunk path
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time

import _smoke
import numpy as np
from climate_heldout import pool_field
from inrcodec.bench.cli import codec_options

from inrcodec import COINppCodec
from inrcodec.chunkcodec.timing import STAGES, stage_times
from inrcodec.chunkformat import mode_counts
from inrcodec.metrics import max_abs_error, rmse_coslat
from inrcodec.training.pool import Field, regrid
from inrcodec.wasmcodecs import wasm_codec_class

SETS = ("era5_t_1deg", "era5_t", "glosea4", "mpi_esm")
DEFAULT_SETS = SETS[:3]
SETTINGS = ("bits=6", "target_ratio=100", "target_ratio=400", "max_abs_error=0.5")
SPLITS = {"test": "test-time", "val": "val"}


def data_set(name: str, split: str) -> Field:
    """The items (N, lat, lon) of one set (see the module doc)."""
    if name == "mpi_esm":
        return pool_field("test-source", "mpi_esm")
    source = "glosea4" if name == "glosea4" else "era5_t"
    field = pool_field(SPLITS[split], source)
    if name == "era5_t_1deg":
        field = regrid(field, np.linspace(-90.0, 90.0, 181), np.arange(360.0))
    return field


def setting_options(setting: str) -> dict:
    """``"bits=6,residual_coder=none"`` -> codec keyword arguments."""
    return codec_options(setting.split(","))


def _sperr(mode: str, value: float):
    Sperr = wasm_codec_class("numcodecs_wasm_sperr", "Sperr")
    return Sperr(mode=mode, **{mode: float(value)})


def _timed(fn, repeats: int):
    """(result, median seconds) of ``repeats`` calls."""
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return out, statistics.median(times)


def measure(codec, chunks, lat, repeats: int) -> dict:
    """Encode each chunk once (stage times collected), decode it ``repeats`` times; totals."""
    enc = dec = size = 0.0
    stages = dict.fromkeys(STAGES, 0.0)
    modes, decoded = [], []
    for x in chunks:
        with stage_times() as seconds:
            start = time.perf_counter()
            data = codec.encode(x)
            enc += time.perf_counter() - start
        for k, v in seconds.items():
            stages[k] += v
        y, t = _timed(lambda: codec.decode(data), repeats)
        dec += t
        size += len(data)
        modes.append(data)
        decoded.append(np.asarray(y).reshape(x.shape))
    stages["other"] = enc - sum(stages[k] for k in STAGES)
    return _row(chunks, decoded, lat, size, enc, dec, stages=stages, modes=modes)


def measure_sperr(mode: str, value: float, chunks, lat, repeats: int) -> dict:
    enc = dec = size = 0.0
    decoded = []
    for x in chunks:
        codec = _sperr(mode, value)
        data, t = _timed(lambda: np.asarray(codec.encode(x)).tobytes(), repeats)
        enc += t
        out = np.empty_like(x)
        _, t = _timed(lambda: codec.decode(np.frombuffer(data, np.uint8), out=out), repeats)
        dec += t
        size += len(data)
        decoded.append(out.copy())
    return _row(chunks, decoded, lat, size, enc, dec)


def _row(chunks, decoded, lat, size, enc, dec, stages=None, modes=None) -> dict:
    x, y = np.stack(chunks), np.stack(decoded)
    n = x.size
    return {"ratio": x.nbytes / size, "rmse": rmse_coslat(x, y, lat), "max": max_abs_error(x, y),
            "encode_s": enc, "decode_s": dec, "encode_vps": n / enc, "decode_vps": n / dec,
            "stages": stages, "modes": None if modes is None else mode_counts(modes)}


def run(name: str, field: Field, setting: str, options: dict, chunk: int, count: int, repeats: int, model: str):
    x = np.ascontiguousarray(field.values, dtype=np.float32)
    chunks = [x[i:i + chunk] for i in range(0, min(len(x), chunk * count), chunk) if i + chunk <= len(x)]
    opts = {**options, **setting_options(setting)}
    codec = COINppCodec(model, lat=field.lat, lon=field.lon, **opts)
    codec.encode(chunks[0][:1])  # warm-up: the model, torch's first calls, SPERR's module
    ours = measure(codec, chunks, field.lat, repeats)
    if "max_abs_error" in opts:
        peer = ("pwe", float(opts["max_abs_error"]))
    elif "target_ratio" in opts:
        peer = ("bpp", 32.0 / float(opts["target_ratio"]))
    else:
        peer = ("bpp", 32.0 / ours["ratio"])
    theirs = measure_sperr(*peer, chunks, field.lat, max(repeats, 3))
    return ours, theirs, peer


def run_archive(field: Field, options: dict, chunk: int, count: int, model: str) -> dict:
    """``compress_dataset`` (what ``inrcodec compress`` runs, default threaded scheduler) of
    ``count`` chunks written to netCDF (the set's items repeated in order when it has fewer),
    against ``COINppCodec.encode`` of the same chunks one by one in this process: the archive
    path's seconds per value over the chunk path's, start-up (model, store, scheduler) included."""
    import shutil
    import tempfile

    import xarray as xr

    from inrcodec.archive import compress_dataset

    x = np.ascontiguousarray(np.resize(field.values, (chunk * count, *field.values.shape[1:])), dtype=np.float32)
    codec = COINppCodec(model, lat=field.lat, lon=field.lon, **options)
    codec.encode(x[:1])
    start = time.perf_counter()
    for i in range(0, len(x), chunk):
        codec.encode(x[i:i + chunk])
    direct = time.perf_counter() - start
    tmp = tempfile.mkdtemp(prefix="inrcodec-speed-")
    try:
        src = f"{tmp}/in.nc"
        xr.Dataset({"t": (("time", "lat", "lon"), x, {"units": "K"})},
                   coords={"time": np.arange(len(x)), "lat": field.lat, "lon": field.lon}).to_netcdf(src)
        start = time.perf_counter()
        compress_dataset(src, f"{tmp}/out.zarr", model, variables=["t"], chunks={"time": chunk}, progress=False,
                         evaluate=False, **options)
        archive = time.perf_counter() - start
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"values": x.size, "chunk_s": direct, "archive_s": archive}


def table_rows(name, field, setting, ours, theirs, peer, chunk, nchunks) -> list[str]:
    shape = f"{nchunks} x {chunk} x {field.values.shape[1]} x {field.values.shape[2]}"
    st = ours["stages"]
    stages = ", ".join(f"{k} {st[k]:.2f}" for k in (*STAGES, "other") if st[k] >= 0.005)
    modes = ", ".join(f"{m} {k}" for m, k in sorted(ours["modes"].items()))
    return [
        f"| {name} | {shape} | {setting} | {ours['ratio']:.1f}x | {ours['rmse']:.3g} | {ours['max']:.3g} | "
        f"{ours['encode_vps'] / 1e3:,.0f} k | **{ours['encode_s'] / theirs['encode_s']:,.0f}x** | "
        f"{ours['decode_vps'] / 1e6:.2f} M | **{ours['decode_s'] / theirs['decode_s']:.0f}x** | {modes} | {stages} |",
        f"| {name} | {shape} | SPERR {peer[0]} {peer[1]:.3g} | {theirs['ratio']:.1f}x | {theirs['rmse']:.3g} | "
        f"{theirs['max']:.3g} | {theirs['encode_vps'] / 1e6:.1f} M | 1x | {theirs['decode_vps'] / 1e6:.1f} M "
        "| 1x | | |",
    ]


HEADER = ["| set | chunks | setting | ratio | cos RMSE | max err | encode values/s | encode / SPERR | "
          "decode values/s | decode / SPERR | modes | encode s per stage |", "|---" * 12 + "|"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", nargs="+", default=list(DEFAULT_SETS), choices=SETS)
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), metavar="KEY=VALUE",
                    help="bits=B, target_ratio=R or max_abs_error=E (one row each)")
    ap.add_argument("--split", default="test", choices=sorted(SPLITS))
    ap.add_argument("--chunk", type=int, default=8, help="items per chunk")
    ap.add_argument("--chunks", type=int, default=1, help="chunks per set (each coded on its own)")
    ap.add_argument("--repeats", type=int, default=3, help="decodes per chunk (the median counts)")
    ap.add_argument("--model", default="t2m-global-2")
    ap.add_argument("--codec-option", action="append", default=[], metavar="KEY=VALUE",
                    help="a further COINppCodec option for every row (repeatable), e.g. effort=full")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--archive", type=int, default=0, metavar="N",
                    help="also time compress_dataset (inrcodec compress) of N chunks of each set against "
                         "encoding them one by one, for each setting")
    _smoke.add_flag(ap)
    args = ap.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.smoke:
        args.model, args.sets, args.settings = _smoke.model_dir(), ["era5_t"], ["bits=2"]
        args.chunk, args.repeats = 2, 1
        args.archive = min(args.archive, 1)
    options = codec_options(args.codec_option)
    print(f"Command: `python {' '.join(map(shlex.quote, sys.argv))}`\n")
    print("\n".join(HEADER), flush=True)
    for name in args.sets:
        field = data_set(name, args.split)
        if args.smoke:
            field = Field(field.values[:2], field.lat, field.lon, field.name)
        for setting in args.settings:
            ours, theirs, peer = run(name, field, setting, options, args.chunk, args.chunks, args.repeats, args.model)
            nchunks = sum(ours["modes"].values())
            print("\n".join(table_rows(name, field, setting, ours, theirs, peer, args.chunk, nchunks)), flush=True)
    if args.archive:
        print("\n| set | setting | chunks | values | chunk by chunk s | inrcodec compress s | archive / chunk |\n"
              + "|---" * 7 + "|")
        for name in args.sets:
            field = data_set(name, args.split)
            for setting in args.settings:
                r = run_archive(field, {**options, **setting_options(setting)}, args.chunk, args.archive, args.model)
                print(f"| {name} | {setting} | {args.archive} | {r['values']:,} | {r['chunk_s']:.2f} | "
                      f"{r['archive_s']:.2f} | {r['archive_s'] / r['chunk_s']:.2f}x |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
