"""What a trained recipe reports: held-out errors and rates from the real codec bytes, markdown, figures.

PSNR here is ``psnr_training_range_db``: peak = the model's training range (``CoinModel.scale``),
the same number as the training curves' normalised-units PSNR (:mod:`inrcodec.metrics`).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from inrcodec import metrics
from inrcodec.recipes.data import RecipeData


def evaluate_fields(model, fields: dict, bits_list) -> dict:
    """:func:`evaluate` on every held-out field (``test-time`` and ``test-source`` splits).

    ``rows``/``baseline``/``test_shape`` are those of the first ``test-source`` field (else the
    first ``test-time`` one); ``tests`` lists every set. The baseline of a set is its own
    time-mean field (what one stored mean field would give).
    """
    tests = []
    for split in ("test-source", "test-time"):
        for f in sorted(fields.get(split, []), key=lambda f: -f.values[0].size):
            g = model.make_grid(f.values.shape[1:], lat=f.lat, lon=f.lon)
            rd = RecipeData(f.values, f.values, f.values, lat=f.lat, lon=f.lon)
            r = evaluate(model, rd, bits_list, g, baseline="the set's own time-mean field (baseline)", entropy_options=(True,))
            r.update(split=split, field=f.name, spacing=[round(v, 3) for v in g.spacing()])
            tests.append(r)
    first = tests[0]
    return {"test_shape": first["test_shape"], "rows": first["rows"], "baseline": first["baseline"], "tests": tests}


def evaluate(model, rd: RecipeData, bits_list, grid, baseline: str = "training mean (baseline)", entropy_options=(False, True)) -> dict:
    """Held-out (test split) error and rate, from the real codec bytes at each bit width.

    The codec is the network alone (``residual_coder="none"``): the rows score the model, and with
    the default residual coder a chunk may be SPERR alone, which says nothing about it (the MRI
    validation split: the same 19.8 dB SPERR chunk at 2, 4 and 8 bits). ``inrcodec bench`` measures
    the default codec. lat/lon data also get the cos(latitude)-weighted RMSE (``rmse_coslat``).
    """
    from inrcodec.codec import COINppCodec

    test = np.ascontiguousarray(rd.test, dtype=np.float32)
    rows = []
    latents = model.encode(test, grid)
    recon = model.decode(latents, grid)
    k_values = latents.size
    m = lambda label, bits, dec, bpv, **kw: _metrics(label, bits, test, dec, bpv, model.scale, lat=rd.lat, **kw)
    rows.append(m("float32 latents", None, recon, 32 * k_values / test.size, estimated=True))
    for b in bits_list:
        for entropy in entropy_options:
            codec = COINppCodec(model, bits=int(b), lat=rd.lat, lon=rd.lon, entropy_coding=entropy,
                                residual_coder="none")
            enc = codec.encode(test)
            dec = codec.decode(enc)
            label = f"{b} bits" + (" + entropy coding" if entropy else "")
            rows.append(m(label, int(b), dec, 8 * len(enc) / test.size, nbytes=len(enc)))
    with warnings.catch_warnings():  # cells missing in every item (land in an ocean field) stay NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(rd.train, axis=0)
    clim = m(baseline, None, np.broadcast_to(mean, test.shape), float("nan"))
    out = {"test_shape": list(test.shape), "rows": rows, "baseline": clim}
    if model.grid_kind == "cartesian" and model.patch_shape:
        out["patch_mean"] = m("patch means (baseline)", None, patch_means(model, test, grid), float("nan"))
    return out


def patch_means(model, values, grid) -> np.ndarray:
    """``values`` (N, *spatial) with every patch of the model's partition replaced by its mean: what
    a model that learnt only patch means reconstructs, so one that learnt structure must beat it."""
    part = model.partition(grid)
    patches = part.extract(np.asarray(values, dtype=np.float64))
    means = np.nanmean(patches, axis=tuple(range(2, patches.ndim)), keepdims=True)
    return part.assemble(np.ascontiguousarray(np.broadcast_to(means, patches.shape)))


def _metrics(label, bits, original, decoded, bpv, training_range, estimated=False, nbytes=None, lat=None) -> dict:
    """One report row: errors over the finite originals (:mod:`inrcodec.metrics`) and the rate."""
    weighted = {} if lat is None else {"rmse_coslat": metrics.rmse_coslat(original, decoded, lat)}
    return {**weighted,
        "setting": label, "bits": bits, "rmse": metrics.rmse(original, decoded),
        "max_abs_error": metrics.max_abs_error(original, decoded),
        "psnr_training_range_db": metrics.psnr_training_range(original, decoded, training_range),
        "bits_per_value": float(bpv), "compression_ratio": float(32.0 / bpv) if bpv == bpv and bpv > 0 else None,
        "bytes": nbytes, "rate_estimated": estimated,
    }


def report_markdown(r: dict) -> str:
    lines = [
        f"# inrcodec recipe `{r['recipe']}` (preset `{r['preset']}`)", "",
        f"- data: {r['data']}", f"- split (items): {r['split']}", f"- model: `{r['model_file']}` sha256 `{r['model_sha256']}`",
        f"- architecture: {r['architecture']}, patch {r['patch_shape']}", _start_line(r),
        *(["- time ranges: " + "; ".join(f"{k} {a} to {b}" for k, (a, b) in r["time_ranges"].items())] if r.get("time_ranges") else []),
        f"- meta-training: {r['steps']} steps{_budget_note(r)}, {r['train_seconds']} s on {r['device']} (total {r['total_seconds']} s); "
        f"final validation PSNR {r['final_val_psnr']:.2f} dB (3 inner steps; peak = training range)" if r.get("final_val_psnr") is not None else "",
        "", f"Held-out test split {r['test_shape']}" + (f" ({r['tests'][0]['split']}: {r['tests'][0]['field']})" if r.get("tests") else "")
        + f"; errors in {r['units'] or 'data units'}; rate from the real chunk bytes "
        "(headers included) except the float32 row, which counts 32 bits per latent value.", "",
    ]
    lines += _rows_markdown(r["rows"] + [r["baseline"]] + ([r["patch_mean"]] if r.get("patch_mean") else []))
    for t in r.get("tests", [])[1:]:
        lines += ["", f"### {t['split']}: {t['field']} {t['test_shape']}, grid spacing {t['spacing']} degrees", ""]
        lines += _rows_markdown(t["rows"] + [t["baseline"]])
    return "\n".join(lines) + "\n"


def _start_line(r: dict) -> str:
    init = r.get("init")
    return "- initialised at random" if not init else f"- fine-tuned from: {init['name']} sha256 `{init['sha256']}`"


def _budget_note(r: dict) -> str:
    """Why training stopped before the planned steps, if it did."""
    planned = r.get("planned_steps", r["steps"])
    if r["steps"] >= planned:
        return ""
    return f" of {planned} (stopped by the --minutes {r['budget_minutes']:g} budget)" if r.get("budget_minutes") else f" of {planned}"


def _rows_markdown(rows) -> list[str]:
    coslat = "rmse_coslat" in rows[0]
    head = "| setting | bits/value | ratio vs float32 | RMSE |" + (" cos(lat) RMSE |" if coslat else "") + " max abs error | PSNR (dB, training range) |"
    lines = [head, "|---" * head.count(" |") + "|"]
    for row in rows:
        ratio = f"{row['compression_ratio']:.0f}x" if row["compression_ratio"] else "-"
        bpv = f"{row['bits_per_value']:.4f}" if row["bits_per_value"] == row["bits_per_value"] else "-"
        w = f" {row['rmse_coslat']:.4g} |" if coslat else ""
        lines.append(f"| {row['setting']} | {bpv} | {ratio} | {row['rmse']:.4g} |{w} {row['max_abs_error']:.4g} | {row['psnr_training_range_db']:.2f} |")
    return lines


def plots(out: Path, history, model, rd: RecipeData, grid, report) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(history.steps, metrics.psnr_normalised(np.asarray(history.loss)), lw=0.5, alpha=0.6, label="train (outer loss)")
    ax.plot(history.val_steps, history.val_psnr, "o-", label="validation")
    ax.set_xlabel("outer step")
    ax.set_ylabel("PSNR (dB, peak = training range)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "learning_curve.png", dpi=100)
    plt.close(fig)

    item = rd.test[:1]
    recon = model.decode(model.encode(item, grid), grid)[0]
    orig = item[0]
    if orig.ndim == 3:  # volumes: the middle slice
        orig, recon = orig[orig.shape[0] // 2], recon[recon.shape[0] // 2]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    if orig.ndim == 1:
        for ax, data, title in zip(axes, (orig, recon, recon - orig), ("original", "reconstruction", "residual")):
            ax.plot(data, lw=0.6)
            ax.set_title(title)
    else:
        origin = "lower" if rd.lat is not None else "upper"
        vmin, vmax = np.nanmin(orig), np.nanmax(orig)
        lim = float(np.nanmax(np.abs(recon - orig))) or 1.0
        for ax, data, title, kw in zip(
            axes, (orig, recon, recon - orig), ("original", "reconstruction (float latents)", "residual"),
            ({"vmin": vmin, "vmax": vmax}, {"vmin": vmin, "vmax": vmax}, {"cmap": "RdBu_r", "vmin": -lim, "vmax": lim}),
        ):
            im = ax.imshow(data, origin=origin, **kw)
            ax.set_title(title)
            fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    fig.savefig(out / "reconstruction.png", dpi=100)
    plt.close(fig)
