"""Archive-scale compression: a netCDF/HDF5/Zarr dataset -> a Zarr store with COIN++ variables.

Three functions, also behind ``inrcodec compress|decompress|info``:

* :func:`compress_dataset` reads the input lazily (xarray + Dask), encodes the chosen float
  variables with :class:`~inrcodec.codec.COINppCodec` (Zarr format 3, ``COINppZarr3Codec``
  serializer), copies every other variable, all coordinates and all attributes losslessly
  (zarr's default zstd), and reports the achieved ratio and error per variable.
* :func:`decompress_store` writes a store back to a plain netCDF file.
* :func:`store_info` lists the variables of a store with codec, pinned model, bits and ratio.

Example (the model is any trained model file/directory, e.g. from ``inrcodec train-recipe``)::

    >>> from inrcodec.archive import compress_dataset, store_info, decompress_store  # doctest: +SKIP
    >>> report = compress_dataset("era5.nc", "era5.zarr", model="inrcodec-era5",
    ...                           variables=["t2m"], bits=6, chunks={"time": 24})  # doctest: +SKIP
    >>> report["variables"]["t2m"]["ratio"], report["variables"]["t2m"]["rmse"]  # doctest: +SKIP
    >>> store_info("era5.zarr")["variables"]["t2m"]["model_sha256"]  # doctest: +SKIP
    >>> decompress_store("era5.zarr", "era5_decoded.nc")  # doctest: +SKIP

How the write works (and why it can resume)
-------------------------------------------
1. Variables without the region dimension (coordinates, static fields) are loaded and the
   store's metadata plus these variables are written with ``to_zarr(mode="w", compute=False)``.
2. The time-dependent variables are written region by region along the region dimension
   (``time`` unless ``chunks`` names another), one region per Zarr chunk, so every write is
   chunk-aligned and no chunk is read back and re-encoded.
3. Each finished region is recorded in ``<store>/.inrcodec-progress.json`` together with a
   fingerprint of the request (input, variables, model hash, bits, chunks). Running the same
   request again skips the recorded regions; encoding is deterministic, so a resumed run
   gives the same chunk bytes as an uninterrupted one (checked by ``tests/test_archive.py``).
   The file is removed when the run completes (zarr warns about unknown keys in a store).

Schedulers: ``"threads"`` (default, one process: torch already uses every core inside one
encode, and encodes of one model run one at a time), ``"processes"`` (dask's local process
pool; ``workers`` processes, each with ``cores // workers`` torch threads), ``workers=N`` with
a ``dask.distributed`` ``LocalCluster`` of N single-threaded processes, or the address of a
running ``dask.distributed`` scheduler. In worker processes torch threads are set to
``cores_on_host // workers_on_host`` and the HDF5 filter is registered.

Pickling: ``COINppCodec`` holds a lock and a torch model, so this module registers a
``copyreg`` reducer: a codec pickles as (model hash, model bytes, settings) and is rebuilt
through :mod:`inrcodec._modelcache`, so every process parses a model once. On a distributed
cluster the model is shipped once per worker (a worker plugin preloads it into the cache)
and tasks then carry the hash only (a few hundred bytes instead of the model).
"""

from __future__ import annotations

import copyreg
import json
import os
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from inrcodec import _modelcache
from inrcodec.codec import COINppCodec
from inrcodec.zarr3 import INCOMPLETE_KEY as _INCOMPLETE_KEY
from inrcodec.errors import IncompleteStoreError, IncompleteStoreWarning, StoreMismatchError

__all__ = ["compress_dataset", "decompress_store", "store_info", "PROGRESS_FILE", "StoreMismatchError",
           "IncompleteStoreError", "check_complete", "open_store", "WORKER_MALLOC_ENV"]

PROGRESS_FILE = ".inrcodec-progress.json"
PROGRESS_VERSION = 1

# -------------------------------------------------------------------------------- pickling
# Models whose bytes were shipped to every worker of the current cluster: codecs of these
# pickle as (hash, None, settings). Set only while compress_dataset drives a distributed run.
_SHIPPED: set[str] = set()
_DEVICE: str | None = None  # "cuda" in a worker started with device="cuda"




def _reduce_codec(codec: COINppCodec):
    settings = codec.settings()
    sha = codec.model_sha256
    data = None if sha in _SHIPPED else codec.model_bytes
    return _rebuild_codec, (sha, data, settings)


