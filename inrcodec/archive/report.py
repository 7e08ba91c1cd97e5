"""What a store holds and how small it is (:func:`store_info`), and the compress report (which
reads the store back through :mod:`inrcodec.archive.readback`).

Two ratios, both of decoded bytes (what the arrays hold in memory):

* chunk ratio: decoded bytes / the bytes of the chunk files;
* store ratio: decoded bytes / every byte of the store directory (chunks, the array and group
  metadata, including a model carried inline in a codec configuration).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from inrcodec import chunkformat
from inrcodec.models import zoo
from inrcodec.archive.progress import ProgressFile, ignore_progress_file_warning
from inrcodec.archive.readback import check_is_store, open_store
from inrcodec.codec import COINppCodec
from inrcodec.chunkformat.header import KNOWN_MODES, MODES_WITHOUT_LATENTS
from inrcodec.errors import IncompleteStoreWarning

__all__ = ["store_info", "format_info", "compress_report", "format_report"]

_METADATA_FILES = ("zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata")


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 3) if den else None


def _array_bytes(store: Path, name: str) -> tuple[int, int]:
    """(chunk bytes, metadata bytes) of the array ``name`` in a local store."""
    chunk = meta = 0
    for root, _dirs, files in os.walk(store / name):
        for f in files:
            size = os.path.getsize(os.path.join(root, f))
            if f in _METADATA_FILES:
                meta += size
            else:
                chunk += size
    return chunk, meta


def _chunk_summary(store: Path, name: str) -> tuple[dict[str, int], list[int]]:
    """(how many chunk files of the COIN++ array ``name`` took each chunk mode (issue 24: network
    alone, hybrid, wavelet alone, ...), the latent bit widths its chunks with latents use); chunk
    files are read whole, one at a time."""
    files = (os.path.join(root, f) for root, _dirs, fs in os.walk(store / name) for f in fs if f not in _METADATA_FILES)
    modes: dict[str, int] = {}
    bits = set()
    for f in files:
        data = Path(f).read_bytes()
        (mode,) = chunkformat.mode_counts([data])
        modes[mode] = modes.get(mode, 0) + 1
        if mode in ("unreadable", *(KNOWN_MODES[m] for m in MODES_WITHOUT_LATENTS)):
            continue
        bits.add(int(chunkformat.unpack_chunk(data)[0].bits))
    return modes, sorted(bits)


def _bits_column(entry: dict) -> str:
    """The bit widths a COIN++ array's chunks use ('6', '3-6'; '-' when none has latents), else ''."""
    bits = entry.get("latent_bits")
    if bits is None:
        return ""
    return "-" if not bits else str(bits[0]) if len(bits) == 1 else f"{bits[0]}-{bits[-1]}"


def _store_bytes(store: Path) -> int:
    return sum(os.path.getsize(os.path.join(r, f)) for r, _d, fs in os.walk(store) for f in fs)


def _coinpp_codec(arr) -> COINppCodec | None:
    meta = arr.metadata
    for c in (*(getattr(meta, "codecs", ()) or ()), getattr(meta, "compressor", None)):
        if isinstance(c, COINppCodec):
            return c
    return None


def _codec_entry(arr) -> dict[str, Any]:
    codec = _coinpp_codec(arr)
    if codec is None:
        meta = arr.metadata  # Zarr 3: the codec chain; Zarr 2: filters and compressor
        chain = getattr(meta, "codecs", None) or [*(getattr(meta, "filters", None) or ()), getattr(meta, "compressor", None)]
        return {"codec": "+".join(type(c).__name__ for c in chain if c is not None) or "none"}
    settings = {k: v for k, v in codec.settings.to_dict().items() if k not in ("lat", "lon")}
    if codec.settings.lat is not None:
        settings["grid"] = f"lat[{len(codec.settings.lat)}] x lon[{len(codec.settings.lon)}]"
    return {"codec": "inrcodec.coinpp", "model_sha256": codec.model_sha256,
            "model": zoo.name_of(codec.model_sha256), "settings": settings, "network": codec.settings.network}


