"""Fitting modulations (the inner loop) and decoding them: what encoding and decoding a chunk need.

Names follow COIN++ §2 and appendix B: the inner loop takes a few SGD steps on the latent only,
from zero, with the per-item MSE (so one item's step does not depend on the batch it is in).
Training (the outer loop, :mod:`inrcodec.training.metalearn`) builds on these; this module imports no
training code, so decoding a chunk does not load the trainer.

Encoding runs the inner loop without a graph (:func:`fit_modulations`): its gradient with respect
to the latents is written out by hand (:func:`_sgd_steps`), layer by layer, so a step costs one
forward and one backward pass through the hidden layers and nothing for the weights; the first
layer's product with the coordinates, the same at every step, is computed once. Work is cut into
batches of about ``FIT_BATCH_POINTS`` points, which keeps the activations of large patches in the
CPU's caches. On a CPU that multiplies bfloat16 natively the hidden layers' products run in bfloat16
(:func:`bfloat16_products`): the encoder searches with rounder gradients, and everything a decoder
computes stays float32.

:func:`fit_chunk` is how a chunk's items are fitted by default (``CodecSettings.effort="fast"``): the
mean of the chunk's items is fitted first, and every item starts from it with at least
``WARM_ITEM_STEPS`` steps (more while they gain ``STEP_GAIN``), each step on a regular subset of
every patch's points (:func:`fit_subset`, at least ``FIT_POINTS_PER_LATENT`` points per latent).
Chosen on the climate pool's validation split (docs/benchmarks.md, "Encode speed (issue 30)").
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import warnings

import numpy as np
import torch

from inrcodec.models.batches import map_batches
from inrcodec.models.network import ModulatedSiren, cos, sin_

#: points per batch of the encoder's inner loop and of :func:`reconstruct` (cache-sized batches).
#: The decoder's floats depend on it: the matrix products' rounding can change with the number of
#: rows (a 1-degree network chunk decoded in batches of 2048 points gave other floats). Residual and
#: hybrid chunks correct the floats their encoder computed, so a build that batches otherwise decodes
#: them as another CPU would, within ``residual.CROSS_MACHINE_ULPS`` (the room a bound keeps; the
#: golden chunks' tests check it): change it only with that measured
FIT_BATCH_POINTS = 16384
#: :func:`reconstruct` cuts its items into a multiple of this many batches of nearly equal size (at
#: most ``FIT_BATCH_POINTS`` points), which two or four threads share evenly
#: (:func:`~inrcodec.models.batches.map_batches`), where each keeps ``MIN_BATCH_POINTS`` points
#: (smaller batches run the products' slower small-matrix kernels); the floats depend on both as on
#: ``FIT_BATCH_POINTS``
RECONSTRUCT_BATCHES = 4
MIN_BATCH_POINTS = 8192
#: :func:`reconstruct` takes a batch through the network in blocks of at least this many points
#: (nearly equal), so that a block's activations (1.5 MB at width 96) stay in a core's cache from
#: layer to layer: network chunks decode 1.07-1.18x as fast on two cores (docs/benchmarks.md,
#: "Thirteenth round"). The floats depend on it as on ``FIT_BATCH_POINTS``: the same as whole batches
#: in most chunks measured, 0.81 float32 eps of the largest value in mpi_esm's mode-4 chunks at 1000x
CACHE_POINTS = 4096
#: the fewest steps each item takes from the fitted chunk mean in :func:`fit_chunk`
WARM_ITEM_STEPS = 3
#: :func:`fit_chunk` fits every patch on a regular subset of at least this many points per latent
FIT_POINTS_PER_LATENT = 4
#: after ``WARM_ITEM_STEPS``, :func:`fit_chunk` steps on (up to ``steps``) while a step lowers the
#: loss by at least this share: items far from their chunk's mean need more (``era5_t_levels`` in
#: benchmarks/effort_validation.py)
STEP_GAIN = 0.05
#: set (to anything but ``0``) in the environment, the inner loop's step runs as one kernel built
#: by ``torch.compile`` (:func:`_fused_steps`): a 1-degree chunk's fit 1.6x as fast on CPU, a C++ compiler needed,
#: the first process compiles for several seconds and later ones read torch's cache; the latents
#: differ from the eager loop's in rounding only (docs/benchmarks.md, "Encode speed (issue 30)")
COMPILE_ENV = "INRCODEC_COMPILE_FIT"
#: ``bfloat16`` or ``float32`` in the environment: the precision of the eager inner loop's matrix
#: products (:func:`bfloat16_products`; unset: bfloat16 where the CPU multiplies it natively)
FIT_PRODUCTS_ENV = "INRCODEC_FIT_PRODUCTS"


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
    init: torch.Tensor | None = None,
) -> torch.Tensor:
    """SGD on latents from zero (or ``init``); with ``create_graph`` the result stays
    differentiable (MAML).

    With a Meta-SGD network the step size is its learned per-dimension ``inner_lrs`` and ``lr``
    is ignored; with ``create_graph`` the outer loss then trains those rates too.
    """
    lr = network.inner_learning_rate(lr)
    if isinstance(lr, torch.Tensor) and not create_graph:
        lr = lr.detach()
    if init is None:
        latents = torch.zeros(values.shape[0], network.latent_dim, device=values.device, requires_grad=True)
    else:
        latents = init.detach().clone().requires_grad_(True)
    for _ in range(steps):
        loss = per_item_mse(network(coords, latents), values, mask).sum()
        (grad,) = torch.autograd.grad(loss, latents, create_graph=create_graph)
        latents = latents - lr * grad
        if not create_graph:
            latents = latents.detach().requires_grad_(True)
    return latents


@torch.inference_mode()
def _sgd_steps(network: ModulatedSiren, coords: torch.Tensor, values: torch.Tensor, mask: torch.Tensor | None,
               latents: torch.Tensor, steps: int, lr, min_steps: int | None = None) -> torch.Tensor:
    """``steps`` SGD steps on ``latents`` (B, k) of the summed per-item MSE (:func:`per_item_mse`),
    the gradient written out by hand: the same steps as :func:`inner_loop` without autograd.
    ``min_steps``: stop after that many once a step lowers the batch's loss by less than
    ``STEP_GAIN`` of it.

    Per hidden layer ``a = w0 * (W h + b + shift)``, ``h' = sin(a)``; backwards
    ``da = dh' * cos(a) * w0``, ``dshift = sum over points of da``, ``dh = da W``; and
    ``dlatents = dshifts @ M`` for the one latent-to-shift map ``M``. The products ``W h`` and
    ``da W`` are :func:`_products`' (bfloat16 where :func:`bfloat16_products` says so).
    """
    if _fused_wanted():
        try:
            return _fused_steps(network, coords, values, mask, latents, steps, lr, min_steps)
        except Exception as exc:  # no compiler, or a torch that cannot build the kernel: the eager loop
            _FUSED_FAILED.append(exc)
            first = (str(exc).strip().splitlines() or [""])[0][:200]  # a compiler's whole log is no warning
            warnings.warn(f"{COMPILE_ENV}: the compiled inner loop failed ({type(exc).__name__}: {first}); "
                          "fitting with the eager one", RuntimeWarning, stacklevel=3)
    hidden, depth, width = network.hidden, network.depth, network.width
    w0 = _layer_w0(network)
    to_shift = network.latent_to_modulations
    out_w, out_b = network.output.weight, network.output.bias
    first = torch.nn.functional.linear(coords, hidden[0].weight, hidden[0].bias)  # the same every step
    scale = _loss_scale(values, mask)
    forward, backward = _products(network, values.device)
    last = None
    cosines: list = [None] * depth  # each layer's, written again every step: no new (B, P, W) tensor
    for step in range(steps):
        shifts = to_shift(latents).view(-1, depth, 1, width)
        h = None
        for i in range(depth):
            if i == 0:  # ``first`` serves every step: a new tensor
                pre = first + shifts[:, i]
            else:  # in place: the same sum without a new (B, P, W) tensor
                pre = forward(h, i).add_(shifts[:, i])
            a = pre.mul_(w0[i])
            cosines[i] = cos(a, out=cosines[i])
            h = sin_(a)
        grad_out = (torch.nn.functional.linear(h, out_w, out_b) - values).mul_(scale)  # (B, P, c)
        if min_steps is not None:  # the loss of the latents this step starts from
            loss = float((grad_out * grad_out / scale.clamp(min=1e-30)).sum()) / 2.0
            if _gains_little(step, min_steps, last, loss):
                break
            last = loss
        grad_h = torch.matmul(grad_out, out_w)
        grad_shifts = [None] * depth
        for i in reversed(range(depth)):
            grad_a = grad_h.mul_(cosines[i]).mul_(w0[i])
            grad_shifts[i] = grad_a.sum(dim=1)
            if i:
                grad_h = backward(grad_a, i)
        latents = latents - lr * (torch.cat(grad_shifts, dim=1) @ to_shift.weight)
    return latents


def _products(network: ModulatedSiren, device: torch.device):
    """``(forward, backward)`` of :func:`_sgd_steps`: ``forward(h, i)`` is hidden layer ``i``'s
    ``W h + b``, ``backward(g, i)`` is ``g W``, both float32; in bfloat16 where
    :func:`bfloat16_products` says so: the operands rounded to bfloat16, the products back to
    float32 before the bias (the first layer, the sines and cosines, the output and the loss stay
    float32: ``w0`` times a pre-activation would magnify a bfloat16 rounding of it)."""
    layers = network.hidden
    if not bfloat16_products(device):
        return (lambda h, i: torch.nn.functional.linear(h, layers[i].weight, layers[i].bias),
                lambda g, i: torch.matmul(g, layers[i].weight))
    low = [layer.weight.to(torch.bfloat16) for layer in layers]
    return (lambda h, i: torch.matmul(h.to(torch.bfloat16), low[i].t()).float().add_(layers[i].bias),
            lambda g, i: torch.matmul(g.to(torch.bfloat16), low[i]).float())


def bfloat16_products(device: torch.device | str = "cpu") -> bool:
    """Whether the encoder's inner loop (:func:`_sgd_steps`) multiplies its hidden layers in
    bfloat16: ``FIT_PRODUCTS_ENV`` set to ``bfloat16`` or ``float32``, else on a CPU that multiplies
    bfloat16 natively (AVX512-BF16 or AMX; elsewhere bfloat16 products are emulated, and slower).
    Only the encoder's search for latents changes (its gradient steps carry bfloat16 rounding); the
    decoder, and every reconstruction a chunk's residual corrects, stay float32."""
    choice = os.environ.get(FIT_PRODUCTS_ENV, "").strip().lower()
    if choice in ("bfloat16", "float32"):
        return choice == "bfloat16"
    if choice:
        raise ValueError(f"{FIT_PRODUCTS_ENV} must be 'bfloat16' or 'float32' (or unset), got {choice!r}")
    return torch.device(device).type == "cpu" and _native_bfloat16()


