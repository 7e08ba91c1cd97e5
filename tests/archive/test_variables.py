"""Issue 31: every variable of a file with its own network (train per variable, compress a whole
file in one command, the xarray door)."""
from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
import xarray as xr
import zarr
from conftest import build_spherical_model, global_lat_lon, smooth_field
from helpers import TINY, file_hashes, monthly_sample

from inrcodec import COINppCodec, archive
from inrcodec.cli import main as cli_main
from inrcodec.errors import OutOfRangeWarning

PA_OFFSET, PA_SCALE = 88_000.0, 32_000.0  # the "pressure" model's training range, in Pa


def _pressure_model():
    """The test network with a training range in Pa: what a model trained on msl holds."""
    model = build_spherical_model(seed=1)
    model.offset, model.scale = PA_OFFSET, PA_SCALE
    return model


@pytest.fixture(scope="module")
def two_variables(tmp_path_factory):
    """A file with temperature (K) and pressure (Pa) on one grid, and a directory of per-variable
    models (what ``train-recipe --variable t,p --out DIR`` writes)."""
    d = tmp_path_factory.mktemp("variables")
    lat, lon = global_lat_lon()
    t = smooth_field(4, seed=3).astype("f4")
    p = (PA_OFFSET + (smooth_field(4, seed=4) - 220.0) / 80.0 * PA_SCALE).astype("f4")
    ds = xr.Dataset({"t": (("time", "lat", "lon"), t, {"units": "K"}), "p": (("time", "lat", "lon"), p, {"units": "Pa"})},
                    coords={"time": np.arange(4), "lat": lat, "lon": lon})
    ds.to_netcdf(d / "in.nc")
    build_spherical_model().save(d / "models" / "t")
    _pressure_model().save(d / "models" / "p")
    return d


def test_compress_codes_each_variable_with_its_own_model(two_variables, tmp_path):
    d = two_variables
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutOfRangeWarning)  # one model for both: pressure would be out of range
        assert cli_main(["compress", str(d / "in.nc"), str(tmp_path / "a.zarr"), "--model", str(d / "models"),
                         "--chunks", "time=2", "--rel-error", "0.01", "--quiet"]) == 0
    info = archive.store_info(tmp_path / "a.zarr")
    for var in ("t", "p"):
        entry = info["variables"][var]
        assert entry["model_sha256"] == COINppCodec(d / "models" / var, assume_global_grid=True).model_sha256
        assert "raw" not in entry["chunk_modes"], entry["chunk_modes"]
    # the same request through VAR=MODEL and through the library: the same bytes
    assert cli_main(["compress", str(d / "in.nc"), str(tmp_path / "b.zarr"), "--model", f"t={d / 'models' / 't'}",
                     "--model", f"p={d / 'models' / 'p'}", "--chunks", "time=2", "--rel-error", "0.01", "--quiet"]) == 0
    archive.compress_dataset(d / "in.nc", tmp_path / "c.zarr", models={"p": d / "models" / "p", "t": d / "models" / "t"},
                             chunks="time=2", rel_error=0.01, progress=False)
    assert file_hashes(tmp_path / "a.zarr") == file_hashes(tmp_path / "b.zarr") == file_hashes(tmp_path / "c.zarr")
    # a fresh process, with no model but the store's, decodes each variable within its bound (1% of
    # each chunk's range: 0.7 K and 280 Pa here, one setting for both units)
    code = ("import sys, json, xarray as xr, numpy as np; a = xr.open_zarr(sys.argv[1]); b = xr.open_dataset(sys.argv[2]); "
            "print(json.dumps({v: [float(np.abs(a[v].values[i:i + 2] - b[v].values[i:i + 2]).max()), "
            "float(np.ptp(b[v].values[i:i + 2]))] for v in ('t', 'p') for i in (0, 2)}))")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "a.zarr"), str(d / "in.nc")], capture_output=True,
                       text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    for var, (err, rng) in json.loads(r.stdout).items():
        assert err <= 0.01 * rng, (var, err, rng)


def test_a_variable_without_a_model_is_never_given_another(two_variables, tmp_path):
    d = two_variables
    with pytest.raises(ValueError, match=r"variables \['p'\] have no model"):
        archive.compress_dataset(d / "in.nc", tmp_path / "x.zarr", models={"t": d / "models" / "t"},
                                 variables=["t", "p"], progress=False)
    # by default only the variables with a model are coded; the others are copied losslessly
    rep = archive.compress_dataset(d / "in.nc", tmp_path / "y.zarr", models={"t": d / "models" / "t"}, progress=False)
    assert "p" in rep["copied"] and list(rep["variables"]) == ["t"]
    np.testing.assert_array_equal(xr.open_zarr(tmp_path / "y.zarr", consolidated=False).p.values,
                                  xr.open_dataset(d / "in.nc").p.values)
    from inrcodec.cli import model_arguments

    with pytest.raises(ValueError, match="VAR=MODEL"):  # two models, but for which variable?
        model_arguments([str(d / "models" / "t"), str(d / "models" / "p")])
    assert model_arguments(["t=a", "p=b"]) == (None, {"t": "a", "p": "b"})


