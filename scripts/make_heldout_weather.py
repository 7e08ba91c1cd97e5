"""Dev-time script: the held-out sub-daily weather set for ``benchmarks/heldout_rd.py`` (not shipped).

Source: PyPI ``cfgrib`` 0.9.15.1 source distribution (Apache-2.0 code),
``tests/sample-data/era5-levels-members.nc``: real ERA5 ensemble analyses (Copernicus Climate Change
Service; "Contains modified Copernicus Climate Change Service information 2017"; ERA5 licence:
attribute, no endorsement): temperature ``t`` (K) at 850 and 500 hPa, 10 members x 4 times 12 hours
apart (2017-01-01 00/12 UTC, 2017-01-02 00/12 UTC) x 61 x 120 (3 degrees, both poles). No model or
setting of inrcodec was trained or chosen on it until issue 20, which put the same archive's first two
times into the climate pool (source ``era5_t``, split by time). The member split below is therefore held
out only for models trained without ``era5_t`` (``t2m-global`` 1.x); newer models are measured on the
pool's ``era5_t`` test-time (``benchmarks/heldout_rd.py --data pool:era5_t``).

Writes one netCDF file with ``t850`` and ``t500`` on ``(member, time, lat, lon)``, float32 (the values
as decoded by cfgrib, cast to float32), lat ascending, lon ascending in [-180, 180) (the canonical form
of ``inrcodec.datasets.load_era5``), and a ``split`` coordinate along ``member``:

* ``val``  = members 0-3: the only part any choice of settings may look at;
* ``test`` = members 4-9: final numbers only.

Members are exchangeable draws of the same days, so the split is by member, not by time; every chunk
holds the 4 consecutive 12-hourly times of one member. The file is generated rather than shipped: it
keeps the held-out data out of the package, where no training recipe can pick it up.

Run::

    pip download --no-deps --no-binary :all: cfgrib==0.9.15.1 && tar xzf cfgrib-0.9.15.1.tar.gz
    python scripts/make_heldout_weather.py cfgrib-0.9.15.1 --out heldout_weather.nc
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np
import xarray as xr

SAMPLE = "tests/sample-data/era5-levels-members.nc"
SPLITS = {"val": range(0, 4), "test": range(4, 10)}
SOURCE = ("ERA5 ensemble analyses (Copernicus Climate Change Service) via PyPI cfgrib 0.9.15.1 sdist, "
          + SAMPLE)
LICENCE = ("Contains modified Copernicus Climate Change Service information 2017. Neither the European "
           "Commission nor ECMWF is responsible for any use of this information (ERA5 licence).")


def build(sdist: Path) -> xr.Dataset:
    path = sdist / SAMPLE
    src = xr.open_dataset(path)
    split = np.empty(src.sizes["number"], dtype=object)
    for name, members in SPLITS.items():
        split[list(members)] = name
    lon = np.asarray(src["longitude"].values, np.float64)
    lon = np.where(lon >= 180.0, lon - 360.0, lon)
    order = np.argsort(lon)
    out = {}
    for level in (850, 500):
        t = src["t"].sel(isobaricInhPa=level).transpose("number", "time", "latitude", "longitude")
        v = np.asarray(t.values, np.float32)[:, :, ::-1][..., order]  # lat 90..-90 -> ascending
        out[f"t{level}"] = (("member", "time", "lat", "lon"), v,
                            {"units": "K", "long_name": f"temperature at {level} hPa"})
    ds = xr.Dataset(out, coords={
        "member": np.asarray(src["number"].values, np.int32),
        "time": src["time"].values,
        "lat": ("lat", np.asarray(src["latitude"].values[::-1], np.float64), {"units": "degrees_north"}),
        "lon": ("lon", lon[order], {"units": "degrees_east"}),
        "split": ("member", split.astype(str)),
    })
    ds.attrs = {"source": SOURCE, "source_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                "licence": LICENCE, "splits": "val: members 0-3; test: members 4-9 (all 4 times each)",
                "comment": "held out: never train or tune on the test split (docs/benchmarks.md)"}
    return ds


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("sdist", type=Path, help="the unpacked cfgrib 0.9.15.1 source distribution")
    ap.add_argument("--out", type=Path, default=Path("heldout_weather.nc"))
    args = ap.parse_args(argv)
    ds = build(args.sdist)
    enc = {v: {"zlib": True, "complevel": 6} for v in ds.data_vars}
    ds.to_netcdf(args.out, encoding=enc)
    for v in ds.data_vars:
        print(f"{v}: {dict(ds[v].sizes)}, {float(ds[v].min()):.2f}..{float(ds[v].max()):.2f} K")
    print(f"written {args.out} ({args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
