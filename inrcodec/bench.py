"""Rate-distortion benchmark of inrcodec against the lossy codecs people use today.

``inrcodec bench DATASET --model DIR [DIR ...]`` (see :func:`run_bench`) compresses the held-out
test split of a recipe's data (:func:`inrcodec.recipes.load_recipe_data`) with

* inrcodec (:class:`~inrcodec.codec.COINppCodec`) for each model directory and bit width, and
* each installed peer codec (:data:`PEERS`) at a sweep of its own settings,

and measures, on the bytes each codec actually wrote: compression ratio against float32, bits per
value, RMSE, max abs error, PSNR, for lat/lon grids the cos(latitude)-weighted RMSE, the
high-wavenumber power ratio of the last-axis (zonal) spectrum, and encode/decode wall-clock time
on this machine's CPU. Results go to a CSV (every point), PNG plots and a markdown summary.

Peers are optional: a peer whose package is missing is reported (with the pip command that
installs it) and skipped; ``pip install "inrcodec[bench]"`` installs all of them.

Conventions (also written into the markdown summary):

* the whole test split ``(items, *spatial)`` is one array handed to each codec, as one Zarr chunk
  would be; peers may exploit correlation along the leading (time) axis, inrcodec fits each item
  independently;
* ``raw bytes`` = ``4 * number of values`` (float32); ratio = raw bytes / written bytes; bits per
  value = 8 * written bytes / number of values;
* inrcodec's written bytes are the chunk bytes (header, CRC included); the model (base network and
  coding tables), shared by every chunk of an array and stored once in its metadata, is NOT counted
  per chunk but reported in the ``model_bytes`` column; the Fourier-feature network's bytes include
  its per-chunk weights;
* PSNR = 20 log10(data range / RMSE), the range of the original test split;
* times are the median of ``repeats`` wall-clock runs after one untimed warm-up call on the first
  item (the Fourier network is timed once, without warm-up: it trains a network per call).
"""

from __future__ import annotations

import csv
import dataclasses
import importlib
import json
import math
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

# -- peers ------------------------------------------------------------------------------------


@dataclass
class Peer:
    """A peer codec family: how to build one codec per setting, and which settings to sweep.

    ``make(params, x)`` returns an object with ``encode(x) -> bytes-like`` and
    ``decode(bytes, x_like) -> ndarray``; ``sweep(x)`` and ``quick(x)`` return the list of
    ``params`` dicts (bounds relative to the data range ``x.max() - x.min()``).
    """

    name: str
    label: str
    modules: tuple[str, ...]
    pip: str
    make: Callable[[dict, np.ndarray], Any]
    sweep: Callable[[np.ndarray], list[dict]]
    quick: Callable[[np.ndarray], list[dict]]
    slow: bool = False
    time_budget_s: float | None = None

    def missing(self) -> list[str]:
        out = []
        for m in self.modules:
            try:
                importlib.import_module(m)
            except Exception:  # ImportError, or a broken wasm runtime
                out.append(m)
        return out


class _NumcodecsPeer:
    """A numcodecs codec (or a chain) used as a peer: encode -> bytes, decode -> float32 array."""

    def __init__(self, codecs):
        self.codecs = list(codecs)

    def encode(self, x: np.ndarray) -> bytes:
        buf = x
        for c in self.codecs:
            buf = c.encode(buf)
        return bytes(np.asarray(buf).tobytes()) if not isinstance(buf, (bytes, bytearray)) else bytes(buf)

    def decode(self, data: bytes, like: np.ndarray) -> np.ndarray:
        buf = data
        for c in reversed(self.codecs):
            buf = c.decode(buf)
        return np.frombuffer(np.asarray(buf).tobytes(), dtype=like.dtype).reshape(like.shape)

    def config(self) -> list[dict]:
        return [c.get_config() for c in self.codecs]


class _WasmPeer(_NumcodecsPeer):
    """A numcodecs-wasm codec; its encoded output is an ndarray of bytes, decoded with ``out=``."""

    def encode(self, x: np.ndarray) -> bytes:
        return np.asarray(self.codecs[0].encode(x)).tobytes()

    def decode(self, data: bytes, like: np.ndarray) -> np.ndarray:
        out = np.empty_like(like)
        res = self.codecs[0].decode(np.frombuffer(data, dtype=np.uint8), out=out)
        return np.asarray(res if res is not None else out).reshape(like.shape)