def test_for_dataset_gives_each_variable_its_model(two_variables, tmp_path):
    d = two_variables
    ds = xr.open_dataset(d / "in.nc")
    enc = COINppCodec.for_dataset(ds, d / "models", chunks={"time": 2}, rel_error=0.01)
    assert sorted(enc) == ["p", "t"]
    ds.to_zarr(tmp_path / "e.zarr", encoding=enc, consolidated=False)
    g = zarr.open_group(tmp_path / "e.zarr", mode="r")
    shas = {v: g[v].metadata.codecs[0].model_sha256 for v in ("t", "p")}
    assert shas["t"] != shas["p"]
    back = xr.open_zarr(tmp_path / "e.zarr", consolidated=False)
    for v in ("t", "p"):  # each within 1% of each chunk's range, in its own units
        for i in (0, 2):
            x = ds[v].values[i:i + 2]
            assert np.abs(back[v].values[i:i + 2] - x).max() <= 0.01 * np.ptp(x)
    with pytest.raises(ValueError, match="lack"):
        COINppCodec.for_dataset(ds, {"q": d / "models" / "t"})


def test_train_recipe_trains_one_model_per_variable(two_variables, tmp_path):
    """``--variable t,p`` (or ``all``): one model each in OUT/VARIABLE, normalised in its own units,
    from scratch when the shipped prior's variable does not fit; the directory compresses the file."""
    from inrcodec.models import modelstore
    from inrcodec.recipes import train_variables, variable_list

    d = two_variables
    assert variable_list("all", [str(d / "in.nc")]) == ["t", "p"]
    assert variable_list("t", None) is None  # one variable: one model, as before
    reports = train_variables("era5", ["t", "p"], tmp_path / "m", data=[str(d / "in.nc")], steps=1,
                              progress=False, overrides=TINY, report_bits=[5], calibration_items=64)
    assert sorted(reports) == ["p", "t"]
    for var, units in (("t", "K"), ("p", "Pa")):
        model = modelstore.load(tmp_path / "m" / var).model
        lo, hi = model.description["training_range"]
        x = xr.open_dataset(d / "in.nc")[var].values
        assert lo <= float(np.percentile(x, 50)) <= hi, (var, lo, hi)  # its own units
        assert reports[var]["units"] == units
        assert (tmp_path / "m" / var / "report.md").exists()
    assert reports["p"]["init"] is None
    assert sorted(json.loads((tmp_path / "m" / "summary.json").read_text())) == ["p", "t"]
    assert sorted(modelstore.variable_models(tmp_path / "m")) == ["p", "t"]
    with pytest.raises(ValueError, match="twice"):
        variable_list("t,t", None)


def test_valid_min_keeps_precipitation_non_negative(tmp_path):
    """Precipitation is non-negative with many exact zeros: a lossy decode leaks below 0 where the
    field is dry. ``valid_min=0`` raises those values to 0 (more exact zeros, none negative),
    within any error bound; data below it are refused; configurations without it are unchanged."""
    from inrcodec import CodecSettings
    from inrcodec.chunkformat import mode_counts

    rng = np.random.default_rng(5)
    lat, lon = global_lat_lon(32, 64)
    wet = np.clip(rng.normal(0.0, 1.0, (4, 32, 64)).cumsum(axis=2) / 8.0, 0.0, None)
    x = (wet * wet * 1e-3).astype("f4")  # m, about half exact zeros, heavy tail
    assert (x == 0).mean() > 0.3
    model = build_spherical_model(seed=2)
    model.offset, model.scale = 0.0, float(x.max())  # a model of this variable's range (m)
    leaked = 0
    for options in ({"target_ratio": 20.0}, *({"max_abs_error": b} for b in (1e-4, 1.3e-4, 1.7e-4, 2.1e-4))):
        plain = COINppCodec(model, lat=lat, lon=lon, residual_coder="sperr", **options)
        kept = COINppCodec(model, lat=lat, lon=lon, residual_coder="sperr", valid_min=0.0, **options)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the untrained test network may miss the target ratio
            a, b = plain.encode(x), kept.encode(x)
        ya, yb = plain.decode(a), kept.decode(b)
        assert mode_counts([a]) == mode_counts([b])
        assert yb.min() >= 0 and (yb[x == 0] == 0).mean() >= (ya[x == 0] == 0).mean()
        assert np.abs(yb - x).max() <= np.abs(ya - x).max()  # raising to 0 only comes closer
        if "max_abs_error" in options:  # within the bound, dry values may decode below 0 without valid_min
            leaked += bool(ya.min() < 0 and (yb[x == 0] == 0).mean() > (ya[x == 0] == 0).mean())
            assert np.abs(yb.astype("f8") - x).max() <= options["max_abs_error"]
    assert leaked
    with pytest.raises(ValueError, match="below valid_min"):
        kept.encode(x - 1.0)
    assert "valid_min" not in CodecSettings().to_dict() and CodecSettings(valid_min=0.0).to_dict()["valid_min"] == 0.0
    with pytest.raises(ValueError, match="below valid_max"):
        CodecSettings(valid_min=1.0, valid_max=0.0)


