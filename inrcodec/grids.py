"""Coordinate grids for the trailing (spatial) dimensions of a chunk, patch partitions, and the
three hashes that name a lat/lon grid in stored data.

Leading dimensions (time, ensemble member, level) are batch items, never coordinates.
"""

from __future__ import annotations

import hashlib
import itertools
import struct
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CartesianGrid:
    """A regular grid in ``[-extent, extent]^d`` (audio d=1, images d=2, volumes d=3).

    >>> CartesianGrid((3,)).coordinates()[:, 0].tolist()
    [-1.0, 0.0, 1.0]
    """

    shape: tuple[int, ...]
    extent: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        if not self.shape or min(self.shape) < 1:
            raise ValueError(f"grid shape must be non-empty with sizes >= 1, got {self.shape}")

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def coord_dim(self) -> int:
        return len(self.shape)

    def digest(self) -> str:
        """SHA-256 (hex) of what defines the grid: kind, shape and extent. Pins a grid by content."""
        return _digest("cartesian", np.asarray(self.shape, np.float64), np.float64(self.extent))

    def coordinates(self) -> np.ndarray:
        """float32 array of shape (*shape, d)."""
        axes = [
            np.linspace(-self.extent, self.extent, n) if n > 1 else np.zeros(1) for n in self.shape
        ]
        return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).astype(np.float32)


@dataclass(frozen=True)
class SphericalGrid:
    """A latitude/longitude grid embedded on the unit sphere as (x, y, z).

    Takes the actual latitude and longitude values in degrees (any order, spacing or extent),
    so regional and irregular grids embed where they are on Earth.

    >>> g = SphericalGrid(lat=[0.0, 90.0], lon=[0.0, 90.0])
    >>> np.round(g.coordinates(), 6).tolist()[0]
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    """

    lat: tuple[float, ...]
    lon: tuple[float, ...]

    def __post_init__(self):
        lat = np.asarray(self.lat, dtype=np.float64).ravel()
        lon = np.asarray(self.lon, dtype=np.float64).ravel()
        if lat.size < 1 or lon.size < 1:
            raise ValueError("latitude and longitude need at least one value each")
        if not (np.all(np.isfinite(lat)) and np.all(np.isfinite(lon))):
            raise ValueError("latitude/longitude values must be finite")
        if np.any(np.abs(lat) > 90.0):
            raise ValueError(f"latitudes must lie in [-90, 90], got {lat.min()}..{lat.max()}")
        object.__setattr__(self, "lat", tuple(lat.tolist()))
        object.__setattr__(self, "lon", tuple(lon.tolist()))

    @classmethod
    def regular_global(cls, nlat: int, nlon: int) -> "SphericalGrid":
        """Cell centres of a regular global grid: what a chunk of a global field is assumed to be."""
        dlat, dlon = 180.0 / nlat, 360.0 / nlon
        return cls(lat=-90.0 + dlat * (np.arange(nlat) + 0.5), lon=dlon * np.arange(nlon))

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.lat), len(self.lon))

    def spacing(self) -> tuple[float, float]:
        """Median latitude and longitude spacing in degrees (180 and 360 for a single value)."""
        step = lambda v, full: float(np.median(np.abs(np.diff(v)))) if len(v) > 1 else full
        return step(self.lat, 180.0), step(self.lon, 360.0)

    @property
    def ndim(self) -> int:
        return 2

    @property
    def coord_dim(self) -> int:
        return 3

    def digest(self) -> str:
        """SHA-256 (hex) of the latitude and longitude values (float64). Pins a grid by content."""
        return _digest("spherical", np.asarray(self.lat, np.float64), np.asarray(self.lon, np.float64))

    def coordinates(self) -> np.ndarray:
        """float32 array of shape (nlat, nlon, 3): (cos lat cos lon, cos lat sin lon, sin lat)."""
        lat = np.deg2rad(np.asarray(self.lat))[:, None]
        lon = np.deg2rad(np.asarray(self.lon))[None, :]
        xyz = (np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat) + 0.0 * lon)
        return np.stack(xyz, axis=-1).astype(np.float32)