class _Jpeg2000Peer:
    """JPEG 2000 on float data: linear quantisation to uint16 over [min, max], then JPEG 2000
    (which only takes integers). The 16 bytes of min/max (float64) are counted in the output."""

    def __init__(self, codec):
        self.codec = codec

    def encode(self, x: np.ndarray) -> bytes:
        lo, hi = float(np.min(x)), float(np.max(x))
        span = hi - lo if hi > lo else 1.0
        q = np.round((x.astype(np.float64) - lo) / span * 65535.0).astype(np.uint16)
        return np.array([lo, hi], "<f8").tobytes() + np.asarray(self.codec.encode(q)).tobytes()

    def decode(self, data: bytes, like: np.ndarray) -> np.ndarray:
        lo, hi = np.frombuffer(data[:16], "<f8")
        span = hi - lo if hi > lo else 1.0
        q = np.empty(like.shape, np.uint16)
        res = self.codec.decode(np.frombuffer(data[16:], dtype=np.uint8), out=q)
        q = np.asarray(res if res is not None else q).reshape(like.shape)
        return (lo + q.astype(np.float64) / 65535.0 * span).astype(like.dtype)

    def config(self) -> list[dict]:
        return [{"id": "uint16-linear"}, self.codec.get_config()]


def _span(x: np.ndarray) -> float:
    s = float(np.nanmax(x) - np.nanmin(x))
    return s if s > 0 else 1.0


_REL_BOUNDS = [0.5, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01, 3e-3, 1e-3, 1e-4]
_REL_BOUNDS_QUICK = [0.1, 0.01]


def _bitround(p, x):
    from numcodecs import BitRound, Zstd

    return _NumcodecsPeer([BitRound(keepbits=p["keepbits"]), Zstd(level=p.get("level", 19))])


def _sz3(p, x):
    from numcodecs_wasm_sz3 import Sz3

    return _WasmPeer([Sz3(eb_mode="abs", eb_abs=p["eb_abs"])])


def _zfp(p, x):
    from numcodecs_wasm_zfp import Zfp

    return _WasmPeer([Zfp(mode="fixed-accuracy", tolerance=p["tolerance"])])


def _zfp_rate(p, x):
    from numcodecs_wasm_zfp import Zfp

    return _WasmPeer([Zfp(mode="fixed-rate", rate=p["rate"])])


def _sperr(p, x):
    from numcodecs_wasm_sperr import Sperr

    return _WasmPeer([Sperr(mode="pwe", pwe=p["pwe"])])


def _jpeg2000(p, x):
    from numcodecs_wasm_jpeg2000 import Jpeg2000

    return _Jpeg2000Peer(Jpeg2000(mode="rate", rate=p["rate"]))


def _fourier(p, x):
    from numcodecs_wasm_fourier_network import FourierNetwork

    return _WasmPeer([FourierNetwork(
        fourier_features=p["fourier_features"], fourier_scale=p.get("fourier_scale", 1.0),
        learning_rate=p.get("learning_rate", 1e-3), mini_batch_size=None, num_blocks=p["num_blocks"],
        num_epochs=p["num_epochs"], seed=42,
    )])


PEERS: dict[str, Peer] = {
    p.name: p
    for p in [
        Peer("bitround-zstd", "BitRound + Zstd", ("numcodecs",), "numcodecs", _bitround,
             lambda x: [{"keepbits": k} for k in (0, 1, 2, 3, 4, 6, 8, 10, 12, 16)],
             lambda x: [{"keepbits": k} for k in (2, 8)]),
        Peer("sz3", "SZ3 (abs)", ("numcodecs_wasm_sz3",), "numcodecs-wasm-sz3", _sz3,
             lambda x: [{"eb_abs": r * _span(x)} for r in _REL_BOUNDS],
             lambda x: [{"eb_abs": r * _span(x)} for r in _REL_BOUNDS_QUICK]),
        Peer("zfp", "ZFP (fixed accuracy)", ("numcodecs_wasm_zfp",), "numcodecs-wasm-zfp", _zfp,
             lambda x: [{"tolerance": r * _span(x)} for r in [2.0, 1.0] + _REL_BOUNDS],
             lambda x: [{"tolerance": r * _span(x)} for r in _REL_BOUNDS_QUICK]),
        Peer("zfp-rate", "ZFP (fixed rate)", ("numcodecs_wasm_zfp",), "numcodecs-wasm-zfp", _zfp_rate,
             lambda x: [{"rate": r} for r in (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)],
             lambda x: [{"rate": r} for r in (1.0, 4.0)]),
        Peer("sperr", "SPERR (pwe)", ("numcodecs_wasm_sperr",), "numcodecs-wasm-sperr", _sperr,
             lambda x: [{"pwe": r * _span(x)} for r in _REL_BOUNDS],
             lambda x: [{"pwe": r * _span(x)} for r in _REL_BOUNDS_QUICK]),
        Peer("jpeg2000", "JPEG 2000 (uint16)", ("numcodecs_wasm_jpeg2000",), "numcodecs-wasm-jpeg2000", _jpeg2000,
             lambda x: [{"rate": r} for r in (5, 10, 30, 100, 300, 1000, 3000)],
             lambda x: [{"rate": r} for r in (10, 300)]),
        Peer("fourier-network", "Fourier-feature network", ("numcodecs_wasm_fourier_network",),
             "numcodecs-wasm-fourier-network", _fourier,
             lambda x: [{"fourier_features": 16, "num_blocks": 1, "num_epochs": 10},
                        {"fourier_features": 32, "num_blocks": 2, "num_epochs": 30}],
             lambda x: [{"fourier_features": 8, "num_blocks": 1, "num_epochs": 2}],
             slow=True, time_budget_s=240.0),
    ]
}
SCIENTIFIC_PEERS = list(PEERS)  # the default for gridded (climate) data