def test_init_prior_starts_any_variable_from_the_shipped_network_in_its_own_units(tmp_path):
    """``--init prior``: the recipe's shipped network (what it knows of smooth fields on the sphere)
    for a variable in other units, normalised to that variable's own range; ``--init auto`` would
    train it from scratch, an explicit ``--init t2m-global-2`` refuses it."""
    from inrcodec.errors import InrcodecError
    from inrcodec.models import modelstore
    from inrcodec.recipes import load_recipe, load_recipe_data, train_recipe

    data = monthly_sample(tmp_path / "msl.nc", name="msl", units="Pa")
    report = train_recipe("era5", data=[data], steps=0, out=tmp_path / "m", init="prior", progress=False,
                          report_bits=[5], calibration_items=64)
    prior = modelstore.load("t2m-global-2").model
    model = modelstore.load(tmp_path / "m").model
    train = load_recipe_data(load_recipe("era5"), [data]).train
    assert (model.offset, model.offset + model.scale) == pytest.approx((np.nanmin(train), np.nanmax(train)))
    assert (model.offset, model.scale) != (prior.offset, prior.scale)
    np.testing.assert_array_equal(model.network.state_dict()["hidden.0.weight"].numpy(),  # the prior's network
                                  prior.network.state_dict()["hidden.0.weight"].numpy())
    assert "normalised to these data" in report["init"]["name"] and model.description["units"] == "Pa"
    with pytest.raises(InrcodecError, match="trained on data in 'K', these data are in 'Pa'"):
        train_recipe("era5", data=[data], steps=0, out=tmp_path / "x", init="t2m-global-2", progress=False,
                     report_bits=[5], calibration_items=64)
    # the default for another variable (chosen on validation: from scratch, msl and v10 diverged)
    auto = train_recipe("era5", data=[data], steps=0, out=tmp_path / "a", progress=False, report_bits=[5],
                        calibration_items=64)
    assert auto["init"] == report["init"] and modelstore.load(tmp_path / "a").model.sha256 == model.sha256


def test_every_variable_named_is_checked_before_any_trains(two_variables):
    from inrcodec.recipes import variable_list

    with pytest.raises(ValueError, match=r"\['q'\] not among"):
        variable_list("t,q", [str(two_variables / "in.nc")])


# ------------------------------------------------------------------ without a network
@pytest.mark.parametrize("options", [dict(target_ratio=12.0), dict(target_rmse=400.0), dict(max_abs_error=150.0)])
def test_network_free_chunks_meet_the_target_without_running_the_network(options, monkeypatch):
    """``network=False``: SPERR alone at a ratio or RMSE, SPERR alone or mean + residual within a
    bound; the model's network is never fitted or run, so any variable in any units is coded."""
    from inrcodec import CodecSettings
    from inrcodec import chunkformat as cf
    from inrcodec.models import model as model_module

    def never(*args, **kwargs):
        raise AssertionError("the network ran")

    model = build_spherical_model()
    monkeypatch.setattr(model_module.CoinModel, "encode", never)
    monkeypatch.setattr(model_module.CoinModel, "decode", never)
    lat, lon = global_lat_lon(32, 64)
    x = (PA_OFFSET + 300.0 * smooth_field(4, 32, 64, seed=9)).astype("f4")  # "pressure" for a Kelvin model
    codec = COINppCodec(model, lat=lat, lon=lon, network=False, **options)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no out-of-range warning: the values never meet the network
        chunk = codec.encode(x)
    y = codec.decode(chunk).astype("f8")
    assert cf.unpack_chunk(chunk)[0].mode in (3, 5)
    if "target_ratio" in options:
        assert x.nbytes / len(chunk) >= options["target_ratio"]
    if "target_rmse" in options:
        assert np.sqrt(np.mean((y - x) ** 2)) <= options["target_rmse"]
    if "max_abs_error" in options:
        assert np.abs(y - x).max() <= options["max_abs_error"]
    assert codec.get_config()["network"] is False and COINppCodec.from_config(codec.get_config()) == codec
    with pytest.raises(ValueError, match="network=False needs"):
        CodecSettings(network=False)  # bits alone is the network's rate
    with pytest.raises(ValueError, match="residual_coder must be 'sperr'"):
        CodecSettings(network=False, target_ratio=10.0, residual_coder="none")