@functools.lru_cache(maxsize=1)
def _native_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 natively, through oneDNN (torch's bfloat16 products on
    x86; without it they fall back to a slow reference loop)."""
    if not torch.backends.mkldnn.is_available():
        return False
    cpu = torch.cpu
    return any(bool(getattr(cpu, name, lambda: False)()) for name in ("_is_avx512_bf16_supported",
                                                                     "_is_amx_tile_supported"))


def _layer_w0(network: ModulatedSiren) -> list[float]:
    """Each hidden layer's ``w0`` (the first layer's own, then the network's)."""
    return [network.w0_initial] + [network.w0] * (network.depth - 1)


def _gains_little(step: int, min_steps: int, last: float | None, loss: float) -> bool:
    """Whether a batch stops at ``step``: past ``min_steps``, the last step lowered its loss (from
    ``last`` to ``loss``) by less than ``STEP_GAIN`` of it."""
    return step >= min_steps and last is not None and last - loss < STEP_GAIN * last


def _loss_scale(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """d(sum of per-item mean squared errors)/d(prediction) per error, (B, 1, 1) or (B, P, 1)."""
    if mask is None:
        return torch.full((values.shape[0], 1, 1), 2.0 / (values.shape[1] * values.shape[2]), device=values.device)
    m = mask.unsqueeze(-1).to(values.dtype)
    return 2.0 * m / (m.sum(dim=(1, 2), keepdim=True) * values.shape[2]).clamp(min=1.0)


#: the compiled step's failures in this process (after one, the eager loop is used)
_FUSED_FAILED: list = []


def _fused_wanted() -> bool:
    return os.environ.get(COMPILE_ENV, "0") not in ("", "0") and not _FUSED_FAILED


def _step(first, latents, values, scale, lr, to_shift_w, to_shift_b, weights, biases, out_w, out_b, w0s):
    """One SGD step of :func:`_sgd_steps` as one function for ``torch.compile`` (the same
    arithmetic, fused): the new latents and the loss of the ones it started from."""
    depth = len(w0s)
    shifts = torch.nn.functional.linear(latents, to_shift_w, to_shift_b).view(latents.shape[0], depth, 1, -1)
    h, cosines = None, []
    for i in range(depth):
        pre = (first if i == 0 else torch.nn.functional.linear(h, weights[i], biases[i])) + shifts[:, i]
        a = pre * w0s[i]
        cosines.append(torch.cos(a))
        h = torch.sin(a)
    grad_out = (torch.nn.functional.linear(h, out_w, out_b) - values) * scale
    loss = (grad_out * grad_out / scale.clamp(min=1e-30)).sum() / 2.0
    grad_h = torch.matmul(grad_out, out_w)
    grad_shifts = [None] * depth
    for i in reversed(range(depth)):
        grad_a = grad_h * cosines[i] * w0s[i]
        grad_shifts[i] = grad_a.sum(dim=1)
        if i:
            grad_h = torch.matmul(grad_a, weights[i])
    return latents - lr * (torch.cat(grad_shifts, dim=1) @ to_shift_w), loss


@functools.lru_cache(maxsize=1)
def _compiled_step():
    return torch.compile(_step, dynamic=True)


def _fused_steps(network: ModulatedSiren, coords: torch.Tensor, values: torch.Tensor, mask: torch.Tensor | None,
                 latents: torch.Tensor, steps: int, lr, min_steps: int | None) -> torch.Tensor:
    """:func:`_sgd_steps` with each step one compiled kernel (``COMPILE_ENV``); a step that stops
    the batch (``min_steps``) computes its update before its loss is known, and drops it."""
    hidden = network.hidden
    params = (network.latent_to_modulations.weight, network.latent_to_modulations.bias,
              [layer.weight for layer in hidden], [layer.bias for layer in hidden],
              network.output.weight, network.output.bias,
              tuple(_layer_w0(network)))
    first = torch.nn.functional.linear(coords, hidden[0].weight, hidden[0].bias)
    scale, rate, step_of = _loss_scale(values, mask), torch.as_tensor(lr, dtype=values.dtype), _compiled_step()
    last = None
    for step in range(steps):
        moved, loss = step_of(first, latents, values, scale, rate, *params)
        if min_steps is not None:
            loss = float(loss)
            if _gains_little(step, min_steps, last, loss):
                break
            last = loss
        latents = moved
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


def _batch_items(num_points: int, batch_size: int, max_points: int) -> int:
    """Items per batch: at most ``batch_size`` and about ``max_points`` points."""
    return max(1, min(batch_size, max_points // max(num_points, 1)))


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
    init=None,
    max_points: int = FIT_BATCH_POINTS,
    min_steps: int | None = None,
) -> torch.Tensor:
    """Encode: fit one latent per item with ``steps`` SGD steps (then ``refine_steps`` Adam
    steps of ``refine_lr``, see :func:`refine_latents`); no graph is kept.

    ``coords`` (P, d) shared or (B, P, d); ``values`` (B, P, c); ``mask`` (B, P) bool, True
    where the value is valid (NaN positions must be masked out, their values are ignored);
    ``init`` (B, k): the latents to start from (None: zeros, as meta-learning does);
    ``min_steps``: stop a batch after that many steps once a step gains little (``_sgd_steps``).
    Items are processed at most ``batch_size`` and about ``max_points`` points at a time.
    Returns latents (B, k) on CPU.
    """
    device = next(network.parameters()).device
    values_t = _as_tensor(values, device)
    coords_t = _as_tensor(coords, device)
    mask_t = _as_tensor(mask, device, torch.bool)
    init_t = _as_tensor(init, device)
    if values_t.ndim != 3:
        raise ValueError(f"values must be (B, P, channels), got {tuple(values_t.shape)}")
    step = _batch_items(values_t.shape[1], batch_size, max_points)
    rate = network.inner_learning_rate(lr)
    rate = rate.detach() if isinstance(rate, torch.Tensor) else rate

    def fit(sl: slice) -> torch.Tensor:
        c = coords_t if coords_t.ndim == 2 else coords_t[sl]
        m = None if mask_t is None else mask_t[sl]
        v = values_t[sl] if m is None else torch.where(m.unsqueeze(-1), values_t[sl], 0.0)
        lat = torch.zeros(v.shape[0], network.latent_dim, device=device) if init_t is None else init_t[sl]
        if network.scale_modulations:  # the ablation's scales have no hand-written gradient
            with torch.enable_grad():
                lat = inner_loop(network, c, v, m, steps, lr, create_graph=False, init=lat)
        else:
            lat = _sgd_steps(network, c, v, m, lat, steps, rate, min_steps)
        if refine_steps > 0:
            with torch.enable_grad():
                lat = refine_latents(network, c, v, m, lat, refine_steps, refine_lr)
        return lat.detach().cpu()

    batches = [slice(start, start + step) for start in range(0, values_t.shape[0], step)]
    if not batches:
        return torch.zeros(0, network.latent_dim)
    # the compiled step runs in this thread (torch.compile is not for several threads at once)
    return torch.cat([fit(sl) for sl in batches] if _fused_wanted() else map_batches(fit, batches, device))


def fit_subset(patch_shape: tuple[int, ...], min_points: int) -> np.ndarray | None:
    """The flat indices of a regular subset of a patch's points (every ``s``-th point along each
    axis, starting half a stride in, strides differing by at most one between axes) with the
    fewest points that is still at least ``min_points``; None when that is every point."""
    return _fit_subset(tuple(int(p) for p in patch_shape), int(min_points))


def _subset_count(patch_shape, strides) -> int:
    return math.prod(len(range(s // 2, p, s)) for p, s in zip(patch_shape, strides))


@functools.lru_cache(maxsize=256)
def _fit_subset(patch_shape: tuple[int, ...], min_points: int) -> np.ndarray | None:
    total = math.prod(patch_shape)
    best = None
    for low in range(1, max(patch_shape) + 1):
        for extra in itertools.product((0, 1), repeat=len(patch_shape)):
            strides = tuple(low + e for e in extra)
            count = _subset_count(patch_shape, strides)
            if count >= min_points and (best is None or count < best[0]):
                best = (count, strides)
    if best is None or best[0] >= total:
        return None
    axes = [np.arange(s // 2, p, s) for p, s in zip(patch_shape, best[1])]
    idx = np.ravel_multi_index(tuple(np.meshgrid(*axes, indexing="ij")), patch_shape).ravel()
    idx.setflags(write=False)
    return idx


def fit_chunk(network: ModulatedSiren, coords: np.ndarray, values: np.ndarray, mask: np.ndarray | None,
              patch_shape: tuple[int, ...], steps: int = 10, lr: float = 1e-2, refine_steps: int = 0,
              refine_lr: float = 1e-2, points_per_latent: int | None = None) -> torch.Tensor:
    """The latents (n * num_patches, k) of a chunk's ``values`` (n, num_patches, P, c), fitted the
    fast way: the masked mean of the items with ``steps`` steps from zero, then every item from the
    mean's latents with ``WARM_ITEM_STEPS`` to ``steps`` steps (on while a step gains ``STEP_GAIN``;
    then ``refine_steps``), each step on the regular subset of :func:`fit_subset` (at least
    ``FIT_POINTS_PER_LATENT`` points per latent, or ``points_per_latent``).

    ``coords`` (num_patches, P, d) are the patches' coordinates (the same for every item); ``mask``
    (n, num_patches, P) is True where a value is valid. A patch whose valid points the regular
    subset misses (a coastline of a masked field) takes evenly spaced valid points instead.
    """
    n, num_patches = values.shape[:2]
    per_latent = FIT_POINTS_PER_LATENT if points_per_latent is None else points_per_latent
    idx = fit_subset(patch_shape, per_latent * network.latent_dim)
    if idx is not None:
        rows = np.broadcast_to(idx, (num_patches, idx.size)).copy()
        if mask is not None:
            rows = _cover_valid(rows, mask.any(axis=0))
        coords = np.take_along_axis(coords, rows[..., None], axis=1)
        values = np.take_along_axis(values, rows[None, ..., None], axis=2)
        mask = None if mask is None else np.take_along_axis(mask, rows[None], axis=2)
    if mask is None:
        mean, mean_mask = values.mean(axis=0, dtype=np.float64), None
    else:
        count = mask.sum(axis=0)
        mean = np.where(mask[..., None], values, 0.0).sum(axis=0, dtype=np.float64) / np.maximum(count, 1)[..., None]
        mean_mask = count > 0
    start = fit_modulations(network, coords, mean.astype(np.float32), steps, lr, mean_mask)
    every = np.broadcast_to(coords[None], (n,) + coords.shape).reshape(n * num_patches, *coords.shape[1:])
    return fit_modulations(
        network, every, values.reshape(n * num_patches, *values.shape[2:]), steps, lr,
        None if mask is None else mask.reshape(n * num_patches, -1), refine_steps=refine_steps,
        refine_lr=refine_lr, init=start.repeat(n, 1), min_steps=min(WARM_ITEM_STEPS, steps),
    )


def _cover_valid(rows: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``rows`` (num_patches, K) of subset indices, with the rows that see under a quarter of what
    they could of a patch's ``valid`` points (num_patches, P) replaced by evenly spaced valid points."""
    k = rows.shape[1]
    seen = np.take_along_axis(valid, rows, axis=1).sum(axis=1)
    for p in np.flatnonzero(4 * seen < np.minimum(valid.sum(axis=1), k)):
        points = np.flatnonzero(valid[p])
        rows[p] = points[np.round(np.linspace(0, points.size - 1, k)).astype(np.intp)]
    return rows


def reconstruct(network: ModulatedSiren, latents, coords, batch_size: int = 64,
                max_points: int = FIT_BATCH_POINTS) -> torch.Tensor:
    """Decode: evaluate the modulated network for each latent (B, k) at ``coords``.

    ``coords`` (P, d) shared or (B, P, d). Items are evaluated in batches of at most
    ``batch_size`` items and about ``max_points`` points at once. Returns (B, P, c) on CPU.
    """
    device = next(network.parameters()).device
    lat = _as_tensor(latents, device)
    coords_t = _as_tensor(coords, device)
    num_points = coords_t.shape[-2]
    step = _batch_items(num_points, batch_size, max_points)
    out = torch.empty(lat.shape[0], num_points, network.dim_out)

    def evaluate(batch: slice) -> None:
        # inference mode: no autograd bookkeeping at all (the same kernels and floats as no_grad, a
        # few per cent faster on small grids); ``out`` is made outside it: callers get an ordinary tensor
        with torch.inference_mode():
            for sl in _cache_blocks(batch, num_points):
                out[sl] = network(coords_t if coords_t.ndim == 2 else coords_t[sl], lat[sl]).cpu()

    map_batches(evaluate, _even_batches(lat.shape[0], step, num_points), device)
    return out


def _cache_blocks(batch: slice, points: int) -> list[slice]:
    """``batch`` (items of ``points`` points each) cut into blocks of nearly equal items with at least
    ``CACHE_POINTS`` points (one block where the batch has fewer)."""
    n = batch.stop - batch.start
    bounds = np.linspace(batch.start, batch.stop, max(1, min(n, n * points // CACHE_POINTS)) + 1).round().astype(int)
    return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def _even_batches(n: int, step: int, points: int) -> list[slice]:
    """``n`` items of ``points`` points in batches of at most ``step`` items: a multiple of
    ``RECONSTRUCT_BATCHES`` batches of nearly equal items, so that threads share them evenly, where
    each keeps ``MIN_BATCH_POINTS`` points (fewer batches where it would not)."""
    count = -(-n // step)
    count = max(count, min(-(-count // RECONSTRUCT_BATCHES) * RECONSTRUCT_BATCHES, n * points // MIN_BATCH_POINTS))
    size = -(-n // max(count, 1))
    return [slice(start, min(start + size, n)) for start in range(0, n, max(size, 1))]
