"""``train-recipe --data --init/--minutes``: fine-tuning a model on the user's own archive (issue 20 item 3).

Tiny networks and a few steps on a coarsened copy of the embedded ``tas`` sample (12 months).
"""

import json
import time
import types

import numpy as np
import pytest

from inrcodec.training import metalearn
from inrcodec.models import modelstore, zoo
from inrcodec.cli import main
from inrcodec.codec import COINppCodec
from inrcodec.errors import InrcodecError
from inrcodec.models.model import CoinModel
from inrcodec.recipes import load_recipe, load_recipe_data, train_recipe

from helpers import TINY, monthly_sample

RUN = dict(progress=False, overrides=TINY, report_bits=[5], calibration_items=64)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return monthly_sample(tmp_path_factory.mktemp("data") / "tas.nc")


@pytest.fixture(scope="module")
def base(sample, tmp_path_factory):
    """A tiny model trained from scratch on the sample: what the fine-tuning tests start from."""
    out = tmp_path_factory.mktemp("base")
    train_recipe("era5", data=[sample], steps=2, out=out, init="none", **RUN)
    return out


def _params(model) -> dict:
    return {k: v.detach().numpy().copy() for k, v in model.network.state_dict().items()}


def test_init_none_trains_from_scratch_on_the_data_range(base, sample):
    model, report = CoinModel.load(base), json.loads((base / "report.json").read_text())
    assert report["init"] is None and "init" not in model.description
    train = load_recipe_data(load_recipe("era5"), [sample]).train
    assert (model.offset, model.offset + model.scale) == pytest.approx((np.nanmin(train), np.nanmax(train)))
    assert "- initialised at random" in (base / "report.md").read_text()


def test_fine_tuning_starts_from_the_init_model(base, sample, tmp_path):
    init = CoinModel.load(base)
    zero = train_recipe("era5", data=[sample], steps=0, out=tmp_path / "zero", init=str(base), **RUN)
    tuned = train_recipe("era5", data=[sample], steps=3, out=tmp_path / "three", init=str(base), **RUN)
    a, z, t = _params(init), _params(CoinModel.load(tmp_path / "zero")), _params(CoinModel.load(tmp_path / "three"))
    assert zero["steps"] == 0 and tuned["steps"] == 3
    # 0 steps: the init weights; calibration only re-whitens (rescales each latent-to-shift column by s and
    # divides the Meta-SGD rates by s**2, which leaves every fit and reconstruction as it was)
    whitened = ("latent_to_modulations.weight", "inner_lrs")
    assert all(np.array_equal(a[k], z[k]) for k in a if k not in whitened)
    s = z["latent_to_modulations.weight"][0] / a["latent_to_modulations.weight"][0]
    np.testing.assert_allclose(z["latent_to_modulations.weight"], a["latent_to_modulations.weight"] * s, rtol=1e-5)
    np.testing.assert_allclose(z["inner_lrs"], a["inner_lrs"] / s**2, rtol=1e-5)
    # 3 steps: other weights, the same architecture and normalisation
    assert not np.array_equal(a["hidden.0.weight"], t["hidden.0.weight"])
    for r in (zero, tuned):
        m = CoinModel.load(r["model_file"])
        assert m.network.config()["width"] == init.network.config()["width"]
        assert (m.network.width, m.network.depth, m.latent_dim, m.patch_shape, m.patch_degrees) == (
            init.network.width, init.network.depth, init.latent_dim, init.patch_shape, init.patch_degrees)
        assert (m.offset, m.scale) == (init.offset, init.scale)
        assert m.description["init"] == r["init"] == {"name": str(base), "sha256": init.sha256}
    assert f"- fine-tuned from: {base} sha256 `{init.sha256}`" in (tmp_path / "three" / "report.md").read_text()


