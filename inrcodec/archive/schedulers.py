"""Where the region writes run: dask's local threads/processes or a ``dask.distributed`` cluster,
and the set-up of worker processes (torch threads, HDF5 filter, models, malloc)."""

from __future__ import annotations

import os
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, Callable, Iterable

from inrcodec.models import modelstore

__all__ = ["WORKER_MALLOC_ENV", "LOCAL_SCHEDULERS", "make_client", "ship_models", "setup_process",
           "run_local", "run_distributed"]

LOCAL_SCHEDULERS = ("threads", "processes", "synchronous", "sync", "single-threaded")

#: malloc settings for the worker processes inrcodec starts. distributed sets
#: MALLOC_TRIM_THRESHOLD_=65536 in its nannies, which makes glibc return and re-fault the large
#: torch buffers of every encode (measured 2x slower per chunk, docs/archive.md); a fixed mmap
#: threshold keeps them in the heap, and two arenas per process bound the memory.
WORKER_MALLOC_ENV = {"MALLOC_TRIM_THRESHOLD_": str(64 << 20), "MALLOC_MMAP_THRESHOLD_": str(64 << 20),
                     "MALLOC_ARENA_MAX": "2"}


def _to_device(model, device: str | None) -> None:
    if device in (None, "cpu"):
        return
    import torch

    dev = torch.device(device)
    if next(model.network.parameters()).device != dev:
        model.network.to(dev)


def _resolve_device(device: str | None) -> str | None:
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else None
    return device if device not in (None, "cpu") else None


def setup_process(torch_threads: int | None, models: Iterable[bytes] = (), device: str | None = None) -> None:
    """Run once in every worker process: torch threads, HDF5 filter, models into the model store
    (moved to ``device``: ``"cuda"``, or ``"auto"`` for CUDA when torch sees a GPU)."""
    import torch

    if torch_threads:
        torch.set_num_threads(max(1, int(torch_threads)))
    try:
        import inrcodec.hdf5  # noqa: F401  (importing registers the HDF5 filter)
    except Exception:  # pragma: no cover - h5py missing or broken: zarr work still runs
        pass
    device = _resolve_device(device)
    for data in models:
        _to_device(modelstore.load(data).model, device)


class _WorkerSetup:
    """A dask.distributed worker plugin (duck-typed: ``setup(worker)``) running :func:`setup_process`."""

    name = "inrcodec-setup"

    def __init__(self, threads_by_host: dict[str, int], models: list[bytes], device: str | None):
        self.threads_by_host, self.models, self.device = threads_by_host, models, device

    def setup(self, worker) -> None:
        host = worker.address.rsplit(":", 1)[0]
        setup_process(self.threads_by_host.get(host) or (os.cpu_count() or 1), self.models, self.device)

    def teardown(self, worker) -> None:  # pragma: no cover
        pass


def ship_models(client, models: Iterable[Any], device: str | None = None) -> list[str]:
    """Ship models (anything :func:`inrcodec.models.modelstore.load` takes, or codecs) to every worker of a
    ``dask.distributed`` client once, and to workers that join later.

    Each worker also gets ``cores // workers`` torch threads on its host and the HDF5 filter.
    Codecs of these models then pickle as their hash only (:func:`inrcodec.models.modelstore.mark_shipped`);
    returns the hashes: :func:`inrcodec.models.modelstore.unmark_shipped` them when the cluster goes.
    """
    from distributed.diagnostics.plugin import WorkerPlugin

    stored = [modelstore.load(m) for m in models]
    try:
        info = client.scheduler_info(n_workers=-1)
    except TypeError:  # older distributed: every worker is listed anyway
        info = client.scheduler_info()
    per_host: dict[str, int] = {}
    for addr in info.get("workers", {}):
        host = addr.rsplit(":", 1)[0]
        per_host[host] = per_host.get(host, 0) + 1
    threads = {h: max(1, (os.cpu_count() or 1) // n) for h, n in per_host.items()}
    plugin = type("InrcodecWorkerSetup", (_WorkerSetup, WorkerPlugin), {})(
        threads, [s.data for s in stored], device)
    client.register_plugin(plugin, name="inrcodec-setup")
    for s in stored:
        modelstore.mark_shipped(s.sha256)
    return [s.sha256 for s in stored]


def make_client(scheduler: str | None, workers: int | None):
    """(client, cluster): a client of the scheduler at the address ``scheduler``, or of a new
    ``LocalCluster`` of ``workers`` single-threaded processes (``WORKER_MALLOC_ENV`` set); (None,
    None) for dask's local schedulers. The client is never made dask's default."""
    if scheduler not in (None, *LOCAL_SCHEDULERS):
        from distributed import Client

        return Client(scheduler, set_as_default=False), None
    if workers and scheduler in (None, "threads"):
        import dask
        from distributed import Client, LocalCluster

        env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {})
        env.update(WORKER_MALLOC_ENV)
        with dask.config.set({"distributed.nanny.pre-spawn-environ": env}):
            cluster = LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=40)
        return Client(cluster, set_as_default=False), cluster
    return None, None


class _ProcessInit:
    def __init__(self, threads, device):
        self.threads, self.device = threads, device

    def __call__(self):
        setup_process(self.threads, [], self.device)


def _local_pool(scheduler: str, workers: int | None, device: str | None) -> Executor | None:
    """Our own executor for dask's local scheduler, so a stopped run can wait for its running tasks."""
    if scheduler == "processes":
        from dask.multiprocessing import get_context

        n = int(workers or os.cpu_count() or 1)
        return ProcessPoolExecutor(n, mp_context=get_context(),
                                   initializer=_ProcessInit(max(1, (os.cpu_count() or 1) // n), device))
    if scheduler == "threads":
        return ThreadPoolExecutor(int(workers or os.cpu_count() or 1))
    return None


def run_local(delayeds, pending: list[int], finished: Callable[[int], None], scheduler: str,
              workers: int | None, models: list, device: str | None) -> None:
    """Compute the region writes ``delayeds`` (region indices ``pending``) with dask's local
    scheduler, calling ``finished(i)`` in this thread as each completes. If that (or a task)
    raises, the running tasks finish before the exception propagates and nothing else starts."""
    import dask
    from dask.callbacks import Callback

    keys = {d.key: i for d, i in zip(delayeds, pending)}

    class Recorder(Callback):
        def _posttask(self, key, result, dsk, state, id):
            if key in keys:
                finished(keys[key])

    if scheduler != "processes":
        for model in models:  # the run's models (CoinModels), each once
            _to_device(model, _resolve_device(device))
    pool = _local_pool(scheduler, workers, device)
    kwargs: dict[str, Any] = {"scheduler": scheduler} if pool is None else {"scheduler": scheduler, "pool": pool}
    try:
        with dask.config.set(callbacks=set()), Recorder():
            dask.compute(*delayeds, **kwargs)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def run_distributed(client, delayeds, pending: list[int], finished: Callable[[int], None]) -> None:
    """Compute the region writes on a ``dask.distributed`` cluster, calling ``finished(i)`` in this
    thread as each completes. If that (or a task) raises, regions not yet started are cancelled."""
    from distributed import as_completed

    futures = client.compute(delayeds)
    index = {f.key: i for f, i in zip(futures, pending)}
    try:
        for fut in as_completed(futures, loop=client.loop):
            fut.result()  # raises the task's error
            finished(index[fut.key])
    finally:
        client.cancel([f for f in futures if not f.done()])
