"""The results of ``inrcodec bench``: the CSV of every measured point, the markdown summary, and
the comparisons in it (peers at inrcodec's rate, encode time against the Fourier-feature network)."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field

import numpy as np

from inrcodec.metrics import LAT_BANDS

COLUMNS = [
    "dataset", "codec", "label", "setting", "params", "latent_dim", "bits", "n_values", "raw_bytes",
    "written_bytes", "compression_ratio", "bits_per_value", "rmse", "max_abs_error", "psnr_data_range_db",
    "rmse_coslat", *[f"{k}_{b}" for b in LAT_BANDS for k in ("rmse", "max")], "hf_power_ratio", "encode_s",
    "decode_s", "encode_values_per_s", "decode_values_per_s", "model_bytes", "chunk_modes", "note",
]
_TEXT_COLUMNS = ("dataset", "codec", "label", "setting", "params", "chunk_modes", "note")
#: columns of CSVs written before the PSNR was named by its peak -> today's name
_RENAMED_COLUMNS = {"psnr_db": "psnr_data_range_db"}


@dataclass
class BenchResult:
    dataset: str
    rows: list[dict]
    missing: dict[str, str]
    info: dict
    original_spectrum: np.ndarray
    files: dict[str, str] = field(default_factory=dict)


def ok_rows(rows) -> list[dict]:
    """The rows of settings that produced bytes (not the failed ones)."""
    return [r for r in rows if r.get("written_bytes")]


def write_csv(rows, path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") if r.get(k) is not None else "" for k in COLUMNS})


def read_csv(path) -> list[dict]:
    """Rows of a benchmark CSV with numbers parsed (the inverse of :func:`write_csv`); older CSVs'
    ``psnr_db`` (it was the data-range PSNR) is read as ``psnr_data_range_db``."""
    out = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            row = {}
            for k, v in r.items():
                k = _RENAMED_COLUMNS.get(k, k)
                row[k] = v if k in _TEXT_COLUMNS else (None if v == "" else float(v))
            out.append(row)
    return out


def groups(rows) -> dict[str, list[dict]]:
    """The successful rows by codec label, each list sorted by rate."""
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


def interpolate_max(rows, bpv: float) -> float | None:
    """A codec's max abs error at ``bpv`` bits per value, log-log between its two measured points
    around that rate (max errors need not fall with rate: no frontier); None outside its range."""
    pts = sorted((r["bits_per_value"], r["max_abs_error"]) for r in rows if r.get("max_abs_error"))
    if not pts or bpv < pts[0][0] or bpv > pts[-1][0]:
        return None
    return float(np.exp(np.interp(np.log(bpv), np.log([p[0] for p in pts]), np.log([p[1] for p in pts]))))


def interpolate_ratio(rows, error: float, key: str = "rmse_coslat") -> float | None:
    """A codec's compression ratio at error ``error`` (column ``key``): log-log interpolation along
    its frontier (the best ratio reached at or below each error); None outside its error range."""
    pts = sorted((r[key], r["compression_ratio"]) for r in rows if r.get(key) and r[key] > 0)
    if not pts or error < pts[0][0] or error > pts[-1][0]:
        return None
    xs = np.log([p[0] for p in pts])
    ys = np.log(np.maximum.accumulate([p[1] for p in pts]))
    return float(np.exp(np.interp(np.log(error), xs, ys)))


def comparison(rows) -> list[dict]:
    """For each inrcodec point: every peer's RMSE and max abs error at the same rate
    (interpolated; None where the peer's sweep does not reach that rate)."""
    g = groups(rows)
    out = []
    for r in ok_rows(rows):
        if r["codec"] != "inrcodec":
            continue
        bpv = r["bits_per_value"]
        peers = {label: interpolate_rmse(pts, bpv) for label, pts in g.items() if pts[0]["codec"] != "inrcodec"}
        maxes = {label: interpolate_max(pts, bpv) for label, pts in g.items() if pts[0]["codec"] != "inrcodec"}
        out.append({"row": r, "peers": peers, "max": maxes})
    return out


def fourier_comparison(rows) -> list[dict]:
    """For each Fourier-network point: the fastest inrcodec encode with RMSE <= its RMSE
    (``inrcodec``, None if no point is as good) and ``encode_time_ratio`` = inrcodec's encode
    time over the network's (above 1: inrcodec is slower)."""
    inr = [r for r in ok_rows(rows) if r["codec"] == "inrcodec"]
    out = []
    for f in ok_rows(rows):
        if f["codec"] != "fourier-network":
            continue
        better = [r for r in inr if r["rmse"] <= f["rmse"]]
        best = min(better, key=lambda r: r["encode_s"]) if better else None
        out.append({"fourier": f, "inrcodec": best,
                    "encode_time_ratio": best["encode_s"] / f["encode_s"] if best else None})
    return out


def relative_speed(seconds: float, reference_seconds: float) -> str:
    """How ``seconds`` compares with ``reference_seconds``: "20x slower", "3.5x faster" or "as fast"."""
    ratio = seconds / reference_seconds
    if np.isclose(ratio, 1.0, rtol=0.05):
        return "as fast"
    times = ratio if ratio > 1 else 1 / ratio
    return (f"{times:.1f}x" if times < 10 else f"{times:.0f}x") + (" slower" if ratio > 1 else " faster")


# -- markdown ------------------------------------------------------------------------------------


def markdown(res: BenchResult, command: str | None = None) -> str:
    """The summary: how it was measured, every point, peers at inrcodec's rates, encode times."""
    lines = _preamble(res, command) + _points_table(res)
    failed = [r for r in res.rows if not r.get("written_bytes")]
    if failed:
        lines += ["", "Failed settings: " + "; ".join(f"{r['label']} {r['setting']} ({r['note']})" for r in failed)]
    return "\n".join(lines + _comparison_lines(res.rows) + _fourier_lines(res.rows)) + "\n"


def _preamble(res: BenchResult, command: str | None) -> list[str]:
    info = res.info
    versions = ", ".join(f"{k} {val}" for k, val in info["versions"].items())
    lines = [f"### `{res.dataset}`: held-out test split {tuple(info['test_shape'])} ({info['source']})", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    lines += [
        f"Machine: {info['cpu']}, {info['cpu_count']} CPUs visible (shared), torch {info['torch_threads']} threads, "
        f"Python {info['python']}; {versions}.", "",
        "Times are wall clock on that CPU (encode/decode of the whole test split; median of "
        f"{info['repeats']} run(s) after a warm-up, except the Fourier network, timed once). Ratio and bits/value "
        "from the bytes written (inrcodec: chunk bytes; its shared model is not counted per chunk, see `model_bytes`). "
        f"PSNR: peak = the test split's data range {info['data_range']:.4g} {info['units']} (`psnr_data_range_db`)."
        + (f" For scale: the mean training item, as a prediction of every test item, has RMSE "
           f"{info['train_mean_rmse']:.4g} {info['units']}." if info.get("train_mean_rmse") else ""), "",
    ]
    if res.missing:
        lines += ["Peers not installed (skipped): " + "; ".join(f"{k}: `{v}`" for k, v in res.missing.items()), ""]
    return lines


def _points_table(res: BenchResult) -> list[str]:
    latlon = res.info.get("lat_lon")
    hdr = "| codec | setting | ratio | bits/value | RMSE | max abs err | PSNR dB (data range) |"
    hdr += " RMSE cos(lat) |" * bool(latlon) + " hf power | encode s | decode s | encode Mval/s |"
    lines = [hdr, "|---" * hdr.count(" |") + "|"]
    for r in sorted(ok_rows(res.rows), key=lambda r: (r["label"], r["bits_per_value"])):
        line = (f"| {r['label']} | {r['setting']} | {r['compression_ratio']:.1f}x | {r['bits_per_value']:.3f} | "
                f"{r['rmse']:.4g} | {r['max_abs_error']:.4g} | {r['psnr_data_range_db']:.2f} |")
        if latlon:
            line += f" {r['rmse_coslat']:.4g} |"
        line += (f" {r['hf_power_ratio']:.3f} | {r['encode_s']:.3g} | {r['decode_s']:.3g} | "
                 f"{r['encode_values_per_s'] / 1e6:.3g} |")
        lines.append(line)
    return lines


def _comparison_lines(rows) -> list[str]:
    comp = comparison(rows)
    if not comp:
        return []
    labels = sorted({k for c in comp for k in c["peers"]})
    lines = ["", "RMSE (max abs error) of each peer at inrcodec's rate (log-log interpolation along the peer's "
             "best RMSE at or below that rate, max abs error between its neighbouring points; `-`: the peer's "
             "sweep does not reach that rate):", "",
             "| inrcodec point | ratio | RMSE (max abs err) | " + " | ".join(labels) + " |",
             "|---|---|---|" + "---|" * len(labels)]
    for c in comp:
        r = c["row"]
        cells = [f"{c['peers'][k]:.4g} ({c['max'][k]:.3g})" if c["peers"].get(k) is not None else "-"
                 for k in labels]
        lines.append(f"| {r['setting']} | {r['compression_ratio']:.0f}x | {r['rmse']:.4g} ({r['max_abs_error']:.3g}) | "
                     + " | ".join(cells) + " |")
    return lines


def _fourier_lines(rows) -> list[str]:
    fc = fourier_comparison(rows)
    if not fc:
        return []
    lines = ["", "Encode time against the Fourier-feature network (fastest inrcodec point with RMSE <= the network's):", ""]
    for c in fc:
        f, i = c["fourier"], c["inrcodec"]
        head = f"- {f['setting']}: RMSE {f['rmse']:.4g} at {f['compression_ratio']:.0f}x, encode {f['encode_s']:.3g} s"
        if i is None:
            lines.append(head + "; no inrcodec point as good")
        else:
            lines.append(f"{head}; inrcodec {i['setting']}: RMSE {i['rmse']:.4g} at {i['compression_ratio']:.0f}x, "
                         f"encode {i['encode_s']:.3g} s: inrcodec {relative_speed(i['encode_s'], f['encode_s'])}")
    return lines