def _rebuild_codec(sha: str, data: bytes | None, settings: dict) -> COINppCodec:
    hit = _modelcache.cached_model(sha)
    model = hit[0] if hit else None
    if model is None:
        if data is None:
            raise RuntimeError(
                f"COIN++ model sha256 {sha} was not shipped to this process; the worker joined "
                "without the inrcodec worker plugin (register it with "
                "inrcodec.archive.ship_models(client, [model]))"
            )
        model = _modelcache.model_from_bytes(data, sha)[0]
    _to_device(model)
    return COINppCodec(model, model_sha256=sha, **settings)


copyreg.pickle(COINppCodec, _reduce_codec)


def _to_device(model) -> None:
    if _DEVICE is None:
        return
    import torch

    dev = torch.device(_DEVICE)
    if next(model.network.parameters()).device != dev:
        model.network.to(dev)


def _setup_process(torch_threads: int | None, models: Iterable[bytes] = (), device: str | None = None) -> None:
    """Run once in every worker process: torch threads, HDF5 filter, models into the cache."""
    global _DEVICE
    import torch

    if torch_threads:
        torch.set_num_threads(max(1, int(torch_threads)))
    try:
        from inrcodec import hdf5

        hdf5.register()
    except Exception:  # pragma: no cover - h5py missing or broken: zarr work still runs
        pass
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else None
    _DEVICE = device if device not in (None, "cpu") else None
    for data in models:
        model = _modelcache.model_from_bytes(data)[0]
        _to_device(model)