# The everyday codecs of images, speech and MRI (plain specs: that module imports this one only lazily).
from .modality_peers import DEFAULT_PEERS as _MODALITY_DEFAULTS  # noqa: E402
from .modality_peers import PEER_SPECS as _MODALITY_SPECS  # noqa: E402

PEERS.update({spec["name"]: Peer(**spec) for spec in _MODALITY_SPECS})


def default_peers(modality: str | None) -> list[str]:
    """The peers a modality is compared with by default: its everyday codecs, else the scientific ones."""
    return list(_MODALITY_DEFAULTS.get(modality, SCIENTIFIC_PEERS))


def available_peers(names=None) -> tuple[list[Peer], dict[str, str]]:
    """The requested peers (default: the scientific ones) that import, and ``{name: install hint}`` for the rest."""
    names = list(SCIENTIFIC_PEERS) if names is None else list(names)
    unknown = [n for n in names if n not in PEERS]
    if unknown:
        raise ValueError(f"unknown peer(s) {unknown}; known: {sorted(PEERS)}")
    ok, missing = [], {}
    for n in names:
        m = PEERS[n].missing()
        if m:
            missing[n] = f"pip install {PEERS[n].pip}  (or: pip install 'inrcodec[bench]')"
        else:
            ok.append(PEERS[n])
    return ok, missing


# -- metrics ----------------------------------------------------------------------------------


def zonal_spectrum(x: np.ndarray) -> np.ndarray:
    """Power spectrum along the last axis (longitude for lat/lon grids), averaged over all other
    axes (items, latitudes): ``|rfft|^2`` per wavenumber, the mean removed per row."""
    a = np.asarray(x, dtype=np.float64)
    a = a - a.mean(axis=-1, keepdims=True)
    p = np.abs(np.fft.rfft(a, axis=-1)) ** 2
    return p.reshape(-1, p.shape[-1]).mean(axis=0)


def hf_power_ratio(orig_spec: np.ndarray, rec_spec: np.ndarray, frac: float = 0.5) -> float:
    """Power of the reconstruction over power of the original in the upper ``frac`` of
    wavenumbers: 1 is right, below 1 smoothed away, above 1 added noise/artefacts."""
    k0 = max(1, int(math.floor(len(orig_spec) * (1 - frac))))
    den = float(orig_spec[k0:].sum())
    return float(rec_spec[k0:].sum() / den) if den > 0 else float("nan")


def error_metrics(orig: np.ndarray, rec: np.ndarray, lat: np.ndarray | None = None) -> dict:
    """RMSE, max abs error, PSNR (data range), cos(lat)-weighted RMSE (lat on axis -2), spectra."""
    o = np.asarray(orig, dtype=np.float64)
    r = np.asarray(rec, dtype=np.float64).reshape(o.shape)
    err = r - o
    valid = np.isfinite(o)
    e = err[valid]
    rmse = float(np.sqrt(np.mean(e**2)))
    span = _span(o)
    out = {
        "rmse": rmse,
        "max_abs_error": float(np.max(np.abs(e))),
        "psnr_db": float(20 * np.log10(span / rmse)) if rmse > 0 else float("inf"),
        "rmse_coslat": float("nan"),
    }
    if lat is not None and o.ndim >= 2 and o.shape[-2] == len(lat):
        w = np.broadcast_to(np.cos(np.deg2rad(np.asarray(lat, dtype=np.float64)))[:, None], o.shape[-2:])
        w = np.broadcast_to(w, o.shape)
        out["rmse_coslat"] = float(np.sqrt(np.sum(w[valid] * e**2) / np.sum(w[valid])))
        out.update(band_errors(err, valid, lat))
    so, sr = zonal_spectrum(o), zonal_spectrum(r)
    out["hf_power_ratio"] = hf_power_ratio(so, sr)
    out["_spectrum"] = sr
    return out


#: latitude bands (degrees north) for per-band errors: poles, mid-latitudes, tropics
LAT_BANDS = {"90S-60S": (-90, -60), "60S-30S": (-60, -30), "30S-30N": (-30, 30), "30N-60N": (30, 60), "60N-90N": (60, 90)}


