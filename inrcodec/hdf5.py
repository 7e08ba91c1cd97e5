"""COIN++ as an HDF5 filter: plain ``h5py`` and xarray's ``h5netcdf`` engine read and write through it.

``import inrcodec.hdf5`` registers the filter (id :data:`FILTER_ID`, name ``inrcodec.coinpp``)
with the HDF5 library that h5py uses. Then::

    import h5py, inrcodec.hdf5 as ih5
    with h5py.File("t2m.h5", "w") as f:
        ih5.store_model(f, model, lat=lat, lon=lon)    # model + grid travel in the file
        f.create_dataset("t2m", data=x, chunks=(4, nlat, nlon),
                         **ih5.h5py_kwargs(model, bits=6, lat=lat, lon=lon))
    with h5py.File("t2m.h5") as f:                     # any process that imported inrcodec.hdf5
        y = f["t2m"][...]

    # xarray / h5netcdf
    ds.to_netcdf("t2m.nc", engine="h5netcdf",
                 encoding={"t2m": ih5.xarray_encoding(ds.t2m, model, bits=6, chunks={"time": 4})})
    ih5.store_model("t2m.nc", model, lat=ds.lat, lon=ds.lon)
    xr.open_dataset("t2m.nc", engine="h5netcdf").t2m.values

Filter parameters (``cd_values``, unsigned 32-bit words in the file's filter pipeline; h5py
reads at most 16, so they stay short)::

    [0] layout version 1 | flags << 8 (1: entropy coding, 2: lat/lon grid)
    [1] bits | inner_steps << 8
    [2:6] the first 16 bytes of the model's SHA-256 (the full hash is checked against every
          chunk header when decoding)
    [6:8] grid id: first 8 bytes of SHA-256 of the lat/lon values (0, 0 without lat/lon)
    then, appended by the filter's set_local callback at dataset creation:
    itemsize (4 or 8), ndim, chunk dims...

The model and the lat/lon grid are not in ``cd_values`` (too large). :func:`store_model`
writes them into the file as ``/_inrcodec_models/<sha256>`` (uint8 model bytes) and
``/_inrcodec_models/grid_<id>`` (float64 ``[nlat, nlon, lat..., lon...]``). When the filter
meets a model or grid that is not in this process's cache it looks through the HDF5 files open
in this process (through h5py) for them, so ``f["t2m"][...]`` works in a fresh process. A file
whose model was not stored needs :func:`load_models` (or the model file) in the reading process.

See ``docs/hdf5.md`` for netCDF4 (the ``netcdf4`` engine uses its own copy of libhdf5) and for
getting an official filter id from The HDF Group.
"""

from __future__ import annotations

import ctypes
import os
import struct
import sys
import threading
import warnings
from typing import Any

import numpy as np

from inrcodec import _modelcache
from inrcodec.codec import COINppCodec

__all__ = [
    "FILTER_ID", "FILTER_NAME", "MODELS_GROUP", "register", "register_netcdf4", "is_registered",
    "filter_options", "h5py_kwargs", "xarray_encoding", "store_model", "load_models",
]

#: Filter id, from the range 32768-65535 that HDF5 leaves for unregistered (testing/private) use.
FILTER_ID = 47017
FILTER_NAME = b"inrcodec.coinpp (COIN++ neural codec; pip install inrcodec; import inrcodec.hdf5)"
MODELS_GROUP = "_inrcodec_models"
_VERSION = 1
_HEADER = 8  # user words; h5py reads at most 16 cd_values, so 8 + 2 + ndim <= 16
_FLAG_REVERSE = 0x0100
_H5T_FLOAT = 1

_hid_t = ctypes.c_int64
_herr_t = ctypes.c_int
_CAN_APPLY = ctypes.CFUNCTYPE(ctypes.c_int, _hid_t, _hid_t, _hid_t)
_SET_LOCAL = ctypes.CFUNCTYPE(_herr_t, _hid_t, _hid_t, _hid_t)
_FILTER = ctypes.CFUNCTYPE(
    ctypes.c_size_t, ctypes.c_uint, ctypes.c_size_t, ctypes.POINTER(ctypes.c_uint), ctypes.c_size_t,
    ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(ctypes.c_void_p),
)


class _H5ZClass2(ctypes.Structure):
    _fields_ = [
        ("version", ctypes.c_int),
        ("id", ctypes.c_int),
        ("encoder_present", ctypes.c_uint),
        ("decoder_present", ctypes.c_uint),
        ("name", ctypes.c_char_p),
        ("can_apply", _CAN_APPLY),
        ("set_local", _SET_LOCAL),
        ("filter", _FILTER),
    ]


