"""The files of a benchmark result: CSV, spectra, plots, markdown and machine info, written and read back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from inrcodec.bench import plots
from inrcodec.bench.report import BenchResult, markdown, ok_rows, read_csv, write_csv


def output_files(out, dataset: str) -> dict[str, Path]:
    """Where :func:`write_outputs` puts each file of a dataset's result."""
    out = Path(out)
    names = {"csv": ".csv", "rd_png": "_rd.png", "spectrum_png": "_spectrum.png", "md": ".md", "json": "_info.json",
             "spectra": "_spectra.npz", "rd_coslat_png": "_rd_coslat.png", "psnr_png": "_psnr.png"}
    return {k: out / f"bench_{dataset}{suffix}" for k, suffix in names.items()}


def write_outputs(res: BenchResult, out, command: str | None = None) -> dict[str, str]:
    """CSV, spectra, plots, markdown and machine info of ``res`` in directory ``out``; returns
    ``{kind: path}`` of the files written (also set as ``res.files``)."""
    Path(out).mkdir(parents=True, exist_ok=True)
    paths = output_files(out, res.dataset)
    write_csv(res.rows, paths["csv"])
    np.savez_compressed(paths["spectra"], original=res.original_spectrum,
                        **{f"row{i}": r["_spectrum"] for i, r in enumerate(res.rows) if "_spectrum" in r})
    files = {k: str(paths[k]) for k in ("csv", "rd_png", "spectrum_png", "md", "json")}
    if ok_rows(res.rows):
        files.update(plots.plot_all(res, paths))
    Path(files["md"]).write_text(markdown(res, command))
    Path(files["json"]).write_text(json.dumps({**res.info, "missing_peers": res.missing}, indent=2, default=str))
    res.files = files
    return files


def load_result(out, dataset: str) -> BenchResult:
    """A :class:`BenchResult` read back from ``write_outputs``' files (to redraw plots)."""
    paths = output_files(out, dataset)
    rows = read_csv(paths["csv"])
    info = json.loads(paths["json"].read_text())
    missing = info.pop("missing_peers", {})
    original = np.zeros(1)
    if paths["spectra"].exists():
        with np.load(paths["spectra"]) as z:
            original = z["original"]
            for i, r in enumerate(rows):
                if f"row{i}" in z:
                    r["_spectrum"] = z[f"row{i}"]
    return BenchResult(dataset, rows, missing, info, original)