def store_info(store: str | os.PathLike) -> dict[str, Any]:
    """Every array of a store: shape, codec (settings and pinned model for COIN++), decoded,
    chunk and metadata bytes and the chunk ratio; for the whole store the decoded bytes, chunk
    bytes, every byte of the store, the chunk ratio and the store ratio (module docstring); for
    COIN++ arrays ``chunk_modes``, the number of chunks per chunk mode (``chunkformat.mode_counts``),
    and ``latent_bits``, the bit widths their chunks with latents use (``settings["bits"]`` is the
    request; a chunk of SPERR alone has no latents).

    >>> info = store_info("era5.zarr")  # doctest: +SKIP
    >>> info["chunk_ratio"], info["store_ratio"], info["variables"]["t2m"]["settings"]["bits"]  # doctest: +SKIP
    """
    import zarr

    store = Path(store)
    check_is_store(store)
    with warnings.catch_warnings():  # an unfinished store is reported below, not warned about
        warnings.simplefilter("ignore", IncompleteStoreWarning)
        ignore_progress_file_warning()
        group = zarr.open_group(str(store), mode="r")
        arrays = sorted(group.arrays())
    rep: dict[str, Any] = {"store": str(store), "variables": {}}
    prog = ProgressFile.read(store)
    if prog:
        rep["progress"] = {"complete": bool(prog.get("complete")), "done": len(prog.get("done", [])),
                           "regions": len(prog.get("regions", []))}
    for name, arr in arrays:
        chunk, meta = _array_bytes(store, name)
        decoded = int(np.prod(arr.shape, dtype=np.int64)) * arr.dtype.itemsize
        rep["variables"][name] = {
            "shape": list(arr.shape), "dtype": str(arr.dtype), "chunks": list(arr.chunks),
            "decoded_bytes": decoded, "chunk_bytes": chunk, "metadata_bytes": meta,
            "chunk_ratio": _ratio(decoded, chunk), **_codec_entry(arr)}
        if "settings" in rep["variables"][name]:  # a COIN++ array: the share of chunks per mode, their widths
            modes, bits = _chunk_summary(store, name)
            rep["variables"][name].update(chunk_modes=modes, latent_bits=bits)
    entries = rep["variables"].values()
    rep["decoded_bytes"] = sum(e["decoded_bytes"] for e in entries)
    rep["chunk_bytes"] = sum(e["chunk_bytes"] for e in entries)
    rep["store_bytes"] = _store_bytes(store)
    rep["chunk_ratio"] = _ratio(rep["decoded_bytes"], rep["chunk_bytes"])
    rep["store_ratio"] = _ratio(rep["decoded_bytes"], rep["store_bytes"])
    return rep


def format_info(info: dict) -> str:
    """The table ``inrcodec info`` prints."""
    lines = [f"store: {info['store']}"]
    if "progress" in info:
        p = info["progress"]
        lines.append(f"progress: {p['done']}/{p['regions']} regions" + (" (complete)" if p["complete"] else " (UNFINISHED)"))
    lines.append(f"{'variable':16s} {'codec':24s} {'bits':>4s} {'model':14s} {'decoded B':>12s} "
                 f"{'chunk B':>12s} {'chunk ratio':>11s}")
    for n, e in info["variables"].items():
        # coded without a network (no model for the variable): the pinned model is never run
        model = "none (no net)" if e.get("network") is False else e.get("model") or e.get("model_sha256", "")[:12]
        bits = _bits_column(e)  # what the chunks use, not the setting: a SPERR-alone chunk has none
        lines.append(f"{n:16s} {e['codec'][:24]:24s} {bits:>4s} {model[:14]:14s} {e['decoded_bytes']:12d} "
                     f"{e['chunk_bytes']:12d} {e['chunk_ratio'] or 0:11.2f}")
    for n, e in info["variables"].items():
        if e.get("chunk_modes"):
            total = sum(e["chunk_modes"].values())
            lines.append(f"{n}: chunk modes " + ", ".join(
                f"{k} {v}/{total}" for k, v in sorted(e["chunk_modes"].items(), key=lambda kv: -kv[1])))
    lines.append(f"all arrays: {info['decoded_bytes']} B decoded; chunk ratio {info['chunk_ratio']} "
                 f"(decoded / {info['chunk_bytes']} B of chunks); store ratio {info['store_ratio']} "
                 f"(decoded / {info['store_bytes']} B, every file of the store incl. metadata)")
    return "\n".join(lines)