# -------------------------------------------------------------------------------- cd_values
_grids: dict[str, tuple[list[float], list[float]]] = {}


def _grid_id(lat, lon) -> str:
    import hashlib

    data = np.asarray(list(lat) + list(lon), dtype="<f8").tobytes() + struct.pack("<2I", len(lat), len(lon))
    return hashlib.sha256(data).hexdigest()[:16]


def filter_options(model: Any, bits: int = 6, inner_steps: int = 10, lat=None, lon=None,
                   entropy_coding: bool = True, assume_global_grid: bool = False) -> tuple[int, ...]:
    """The filter's ``cd_values`` for ``model`` (and puts model and grid in this process's cache).

    Spherical models need ``lat``/``lon``, or ``assume_global_grid=True`` for global regular grids."""
    codec = COINppCodec(model, bits=bits, inner_steps=inner_steps, lat=lat, lon=lon,
                        entropy_coding=entropy_coding, assume_global_grid=assume_global_grid)
    if codec.model.grid_kind == "spherical" and codec.lat is None and not assume_global_grid:
        raise ValueError("a spherical model needs lat=/lon= (the dataset's coordinates), or "
                         "assume_global_grid=True for a global regular grid with ascending latitudes")
    flags = (1 if codec.entropy_coding else 0) | (2 if codec.lat is not None else 0)
    words = [_VERSION | (flags << 8), codec.bits | (codec.inner_steps << 8)]
    words += list(struct.unpack(">4I", bytes.fromhex(codec.model_sha256)[:16]))
    if codec.lat is not None:
        gid = _grid_id(codec.lat, codec.lon)
        _grids[gid] = (list(codec.lat), list(codec.lon))
        words += list(struct.unpack(">2I", bytes.fromhex(gid)))
    else:
        words += [0, 0]
    return tuple(int(w) for w in words)


def _user_len(cd: list[int]) -> int:
    if len(cd) < _HEADER or (cd[0] & 0xFF) != _VERSION:
        raise ValueError(f"not inrcodec filter parameters (version {cd[:1]})")
    return _HEADER


def _parse(cd: list[int]) -> tuple[tuple, dict, str, str | None, int, tuple[int, ...]]:
    """-> (cache key, settings, model sha prefix, grid id or None, itemsize, chunk dims)."""
    n = _user_len(cd)
    flags = cd[0] >> 8
    settings: dict[str, Any] = dict(bits=cd[1] & 0xFF, inner_steps=cd[1] >> 8, entropy_coding=bool(flags & 1))
    prefix = struct.pack(">4I", *cd[2:6]).hex()
    gid = struct.pack(">2I", *cd[6:8]).hex() if flags & 2 else None
    tail = cd[n:]
    if len(tail) < 2 or len(tail) != 2 + tail[1]:
        raise ValueError("the filter parameters lack the chunk layout (set_local did not run)")
    return tuple(cd[:n]), settings, prefix, gid, int(tail[0]), tuple(int(d) for d in tail[2:])


_codecs: dict[tuple, COINppCodec] = {}
_codecs_lock = threading.Lock()
last_error: str | None = None  # the last failure inside the filter (HDF5 only sees "filter failed")


def _open_files():
    """An h5py File for every HDF5 file open in this process, also those whose File object is gone
    (``h5py.File(p)["t2m"][...]``: only the dataset id keeps the file open)."""
    try:
        import h5py
    except ImportError:  # pragma: no cover
        return
    seen = set()
    for oid in h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_ALL):
        try:
            fid = oid if isinstance(oid, h5py.h5f.FileID) else h5py.h5i.get_file_id(oid)
            key = fid.fileno
            if key in seen:
                continue
            seen.add(key)
            yield h5py.File(fid)
        except Exception:  # noqa: BLE001 - an id we cannot follow is not the one
            continue


def _from_open_files(name: str, valid):
    """The first ``/_inrcodec_models/<name>`` in the open HDF5 files whose content ``valid(name, data)``
    accepts (returns the parsed value or None). Names are only hints: content decides."""
    for f in _open_files():
        try:
            g = f.get(MODELS_GROUP)
            for entry in g if g is not None else ():
                if entry.startswith(name):
                    value = valid(entry, g[entry][()])
                    if value is not None:
                        return value
        except Exception:  # noqa: BLE001 - a file we cannot read is not the one
            continue
    return None


def _model_if_valid(name: str, data):
    try:
        return _modelcache.model_from_bytes(np.asarray(data).tobytes(), name)[0], name
    except ValueError:  # bytes that do not hash to their name: not this model
        return None


