"""Dev-time script: held-out-by-source sub-daily 2 m temperature for ``benchmarks/heldout_rd.py`` (not shipped).

Sources: the ``sampledata/`` folder of the PyPI ``pygrib`` 2.1.8 source distribution (MIT code,
(c) J. Whitaker). Three instantaneous 2 m temperature (``2t``, K) forecasts of two operational systems
that no file of inrcodec's training pool comes from (not ERA5; the pool's ``ncep`` source is the
NCEP/NCAR Reanalysis 1 at sigma 0.995 over North America in 2014, a different NCEP product), so the whole
sets are held out by source:

* ``gfs.t12z.pgrbf120.2p5deg.grib2``: NCEP GFS, init 2011-01-10 12 UTC +120 h = valid 2011-01-15 12 UTC;
* ``gfs.grb``: NCEP GFS, init 2011-10-08 00 UTC +72 h = valid 2011-10-11 00 UTC;
  both regular 2.5 degrees, 73 x 144, both poles. NCEP GFS output is US government work, public domain.
* ``ecmwf_tigge.grb``: ECMWF ensemble control forecast (TIGGE, class ``ti``, stream ``enfo``, type
  ``cf``), init 2007-05-05 00 UTC +120 h = valid 2007-05-10 00 UTC, reduced Gaussian N200 (about
  0.45 degrees). TIGGE data may be used for research and education only, with acknowledgement of
  ECMWF and TIGGE; that, and keeping held-out data out of the package, is why this file is generated
  and not shipped.

All three are forecasts (+72 to +120 h), not analyses: they are realistic 2 m temperature fields,
not the verifying truth of their dates.

Writes two netCDF4 files (float32 K, zlib) in the form of ``scripts/make_heldout_weather.py``:
variable ``t2m`` on ``(member, time, lat, lon)``, lat ascending, lon ascending in [-180, 180), and a
``split`` coordinate along ``member`` (all ``test``: final numbers only, no settings chosen on them):

* ``heldout_gfs.nc``: member = the two GFS files (different dates, one item each), time = 1, 73 x 144
  (2.5 degrees, values as decoded, cast to float32);
* ``heldout_tigge.nc``: member = 1, time = 1, 121 x 240 (1.5 degrees, both poles). The reduced
  Gaussian rows are first expanded to the regular 400 x 800 Gaussian grid by periodic linear
  interpolation along longitude (as eccodes and ``interp`` do), then area-weighted block-averaged
  (first-order conservative: each 1.5-degree cell, half cells at the poles, averages the Gaussian
  cells it overlaps, weighted by overlap area on the sphere) to the 1.5-degree grid.

Valid time, init time and forecast step are coordinates along ``member`` (``valid_time`` etc.), so
``time`` is a plain index of length 1. ``heldout_rd.py --grid 4deg`` regrids either file to 46 x 90.

Dev-time requirements (not dependencies of inrcodec): ``pip install eccodes cfgrib`` (the eccodes
wheel bundles the library), plus xarray and netCDF4 to write the files. Run::

    pip download --no-deps --no-binary pygrib pygrib==2.1.8 && tar xzf pygrib-2.1.8.tar.gz pygrib-2.1.8/sampledata
    python scripts/make_heldout_surface.py pygrib-2.1.8/sampledata --out-dir .
    python benchmarks/heldout_rd.py --data heldout_gfs.nc --variable t2m --split test --grid 4deg
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np
import xarray as xr

GFS_FILES = ("gfs.t12z.pgrbf120.2p5deg.grib2", "gfs.grb")
TIGGE_FILE = "ecmwf_tigge.grb"
RANGE_K = (180.0, 330.0)  # plausible 2 m temperature anywhere on Earth
GRID_1P5_LAT = np.linspace(-90.0, 90.0, 121)
GRID_1P5_LON = np.arange(240) * 1.5 - 180.0
PYGRIB = "PyPI pygrib 2.1.8 sdist (MIT, (c) J. Whitaker), sampledata/"
GFS_LICENCE = ("NCEP GFS output: US government work, public domain (NOAA/NWS/NCEP). "
               "Files taken from pygrib 2.1.8 sampledata (pygrib code: MIT licence).")
TIGGE_LICENCE = ("TIGGE data (THORPEX Interactive Grand Global Ensemble), ECMWF ensemble: for research and "
                 "education use only; acknowledge ECMWF and TIGGE in any use. Not redistributed with "
                 "inrcodec (generated on demand). File taken from pygrib 2.1.8 sampledata (pygrib code: MIT).")
COMMENT = "held out by source: never train or tune on these files (docs/benchmarks.md)"


def read_2t(path: Path) -> xr.DataArray:
    """The single ``2t`` message of ``path`` via cfgrib (no index file written), checked: not ERA5, K."""
    ds = xr.open_dataset(path, engine="cfgrib", backend_kwargs={
        "indexpath": "", "filter_by_keys": {"shortName": "2t"},
        "read_keys": ["class", "centre", "stream", "dataType", "number"]})
    da = ds["t2m"].load()
    if da.attrs.get("GRIB_class") == "ea":
        raise SystemExit(f"{path}: ERA5 2 m temperature must never be read")
    if da.attrs.get("GRIB_units") != "K" or da.attrs.get("units") != "K":
        raise SystemExit(f"{path}: units {da.attrs.get('GRIB_units')!r}, expected 'K'")
    if da.attrs.get("GRIB_stepType") != "instant":
        raise SystemExit(f"{path}: stepType {da.attrs.get('GRIB_stepType')!r}, expected 'instant'")
    return da


def check_range(name: str, v: np.ndarray) -> None:
    if not np.all(np.isfinite(v)):
        raise SystemExit(f"{name}: {int((~np.isfinite(v)).sum())} non-finite values")
    lo, hi = float(v.min()), float(v.max())
    if lo < RANGE_K[0] or hi > RANGE_K[1]:
        raise SystemExit(f"{name}: values {lo:.2f}..{hi:.2f} K outside the plausible {RANGE_K} K")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def times(das) -> dict:
    """init / step / valid time coordinates along ``member`` (one time each)."""
    return {
        "init_time": (("member", "time"), np.array([[d["time"].values] for d in das], "datetime64[ns]")),
        "valid_time": (("member", "time"), np.array([[d["valid_time"].values] for d in das], "datetime64[ns]")),
        "step_hours": ("member", np.array([d["step"].values / np.timedelta64(1, "h") for d in das], np.float64)),
    }


def to_canonical(values: np.ndarray, lat: np.ndarray, lon: np.ndarray):
    """(..., lat, lon) on any regular grid -> lat ascending, lon ascending in [-180, 180)."""
    lon = np.where(lon >= 180.0, lon - 360.0, lon)
    order = np.argsort(lon)
    lorder = np.argsort(lat)
    return values[..., lorder, :][..., order], lat[lorder], lon[order]


def build_gfs(folder: Path) -> xr.Dataset:
    das, fields = [], []
    for name in GFS_FILES:
        da = read_2t(folder / name)
        if da.dims != ("latitude", "longitude") or da.shape != (73, 144):
            raise SystemExit(f"{name}: expected a 73 x 144 lat/lon field, got {da.dims} {da.shape}")
        v, lat, lon = to_canonical(np.asarray(da.values, np.float32), da["latitude"].values.astype(np.float64),
                                   da["longitude"].values.astype(np.float64))
        check_range(name, v)
        das.append(da)
        fields.append(v)
    ds = xr.Dataset(
        {"t2m": (("member", "time", "lat", "lon"), np.stack(fields)[:, None].astype(np.float32),
                 {"units": "K", "long_name": "2 metre temperature", "standard_name": "air_temperature"})},
        coords={"member": np.arange(len(GFS_FILES), dtype=np.int32),
                "lat": ("lat", lat, {"units": "degrees_north"}),
                "lon": ("lon", lon, {"units": "degrees_east"}),
                "split": ("member", np.array(["test"] * len(GFS_FILES))),
                "source_file": ("member", np.array(GFS_FILES)),
                **times(das)})
    ds.attrs = {
        "source": "NCEP GFS 2.5-degree forecasts via " + PYGRIB + ", ".join(GFS_FILES),
        "source_paths": ", ".join(f"sampledata/{n}" for n in GFS_FILES),
        "source_sha256": ", ".join(f"{n}: {sha256(folder / n)}" for n in GFS_FILES),
        "valid_times": "gfs.t12z.pgrbf120.2p5deg.grib2: 2011-01-15T12Z; gfs.grb: 2011-10-11T00Z",
        "forecast_step": "gfs.t12z.pgrbf120.2p5deg.grib2: +120 h (init 2011-01-10T12Z); "
                         "gfs.grb: +72 h (init 2011-10-08T00Z)",
        "grid": "regular 2.5 degrees, 73 x 144, both poles (as decoded, cast to float32)",
        "licence": GFS_LICENCE,
        "splits": "test: both members (one item each)",
        "caveat": "forecasts, not analyses",
        "comment": COMMENT,
    }
    return ds


def reduced_to_regular(values: np.ndarray, lat: np.ndarray, pl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reduced Gaussian (rows of ``pl`` points from longitude 0, north first) -> (lat, 4N) regular Gaussian,
    periodic linear interpolation along longitude. Returns (field north first, row latitudes)."""
    nlon = 2 * len(pl)
    out = np.empty((len(pl), nlon))
    rows = np.empty(len(pl))
    xo = np.arange(nlon) * 360.0 / nlon
    i = 0
    for r, n in enumerate(pl):
        row = values[i:i + n]
        rows[r] = lat[i]
        x = np.arange(n) * 360.0 / n
        out[r] = np.interp(xo, np.r_[x, 360.0], np.r_[row, row[0]])
        i += n
    if i != len(values):
        raise SystemExit(f"reduced grid: pl sums to {i}, not {len(values)} values")
    return out, rows


