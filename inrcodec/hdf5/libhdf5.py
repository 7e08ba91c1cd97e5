"""The filter's registration with a libhdf5, through ctypes (no compiled plugin).

A ``H5Z_class2_t`` whose callbacks are Python functions is registered with ``H5Zregister`` of
the libhdf5 that h5py uses (:func:`register`) and the copy that the netCDF4 wheel loads
(:func:`register_netcdf4`); ``import inrcodec.hdf5`` runs both. ``set_local`` appends the chunk layout to
the ``cd_values`` when a dataset is created; ``filter`` hands each chunk to :mod:`.chunks`.
"""

from __future__ import annotations

import ctypes
import sys
import threading
import warnings

from inrcodec.hdf5 import chunks, layout
from inrcodec.hdf5.layout import FILTER_ID, FILTER_NAME

__all__ = ["register", "register_netcdf4", "is_registered", "last_error"]

#: the last failure inside the filter (HDF5 itself only says "filter returned failure")
last_error: str | None = None

_FLAG_REVERSE = 0x0100
_H5T_FLOAT = 1
_MAX_CD = 256  # H5Pget_filter_by_id2 refuses a larger buffer ("probable uninitialized")

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


def _declare(L: ctypes.CDLL) -> None:
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


def _fail(what: str, exc: Exception) -> None:
    global last_error
    last_error = f"{what}: {type(exc).__name__}: {exc}"


class _Lib:
    """One libhdf5 (h5py's, or netCDF4's own copy) and the filter class registered with it."""

    def __init__(self, cdll: ctypes.CDLL, label: str):
        self.lib, self.label = cdll, label
        _declare(cdll)
        # the CFUNCTYPE objects must live as long as the library may call them
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
        try:
            L = self.lib
            flags, n = ctypes.c_uint(0), ctypes.c_size_t(_MAX_CD)
            vals, name, cfg = (ctypes.c_uint * _MAX_CD)(), ctypes.create_string_buffer(8), ctypes.c_uint(0)
            if L.H5Pget_filter_by_id2(dcpl, FILTER_ID, ctypes.byref(flags), ctypes.byref(n), vals, 8, name,
                                      ctypes.byref(cfg)) < 0 or n.value > _MAX_CD:
                return -1
            cd = list(vals[: n.value])
            cd = cd[: layout.user_words(cd)]  # drop a layout appended earlier (a copied dcpl)
            dims = (ctypes.c_ulonglong * 32)()
            nd = L.H5Pget_chunk(dcpl, 32, dims)
            if nd < 0:
                return -1
            cd += [int(L.H5Tget_size(type_id)), int(nd)] + [int(dims[i]) for i in range(nd)]
            return L.H5Pmodify_filter(dcpl, FILTER_ID, flags.value, len(cd), (ctypes.c_uint * len(cd))(*cd))
        except Exception as exc:  # noqa: BLE001
            _fail("set_local", exc)
            print(f"inrcodec.hdf5 filter {FILTER_ID}: {last_error}", file=sys.stderr)
            return -1

    def filter(self, flags, cd_nelmts, cd_values, nbytes, buf_size, buf) -> int:
        reverse = bool(flags & _FLAG_REVERSE)
        try:
            cd = [cd_values[i] for i in range(cd_nelmts)]
            src = ctypes.string_at(buf[0], nbytes)
            out = chunks.decode(cd, src) if reverse else chunks.encode(cd, src)
            p = self.lib.H5allocate_memory(len(out), False)
            if not p:
                return 0
            ctypes.memmove(p, out, len(out))
            self.lib.H5free_memory(buf[0])
            buf[0], buf_size[0] = p, len(out)
            return len(out)
        except Exception as exc:  # noqa: BLE001 - HDF5 only understands "0 = failed"
            _fail("decode" if reverse else "encode", exc)
            msg = f"inrcodec.hdf5 filter {FILTER_ID} failed to {last_error}"
            if reverse:
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
    """Register the filter with h5py's libhdf5 (idempotent; ``import inrcodec.hdf5`` runs it)."""
    import h5py.h5z

    _lib_of(h5py.h5z.__file__, "h5py")


def register_netcdf4() -> bool:
    """Register the filter with the libhdf5 that the ``netCDF4`` package loads (its own copy; idempotent).

    Returns True when the filter is available to netCDF4 afterwards, False without netCDF4.
    Reading through it needs the model in this process's cache (:func:`inrcodec.hdf5.load_models`): the
    filter cannot look into files that netCDF4's libhdf5 has open.
    """
    try:
        import netCDF4._netCDF4 as nc4
    except ImportError:
        return False
    return _lib_of(nc4.__file__, "netCDF4").available()


def is_registered() -> bool:
    """Whether h5py's libhdf5 knows the filter."""
    import h5py.h5z

    return bool(h5py.h5z.filter_avail(FILTER_ID))
