"""The learned prior: Meta-SGD, encode-time refinement, patches in degrees, the multi-resolution pool."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inrcodec.grids import SphericalGrid
from inrcodec.training.metalearn import MetaTrainer, TrainConfig
from inrcodec.models.fitting import fit_modulations, per_item_mse, reconstruct
from inrcodec.models.model import CoinModel
from inrcodec.models.network import ModulatedSiren
from inrcodec.training.pool import Field, SphericalPatchPool, coarsen
from inrcodec.training.calibration import calibrate, fit_normalisation, whiten_latents


def _meta_sgd_model(seed=0) -> CoinModel:
    torch.manual_seed(seed)
    net = ModulatedSiren(3, 1, width=16, depth=2, latent_dim=6, meta_sgd=True, inner_lr=1e-2)
    return CoinModel(net, "spherical", patch_shape=(8, 8), offset=200.0, scale=100.0, patch_degrees=(20.0, 90.0))


def test_meta_sgd_rates_survive_save_load_and_change_the_hash():
    model = _meta_sgd_model()
    with torch.no_grad():
        model.network.inner_lrs.copy_(torch.linspace(0.01, 0.05, 6))
    model.changed()
    loaded = CoinModel.from_bytes(model.to_bytes())
    torch.testing.assert_close(loaded.network.inner_lrs, model.network.inner_lrs)
    assert loaded.network.meta_sgd and loaded.patch_degrees == (20.0, 90.0)
    before = model.sha256
    with torch.no_grad():
        model.network.inner_lrs[0] += 0.01
    model.changed()
    assert model.sha256 != before


def test_meta_sgd_rates_are_used_and_trained():
    torch.manual_seed(0)
    net = ModulatedSiren(1, 1, width=16, depth=2, latent_dim=4, w0=10.0, meta_sgd=True)
    x = torch.linspace(-1, 1, 32)[:, None]
    y = torch.sin(3 * x)[None].repeat(4, 1, 1) * torch.linspace(0.5, 1.5, 4)[:, None, None]
    a = fit_modulations(net, x, y, steps=3)
    with torch.no_grad():
        net.inner_lrs.mul_(3.0)
    b = fit_modulations(net, x, y, steps=3)
    assert not torch.allclose(a, b)  # the learned rates, not a fixed lr, set the step

    class Sampler:
        def sample(self, rng, batch_size):
            return x[None].repeat(batch_size, 1, 1).numpy(), y[:batch_size].numpy(), np.ones((batch_size, 32), bool)

    start = net.inner_lrs.detach().clone()
    MetaTrainer(net, Sampler(), None, TrainConfig(steps=3, batch_size=4, outer_lr=1e-2)).train(progress=False)
    assert not torch.allclose(net.inner_lrs.detach(), start)


def test_models_without_meta_sgd_serialise_as_before():
    net = ModulatedSiren(3, 1, width=8, depth=2, latent_dim=4)
    assert "meta_sgd" not in net.config() and "inner_lrs" not in net.state_dict()
    model = CoinModel(net, "spherical", patch_shape=(4, 4))
    assert "patch_degrees" not in model.config() and "refine_lr" not in model.config()


def test_refinement_lowers_the_fit_error_and_is_deterministic():
    torch.manual_seed(1)
    net = ModulatedSiren(2, 1, width=16, depth=2, latent_dim=8, w0=10.0)
    coords = torch.rand(64, 2) * 2 - 1
    values = torch.sin(4 * coords[:, :1])[None].repeat(3, 1, 1) * torch.tensor([0.3, 0.6, 0.9])[:, None, None]
    mse = lambda lat: per_item_mse(reconstruct(net, lat, coords), values, None)
    plain = fit_modulations(net, coords, values, steps=3)
    refined = fit_modulations(net, coords, values, steps=3, refine_steps=30)
    assert torch.all(mse(refined) < mse(plain))
    torch.testing.assert_close(refined, fit_modulations(net, coords, values, steps=3, refine_steps=30), rtol=0, atol=0)
    # the network's own gradients are left alone
    assert all(p.grad is None for p in net.parameters())


def test_patches_keep_their_size_in_degrees_across_grids():
    model = _meta_sgd_model()
    two = SphericalGrid.regular_global(90, 180)  # 2 degrees: 8 points = 16 -> clipped to 20 degrees
    one = SphericalGrid.regular_global(180, 360)
    four = SphericalGrid.regular_global(45, 90)  # 8 points = 32 degrees
    assert model.patch_points(two) == (10, 10)
    assert model.patch_points(one) == (20, 20)
    assert model.patch_points(four) == (8, 8)
    coarse = SphericalGrid.regular_global(12, 24)  # 15 degrees: 120 -> clipped to 90
    assert model.patch_points(coarse) == (6, 6)
    # a shape alone means the regular global grid make_grid assumes
    assert model.partition((90, 180)).patch_shape == (10, 10)


def test_coarsen_is_a_nan_aware_block_mean_and_keeps_dateline_longitudes():
    v = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    v[0, 0, 0] = np.nan
    f = coarsen(Field(v, np.array([-3.0, -1.0, 1.0, 3.0]), np.array([178.0, 179.0, -179.0, -178.0])), 2)
    assert f.values.shape == (1, 2, 2)
    assert f.values[0, 0, 0] == pytest.approx((1 + 4 + 5) / 3)
    assert f.values[0, 1, 1] == pytest.approx((10 + 11 + 14 + 15) / 4)
    np.testing.assert_allclose(f.lat, [-2.0, 2.0])
    assert abs(abs(f.lon[0]) - 178.5) < 1e-9 and abs(f.lon[1] + 178.5) < 1e-9
    allnan = coarsen(Field(np.full((1, 2, 2), np.nan, np.float32), np.array([0.0, 1.0]), np.array([0.0, 1.0])), 2)
    assert np.isnan(allnan.values).all()


def test_pool_batches_mix_grids_and_pad_small_patches_with_masked_points():
    model = _meta_sgd_model()
    rng = np.random.default_rng(0)
    lat90, lon180 = SphericalGrid.regular_global(90, 180).lat, SphericalGrid.regular_global(90, 180).lon
    big = Field(rng.random((3, 90, 180)).astype(np.float32), np.array(lat90), np.array(lon180), "big")
    small = Field(rng.random((2, 5, 6)).astype(np.float32), np.linspace(30, 40, 5), np.linspace(-100, -90, 6), "small")
    pool = SphericalPatchPool([big, small], model.patch_points, points=64)
    assert len(pool.entries) > 2 and pool.weights.sum() == pytest.approx(1.0)
    coords, values, mask = pool.sample(rng, 64)
    assert coords.shape == (64, 64, 3) and values.shape == (64, 64, 1) and mask.shape == (64, 64)
    np.testing.assert_allclose(np.linalg.norm(coords[mask], axis=-1), 1.0, rtol=1e-5)
    assert (~mask).any()  # the 5 x 6 field has fewer than 64 points: padded, masked
    assert np.all(values[~mask] == 0.0)


def test_a_model_trained_at_one_resolution_encodes_another():
    """Meta-trained on the real 1.875-degree temperature sample, it encodes the same months'
    held-out test split at 3.75 degrees better than the (coarsened) training mean."""
    from inrcodec.datasets import embedded_sample
    from inrcodec.datasets.era5 import split_by_time
    from inrcodec.recipes import pool_batches

    train, val, test = split_by_time(embedded_sample("tas"), (0.7, 0.15, 0.15))
    field = lambda da: Field(np.asarray(da.values, np.float32), np.asarray(da.lat.values), np.asarray(da.lon.values), "tas")
    fields = {"train": [field(train)], "val": [field(val)]}
    torch.manual_seed(0)
    net = ModulatedSiren(3, 1, width=32, depth=3, latent_dim=8, w0=30.0, meta_sgd=True)
    model = CoinModel(net, "spherical", patch_shape=(16, 16), patch_degrees=(12.0, 96.0), encode_steps=10)
    fit_normalisation(model, fields["train"][0].values)
    sampler, val_batch = pool_batches(model, fields, 128, seed=0)
    MetaTrainer(model.network, sampler, val_batch, TrainConfig(steps=150, batch_size=16, outer_lr=1e-3, val_every=1000)).train(progress=False)
    coarse = coarsen(field(test), 2)
    grid = model.make_grid(coarse.values.shape[1:], lat=coarse.lat, lon=coarse.lon)
    rec = model.decode(model.encode(coarse.values, grid), grid)
    mean = coarsen(Field(np.asarray(train.values.mean(axis=0), np.float32)[None], field(train).lat, field(train).lon), 2).values
    rmse = float(np.sqrt(np.mean((rec - coarse.values) ** 2)))
    baseline = float(np.sqrt(np.mean((mean - coarse.values) ** 2)))
    assert rmse < baseline, (rmse, baseline)


def test_cosine_outer_schedule_decays_to_five_percent_and_is_followed_on_resume():
    net = ModulatedSiren(1, 1, width=8, depth=2, latent_dim=2)
    tr = MetaTrainer(net, None, None, TrainConfig(steps=100, outer_lr=1e-3, lr_schedule="cosine"))
    assert tr.learning_rate(0) == pytest.approx(1e-3)
    assert tr.learning_rate(50) == pytest.approx(1e-3 * (0.05 + 0.95 * 0.5))
    assert tr.learning_rate(100) == pytest.approx(5e-5)
    assert MetaTrainer(net, None, None, TrainConfig(steps=100, outer_lr=1e-3)).learning_rate(100) == 1e-3
    with pytest.raises(ValueError, match="lr_schedule"):
        MetaTrainer(net, None, None, TrainConfig(lr_schedule="step")).learning_rate(1)


def test_an_interrupted_cosine_run_resumes_to_the_same_weights(tmp_path):
    x = torch.linspace(-1, 1, 16)[:, None].numpy()

    class Sampler:
        def sample(self, rng, batch_size):
            amp = rng.uniform(0.5, 1.5, (batch_size, 1, 1)).astype(np.float32)
            return np.broadcast_to(x, (batch_size, 16, 1)).copy(), amp * np.sin(3 * x)[None], np.ones((batch_size, 16), bool)

    def trainer(out):
        torch.manual_seed(0)
        net = ModulatedSiren(1, 1, width=8, depth=2, latent_dim=2, meta_sgd=True)
        cfg = TrainConfig(steps=6, batch_size=4, outer_lr=1e-2, lr_schedule="cosine", checkpoint_every=3, val_every=100)
        return MetaTrainer(net, Sampler(), None, cfg, out_dir=out)

    full = trainer(tmp_path / "a")
    full.train(progress=False)
    part = trainer(tmp_path / "b")
    part.train(steps=3, progress=False)  # killed after 3 of 6 steps
    resumed = trainer(tmp_path / "b")
    resumed.load_checkpoint()
    resumed.train(progress=False)
    for (k, a), (_, b) in zip(full.network.state_dict().items(), resumed.network.state_dict().items()):
        torch.testing.assert_close(a, b, msg=k)


def test_whitening_keeps_the_fits_and_gives_unit_scale_latents_and_the_range_is_stored():
    model = _meta_sgd_model(seed=3)
    grid = SphericalGrid.regular_global(16, 32)
    rng = np.random.default_rng(0)
    lat = np.asarray(grid.lat)
    values = (250 + 40 * np.cos(np.deg2rad(lat))[None, :, None] + rng.normal(0, 3, (6, 16, 32))).astype(np.float32)
    before = model.encode(values, grid)
    recon_before = model.decode(before, grid)
    white = whiten_latents(model, before)
    np.testing.assert_allclose(white.reshape(-1, 6).std(axis=0), 1.0, rtol=1e-6)
    after = model.encode(values, grid)  # the same inner steps, in the new units
    np.testing.assert_allclose(after, white, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(model.decode(after, grid), recon_before, atol=1e-3)
    calibrate(model, white, num_std=6.0)
    loaded = CoinModel.from_bytes(model.to_bytes())
    assert loaded.quantizer(4).num_std == 6.0 and loaded.sha256 == model.sha256
    plain = _meta_sgd_model(seed=3)
    calibrate(plain, before)
    assert plain.quantizer(4).num_std == 3.0 and "num_std" not in plain.config()["coding"]