def _errors(ds, out, variables, client, scheduler) -> dict[str, tuple[float, float]]:
    """(RMSE, max abs error) of each encoded variable: the store read back against the input."""
    import dask
    import dask.array as dsa

    lazy = {}
    for v in variables:
        a, b = ds[v].data, out[v].data
        b = b if isinstance(b, dsa.Array) else dsa.from_array(b)
        if isinstance(a, dsa.Array):
            b = b.rechunk(a.chunks)
        d = dsa.absolute(b.astype("f8") - a.astype("f8"))
        lazy[v] = (dsa.sqrt(dsa.nanmean(d * d)), dsa.nanmax(d))
    if client is not None:
        vals = client.compute(lazy, sync=True)
    else:
        (vals,) = dask.compute(lazy, scheduler="threads" if scheduler in (None, "processes") else scheduler)
    return {v: (float(r), float(m)) for v, (r, m) in vals.items()}


def compress_report(store: Path, ds, variables: list[str], client, scheduler, evaluate: bool) -> dict[str, Any]:
    """The report of a finished compress run: :func:`store_info`'s sizes and ratios, per encoded
    variable the codec and (``evaluate``) RMSE and max abs error against the input."""
    info = store_info(store)
    rep: dict[str, Any] = {"variables": {}, "copied": sorted(str(n) for n in ds.variables if str(n) not in variables)}
    errors = _errors(ds, open_store(store, chunks={}), variables, client, scheduler) if evaluate else {}
    for v in variables:
        e = info["variables"][v]
        rep["variables"][v] = {k: e[k] for k in ("model_sha256", "model", "network", "settings", "decoded_bytes",
                                                 "chunk_bytes", "metadata_bytes", "chunk_ratio")}
        if v in errors:
            rep["variables"][v].update(rmse=errors[v][0], max_abs_error=errors[v][1])
    encoded = [info["variables"][v] for v in variables]
    rep["encoded_bytes"] = sum(e["decoded_bytes"] for e in encoded)
    rep["encoded_chunk_bytes"] = sum(e["chunk_bytes"] for e in encoded)
    rep["encoded_chunk_ratio"] = _ratio(rep["encoded_bytes"], rep["encoded_chunk_bytes"])
    rep.update({k: info[k] for k in ("decoded_bytes", "chunk_bytes", "store_bytes", "chunk_ratio", "store_ratio")})
    return rep


def format_report(rep: dict) -> str:
    """The table ``inrcodec compress`` prints."""
    lines = [f"{'variable':16s} {'chunk ratio':>11s} {'rmse':>12s} {'max abs err':>12s} {'chunk B':>12s}"]
    for v, r in rep["variables"].items():
        rm = f"{r['rmse']:.5g}" if "rmse" in r else "-"
        mx = f"{r['max_abs_error']:.5g}" if "max_abs_error" in r else "-"
        lines.append(f"{v:16s} {r['chunk_ratio'] or 0:11.2f} {rm:>12s} {mx:>12s} {r['chunk_bytes']:12d}")
    lines.append(f"encoded variables: {rep['encoded_bytes']} B -> {rep['encoded_chunk_bytes']} B of chunks, "
                 f"chunk ratio {rep['encoded_chunk_ratio']}; copied losslessly: {', '.join(rep['copied']) or '-'}")
    free = [v for v, r in rep["variables"].items() if r.get("network") is False]
    if free:
        lines.append(f"coded without a network (no model for them; SPERR alone or mean + residual): {', '.join(free)}")
    lines.append(f"whole store: {rep['decoded_bytes']} B decoded -> {rep['store_bytes']} B (every file, metadata "
                 f"included), store ratio {rep['store_ratio']}")
    if "seconds" in rep:
        lines.append(f"{rep['regions']} regions along {rep['region_dim']!r} ({rep['resumed_regions']} done before), "
                     f"{rep['seconds']:.1f} s")
    return "\n".join(lines)
