"""Archive compression throughput (MB/s of input) for 1, 2 and N workers on this machine.

    python benchmarks/archive_throughput.py --steps 48 --workers 1 2 --inner-steps 10

Input: the embedded real temperature sample (12 x 96 x 192 float32) tiled to --steps time steps,
written to netCDF. Model: an untrained, calibrated spherical SIREN (width 32, depth 3, latent 16;
random weights: throughput does not depend on quality). Chunks: time=4. Each worker count runs a
dask.distributed LocalCluster of that many single-threaded processes (torch threads = cores //
workers); "threads" is the default threaded scheduler in one process. Prints a markdown table;
docs/benchmarks.md ("## Archive throughput") records it with the command.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
import warnings

import _smoke
import numpy as np
import torch
import xarray as xr

from inrcodec.archive import compress_dataset
from inrcodec.datasets import embedded_sample
from inrcodec.models.model import CoinModel
from inrcodec.models.network import ModulatedSiren
from inrcodec.training.calibration import calibrate


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=48)
    ap.add_argument("--chunk", type=int, default=4)
    ap.add_argument("--inner-steps", type=int, default=10)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, os.cpu_count() or 1])
    _smoke.add_flag(ap)
    args = ap.parse_args(argv)
    if args.smoke:  # the threaded scheduler only (a LocalCluster takes longer to start than this)
        args.steps, args.chunk, args.inner_steps, args.workers = 2, 2, 1, []
    warnings.simplefilter("ignore")
    tmp = tempfile.mkdtemp()
    tas = embedded_sample("tas")
    reps = -(-args.steps // tas.sizes["time"])
    data = np.concatenate([tas.values] * reps)[: args.steps]
    ds = xr.Dataset({"tas": (("time", "lat", "lon"), data, tas.attrs)},
                    coords={"time": np.arange(args.steps), "lat": tas.lat, "lon": tas.lon})
    src = os.path.join(tmp, "in.nc")
    ds.to_netcdf(src)
    torch.manual_seed(0)
    model = CoinModel(ModulatedSiren(3, 1, width=32, depth=3, latent_dim=16), "spherical", offset=250.0, scale=40.0)
    calibrate(model, model.encode(data[:8], model.make_grid(data.shape[1:], lat=tas.lat.values, lon=tas.lon.values),
                                 steps=1 if args.smoke else 2))
    mb = data.nbytes / 1e6
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}; "
          f"input {args.steps} x 96 x 192 float32 = {mb:.1f} MB, chunks time={args.chunk}, inner_steps={args.inner_steps}\n")
    print("| scheduler | workers | seconds | MB/s of input |")
    print("|---|---|---|---|")
    runs = [("threads", None)] + [("LocalCluster", n) for n in dict.fromkeys(args.workers)]
    for name, n in runs:
        out = os.path.join(tmp, f"out_{name}_{n}.zarr")
        t = time.perf_counter()
        compress_dataset(src, out, model, variables=["tas"], chunks={"time": args.chunk}, inner_steps=args.inner_steps,
                         workers=n, overwrite=True, progress=False, evaluate=False)
        dt = time.perf_counter() - t
        print(f"| {name} | {n or 1} | {dt:.1f} | {mb / dt:.2f} |", flush=True)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