def band_errors(err: np.ndarray, valid: np.ndarray, lat) -> dict:
    """RMSE and max abs error in each of :data:`LAT_BANDS` (lat on axis -2; NaN for an empty band)."""
    lat = np.asarray(lat, dtype=np.float64)
    out = {}
    for name, (lo, hi) in LAT_BANDS.items():
        rows = (lat >= lo) & (lat <= hi) if hi == 90 else (lat >= lo) & (lat < hi)
        e = err[..., rows, :][valid[..., rows, :]]
        out[f"rmse_{name}"] = float(np.sqrt(np.mean(e**2))) if e.size else float("nan")
        out[f"max_{name}"] = float(np.max(np.abs(e))) if e.size else float("nan")
    return out


# -- one measured point ----------------------------------------------------------------------

COLUMNS = [
    "dataset", "codec", "label", "setting", "params", "latent_dim", "bits", "n_values", "raw_bytes",
    "written_bytes", "compression_ratio", "bits_per_value", "rmse", "max_abs_error", "psnr_db",
    "rmse_coslat", *[f"{k}_{b}" for b in LAT_BANDS for k in ("rmse", "max")], "hf_power_ratio", "encode_s", "decode_s", "encode_values_per_s",
    "decode_values_per_s", "model_bytes", "note",
]


def _median_time(fn, repeats: int):
    times, result = [], None
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return result, float(np.median(times))


def measure(codec, x: np.ndarray, *, dataset: str, name: str, label: str, setting: str, params: dict,
            lat=None, repeats: int = 1, warmup: bool = True, latent_dim=None, bits=None, model_bytes=0) -> dict:
    """Encode/decode ``x`` with ``codec`` (``encode(x)``, ``decode(bytes, x)``) and return one row."""
    if warmup:
        first = x[:1]
        codec.decode(codec.encode(first), first)
    data, t_enc = _median_time(lambda: codec.encode(x), repeats)
    data = bytes(data)
    rec, t_dec = _median_time(lambda: codec.decode(data, x), repeats)
    m = error_metrics(x, rec, lat)
    n = int(x.size)
    raw = 4 * n
    row = {
        "dataset": dataset, "codec": name, "label": label, "setting": setting,
        "params": json.dumps(params, sort_keys=True, default=float), "latent_dim": latent_dim, "bits": bits,
        "n_values": n, "raw_bytes": raw, "written_bytes": len(data),
        "compression_ratio": raw / len(data), "bits_per_value": 8.0 * len(data) / n,
        "encode_s": t_enc, "decode_s": t_dec,
        "encode_values_per_s": n / t_enc if t_enc > 0 else float("inf"),
        "decode_values_per_s": n / t_dec if t_dec > 0 else float("inf"),
        "model_bytes": model_bytes, "note": "",
        **{k: v for k, v in m.items() if not k.startswith("_")},
    }
    row["_spectrum"] = m["_spectrum"]
    return row


class _InrPeer:
    def __init__(self, codec):
        self.codec = codec

    def encode(self, x):
        return self.codec.encode(x)

    def decode(self, data, like):
        return np.asarray(self.codec.decode(data)).reshape(like.shape)


def _rmse(a, b) -> float:
    e = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    return float(np.sqrt(np.nanmean(e**2)))


def _fmt_num(v: float) -> str:
    return f"{v:.3g}"


# -- the benchmark ---------------------------------------------------------------------------


@dataclass
class BenchResult:
    dataset: str
    rows: list[dict]
    missing: dict[str, str]
    info: dict
    original_spectrum: np.ndarray
    files: dict[str, str] = field(default_factory=dict)


def machine_info() -> dict:
    import numcodecs
    import torch

    from . import __version__

    versions = {"inrcodec": __version__, "numpy": np.__version__, "torch": torch.__version__,
                "numcodecs": numcodecs.__version__}
    for mod in ("numcodecs_wasm", "numcodecs_wasm_sz3", "numcodecs_wasm_zfp", "numcodecs_wasm_sperr",
                "numcodecs_wasm_jpeg2000", "numcodecs_wasm_fourier_network", "wasmtime"):
        try:
            from importlib.metadata import version

            versions[mod.replace("_", "-")] = version(mod.replace("_", "-"))
        except Exception:
            pass
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"python": platform.python_version(), "platform": platform.platform(), "cpu": cpu,
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "versions": versions}