class _WorkerSetup:
    """A dask.distributed worker plugin (duck-typed: ``setup(worker)``) running :func:`_setup_process`."""

    name = "inrcodec-setup"

    def __init__(self, threads_by_host: dict[str, int], models: list[bytes], device: str | None):
        self.threads_by_host = threads_by_host
        self.models = models
        self.device = device

    def setup(self, worker) -> None:
        host = worker.address.rsplit(":", 1)[0]
        threads = self.threads_by_host.get(host) or max(1, (os.cpu_count() or 1) // 1)
        _setup_process(threads, self.models, self.device)

    def teardown(self, worker) -> None:  # pragma: no cover
        pass


def ship_models(client, models: Iterable[Any], device: str | None = None) -> None:
    """Ship models to every worker of a ``dask.distributed`` client once (and to later workers).

    Sets each worker's torch threads to ``cores // workers`` on its host and registers the
    HDF5 filter. After this, codecs of these models pickle as their hash only.
    """
    from distributed.diagnostics.plugin import WorkerPlugin

    datas = []
    for m in models:
        if isinstance(m, COINppCodec):
            datas.append(m.model_bytes)
        else:
            datas.append(_modelcache.register_model(m)[1] if hasattr(m, "to_bytes") else bytes(m))
    info = client.scheduler_info(n_workers=-1) if _accepts_n_workers(client) else client.scheduler_info()
    per_host: dict[str, int] = {}
    for addr in info.get("workers", {}):
        host = addr.rsplit(":", 1)[0]
        per_host[host] = per_host.get(host, 0) + 1
    cores = os.cpu_count() or 1
    threads = {h: max(1, cores // n) for h, n in per_host.items()}
    plugin = type("InrcodecWorkerSetup", (_WorkerSetup, WorkerPlugin), {})(threads, datas, device)
    client.register_plugin(plugin, name="inrcodec-setup")
    for d in datas:
        _SHIPPED.add(_modelcache.sha256_hex(d))


def _accepts_n_workers(client) -> bool:
    import inspect

    try:
        return "n_workers" in inspect.signature(client.scheduler_info).parameters
    except (TypeError, ValueError):  # pragma: no cover
        return False


# -------------------------------------------------------------------------------- helpers
def _open_input(path, engine: str | None = None):
    import xarray as xr

    p = str(path)
    if engine is None and (p.rstrip("/").endswith(".zarr") or Path(p, "zarr.json").exists()
                           or Path(p, ".zgroup").exists()):
        engine = "zarr"
    if engine == "zarr":
        return xr.open_zarr(p, chunks={}, decode_timedelta=False)
    return xr.open_dataset(p, engine=engine, chunks={}, decode_timedelta=False)


def _load_model(model):
    if isinstance(model, COINppCodec):
        return model.model
    if isinstance(model, (str, os.PathLike)):
        return _modelcache.model_from_path(model)[0]
    if isinstance(model, (bytes, bytearray, memoryview)):
        return _modelcache.model_from_bytes(bytes(model))[0]
    return _modelcache.register_model(model)[0]


_BOUNDS_DIMS = ("bnds", "bounds", "nv", "nbnd", "nb2", "vertices")


def encodable_variables(ds, model) -> list[str]:
    """The data variables ``model`` can encode: float, with the model's spatial dims trailing.

    Spherical models: the last two dims are latitude, longitude (names starting with ``lat``/``lon``
    or ``y``/``x`` with latitude-like values). Cartesian models: at least ``spatial_ndim`` dims,
    none of them a bounds dimension.
    """
    out = []
    nd = model.spatial_ndim
    for name, da in ds.data_vars.items():
        if da.dtype.kind != "f" or da.ndim < nd:
            continue
        dims = [str(d).lower() for d in da.dims]
        if any(d in _BOUNDS_DIMS for d in dims):
            continue
        if model.grid_kind == "spherical":
            dlat, dlon = dims[-2], dims[-1]
            if not (dlat.startswith("lat") and dlon.startswith("lon")):
                continue
        out.append(str(name))
    return out


def _region_dim(ds, variables: list[str], chunks: dict[str, int] | None, nd: int) -> str | None:
    if chunks:
        return next(iter(chunks))
    for v in variables:
        lead = ds[v].dims[: ds[v].ndim - nd]
        if "time" in lead:
            return "time"
    for v in variables:
        lead = ds[v].dims[: ds[v].ndim - nd]
        if lead:
            return str(lead[0])
    return None


def _parse_chunks(chunks) -> dict[str, int] | None:
    if chunks is None or chunks == "":
        return None
    if isinstance(chunks, dict):
        return {str(k): int(v) for k, v in chunks.items()}
    out = {}
    for part in str(chunks).split(","):
        k, _, v = part.partition("=")
        if not v:
            raise ValueError(f"chunks must look like 'time=24[,level=1]', got {chunks!r}")
        out[k.strip()] = int(v)
    return out


def _file_fingerprint(path) -> dict:
    p = Path(path)
    if p.is_file():
        st = p.stat()
        return {"path": str(p.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    return {"path": str(p.resolve())}


class _Progress:
    """``<store>/.inrcodec-progress.json``: the request's fingerprint and the finished regions."""

    def __init__(self, store: Path, fingerprint: dict, regions: list[list[int]], dim: str | None):
        self.path = store / PROGRESS_FILE
        self.fingerprint = fingerprint
        self.regions = regions
        self.dim = dim
        self.done: set[int] = set()
        self.complete = False
        self._lock = threading.Lock()

    @classmethod
    def read(cls, store: Path) -> dict | None:
        try:
            return json.loads((store / PROGRESS_FILE).read_text())
        except FileNotFoundError:
            return None
        except ValueError:
            return {}

    def write(self) -> None:
        with self._lock:
            doc = {"version": PROGRESS_VERSION, "fingerprint": self.fingerprint, "region_dim": self.dim,
                   "regions": self.regions, "done": sorted(self.done), "complete": self.complete}
            tmp = self.path.with_name(self.path.name + f".tmp{os.getpid()}.{threading.get_ident()}")
            tmp.write_text(json.dumps(doc, indent=1))
            os.replace(tmp, self.path)

    def mark(self, i: int) -> None:
        with self._lock:
            self.done.add(int(i))
        self.write()


def _clean_encoding(enc: dict) -> dict:
    """Keep the CF keys of a variable's encoding that a Zarr store understands."""
    keep = ("dtype", "_FillValue", "scale_factor", "add_offset", "units", "calendar")
    out = {k: v for k, v in enc.items() if k in keep}
    return out


# -------------------------------------------------------------------------------- compress
def compress_dataset(
    input: str | os.PathLike,
    output: str | os.PathLike,
    model: Any,
    variables: Iterable[str] | str | None = None,
    bits: int = 6,
    inner_steps: int | None = None,
    chunks: dict[str, int] | str | None = None,
    scheduler: str | None = "threads",
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    device: str | None = None,
    engine: str | None = None,
    evaluate: bool = True,
    _stop_after: int | None = None,
) -> dict[str, Any]:
    """Compress ``input`` (netCDF/HDF5/Zarr) into the Zarr store ``output``; returns a report.

    Parameters
    ----------
    input : path of a netCDF/HDF5 file (any xarray engine; ``engine=`` to force one) or a Zarr store.
    output : the Zarr (format 3) store directory to write.
    model : a trained model (``CoinModel``, model file, ``train-recipe --out`` directory or bytes).
    variables : names (list or comma-separated) to encode with COIN++; default: every variable
        the model can encode (:func:`encodable_variables`). All others are copied losslessly.
    bits, inner_steps : codec settings (``inner_steps`` default: the model's own ``encode_steps``).
    chunks : ``{"time": 24}`` or ``"time=24"``: the chunk size along the region dimension (the
        first key; default ``time`` with 24 steps). Other dims are not chunked.
    scheduler : ``"threads"`` (default), ``"processes"``, ``"synchronous"`` or the address of a
        ``dask.distributed`` scheduler (``"tcp://host:8786"``).
    workers : with ``"processes"``: the number of processes; with the default scheduler: start a
        ``dask.distributed.LocalCluster`` of ``workers`` single-threaded processes.
    overwrite : replace an existing store (else an unfinished run of the same request resumes,
        and any other existing store is an error).
    progress : show a progress bar (dask's ProgressBar locally, distributed's progress on a cluster).
    device : ``None``/``"cpu"`` (default), ``"cuda"`` or ``"auto"``: where worker processes run the
        model (``auto``: CUDA when torch sees a GPU).
    evaluate : read the store back and report RMSE / max abs error per encoded variable.

    Returns ``{"output", "variables": {name: {"codec", "ratio", "rmse", "max_abs_error", ...}},
    "copied": [...], "input_bytes", "stored_bytes", "ratio", "seconds", "regions", "resumed_regions"}``.
    """
    import dask
    import xarray as xr

    t0 = time.perf_counter()
    final = Path(output)
    _check_output(input, final, overwrite)
    # --overwrite of an existing store: write a temporary sibling and swap it in when complete,
    # so an interrupted run leaves the old store as it was
    replacing = overwrite and final.exists()
    store = _temp_sibling(final) if replacing else final
    m = _load_model(model)
    sha = _modelcache.register_model(m)[2]
    steps = int(inner_steps) if inner_steps is not None else int(getattr(m, "encode_steps", 10) or 10)
    chunks = _parse_chunks(chunks)

    ds = _open_input(input, engine)
    if isinstance(variables, str):
        variables = [v.strip() for v in variables.split(",") if v.strip()]
    variables = list(variables) if variables else encodable_variables(ds, m)
    missing = [v for v in variables if v not in ds.variables]
    if missing:
        raise ValueError(f"variables {missing} are not in {input}; it has {sorted(map(str, ds.data_vars))}")
    if not variables:
        raise ValueError(f"no variable of {input} can be encoded by this {m.grid_kind} model; pass variables=")
    not_float = [v for v in variables if ds[v].dtype.kind != "f"]
    if not_float:
        raise ValueError(f"variables {not_float} are not float ({', '.join(str(ds[v].dtype) for v in not_float)}); "
                         "COIN++ encodes float variables only: leave them out of --variables (they are copied losslessly)")
    nd = m.spatial_ndim
    if chunks and next(iter(chunks)) not in ds.dims:
        raise ValueError(f"--chunks names dimension {next(iter(chunks))!r}, which {input} does not have "
                         f"(dimensions: {', '.join(map(str, ds.dims))})")
    dim = _region_dim(ds, variables, chunks, nd)
    if chunks is None and dim is not None:
        chunks = {dim: 24}
    size = chunks.get(dim) if chunks else None
    if dim is not None and (size is None or size < 1):
        raise ValueError(f"chunk size along {dim!r} must be >= 1")
    n_along = int(ds.sizes[dim]) if dim is not None else 0
    regions = [[a, min(a + size, n_along)] for a in range(0, n_along, size)] if dim else []

    # --- lay out: which variables are deferred (region writes) and which are written at init
    names = list(ds.variables)
    deferred = [str(n) for n in names if dim is not None and dim in ds[n].dims and n not in ds.indexes]
    chunk_map = {d: -1 for d in ds.dims}
    if dim is not None:
        chunk_map[dim] = size
    ds = ds.chunk(chunk_map)
    for n in names:
        if str(n) not in deferred and n not in ds.indexes:
            ds[n] = ds[n].load() if n in ds.data_vars else ds[n]
    ds = ds.assign_coords({c: ds[c].load() for c in ds.coords if str(c) not in deferred})

    encoding: dict[str, dict] = {}
    codecs: dict[str, COINppCodec] = {}
    for n in ds.variables:
        var = ds[n]
        if str(n) in variables:
            if var.dtype.kind != "f":
                raise TypeError(f"{n!r} is {var.dtype}; COIN++ encodes float variables only")
            data = var.astype(var.dtype if var.dtype in (np.float32, np.float64) else np.float32)
            enc = COINppCodec.for_dataarray(
                data, model=m, bits=bits, inner_steps=steps, zarr_format=3,
                chunks={d: (size if d == dim else -1) for d in var.dims},
            )
            enc["_FillValue"] = np.nan  # NaN stays NaN: the codec masks it (never a numeric fill)
            enc["dtype"] = data.dtype
            codecs[str(n)] = enc["serializer"].codec
            encoding[str(n)] = enc
        else:
            enc = _clean_encoding(var.encoding)
            enc["chunks"] = tuple(size if d == dim else int(s) for d, s in zip(var.dims, var.shape)) or None
            if enc["chunks"] is None:
                enc.pop("chunks")
            encoding[str(n)] = enc
    for n in list(ds.variables):
        ds[n].encoding = {}

    fingerprint = {
        "input": _file_fingerprint(input), "variables": sorted(variables), "model_sha256": sha,
        "bits": int(bits), "inner_steps": steps, "region_dim": dim, "chunk": size,
    }
    prog = _Progress(store, fingerprint, regions, dim)
    prev = _Progress.read(store) if store.exists() else None
    resumed = 0
    if store.exists() and not overwrite:
        if prev is None or prev.get("fingerprint") != fingerprint:
            why = (f"has no {PROGRESS_FILE} (it is complete, or was not written by inrcodec)"
                   if prev is None else "is an unfinished run of another request (input, variables, "
                   "model, bits or chunks differ)")
            raise StoreMismatchError(f"{store} exists and {why}; pass overwrite=True (--overwrite) to replace it")
        prog.done = {int(i) for i in prev.get("done", [])}
        resumed = len(prog.done)
    if not (store.exists() and not overwrite):
        if store.exists():  # a stale temporary sibling of ours (checked to be a Zarr store)
            _remove_zarr_store(store)
        ds.to_zarr(store, mode="w", compute=False, encoding=encoding, zarr_format=3, consolidated=True)
        prog.write()
        _mark_incomplete(store, sorted(codecs), True)

    pending = [i for i in range(len(regions)) if i not in prog.done]
    if _stop_after is not None:
        pending = pending[:_stop_after]
    region_ds = xr.Dataset({n: ds[n].variable for n in deferred}) if deferred else None

    def region_delayed(i):
        a, b = regions[i]
        sub = region_ds.isel({dim: slice(a, b)})
        with warnings.catch_warnings():  # this run is what completes the store
            warnings.simplefilter("ignore", IncompleteStoreWarning)
            return sub.to_zarr(store, region={dim: slice(a, b)}, compute=False, zarr_format=3,
                               consolidated=False)

    client, cluster = _make_client(scheduler, workers)
    try:
        if pending and region_ds is not None:
            delayeds = [region_delayed(i) for i in pending]
            if client is not None:
                ship_models(client, [m], device=device)
                try:
                    _run_distributed(client, delayeds, pending, prog, progress)
                finally:
                    _SHIPPED.discard(sha)
            else:
                _run_local(delayeds, pending, prog, progress, scheduler or "threads", workers, m, device)
        if _stop_after is not None and len(prog.done) < len(regions):
            return {"output": str(store), "stopped": True, "done": sorted(prog.done)}
        _mark_incomplete(store, sorted(codecs), False)
        prog.path.unlink(missing_ok=True)  # complete: the store holds nothing but Zarr
        if replacing:
            _swap_into_place(store, final)
            store = final
        report = _report(store, ds, variables, codecs, client, scheduler, workers, evaluate)
    finally:
        if client is not None:  # ours: never left behind as dask's default scheduler
            client.close()
        if cluster is not None:
            cluster.close()
    report.update(seconds=round(time.perf_counter() - t0, 3), regions=len(regions), resumed_regions=resumed,
                  region_dim=dim, chunk=size, output=str(store))
    return report


#: malloc settings for the worker processes inrcodec starts. distributed sets
#: MALLOC_TRIM_THRESHOLD_=65536 in its nannies, which makes glibc return and re-fault the large
#: torch buffers of every encode (measured 2x slower per chunk, docs/archive.md); a fixed mmap
#: threshold keeps them in the heap, and two arenas per process bound the memory.
WORKER_MALLOC_ENV = {"MALLOC_TRIM_THRESHOLD_": str(64 << 20), "MALLOC_MMAP_THRESHOLD_": str(64 << 20),
                     "MALLOC_ARENA_MAX": "2"}


def _make_client(scheduler, workers):
    if scheduler not in (None, "threads", "processes", "synchronous", "sync", "single-threaded"):
        from distributed import Client

        # not the default client: later plain dask work must not go to this cluster
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


# -------------------------------------------------------------------------------- output safety


def _is_zarr_store(path: Path) -> bool:
    return any((path / f).is_file() for f in ("zarr.json", ".zgroup", ".zarray"))


def _check_output(input, output: Path, overwrite: bool) -> None:
    """Refuse outputs that would destroy data: the input itself, a path inside it or around it,
    an existing file, an existing directory that is not a Zarr store."""
    src, dst = Path(input).resolve(), output.resolve()
    if dst == src or src in dst.parents or dst in src.parents:
        rel = "is" if dst == src else ("lies inside" if src in dst.parents else "contains")
        raise ValueError(f"output {output} {rel} the input {input}; write the store somewhere else")
    if output.exists() and not output.is_dir():
        raise ValueError(f"output {output} is an existing file, not a Zarr store; choose another path")
    if output.is_dir() and any(output.iterdir()) and not _is_zarr_store(output):
        raise ValueError(f"output {output} is a non-empty directory that is not a Zarr store; "
                         "refusing to write into it (nothing was deleted)")


def _temp_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.inrcodec-tmp")


def _remove_zarr_store(path: Path) -> None:
    import shutil

    if path.is_dir() and (_is_zarr_store(path) or not any(path.iterdir())):
        shutil.rmtree(path)
    elif path.exists():
        raise ValueError(f"{path} exists and is not a Zarr store; refusing to delete it")


def _swap_into_place(new: Path, final: Path) -> None:
    """Replace the store ``final`` by the complete store ``new`` (its temporary sibling)."""
    old = final.with_name(f".{final.name}.inrcodec-old")
    if old.exists():
        _remove_zarr_store(old)
    os.replace(final, old)
    os.replace(new, final)
    _remove_zarr_store(old)




def _mark_incomplete(store: Path, names: list[str], flag: bool) -> None:
    """Mark (or unmark) the COIN++ arrays of an unfinished store in their codec configuration (array
    and consolidated metadata), so even a plain ``xr.open_zarr`` warns (``IncompleteStoreWarning``)."""
    from inrcodec.codec import CODEC_ID

    def patch(meta: dict) -> None:
        for c in meta.get("codecs", []):
            if c.get("name") == CODEC_ID:
                if flag:
                    c["configuration"][_INCOMPLETE_KEY] = True
                else:
                    c["configuration"].pop(_INCOMPLETE_KEY, None)

    root = json.loads((store / "zarr.json").read_text())
    consolidated = (root.get("consolidated_metadata") or {}).get("metadata", {})
    for name in names:
        path = store / name / "zarr.json"
        doc = json.loads(path.read_text())
        patch(doc)
        path.write_text(json.dumps(doc, indent=2))
        if name in consolidated:
            patch(consolidated[name])
    (store / "zarr.json").write_text(json.dumps(root, indent=2))


def check_complete(store: str | os.PathLike) -> None:
    """Raise :class:`IncompleteStoreError` (saying how to resume) if a compress run of ``store`` did not finish."""
    store = Path(store)
    prog = _Progress.read(store)
    if prog is None:
        return
    done, total = len(prog.get("done", [])), len(prog.get("regions", []))
    fp = prog.get("fingerprint", {})
    cmd = (f"inrcodec compress {fp.get('input', {}).get('path', 'INPUT')} {store} --model MODEL "
           f"(sha256 {str(fp.get('model_sha256', ''))[:12]}) --variables {','.join(fp.get('variables', []))} "
           f"--bits {fp.get('bits')} --inner-steps {fp.get('inner_steps')} --chunks {fp.get('region_dim')}={fp.get('chunk')}")
    raise IncompleteStoreError(f"{store} is incomplete: {done} of {total} regions written, resume with: {cmd}")


def _run_local(delayeds, pending, prog, progress, scheduler, workers, model, device):
    import dask
    from dask.callbacks import Callback

    keys = {d.key: i for d, i in zip(delayeds, pending)}

    class Recorder(Callback):
        def _posttask(self, key, result, dsk, state, id):
            i = keys.get(key)
            if i is not None:
                prog.mark(i)

    kwargs: dict[str, Any] = {"scheduler": scheduler}
    if scheduler == "processes":
        n = int(workers or os.cpu_count() or 1)
        kwargs.update(num_workers=n, initializer=_ProcessInit(max(1, (os.cpu_count() or 1) // n), device))
    elif scheduler == "threads" and workers:
        kwargs["num_workers"] = int(workers)
    if device and scheduler in ("threads", "synchronous", "sync", "single-threaded"):
        _setup_process(None, [], device)
        _to_device(model)
    cbs = [Recorder()]
    if progress:
        from dask.diagnostics import ProgressBar

        cbs.append(ProgressBar(dt=0.5))
    with dask.config.set(callbacks=set()):
        with cbs[0], (cbs[1] if len(cbs) > 1 else _Null()):
            dask.compute(*delayeds, **kwargs)


class _ProcessInit:
    def __init__(self, threads, device):
        self.threads, self.device = threads, device

    def __call__(self):
        _setup_process(self.threads, [], self.device)


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def _run_distributed(client, delayeds, pending, prog, progress):
    from distributed import wait

    futures = client.compute(delayeds)
    for fut, i in zip(futures, pending):
        fut.add_done_callback(lambda f, i=i: prog.mark(i) if f.status == "finished" else None)
    with client.as_current():  # current only here: the client is never left as dask's default
        if progress:
            from distributed import progress as dprogress

            dprogress(futures)
        wait(futures)
    client.gather(futures)  # raises the first error
    # done callbacks run on the client's loop thread: make sure they have all landed
    deadline = time.time() + 10
    while len(prog.done.intersection(pending)) < len(pending) and time.time() < deadline:
        time.sleep(0.01)
    for i in pending:
        prog.done.add(i)
    prog.write()


# -------------------------------------------------------------------------------- report / info
def _stored_bytes(store: Path, name: str) -> tuple[int, int]:
    """(chunk bytes, metadata bytes) of the array ``name`` in a local store."""
    base = store / name
    chunk = meta = 0
    for root, _dirs, files in os.walk(base):
        for f in files:
            s = os.path.getsize(os.path.join(root, f))
            if f in ("zarr.json", ".zarray", ".zattrs"):
                meta += s
            else:
                chunk += s
    return chunk, meta


def _report(store, ds, variables, codecs, client, scheduler, workers, evaluate) -> dict:
    import dask
    import dask.array as dsa
    import xarray as xr

    out = xr.open_zarr(store, chunks={}, consolidated=None, decode_timedelta=False)
    rep: dict[str, Any] = {"variables": {}, "copied": sorted(str(n) for n in ds.variables if str(n) not in variables)}
    lazy = {}
    for v in variables:
        a = ds[v].data
        b = out[v].data
        if not isinstance(b, dsa.Array):
            b = dsa.from_array(b)
        if isinstance(a, dsa.Array):
            b = b.rechunk(a.chunks)
        d = dsa.absolute(b.astype("f8") - a.astype("f8"))
        lazy[v] = (dsa.sqrt(dsa.nanmean(d * d)), dsa.nanmax(d)) if evaluate else ()
    kwargs = {} if client is not None else {"scheduler": "threads" if scheduler in (None, "processes") else scheduler}
    if client is not None:
        vals = client.compute(lazy, sync=True)
    else:
        (vals,) = dask.compute(lazy, **kwargs)
    in_total = st_total = 0
    for v in variables:
        chunk, meta = _stored_bytes(Path(store), v)
        nbytes = int(ds[v].size * ds[v].dtype.itemsize)
        in_total += nbytes
        st_total += chunk
        r = {"codec": repr(codecs[v]), "model_sha256": codecs[v].model_sha256, "bits": codecs[v].bits,
             "input_bytes": nbytes, "stored_bytes": chunk, "metadata_bytes": meta,
             "ratio": round(nbytes / chunk, 3) if chunk else None}
        if evaluate:
            r["rmse"] = float(vals[v][0])
            r["max_abs_error"] = float(vals[v][1])
        rep["variables"][v] = r
    rep["input_bytes"] = in_total
    rep["stored_bytes"] = st_total
    rep["ratio"] = round(in_total / st_total, 3) if st_total else None
    return rep


def format_report(rep: dict) -> str:
    """The table ``inrcodec compress`` prints."""
    lines = [f"{'variable':16s} {'ratio':>9s} {'rmse':>12s} {'max abs err':>12s} {'stored':>12s}"]
    for v, r in rep["variables"].items():
        rm = f"{r['rmse']:.5g}" if "rmse" in r else "-"
        mx = f"{r['max_abs_error']:.5g}" if "max_abs_error" in r else "-"
        lines.append(f"{v:16s} {r['ratio'] or 0:9.2f} {rm:>12s} {mx:>12s} {r['stored_bytes']:12d}")
    lines.append(f"encoded variables: {rep['input_bytes']} B -> {rep['stored_bytes']} B chunk data, "
                 f"ratio {rep['ratio']}; copied losslessly: {', '.join(rep['copied']) or '-'}")
    if "seconds" in rep:
        lines.append(f"{rep['regions']} regions along {rep['region_dim']!r} ({rep['resumed_regions']} done before), "
                     f"{rep['seconds']:.1f} s")
    return "\n".join(lines)


def store_info(store: str | os.PathLike) -> dict[str, Any]:
    """Variables of a store: codec, pinned model hash, bits, stored bytes and ratio per array.

    >>> info = store_info("era5.zarr")  # doctest: +SKIP
    >>> info["variables"]["t2m"]["codec"], info["variables"]["t2m"]["ratio"]  # doctest: +SKIP
    """
    import zarr

    from inrcodec.zarr3 import COINppZarr3Codec

    store = Path(store)
    with warnings.catch_warnings():  # an unfinished store is reported below, not warned about
        warnings.simplefilter("ignore", IncompleteStoreWarning)
        g = zarr.open_group(str(store), mode="r")
    rep: dict[str, Any] = {"store": str(store), "variables": {}}
    prog = _Progress.read(store)
    if prog:
        rep["progress"] = {"complete": prog.get("complete"), "done": len(prog.get("done", [])),
                           "regions": len(prog.get("regions", []))}
    for name, arr in sorted(g.arrays()):
        codec = None
        for c in getattr(arr.metadata, "codecs", ()) or ():
            if isinstance(c, COINppZarr3Codec):
                codec = c.codec
        if codec is None:
            comp = getattr(arr.metadata, "compressor", None)
            if isinstance(comp, COINppCodec):
                codec = comp
        chunk, meta = _stored_bytes(store, name)
        nbytes = int(np.prod(arr.shape, dtype=np.int64)) * arr.dtype.itemsize
        ent = {"shape": list(arr.shape), "dtype": str(arr.dtype), "chunks": list(arr.chunks),
               "decoded_bytes": nbytes, "stored_bytes": chunk, "metadata_bytes": meta,
               "ratio": round(nbytes / chunk, 3) if chunk else None}
        if codec is not None:
            ent.update(codec="inrcodec.coinpp", model_sha256=codec.model_sha256, bits=codec.bits,
                       inner_steps=codec.inner_steps)
        else:
            names = [type(c).__name__ for c in (getattr(arr.metadata, "codecs", ()) or ())]
            ent["codec"] = "+".join(names) or "none"
        rep["variables"][name] = ent
    return rep


def format_info(info: dict) -> str:
    lines = [f"store: {info['store']}"]
    if "progress" in info:
        p = info["progress"]
        lines.append(f"progress: {p['done']}/{p['regions']} regions" + (" (complete)" if p["complete"] else " (UNFINISHED)"))
    lines.append(f"{'variable':16s} {'codec':28s} {'bits':>4s} {'model sha256':14s} {'decoded':>12s} {'stored':>12s} {'ratio':>8s}")
    for n, e in info["variables"].items():
        sha = e.get("model_sha256", "")[:12]
        lines.append(f"{n:16s} {e['codec'][:28]:28s} {str(e.get('bits', '')):>4s} {sha:14s} "
                     f"{e['decoded_bytes']:12d} {e['stored_bytes']:12d} {e['ratio'] or 0:8.2f}")
    return "\n".join(lines)


def open_store(store: str | os.PathLike, **kwargs):
    """``xr.open_zarr(store)`` for a store written by :func:`compress_dataset`; refuses an unfinished
    one (:class:`IncompleteStoreError`, which says how to resume it) instead of showing NaN regions."""
    import xarray as xr

    check_complete(store)
    kwargs.setdefault("decode_timedelta", False)
    return xr.open_zarr(store, **kwargs)


def decompress_store(store: str | os.PathLike, output: str | os.PathLike, engine: str | None = None,
                     scheduler: str | None = "threads", progress: bool = False, overwrite: bool = False) -> str:
    """Decode every variable of a Zarr store and write a plain netCDF file (no COIN++ inside).

    Copied variables keep their CF encoding (dtype, fill value, scale/offset, time units);
    decoded COIN++ variables are written as their float dtype with NaN as fill value.

    >>> decompress_store("era5.zarr", "era5_decoded.nc")  # doctest: +SKIP
    """
    import dask
    import xarray as xr

    check_complete(store)
    output = Path(output)
    if output.exists() and not overwrite:
        raise ValueError(f"{output} exists; pass overwrite=True (--overwrite) to replace it")
    if output.is_dir():
        raise ValueError(f"{output} is a directory; decompress writes a netCDF file")
    ds = xr.open_zarr(store, chunks={}, decode_timedelta=False)
    enc = {}
    for n in ds.variables:
        e = _clean_encoding(ds[n].encoding)
        ds[n].encoding = {}
        enc[str(n)] = e
    kwargs = {"scheduler": scheduler or "threads"}
    # write a temporary sibling and move it into place: an existing file survives a failed run
    tmp = output.with_name(f".{output.stem}.inrcodec-tmp{output.suffix}")  # same suffix: same format
    try:
        delayed = ds.to_netcdf(tmp, engine=engine, encoding=enc, compute=False)
        if progress:
            from dask.diagnostics import ProgressBar

            with ProgressBar(dt=0.5):
                dask.compute(delayed, **kwargs)
        else:
            dask.compute(delayed, **kwargs)
        ds.close()
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
    return str(output)
