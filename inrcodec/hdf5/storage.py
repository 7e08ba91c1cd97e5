"""Models and lat/lon grids stored inside HDF5 files, and where the filter finds them.

:func:`store_model` writes the model bytes as ``/_inrcodec_models/<sha256>`` (uint8) and a
lat/lon grid as ``/_inrcodec_models/grid_<id>`` (float64 ``[nlat, nlon, lat..., lon...]``).
When the filter meets a model or grid that this process does not hold, it looks through the
HDF5 files open in this process (through h5py) for them: the filter callback cannot see which
file it reads. Names are only hints: a model is accepted when its bytes hash to its name, a
grid when its values hash to its id.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import h5py
import numpy as np

from inrcodec.models import modelstore
from inrcodec._limits import MAX_GRID_SIDE, MAX_MODEL_BYTES
from inrcodec.codec import COINppCodec
from inrcodec.errors import ModelFileError, PinnedModelError
from inrcodec.grids import hdf5_grid_id
from inrcodec.hdf5.layout import FILTER_ID

__all__ = ["MODELS_GROUP", "READ_HINT", "store_model", "load_models", "remember_grid",
           "find_model", "find_grid"]

MODELS_GROUP = "_inrcodec_models"
READ_HINT = (f"compressed with the inrcodec.coinpp HDF5 filter (id {FILTER_ID}): to read it, "
             "pip install inrcodec and import inrcodec.hdf5 first")

_grids: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {}
_grids_lock = threading.Lock()


def remember_grid(lat, lon) -> str:
    """Put a grid in this process's cache; returns its id."""
    lat, lon = tuple(float(v) for v in lat), tuple(float(v) for v in lon)
    gid = hdf5_grid_id(lat, lon)
    with _grids_lock:
        _grids.setdefault(gid, (lat, lon))
    return gid


# ------------------------------------------------------------------ lookup in open files
def _open_files():
    """An h5py File for every HDF5 file open in this process, also those whose File object is gone
    (``h5py.File(p)["t2m"][...]``: only the dataset id keeps the file open)."""
    seen = set()
    for oid in h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_ALL):
        try:
            fid = oid if isinstance(oid, h5py.h5f.FileID) else h5py.h5i.get_file_id(oid)
            if fid.fileno in seen:
                continue
            seen.add(fid.fileno)
            yield h5py.File(fid)
        except Exception:  # noqa: BLE001 - an id we cannot follow is not the one
            continue


def _from_open_files(name: str, valid):
    """The first ``/_inrcodec_models/<name>...`` in the open files that ``valid(entry, data)``
    accepts (it returns the parsed value, or None for content that does not match the name).
    An entry refused before reading (:func:`_entry_values`) is skipped; when no entry is
    accepted, the last refusal is raised (a ModelFileError)."""
    refused = None
    for f in _open_files():
        try:
            g = f.get(MODELS_GROUP)
            for entry in g if g is not None else ():
                if entry.startswith(name):
                    try:
                        value = valid(entry, _entry_values(g[entry], entry))
                    except ModelFileError as exc:
                        refused = exc
                        continue
                    if value is not None:
                        return value
        except Exception:  # noqa: BLE001 - a file we cannot read is not the one
            continue
    if refused is not None:
        raise refused
    return None


def _entry_values(d, name: str) -> np.ndarray:
    """The values of the entry ``d`` named ``name``, its dtype, shape and size checked before it is
    read: an entry is read whole, and a small file can declare a huge dataset it never wrote."""
    grid = name.startswith("grid_")
    kinds, most = ("f", 2 + 2 * MAX_GRID_SIDE) if grid else ("ui", MAX_MODEL_BYTES)
    what = f"/{MODELS_GROUP}/{name}"
    if d.dtype.kind not in kinds or d.dtype.itemsize > (8 if grid else 1) or len(d.shape) != 1:
        raise ModelFileError(f"{what} is a {d.dtype} dataset of shape {d.shape}, not a 1-D "
                             f"{'float64 grid' if grid else 'uint8 model file'}")
    if d.shape[0] > most:
        kind = "lat/lon grid (2 + 2 x _limits.MAX_GRID_SIDE)" if grid else "model file (_limits.MAX_MODEL_BYTES)"
        raise ModelFileError(f"{what} holds {d.shape[0]} values, more than the {most} a {kind} may have")
    return d[()]


def _model_if_valid(name: str, data) -> modelstore.StoredModel | None:
    try:
        return modelstore.load(np.asarray(data).tobytes(), expected_sha256=name)
    except PinnedModelError:  # bytes that do not hash to their name: not this model
        return None


def _grid_values(data) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    v = np.asarray(data, dtype="<f8").ravel()
    if v.size < 2 or not (1 <= v[0] <= v.size and 1 <= v[1] <= v.size and v.size == 2 + int(v[0]) + int(v[1])):
        return None
    nlat = int(v[0])
    return tuple(float(x) for x in v[2: 2 + nlat]), tuple(float(x) for x in v[2 + nlat:])


def _grid_if_valid(name: str, data):
    g = _grid_values(data)
    # a grid is keyed by its content: a dataset named grid_<id> holding other values is ignored
    return g if g is not None and "grid_" + hdf5_grid_id(*g) == name else None