def run_bench(
    dataset: str,
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
) -> BenchResult:
    """Run the benchmark on the held-out test split of recipe ``dataset`` (or on a
    :class:`~inrcodec.recipes.RecipeData`'s ``test`` items, reported as ``name``).

    ``models``: inrcodec model directories/files (or ``CoinModel`` objects); ``bits``: their bit
    widths; ``peers``: peer names (default: :func:`default_peers` of the recipe's modality; missing
    ones are skipped and listed in ``result.missing``); ``quick``: two settings per peer and the first two bit widths;
    ``data``/``variable``: as in :func:`inrcodec.recipes.load_recipe_data`; ``max_items``: use
    only the first items of the test split. With ``out`` the CSV, plots and markdown are written
    there (see :func:`write_outputs`).
    """
    from . import _modelcache
    from .codec import COINppCodec
    from .model import CoinModel
    from .recipes import load_recipe, load_recipe_data

    log = log or (lambda s: None)
    if isinstance(dataset, str):
        recipe = load_recipe(dataset)
        rd = load_recipe_data(recipe, data, variable)
        name, modality = name or dataset, recipe.modality
    else:  # a RecipeData (tests, custom data)
        rd, name, modality = dataset, name or "custom", None
    if peers is None:
        peers = default_peers(modality)
    x = np.ascontiguousarray(rd.test, dtype=np.float32)
    if max_items:
        x = x[:max_items]
    lat = rd.lat
    bits = list(bits)[:2] if quick else list(bits)
    rows: list[dict] = []

    for m in models:
        model = m if isinstance(m, CoinModel) else _modelcache.model_from_path(m)[0]
        model_bytes = len(model.to_bytes())
        mname = f"model-{model.sha256[:8]}" if isinstance(m, CoinModel) else Path(m).name
        for b in bits:
            codec = COINppCodec(model, bits=int(b), inner_steps=model.encode_steps,
                                lat=None if rd.lat is None else rd.lat, lon=None if rd.lon is None else rd.lon)
            label = f"inrcodec latent {model.latent_dim}"
            log(f"inrcodec {mname}: {b} bits")
            row = measure(_InrPeer(codec), x, dataset=name, name="inrcodec", label=label,
                          setting=f"{mname} {b} bits", params={"model": str(mname), "bits": int(b),
                          "inner_steps": model.encode_steps, "sha256": model.sha256[:16]},
                          lat=lat, repeats=repeats, latent_dim=model.latent_dim, bits=int(b), model_bytes=model_bytes)
            row["note"] = "model bytes not counted per chunk (shared, stored once in the array metadata)"
            rows.append(row)

    ok, missing = available_peers(peers)
    for name_, hint in missing.items():
        log(f"peer {name_} not installed, skipped: {hint}")
    for peer in ok:
        settings = peer.quick(x) if quick else peer.sweep(x)
        spent = 0.0
        for p in settings:
            setting = ", ".join(f"{k}={_fmt_num(v) if isinstance(v, float) else v}" for k, v in p.items())
            if peer.time_budget_s is not None and spent > peer.time_budget_s:
                log(f"{peer.name} {setting}: skipped, time budget {peer.time_budget_s:.0f} s spent")
                continue
            log(f"{peer.name}: {setting}")
            t0 = time.perf_counter()
            try:
                codec = peer.make(p, x)
                row = measure(codec, x, dataset=name, name=peer.name, label=peer.label, setting=setting, params=p,
                              lat=lat, repeats=1 if peer.slow else repeats, warmup=not peer.slow)
            except Exception as exc:  # a setting a codec refuses: record it, go on
                log(f"{peer.name} {setting}: failed: {exc!r}")
                rows.append({"dataset": name, "codec": peer.name, "label": peer.label, "setting": setting,
                             "params": json.dumps(p, sort_keys=True, default=float), "note": f"failed: {exc!r}"[:200]})
                continue
            finally:
                spent += time.perf_counter() - t0
            rows.append(row)

    info = machine_info()
    info.update(dataset=name, modality=modality, test_shape=list(x.shape), source=rd.source, units=rd.units, quick=quick,
                repeats=repeats, lat_lon=rd.lat is not None, data_range=_span(x))
    if rd.train is not None and rd.train.shape[1:] == x.shape[1:]:
        # the mean training item as the prediction of every test item (no bytes at all)
        info["train_mean_rmse"] = _rmse(np.broadcast_to(np.nanmean(rd.train, axis=0), x.shape), x)
    res = BenchResult(name, rows, missing, info, zonal_spectrum(x))
    if out is not None:
        write_outputs(res, out)
    return res


# -- outputs ---------------------------------------------------------------------------------


def ok_rows(rows) -> list[dict]:
    return [r for r in rows if r.get("written_bytes")]


