"""Meta-learning the base network (the outer loop), with validation, checkpoints and resume.

The outer loop (COIN++ §2, appendix B) is Adam on the base network and the latent-to-shift map,
differentiating through the inner steps (second-order MAML). The inner loop and decoding live in
:mod:`inrcodec.models.fitting`, so decoding a chunk never imports this module.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from inrcodec.models import tensorfile
from inrcodec.models.fitting import fit_modulations, inner_loop, per_item_mse, reconstruct
from inrcodec.metrics import psnr_normalised
from inrcodec.models.network import ModulatedSiren

#: the file in the output directory that ``--resume`` continues from
CHECKPOINT_FILE = "checkpoint.safetensors"


@dataclass
class TrainConfig:
    """Settings of the outer loop. Defaults follow the paper (appendix B) where it gives them."""

    steps: int = 1000
    batch_size: int = 32
    outer_lr: float = 3e-6
    inner_lr: float = 1e-2
    inner_steps: int = 3
    inner_points: int | None = None  # random coordinates per item in the inner loop (None: all)
    outer_points: int | None = None  # random coordinates per item for the outer loss (None: all)
    lr_schedule: str = "constant"  # or "cosine": outer_lr decays to 5 % of itself at `steps`
    val_every: int = 100
    checkpoint_every: int = 100
    seed: int = 0
    device: str = "cpu"


@dataclass
class TrainHistory:
    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    val_steps: list[int] = field(default_factory=list)
    val_psnr: list[float] = field(default_factory=list)


class PatchSampler:
    """Draws training batches (coords, values, mask) of random patches from normalised items.

    ``values`` (N, *spatial) float32, already normalised, NaN where missing;
    ``item_coords`` gives the coordinates of a patch at a given origin (see ``CoinModel``).
    """

    def __init__(self, values: np.ndarray, coords_at, patch_shape):
        self.values = np.asarray(values, dtype=np.float32)
        self.coords_at = coords_at
        self.spatial = self.values.shape[1:]
        self.patch_shape = tuple(min(p, s) for p, s in zip(patch_shape or self.spatial, self.spatial))

    def sample(self, rng: np.random.Generator, batch_size: int):
        from inrcodec.grids import random_patch_starts

        items = rng.integers(0, self.values.shape[0], size=batch_size)
        starts = random_patch_starts(rng, self.spatial, self.patch_shape, batch_size)
        vals, coords = [], []
        for i, s in zip(items, starts):
            sl = tuple(slice(a, a + p) for a, p in zip(s, self.patch_shape))
            vals.append(self.values[(i,) + sl].reshape(-1))
            coords.append(self.coords_at(tuple(s), self.patch_shape))
        v = np.stack(vals)
        mask = np.isfinite(v)
        return np.stack(coords), np.nan_to_num(v)[..., None], mask


def _subsample(rng, coords, values, mask, n):
    if n is None or n >= values.shape[1]:
        return coords, values, mask
    idx = np.stack([rng.choice(values.shape[1], size=n, replace=False) for _ in range(values.shape[0])])
    take = lambda a: np.take_along_axis(a, idx.reshape(idx.shape + (1,) * (a.ndim - 2)), axis=1)
    return take(coords), take(values), take(mask)


class MetaTrainer:
    """Second-order MAML over the latent only, with validation, checkpoints and resume.

    >>> # trainer = MetaTrainer(network, sampler, val_batch, TrainConfig(steps=500), out_dir="run")
    >>> # history = trainer.train()
    """

    def __init__(self, network: ModulatedSiren, sampler: PatchSampler, val_batch=None, config: TrainConfig | None = None, out_dir=None):
        self.config = config or TrainConfig()
        self.device = torch.device(self.config.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' was asked for but torch sees no CUDA device")
        torch.manual_seed(self.config.seed)
        self.network = network.to(self.device)
        self.sampler = sampler
        self.val_batch = val_batch  # (coords, values, mask) numpy, fixed held-out patches
        self.optimizer = torch.optim.Adam(self.network.parameters(), lr=self.config.outer_lr)
        self.rng = np.random.default_rng(self.config.seed)
        self.step = 0
        self.history = TrainHistory()
        self.out_dir = Path(out_dir) if out_dir is not None else None

    # -- one outer step -------------------------------------------------------------------
    def train_step(self) -> float:
        cfg = self.config
        coords, values, mask = self.sampler.sample(self.rng, cfg.batch_size)
        ci, vi, mi = _subsample(self.rng, coords, values, mask, cfg.inner_points)
        co, vo, mo = _subsample(self.rng, coords, values, mask, cfg.outer_points)
        t = lambda a, dt=torch.float32: torch.as_tensor(a, device=self.device, dtype=dt)
        latents = inner_loop(self.network, t(ci), t(vi), t(mi, torch.bool), cfg.inner_steps, cfg.inner_lr, create_graph=True)
        loss = per_item_mse(self.network(t(co), latents), t(vo), t(mo, torch.bool)).mean()
        for group in self.optimizer.param_groups:  # a function of the step, so a resumed run follows it too
            group["lr"] = self.learning_rate(self.step)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def learning_rate(self, step: int) -> float:
        cfg = self.config
        if cfg.lr_schedule == "constant":
            return cfg.outer_lr
        if cfg.lr_schedule == "cosine":
            frac = min(step / max(cfg.steps, 1), 1.0)
            return cfg.outer_lr * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * frac)))
        raise ValueError(f"unknown lr_schedule {cfg.lr_schedule!r} (constant or cosine)")

    def validate(self) -> float:
        """Mean PSNR (dB, normalised units) of held-out patches fitted with the training inner steps."""
        if self.val_batch is None:
            return float("nan")
        coords, values, mask = self.val_batch
        lat = fit_modulations(self.network, coords, values, self.config.inner_steps, self.config.inner_lr, mask)
        pred = reconstruct(self.network, lat, coords)
        mask_t = torch.as_tensor(mask)
        mse = per_item_mse(pred, torch.as_tensor(values), mask_t).detach().cpu().numpy()
        # patches with no valid point (all-NaN ocean or land) have no error to measure: left out
        # (a PSNR of inf would make the mean inf)
        has_points = mask_t.reshape(mask_t.shape[0], -1).any(dim=1).cpu().numpy() if mask is not None else slice(None)
        return float(psnr_normalised(mse[has_points]).mean())

    def train(self, steps: int | None = None, progress: bool = True, deadline: float | None = None) -> TrainHistory:
        """Outer steps up to ``steps``, or until ``time.monotonic()`` reaches ``deadline`` (checked between
        steps); the step it stops at is validated and checkpointed either way, so ``--resume`` continues it."""
        from tqdm.auto import tqdm

        steps = self.config.steps if steps is None else steps
        bar = tqdm(total=steps, initial=self.step, disable=not progress, desc="meta-training", unit="step")
        last_psnr = self.history.val_psnr[-1] if self.history.val_psnr else float("nan")
        done = self._done(steps, deadline)
        while not done:
            loss = self.train_step()
            self.step += 1
            self.history.steps.append(self.step)
            self.history.loss.append(loss)
            done = self._done(steps, deadline)
            if self.step % self.config.val_every == 0 or done:
                last_psnr = self.validate()
                self.history.val_steps.append(self.step)
                self.history.val_psnr.append(last_psnr)
            if self.out_dir is not None and (self.step % self.config.checkpoint_every == 0 or done):
                self.save_checkpoint()
            bar.update(1)
            budget = {} if deadline is None else {"budget_left": f"{max(0.0, deadline - time.monotonic()) / 60:.1f} min"}
            bar.set_postfix(loss=f"{loss:.2e}", train_psnr=f"{psnr_normalised(loss):.1f}", val_psnr=f"{last_psnr:.1f}", **budget)
        bar.close()
        return self.history

    def _done(self, steps: int, deadline: float | None) -> bool:
        return self.step >= steps or (deadline is not None and time.monotonic() >= deadline)

    # -- checkpoints (safetensors + JSON, never pickled) ---------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / CHECKPOINT_FILE

    def save_checkpoint(self) -> Path:
        arrays = {f"network/{k}": v.detach().cpu().numpy() for k, v in self.network.state_dict().items()}
        opt = self.optimizer.state_dict()
        for i, st in opt["state"].items():
            for k, v in st.items():
                arrays[f"optim/{i}/{k}"] = torch.as_tensor(v).detach().cpu().numpy()
        arrays["rng/torch"] = torch.get_rng_state().numpy()
        meta = {
            "step": self.step,
            "config": asdict(self.config),
            "network": self.network.config(),
            "history": asdict(self.history),
            "numpy_rng": self.rng.bit_generator.state,
            "param_groups": opt["param_groups"],
        }
        self.out_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.checkpoint_path.with_suffix(".tmp")
        tmp.write_bytes(tensorfile.dumps(arrays, meta))
        os.replace(tmp, self.checkpoint_path)  # atomic: an interrupted save leaves the old one
        return self.checkpoint_path

    def load_checkpoint(self, path=None) -> None:
        path = Path(path) if path is not None else self.checkpoint_path
        arrays, meta = tensorfile.loads(path.read_bytes())
        if meta.get("network") != self.network.config():
            raise ValueError(f"checkpoint {path} is for another network: {meta.get('network')}")
        self.network.load_state_dict({k[len("network/") :]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith("network/")})
        state: dict[int, dict] = {}
        for k, v in arrays.items():
            if k.startswith("optim/"):
                _, i, name = k.split("/")
                state.setdefault(int(i), {})[name] = torch.from_numpy(v).to(self.device)
        self.optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
        torch.set_rng_state(torch.from_numpy(arrays["rng/torch"]))
        self.rng.bit_generator.state = meta["numpy_rng"]
        self.step = int(meta["step"])
        self.history = TrainHistory(**meta["history"])
