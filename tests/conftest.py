"""Shared fixtures: tiny REAL models (a few KB of weights), built and calibrated in well under a second.

The models are untrained (random SIREN weights), so reconstructions are rough; the tests check
plumbing (shapes, dtypes, order, NaN, pinning, zarr/xarray integration), not quality.

Every test fits latents with float32 products (``INRCODEC_FIT_PRODUCTS``), so that a test asserts the
same arithmetic on every x86-64 machine; the bfloat16 products a CPU with native bfloat16 uses by
default are tested on their own (``tests/chunkcodec/test_fast_encode.py``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inrcodec.models.model import CoinModel
from inrcodec.models.network import ModulatedSiren
from inrcodec.training.calibration import calibrate

NLAT, NLON = 8, 16


def legacy_of(codec, option: str):
    """``codec`` as a store configured before ``option`` existed holds it: its configuration without
    the key, so the option takes its legacy value, off (and writes nothing); ``codec`` has it on."""
    from inrcodec import COINppCodec

    assert codec.get_config()[option] is True
    legacy = COINppCodec.from_config({k: v for k, v in codec.get_config().items() if k != option})
    assert getattr(legacy.settings, option) is False and option not in legacy.get_config()
    return legacy


@pytest.fixture(autouse=True)
def float32_fit_products(monkeypatch):
    from inrcodec.models.fitting import FIT_PRODUCTS_ENV

    monkeypatch.setenv(FIT_PRODUCTS_ENV, "float32")


def global_lat_lon(nlat: int = NLAT, nlon: int = NLON) -> tuple[np.ndarray, np.ndarray]:
    dlat, dlon = 180.0 / nlat, 360.0 / nlon
    return -90.0 + dlat * (np.arange(nlat) + 0.5), dlon * np.arange(nlon)


def smooth_field(n: int, nlat: int = NLAT, nlon: int = NLON, seed: int = 0) -> np.ndarray:
    """(n, nlat, nlon) temperature-like fields in K (float64)."""
    rng = np.random.default_rng(seed)
    lat, lon = global_lat_lon(nlat, nlon)
    base = 250.0 + 30.0 * np.cos(np.deg2rad(lat))[:, None] + 5.0 * np.sin(np.deg2rad(lon))[None, :]
    return base[None] + rng.normal(0.0, 2.0, (n, nlat, nlon))


def build_spherical_model(seed: int = 0, width: int = 16, depth: int = 2, latent_dim: int = 8) -> CoinModel:
    torch.manual_seed(seed)
    net = ModulatedSiren(3, 1, width=width, depth=depth, latent_dim=latent_dim)
    model = CoinModel(net, "spherical", patch_shape=None, offset=220.0, scale=80.0, encode_steps=3)
    train = smooth_field(16, seed=seed)
    latents = model.encode(train, model.make_grid((NLAT, NLON)), steps=3)
    calibrate(model, latents)
    return model


def build_patched_model(seed: int = 2) -> CoinModel:
    """Spherical model whose patches are sized in degrees (4 points aimed, 20-90 degrees), so a
    chunk may choose its patch size (format version 4); on the 8 x 16 test grid (22.5 degrees)
    its own patches are 4 x 4 points, aims 1 and 2 give 1 x 1 and 2 x 2."""
    torch.manual_seed(seed)
    net = ModulatedSiren(3, 1, width=16, depth=2, latent_dim=8)
    model = CoinModel(net, "spherical", patch_shape=(4, 4), offset=220.0, scale=80.0, encode_steps=3,
                      patch_degrees=(20.0, 90.0))
    train = smooth_field(8, seed=seed)
    latents = model.encode(train, model.make_grid((NLAT, NLON)), steps=3)
    calibrate(model, latents)
    return model


def build_cartesian_model(seed: int = 1) -> CoinModel:
    torch.manual_seed(seed)
    net = ModulatedSiren(2, 1, width=16, depth=2, latent_dim=8)
    model = CoinModel(net, "cartesian", patch_shape=(4, 4), offset=0.0, scale=1.0, encode_steps=3)
    rng = np.random.default_rng(seed)
    train = rng.random((8, 8, 8))
    latents = model.encode(train, model.make_grid((8, 8)), steps=3)
    calibrate(model, latents)
    return model


@pytest.fixture(scope="session")
def tiny_model() -> CoinModel:
    """Spherical model, width 16, depth 2, latent 8, calibrated for bits 1..8."""
    return build_spherical_model(seed=0)


@pytest.fixture(scope="session")
def other_model() -> CoinModel:
    """Same architecture, other weights: a different SHA-256."""
    return build_spherical_model(seed=123)


@pytest.fixture(scope="session")
def patched_model() -> CoinModel:
    """Spherical model with patches sized in degrees (chunks may choose their patch size)."""
    return build_patched_model()


@pytest.fixture(scope="session")
def cartesian_model() -> CoinModel:
    """2-D cartesian model on 4x4 patches."""
    return build_cartesian_model()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_model) -> str:
    """A directory laid out like ``inrcodec train-recipe --out DIR`` (holds model.safetensors)."""
    d = tmp_path_factory.mktemp("trained")
    tiny_model.save(d)
    return str(d)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """(input netCDF of :func:`helpers.small_dataset`, a tiny model's folder, their folder)."""
    from helpers import small_dataset

    d = tmp_path_factory.mktemp("rel")
    inp = d / "in.nc"
    small_dataset().to_netcdf(inp)
    model = d / "model"
    build_spherical_model().save(model)
    return str(inp), str(model), d