def overlap_weights(src_lo, src_hi, dst_lo, dst_hi) -> np.ndarray:
    """(n_dst, n_src) overlap lengths of the intervals [lo, hi], rows normalised to 1."""
    w = np.clip(np.minimum(dst_hi[:, None], src_hi[None]) - np.maximum(dst_lo[:, None], src_lo[None]), 0.0, None)
    return w / w.sum(axis=1, keepdims=True)


def conservative(field: np.ndarray, lat: np.ndarray, lon: np.ndarray, dst_lat: np.ndarray,
                 dst_lon: np.ndarray) -> np.ndarray:
    """Area-weighted block average of a (lat ascending, lon from 0 ascending, global) field to the cells
    of ``dst_lat`` x ``dst_lon`` (cell edges halfway between points; pole cells end at +-90)."""
    def edges(c):
        mid = 0.5 * (c[1:] + c[:-1])
        return np.r_[-90.0, mid], np.r_[mid, 90.0]
    slo, shi = edges(lat)
    dlo, dhi = edges(dst_lat)
    wlat = overlap_weights(np.sin(np.radians(slo)), np.sin(np.radians(shi)),
                           np.sin(np.radians(dlo)), np.sin(np.radians(dhi)))
    dx, ddx = 360.0 / len(lon), 360.0 / len(dst_lon)
    # longitudes periodic: compare each destination cell with the source cells shifted by -360, 0, +360
    src = np.concatenate([lon - 360.0, lon, lon + 360.0])
    wlon = overlap_weights(src - dx / 2, src + dx / 2, dst_lon - ddx / 2, dst_lon + ddx / 2)
    wlon = wlon.reshape(len(dst_lon), 3, len(lon)).sum(axis=1)
    return wlat @ field @ wlon.T