def find_model(sha_or_prefix: str) -> modelstore.StoredModel:
    """The model whose SHA-256 starts with ``sha_or_prefix``: cached, or stored in an open file."""
    hit = modelstore.cached(sha_or_prefix) or _from_open_files(sha_or_prefix, _model_if_valid)
    if hit is None:  # a model shipped with inrcodec is not copied into files (store_model)
        hit = _shipped_model(sha_or_prefix)
    if hit is None:
        raise LookupError(
            f"COIN++ model sha256 {sha_or_prefix[:32]}... is neither loaded in this process nor stored "
            f"in an open file as /{MODELS_GROUP}/<sha256>; call inrcodec.hdf5.load_models(path) or "
            "inrcodec.models.modelstore.load(model_file) first"
        )
    return hit


def _shipped_model(sha_or_prefix: str) -> modelstore.StoredModel | None:
    from inrcodec.models import zoo

    name = zoo.name_of(sha_or_prefix)
    return None if name is None else modelstore.load(name)


def find_grid(gid: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    with _grids_lock:
        g = _grids.get(gid)
    if g is None:
        g = _from_open_files("grid_" + gid, _grid_if_valid)
        if g is None:
            raise LookupError(f"lat/lon grid {gid} is not stored in an open file as /{MODELS_GROUP}/grid_{gid}")
        with _grids_lock:
            g = _grids.setdefault(gid, g)
    return g


# ------------------------------------------------------------------ writing and loading
def store_model(h5, model: Any, lat=None, lon=None) -> str:
    """Write the model into ``h5`` (an open h5py File/Group or a path) as
    ``/_inrcodec_models/<sha256>`` (a model shipped with inrcodec is not copied: readers find it
    by its hash in the package) and, with lat/lon, the grid as ``/_inrcodec_models/grid_<id>``;
    returns the model hash. Writing the same model twice is a no-op.

    ``model`` is anything :func:`inrcodec.models.modelstore.load` takes, or a
    :class:`~inrcodec.hdf5.COINpp` filter / :class:`~inrcodec.COINppCodec` (whose lat/lon are
    then stored unless ``lat``/``lon`` are given). Also labels every dataset of the file that
    uses the filter with an ``inrcodec`` attribute naming what a reader must install.
    """
    codec = getattr(model, "codec", model)  # a COINpp filter holds its COINppCodec
    if isinstance(codec, COINppCodec):
        if lat is None and codec.settings.lat is not None:
            lat, lon = codec.settings.lat, codec.settings.lon
        model = codec.stored  # the model it holds, not parsed again from its bytes
    if isinstance(h5, (str, os.PathLike)):
        with h5py.File(h5, "a") as f:
            return store_model(f, model, lat, lon)
    stored = modelstore.load(model)
    g = h5.file.require_group(MODELS_GROUP)
    # a shipped model (inrcodec.models.zoo) is found by its hash wherever inrcodec is installed: not copied
    if stored.name is None and stored.sha256 not in g:
        d = g.create_dataset(stored.sha256, data=np.frombuffer(stored.data, dtype=np.uint8))
        d.attrs["description"] = "inrcodec CoinModel (safetensors bytes) used by HDF5 filter %d" % FILTER_ID
    _label_filtered_datasets(h5.file)
    if lat is not None:
        lat, lon = np.asarray(lat, dtype="f8").ravel(), np.asarray(lon, dtype="f8").ravel()
        gid = remember_grid(lat, lon)
        if "grid_" + gid not in g:
            g.create_dataset("grid_" + gid, data=np.concatenate([[len(lat), len(lon)], lat, lon]).astype("<f8"))
    return stored.sha256


def _label_filtered_datasets(f) -> None:
    """Put :data:`READ_HINT` on every dataset of ``f`` that uses the filter: a reader without inrcodec
    only gets HDF5's complaint about its plugin directory, but the attribute names what is needed."""

    def visit(name, obj):
        if not isinstance(obj, h5py.Dataset):
            return
        dcpl = obj.id.get_create_plist()
        if any(dcpl.get_filter(i)[0] == FILTER_ID for i in range(dcpl.get_nfilters())):
            if obj.attrs.get("inrcodec") != READ_HINT:
                obj.attrs["inrcodec"] = READ_HINT

    f.visititems(visit)


def load_models(h5) -> list[str]:
    """Load every model (and lat/lon grid) stored in ``h5`` (file or path) into this process's
    cache; returns the model hashes. Needed before reading through netCDF4's libhdf5.
    A model whose bytes do not hash to its name raises :class:`~inrcodec.errors.PinnedModelError`,
    an entry too large or of the wrong kind :class:`~inrcodec.errors.ModelFileError` before it is read."""
    if isinstance(h5, (str, os.PathLike)):
        with h5py.File(h5, "r") as f:
            return load_models(f)
    g = h5.file.get(MODELS_GROUP)
    out = []
    for name, d in (g.items() if g is not None else ()):
        values = _entry_values(d, name)
        if name.startswith("grid_"):
            grid = _grid_if_valid(name, values)
            if grid is None:
                raise ValueError(f"{h5.file.filename}: /{MODELS_GROUP}/{name} does not hold the grid its name hashes")
            remember_grid(*grid)
        else:
            out.append(modelstore.load(values.tobytes(), expected_sha256=name).sha256)
    return out