def write_csv(rows, path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") if r.get(k) is not None else "" for k in COLUMNS})


def read_csv(path) -> list[dict]:
    """Rows of a benchmark CSV with numbers parsed (the inverse of :func:`write_csv`)."""
    out = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            row = {}
            for k, v in r.items():
                if k in ("dataset", "codec", "label", "setting", "params", "note"):
                    row[k] = v
                elif v == "":
                    row[k] = None
                else:
                    row[k] = float(v)
            out.append(row)
    return out


def _groups(rows) -> dict[str, list[dict]]:
    g: dict[str, list[dict]] = {}
    for r in ok_rows(rows):
        g.setdefault(r["label"], []).append(r)
    for v in g.values():
        v.sort(key=lambda r: r["bits_per_value"])
    return g


def interpolate_rmse(rows, bpv: float) -> float | None:
    """A codec's RMSE at ``bpv`` bits per value, interpolated log-log along its measured points
    (lower convex hull not taken; points sorted by rate); None outside its measured rate range."""
    pts = sorted((r["bits_per_value"], r["rmse"]) for r in rows if r.get("rmse") and r["rmse"] > 0)
    if not pts or bpv < pts[0][0] or bpv > pts[-1][0]:
        return None
    # best RMSE reachable at a rate <= bpv (the frontier), interpolated between neighbours
    xs = np.log([p[0] for p in pts])
    ys = np.log(np.minimum.accumulate([p[1] for p in pts]))
    return float(np.exp(np.interp(np.log(bpv), xs, ys)))


def comparison(rows) -> list[dict]:
    """For each inrcodec point: every peer's RMSE at the same rate (interpolated) or None."""
    g = _groups(rows)
    out = []
    for r in ok_rows(rows):
        if r["codec"] != "inrcodec":
            continue
        peers = {label: interpolate_rmse(pts, r["bits_per_value"]) for label, pts in g.items()
                 if pts[0]["codec"] not in ("inrcodec",)}
        out.append({"row": r, "peers": peers})
    return out


def fourier_speedup(rows) -> list[dict]:
    """For each Fourier-network point: the fastest inrcodec encode with RMSE <= its RMSE."""
    inr = [r for r in ok_rows(rows) if r["codec"] == "inrcodec"]
    out = []
    for f in ok_rows(rows):
        if f["codec"] != "fourier-network":
            continue
        better = [r for r in inr if r["rmse"] <= f["rmse"]]
        best = min(better, key=lambda r: r["encode_s"]) if better else None
        out.append({"fourier": f, "inrcodec": best,
                    "speedup": (f["encode_s"] / best["encode_s"]) if best else None})
    return out


_PEER_COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive",
                "tab:cyan", "tab:gray"]


def _styles(groups) -> list[dict]:
    """One matplotlib style per codec label (sorted): inrcodec thick, black/red stars; peers thin."""
    markers = "os^vD<>pPhX"
    inr_colors = ["black", "tab:red", "darkviolet", "saddlebrown"]
    out, i_peer, i_inr = [], 0, 0
    for _, pts in sorted(groups.items()):
        if pts[0]["codec"] == "inrcodec":
            out.append({"color": inr_colors[i_inr % len(inr_colors)], "marker": "*", "ms": 8, "lw": 2.2, "zorder": 5})
            i_inr += 1
        else:
            out.append({"color": _PEER_COLORS[i_peer % len(_PEER_COLORS)], "marker": markers[i_peer % len(markers)],
                        "ms": 4, "lw": 1.0})
            i_peer += 1
    return out


def plot_rd(res: BenchResult, path, weighted: bool = False) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = "rmse_coslat" if weighted else "rmse"
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    groups = _groups(res.rows)
    for (label, pts), style in zip(sorted(groups.items()), _styles(groups)):
        pts = [p for p in pts if p.get(key) is not None and p[key] == p[key] and p[key] > 0]
        if not pts:
            continue
        ax.plot([p["bits_per_value"] for p in pts], [p[key] for p in pts], label=label, **style)
    if not weighted and res.info.get("train_mean_rmse"):
        ax.axhline(res.info["train_mean_rmse"], color="0.5", ls="--", lw=0.8, label="mean training item (0 bytes)")
    for ratio in (10, 100, 1000):
        ax.axvline(32 / ratio, color="0.8", lw=0.8, zorder=0)
        ax.text(32 / ratio, 1.0, f" {ratio}x", transform=ax.get_xaxis_transform(), va="top", fontsize=7, color="0.4")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("bits per value (written bytes; float32 = 32)")
    units = res.info.get("units") or "data units"
    ax.set_ylabel(("cos(lat)-weighted RMSE" if weighted else "RMSE") + f" ({units})")
    save_rd_figure(fig, ax, res, path)


