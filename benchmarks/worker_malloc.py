"""Per-chunk encode time in a dask.distributed worker process: distributed's default malloc
environment vs ``inrcodec.archive.WORKER_MALLOC_ENV`` (issue 13 case 10), and in this process.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/worker_malloc.py

A model of width 128 / depth 4 / latent 64 on (2, 96, 192) chunks, 3 inner steps; median of 5 encodes
after one warm-up, one torch thread everywhere.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def encode_times(n: int = 5, tune: bool = False, smoke: bool = False) -> dict:
    import resource

    import numpy as np
    import torch

    from conftest import build_spherical_model
    from inrcodec.codec import COINppCodec

    if tune:
        from inrcodec.cli import tune_malloc

        tune_malloc()
    torch.set_num_threads(1)
    size = dict(width=8, depth=1, latent_dim=4) if smoke else dict(width=128, depth=4, latent_dim=64)
    model = build_spherical_model(**size)
    codec = COINppCodec(model, inner_steps=1 if smoke else 3, assume_global_grid=True)
    rng = np.random.default_rng(0)
    x = (250 + 20 * rng.standard_normal((2, 16, 32) if smoke else (2, 96, 192))).astype("f4")
    codec.encode(x)
    ts = []
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n):
        t = time.perf_counter()
        codec.encode(x)
        ts.append(time.perf_counter() - t)
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / n
    return {"median_s": round(statistics.median(ts), 3), "minor_faults_per_encode": int(faults)}


def main(argv=None) -> None:
    import argparse

    import _smoke
    import dask
    from distributed import Client, LocalCluster

    from inrcodec.archive import WORKER_MALLOC_ENV

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _smoke.add_flag(ap)
    args = ap.parse_args(argv)
    n = 1 if args.smoke else 5
    print("this process, glibc defaults:", encode_times(n, smoke=args.smoke))
    print("this process after inrcodec.cli.tune_malloc() (what `inrcodec compress` does):",
          encode_times(n, tune=True, smoke=args.smoke))
    if args.smoke:  # worker processes take longer to start than the smoke budget
        return
    default_env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {})
    for label, env in (("distributed default", default_env), ("inrcodec WORKER_MALLOC_ENV", {**default_env, **WORKER_MALLOC_ENV})):
        with dask.config.set({"distributed.nanny.pre-spawn-environ": env}):
            with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                              silence_logs=40) as cluster, Client(cluster) as client:
                print(f"worker, {label} {env}:", client.submit(encode_times, pure=False).result())


if __name__ == "__main__":
    main()
