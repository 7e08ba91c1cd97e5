"""A trained model as one object: base network, grid kind, patching, normalisation, coding tables.

A model is one safetensors file (weights and count tables as arrays, everything else as one
canonical JSON string in its metadata) and is identified by the SHA-256 of those bytes.
Loading never unpickles.
"""

from __future__ import annotations

import hashlib
from functools import cached_property
from pathlib import Path

import numpy as np

from inrcodec.models import modelfile
from inrcodec.errors import ModelFileError, PinnedModelError
from inrcodec.models.fitting import fit_chunk, fit_modulations, reconstruct
from inrcodec.grids import CartesianGrid, PatchPartition, SphericalGrid
from inrcodec.models.network import ModulatedSiren

GRID_KINDS = ("cartesian", "spherical")
#: how :meth:`CoinModel.encode` fits a chunk's items
FIT_MODES = ("fast", "full")


class CoinModel:
    """A base network plus everything needed to turn a chunk into latents and back.

    Parameters
    ----------
    network: the modulated SIREN.
    grid_kind: ``"spherical"`` (lat/lon data, coordinates on the unit sphere) or
        ``"cartesian"`` (1-3 D regular grids in ``[-extent, extent]^d``).
    patch_shape: the spatial patch the network was trained on (None: whole items).
        Spherical patches keep their position on the globe; cartesian patches use local
        coordinates, so every patch of an image or volume is fitted like a small image.
    offset, scale: normalisation ``(x - offset) / scale`` (training data mapped to [0, 1]).
    inner_lr, encode_steps: the inner loop used to encode (a Meta-SGD network uses its own
        learned rates instead of ``inner_lr``).
    patch_degrees: spherical models only, ``(min, max)`` patch sides in degrees the network was
        trained on. A patch then aims at ``patch_shape`` grid points but its side in degrees is
        clipped to this range, so one model serves grids from coarse to fine (see
        :meth:`patch_points`). None: patches are ``patch_shape`` points on every grid.
    refine_lr: Adam step size of encode-time refinement (``encode(..., refine_steps=N)``);
        None: a tenth of the calibrated latents' median standard deviation, so the steps fit the
        scale the network's latents actually have (1e-3 before calibration).
    """

    def __init__(
        self,
        network: ModulatedSiren,
        grid_kind: str,
        patch_shape: tuple[int, ...] | None = None,
        extent: float = 1.0,
        offset: float = 0.0,
        scale: float = 1.0,
        inner_lr: float = 1e-2,
        encode_steps: int = 10,
        description: dict | None = None,
        coding: dict | None = None,
        patch_degrees: tuple[float, float] | None = None,
        refine_lr: float | None = None,
    ):
        if grid_kind not in GRID_KINDS:
            raise ValueError(f"grid_kind must be one of {GRID_KINDS}, got {grid_kind!r}")
        if grid_kind == "spherical" and network.dim_in != 3:
            raise ValueError("a spherical model needs a network with dim_in=3 (x, y, z)")
        if not np.isfinite(scale) or scale <= 0 or not np.isfinite(offset):
            raise ValueError(f"normalisation scale must be finite and > 0, got offset={offset}, scale={scale}")
        self.network = network.eval()
        self.grid_kind = grid_kind
        self.patch_shape = tuple(int(p) for p in patch_shape) if patch_shape else None
        self.extent = float(extent)
        self.offset, self.scale = float(offset), float(scale)
        self.inner_lr, self.encode_steps = float(inner_lr), int(encode_steps)
        self.description = dict(description or {})
        if patch_degrees is not None:
            lo, hi = (float(v) for v in patch_degrees)
            if grid_kind != "spherical" or not self.patch_shape or not (0 < lo <= hi <= 360):
                raise ValueError(f"patch_degrees needs a spherical model with a patch_shape and 0 < min <= max <= 360, got {patch_degrees}")
            patch_degrees = (lo, hi)
        self.patch_degrees = patch_degrees
        self.refine_lr = None if refine_lr is None else float(refine_lr)
        # coding: {"latent_mean", "latent_std", "num_std", "tables": {bits: {"shared": counts, "per_dim": counts}}}
        self.coding = coding

    # -- geometry ---------------------------------------------------------------------------
    @property
    def spatial_ndim(self) -> int:
        return 2 if self.grid_kind == "spherical" else self.network.dim_in

    @property
    def latent_dim(self) -> int:
        return self.network.latent_dim

    def make_grid(self, shape, lat=None, lon=None):
        """The grid for a chunk's trailing ``shape`` (lat/lon values for spherical models)."""
        shape = tuple(int(s) for s in shape)
        if len(shape) != self.spatial_ndim:
            raise ValueError(f"this {self.grid_kind} model encodes {self.spatial_ndim}-D fields, got spatial shape {shape}")
        if self.grid_kind == "cartesian":
            return CartesianGrid(shape, self.extent)
        if lat is None and lon is None:
            return SphericalGrid.regular_global(*shape)
        if lat is None or lon is None:
            raise ValueError("give both lat and lon, or neither (a global regular grid is assumed)")
        grid = SphericalGrid(lat, lon)
        if grid.shape != shape:
            raise ValueError(f"lat/lon of sizes {grid.shape} do not match the chunk's spatial shape {shape}")
        return grid

    def patch_points(self, grid, aim: int = 0) -> tuple[int, ...] | None:
        """The patch shape in grid points for ``grid`` (None: the whole grid is one patch).

        With ``patch_degrees`` the side is ``patch_shape[0]`` (or ``aim``, when given) times the
        latitude spacing, clipped to the trained range, then converted back to points along each
        axis. This rule is part of the chunk format: encoder and decoder derive the same
        partition from the grid (and the chunk's patch aim, format version 4).
        """
        aim = int(aim)
        if aim and not self.supports_patch_aim:
            raise ValueError("a patch aim needs a spherical model with patch_degrees (patches sized in degrees)")
        if self.patch_degrees is None or not isinstance(grid, SphericalGrid):
            return self.patch_shape
        dlat, dlon = grid.spacing()
        side = min(max((aim or self.patch_shape[0]) * dlat, self.patch_degrees[0]), self.patch_degrees[1])
        return (max(1, int(round(side / dlat))), max(1, int(round(side / dlon))))

    @property
    def supports_patch_aim(self) -> bool:
        """Whether chunks may choose their patch size (spherical models with ``patch_degrees``)."""
        return self.patch_degrees is not None

    def partition(self, grid_or_shape, aim: int = 0) -> PatchPartition:
        """The patch partition of a grid (or of a spatial shape, on the grid ``make_grid`` assumes)."""
        grid = grid_or_shape if hasattr(grid_or_shape, "coordinates") else self.make_grid(grid_or_shape)
        return PatchPartition(grid.shape, self.patch_points(grid, aim) or grid.shape)

    @cached_property
    def _local_patch_coords(self) -> np.ndarray:
        return CartesianGrid(self.patch_shape, self.extent).coordinates()

    def item_coordinates(self, grid, aim: int = 0) -> tuple[np.ndarray, PatchPartition]:
        """Coordinates (num_patches, P, d) of every patch of ``grid``, and the partition."""
        part = self.partition(grid, aim)
        if self.grid_kind == "cartesian" and self.patch_shape is not None:
            local = self._local_patch_coords[tuple(slice(0, s) for s in part.patch_shape)]
            local = local.reshape(-1, local.shape[-1])
            return np.broadcast_to(local, (part.num_patches,) + local.shape), part
        coords = part.extract(grid.coordinates(), trailing=1)
        return coords.reshape(part.num_patches, -1, coords.shape[-1]), part

    def changed(self) -> None:
        """Forget the cached bytes/hash after the network or settings were changed in place."""
        self.__dict__.pop("_bytes", None)
        self.__dict__.pop("_sha256", None)

    # -- normalisation -----------------------------------------------------------------------
    def normalise(self, values: np.ndarray) -> np.ndarray:
        return ((np.asarray(values, dtype=np.float64) - self.offset) / self.scale).astype(np.float32)

    def denormalise(self, values) -> np.ndarray:
        return np.asarray(values, dtype=np.float64) * self.scale + self.offset

    # -- encode / decode ---------------------------------------------------------------------
    def encode(self, values, grid, steps: int | None = None, mask=None, refine_steps: int = 0,
               patch_aim: int = 0, fit: str = "full", points_per_latent: int | None = None) -> np.ndarray:
        """Fit latents for ``values`` (N, *spatial) in physical units -> (N, num_patches, k).

        ``mask`` (N, *spatial) bool is True where a value is valid; NaNs are always masked.
        ``refine_steps`` Adam steps (``refine_lr``) follow the meta-learned SGD steps: more
        accuracy for more encode time. ``patch_aim``: see :meth:`patch_points` (0: the model's).
        ``fit``: ``"full"`` fits every item from zero on every point (``steps`` steps);
        ``"fast"`` fits the items' mean, then each item from it on a subset of the points
        (:func:`~inrcodec.models.fitting.fit_chunk`; ``points_per_latent``: that subset's size, None
        for ``fitting.FIT_POINTS_PER_LATENT``).
        """
        if fit not in FIT_MODES:
            raise ValueError(f"fit must be one of {FIT_MODES}, got {fit!r}")
        values = np.asarray(values)
        if values.shape[1:] != grid.shape:
            raise ValueError(f"values of shape {values.shape} do not match grid {grid.shape}")
        valid = np.isfinite(values) if mask is None else (np.asarray(mask, bool) & np.isfinite(values))
        coords, part = self.item_coordinates(grid, patch_aim)
        n = values.shape[0]
        patches = part.extract(np.where(valid, self.normalise(np.where(valid, values, self.offset)), 0.0))
        pmask = part.extract(valid)
        steps = self.encode_steps if steps is None else steps
        if fit == "fast":
            latents = fit_chunk(
                self.network, coords, patches.reshape(n, part.num_patches, -1, 1),
                None if valid.all() else pmask.reshape(n, part.num_patches, -1), part.patch_shape, steps,
                self.inner_lr, refine_steps=int(refine_steps), refine_lr=self.refine_step_size(),
                points_per_latent=points_per_latent,
            )
            return latents.numpy().reshape(n, part.num_patches, self.latent_dim)
        flat_v = patches.reshape(n * part.num_patches, -1, 1)
        flat_m = pmask.reshape(n * part.num_patches, -1)
        flat_c = np.broadcast_to(coords[None], (n,) + coords.shape).reshape(n * part.num_patches, *coords.shape[1:])
        latents = fit_modulations(
            self.network, flat_c, flat_v, steps=steps, lr=self.inner_lr, mask=flat_m,
            refine_steps=int(refine_steps), refine_lr=self.refine_step_size(),
        )
        return latents.numpy().reshape(n, part.num_patches, self.latent_dim)

    def refine_step_size(self) -> float:
        """The Adam step of encode-time refinement (see ``refine_lr``)."""
        if self.refine_lr is not None:
            return self.refine_lr
        if self.coding is None:
            return 1e-3
        return 0.1 * float(np.median(np.asarray(self.coding["latent_std"], dtype=np.float64)))

    def decode(self, latents, grid, patch_aim: int = 0) -> np.ndarray:
        """Latents (N, num_patches, k) -> values (N, *spatial) in physical units (float64)."""
        latents = np.asarray(latents, dtype=np.float32)
        coords, part = self.item_coordinates(grid, patch_aim)
        n = latents.shape[0]
        if latents.shape[1:] != (part.num_patches, self.latent_dim):
            raise ValueError(f"latents of shape {latents.shape} do not fit {part.num_patches} patches x {self.latent_dim}")
        # only the points each patch keeps (a patch moved back to end at the grid's edge overlaps
        # its neighbour, whose overlapped points assemble would drop): each point is evaluated
        # once, with the same arithmetic
        coords = coords.reshape((part.num_patches,) + part.patch_shape + coords.shape[-1:])
        out = np.empty((n,) + part.shape, dtype=np.float32)
        for idx, kept in part.kept_groups():
            sub = coords[(idx,) + tuple(slice(0, q) for q in kept)].reshape(len(idx), -1, coords.shape[-1])
            flat_c = np.broadcast_to(sub[None], (n,) + sub.shape).reshape(n * len(idx), *sub.shape[1:])
            pred = reconstruct(self.network, latents[:, idx].reshape(-1, self.latent_dim), flat_c).numpy()
            pred = pred.reshape((n, len(idx)) + kept)
            for j, i in enumerate(idx):
                out[(slice(None),) + part.kept_slices(int(i), kept)] = pred[:, j]
        return self.denormalise(out)

    def decode_at(self, latents, grid, rows: np.ndarray, patch_aim: int = 0) -> np.ndarray:
        """Latents (N, num_patches, k) -> values (N, num_patches, K) in physical units (float64) at
        each patch's points ``rows`` (num_patches, K): flat indices into the patch. What
        :meth:`decode` gives there up to the rounding of the products, which can differ with the
        number of points evaluated at once: the encoder's estimates, and mode 6's prediction
        (``ChunkContext.reconstruct_coarse``, which its encoder and decoder both call)."""
        latents = np.asarray(latents, dtype=np.float32)
        coords, part = self.item_coordinates(grid, patch_aim)
        if latents.shape[1:] != (part.num_patches, self.latent_dim) or rows.shape[0] != part.num_patches:
            raise ValueError(f"latents of shape {latents.shape} and rows of shape {rows.shape} do not fit "
                             f"{part.num_patches} patches x {self.latent_dim}")
        n = latents.shape[0]
        sub = np.take_along_axis(coords, rows[..., None], axis=1)
        flat_c = np.broadcast_to(sub[None], (n,) + sub.shape).reshape(n * part.num_patches, *sub.shape[1:])
        pred = reconstruct(self.network, latents.reshape(-1, self.latent_dim), flat_c).numpy()
        return self.denormalise(pred.reshape(n, part.num_patches, rows.shape[1]))

    # -- coding tables -----------------------------------------------------------------------
    def quantizer(self, bits: int):
        from inrcodec.coding.quantize import UniformQuantizer

        if self.coding is None:
            raise ValueError("this model has no quantizer statistics: run inrcodec.training.calibration.calibrate "
                             "on training latents")
        return UniformQuantizer(self.coding["latent_mean"], self.coding["latent_std"], int(bits),
                                num_std=self.coding.get("num_std", 3.0))

    def entropy_models(self, bits: int) -> list:
        """The entropy models counted for ``bits`` (shared and per-dimension), or [] if none."""
        tables = (self.coding or {}).get("tables", {}).get(int(bits))
        return [] if tables is None else [tables["shared"], tables["per_dim"]]

    # -- files ------------------------------------------------------------------------------
    def config(self) -> dict:
        """The JSON metadata of the model file (everything but the arrays)."""
        return modelfile.model_config(self)

    def to_bytes(self) -> bytes:
        """Canonical bytes of the model (what ``sha256`` hashes)."""
        if "_bytes" not in self.__dict__:
            self.__dict__["_bytes"] = modelfile.model_bytes(self)
        return self.__dict__["_bytes"]

    @property
    def sha256(self) -> str:
        """The SHA-256 of :meth:`to_bytes` (computed once until :meth:`changed`)."""
        if "_sha256" not in self.__dict__:
            self.__dict__["_sha256"] = hashlib.sha256(self.to_bytes()).hexdigest()
        return self.__dict__["_sha256"]

    def save(self, path) -> Path:
        """Write the model file; a directory gets ``model.safetensors`` inside it."""
        path = modelfile.file_to_write(path)
        path.write_bytes(self.to_bytes())
        return path

    @classmethod
    def load(cls, path, expected_sha256: str | None = None) -> "CoinModel":
        """Load a model file, or the ``model.safetensors`` in a directory (``train-recipe --out``)."""
        return cls.from_bytes(modelfile.file_in(path).read_bytes(), expected_sha256)

    @classmethod
    def from_bytes(cls, data: bytes, expected_sha256: str | None = None) -> "CoinModel":
        """The model in model-file bytes (``ModelFileError`` on anything malformed,
        ``PinnedModelError`` when they do not hash to ``expected_sha256``)."""
        data = bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        if expected_sha256 is not None and digest != expected_sha256:
            raise PinnedModelError(f"model bytes have SHA-256 {digest}, but {expected_sha256} was pinned")
        return cls.from_hashed_bytes(data, digest)

    @classmethod
    def from_hashed_bytes(cls, data: bytes, sha256: str) -> "CoinModel":
        """The model in model-file bytes whose SHA-256 ``sha256`` the caller has computed (the
        model store has, to look up its cache): the bytes are hashed once per load."""
        network, cfg, arrays = modelfile.read_model_file(data)
        try:
            model = cls(network, **modelfile.model_arguments(cfg, arrays))
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ModelFileError):
                raise
            raise ModelFileError(f"malformed model metadata: {type(exc).__name__}: {exc}") from None
        model.__dict__.update(_bytes=data, _sha256=sha256)  # the hash is of the bytes we were given
        return model

    def __repr__(self) -> str:
        n = self.network
        return (
            f"CoinModel({self.grid_kind}, width={n.width}, depth={n.depth}, latent_dim={n.latent_dim}, "
            f"patch={self.patch_shape}, sha256={self.sha256[:12]})"
        )
