"""Training batches of spherical patches drawn from many fields, sources and resolutions.

A spherical model with ``patch_degrees`` (see :meth:`inrcodec.models.model.CoinModel.patch_points`)
is meant to encode grids from about 0.5 to 5 degrees. It learns that from a pool: every field
(one source on its own lat/lon grid) is also block-averaged to coarser grids, and each training
patch covers the area the encoder would give it on that grid (jittered a little, so sizes in
between are seen too). Every patch is reduced to the same number of random points, so patches
of any resolution and size share one batch; a patch with fewer points is padded with masked
points. Training code only: decoding never imports this module.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inrcodec.grids import SphericalGrid


@dataclass(frozen=True)
class Field:
    """Items (N, nlat, nlon) of one source on one grid; NaN where missing."""

    values: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    name: str = ""


def coarsen(field: Field, factor: int) -> Field:
    """Block means of ``factor`` x ``factor`` cells (NaN-aware; a block with no value stays NaN).

    Longitudes are averaged as unit vectors, so a block that crosses the date line stays in place.
    """
    if factor == 1:
        return field
    n, nlat, nlon = field.values.shape
    la, lo = nlat // factor, nlon // factor
    if la < 1 or lo < 1:
        raise ValueError(f"cannot coarsen a {nlat} x {nlon} grid by {factor}")
    v = field.values[:, : la * factor, : lo * factor].reshape(n, la, factor, lo, factor)
    finite = np.isfinite(v)
    count = finite.sum(axis=(2, 4))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(finite, v, 0.0).sum(axis=(2, 4)) / count
    mean = np.where(count > 0, mean, np.nan).astype(np.float32)
    lat = np.asarray(field.lat[: la * factor], np.float64).reshape(la, factor).mean(axis=1)
    rad = np.deg2rad(np.asarray(field.lon[: lo * factor], np.float64)).reshape(lo, factor)
    lon = np.rad2deg(np.arctan2(np.sin(rad).mean(axis=1), np.cos(rad).mean(axis=1)))
    return Field(mean, lat, lon, f"{field.name} /{factor}")


class SphericalPatchPool:
    """Random patches (coords, values, mask) from ``fields`` at several resolutions.

    ``fields``: :class:`Field` objects already normalised by the model; ``patch_points``: the
    model's rule from a grid to a patch shape in points (``CoinModel.patch_points``);
    ``points``: points per patch in a batch; ``factors``: block-mean coarsening factors (grids
    coarser than ``max_spacing`` degrees or smaller than 4 x 4 are skipped); ``jitter``: patch
    sides are scaled by ``exp(U(*jitter))`` (larger patches than the encoder's default are seen
    too, so an encoder may trade accuracy for rate with bigger patches).
    """

    def __init__(self, fields, patch_points, points: int = 256, factors=(1, 2, 3, 4), max_spacing: float = 8.0,
                 jitter: tuple[float, float] = (-0.3, 0.7)):
        self.points, self.jitter = int(points), tuple(float(j) for j in jitter)
        self.entries = []
        for f in fields:
            for k in factors:
                if f.values.shape[1] // k < 4 or f.values.shape[2] // k < 4:
                    continue
                g = coarsen(f, k)
                grid = SphericalGrid(g.lat, g.lon)
                if max(grid.spacing()) > max_spacing and k > 1:
                    continue
                self.entries.append((g, grid.coordinates(), patch_points(grid) or grid.shape))
        if not self.entries:
            raise ValueError("no training field is large enough (at least 4 x 4 points)")
        # big sources should not drown small ones: weight by the square root of their size
        w = np.array([np.sqrt(e[0].values.size) for e in self.entries], dtype=np.float64)
        self.weights = w / w.sum()

    def describe(self) -> list[str]:
        return [f"{g.name}: {g.values.shape[0]} x {len(g.lat)} x {len(g.lon)}, patch {p}" for g, _, p in self.entries]

    def sample(self, rng: np.random.Generator, batch_size: int):
        coords = np.zeros((batch_size, self.points, 3), np.float32)
        values = np.zeros((batch_size, self.points, 1), np.float32)
        mask = np.zeros((batch_size, self.points), bool)
        for b, e in enumerate(rng.choice(len(self.entries), size=batch_size, p=self.weights)):
            field, xyz, patch = self.entries[e]
            scale = np.exp(rng.uniform(*self.jitter))
            shape = field.values.shape[1:]
            size = [min(n, max(1, int(round(p * scale)))) for p, n in zip(patch, shape)]
            i = rng.integers(field.values.shape[0])
            a, o = (rng.integers(0, n - s + 1) for n, s in zip(shape, size))
            v = field.values[i, a : a + size[0], o : o + size[1]].reshape(-1)
            c = xyz[a : a + size[0], o : o + size[1]].reshape(-1, 3)
            take = rng.choice(v.size, size=min(v.size, self.points), replace=False)
            n = take.size
            coords[b, :n], values[b, :n, 0] = c[take], np.nan_to_num(v[take])
            mask[b, :n] = np.isfinite(v[take])
        return coords, values, mask


def regrid(field: Field, lat, lon) -> Field:
    """Bilinear interpolation to the grid ``lat`` x ``lon`` (degrees), periodic in longitude.

    Target latitudes beyond the source's outermost rows take those rows' values. Used to put
    held-out data on a benchmark grid (e.g. the 4-degree 46 x 90 grid of the COIN++ paper).
    """
    src_lat, src_lon = np.asarray(field.lat, np.float64), np.mod(np.asarray(field.lon, np.float64), 360.0)
    lat, lon = np.asarray(lat, np.float64), np.asarray(lon, np.float64)
    order = np.argsort(src_lon)
    src_lon, v = src_lon[order], field.values[:, :, order].astype(np.float64)
    if np.any(np.diff(src_lat) <= 0):
        raise ValueError("regrid needs ascending source latitudes")
    # along latitude: linear between rows, clamped at the edges
    i = np.clip(np.searchsorted(src_lat, lat) - 1, 0, len(src_lat) - 2)
    t = np.clip((lat - src_lat[i]) / (src_lat[i + 1] - src_lat[i]), 0.0, 1.0)
    v = v[:, i] * (1 - t)[None, :, None] + v[:, i + 1] * t[None, :, None]
    # along longitude: periodic
    ext_lon = np.concatenate([src_lon, src_lon[:1] + 360.0])
    v = np.concatenate([v, v[:, :, :1]], axis=2)
    x = np.mod(lon, 360.0)
    x = np.where(x < ext_lon[0], x + 360.0, x)
    j = np.clip(np.searchsorted(ext_lon, x) - 1, 0, len(ext_lon) - 2)
    u = (x - ext_lon[j]) / (ext_lon[j + 1] - ext_lon[j])
    out = v[:, :, j] * (1 - u) + v[:, :, j + 1] * u
    return Field(out.astype(np.float32), lat, lon, f"{field.name} regridded {len(lat)}x{len(lon)}")
