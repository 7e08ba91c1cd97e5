import numpy as np
import pytest
import torch

from inrcodec.training.metalearn import MetaTrainer, PatchSampler, TrainConfig
from inrcodec.models.fitting import fit_modulations, inner_loop, per_item_mse, reconstruct
from inrcodec.models.network import ModulatedSiren


def _signals(n=6, p=40, seed=0):
    rng = np.random.default_rng(seed)
    x = np.linspace(-1, 1, p, dtype=np.float32)[:, None]
    phase = rng.uniform(0, 3, size=(n, 1, 1)).astype(np.float32)
    return x, (0.5 + 0.4 * np.sin(3 * x[None] + phase)).astype(np.float32)


def test_inner_steps_reduce_loss():
    torch.manual_seed(0)
    net = ModulatedSiren(1, 1, width=32, depth=2, latent_dim=8)
    x, y = _signals()
    before = per_item_mse(net(torch.as_tensor(x), torch.zeros(6, 8)), torch.as_tensor(y), None)
    lat = fit_modulations(net, x, y, steps=10, lr=1e-2)
    after = per_item_mse(net(torch.as_tensor(x), lat), torch.as_tensor(y), None)
    assert lat.shape == (6, 8)
    assert (after < before).all()


def test_fit_keeps_no_graph_and_is_batch_independent():
    torch.manual_seed(0)
    net = ModulatedSiren(1, 1, width=16, depth=2, latent_dim=4)
    x, y = _signals(n=5)
    all_at_once = fit_modulations(net, x, y, steps=3, batch_size=256)
    one_by_one = fit_modulations(net, x, y, steps=3, batch_size=1)
    assert not all_at_once.requires_grad
    torch.testing.assert_close(all_at_once, one_by_one, atol=1e-6, rtol=1e-5)


def test_masked_values_are_ignored():
    torch.manual_seed(0)
    net = ModulatedSiren(1, 1, width=16, depth=2, latent_dim=4)
    x, y = _signals(n=2)
    mask = np.ones(y.shape[:2], bool)
    mask[:, ::3] = False
    poisoned = y.copy()
    poisoned[~mask] = 1e6
    a = fit_modulations(net, x, y, steps=3, mask=mask)
    b = fit_modulations(net, x, poisoned, steps=3, mask=mask)
    torch.testing.assert_close(a, b)


def test_inner_loop_is_differentiable_for_maml():
    net = ModulatedSiren(1, 1, width=8, depth=2, latent_dim=4)
    x, y = _signals(n=2)
    lat = inner_loop(net, torch.as_tensor(x), torch.as_tensor(y), None, steps=2, lr=1e-2, create_graph=True)
    per_item_mse(net(torch.as_tensor(x), lat), torch.as_tensor(y), None).mean().backward()
    # second order: the hidden weights get a gradient through the inner steps too
    assert net.hidden[0].weight.grad is not None and net.hidden[0].weight.grad.abs().sum() > 0


def test_reconstruct_batches_match_single_pass():
    net = ModulatedSiren(2, 2, width=8, depth=2, latent_dim=3)
    lat = torch.randn(7, 3)
    coords = torch.rand(50, 2)
    full = reconstruct(net, lat, coords, batch_size=64)
    small = reconstruct(net, lat, coords, batch_size=2, max_points=60)
    assert full.shape == (7, 50, 2)
    torch.testing.assert_close(full, small)


def _trainer(tmp_path, steps, seed=0):
    torch.manual_seed(seed)
    x, y = _signals(n=16, p=32, seed=1)
    sampler = PatchSampler(y[..., 0], lambda start, size: x[start[0] : start[0] + size[0]], (16,))
    val = (x[None].repeat(4, 0), y[:4], np.ones(y[:4].shape[:2], bool))
    net = ModulatedSiren(1, 1, width=16, depth=2, latent_dim=4, w0=10.0)
    cfg = TrainConfig(steps=steps, batch_size=8, outer_lr=1e-3, val_every=5, checkpoint_every=5, seed=seed, outer_points=8)
    return MetaTrainer(net, sampler, val, cfg, out_dir=tmp_path)


def test_meta_training_improves_validation_psnr(tmp_path):
    tr = _trainer(tmp_path, 40)
    before = tr.validate()
    hist = tr.train(progress=False)
    assert hist.val_psnr[-1] > before + 1.0
    assert (tmp_path / "checkpoint.safetensors").exists()


def test_resume_gives_the_same_weights_as_uninterrupted(tmp_path):
    full = _trainer(tmp_path / "a", 10)
    full.train(progress=False)
    part = _trainer(tmp_path / "b", 10)
    part.train(steps=5, progress=False)
    resumed = _trainer(tmp_path / "b", 10, seed=0)
    resumed.load_checkpoint()
    assert resumed.step == 5
    resumed.train(progress=False)
    for (k, a), (_, b) in zip(full.network.state_dict().items(), resumed.network.state_dict().items()):
        torch.testing.assert_close(a, b, msg=k)
    assert resumed.history.loss == full.history.loss


def test_checkpoint_for_other_network_is_refused(tmp_path):
    tr = _trainer(tmp_path, 5)
    tr.train(progress=False)
    other = _trainer(tmp_path, 5)
    other.network = ModulatedSiren(1, 1, width=8, depth=2, latent_dim=4)
    with pytest.raises(ValueError, match="another network"):
        other.load_checkpoint()


def test_validation_psnr_leaves_out_patches_without_valid_points(tmp_path):
    tr = _trainer(tmp_path, 1)
    coords, values, mask = tr.val_batch
    full = tr.validate()
    mask = mask.copy()
    mask[0] = False  # an all-NaN patch (ocean-only data over land): no error to measure
    tr.val_batch = (coords, values, mask)
    with_empty = tr.validate()
    tr.val_batch = (coords[1:], values[1:], mask[1:])
    assert np.isfinite(with_empty) and np.isfinite(full)
    assert np.isclose(with_empty, tr.validate())  # the same as without that patch
