"""Measuring codecs on the held-out test split: one row per (codec, setting), and the whole run.

Each row holds what a codec actually wrote (bytes, ratio, bits per value), its errors
(:func:`inrcodec.metrics.error_metrics`) and its encode/decode wall-clock times on this CPU.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Callable

import numpy as np

from inrcodec import metrics
from inrcodec.bench.peers import available_peers, default_peers
from inrcodec.bench.outputs import write_outputs
from inrcodec.bench.report import BenchResult


def _median_time(fn, repeats: int):
    times, result = [], None
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return result, float(np.median(times))


def measure(codec, x: np.ndarray, *, dataset: str, name: str, label: str, setting: str, params: dict,
            lat=None, repeats: int = 1, warmup: bool = True, latent_dim=None, bits=None, model_bytes=0) -> dict:
    """Encode/decode ``x`` with ``codec`` (``encode(x)``, ``decode(bytes, x)``) and return one row
    (the columns of :data:`inrcodec.bench.report.COLUMNS`, plus ``_spectrum``: the reconstruction's)."""
    if warmup:
        first = x[:1]
        codec.decode(codec.encode(first), first)
    data, t_enc = _median_time(lambda: codec.encode(x), repeats)
    data = bytes(data)
    rec, t_dec = _median_time(lambda: codec.decode(data, x), repeats)
    n = int(x.size)
    raw = 4 * n
    return {
        "dataset": dataset, "codec": name, "label": label, "setting": setting,
        "params": json.dumps(params, sort_keys=True, default=float), "latent_dim": latent_dim, "bits": bits,
        "n_values": n, "raw_bytes": raw, "written_bytes": len(data),
        "compression_ratio": raw / len(data), "bits_per_value": 8.0 * len(data) / n,
        "encode_s": t_enc, "decode_s": t_dec,
        "encode_values_per_s": n / t_enc if t_enc > 0 else float("inf"),
        "decode_values_per_s": n / t_dec if t_dec > 0 else float("inf"),
        "model_bytes": model_bytes, "note": "",
        **metrics.error_metrics(x, rec, lat),
        "_spectrum": metrics.zonal_spectrum(np.reshape(rec, x.shape)),
    }


class InrcodecPeer:
    """A :class:`~inrcodec.codec.COINppCodec` with the peers' ``decode(bytes, like)`` interface."""

    def __init__(self, codec):
        self.codec = codec
        self.last_chunks: list[bytes] = []  # the chunks of the last encode (for the mode shares)

    def encode(self, x):
        data = self.codec.encode(x)
        self.last_chunks = [bytes(data)]
        return data

    def decode(self, data, like):
        return np.asarray(self.codec.decode(data)).reshape(like.shape)


class ChunkedPeer:
    """A codec applied to chunks of ``length`` items along the leading axis, each encoded on its
    own, as a Zarr array with that chunk length stores them: the written bytes are the sum of the
    real chunk bytes (where each chunk starts is the store's business, as for Zarr's keys)."""

    def __init__(self, codec, length: int):
        self.codec, self.length = codec, int(length)
        self._sizes: list[int] = []

    def _pieces(self, x):
        return [x[i:i + self.length] for i in range(0, x.shape[0], self.length)]

    def encode(self, x):
        chunks = [bytes(self.codec.encode(np.ascontiguousarray(p))) for p in self._pieces(x)]
        self._sizes = [len(c) for c in chunks]
        self.last_chunks = chunks
        return b"".join(chunks)

    def decode(self, data, like):
        ends = np.cumsum(self._sizes)
        if len(ends) != len(self._pieces(like)) or ends[-1] != len(data):
            raise ValueError("decode the bytes of the last encode")
        return np.concatenate([self.codec.decode(data[e - n:e], p)
                               for e, n, p in zip(ends, self._sizes, self._pieces(like))])


def _chunked(codec, chunk_length: int | None):
    return ChunkedPeer(codec, chunk_length) if chunk_length else codec


def machine_info() -> dict:
    """Python, platform, CPU, torch threads and the versions of inrcodec and the peer packages."""
    from importlib.metadata import PackageNotFoundError, version

    import numcodecs
    import torch

    from inrcodec._version import __version__

    versions = {"inrcodec": __version__, "numpy": np.__version__, "torch": torch.__version__,
                "numcodecs": numcodecs.__version__}
    for dist in ("numcodecs-wasm", "numcodecs-wasm-sz3", "numcodecs-wasm-zfp", "numcodecs-wasm-sperr",
                 "numcodecs-wasm-jpeg2000", "numcodecs-wasm-fourier-network", "wasmtime"):
        try:
            versions[dist] = version(dist)
        except PackageNotFoundError:
            pass
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"python": platform.python_version(), "platform": platform.platform(), "cpu": cpu,
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "versions": versions}