def _grid_values(data) -> tuple[list[float], list[float]] | None:
    v = np.asarray(data, dtype="<f8").ravel()
    if v.size < 2 or not (v[0] >= 1 and v[1] >= 1 and v.size == 2 + int(v[0]) + int(v[1])):
        return None
    nlat = int(v[0])
    return list(v[2 : 2 + nlat]), list(v[2 + nlat :])


def _grid_if_valid(name: str, data):
    g = _grid_values(data)
    # a grid is keyed by its content: a dataset named grid_<id> holding other values is ignored
    return g if g is not None and "grid_" + _grid_id(*g) == name else None


def _find_model(prefix: str):
    cached = _modelcache.cached_model(prefix)
    if cached is not None:
        return cached
    hit = _from_open_files(prefix, _model_if_valid)
    if hit is None:
        raise LookupError(
            f"COIN++ model sha256 {prefix}... is neither loaded in this process nor stored in an open "
            f"file as /{MODELS_GROUP}/<sha256>; call inrcodec.hdf5.load_models(path) or "
            "COINppCodec(model_file) first"
        )
    return hit


def _find_grid(gid: str):
    g = _grids.get(gid)
    if g is None:
        hit = _from_open_files("grid_" + gid, _grid_if_valid)
        if hit is None:
            raise LookupError(f"lat/lon grid {gid} is not stored in an open file as /{MODELS_GROUP}/grid_{gid}")
        g = _grids.setdefault(gid, hit)
    return g


def _codec_for(cd: list[int]) -> tuple[COINppCodec, int, tuple[int, ...]]:
    key, settings, prefix, gid, itemsize, dims = _parse(cd)
    with _codecs_lock:
        codec = _codecs.get(key)
    if codec is None:
        model, sha = _find_model(prefix)
        if gid is not None:
            settings["lat"], settings["lon"] = _find_grid(gid)
        # without lat/lon the global-grid choice was made explicitly in filter_options
        codec = COINppCodec(model, model_sha256=sha, assume_global_grid=gid is None, **settings)
        with _codecs_lock:
            codec = _codecs.setdefault(key, codec)
    return codec, itemsize, dims


