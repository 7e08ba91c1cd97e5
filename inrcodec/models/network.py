"""The base network: a SIREN whose hidden layers are shifted by a latent vector (COIN++ §2).

``sin(w0 * (W h + b + shift_l))`` on every hidden layer, a linear output, and ONE linear map
from the latent (``latent_dim`` numbers) to all per-layer shifts.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn


def _numpy_sine(t: torch.Tensor) -> bool:
    """Whether :func:`sin_` and :func:`cos` take numpy's: float32 on a CPU, in a thread whose torch
    kernels are one-threaded (:mod:`~inrcodec.models.batches`' workers), where numpy's is about 1.3x
    as fast as torch's on x86-64 with AVX-512 and as exact (within 0.6 float32 eps of the true
    sine, like torch's); with several threads torch's spreads over them."""
    return t.device.type == "cpu" and t.dtype == torch.float32 and t.is_contiguous() and torch.get_num_threads() == 1


def sin_(t: torch.Tensor) -> torch.Tensor:
    """``t.sin_()`` of a tensor outside autograd (numpy's where :func:`_numpy_sine`). Elementwise, so
    a value's sine does not depend on the batch it is in; a decoder with the other sine gives values
    within ``residual.CROSS_MACHINE_ULPS`` of its encoder's, as another CPU does."""
    if _numpy_sine(t):
        a = t.numpy()
        np.sin(a, out=a)
        return t
    return t.sin_()


def cos(t: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``torch.cos(t, out=out)`` outside autograd, numpy's where :func:`_numpy_sine`."""
    if _numpy_sine(t):
        out = torch.empty_like(t) if out is None else out
        np.cos(t.numpy(), out=out.numpy())
        return out
    return torch.cos(t) if out is None else torch.cos(t, out=out)


class ModulatedSiren(nn.Module):
    """SIREN with shift modulations.

    Parameters
    ----------
    dim_in: coordinate dimension (1 audio, 2 images, 3 volumes or points on the sphere).
    dim_out: output features (channels or variables).
    width, depth: hidden width and number of hidden (modulated) layers.
    latent_dim: size of the latent vector that a chunk is stored as.
    w0: frequency of the hidden layers; ``w0_initial`` that of the first (defaults to ``w0``).
    scale_modulations: also modulate a multiplicative scale per layer (ablation only; off).
    meta_sgd: learn one inner-loop learning rate per latent dimension (Meta-SGD, Li et al. 2017)
        in the outer loop; they are the parameter ``inner_lrs`` (so they live in the model
        file and its hash) and replace the fixed inner learning rate when fitting latents.
    inner_lr: the fixed inner learning rate, and the initial value of ``inner_lrs``.

    >>> net = ModulatedSiren(dim_in=3, dim_out=1, width=32, depth=3, latent_dim=8)
    >>> net(torch.zeros(100, 3), torch.zeros(4, 8)).shape
    torch.Size([4, 100, 1])
    """

    def __init__(
        self,
        dim_in: int,
        dim_out: int,
        width: int = 256,
        depth: int = 5,
        latent_dim: int = 64,
        w0: float = 30.0,
        w0_initial: float | None = None,
        scale_modulations: bool = False,
        meta_sgd: bool = False,
        inner_lr: float = 1e-2,
    ):
        super().__init__()
        if min(dim_in, dim_out, width, depth, latent_dim) < 1:
            raise ValueError("dim_in, dim_out, width, depth and latent_dim must all be >= 1")
        self.dim_in, self.dim_out, self.width, self.depth = dim_in, dim_out, width, depth
        self.latent_dim, self.w0 = latent_dim, float(w0)
        self.w0_initial = float(w0 if w0_initial is None else w0_initial)
        self.scale_modulations = bool(scale_modulations)
        self.hidden = nn.ModuleList(
            nn.Linear(dim_in if i == 0 else width, width) for i in range(depth)
        )
        self.output = nn.Linear(width, dim_out)
        per_layer = 2 if scale_modulations else 1
        self.latent_to_modulations = nn.Linear(latent_dim, per_layer * depth * width)
        self.meta_sgd, self.inner_lr = bool(meta_sgd), float(inner_lr)
        if self.meta_sgd:
            self.inner_lrs = nn.Parameter(torch.full((latent_dim,), self.inner_lr))
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        # SIREN initialisation (Sitzmann et al. 2020): first layer U(+-1/d_in), the others
        # U(+-sqrt(6/d_in)/w0), so that pre-activations stay in the sine's useful range.
        for i, layer in enumerate(self.hidden):
            d_in = layer.in_features
            bound = 1.0 / d_in if i == 0 else math.sqrt(6.0 / d_in) / self.w0
            layer.weight.uniform_(-bound, bound)
        bound = math.sqrt(6.0 / self.width) / self.w0
        self.output.weight.uniform_(-bound, bound)
        # A zero latent gives zero shift (and unit scale): the base network is the mean signal.
        self.latent_to_modulations.bias.zero_()

    def config(self) -> dict:
        # Meta-SGD keys only when used: models without it serialise (and hash) as before.
        extra = {"meta_sgd": True, "inner_lr": self.inner_lr} if self.meta_sgd else {}
        return {
            "dim_in": self.dim_in,
            "dim_out": self.dim_out,
            "width": self.width,
            "depth": self.depth,
            "latent_dim": self.latent_dim,
            "w0": self.w0,
            "w0_initial": self.w0_initial,
            "scale_modulations": self.scale_modulations,
            **extra,
        }

    def inner_learning_rate(self, default: float | None = None):
        """The inner-loop step size: the learned ``inner_lrs`` (k,) with Meta-SGD, else a scalar
        (``default`` if given, else ``inner_lr``)."""
        if self.meta_sgd:
            return self.inner_lrs
        return self.inner_lr if default is None else float(default)

    def forward(self, coords: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """Evaluate at ``coords`` ((P, dim_in) shared, or (B, P, dim_in)) for ``latents`` (B, k).

        Returns (B, P, dim_out).
        """
        if latents.ndim != 2 or latents.shape[1] != self.latent_dim:
            raise ValueError(f"latents must be (B, {self.latent_dim}), got {tuple(latents.shape)}")
        if coords.shape[-1] != self.dim_in or coords.ndim not in (2, 3):
            raise ValueError(f"coords must be (P, {self.dim_in}) or (B, P, {self.dim_in}), got {tuple(coords.shape)}")
        mods = self.latent_to_modulations(latents)  # (B, per_layer * depth * width)
        shifts = mods[:, : self.depth * self.width].view(-1, self.depth, 1, self.width)
        scales = None
        if self.scale_modulations:
            scales = 1.0 + mods[:, self.depth * self.width :].view(-1, self.depth, 1, self.width)
        h = coords
        in_place = not torch.is_grad_enabled()  # decoding: the same arithmetic, no new tensor per operation
        for i, layer in enumerate(self.hidden):
            w0 = self.w0_initial if i == 0 else self.w0
            if in_place and scales is None:
                pre = layer(h)
                # the shift added in place where the product already has the batch's shape (a
                # shared first layer (P, W) broadcasts to (B, P, W) and needs a new tensor)
                batched = pre.ndim == 3 and pre.shape[0] == shifts.shape[0]
                pre = pre.add_(shifts[:, i]) if batched else pre + shifts[:, i]
                h = sin_(pre.mul_(w0))
                continue
            pre = layer(h) + shifts[:, i]  # (P, W) + (B, 1, W) broadcasts to (B, P, W)
            if scales is not None:
                pre = pre * scales[:, i]
            h = torch.sin(w0 * pre)
        return self.output(h)