def load_model(model_like):
    """(CoinModel, its bytes, the name it is reported under) of a model-like argument
    (:func:`inrcodec.models.modelstore.load`): a directory's or file's name, a shipped model's name, or
    ``model-<sha256 prefix>`` for a model object or bytes."""
    from inrcodec.models import modelstore

    stored = modelstore.load(model_like)
    if isinstance(model_like, (str, os.PathLike)):
        name = stored.name if stored.name and str(model_like) == stored.name else Path(model_like).name
    else:
        name = f"model-{stored.sha256[:8]}"
    return stored.model, stored.data, name


def mode_shares(chunks) -> str:
    """``"hybrid 75%, wavelet 25%"``: the share of ``chunks`` (inrcodec chunk bytes) per chunk mode."""
    from inrcodec.chunkformat import mode_counts

    counts = mode_counts(chunks)
    total = sum(counts.values()) or 1
    return ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))


def _format_setting(params: dict) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def inrcodec_rows(models, bits, x: np.ndarray, rd, dataset: str, repeats: int = 1, log=None,
                  options: dict | None = None, chunk_length: int | None = None) -> list[dict]:
    """One measured row per model and bit width (``rd``: the :class:`~inrcodec.recipes.RecipeData`,
    for its lat/lon); ``options``: further ``COINppCodec`` options (``inner_steps``
    unset: the model's ``encode_steps``); with a ``target_ratio`` or ``target_rmse`` among them, one
    row per model (rate control picks the width per chunk; ``bits`` unused); ``chunk_length``:
    encode chunks of that many items (:class:`ChunkedPeer`)."""
    from inrcodec.codec import COINppCodec

    log = log or (lambda s: None)
    options = dict(options or {})
    # a rate-control target picks the width per chunk: one row per target, no bits column
    rated = any(options.get(k) is not None for k in ("target_ratio", "target_rmse"))
    widths = [None] if rated else [int(b) for b in bits]
    rows = []
    for m in models:
        model, data, mname = load_model(m)
        for b in widths:
            codec = COINppCodec(model, **{**({} if b is None else {"bits": b}), "lat": rd.lat, "lon": rd.lon, **options})
            peer = InrcodecPeer(codec)
            setting = ", ".join(([] if b is None else [f"{b} bits"]) + [f"{k}={v}" for k, v in options.items()])
            log(f"inrcodec {mname}: {setting}")
            params = {"model": str(mname), **({} if b is None else {"bits": b}),
                      "inner_steps": codec.settings.inner_steps, **options, "sha256": model.sha256[:16]}
            coded = _chunked(peer, chunk_length)
            row = measure(coded, x, dataset=dataset,
                          name="inrcodec", label=f"inrcodec latent {model.latent_dim}",
                          setting=f"{mname} {setting}", params=params, lat=rd.lat, repeats=repeats,
                          latent_dim=model.latent_dim, bits=b, model_bytes=len(data))
            row["note"] = "model bytes not counted per chunk (shared, stored once in the array metadata)"
            row["chunk_modes"] = mode_shares(coded.last_chunks)
            rows.append(row)
    return rows


def peer_rows(peers, x: np.ndarray, dataset: str, lat=None, quick: bool = False, repeats: int = 1,
              log=None, chunk_length: int | None = None) -> list[dict]:
    """One row per setting of each peer (``quick``: two settings); a setting the codec refuses
    becomes a row with the error in ``note``; a peer over its time budget skips its other settings.
    ``chunk_length``: each setting encodes chunks of that many items (:class:`ChunkedPeer`)."""
    log = log or (lambda s: None)
    rows = []
    for peer in peers:
        spent = 0.0
        for p in peer.quick(x) if quick else peer.sweep(x):
            setting = _format_setting(p)
            if peer.time_budget_s is not None and spent > peer.time_budget_s:
                log(f"{peer.name} {setting}: skipped, time budget {peer.time_budget_s:.0f} s spent")
                continue
            log(f"{peer.name}: {setting}")
            t0 = time.perf_counter()
            try:
                rows.append(measure(_chunked(peer.make(p, x), chunk_length), x, dataset=dataset, name=peer.name,
                                    label=peer.label, setting=setting, params=p, lat=lat,
                                    repeats=1 if peer.slow else repeats, warmup=not peer.slow))
            except Exception as exc:  # a setting a codec refuses: record it, go on
                log(f"{peer.name} {setting}: failed: {exc!r}")
                rows.append({"dataset": dataset, "codec": peer.name, "label": peer.label, "setting": setting,
                             "params": json.dumps(p, sort_keys=True, default=float), "note": f"failed: {exc!r}"[:200]})
            finally:
                spent += time.perf_counter() - t0
    return rows


