"""What every chunk of one (model, grid) pair shares: its pin, its grids, its lock.

``context(model, settings)`` is cached by the model's hash and the settings' lat/lon, so the
pure functions ``encode_chunk`` / ``decode_chunk`` build coordinate grids once per chunk shape
and serialise work per model (:func:`model_lock`).
"""

from __future__ import annotations

import threading
from functools import lru_cache

import numpy as np

from inrcodec import chunkformat as cf
from inrcodec.chunkcodec.coarse import CoarseGrid
from inrcodec.chunkcodec.timing import stage
from inrcodec.grids import pin_grid_key

__all__ = ["ChunkContext", "context", "model_lock"]

_locks_lock = threading.Lock()
_locks: dict[str, threading.RLock] = {}


def model_lock(sha256: str) -> threading.RLock:
    """One lock per model: the encode inner loop (autograd) and decode run one at a time per model.

    torch already spreads a single call over all cores (intra-op threads), so serialising the
    calls that zarr makes from its thread pool avoids oversubscription and any sharing of the
    network's parameters between concurrent autograd graphs.
    """
    with _locks_lock:
        return _locks.setdefault(sha256, threading.RLock())


class ChunkContext:
    def __init__(self, model, lat: tuple[float, ...] | None, lon: tuple[float, ...] | None):
        self.model, self.lat, self.lon = model, lat, lon
        self.sha256 = model.sha256
        self.lock = model_lock(self.sha256)
        # lat/lon equal to the regular global grid pin like none: that grid is what is assumed
        self.pin = cf.model_pin(self.sha256, pin_grid_key(lat, lon))
        self._grids: dict[tuple[int, ...], object] = {}
        self._grids_lock = threading.Lock()
        self._priors: dict[tuple, np.ndarray] = {}
        self._coarse: dict[tuple, CoarseGrid] = {}

    def grid(self, spatial: tuple[int, ...]):
        """The coordinate grid of a chunk whose spatial shape is ``spatial`` (built once)."""
        with self._grids_lock:
            g = self._grids.get(spatial)
        if g is not None:
            return g
        m = self.model
        if m.grid_kind == "spherical" and self.lat is not None:
            if (len(self.lat), len(self.lon)) != tuple(spatial):
                raise ValueError(
                    f"the chunk's spatial shape {spatial} does not match the codec's "
                    f"lat[{len(self.lat)}] x lon[{len(self.lon)}]: a COINppCodec with lat/lon "
                    "describes one spatial extent, so chunk only along the leading (e.g. time) "
                    "dimensions or pass the lat/lon of a single spatial chunk"
                )
            g = m.make_grid(spatial, lat=np.asarray(self.lat), lon=np.asarray(self.lon))
        else:  # cartesian, or spherical without lat/lon: a global regular grid of the chunk's shape
            g = m.make_grid(spatial)
        with self._grids_lock:
            return self._grids.setdefault(spatial, g)

    @stage("reconstruct")
    def reconstruct(self, latents: np.ndarray, spatial: tuple[int, ...], patch_aim: int = 0) -> np.ndarray:
        """The network reconstruction (float64, physical units) of dequantised latents.

        The one function the encoder (error-bounded mode) and the decoder both use, with the
        same latents array shape, so both run the same CPU float32 computation.
        """
        grid = self.grid(spatial)
        with self.lock:
            return np.asarray(self.model.decode(latents, grid, patch_aim=patch_aim), dtype=np.float64)

    @stage("reconstruct")
    def reconstruct_at(self, latents: np.ndarray, spatial: tuple[int, ...], rows: np.ndarray,
                       patch_aim: int = 0) -> np.ndarray:
        """The network's values (float64, physical units) of dequantised latents at each patch's
        points ``rows`` only (``CoinModel.decode_at``): for the encoder's estimates (their last bits
        may differ from :meth:`reconstruct`'s at those points)."""
        grid = self.grid(spatial)
        with self.lock:
            return self.model.decode_at(latents, grid, rows, patch_aim=patch_aim)

    @stage("reconstruct")
    def reconstruct_coarse(self, latents: np.ndarray, spatial: tuple[int, ...], patch_aim: int = 0) -> np.ndarray:
        """The network reconstruction (float64, physical units) of a coarse hybrid chunk (mode 6):
        the network at every ``coarse.STRIDE``-th point along each axis, interpolated linearly
        in between (:class:`~inrcodec.chunkcodec.coarse.CoarseGrid`). The one function the encoder
        and the decoder both use, as :meth:`reconstruct` is for the other modes."""
        grid = self.grid(spatial)
        key = (tuple(spatial), patch_aim)
        with self._grids_lock:
            coarse_grid = self._coarse.get(key)
        if coarse_grid is None:
            coarse_grid = CoarseGrid.of(self.model.partition(grid, patch_aim))
            with self._grids_lock:
                coarse_grid = self._coarse.setdefault(key, coarse_grid)
        with self.lock:
            at_rows = self.model.decode_at(latents, grid, coarse_grid.rows, patch_aim=patch_aim)
        return coarse_grid.upsample(coarse_grid.scatter(at_rows))

    def prior_field(self, spatial: tuple[int, ...], patch_aim: int = 0) -> np.ndarray:
        """The network's field at zero latents (what every fit starts from), ``spatial`` float64:
        the level the meta-learned network expects a chunk to lie at (built once)."""
        key = (tuple(spatial), patch_aim)
        with self._grids_lock:
            field = self._priors.get(key)
        if field is None:
            m = self.model
            zeros = np.zeros((1, m.partition(self.grid(spatial), patch_aim).num_patches, m.latent_dim), np.float32)
            field = self.reconstruct(zeros, spatial, patch_aim)[0]
            field.setflags(write=False)
            with self._grids_lock:
                field = self._priors.setdefault(key, field)
        return field


@lru_cache(maxsize=64)
def _context(model, sha256: str, lat, lon) -> ChunkContext:
    return ChunkContext(model, lat, lon)


def context(model, settings) -> ChunkContext:
    """The shared context of ``model`` with the grid of ``settings`` (a CodecSettings)."""
    return _context(model, model.sha256, settings.lat, settings.lon)
