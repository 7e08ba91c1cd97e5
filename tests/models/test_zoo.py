"""Shipped pretrained models: found by name, pinned by hash, usable without training."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from inrcodec import COINppCodec
from inrcodec.models import modelstore, zoo
from inrcodec.errors import PinnedModelError
from inrcodec.cli import main


def test_every_shipped_model_loads_by_name_and_matches_its_hash():
    models = zoo.available()
    assert "t2m-global" in models
    for name, entry in models.items():
        path = zoo.model_path(name)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
        model, _, sha, shipped_as = modelstore.load(name)
        assert shipped_as == name
        assert sha == entry["sha256"] == model.sha256
        assert {"trained_on", "grids", "summary", "rate_distortion"} <= set(entry)


def test_a_shipped_model_whose_bytes_differ_from_its_listing_is_refused(monkeypatch):
    listing = {k: dict(v) for k, v in zoo.available().items()}
    listing["t2m-global"]["sha256"] = "0" * 64
    monkeypatch.setattr(zoo, "_index", lambda: listing)
    with pytest.raises(PinnedModelError):
        modelstore.load("t2m-global")


def test_loading_a_shipped_model_reads_the_list_once_and_hashes_the_bytes_once(monkeypatch):
    data = zoo.model_path("t2m-global").read_bytes()
    hashed = []
    real_sha256 = hashlib.sha256

    def counting_sha256(payload=b"", *args, **kwargs):
        if bytes(payload) == data:
            hashed.append(1)
        return real_sha256(payload, *args, **kwargs)

    modelstore.clear()
    zoo._index.cache_clear()
    monkeypatch.setattr(hashlib, "sha256", counting_sha256)
    first = modelstore.load("t2m-global")
    assert first.model.sha256 == first.sha256 and first.name == "t2m-global"
    assert modelstore.load("t2m-global").model is first.model  # the cache: parsed once
    assert len(hashed) == 2  # once per load, the second one a cache hit
    assert zoo._index.cache_info().misses == 1  # models.json was read once
    assert zoo.available() is not zoo.available()  # callers get copies of the list


def test_unknown_names_are_still_file_not_found_errors():
    with pytest.raises(FileNotFoundError, match="model file not found"):
        modelstore.load("no-such-model")


def test_the_shipped_climate_model_compresses_a_real_field_by_name():
    from inrcodec.datasets import embedded_sample

    tas = embedded_sample("tas").isel(time=slice(0, 1))
    codec = COINppCodec(model="t2m-global", bits=6, lat=tas.lat.values, lon=tas.lon.values)
    x = np.ascontiguousarray(tas.values, dtype=np.float32)
    y = codec.decode(codec.encode(x)).reshape(x.shape)
    train_mean_rmse = float(np.sqrt(np.mean((x - x.mean()) ** 2)))
    assert float(np.sqrt(np.mean((y - x) ** 2))) < 0.5 * train_mean_rmse


def test_cli_lists_the_shipped_models(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "t2m-global" in out and zoo.available()["t2m-global"]["sha256"][:16] in out