def _digest(kind: str, *arrays: np.ndarray) -> str:
    h = hashlib.sha256(kind.encode())
    for a in arrays:
        a = np.ascontiguousarray(a, dtype="<f8")
        h.update(len(a.ravel()).to_bytes(8, "little"))
        h.update(a.tobytes())
    return h.hexdigest()


# ------------------------------------------------------------------ the hashes of a lat/lon grid
# Three formats name a lat/lon grid by a hash of its values, each in its own way. Each is frozen
# by what it is stored in: a change would make stored data refuse to decode.


def config_grid_sha256(lat, lon) -> str:
    """The ``grid_sha256`` of a codec configuration (numcodecs, Zarr 2 and Zarr 3 metadata; a
    mismatch raises ``PinnedGridError``): :meth:`SphericalGrid.digest` of the values. Frozen by
    every stored configuration (docs/usage.md)."""
    return SphericalGrid(lat, lon).digest()


def pin_grid_key(lat, lon) -> bytes:
    """The grid part of a chunk's pin (``chunkformat.model_pin``): ``b"regular"`` without lat/lon
    or with exactly the values of the regular global grid of their sizes (the chunk header holds
    the shape), else the SHA-256 of ``b"lat" || lat || b"lon" || lon`` (little-endian float64).
    Frozen by every chunk written (docs/format.md, "The pin")."""
    if lat is None:
        return b"regular"
    lat, lon = np.asarray(lat, "<f8"), np.asarray(lon, "<f8")
    default = SphericalGrid.regular_global(lat.size, lon.size)
    if np.array_equal(lat, np.asarray(default.lat, "<f8")) and np.array_equal(lon, np.asarray(default.lon, "<f8")):
        return b"regular"
    return hashlib.sha256(b"lat" + lat.tobytes() + b"lon" + lon.tobytes()).digest()


def hdf5_grid_id(lat, lon) -> str:
    """16 hex digits naming a lat/lon grid inside an HDF5 file (``/_inrcodec_models/grid_<id>``
    and the filter's ``cd_values``, layouts 1 and 2): the SHA-256 of the values (little-endian
    float64, lat then lon) and their counts (two little-endian uint32). Frozen by every file
    written (docs/hdf5.md)."""
    data = np.asarray(list(lat) + list(lon), dtype="<f8").tobytes() + struct.pack("<2I", len(lat), len(lon))
    return hashlib.sha256(data).hexdigest()[:16]


