"""The figures of ``inrcodec bench``: rate-distortion, zonal spectra, and PSNR against the
modality's own rate unit (images, speech, MRI). matplotlib is imported here only."""

from __future__ import annotations

import math

import numpy as np

from inrcodec.bench.modality_peers import DEFAULT_PEERS as MODALITY_PEERS
from inrcodec.bench.modality_peers import rate_axis
from inrcodec.bench.report import BenchResult, groups, ok_rows

_PEER_COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive",
                "tab:cyan", "tab:gray"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_all(res: BenchResult, paths: dict) -> dict[str, str]:
    """Every figure that applies to ``res`` at ``paths`` (see ``report.output_files``); ``{kind: path}``."""
    plot_rd(res, paths["rd_png"])
    written = {}
    if res.info.get("lat_lon"):
        plot_rd(res, paths["rd_coslat_png"], weighted=True)
        written["rd_coslat_png"] = str(paths["rd_coslat_png"])
    plot_spectrum(res, paths["spectrum_png"])
    if res.info.get("modality") in MODALITY_PEERS:
        plot_psnr_rate(res, paths["psnr_png"])
        written["psnr_png"] = str(paths["psnr_png"])
    return written


def styles(grouped) -> list[dict]:
    """One matplotlib style per codec label (sorted): inrcodec thick, black/red stars; peers thin."""
    markers = "os^vD<>pPhX"
    inr_colors = ["black", "tab:red", "darkviolet", "saddlebrown"]
    out, i_peer, i_inr = [], 0, 0
    for _, pts in sorted(grouped.items()):
        if pts[0]["codec"] == "inrcodec":
            out.append({"color": inr_colors[i_inr % len(inr_colors)], "marker": "*", "ms": 8, "lw": 2.2, "zorder": 5})
            i_inr += 1
        else:
            out.append({"color": _PEER_COLORS[i_peer % len(_PEER_COLORS)], "marker": markers[i_peer % len(markers)],
                        "ms": 4, "lw": 1.0})
            i_peer += 1
    return out


def plot_rd(res: BenchResult, path, weighted: bool = False) -> None:
    """RMSE (or cos(lat)-weighted RMSE) against bits per value, one line per codec label."""
    plt = _pyplot()
    key = "rmse_coslat" if weighted else "rmse"
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    grouped = groups(res.rows)
    for (label, pts), style in zip(sorted(grouped.items()), styles(grouped)):
        pts = [p for p in pts if p.get(key) is not None and p[key] == p[key] and p[key] > 0]
        if pts:
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
    _save(fig, ax, path, f"{res.dataset}: held-out test split {tuple(res.info['test_shape'])}", 9, 7)


def _save(fig, ax, path, title: str, title_size: int, legend_size: int) -> None:
    ax.set_title(title, fontsize=title_size)
    ax.grid(True, which="both", lw=0.3, alpha=0.5)
    ax.legend(fontsize=legend_size)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    _pyplot().close(fig)


def plot_spectrum(res: BenchResult, path, ratio: float | None = None) -> float:
    """Last-axis (zonal) power spectra of the original and, per codec, the point whose ratio is
    closest to ``ratio`` (default: the median ratio of the inrcodec points, else 100)."""
    plt = _pyplot()
    rows = [r for r in ok_rows(res.rows) if "_spectrum" in r]
    if ratio is None:
        inr = [r["compression_ratio"] for r in rows if r["codec"] == "inrcodec"]
        ratio = float(np.median(inr)) if inr else 100.0
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    k = np.arange(len(res.original_spectrum))
    ax.plot(k[1:], res.original_spectrum[1:], color="0.4", lw=3, alpha=0.6, label="original", zorder=6)
    grouped = groups(rows)
    for (label, pts), style in zip(sorted(grouped.items()), styles(grouped)):
        best = min(pts, key=lambda r: abs(math.log(r["compression_ratio"] / ratio)))
        style = {**style, "marker": None, "lw": 1.8 if best["codec"] == "inrcodec" else 0.9}
        ax.plot(k[1:], best["_spectrum"][1:], **style,
                label=f"{label} ({best['compression_ratio']:.0f}x, hf {best['hf_power_ratio']:.2f})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    latlon = res.info.get("lat_lon")
    ax.set_xlabel("zonal wavenumber" if latlon else "wavenumber along the last axis")
    ax.set_ylabel("power (mean over items" + (", latitudes)" if latlon else ", rows)"))
    _save(fig, ax, path, f"{res.dataset}: spectra near {ratio:.0f}x (hf = power ratio, upper half of wavenumbers)", 8, 6)
    return ratio


def plot_psnr_rate(res: BenchResult, path) -> None:
    """Data-range PSNR against bpp or kbps, one line per codec (inrcodec thick), from a bench result's rows."""
    plt = _pyplot()
    import matplotlib.ticker

    label, factor = rate_axis(res.info.get("modality"))
    grouped = groups(res.rows)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for (name, pts), style in zip(sorted(grouped.items()), styles(grouped)):
        ax.plot([p["bits_per_value"] * factor for p in pts], [p["psnr_data_range_db"] for p in pts],
                label=name, **style)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel(label + " (bytes written)")
    ax.set_ylabel(f"PSNR (dB, peak = test-split range {res.info['data_range']:.3g})")
    save_rd_figure(fig, ax, res, path)