def build_tigge(folder: Path) -> xr.Dataset:
    da = read_2t(folder / TIGGE_FILE)
    a = da.attrs
    if (a.get("GRIB_gridType"), a.get("GRIB_N"), a.get("GRIB_class"), a.get("GRIB_dataType")) != \
            ("reduced_gg", 200, "ti", "cf"):
        raise SystemExit(f"{TIGGE_FILE}: expected TIGGE control forecast on reduced Gaussian N200")
    values = np.asarray(da.values, np.float64)
    check_range(TIGGE_FILE + " (native)", values)
    lon_pts = da["longitude"].values
    gg, rows = reduced_to_regular(values, da["latitude"].values, np.asarray(a["GRIB_pl"]))
    if np.any(np.diff(rows) >= 0) or lon_pts[0] != 0.0:
        raise SystemExit(f"{TIGGE_FILE}: expected rows north to south starting at longitude 0")
    gg, rows = gg[::-1], rows[::-1]
    reg_lon = np.arange(gg.shape[1]) * 360.0 / gg.shape[1]
    dst_lon0 = np.mod(GRID_1P5_LON, 360.0)
    v = conservative(gg, rows, reg_lon, GRID_1P5_LAT, dst_lon0)  # columns follow GRID_1P5_LON
    v = v.astype(np.float32)
    check_range(TIGGE_FILE + " (1.5 degrees)", v)
    ds = xr.Dataset(
        {"t2m": (("member", "time", "lat", "lon"), v[None, None],
                 {"units": "K", "long_name": "2 metre temperature", "standard_name": "air_temperature"})},
        coords={"member": np.array([0], np.int32),
                "lat": ("lat", GRID_1P5_LAT, {"units": "degrees_north"}),
                "lon": ("lon", GRID_1P5_LON, {"units": "degrees_east"}),
                "split": ("member", np.array(["test"])),
                "source_file": ("member", np.array([TIGGE_FILE])),
                **times([da])})
    ds.attrs = {
        "source": "ECMWF ensemble control forecast (TIGGE, class ti, stream enfo, type cf, number 0) via "
                  + PYGRIB + TIGGE_FILE,
        "source_paths": f"sampledata/{TIGGE_FILE}",
        "source_sha256": f"{TIGGE_FILE}: {sha256(folder / TIGGE_FILE)}",
        "valid_times": "2007-05-10T00Z",
        "forecast_step": "+120 h (init 2007-05-05T00Z)",
        "grid": "regular 1.5 degrees, 121 x 240, both poles",
        "regrid_method": ("reduced Gaussian N200 (213988 points) expanded to the regular 400 x 800 Gaussian grid "
                          "by periodic linear interpolation along longitude, then area-weighted block average "
                          "(first-order conservative, separable in sin(lat) and lon; cells centred on the "
                          "1.5-degree points, half cells at the poles) to 121 x 240"),
        "licence": TIGGE_LICENCE,
        "splits": "test: the single member",
        "caveat": "forecast, not analysis",
        "comment": COMMENT,
    }
    return ds