def test_the_default_init_is_the_shipped_model_for_its_variable(sample, tmp_path, capsys):
    """With --data of t2m/tas in K and the cpu preset's architecture, era5 starts from its [init] model."""
    name = load_recipe("era5").init["model"]
    assert name in zoo.available()
    shipped = modelstore.load(name)
    cpu = {k: v for k, v in TINY.items() if k not in ("width", "depth", "latent_dim")}
    r = train_recipe("era5", data=[sample], steps=0, out=tmp_path, progress=False, overrides=cpu, report_bits=[5],
                     calibration_items=16)
    assert r["init"] == {"name": name, "sha256": shipped.sha256}
    model = CoinModel.load(tmp_path)
    assert (model.offset, model.scale) == (shipped.model.offset, shipped.model.scale)
    assert "encode_steps 10 from the init model" in capsys.readouterr().err  # TINY asks for 2
    assert modelstore.load(name).model.sha256 == shipped.sha256  # the cached model was not trained


def test_a_default_init_that_does_not_fit_falls_back_with_a_note(sample, tmp_path, capsys):
    r = train_recipe("era5", data=[sample], steps=0, out=tmp_path / "arch", **RUN)  # TINY is not t2m-global's width
    assert r["init"] is None
    assert "training from scratch, not from the shipped model t2m-global-2: the model has width 96" in capsys.readouterr().err
    sst = monthly_sample(tmp_path / "sst.nc", name="sst")
    assert train_recipe("era5", data=[sst], steps=0, out=tmp_path / "sst", **RUN)["init"] is None
    assert "the data variable 'sst' is not one it was trained on" in capsys.readouterr().err


def test_an_explicit_init_that_does_not_fit_is_refused(sample, tmp_path):
    celsius = monthly_sample(tmp_path / "degc.nc", units="degC")
    with pytest.raises(InrcodecError, match="trained on data in 'K', these data are in 'degC'"):
        train_recipe("era5", data=[celsius], steps=0, out=tmp_path / "a", init="t2m-global", **RUN)
    with pytest.raises(InrcodecError, match=r"width 96, depth 4.*preset asks for width 8, depth 2.*--preset cpu"):
        train_recipe("era5", data=[sample], steps=0, out=tmp_path / "b", init="t2m-global", **RUN)
    with pytest.raises(InrcodecError, match="spherical"):
        train_recipe("image", steps=0, out=tmp_path / "c", init="t2m-global", **RUN)


