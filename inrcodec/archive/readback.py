"""Reading a store back: :func:`open_store` (xarray, refusing an unfinished store or an array
given for the store) and :func:`decompress_store` (a plain netCDF file)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from inrcodec.archive.store import check_complete


def check_is_store(store: Path) -> None:
    """A store's array given for the store: one line saying which path to give instead."""
    meta = store / "zarr.json"
    try:
        array = (store / ".zarray").is_file() or (meta.is_file() and json.loads(meta.read_text()).get("node_type") == "array")
    except (OSError, ValueError):
        return  # zarr says what is wrong with it
    if array:
        raise ValueError(f"{store} is the array {store.name!r} of a Zarr store, not a store; give the store: {store.parent}")


def open_store(store: str | os.PathLike, **kwargs):
    """``xr.open_zarr(store)`` for a store written by :func:`~inrcodec.archive.compress_dataset`;
    refuses an unfinished one (:class:`~inrcodec.errors.IncompleteStoreError`, which says how to
    resume it) instead of showing NaN regions."""
    import xarray as xr

    check_is_store(Path(store))
    check_complete(store)
    kwargs.setdefault("decode_timedelta", False)
    kwargs.setdefault("consolidated", False)  # compress_dataset does not consolidate (no second model copy)
    return xr.open_zarr(store, **kwargs)


def decompress_store(store: str | os.PathLike, output: str | os.PathLike, engine: str | None = None,
                     scheduler: str | None = "threads", progress: bool = False, overwrite: bool = False) -> str:
    """Decode every variable of a Zarr store and write a plain netCDF file (no COIN++ inside).

    Copied variables keep their CF encoding (dtype, fill value, scale/offset, time units);
    decoded COIN++ variables are written as their float dtype with NaN as fill value.

    >>> decompress_store("era5.zarr", "era5_decoded.nc")  # doctest: +SKIP
    """
    import dask

    from inrcodec.archive.plan import cf_encoding

    output = Path(output)
    if Path(store).resolve() in output.resolve().parents:
        raise ValueError(f"output {output} lies inside the store {store} it reads; write it somewhere else")
    if output.exists() and not overwrite:
        raise ValueError(f"{output} exists; pass overwrite=True (--overwrite) to replace it")
    if output.is_dir():
        raise ValueError(f"{output} is a directory; decompress writes a netCDF file")
    ds = open_store(store, chunks={})
    enc = {}
    for n in ds.variables:
        enc[str(n)] = cf_encoding(ds[n].encoding)
        ds[n].encoding = {}
    # write a temporary sibling and move it into place: an existing file survives a failed run
    tmp = output.with_name(f".{output.stem}.inrcodec-tmp{output.suffix}")  # same suffix: same format
    try:
        delayed = ds.to_netcdf(tmp, engine=engine, encoding=enc, compute=False)
        if progress:
            from dask.diagnostics import ProgressBar

            with ProgressBar(dt=0.5):
                dask.compute(delayed, scheduler=scheduler or "threads")
        else:
            dask.compute(delayed, scheduler=scheduler or "threads")
        ds.close()
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
    return str(output)