def test_a_variable_without_a_model_is_coded_at_the_target_without_a_network(two_variables, tmp_path):
    """With a target, a variable that has no model is coded without a network (pinned to the shipped
    ``zoo.NETWORK_FREE_PIN``, whose network is never run), never with another variable's model;
    the report and ``info`` say so. Without one (bits alone), it is copied losslessly as before."""
    from inrcodec.models import zoo

    d = two_variables
    for how in (dict(), dict(variables=["t", "p"])):  # every lat/lon variable, or the ones named
        out = tmp_path / f"s{len(how)}.zarr"
        rep = archive.compress_dataset(d / "in.nc", out, models={"t": d / "models" / "t"}, rel_error=0.01,
                                       chunks="time=2", progress=False, **how)
        assert list(rep["variables"]) == ["t", "p"] and "p" not in rep["copied"]
        assert rep["variables"]["p"]["network"] is False and rep["variables"]["t"]["network"] is True
        info = archive.store_info(out)
        assert info["variables"]["p"]["model"] == zoo.NETWORK_FREE_PIN
        assert set(info["variables"]["p"]["chunk_modes"]) <= {"wavelet", "plain-residual"}
        assert "none (no net)" in archive.format_info(info) and "without a network" in archive.format_report(rep)
        a, b = xr.open_zarr(out, consolidated=False), xr.open_dataset(d / "in.nc")
        for i in (0, 2):  # 1 % of each chunk's range
            err = np.abs(a.p.values[i:i + 2] - b.p.values[i:i + 2]).max()
            assert err <= 0.01 * np.ptp(b.p.values[i:i + 2])