def test_cli_errors_are_one_line(sample, tmp_path, capsys):
    assert main(["train-recipe", "era5", "--data", sample, "--init", "t2m-global", "--preset", "paper",
                 "--steps", "0", "--out", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("inrcodec: error: --init t2m-global: the model has width 96") and err.count("\n") == 1
    assert main(["train-recipe", "era5", "--minutes", "0", "--out", str(tmp_path), "--quiet"]) == 2
    assert "--minutes must be a positive number" in capsys.readouterr().err


def _clock_jumps_after(monkeypatch, steps: int):
    """The budget runs out after ``steps`` outer steps: the trainer's clock jumps a day ahead then."""
    jump = [0.0]
    step = metalearn.MetaTrainer.train_step

    def counted(self):
        loss = step(self)
        if self.step + 1 == steps:
            jump[0] = 86400.0
        return loss

    monkeypatch.setattr(metalearn.MetaTrainer, "train_step", counted)
    monkeypatch.setattr(metalearn, "time", types.SimpleNamespace(monotonic=lambda: time.monotonic() + jump[0]))


def test_minutes_stops_training_and_still_writes_a_calibrated_model(base, sample, tmp_path, monkeypatch):
    _clock_jumps_after(monkeypatch, 3)
    r = train_recipe("era5", data=[sample], steps=1000, minutes=5, out=tmp_path, init="none", **RUN)
    assert (r["steps"], r["planned_steps"], r["budget_minutes"]) == (3, 1000, 5)
    assert r["time_ranges"]["train"][0] == "2005-01-16T12:00:00"  # the report says which times trained the model
    assert "3 steps of 1000 (stopped by the --minutes 5 budget)" in (tmp_path / "report.md").read_text()
    model = CoinModel.load(tmp_path, expected_sha256=r["model_sha256"])
    assert model.coding is not None and model.entropy_models(5)
    rd = load_recipe_data(load_recipe("era5"), [sample])
    codec = COINppCodec(model=str(tmp_path), bits=5, lat=rd.lat, lon=rd.lon)
    decoded = codec.decode(codec.encode(np.ascontiguousarray(rd.test[:1])))
    assert decoded.shape == rd.test[:1].shape and np.isfinite(decoded).all()


def test_a_budget_stop_resumes_like_an_uninterrupted_run(sample, tmp_path, monkeypatch):
    whole = train_recipe("era5", data=[sample], steps=5, out=tmp_path / "a", init="none", **RUN)
    with monkeypatch.context() as m:
        _clock_jumps_after(m, 2)
        assert train_recipe("era5", data=[sample], steps=5, minutes=1, out=tmp_path / "b", init="none", **RUN)["steps"] == 2
    resumed = train_recipe("era5", data=[sample], steps=5, out=tmp_path / "b", init="none", resume=True, **RUN)
    assert resumed["steps"] == 5 and resumed["model_sha256"] == whole["model_sha256"]


def test_data_splits_are_disjoint_in_time(sample):
    rd = load_recipe_data(load_recipe("era5"), [sample])
    times = rd.times
    assert sorted(times) == ["test-time", "train", "val"]
    assert times["train"].max() < times["val"].min() and times["val"].max() < times["test-time"].min()
    every = np.concatenate(list(times.values()))
    assert len(set(every.tolist())) == len(every) == 12  # each month in exactly one split
    assert [len(times[k]) for k in ("train", "val", "test-time")] == [len(rd.train), len(rd.val), len(rd.test)]
    hashes = {k: {hash(f.tobytes()) for f in v} for k, v in (("train", rd.train), ("val", rd.val), ("test", rd.test))}
    assert not (hashes["train"] & hashes["val"] or hashes["train"] & hashes["test"] or hashes["val"] & hashes["test"])


def test_unwhitening_keeps_the_fits_at_the_training_scale(base, sample):
    from inrcodec.training.calibration import unwhiten_network

    whitened, model = CoinModel.load(base), CoinModel.load(base)
    unwhiten_network(model)
    np.testing.assert_allclose(model.network.inner_lrs.detach().numpy(), model.network.inner_lr, rtol=1e-5)
    rd = load_recipe_data(load_recipe("era5"), [sample])
    grid = model.make_grid(rd.test.shape[1:], lat=rd.lat, lon=rd.lon)
    recon = [m.decode(m.encode(rd.test[:1], grid), grid) for m in (whitened, model)]
    np.testing.assert_allclose(recon[0], recon[1], atol=1e-3 * model.scale)


def test_fine_tuning_takes_the_recipes_outer_lr_unless_overridden():
    from inrcodec.recipes.finetune import finetune_preset

    recipe = load_recipe("era5")
    cpu = recipe.preset("cpu")
    assert finetune_preset(recipe, cpu, None)["outer_lr"] == recipe.init["outer_lr"] == 3e-5 < cpu["outer_lr"]
    assert finetune_preset(recipe, {**cpu, "outer_lr": 1e-3}, {"outer_lr": 1e-3})["outer_lr"] == 1e-3


def test_a_budget_that_leaves_no_training_time_is_refused_before_anything_is_written(sample, tmp_path, monkeypatch):
    from inrcodec.recipes import train

    monkeypatch.setattr(train, "_after_training_seconds", lambda *a: 3600.0)  # the report alone would take an hour
    with pytest.raises(InrcodecError, match="leaves no time to meta-train"):
        train_recipe("era5", data=[sample], steps=5, minutes=30, out=tmp_path, init="none", **RUN)
    assert not (tmp_path / "model.safetensors").exists()
