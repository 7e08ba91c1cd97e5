"""``compress_dataset``: a dataset -> a resumable, safely replaced Zarr store (the steps are in
the :mod:`inrcodec.archive` docstring)."""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from inrcodec.models import modelstore
from inrcodec.models.modelstore import StoredModel
from inrcodec.archive.plan import WritePlan, make_plan, open_input
from inrcodec.archive.progress import (PROGRESS_FILE, ProgressFile, RunProgress, fingerprint_difference,
                                       ignore_progress_file_warning, request_fingerprint)
from inrcodec.archive.report import compress_report
from inrcodec.archive.schedulers import make_client, run_distributed, run_local, ship_models
from inrcodec.archive.store import (check_output, mark_incomplete, output_lock, output_path, remove_zarr_store,
                                    swap_into_place, temp_sibling)
from inrcodec.errors import IncompleteStoreWarning, StoreMismatchError
from inrcodec.settings import CodecSettings

__all__ = ["compress_dataset"]


def compress_dataset(
    input: str | os.PathLike,
    output: str | os.PathLike,
    model: Any = None,
    variables: Iterable[str] | str | None = None,
    settings: CodecSettings | None = None,
    *,
    models: Mapping[str, Any] | None = None,
    variable_options: Mapping[str, Mapping[str, Any]] | None = None,
    chunks: dict[str, int] | str | None = None,
    scheduler: str | None = "threads",
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    device: str | None = None,
    engine: str | None = None,
    evaluate: bool = True,
    on_region: Callable[[int, int, int], Any] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Compress ``input`` (netCDF/HDF5/Zarr) into the Zarr store ``output``; returns a report.

    Parameters
    ----------
    input : path of a netCDF/HDF5 file (any xarray engine; ``engine=`` to force one) or a Zarr store.
    output : the Zarr (format 3) store directory to write.
    model : anything :func:`inrcodec.models.modelstore.load` takes (``CoinModel``, model file,
        ``train-recipe --out`` directory, shipped model name, bytes) or a ``COINppCodec``; or a
        directory of per-variable models (``train-recipe --variable a,b --out DIR``): each variable
        with its own, as ``models=``.
    models : ``{variable: model}``: each variable coded with its own model (instead of ``model``);
        each array pins its own. A variable without a model is never given another's.
    variables : names (list or comma-separated) to encode with COIN++; default: every variable
        the model can encode (:func:`encodable_variables`), or every variable of ``models``. All
        others are copied losslessly.
    settings, options : the codec options, a :class:`~inrcodec.settings.CodecSettings` or its
        fields as keywords (``bits=5, max_abs_error=0.1, fill_value=-9999, ...``), as for
        ``COINppCodec`` (``inner_steps`` unset: the model's own ``encode_steps``). lat/lon come
        from the data.
    variable_options : ``{variable: {option: value}}``: the options one variable takes besides (or
        instead of) those, e.g. ``{"tp": {"valid_min": 0.0}}`` keeps decoded precipitation
        non-negative while the other variables of the file may go below 0. A directory of
        per-variable models adds the options its training suggested (its ``summary.json``, e.g.
        ``valid_min=0`` for a variable trained on non-negative data with exact zeros) where the
        request leaves them at their defaults.
    chunks : ``{"time": 24}`` or ``"time=24"``: the chunk size along the region dimension (the
        first key; default ``time`` with 24 steps). Other dims are not chunked.
    scheduler : ``"threads"`` (default), ``"processes"``, ``"synchronous"`` or the address of a
        ``dask.distributed`` scheduler (``"tcp://host:8786"``).
    workers : with ``"processes"``: the number of processes; with the default scheduler: start a
        ``dask.distributed.LocalCluster`` of ``workers`` single-threaded processes.
    overwrite : replace an existing store (else an unfinished run of the same request resumes,
        and any other existing store is an error).
    progress : draw a progress bar of the regions on stderr.
    device : ``None``/``"cpu"`` (default), ``"cuda"`` or ``"auto"``: where the model runs.
    evaluate : read the store back and report RMSE / max abs error per encoded variable.
    on_region : called as ``on_region(index, done, total)`` in this process after each region is
        written and recorded; an exception it raises stops the run (the store stays unfinished
        and resumable; regions already running finish first, except on a distributed cluster).

    Returns ``{"output", "variables": {name: {"chunk_ratio", "rmse", "max_abs_error", "settings",
    ...}}, "copied", "chunk_ratio", "store_ratio", "store_bytes", ..., "seconds", "regions",
    "resumed_regions"}`` (:func:`inrcodec.archive.report.compress_report`).
    """
    t0 = time.perf_counter()
    final = output_path(output)
    check_output(input, final, overwrite)
    with output_lock(final):  # one writer per store: two runs would mix their chunks
        # overwrite of an existing store: write a temporary sibling and swap it in when complete,
        # so an interrupted run leaves the old store as it was
        replacing = overwrite and final.exists()
        store = temp_sibling(final) if replacing else final
        stored = _models_of(model, models)
        # resolved per model (inner_steps), as every codec of the run will: the progress file names them
        settings = CodecSettings.given(settings, options, "compress_dataset()")
        suggested = modelstore.variable_codec_options(model) if models is None else None
        plan = make_plan(input, open_input(input, engine), variables, stored, settings, chunks, variable_options,
                         suggested)
        fingerprint = request_fingerprint(input, plan.variables, plan.models, plan.settings, plan.dim, plan.size)
        file = _start_or_resume(store, plan, fingerprint, resume=not overwrite)
        tracker = RunProgress(file, progress, on_region)
        client, cluster = make_client(scheduler, workers)
        try:
            _write_regions(store, plan, tracker, client, scheduler, workers, device)
            mark_incomplete(store, sorted(plan.codecs), False)
            file.remove()  # complete: the store holds nothing but Zarr
            if replacing:
                swap_into_place(store, final)
                store = final
            report = compress_report(store, plan.ds, plan.variables, client, scheduler, evaluate)
        finally:
            if client is not None:  # ours: never left behind as dask's default scheduler
                client.close()
            if cluster is not None:
                cluster.close()
    report.update(seconds=round(time.perf_counter() - t0, 3), regions=len(plan.regions),
                  resumed_regions=tracker.resumed, region_dim=plan.dim, chunk=plan.size, output=str(store))
    return report


def _start_or_resume(store: Path, plan: WritePlan, fingerprint: dict, resume: bool) -> ProgressFile:
    """Resume the unfinished run of this request in ``store``, or write the store's metadata and
    the variables without the region dimension, marked unfinished."""
    if resume and store.exists():
        prev = ProgressFile.read(store)
        if prev is None or prev.get("fingerprint") != fingerprint:
            why = (f"has no {PROGRESS_FILE} (it is complete, or was not written by inrcodec)"
                   if prev is None else fingerprint_difference(prev.get("fingerprint") or {}, fingerprint))
            raise StoreMismatchError(f"{store} exists and {why}; pass overwrite=True (--overwrite) to replace it")
        if prev.get("started", True):  # else killed while writing the metadata: start again
            return ProgressFile(store, fingerprint, plan.regions, plan.dim, done={int(i) for i in prev.get("done", [])})
    if store.exists():  # a stale run of ours (remove_zarr_store checks it is a store)
        remove_zarr_store(store)
    # the progress file first: a run killed at any later point leaves a store every reader
    # knows is unfinished (mode "a" keeps the file; "w" would clear the directory)
    store.mkdir(parents=True, exist_ok=True)
    file = ProgressFile(store, fingerprint, plan.regions, plan.dim, started=False)
    file.write()
    with warnings.catch_warnings():
        ignore_progress_file_warning()
        # not consolidated: consolidated metadata would repeat every codec configuration (and an
        # inline model) in the root zarr.json
        plan.ds.to_zarr(store, mode="a", compute=False, encoding=plan.encoding, zarr_format=3, consolidated=False)
    mark_incomplete(store, sorted(plan.codecs), True)
    file.started = True
    file.write()
    return file


def _region_write(store: Path, region_ds, dim: str, region: list[int]):
    a, b = region
    with warnings.catch_warnings():  # this run is what completes the store
        warnings.simplefilter("ignore", IncompleteStoreWarning)
        ignore_progress_file_warning()
        return region_ds.isel({dim: slice(a, b)}).to_zarr(
            store, region={dim: slice(a, b)}, compute=False, zarr_format=3, consolidated=False)


def _models_of(model, models) -> StoredModel | dict[str, StoredModel]:
    """The run's one model, or ``{variable: model}`` (``models=``, or a directory of per-variable models)."""
    if models is not None and model is not None:
        raise TypeError("compress_dataset(): pass model= (one for every variable) or models= ({variable: model}), not both")
    if models is None and model is None:
        raise TypeError("compress_dataset(): pass model= or models=")
    if models is None:
        models = modelstore.variable_models(model)
        if models is None:
            return modelstore.load(model)
    if not models:
        raise ValueError("models= is empty")
    return {str(v): modelstore.load(m) for v, m in models.items()}


def _write_regions(store, plan: WritePlan, tracker: RunProgress, client, scheduler, workers, device) -> None:
    """Write the regions not yet recorded, one Zarr chunk along the region dim each."""
    region_ds = plan.region_dataset()
    pending = [i for i in range(len(plan.regions)) if i not in tracker.file.done]
    if not pending or region_ds is None:
        return
    delayeds = [_region_write(store, region_ds, plan.dim, plan.regions[i]) for i in pending]
    stored = plan.distinct_models()
    if client is None:
        run_local(delayeds, pending, tracker.finished, scheduler or "threads", workers, [s.model for s in stored], device)
        return
    already = {s.sha256 for s in stored if modelstore.is_shipped(s.sha256)}
    ship_models(client, stored, device=device)
    try:
        run_distributed(client, delayeds, pending, tracker.finished)
    finally:
        for s in stored:
            if s.sha256 not in already:
                modelstore.unmark_shipped(s.sha256)