def test_one_variable_takes_its_own_options_in_a_whole_file_run(tmp_path):
    """Issue 31 item 4: ``valid_min=0`` for precipitation in a file whose other variables go below 0
    (a global ``--valid-min 0`` refuses them): ``variable_options`` / ``--variable-option
    VAR.OPTION=VALUE`` give it to that variable only, at every door, and its store configuration
    says so."""
    rng = np.random.default_rng(7)
    lat, lon = global_lat_lon()
    wet = np.clip(rng.normal(0.0, 1.0, (4, len(lat), len(lon))).cumsum(axis=2) / 8.0, 0.0, None)
    ds = xr.Dataset({"tp": (("time", "lat", "lon"), (wet * wet * 1e-3).astype("f4")),
                     "u": (("time", "lat", "lon"), (smooth_field(4, seed=6) - 250.0).astype("f4") / 10.0)},
                    coords={"time": np.arange(4), "lat": lat, "lon": lon})
    ds.to_netcdf(tmp_path / "in.nc")
    assert (ds.tp.values == 0).mean() > 0.3 and ds.u.values.min() < 0
    for var, scale in (("tp", float(ds.tp.max())), ("u", 12.0)):
        model = build_spherical_model(seed=2)
        model.offset, model.scale = (0.0, scale) if var == "tp" else (-6.0, scale)
        model.save(tmp_path / "models" / var)
    base = ["compress", str(tmp_path / "in.nc"), "--model", str(tmp_path / "models"), "--target-ratio", "8", "--quiet"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the untrained test networks may miss the ratio
        assert cli_main([*base[:2], str(tmp_path / "all.zarr"), *base[2:], "--valid-min", "0"]) == 2  # u < 0 refused
        assert cli_main([*base[:2], str(tmp_path / "a.zarr"), *base[2:], "--variable-option", "tp.valid_min=0"]) == 0
        archive.compress_dataset(tmp_path / "in.nc", tmp_path / "b.zarr", tmp_path / "models", target_ratio=8.0,
                                 variable_options={"tp": {"valid_min": 0.0}}, progress=False)
        enc = COINppCodec.for_dataset(ds, tmp_path / "models", target_ratio=8.0, variable_options={"tp": {"valid_min": 0.0}})
        ds.to_zarr(tmp_path / "c.zarr", encoding=enc, consolidated=False)
    assert file_hashes(tmp_path / "a.zarr") == file_hashes(tmp_path / "b.zarr")
    for store in ("a.zarr", "c.zarr"):
        g = zarr.open_group(tmp_path / store, mode="r")
        assert g["tp"].metadata.codecs[0].settings.valid_min == 0.0
        assert g["u"].metadata.codecs[0].settings.valid_min is None
        back = xr.open_zarr(tmp_path / store, consolidated=False)
        assert float(back.tp.min()) >= 0.0 and float(back.u.min()) < 0.0
    with pytest.raises(ValueError, match=r"name \['q'\], which are not encoded"):
        archive.compress_dataset(tmp_path / "in.nc", tmp_path / "x.zarr", tmp_path / "models", target_ratio=8.0,
                                 variable_options={"q": {"valid_min": 0.0}}, progress=False)
    with pytest.raises(ValueError, match="unknown codec option"):
        archive.compress_dataset(tmp_path / "in.nc", tmp_path / "x.zarr", tmp_path / "models", target_ratio=8.0,
                                 variable_options={"tp": {"valid_minimum": 0.0}}, progress=False)
    from inrcodec.cli import variable_option_arguments

    assert variable_option_arguments(["tp.valid_min=0", "tp.network=false", "u.bits=5", "u.residual-coder=none"]) == {
        "tp": {"valid_min": 0.0, "network": False}, "u": {"bits": 5, "residual_coder": "none"}}
    assert variable_option_arguments(["u.patch-points=auto", "tp.patch_points=model"]) == {
        "u": {"patch_points": 0}, "tp": {"patch_points": None}}  # as --patch-points reads them
    for bad in ("tp=0", "valid_min=0", "tp.valid_min=", "tp.valid_min=low"):
        with pytest.raises(ValueError):
            variable_option_arguments([bad])


def test_a_variable_trained_on_precipitation_like_data_suggests_valid_min_and_compress_takes_it(tmp_path):
    """Issue 31 item 4 (a recipe setting per variable): a variable whose training values are all >= 0
    with exact zeros is suggested ``valid_min=0`` (summary.json's ``codec_options``); compressing with
    that directory gives it to that variable where the request leaves the option alone, the others
    keep theirs, and the request's own options win."""
    from inrcodec.models import modelstore
    from inrcodec.recipes import train_variables
    from inrcodec.recipes.train import suggested_codec_options

    rng = np.random.default_rng(3)
    lat, lon = global_lat_lon()
    wet = np.clip(rng.normal(0.0, 1.0, (8, len(lat), len(lon))).cumsum(axis=2) / 8.0, 0.0, None)
    ds = xr.Dataset({"tp": (("time", "lat", "lon"), (wet * wet * 1e-3).astype("f4"), {"units": "m"}),
                     "u": (("time", "lat", "lon"), ((smooth_field(8, seed=6) - 250.0) / 10.0).astype("f4"),
                           {"units": "m s-1"})},
                    coords={"time": np.arange(8), "lat": lat, "lon": lon})
    ds.to_netcdf(tmp_path / "in.nc")
    assert suggested_codec_options(ds.tp.values) == {"valid_min": 0.0}
    assert suggested_codec_options(ds.u.values) == {} and suggested_codec_options(ds.tp.values + 1e-3) == {}
    train_variables("era5", ["tp", "u"], tmp_path / "m", data=[str(tmp_path / "in.nc")], steps=1, progress=False,
                    overrides=TINY, report_bits=[5], calibration_items=64)
    assert modelstore.variable_codec_options(tmp_path / "m") == {"tp": {"valid_min": 0.0}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the one-step networks miss their ratio
        rep = archive.compress_dataset(tmp_path / "in.nc", tmp_path / "a.zarr", tmp_path / "m", target_ratio=8.0,
                                       progress=False)
        assert rep["variables"]["tp"]["settings"]["valid_min"] == 0.0
        assert "valid_min" not in rep["variables"]["u"]["settings"]
        assert float(xr.open_zarr(tmp_path / "a.zarr", consolidated=False).tp.min()) >= 0.0
        own = archive.compress_dataset(tmp_path / "in.nc", tmp_path / "b.zarr", tmp_path / "m", target_ratio=8.0,
                                       variable_options={"tp": {"valid_min": -1.0}}, progress=False)
        assert own["variables"]["tp"]["settings"]["valid_min"] == -1.0  # the request's own wins
        enc = COINppCodec.for_dataset(ds, tmp_path / "m", target_ratio=8.0)
    assert enc["tp"]["serializer"].settings.valid_min == 0.0 and enc["u"]["serializer"].settings.valid_min is None
