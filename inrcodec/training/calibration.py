"""Preparing a :class:`~inrcodec.models.model.CoinModel` while it is trained: its normalisation,
batches of training and validation patches, latent whitening, and the quantizer statistics and
entropy tables (:func:`calibrate`).

Nothing here runs when a chunk is encoded or decoded: the model knows nothing of training.
"""

from __future__ import annotations

import numpy as np
import torch

from inrcodec.coding.entropy import CategoricalEntropyModel
from inrcodec.coding.quantize import UniformQuantizer
from inrcodec.grids import CartesianGrid
from inrcodec.training.metalearn import PatchSampler

CODING_BITS = tuple(range(1, 9))  # entropy tables are counted for these bit widths


def training_sampler(model, values, grid) -> PatchSampler:
    """Random-patch batches of ``values`` (N, *spatial, physical units) for meta-training."""
    values = np.asarray(values)
    if values.shape[1:] != grid.shape:
        raise ValueError(f"values of shape {values.shape} do not match grid {grid.shape}")
    full = grid.coordinates()
    d = full.shape[-1]
    if model.grid_kind == "cartesian" and model.patch_shape is not None:
        local = CartesianGrid(model.patch_shape, model.extent).coordinates()

        def coords_at(start, size):
            return local[tuple(slice(0, s) for s in size)].reshape(-1, d)
    else:

        def coords_at(start, size):
            return full[tuple(slice(a, a + s) for a, s in zip(start, size))].reshape(-1, d)

    return PatchSampler(model.normalise(values), coords_at, model.patch_shape)


def validation_batch(model, values, grid, max_items: int = 256, seed: int = 0):
    """A fixed set of held-out patches (coords, values, mask) in normalised units."""
    values = np.asarray(values)
    coords, part = model.item_coordinates(grid)
    norm = part.extract(model.normalise(values))
    n = values.shape[0]
    v = norm.reshape(n * part.num_patches, -1, 1)
    c = np.broadcast_to(coords[None], (n,) + coords.shape).reshape(n * part.num_patches, *coords.shape[1:])
    if v.shape[0] > max_items:
        keep = np.sort(np.random.default_rng(seed).choice(v.shape[0], size=max_items, replace=False))
        v, c = v[keep], c[keep]
    m = np.isfinite(v[..., 0])
    return np.ascontiguousarray(c), np.nan_to_num(v), m


def fit_normalisation(model, values) -> None:
    """Set ``model``'s normalisation so that the finite range of ``values`` (training data, physical
    units) maps to [0, 1]."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise ValueError("training data has no finite values")
    lo, hi = float(finite.min()), float(finite.max())
    model.offset, model.scale = lo, (hi - lo) if hi > lo else 1.0
    model.changed()


def whiten_latents(model, latents: np.ndarray) -> np.ndarray:
    """Give every latent dimension unit scale by folding the scale into ``model``'s network (in place).

    ``latents`` (..., k) are training latents fitted by this model; with ``s`` their standard
    deviation per dimension, the latent-to-shift columns are multiplied by ``s`` and the
    Meta-SGD rates divided by ``s**2``. The inner loop then takes exactly the same steps in
    ``z / s`` that it took in ``z`` (the same fits, the same reconstructions), but all
    dimensions share one scale, which the global quantizer (one mean and std for all values)
    needs. A model without Meta-SGD gets per-dimension rates ``inner_lr / s**2``. Returns the
    latents in the new units; :func:`calibrate` the model on those.
    """
    lat = np.asarray(latents, dtype=np.float64).reshape(-1, model.latent_dim)
    s = lat.std(axis=0)
    s = np.where(s > 0, s, 1.0)
    _rescale_latent_dims(model, s)
    return (lat / s).reshape(np.shape(latents))


def unwhiten_network(model) -> None:
    """Undo :func:`whiten_latents` on a Meta-SGD model, in place: its per-latent rates back at the
    network's initial ``inner_lr`` (the same fits and reconstructions). Whitening shrinks the
    latent-to-shift columns to the latents' scale (about 1e-3 in t2m-global), where the outer loop's
    Adam steps (a fixed size per weight) would swamp them: fine-tuning starts from this scale."""
    net = model.network
    if not net.meta_sgd:
        return
    rates = net.inner_lrs.detach().double().numpy()
    s = np.sqrt(np.where(rates > 0, rates, net.inner_lr) / net.inner_lr)
    _rescale_latent_dims(model, s)


def _rescale_latent_dims(model, s: np.ndarray) -> None:
    """Latent dimension j in units of ``s[j]``: its latent-to-shift column times ``s[j]``, its
    inner rate divided by ``s[j]**2`` (the inner loop then takes the same steps in ``z / s``)."""
    net = model.network
    with torch.no_grad():
        net.latent_to_modulations.weight.mul_(torch.as_tensor(s, dtype=net.latent_to_modulations.weight.dtype)[None, :])
        rates = net.inner_learning_rate(model.inner_lr)
        rates = torch.as_tensor(rates, dtype=torch.float32).detach().expand(model.latent_dim) / torch.as_tensor(s**2, dtype=torch.float32)
        if not net.meta_sgd:
            net.meta_sgd, net.inner_lrs = True, torch.nn.Parameter(torch.zeros(model.latent_dim))
        net.inner_lrs.copy_(rates)
    model.changed()


def calibrate(model, latents: np.ndarray, bits=CODING_BITS, num_std: float = 3.0) -> None:
    """Store in ``model`` the quantizer statistics and entropy tables counted on training ``latents``.

    ``num_std``: the quantizer clips to mean +- num_std std. The paper's 3 clips the larger
    latents that data unlike the training data needs; recipes choose it on validation data.
    """
    model.coding = _coding_tables(latents, model.latent_dim, bits, num_std)
    model.changed()


def _coding_tables(latents: np.ndarray, latent_dim: int, bits, num_std: float) -> dict:
    """The ``CoinModel.coding`` counted on training ``latents``: quantizer mean/std, clipping range
    and, for every bit width in ``bits``, the shared and per-dimension entropy tables."""
    lat = np.asarray(latents, dtype=np.float64).reshape(-1, latent_dim)
    base = UniformQuantizer.fit(lat, bits=1)
    tables = {}
    for b in bits:
        symbols = UniformQuantizer(base.mean, base.std, b, num_std=float(num_std)).quantize(lat)
        tables[int(b)] = {
            "shared": CategoricalEntropyModel.fit(symbols, b, per_dimension=False),
            "per_dim": CategoricalEntropyModel.fit(symbols, b, per_dimension=True),
        }
    return {"latent_mean": base.mean, "latent_std": base.std, "num_std": float(num_std), "tables": tables}