# -------------------------------------------------------------------------------- the filter
class _Lib:
    """One libhdf5 (h5py's, or netCDF4's own copy) and the filter class registered with it."""

    def __init__(self, cdll: ctypes.CDLL, label: str):
        self.lib = cdll
        self.label = label
        L = cdll
        L.H5allocate_memory.restype = ctypes.c_void_p
        L.H5allocate_memory.argtypes = [ctypes.c_size_t, ctypes.c_bool]
        L.H5free_memory.argtypes = [ctypes.c_void_p]
        L.H5Pget_chunk.argtypes = [_hid_t, ctypes.c_int, ctypes.POINTER(ctypes.c_ulonglong)]
        L.H5Tget_size.restype = ctypes.c_size_t
        L.H5Tget_size.argtypes = [_hid_t]
        L.H5Tget_class.argtypes = [_hid_t]
        L.H5Pget_filter_by_id2.argtypes = [
            _hid_t, ctypes.c_int, ctypes.POINTER(ctypes.c_uint), ctypes.POINTER(ctypes.c_size_t),
            ctypes.POINTER(ctypes.c_uint), ctypes.c_size_t, ctypes.c_char_p, ctypes.POINTER(ctypes.c_uint),
        ]
        L.H5Pmodify_filter.argtypes = [_hid_t, ctypes.c_int, ctypes.c_uint, ctypes.c_size_t, ctypes.POINTER(ctypes.c_uint)]
        L.H5Zregister.argtypes = [ctypes.c_void_p]
        L.H5Zfilter_avail.argtypes = [ctypes.c_int]
        self._can_apply = _CAN_APPLY(self.can_apply)
        self._set_local = _SET_LOCAL(self.set_local)
        self._filter = _FILTER(self.filter)
        self.cls = _H5ZClass2(1, FILTER_ID, 1, 1, FILTER_NAME, self._can_apply, self._set_local, self._filter)

    def can_apply(self, dcpl, type_id, space) -> int:
        try:
            ok = self.lib.H5Tget_class(type_id) == _H5T_FLOAT and self.lib.H5Tget_size(type_id) in (4, 8)
            return 1 if ok else 0
        except Exception:  # noqa: BLE001
            return -1

    def set_local(self, dcpl, type_id, space) -> int:
        global last_error
        try:
            L = self.lib
            flags = ctypes.c_uint(0)
            n = ctypes.c_size_t(64)
            vals = (ctypes.c_uint * 64)()
            name = ctypes.create_string_buffer(8)
            cfg = ctypes.c_uint(0)
            if L.H5Pget_filter_by_id2(dcpl, FILTER_ID, ctypes.byref(flags), ctypes.byref(n), vals, 8, name,
                                      ctypes.byref(cfg)) < 0:
                return -1
            cd = list(vals[: n.value])
            cd = cd[: _user_len(cd)]  # drop a layout appended earlier (a copied dcpl)
            dims = (ctypes.c_ulonglong * 32)()
            nd = L.H5Pget_chunk(dcpl, 32, dims)
            if nd < 0:
                return -1
            cd += [int(L.H5Tget_size(type_id)), int(nd)] + [int(dims[i]) for i in range(nd)]
            arr = (ctypes.c_uint * len(cd))(*cd)
            return L.H5Pmodify_filter(dcpl, FILTER_ID, flags.value, len(cd), arr)
        except Exception as exc:  # noqa: BLE001
            last_error = f"set_local: {exc}"
            print(f"inrcodec.hdf5 filter {FILTER_ID}: {last_error}", file=sys.stderr)
            return -1

    def filter(self, flags, cd_nelmts, cd_values, nbytes, buf_size, buf) -> int:
        global last_error
        try:
            cd = [cd_values[i] for i in range(cd_nelmts)]
            codec, itemsize, dims = _codec_for(cd)
            src = ctypes.string_at(buf[0], nbytes)
            dtype = np.dtype(f"<f{itemsize}") if sys.byteorder == "little" else np.dtype(f">f{itemsize}")
            if flags & _FLAG_REVERSE:
                # HDF5 copies exactly prod(dims) * itemsize bytes out of what we return: a chunk of
                # another shape must be refused here, else HDF5 reads past our buffer
                y = codec.decode_chunk(np.frombuffer(src, dtype=np.uint8), shape=dims, dtype=dtype)
                out = np.ascontiguousarray(y, dtype=dtype).tobytes()
            else:
                arr = np.frombuffer(src, dtype=dtype).reshape(dims)
                out = codec.encode(arr)
            p = self.lib.H5allocate_memory(len(out), False)
            if not p:
                return 0
            ctypes.memmove(p, out, len(out))
            self.lib.H5free_memory(buf[0])
            buf[0] = p
            buf_size[0] = len(out)
            return len(out)
        except Exception as exc:  # noqa: BLE001 - HDF5 only understands "0 = failed"
            last_error = f"{'decode' if flags & _FLAG_REVERSE else 'encode'}: {type(exc).__name__}: {exc}"
            msg = f"inrcodec.hdf5 filter {FILTER_ID} failed to {last_error}"
            if flags & _FLAG_REVERSE:
                print(msg, file=sys.stderr)
            else:
                warnings.warn(msg + " (the chunk is stored unfiltered: h5py sets the filter optional)",
                              RuntimeWarning, stacklevel=1)
            return 0

    def register(self) -> None:
        if self.lib.H5Zregister(ctypes.addressof(self.cls)) < 0:
            raise RuntimeError(f"H5Zregister failed for the {self.label} libhdf5")

    def available(self) -> bool:
        return self.lib.H5Zfilter_avail(FILTER_ID) > 0


_libs: dict[str, _Lib] = {}
_reg_lock = threading.Lock()


def _lib_of(module_file: str, label: str) -> _Lib:
    # dlsym on an extension module's handle searches its dependencies: this resolves to the
    # libhdf5 that this extension module is linked against (h5py's or netCDF4's own copy).
    with _reg_lock:
        lib = _libs.get(label)
        if lib is None:
            lib = _libs[label] = _Lib(ctypes.CDLL(module_file), label)
            lib.register()
        return lib


def register() -> None:
    """Register the filter with h5py's libhdf5 (idempotent; done on import of this module)."""
    import h5py.h5z

    _lib_of(h5py.h5z.__file__, "h5py")


def register_netcdf4() -> bool:
    """Register the filter with the libhdf5 that the ``netCDF4`` package loads (its own copy).

    Returns True when the filter is available to netCDF4 afterwards. Reading through it needs
    the model in this process's cache (:func:`load_models`): the filter cannot look into files
    that netCDF4's libhdf5 has open.
    """
    try:
        import netCDF4._netCDF4 as nc4
    except ImportError:
        return False
    lib = _lib_of(nc4.__file__, "netCDF4")
    return lib.available()


def is_registered() -> bool:
    import h5py.h5z

    return bool(h5py.h5z.filter_avail(FILTER_ID))


