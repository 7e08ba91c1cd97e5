"""The network on a coarser grid: the prediction of a coarse hybrid chunk (mode 6).

A hybrid chunk's network carries the large scales and SPERR the rest, so its network need not be
evaluated at every grid point: mode 6 evaluates it at every ``STRIDE``-th point along each spatial
axis (and the last one) and interpolates linearly in between (in grid index, axis by axis). The
encoder and the decoder both go through ``ChunkContext.reconstruct_coarse`` (the network at
:attr:`CoarseGrid.rows`, then :meth:`CoarseGrid.scatter` and :meth:`CoarseGrid.upsample`), so SPERR
corrects exactly what the decoder computes.

>>> g = CoarseGrid.of(PatchPartition((5,), (2,)))
>>> g.index
(array([0, 2, 4]),)
>>> g.upsample(np.array([[0.0, 2.0, 8.0]])).tolist()
[[0.0, 1.0, 2.0, 5.0, 8.0]]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from inrcodec.grids import PatchPartition

__all__ = ["STRIDE", "CoarseGrid", "coarse_index"]

#: mode 6 evaluates the network at every ``STRIDE``-th grid point along each spatial axis
STRIDE = 2


def coarse_index(n: int, stride: int = STRIDE) -> np.ndarray:
    """The points of an axis of ``n`` where the network is evaluated: every ``stride``-th from the
    first, and the last (so that every point lies between two of them)."""
    return np.unique(np.append(np.arange(0, n, stride), n - 1)).astype(np.intp)


@dataclass(frozen=True)
class CoarseGrid:
    """Where each patch of a partition is evaluated and how the coarse values are spread back.

    ``rows`` (num_patches, K): each patch's points (flat indices into the patch) on the coarse
    grid, among those it keeps (:meth:`PatchPartition.kept_mask`), padded with its first point
    where a patch has fewer; ``used`` marks the real ones and ``dest`` the coarse-grid point (flat)
    each fills: every coarse point is filled exactly once."""

    shape: tuple[int, ...]
    index: tuple[np.ndarray, ...]
    rows: np.ndarray
    used: np.ndarray
    dest: np.ndarray

    @classmethod
    def of(cls, part: PatchPartition, stride: int = STRIDE) -> "CoarseGrid":
        index = tuple(coarse_index(n, stride) for n in part.shape)
        coarse_shape = tuple(len(i) for i in index)
        # per axis and patch start: the coarse points among the points that patch keeps along it
        # (local position, coarse number), padded; a patch's points are their product over the axes
        local, number, present = [], [], []
        for n, idx, starts, p in zip(part.shape, index, part.per_dim_starts, part.patch_shape):
            num = np.full(n, -1, dtype=np.intp)
            num[idx] = np.arange(len(idx))
            kept = [min(p, b - a) for a, b in zip(starts, starts[1:])] + [p]
            ranges = [num[s:s + q] for s, q in zip(starts, kept)]
            width = max(1, max(int((r >= 0).sum()) for r in ranges))
            pos = np.zeros((len(starts), width), dtype=np.intp)
            coarse_number = np.zeros((len(starts), width), dtype=np.intp)
            ok = np.zeros((len(starts), width), dtype=bool)
            for j, r in enumerate(ranges):
                at = np.flatnonzero(r >= 0)
                pos[j, : at.size], coarse_number[j, : at.size], ok[j, : at.size] = at, r[at], True
            local.append(pos)
            number.append(coarse_number)
            present.append(ok)
        ndim = len(part.shape)
        rows = np.zeros((), dtype=np.intp)
        dest = np.zeros((), dtype=np.intp)
        used = np.ones((), dtype=bool)
        for d in range(ndim):  # the product over the axes, patches in the partition's order (C order)
            shape = [1] * (2 * ndim)
            shape[d], shape[ndim + d] = local[d].shape
            rows = rows * part.patch_shape[d] + local[d].reshape(shape)
            dest = dest * coarse_shape[d] + number[d].reshape(shape)
            used = used & present[d].reshape(shape)
        rows, dest, used = (a.reshape(part.num_patches, -1) for a in (rows, dest, used))
        order = np.argsort(~used, axis=1, kind="stable")  # each patch's points first, in C order
        rows, dest, used = (np.take_along_axis(a, order, axis=1) for a in (rows, dest, used))
        k = max(1, int(used.sum(axis=1).max()))
        rows, dest, used = rows[:, :k].copy(), np.where(used[:, :k], dest[:, :k], 0), used[:, :k].copy()
        first = np.where(used[:, 0], rows[:, 0], 0)[:, None]  # padding: the patch's first point (or 0)
        rows[~used] = np.broadcast_to(first, rows.shape)[~used]
        if np.sort(dest[used]).tolist() != list(range(math.prod(coarse_shape))):  # pragma: no cover - invariant
            raise AssertionError("the patches' kept points do not cover the coarse grid once")
        for a in (rows, used, dest):
            a.setflags(write=False)
        return cls(tuple(part.shape), index, rows, used, dest)

    def scatter(self, at_rows: np.ndarray) -> np.ndarray:
        """(N, num_patches, K) values at :attr:`rows` -> (N, *coarse shape) values on the coarse grid."""
        out = np.empty((at_rows.shape[0], math.prod(len(i) for i in self.index)), dtype=at_rows.dtype)
        out[:, self.dest[self.used]] = at_rows[:, self.used]
        return out.reshape((at_rows.shape[0],) + tuple(len(i) for i in self.index))

    def upsample(self, coarse: np.ndarray) -> np.ndarray:
        """(N, *coarse shape) -> (N, *shape) float64: linear interpolation in grid index along each
        spatial axis in turn (the coarse points keep their values)."""
        out = np.asarray(coarse, dtype=np.float64)
        for axis, (n, idx) in enumerate(zip(self.shape, self.index), start=1):
            if len(idx) == n:
                continue
            left = np.clip(np.searchsorted(idx, np.arange(n), side="right") - 1, 0, len(idx) - 2)
            w = (np.arange(n) - idx[left]) / (idx[left + 1] - idx[left])
            w = w.reshape((n,) + (1,) * (out.ndim - axis - 1))
            out = np.take(out, left, axis=axis) * (1.0 - w) + np.take(out, left + 1, axis=axis) * w
        return out
