"""Held-out rate-distortion: inrcodec against SPERR, SZ3 and ZFP on the same chunks of held-out data.

Data (docs/benchmarks.md, "Held-out rate-distortion"), none of it seen by training or any choice of
settings:

* ``--data FILE`` from ``scripts/make_heldout_weather.py``: ERA5 ensemble temperature, 12-hourly,
  ``--variable t850`` (or ``t500``), ``--split val`` (members 0-3) or ``test`` (members 4-9), at
  ``--grid native`` (3 degrees, 61 x 120) or ``4deg`` (bilinear to the COIN++ paper's 46 x 90);
* ``--data pool:NAME``: a held-out set of the climate pool (``benchmarks/climate_heldout.py``:
  ``mpi_esm``, ``mpi_esm_4deg``, ``glosea4``, ``glosea4_4deg``, ``e1``; monthly / annual means).

The items are cut into chunks of ``--chunk`` items along the leading (time) axis (never across two
members) and every codec encodes each chunk on its own through its real encoder
(``COINppCodec(...).encode(chunk)``), as a Zarr array with that chunk length would. Per setting: ratio =
total float32 bytes / total chunk bytes, cos(latitude)-weighted RMSE, max abs error, encode and decode
seconds of all chunks; then each peer's ratio at inrcodec's cos RMSE (log-log along the peer's frontier).

Usage::

    python scripts/make_heldout_weather.py CFGRIB_SDIST --out heldout_weather.nc
    python benchmarks/heldout_rd.py --data heldout_weather.nc --variable t850 --split test --grid 4deg
    python benchmarks/heldout_rd.py --data pool:mpi_esm --chunk 4
    python benchmarks/heldout_rd.py --data heldout_weather.nc --split val --codec-option max_abs_error=2 --peers
    python benchmarks/heldout_rd.py --data heldout_weather.nc --split val --grid 4deg --target-ratio 50 200 1000 \
        --codec-option residual_coder=sperr --peers

``--target-ratio R ...`` sweeps rate control (``target_ratio``) instead of ``--bits``; the table's
"modes" column gives the share of chunks per chunk mode (network alone ``modulations``, ``hybrid``,
``wavelet`` alone: issue 24).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np

import _smoke
from climate_heldout import PAPER_LAT, PAPER_LON, test_sets
from inrcodec.bench import report
from inrcodec.bench.cli import codec_options
from inrcodec.bench.measure import inrcodec_rows, peer_rows
from inrcodec.bench.peers import available_peers
from inrcodec.training.pool import Field, regrid
from inrcodec.recipes import RecipeData


def load(data: str, variable: str, split: str, grid: str, chunk: int) -> tuple[str, Field]:
    """(the set's name, its items (N, lat, lon) in chunk order) of ``--data``."""
    if data.startswith("pool:"):
        name = data[5:]
        return name, test_sets()[name]
    import xarray as xr

    with xr.open_dataset(data) as ds:
        da = ds[variable].where(ds["split"] == split, drop=True).transpose("member", "time", "lat", "lon")
        values, lat, lon = np.asarray(da.values, np.float32), ds["lat"].values, ds["lon"].values
    if values.shape[1] % chunk:
        raise SystemExit(f"--chunk {chunk} does not divide the {values.shape[1]} times of a member")
    field = Field(values.reshape(-1, *values.shape[2:]), lat, lon, f"{Path(data).name} {variable} {split}")
    if grid == "4deg":
        field = regrid(field, PAPER_LAT, PAPER_LON)
    return f"{variable}_{split}_{grid}", field


def _smoke_data() -> str:
    """A file shaped like make_heldout_weather.py's: 2 members (val, test) x 2 times of a smooth field."""
    import xarray as xr
    from conftest import global_lat_lon, smooth_field

    lat, lon = global_lat_lon()
    t = smooth_field(4).astype("f4").reshape(2, 2, len(lat), len(lon))
    path = _smoke.tmpdir() + "/smoke.nc"
    xr.Dataset({"t850": (("member", "time", "lat", "lon"), t)},
               coords={"lat": lat, "lon": lon, "split": ("member", ["val", "test"])}).to_netcdf(path)
    return path


def ratio_at(pts, error: float) -> tuple[str, float | None]:
    """A peer's ratio at cos RMSE ``error``: interpolated, ``>=`` its best ratio when it never errs
    that much (its sweep's coarsest point is already better), ``-`` below its sweep."""
    ratio = report.interpolate_ratio(pts, error)
    if ratio is not None:
        return "", ratio
    worst = max(pts, key=lambda r: r["rmse_coslat"])
    return (">=", max(r["compression_ratio"] for r in pts)) if error > worst["rmse_coslat"] else ("", None)


def equal_rmse(rows) -> list[dict]:
    """For each inrcodec row: each peer's ``(bound, ratio)`` at inrcodec's cos RMSE (:func:`ratio_at`)."""
    g = report.groups(rows)
    peers = {label: pts for label, pts in g.items() if pts[0]["codec"] != "inrcodec"}
    return [{"row": r, "peers": {label: ratio_at(pts, r["rmse_coslat"]) for label, pts in peers.items()}}
            for r in report.ok_rows(rows) if r["codec"] == "inrcodec"]


def markdown(name: str, field: Field, chunk: int, rows, command: str) -> str:
    x = field.values
    lines = [f"### `{name}`: {field.name}, {x.shape[0]} items of {x.shape[1]} x {x.shape[2]}, "
             f"chunks of {chunk} ({-(-x.shape[0] // chunk)} chunks)", "", f"Command: `{command}`", "",
             "| codec | setting | ratio | cos RMSE | RMSE | max abs err | encode s | decode s | modes |", "|---" * 9 + "|"]
    order = lambda r: (r["codec"] != "inrcodec", r["label"], -r["compression_ratio"])  # noqa: E731
    for r in sorted(report.ok_rows(rows), key=order):
        lines.append(f"| {r['label']} | {r['setting']} | {r['compression_ratio']:.1f}x | {r['rmse_coslat']:.3g} | "
                     f"{r['rmse']:.3g} | {r['max_abs_error']:.3g} | {r['encode_s']:.3g} | {r['decode_s']:.3g} | "
                     f"{r.get('chunk_modes') or ''} |")
    comp = equal_rmse(rows)
    labels = sorted({k for c in comp for k in c["peers"]})
    if labels:
        lines += ["", "Ratio at equal cos RMSE: peer / inrcodec (the peer's ratio, interpolated log-log along its "
                  "frontier; `>=`: even the peer's coarsest setting has a lower RMSE, at that ratio; `-`: below "
                  "the peer's sweep):", "",
                  "| inrcodec | cos RMSE | ratio | " + " | ".join(labels) + " |", "|---" * (3 + len(labels)) + "|"]
        for c in comp:
            r = c["row"]
            cells = [f"{b}{v / r['compression_ratio']:.2f} ({v:.0f}x)" if v else "-"
                     for b, v in (c["peers"][k] for k in labels)]
            lines.append(f"| {r['setting']} | {r['rmse_coslat']:.3g} | {r['compression_ratio']:.0f}x | "
                         + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", help="file of scripts/make_heldout_weather.py, or pool:NAME")
    ap.add_argument("--variable", default="t850")
    ap.add_argument("--split", default="val", choices=["val", "test"])
    ap.add_argument("--grid", default="native", choices=["native", "4deg"])
    ap.add_argument("--chunk", type=int, default=4, help="items per chunk along the leading axis")
    ap.add_argument("--model", nargs="+", default=["t2m-global"])
    ap.add_argument("--bits", nargs="+", type=int, default=list(range(1, 9)))
    ap.add_argument("--target-ratio", nargs="+", type=float, default=None,
                    help="sweep rate control (target_ratio) instead of --bits")
    ap.add_argument("--codec-option", action="append", default=[], metavar="KEY=VALUE",
                    help="a further COINppCodec option (repeatable), e.g. max_abs_error=2")
    ap.add_argument("--peers", nargs="*", default=["sperr", "sperr-bpp", "sz3", "zfp"])
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--shift", type=float, default=0.0, metavar="K",
                    help="code the data moved by K (data units): off the network's level (docs/reliability.md)")
    ap.add_argument("--out", default="bench-heldout")
    _smoke.add_flag(ap)
    args = ap.parse_args(argv)
    if args.smoke:  # a tiny untrained model on 2 smooth fields, one width, no peers
        args.data, args.model, args.bits, args.chunk = _smoke_data(), [_smoke.model_dir()], [2], 2
        args.peers, args.out = [], _smoke.tmpdir()
    elif not args.data:
        ap.error("--data is required")
    import torch

    torch.set_num_threads(args.threads)
    name, field = load(args.data, args.variable, args.split, args.grid, args.chunk)
    options = codec_options(args.codec_option)
    if args.shift:
        field = Field(field.values + np.float32(args.shift), field.lat, field.lon, f"{field.name} {args.shift:+g}")
        name = f"{name}{args.shift:+g}"
    x = np.ascontiguousarray(field.values, dtype=np.float32)
    rd = RecipeData(None, None, x, lat=field.lat, lon=field.lon, units="K", source=field.name)
    sweep = [options] if not args.target_ratio else [{**options, "target_ratio": r} for r in args.target_ratio]
    rows = [row for opts in sweep for row in inrcodec_rows(args.model, args.bits, x, rd,
                                                          name, log=print, options=opts, chunk_length=args.chunk)]
    ok, missing = available_peers(args.peers)
    for peer, hint in missing.items():
        print(f"peer {peer} not installed, skipped: {hint}")
    rows += peer_rows(ok, x, name, field.lat, log=print, chunk_length=args.chunk)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = "".join(f"_{k}{v}" for k, v in options.items()) + ("_ratios" if args.target_ratio else "")
    report.write_csv(rows, out / f"heldout_{name}{suffix}.csv")
    md = markdown(name, field, args.chunk, rows, "python " + " ".join(map(shlex.quote, sys.argv)))
    (out / f"heldout_{name}{suffix}.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
