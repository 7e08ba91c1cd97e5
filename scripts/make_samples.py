"""Dev-time script that built tas_mpi_esm_lr_2005.nc and hgt500_1958_1977.nc (not used at run time).

Usage (needs network access to Debian's archive only for the first two lines):
    apt-get download libncarg-data && dpkg -x libncarg-data_6.6.2.dfsg.1-1_all.deb out
    python make_samples.py out/usr/share/ncarg/data
"""
import hashlib
import os
import sys

import numpy as np
import xarray as xr

SRC = sys.argv[1] if len(sys.argv) > 1 else "/tmp/ncarg/out/usr/share/ncarg/data"
OUT = os.path.dirname(os.path.abspath(__file__))
PKG = "Debian package libncarg-data 6.6.2.dfsg.1-1 (source package ncl), /usr/share/ncarg/data/"
LIC = ("BSD-style licence, Copyright (c) 2013 University Corporation for Atmospheric Research; "
       "see LICENSE-libncarg-data.txt shipped beside this file")
enc = lambda: {"zlib": True, "complevel": 9, "shuffle": True, "dtype": "float32"}

def sha(p): return hashlib.sha256(open(p, "rb").read()).hexdigest()

# --- tas ---
p = f"{SRC}/nug/tas_rectilinear_grid_2D.nc"
src = xr.open_dataset(p, decode_times=False)
t = xr.decode_cf(src[["time"]]).time.values
tas = src.tas.values.astype("float32")
ds = xr.Dataset(
    {"tas": (("time", "lat", "lon"), tas, {
        "standard_name": "air_temperature", "long_name": "Near-Surface Air Temperature",
        "units": "K", "cell_methods": "time: mean (monthly)", "height": "2 m"})},
    coords={
        "time": ("time", t, {"standard_name": "time", "long_name": "time (middle of month)", "axis": "T"}),
        "lat": ("lat", src.lat.values.astype("float64"), {"standard_name": "latitude", "long_name": "latitude", "units": "degrees_north", "axis": "Y"}),
        "lon": ("lon", src.lon.values.astype("float64"), {"standard_name": "longitude", "long_name": "longitude", "units": "degrees_east", "axis": "X"}),
    },
    attrs={
        "Conventions": "CF-1.8",
        "title": "MPI-ESM-LR CMIP5 historical r1i1p1 monthly mean near-surface air temperature, year 2005",
        "institution": "Max Planck Institute for Meteorology (MPI-M), model MPI-ESM-LR",
        "source": f"{PKG}nug/tas_rectilinear_grid_2D.nc (sha256 {sha(p)})",
        "source_history": src.attrs.get("history", ""),
        "source_tracking_id": src.attrs.get("tracking_id", ""),
        "package": PKG.split(",")[0],
        "license": LIC,
        "comment": "Repacked for inrcodec: bounds variables dropped, float32, zlib level 9 + shuffle; "
                   "values unchanged (missing-value flag 1e20 never occurs). Grid: T63 Gaussian latitudes (ascending), longitudes 0..358.125.",
    },
)
assert not np.isnan(tas).any() and (tas < 1e10).all()
ds.time.encoding.update({"units": "days since 1850-01-01 00:00:00", "calendar": "proleptic_gregorian", "dtype": "float64"})
for c in ("lat", "lon"):
    ds[c].encoding["_FillValue"] = None
ds.time.encoding["_FillValue"] = None
o = f"{OUT}/tas_mpi_esm_lr_2005.nc"
ds.to_netcdf(o, engine="netcdf4", format="NETCDF4", encoding={"tas": {**enc(), "_FillValue": None}})
print(o, os.path.getsize(o))

# --- hgt 500 hPa ---
p = f"{SRC}/cdf/hgt.nc"
src = xr.open_dataset(p, decode_times=False)
months = src.time.values.astype(int)
assert src.time.attrs["units"].startswith("months since 1958-1-1")
t = np.array([np.datetime64("1958-01-01", "M") + m for m in months]).astype("datetime64[ns]")
h = src.HGT.values.astype("float32")
ds = xr.Dataset(
    {"hgt": (("time", "lat", "lon"), h, {
        "standard_name": "geopotential_height", "long_name": "Geopotential Height at 500 hPa",
        "units": "m", "source_units": "gpm", "pressure_level_hPa": 500.0})},
    coords={
        "time": ("time", t, {"standard_name": "time", "long_name": "time (start of month)", "axis": "T"}),
        "lat": ("lat", src.lat.values.astype("float64"), {"standard_name": "latitude", "long_name": "latitude", "units": "degrees_north", "axis": "Y"}),
        "lon": ("lon", src.lon.values.astype("float64"), {"standard_name": "longitude", "long_name": "longitude", "units": "degrees_east", "axis": "X"}),
    },
    attrs={
        "Conventions": "CF-1.8",
        "title": "500 hPa geopotential height, 2.5 degree global grid, 21 months (Jan 1958, then February 1958-1977)",
        "source": f"{PKG}cdf/hgt.nc (sha256 {sha(p)})",
        "package": PKG.split(",")[0],
        "license": LIC,
        "comment": "Repacked for inrcodec: time 'months since 1958-1-1' (not decodable by xarray) converted to "
                   "dates at the start of each month; values unchanged; float32, zlib level 9 + shuffle. "
                   "The original file carries no provenance attributes; the 2.5 degree grid and period suggest "
                   "the NCEP/NCAR reanalysis, but this is not stated in the source.",
    },
)
ds.time.encoding.update({"units": "days since 1958-01-01 00:00:00", "calendar": "proleptic_gregorian", "dtype": "float64", "_FillValue": None})
for c in ("lat", "lon"):
    ds[c].encoding["_FillValue"] = None
o = f"{OUT}/hgt500_1958_1977.nc"
ds.to_netcdf(o, engine="netcdf4", format="NETCDF4", encoding={"hgt": {**enc(), "_FillValue": None}})
print(o, os.path.getsize(o))