#: the splits a benchmark can measure: the held-out test split (reported numbers) or the validation
#: split (where settings are chosen)
SPLITS = ("test", "validation")


def _measured_split(dataset, name, data, variable, split: str = "test"):
    """(RecipeData, reported name, modality) of a recipe name or of a RecipeData; ``split``
    ``"validation"``: its validation items in place of the test items (named ``<name>-validation``)."""
    import dataclasses

    from inrcodec.recipes import load_recipe, load_recipe_data

    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if isinstance(dataset, str):
        recipe = load_recipe(dataset)
        rd, name, modality = load_recipe_data(recipe, data, variable), name or dataset, recipe.modality
    else:
        rd, name, modality = dataset, name or "custom", None
    if split == "validation":
        rd, name = dataclasses.replace(rd, test=rd.val), f"{name}-validation"
    return rd, name, modality


def run_bench(
    dataset,
    models=(),
    bits=(4, 5, 6, 8),
    peers=None,
    quick: bool = False,
    out=None,
    data=None,
    variable: str | None = None,
    max_items: int | None = None,
    repeats: int = 1,
    log: Callable[[str], None] | None = None,
    name: str | None = None,
    target_ratios=(),
    split: str = "test",
    codec_options: dict | None = None,
) -> BenchResult:
    """Run the benchmark on the held-out test split of recipe ``dataset`` (or on a
    :class:`~inrcodec.recipes.RecipeData`'s ``test`` items, reported as ``name``).

    ``models``: model-like arguments (:func:`inrcodec.models.modelstore.load`: directories, files,
    shipped names, ``CoinModel`` objects); ``bits``: their bit widths; ``peers``: peer names
    (default: :func:`~inrcodec.bench.peers.default_peers` of the recipe's modality; missing ones
    are skipped and listed in ``result.missing``); ``quick``: two settings per peer and the first
    two bit widths; ``data``/``variable``: as in :func:`inrcodec.recipes.load_recipe_data`;
    ``max_items``: use only the first items of the test split; ``target_ratios``: also one inrcodec
    row per model and compression ratio, coded with ``target_ratio`` (rate control: with the default
    ``residual_coder`` the hybrid and SPERR chunks compete, so quality is not capped by the
    network's at ``bits``; empty ``bits`` for those rows alone); ``split="validation"``: measure the
    validation split instead (to choose settings; reported as ``<dataset>-validation``); ``codec_options``:
    further ``COINppCodec`` options for every inrcodec row (``{"max_abs_error": 0.5}``). With ``out`` the CSV,
    plots and markdown are written there (see :func:`~inrcodec.bench.outputs.write_outputs`).
    """
    log = log or (lambda s: None)
    rd, name, modality = _measured_split(dataset, name, data, variable, split)
    x = np.ascontiguousarray(rd.test, dtype=np.float32)
    if max_items:
        x = x[:max_items]
    bits = list(bits)[:2] if quick else list(bits)
    extra = dict(codec_options or {})
    rows = inrcodec_rows(models, bits, x, rd, name, repeats, log, options=extra)
    for r in target_ratios:
        rows += inrcodec_rows(models, (), x, rd, name, repeats, log, options={**extra, "target_ratio": float(r)})
    ok, missing = available_peers(default_peers(modality) if peers is None else peers)
    for peer_name, hint in missing.items():
        log(f"peer {peer_name} not installed, skipped: {hint}")
    rows += peer_rows(ok, x, name, rd.lat, quick, repeats, log)

    info = machine_info()
    info.update(dataset=name, modality=modality, test_shape=list(x.shape), source=rd.source, units=rd.units, quick=quick,
                repeats=repeats, lat_lon=rd.lat is not None, data_range=metrics.data_range(x))
    if rd.train is not None and rd.train.shape[1:] == x.shape[1:]:
        # the mean training item as the prediction of every test item (no bytes at all)
        info["train_mean_rmse"] = metrics.rmse(x, np.broadcast_to(np.nanmean(rd.train, axis=0), x.shape))
    res = BenchResult(name, rows, missing, info, metrics.zonal_spectrum(x))
    if out is not None:
        write_outputs(res, out)
    return res
