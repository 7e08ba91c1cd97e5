import pickle

import numpy as np
import pytest
import torch

from inrcodec import datasets
from inrcodec.datasets.era5 import split_by_time
from inrcodec.training.metalearn import MetaTrainer, TrainConfig
from inrcodec.errors import ModelFileError
from inrcodec.models.model import CoinModel
from inrcodec.models.network import ModulatedSiren
from inrcodec.models.tensorfile import TensorFileError, dumps, loads

from conftest import build_cartesian_model
from inrcodec.training.calibration import fit_normalisation, training_sampler


def test_save_load_round_trip_keeps_hash_and_behaviour(tiny_model, tmp_path):
    path = tiny_model.save(tmp_path / "m")  # a directory gets model.safetensors
    assert path.name == "model.safetensors"
    loaded = CoinModel.load(tmp_path / "m")
    assert loaded.sha256 == tiny_model.sha256
    assert loaded.config() == tiny_model.config()
    grid = loaded.make_grid((8, 16))
    x = 250 + np.random.default_rng(0).normal(size=(2, 8, 16))
    np.testing.assert_array_equal(loaded.encode(x, grid), tiny_model.encode(x, grid))
    for b in (3, 6):
        assert loaded.entropy_models(b) == tiny_model.entropy_models(b)


def test_hash_changes_when_a_weight_changes(tiny_model):
    copy = CoinModel.from_bytes(tiny_model.to_bytes())
    with torch.no_grad():
        copy.network.hidden[1].weight[0, 0] += 1e-6
    copy.changed()
    assert copy.sha256 != tiny_model.sha256


def test_bytes_are_canonical_across_instances():
    a, b = build_cartesian_model(seed=3), build_cartesian_model(seed=3)
    assert a.to_bytes() == b.to_bytes()


def test_pinned_hash_mismatch_names_both(tiny_model):
    with pytest.raises(ModelFileError, match=tiny_model.sha256) as err:
        CoinModel.from_bytes(tiny_model.to_bytes(), expected_sha256="0" * 64)
    assert "0" * 64 in str(err.value)


def test_loading_never_unpickles(tmp_path):
    class Boom:
        def __reduce__(self):
            return (pytest.fail, ("unpickled!",))

    evil = tmp_path / "model.safetensors"
    evil.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(ModelFileError):
        CoinModel.load(evil)
    with pytest.raises(ModelFileError, match="format"):
        CoinModel.from_bytes(dumps({"x": np.zeros(2, np.float32)}, {"format": "something/else"}))
    with pytest.raises(FileNotFoundError):
        CoinModel.load(tmp_path / "missing")


def test_tensorfile_rejects_truncation(tiny_model):
    data = tiny_model.to_bytes()
    for cut in (0, 7, 20, len(data) - 1):
        with pytest.raises(TensorFileError):
            loads(data[:cut])


def test_cartesian_patches_use_local_coordinates_and_exact_shape():
    model = build_cartesian_model()
    grid = model.make_grid((10, 7))  # not a multiple of the 4 x 4 patch
    coords, part = model.item_coordinates(grid)
    assert coords.shape == (part.num_patches, 16, 2)
    np.testing.assert_array_equal(coords[0], coords[-1])
    x = np.random.default_rng(0).random((3, 10, 7))
    lat = model.encode(x, grid)
    assert lat.shape == (3, part.num_patches, 8)
    assert model.decode(lat, grid).shape == (3, 10, 7)


def test_encode_rejects_wrong_spatial_dims(tiny_model):
    with pytest.raises(ValueError, match="2-D"):
        tiny_model.make_grid((4, 4, 4))
    with pytest.raises(ValueError, match="do not match"):
        tiny_model.make_grid((4, 4), lat=[0.0, 1.0], lon=[0.0, 1.0, 2.0])


@pytest.mark.slow
def test_end_to_end_real_temperature_beats_training_mean():
    """Meta-train a tiny model on real near-surface temperature, encode held-out months."""
    torch.manual_seed(0)
    da = datasets.embedded_sample("tas")
    train, _, test = split_by_time(da, (0.75, 0.01, 0.24))
    train, test = train.values, test.values
    net = ModulatedSiren(3, 1, width=32, depth=3, latent_dim=8, w0=30.0)
    model = CoinModel(net, "spherical", patch_shape=(16, 16), encode_steps=10)
    fit_normalisation(model, train)
    grid = model.make_grid(train.shape[1:], lat=da.lat.values, lon=da.lon.values)
    cfg = TrainConfig(steps=300, batch_size=16, outer_lr=1e-3, outer_points=64, val_every=1000, seed=0)
    MetaTrainer(net, training_sampler(model, train, grid), None, cfg).train(progress=False)
    recon = model.decode(model.encode(test, grid, steps=10), grid)
    mse = np.mean((recon - test) ** 2)
    mse_mean = np.mean((train.mean(axis=0) - test) ** 2)
    psnr_gain = 10 * np.log10(mse_mean / mse)
    assert psnr_gain > 3.0, f"only {psnr_gain:.2f} dB better than predicting the training mean"


@pytest.mark.parametrize("which", ["spherical", "cartesian"])
def test_decode_evaluates_each_grid_point_once_and_matches_whole_patches(which, patched_model, monkeypatch):
    """Patches moved back to end at the grid's edge overlap their neighbours; the decoder evaluates
    only the points each patch keeps, with the values a whole-patch evaluation would give."""
    from inrcodec.models import fitting, model as model_module

    model = patched_model if which == "spherical" else build_cartesian_model()
    shape = (11, 18) if which == "spherical" else (7, 10)  # neither a multiple of the 4 x 4 patches
    grid = model.make_grid(shape)
    coords, part = model.item_coordinates(grid)
    rng = np.random.default_rng(3)
    latents = rng.normal(size=(3, part.num_patches, model.latent_dim)).astype("f4")
    whole = fitting.reconstruct(model.network, latents.reshape(-1, model.latent_dim),
                                np.broadcast_to(coords[None], (3,) + coords.shape).reshape(-1, *coords.shape[1:]))
    expected = model.denormalise(part.assemble(whole.numpy().reshape((3, part.num_patches) + part.patch_shape)))
    points = []
    real = fitting.reconstruct

    def counting(network, lat, c, *args, **kwargs):
        points.append(np.shape(c)[0] * np.shape(c)[1])
        return real(network, lat, c, *args, **kwargs)

    monkeypatch.setattr(model_module, "reconstruct", counting)
    got = model.decode(latents, grid)
    assert sum(points) == 3 * shape[0] * shape[1] < 3 * part.num_patches * int(np.prod(part.patch_shape))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * model.scale)