def save_rd_figure(fig, ax, res: BenchResult, path) -> None:
    """Title, grid and legend of a rate-distortion figure, then write and close it."""
    import matplotlib.pyplot as plt

    ax.set_title(f"{res.dataset}: held-out test split {tuple(res.info['test_shape'])}", fontsize=9)
    ax.grid(True, which="both", lw=0.3, alpha=0.5)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_spectrum(res: BenchResult, path, ratio: float | None = None) -> float:
    """Last-axis (zonal) power spectra of the original and, per codec, the point whose ratio is
    closest to ``ratio`` (default: the median ratio of the inrcodec points, else 100)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in ok_rows(res.rows) if "_spectrum" in r]
    if ratio is None:
        inr = [r["compression_ratio"] for r in rows if r["codec"] == "inrcodec"]
        ratio = float(np.median(inr)) if inr else 100.0
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    k = np.arange(len(res.original_spectrum))
    ax.plot(k[1:], res.original_spectrum[1:], color="0.4", lw=3, alpha=0.6, label="original", zorder=6)
    for (label, pts), style in zip(sorted(_groups(rows).items()), _styles(_groups(rows))):
        best = min(pts, key=lambda r: abs(math.log(r["compression_ratio"] / ratio)))
        style = {**style, "marker": None, "lw": 1.8 if best["codec"] == "inrcodec" else 0.9}
        ax.plot(k[1:], best["_spectrum"][1:], **style,
                label=f"{label} ({best['compression_ratio']:.0f}x, hf {best['hf_power_ratio']:.2f})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    latlon = res.info.get("lat_lon")
    ax.set_xlabel("zonal wavenumber" if latlon else "wavenumber along the last axis")
    ax.set_ylabel("power (mean over items" + (", latitudes)" if latlon else ", rows)"))
    ax.set_title(f"{res.dataset}: spectra near {ratio:.0f}x (hf = power ratio, upper half of wavenumbers)", fontsize=8)
    ax.grid(True, which="both", lw=0.3, alpha=0.5)
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return ratio


def markdown(res: BenchResult, command: str | None = None) -> str:
    info = res.info
    v = ", ".join(f"{k} {val}" for k, val in info["versions"].items())
    lines = [
        f"### `{res.dataset}`: held-out test split {tuple(info['test_shape'])} ({info['source']})", "",
    ]
    if command:
        lines += [f"Command: `{command}`", ""]
    lines += [
        f"Machine: {info['cpu']}, {info['cpu_count']} CPUs visible (shared), torch {info['torch_threads']} threads, "
        f"Python {info['python']}; {v}.", "",
        "Times are wall clock on that CPU (encode/decode of the whole test split; median of "
        f"{info['repeats']} run(s) after a warm-up, except the Fourier network, timed once). Ratio and bits/value "
        "from the bytes written (inrcodec: chunk bytes; its shared model is not counted per chunk, see `model_bytes`). "
        f"PSNR against the data range {info['data_range']:.4g} {info['units']}."
        + (f" For scale: the mean training item, as a prediction of every test item, has RMSE "
           f"{info['train_mean_rmse']:.4g} {info['units']}." if info.get("train_mean_rmse") else ""), "",
    ]
    if res.missing:
        lines += ["Peers not installed (skipped): " + "; ".join(f"{k}: `{v}`" for k, v in res.missing.items()), ""]
    latlon = info.get("lat_lon")
    hdr = "| codec | setting | ratio | bits/value | RMSE | max abs err | PSNR dB |"
    sep = "|---|---|---|---|---|---|---|"
    if latlon:
        hdr += " RMSE cos(lat) |"
        sep += "---|"
    hdr += " hf power | encode s | decode s | encode Mval/s |"
    sep += "---|---|---|---|"
    lines += [hdr, sep]
    for r in sorted(ok_rows(res.rows), key=lambda r: (r["label"], r["bits_per_value"])):
        line = (f"| {r['label']} | {r['setting']} | {r['compression_ratio']:.1f}x | {r['bits_per_value']:.3f} | "
                f"{r['rmse']:.4g} | {r['max_abs_error']:.4g} | {r['psnr_db']:.2f} |")
        if latlon:
            line += f" {r['rmse_coslat']:.4g} |"
        line += (f" {r['hf_power_ratio']:.3f} | {r['encode_s']:.3g} | {r['decode_s']:.3g} | "
                 f"{r['encode_values_per_s'] / 1e6:.3g} |")
        lines.append(line)
    failed = [r for r in res.rows if not r.get("written_bytes")]
    if failed:
        lines += ["", "Failed settings: " + "; ".join(f"{r['label']} {r['setting']} ({r['note']})" for r in failed)]
    comp = comparison(res.rows)
    if comp:
        labels = sorted({k for c in comp for k in c["peers"]})
        lines += ["", "RMSE of each peer at inrcodec's rate (log-log interpolation along the peer's best RMSE "
                  "at or below that rate; `-`: the peer's sweep does not reach that rate):", "",
                  "| inrcodec point | ratio | RMSE | " + " | ".join(labels) + " |",
                  "|---|---|---|" + "---|" * len(labels)]
        for c in comp:
            r = c["row"]
            cells = [(f"{c['peers'][k]:.4g}" if c["peers"].get(k) is not None else "-") for k in labels]
            lines.append(f"| {r['setting']} | {r['compression_ratio']:.0f}x | {r['rmse']:.4g} | " + " | ".join(cells) + " |")
    fs = fourier_speedup(res.rows)
    if fs:
        lines += ["", "Encode time against the Fourier-feature network (fastest inrcodec point with RMSE <= the network's):", ""]
        for f in fs:
            fr = f["fourier"]
            if f["inrcodec"] is None:
                lines.append(f"- {fr['setting']}: RMSE {fr['rmse']:.4g}, encode {fr['encode_s']:.3g} s; no inrcodec point as good")
            else:
                i = f["inrcodec"]
                lines.append(f"- {fr['setting']}: RMSE {fr['rmse']:.4g} at {fr['compression_ratio']:.0f}x, encode "
                             f"{fr['encode_s']:.3g} s; inrcodec {i['setting']}: RMSE {i['rmse']:.4g} at "
                             f"{i['compression_ratio']:.0f}x, encode {i['encode_s']:.3g} s: {f['speedup']:.0f}x faster")
    return "\n".join(lines) + "\n"


def write_outputs(res: BenchResult, out, command: str | None = None) -> dict[str, str]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "csv": str(out / f"bench_{res.dataset}.csv"),
        "rd_png": str(out / f"bench_{res.dataset}_rd.png"),
        "spectrum_png": str(out / f"bench_{res.dataset}_spectrum.png"),
        "md": str(out / f"bench_{res.dataset}.md"),
        "json": str(out / f"bench_{res.dataset}_info.json"),
    }
    write_csv(res.rows, files["csv"])
    np.savez_compressed(out / f"bench_{res.dataset}_spectra.npz", original=res.original_spectrum,
                        **{f"row{i}": r["_spectrum"] for i, r in enumerate(res.rows) if "_spectrum" in r})
    if ok_rows(res.rows):
        plot_rd(res, files["rd_png"])
        if res.info.get("lat_lon"):
            files["rd_coslat_png"] = str(out / f"bench_{res.dataset}_rd_coslat.png")
            plot_rd(res, files["rd_coslat_png"], weighted=True)
        plot_spectrum(res, files["spectrum_png"])
        if res.info.get("modality") in _MODALITY_DEFAULTS:
            from .modality_peers import plot_psnr_rate

            files["psnr_png"] = str(out / f"bench_{res.dataset}_psnr.png")
            plot_psnr_rate(res, files["psnr_png"])
    Path(files["md"]).write_text(markdown(res, command))
    Path(files["json"]).write_text(json.dumps({**res.info, "missing_peers": res.missing}, indent=2, default=str))
    res.files = files
    return files


def load_result(out, dataset: str) -> BenchResult:
    """A :class:`BenchResult` read back from ``write_outputs``' files (to redraw plots)."""
    out = Path(out)
    rows = read_csv(out / f"bench_{dataset}.csv")
    info = json.loads((out / f"bench_{dataset}_info.json").read_text())
    missing = info.pop("missing_peers", {})
    spec_path = out / f"bench_{dataset}_spectra.npz"
    original = np.zeros(1)
    if spec_path.exists():
        with np.load(spec_path) as z:
            original = z["original"]
            for i, r in enumerate(rows):
                if f"row{i}" in z:
                    r["_spectrum"] = z[f"row{i}"]
    return BenchResult(dataset, rows, missing, info, original)