def write(ds: xr.Dataset, path: Path) -> None:
    enc = {v: {"zlib": True, "complevel": 6} for v in ds.data_vars}
    ds.to_netcdf(path, format="NETCDF4", encoding=enc)
    for v in ds.data_vars:
        print(f"{path.name} {v}: {dict(ds[v].sizes)}, {float(ds[v].min()):.2f}..{float(ds[v].max()):.2f} K, "
              f"valid {', '.join(str(t)[:13] for t in ds['valid_time'].values.ravel())}")
    print(f"written {path} ({path.stat().st_size} bytes)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("sampledata", type=Path, help="the sampledata/ folder of the unpacked pygrib 2.1.8 sdist")
    ap.add_argument("--out-dir", type=Path, default=Path("."))
    ap.add_argument("--overwrite", action="store_true", help="replace existing heldout_gfs.nc / heldout_tigge.nc")
    args = ap.parse_args(argv)
    outs = [args.out_dir / "heldout_gfs.nc", args.out_dir / "heldout_tigge.nc"]
    if not args.overwrite and any(p.exists() for p in outs):
        raise SystemExit(f"already there: {', '.join(str(p) for p in outs if p.exists())}; --overwrite replaces them")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    write(build_gfs(args.sampledata), outs[0])
    write(build_tigge(args.sampledata), outs[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
