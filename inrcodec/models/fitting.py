"""Fitting modulations (the inner loop) and decoding them: what encoding and decoding a chunk need.

Names follow COIN++ §2 and appendix B: the inner loop takes a few SGD steps on the latent only,
from zero, with the per-item MSE (so one item's step does not depend on the batch it is in).
Training (the outer loop, :mod:`inrcodec.training.metalearn`) builds on these; this module imports no
training code, so decoding a chunk does not load the trainer.
"""

from __future__ import annotations

import numpy as np
import torch

from inrcodec.models.network import ModulatedSiren


def per_item_mse(pred: torch.Tensor, values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean squared error of each item (B,) over its valid points and channels."""
    err = (pred - values) ** 2
    if mask is None:
        return err.mean(dim=(1, 2))
    m = mask.unsqueeze(-1).to(err.dtype)
    return (err * m).sum(dim=(1, 2)) / (m.sum(dim=(1, 2)) * err.shape[-1]).clamp(min=1.0)


def inner_loop(
    network: ModulatedSiren,
    coords: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor | None,
    steps: int,
    lr: float,
    create_graph: bool,
) -> torch.Tensor:
    """SGD on latents from zero; with ``create_graph`` the result stays differentiable (MAML).

    With a Meta-SGD network the step size is its learned per-dimension ``inner_lrs`` and ``lr``
    is ignored; with ``create_graph`` the outer loss then trains those rates too.
    """
    lr = network.inner_learning_rate(lr)
    if isinstance(lr, torch.Tensor) and not create_graph:
        lr = lr.detach()
    latents = torch.zeros(values.shape[0], network.latent_dim, device=values.device, requires_grad=True)
    for _ in range(steps):
        loss = per_item_mse(network(coords, latents), values, mask).sum()
        (grad,) = torch.autograd.grad(loss, latents, create_graph=create_graph)
        latents = latents - lr * grad
        if not create_graph:
            latents = latents.detach().requires_grad_(True)
    return latents


def refine_latents(
    network: ModulatedSiren,
    coords: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor | None,
    latents: torch.Tensor,
    steps: int,
    lr: float,
) -> torch.Tensor:
    """Encode-time refinement: ``steps`` Adam steps on the latents from ``latents`` (no graph kept).

    The loss is the sum of per-item MSEs and Adam is elementwise, so each item's result does not
    depend on the batch it is in.
    """
    lat = latents.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([lat], lr=lr)
    for _ in range(steps):
        loss = per_item_mse(network(coords, lat), values, mask).sum()
        (lat.grad,) = torch.autograd.grad(loss, lat)  # only the latents: the network's .grad stays untouched
        opt.step()
    return lat.detach()


def _as_tensor(x, device, dtype=torch.float32):
    if x is None:
        return None
    if isinstance(x, torch.Tensor):
        return x.to(device=device, dtype=dtype)
    # a copy: inputs may be read-only views (broadcasts, zarr buffers) that torch must not alias
    return torch.tensor(np.asarray(x), device=device, dtype=dtype)


def fit_modulations(
    network: ModulatedSiren,
    coords,
    values,
    steps: int = 10,
    lr: float = 1e-2,
    mask=None,
    batch_size: int = 256,
    refine_steps: int = 0,
    refine_lr: float = 1e-2,
) -> torch.Tensor:
    """Encode: fit one latent per item with ``steps`` SGD steps (then ``refine_steps`` Adam
    steps of ``refine_lr``, see :func:`refine_latents`); no graph is kept.

    ``coords`` (P, d) shared or (B, P, d); ``values`` (B, P, c); ``mask`` (B, P) bool, True
    where the value is valid (NaN positions must be masked out, their values are ignored).
    Items are processed ``batch_size`` at a time to bound memory. Returns latents (B, k) on CPU.
    """
    device = next(network.parameters()).device
    values_t = _as_tensor(values, device)
    coords_t = _as_tensor(coords, device)
    mask_t = _as_tensor(mask, device, torch.bool)
    if values_t.ndim != 3:
        raise ValueError(f"values must be (B, P, channels), got {tuple(values_t.shape)}")
    out = []
    for start in range(0, values_t.shape[0], batch_size):
        sl = slice(start, start + batch_size)
        c = coords_t if coords_t.ndim == 2 else coords_t[sl]
        m = None if mask_t is None else mask_t[sl]
        v = values_t[sl] if m is None else torch.where(m.unsqueeze(-1), values_t[sl], 0.0)
        with torch.enable_grad():
            lat = inner_loop(network, c, v, m, steps, lr, create_graph=False)
            if refine_steps > 0:
                lat = refine_latents(network, c, v, m, lat, refine_steps, refine_lr)
        out.append(lat.detach().cpu())
    if not out:
        return torch.zeros(0, network.latent_dim)
    return torch.cat(out)


@torch.no_grad()
def reconstruct(network: ModulatedSiren, latents, coords, batch_size: int = 64, max_points: int = 1 << 20) -> torch.Tensor:
    """Decode: evaluate the modulated network for each latent (B, k) at ``coords``.

    ``coords`` (P, d) shared or (B, P, d). Items are evaluated in batches of at most
    ``batch_size`` items and about ``max_points`` points at once. Returns (B, P, c) on CPU.
    """
    device = next(network.parameters()).device
    lat = _as_tensor(latents, device)
    coords_t = _as_tensor(coords, device)
    num_points = coords_t.shape[-2]
    step = max(1, min(batch_size, max_points // max(num_points, 1)))
    out = []
    for start in range(0, lat.shape[0], step):
        sl = slice(start, start + step)
        c = coords_t if coords_t.ndim == 2 else coords_t[sl]
        out.append(network(c, lat[sl]).cpu())
    if not out:
        return torch.zeros(0, num_points, network.dim_out)
    return torch.cat(out)