def main(args) -> int:
    """The ``inrcodec bench`` sub-command (argparse namespace from :mod:`inrcodec.cli`)."""
    import shlex
    import sys

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if not args.model:
        print("inrcodec bench: no --model given, benchmarking the peers only", file=sys.stderr)
    ok, missing = available_peers(args.peers) if args.peers else ([], {})
    if missing:
        print("inrcodec bench: peers not installed, skipped:", file=sys.stderr)
        for k, v in missing.items():
            print(f"  {k}: {v}", file=sys.stderr)
    res = run_bench(
        args.dataset, models=args.model or (), bits=args.bits, peers=args.peers, quick=args.quick,
        data=args.data or None, variable=args.variable, max_items=args.max_items, repeats=args.repeats,
        log=(lambda s: print(f"  {s}", file=sys.stderr, flush=True)) if not args.quiet else None,
    )
    parts = ["inrcodec bench", args.dataset]
    if args.model:
        parts += ["--model", *map(str, args.model)]
    parts += ["--bits", *map(str, args.bits)]
    for flag, val in (("--peers", args.peers), ("--data", args.data)):
        if val:
            parts += [flag, *map(str, val)]
    for flag, val in (("--variable", args.variable), ("--max-items", args.max_items), ("--threads", args.threads)):
        if val:
            parts += [flag, str(val)]
    if args.repeats != 1:
        parts += ["--repeats", str(args.repeats)]
    if args.quick:
        parts.append("--quick")
    parts += ["--out", str(args.out)]
    command = " ".join(shlex.quote(p) if i > 0 else p for i, p in enumerate(parts))
    files = write_outputs(res, args.out, command)
    print(Path(files["md"]).read_text())
    print("written: " + ", ".join(files.values()))
    return 0