class PatchPartition:
    """An exact cover of ``shape`` by patches of ``patch_shape``.

    Patches start at multiples of the patch size; where a size is not a multiple, the last
    patch is moved back so that it ends at the edge (it overlaps its neighbour), so every
    patch is full size and decoding returns exactly ``shape``. A dimension smaller than the
    patch gets one patch of its own size.

    >>> p = PatchPartition((5,), (2,))
    >>> p.starts
    [(0,), (2,), (3,)]
    """

    def __init__(self, shape: tuple[int, ...], patch_shape: tuple[int, ...]):
        shape, patch_shape = tuple(int(s) for s in shape), tuple(int(s) for s in patch_shape)
        if len(shape) != len(patch_shape):
            raise ValueError(f"patch shape {patch_shape} does not match data shape {shape}")
        if min(shape, default=1) < 1 or min(patch_shape, default=1) < 1:
            raise ValueError(f"sizes must be >= 1: shape {shape}, patch {patch_shape}")
        self.shape = shape
        self.patch_shape = tuple(min(p, n) for p, n in zip(patch_shape, shape))
        per_dim = []
        for n, p in zip(shape, self.patch_shape):
            starts = list(range(0, n - p + 1, p))
            if starts[-1] + p < n:
                starts.append(n - p)
            per_dim.append(starts)
        self.starts: list[tuple[int, ...]] = list(itertools.product(*per_dim))
        self._per_dim = per_dim

    @property
    def num_patches(self) -> int:
        return len(self.starts)

    @property
    def per_dim_starts(self) -> list[list[int]]:
        """The patch starts along each axis (:attr:`starts` is their product, the last axis fastest)."""
        return [list(s) for s in self._per_dim]

    def _slices(self, start):
        return tuple(slice(s, s + p) for s, p in zip(start, self.patch_shape))

    def extract(self, array: np.ndarray, trailing: int = 0) -> np.ndarray:
        """(..., *shape, *t) -> (..., num_patches, *patch_shape, *t); ``trailing`` = len(t)."""
        array = np.asarray(array)
        lead = array.ndim - len(self.shape) - trailing
        if lead < 0 or array.shape[lead : lead + len(self.shape)] != self.shape:
            raise ValueError(f"array of shape {array.shape} does not hold a grid of shape {self.shape}")
        pre = (slice(None),) * lead
        return np.stack([array[pre + self._slices(s)] for s in self.starts], axis=lead)

    def assemble(self, patches: np.ndarray, trailing: int = 0) -> np.ndarray:
        """Inverse of :meth:`extract` (overlapping cells take the later patch's values)."""
        patches = np.asarray(patches)
        lead = patches.ndim - len(self.shape) - 1 - trailing
        if lead < 0 or patches.shape[lead] != self.num_patches:
            raise ValueError(f"expected {self.num_patches} patches on axis {lead}, got shape {patches.shape}")
        tail = patches.shape[lead + 1 + len(self.shape) :]
        out = np.empty(patches.shape[:lead] + self.shape + tail, dtype=patches.dtype)
        pre = (slice(None),) * lead
        for i, s in enumerate(self.starts):
            out[pre + self._slices(s)] = patches[pre + (i,)]
        return out


    def kept_groups(self) -> list[tuple[np.ndarray, tuple[int, ...]]]:
        """The patches grouped by the part of each that :meth:`assemble` keeps: ``(patch indices,
        kept shape)``, the kept part being a patch's first points along each axis, up to where a
        later patch overlapping it starts. A decoder evaluates only those points.

        >>> [(i.tolist(), q) for i, q in PatchPartition((5,), (2,)).kept_groups()]
        [([0, 2], (2,)), ([1], (1,))]
        """
        kept = []
        for starts, p in zip(self._per_dim, self.patch_shape):
            kept.append([min(p, b - a) for a, b in zip(starts, starts[1:])] + [p])
        shapes = list(itertools.product(*kept))
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, q in enumerate(shapes):
            groups.setdefault(q, []).append(i)
        return [(np.asarray(idx, dtype=np.intp), q) for q, idx in groups.items()]

    def kept_slices(self, index: int, kept: tuple[int, ...]) -> tuple[slice, ...]:
        """Where the kept part ``kept`` of patch ``index`` lies in the grid."""
        return tuple(slice(s, s + q) for s, q in zip(self.starts[index], kept))

    def kept_mask(self) -> np.ndarray:
        """(num_patches, *patch_shape) bool: True at the points of each patch that :meth:`assemble`
        keeps (:meth:`kept_groups`), so that every grid point is True in exactly one patch.

        >>> PatchPartition((5,), (2,)).kept_mask().tolist()
        [[True, True], [True, False], [True, True]]
        """
        mask = np.zeros((self.num_patches,) + self.patch_shape, dtype=bool)
        for idx, kept in self.kept_groups():
            mask[(idx,) + tuple(slice(0, q) for q in kept)] = True
        return mask


def random_patch_starts(rng: np.random.Generator, shape, patch_shape, n: int) -> np.ndarray:
    """``n`` random patch origins (n, ndim) of ``patch_shape`` inside ``shape``, for training."""
    highs = [max(s - p, 0) + 1 for s, p in zip(shape, patch_shape)]
    return np.stack([rng.integers(0, h, size=n) for h in highs], axis=1) if highs else np.zeros((n, 0), int)
