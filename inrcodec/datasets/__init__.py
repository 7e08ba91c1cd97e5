"""Real data: the data shipped in ``inrcodec/data`` (this module) and the loaders of files.

This module holds the embedded samples, the climate pool (near-surface temperature from several
sources, split by validity time and by source) and the image, speech and MRI samples: each is a
table of files with descriptions and licences plus the functions that read them.
:mod:`inrcodec.datasets.era5` reads ERA5-style netCDF/Zarr fields and splits them by time;
:mod:`inrcodec.datasets.fileloaders` reads audio, volumes and images. Everything here is numpy +
xarray (plus optional readers); nothing imports torch.

Gridded fields come out of :func:`~inrcodec.datasets.era5.load_era5` in one canonical form,
whatever the file looked like:

* an ``xr.DataArray`` with dims exactly ``("time", "lat", "lon")``, float32, NaN kept;
* ``lat`` ascending (degrees north), ``lon`` ascending in ``[-180, 180)`` (degrees east);
* ``time`` sorted ascending, no duplicates.

>>> from inrcodec.datasets import embedded_sample
>>> from inrcodec.datasets.era5 import split_by_time
>>> tas = embedded_sample("tas")
>>> tas.dims, tas.shape, tas.dtype.name, tas.attrs["units"]
(('time', 'lat', 'lon'), (12, 96, 192), 'float32', 'K')
>>> float(tas.lon[0]), float(tas.lon[-1])
(-180.0, 178.125)
>>> train, val, test = split_by_time(tas)
>>> train.sizes["time"], val.sizes["time"], test.sizes["time"]
(10, 1, 1)
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

import numpy as np
import xarray as xr

from inrcodec.datasets.era5 import load_era5
from inrcodec.datasets.fileloaders import load_audio

# ---------------------------------------------------------------------------------------------------------------------
# embedded samples
# ---------------------------------------------------------------------------------------------------------------------

_SAMPLES: Mapping[str, dict] = {
    "tas": {
        "kind": "grid",
        "file": "tas_mpi_esm_lr_2005.nc",
        "description": "near-surface air temperature (K), MPI-ESM-LR CMIP5 historical, monthly means of 2005; "
                       "12 x 96 x 192 (T63 Gaussian grid); from Debian libncarg-data (UCAR BSD-style licence)",
    },
    "hgt500": {
        "kind": "grid",
        "file": "hgt500_1958_1977.nc",
        "description": "500 hPa geopotential height (m), 2.5 degree global grid, Jan 1958 and every February "
                       "1958-1977; 21 x 73 x 144; from Debian libncarg-data (UCAR BSD-style licence)",
    },
    "arctic_a0007": {
        "kind": "audio",
        "file": "arctic_a0007.wav",
        "description": "4 s of read English speech (CMU ARCTIC, speaker awb, utterance a0007), mono 16 kHz "
                       "16-bit; from PyPI pysptk 1.0.1 (CMU ARCTIC licence, free for any use)",
    },
}


def embedded_samples(kind: str | None = None) -> dict[str, str]:
    """Names of the samples shipped in ``inrcodec/data`` with one-line descriptions.

    ``kind``: ``"grid"`` (load with :func:`embedded_sample`), ``"audio"`` (:func:`embedded_audio`) or None (all).

    >>> sorted(embedded_samples("grid"))
    ['hgt500', 'tas']
    >>> list(embedded_samples("audio"))
    ['arctic_a0007']
    """
    if kind not in (None, "grid", "audio"):
        raise ValueError(f"embedded_samples: kind must be None, 'grid' or 'audio', got {kind!r}")
    return {k: v["description"] for k, v in _SAMPLES.items() if kind is None or v["kind"] == kind}


def embedded_sample_path(name: str = "tas") -> Path:
    """Filesystem path of a shipped sample (for ``--data`` options and tools that want a file name).

    >>> embedded_sample_path("tas").name
    'tas_mpi_esm_lr_2005.nc'
    """
    if name not in _SAMPLES:
        raise ValueError(f"unknown embedded sample {name!r}; available: {embedded_samples()}")
    ref = resources.files("inrcodec").joinpath("data", _SAMPLES[name]["file"])
    path = Path(os.fspath(ref)) if isinstance(ref, os.PathLike) else None
    if path is None or not path.is_file():
        raise FileNotFoundError(f"embedded sample {name!r} is not on the filesystem ({ref}); "
                                "use embedded_sample()/embedded_audio(), which read it through importlib.resources")
    return path


def _read_resource(name: str, reader):
    ref = resources.files("inrcodec").joinpath("data", _SAMPLES[name]["file"])
    with resources.as_file(ref) as path:
        return reader(path)


def embedded_sample(name: str = "tas") -> xr.DataArray:
    """A shipped gridded sample, through :func:`load_era5` (so ``(time, lat, lon)``, float32, lon in [-180, 180)).

    >>> da = embedded_sample("hgt500")
    >>> da.shape, da.attrs["units"], str(da.time.values[-1])[:10]
    ((21, 73, 144), 'm', '1977-02-01')
    """
    if name not in _SAMPLES or _SAMPLES[name]["kind"] != "grid":
        hint = " (an audio sample: use embedded_audio)" if name in _SAMPLES else ""
        raise ValueError(f"unknown gridded sample {name!r}{hint}; available: {embedded_samples('grid')}")

    def reader(path):
        with xr.open_dataset(path) as ds:
            return load_era5(ds.load())

    return _read_resource(name, reader)


def embedded_audio(name: str = "arctic_a0007") -> tuple[np.ndarray, int]:
    """A shipped audio sample as ``(samples float32 in [-1, 1], sample_rate)``.

    >>> x, rate = embedded_audio()
    >>> x.shape, x.dtype.name, rate
    ((64000,), 'float32', 16000)
    """
    if name not in _SAMPLES or _SAMPLES[name]["kind"] != "audio":
        raise ValueError(f"unknown audio sample {name!r}; available: {embedded_samples('audio')}")
    return _read_resource(name, load_audio)


# ---------------------------------------------------------------------------------------------------------------------
# the climate pool (near-surface temperature from several sources, split by validity time and by source)
# ---------------------------------------------------------------------------------------------------------------------

CLIMATE_SPLITS = ("train", "val", "test-time", "test-source")

# The sources of the climate pool, their files under inrcodec/data/climate/ (built by
# scripts/make_climate_pool.py; each carries a per-time ``split`` coordinate), licences and
# descriptions: data/climate/sources.json. Held-out sources ("test-source") are never part of
# train/val/test-time.
_CLIMATE_SOURCES: Mapping[str, dict] = json.loads(
    resources.files("inrcodec").joinpath("data", "climate", "sources.json").read_text())


def _open_climate_source(name: str) -> xr.Dataset:
    """The stored file of one pool source, loaded into memory, with a ``split`` label on every time step."""
    ref = resources.files("inrcodec").joinpath("data", *_CLIMATE_SOURCES[name]["file"].split("/"))
    with resources.as_file(ref) as path, xr.open_dataset(path) as ds:
        ds = ds.load()
    if "split" not in ds.coords:  # a shipped sample that is held out as a whole
        ds = ds.assign_coords(split=("time", np.full(ds.sizes["time"], "test-source")))
    return ds


def _climate_arrays(name: str, ds: xr.Dataset) -> list[xr.DataArray]:
    """Canonical (time, lat, lon) arrays of one source: one per ensemble member where there are members."""
    info = _CLIMATE_SOURCES[name]
    members = ds["member"].values.tolist() if "member" in ds.dims else [None]
    out = []
    for m in members:
        part = ds if m is None else ds.sel(member=m)
        da = load_era5(part)
        da.name = name if m is None else f"{name}_m{int(m):03d}"
        da.attrs.update({"source": name, "licence": info["licence"], "licence_summary": str(ds.attrs.get(
            "licence", ds.attrs.get("license", ""))), "institution": str(ds.attrs.get("institution", ""))})
        if m is not None:
            da.attrs["member"] = int(m)
        out.append(da)
    return out


def climate_pool(split: str) -> list[xr.DataArray]:
    """The shipped near-surface temperature pool for one split, as canonical ``(time, lat, lon)`` float32 arrays.

    ``split``: ``"train"``, ``"val"``, ``"test-time"`` (training sources, later validity times than val) or
    ``"test-source"`` (sources never in train/val: MPI-ESM-LR ``tas`` and the E1 subset). Within a source the
    splits are contiguous blocks of validity times (about 70/15/15) and share no validity time. GloSea4 gives
    one array per ensemble member (named ``glosea4_m000`` ...): its members share validity times, and all
    members of one month are in the same split. Every array has ``.name`` and attrs ``source``, ``licence``
    (the licence file in ``inrcodec/data``), ``split``; masked points (COADS land) are NaN.
    Settings are chosen on ``"val"``; both test splits stay untouched until the final measurement.

    >>> [(da.name, da.shape) for da in climate_pool("test-source")]
    [('e1', (24, 37, 49)), ('mpi_esm', (12, 96, 192))]
    >>> train = climate_pool("train")
    >>> len(train), sorted({da.attrs["source"] for da in train})
    (36, ['a1b', 'coads', 'era5_t', 'glosea4', 'ncep'])
    """
    if split not in CLIMATE_SPLITS:
        raise ValueError(f"climate_pool: split must be one of {CLIMATE_SPLITS}, got {split!r}")
    out = []
    for name in _CLIMATE_SOURCES:
        ds = _open_climate_source(name)
        keep = ds["split"].values.astype(str) == split
        if not keep.any():
            continue
        for da in _climate_arrays(name, ds.isel(time=np.flatnonzero(keep))):
            da.attrs["split"] = split
            out.append(da)
    return out


def climate_pool_sources() -> list[dict]:
    """One dict per pool source: name, role, description, licence, grid spacing, shape and split sizes.

    ``dlat``/``dlon`` are the median spacings in degrees; ``shape`` is ``(time, lat, lon)`` of one array (per
    member for GloSea4); ``members`` counts the arrays; ``times`` counts the validity times in each split.

    >>> info = {s["name"]: s for s in climate_pool_sources()}
    >>> info["glosea4"]["shape"], info["glosea4"]["members"], info["glosea4"]["times"]
    ((6, 145, 192), 13, {'train': 4, 'val': 1, 'test-time': 1, 'test-source': 0})
    >>> info["mpi_esm"]["role"], info["coads"]["dlat"]
    ('test-source', 2.0)
    """
    out = []
    for name, info in _CLIMATE_SOURCES.items():
        ds = _open_climate_source(name)
        first = _climate_arrays(name, ds)[0]
        labels = ds["split"].values.astype(str)
        out.append({
            "name": name,
            "role": "test-source" if info["held_out"] else "train/val/test-time",
            "description": info["description"],
            "licence": info["licence"],
            "file": info["file"],
            "dlat": float(np.median(np.diff(first["lat"].values))),
            "dlon": float(np.median(np.diff(first["lon"].values))),
            "lat_range": (float(first["lat"].values[0]), float(first["lat"].values[-1])),
            "lon_range": (float(first["lon"].values[0]), float(first["lon"].values[-1])),
            "shape": tuple(int(n) for n in first.shape),
            "members": int(ds.sizes.get("member", 1)),
            "times": {s: int((labels == s).sum()) for s in CLIMATE_SPLITS},
        })
    return out


# ---------------------------------------------------------------------------------------------------------------------
# shipped image, speech and MRI samples (scripts/build_modality_samples.py; licences in inrcodec/data/LICENSE-*)
# ---------------------------------------------------------------------------------------------------------------------

MODALITY_SAMPLES: Mapping[str, dict] = {
    "image": {
        "dir": "images",
        "splits": {"train": "train/*.png", "val": "val/*.png", "test": "test/*.png"},
        "source": "22 OpenCV sample photographs (Debian opencv-doc 4.6.0), grey 256 x 256; different photographs "
                  "per split; Apache-2.0 AND BSD-3-Clause (inrcodec/data/LICENSE-opencv-samples.txt)",
    },
    "audio": {
        "dir": "speech",
        "splits": {"train": "train_en.flac", "val": "val_es.flac", "test": "test_fr.flac"},
        "source": "Asterisk core sound prompts (Debian asterisk-core-sounds-*-g722 1.6.1), 16 kHz: train 60 s English "
                  "(Allison Smith), validation 12 s Spanish (same speaker), test 20 s French (June Wallack); "
                  "CC-BY-SA-3.0 (inrcodec/data/LICENSE-asterisk-core-sounds.txt)",
    },
    "mri": {
        "dir": "mri",
        "splits": {"train": "colin27_2mm.nii.gz", "val": "mni152_2009a_2mm.nii.gz",
                   "test": "mni152_2009a_2mm.nii.gz"},
        "source": "T1 brain MRI at 2 mm, 80 x 96 x 80 (axial slices first): train Colin27 (Debian mricron-data, "
                  "BSD-3-clause), validation the inferior and test the superior slabs of the MNI ICBM152 2009a "
                  "template (nilearn wheel; MNI permissive terms) (inrcodec/data/LICENSE-mri.txt)",
    },
}


def modality_sample_paths(modality: str) -> dict[str, list[Path]]:
    """Files of a shipped image/speech/MRI sample by split: ``{"train": [...], "val": [...], "test": [...]}``.

    >>> {k: [p.name for p in v] for k, v in modality_sample_paths("audio").items()}
    {'train': ['train_en.flac'], 'val': ['val_es.flac'], 'test': ['test_fr.flac']}
    >>> len(modality_sample_paths("image")["train"])
    15
    """
    if modality not in MODALITY_SAMPLES:
        raise ValueError(f"unknown modality sample {modality!r}; available: {sorted(MODALITY_SAMPLES)}")
    spec = MODALITY_SAMPLES[modality]
    root = Path(os.fspath(resources.files("inrcodec").joinpath("data", spec["dir"])))
    out = {split: sorted(root.glob(pattern)) for split, pattern in spec["splits"].items()}
    empty = [k for k, v in out.items() if not v]
    if empty:
        raise FileNotFoundError(f"shipped {modality} sample incomplete under {root}: no files for {empty}")
    return out