# -------------------------------------------------------------------------------- helpers
def h5py_kwargs(model: Any, bits: int = 6, inner_steps: int = 10, lat=None, lon=None,
                entropy_coding: bool = True, assume_global_grid: bool = False) -> dict[str, Any]:
    """``create_dataset(..., **h5py_kwargs(model, ...))``: ``compression`` and ``compression_opts``."""
    return {"compression": FILTER_ID,
            "compression_opts": filter_options(model, bits, inner_steps, lat, lon, entropy_coding,
                                               assume_global_grid)}


def xarray_encoding(da, model: Any, bits: int = 6, inner_steps: int = 10, chunks=None,
                    entropy_coding: bool = True) -> dict[str, Any]:
    """The ``encoding`` entry for ``da`` in ``ds.to_netcdf(path, engine="h5netcdf", encoding=...)``.

    Spherical models take lat/lon from the coordinates of the last two dims and need every chunk
    to span the whole lat/lon extent (chunk along the leading dims only). ``_FillValue`` is NaN,
    so missing values reach the codec as NaN and are masked out of the fit.
    """
    enc = COINppCodec.for_dataarray(da, model=model, bits=bits, inner_steps=inner_steps, zarr_format=2,
                                    chunks=chunks, entropy_coding=entropy_coding)
    codec = enc["compressors"][0]
    opts = filter_options(codec.model, codec.bits, codec.inner_steps, codec.lat, codec.lon, codec.entropy_coding,
                          codec.assume_global_grid)
    return {"compression": FILTER_ID, "compression_opts": opts, "chunksizes": tuple(enc["chunks"]),
            "_FillValue": np.nan if da.dtype.kind == "f" else None}


def store_model(h5, model: Any, lat=None, lon=None) -> str:
    """Write the model bytes into ``h5`` (an open h5py File/Group or a path) as
    ``/_inrcodec_models/<sha256>``, and, for spherical codecs with lat/lon, the grid as
    ``/_inrcodec_models/grid_<id>``; returns the model hash. Writing the same model twice is a no-op."""
    import h5py

    if isinstance(model, COINppCodec):
        data, sha = model.model_bytes, model.model_sha256
    elif isinstance(model, (str, os.PathLike)):
        _, data, sha = _modelcache.model_from_path(model)
    elif isinstance(model, (bytes, bytearray)):
        _, data, sha = _modelcache.model_from_bytes(bytes(model))
    else:
        _, data, sha = _modelcache.register_model(model)
    if isinstance(h5, (str, os.PathLike)):
        with h5py.File(h5, "a") as f:
            return store_model(f, data, lat, lon)
    g = h5.file.require_group(MODELS_GROUP)
    if sha not in g:
        d = g.create_dataset(sha, data=np.frombuffer(data, dtype=np.uint8))
        d.attrs["description"] = "inrcodec CoinModel (safetensors bytes) used by HDF5 filter %d" % FILTER_ID
    _label_filtered_datasets(h5.file)
    if lat is not None:
        lat = [float(v) for v in np.asarray(lat, dtype="f8")]
        lon = [float(v) for v in np.asarray(lon, dtype="f8")]
        gid = _grid_id(lat, lon)
        _grids.setdefault(gid, (lat, lon))
        if "grid_" + gid not in g:
            g.create_dataset("grid_" + gid, data=np.asarray([len(lat), len(lon)] + lat + lon, dtype="<f8"))
    return sha


READ_HINT = (f"compressed with the inrcodec.coinpp HDF5 filter (id {FILTER_ID}): to read it, "
             "pip install inrcodec and import inrcodec.hdf5 first")


def _label_filtered_datasets(f) -> None:
    """Put :data:`READ_HINT` on every dataset of ``f`` that uses the filter: a reader without inrcodec
    only gets HDF5's complaint about its plugin directory, but the attribute names what is needed."""
    import h5py

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
    cache; returns the model hashes. Needed before reading through netCDF4's libhdf5."""
    import h5py

    if isinstance(h5, (str, os.PathLike)):
        with h5py.File(h5, "r") as f:
            return load_models(f)
    g = h5.file.get(MODELS_GROUP)
    out = []
    for name, d in (g.items() if g is not None else ()):
        if name.startswith("grid_"):
            g = _grid_if_valid(name, d[()])
            if g is None:
                raise ValueError(f"{h5.file.filename}: /{MODELS_GROUP}/{name} does not hold the grid its name hashes")
            _grids.setdefault(name[5:], g)
        else:
            out.append(_modelcache.model_from_bytes(d[()].tobytes(), name)[2])
    return out


register()
