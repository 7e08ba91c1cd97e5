"""Every codec option survives every front door this module covers: the numcodecs
configuration (JSON), Zarr 2 and Zarr 3 array metadata written and read back, pickling, and
``for_dataarray``; plus xarray's own encodings with the codec object itself, and every door
(``inrcodec compress``, ``compress_dataset``, ``COINppCodec``, ``for_dataarray``, the HDF5 filter)
writing the same chunk bytes by default. (The options through HDF5 and the ``inrcodec compress`` /
``compress_dataset`` doors have their tests in test_hdf5.py and test_archive.py.) The option sets
together set every field of CodecSettings to a non-default."""

from __future__ import annotations

import dataclasses
import json
import pickle

import numpy as np
import pytest
import xarray as xr
import zarr

from conftest import NLAT, NLON, build_spherical_model, global_lat_lon, smooth_field
from helpers import config_round_trip
from inrcodec import COINppCodec, CodecSettings

LAT, LON = global_lat_lon()
#: three sets, because rate control and error bounds exclude each other
OPTION_SETS = {
    "bounded": dict(bits=5, inner_steps=2, entropy_coding=False, max_abs_error=0.2, rel_error=0.01, target_rmse=0.1,
                    fill_value=-999.0, assume_global_grid=True, refine_steps=1, chunk_shape=(2, NLAT, NLON),
                    chunk_order="F", chunk_dtype="float32", residual_interpolation=False),
    "target_rmse": dict(target_rmse=1.5, lat=tuple(LAT), lon=tuple(LON), fill_value=0.0, quantizer="uniform",
                        residual_coder="none", residual_item_detail=False,
                        residual_context=False, residual_levels=False, residual_cubic=False,
                        residual_fine_step=False, residual_compact=False),
    "target_ratio": dict(target_ratio=30.0, assume_global_grid=True, time_coding=False, patch_points=3, effort="full",
                         valid_min=100.0, valid_max=400.0, coarse_hybrid=False, sperr_exact_bound=False,
                         sperr_item_dct=False, sperr_corrected=False),
    "network_free": dict(target_ratio=20.0, network=False),
}


def test_the_option_sets_cover_every_setting():
    covered = {k for opts in OPTION_SETS.values() for k in opts}
    assert covered == CodecSettings.names()
    defaults = CodecSettings()
    for opts in OPTION_SETS.values():
        assert all(getattr(CodecSettings(**opts), k) != getattr(defaults, k) for k in opts)


@pytest.fixture(params=sorted(OPTION_SETS))
def codec(request, tiny_model):
    return COINppCodec(tiny_model, **OPTION_SETS[request.param])


def test_numcodecs_config_door(codec):
    back = config_round_trip(codec)
    assert type(back) is COINppCodec and back.settings == codec.settings


def test_pickle_door(codec):
    back = pickle.loads(pickle.dumps(codec))
    assert back.settings == codec.settings and back.model_sha256 == codec.model_sha256


def test_zarr3_serializer_door(tmp_path, codec):
    shape = codec.settings.chunk_shape or (2, NLAT, NLON)
    zarr.create_array(store=tmp_path / "a.zarr", shape=shape, chunks=shape, dtype="f4",
                      serializer=codec, compressors=None)
    meta = json.loads((tmp_path / "a.zarr" / "zarr.json").read_text())
    assert meta["codecs"][0]["name"] == "inrcodec.coinpp"
    back = zarr.open_array(tmp_path / "a.zarr", mode="r").serializer
    assert isinstance(back, COINppCodec) and back.settings == codec.settings


def test_zarr2_compressor_door(tmp_path, codec):
    shape = codec.settings.chunk_shape or (2, NLAT, NLON)
    zarr.create_array(store=tmp_path / "a.zarr", shape=shape, chunks=shape, dtype="f4", zarr_format=2,
                      compressors=codec, filters=None, fill_value=np.nan)
    meta = json.loads((tmp_path / "a.zarr" / ".zarray").read_text())
    assert meta["compressor"]["id"] == "inrcodec.coinpp"
    back = zarr.open_array(tmp_path / "a.zarr", mode="r").compressors[0]
    assert isinstance(back, COINppCodec) and back.settings == codec.settings


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_for_dataarray_door_forwards_every_option(tiny_model, zarr_format):
    da = xr.DataArray(smooth_field(2).astype("f4"), dims=("time", "lat", "lon"),
                      coords={"lat": LAT, "lon": LON}, name="t2m")
    for opts in OPTION_SETS.values():
        opts = {k: v for k, v in opts.items() if k not in ("lat", "lon", "chunk_shape", "chunk_order", "chunk_dtype")}
        enc = COINppCodec.for_dataarray(da, tiny_model, zarr_format=zarr_format, **opts)
        codec = enc["compressors"][0] if zarr_format == 2 else enc["serializer"]
        want = CodecSettings(**opts)
        assert {k: getattr(codec.settings, k) for k in opts} == {k: getattr(want, k) for k in opts}
        assert codec.settings.lat == tuple(LAT)


def test_settings_object_and_keywords_are_the_same_codec(tiny_model):
    opts = OPTION_SETS["bounded"]
    assert COINppCodec(tiny_model, CodecSettings(**opts)) == COINppCodec(tiny_model, **opts)
    with pytest.raises(TypeError, match="not both"):
        COINppCodec(tiny_model, CodecSettings(), bits=4)


def test_unknown_configuration_keys_are_refused(tiny_model):
    config = COINppCodec(tiny_model, assume_global_grid=True).get_config()
    with pytest.raises(ValueError, match="unknown codec setting"):
        COINppCodec.from_config({**config, "bitz": 3})


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_xarray_takes_the_codec_object_itself(tmp_path, tiny_model, zarr_format):
    ds = xr.Dataset({"t2m": (("time", "lat", "lon"), smooth_field(3).astype("f4"))},
                    coords={"lat": LAT, "lon": LON})
    codec = COINppCodec(tiny_model, lat=LAT, lon=LON, inner_steps=2)
    key = {3: {"serializer": codec}, 2: {"compressors": [codec]}}[zarr_format]
    ds.to_zarr(tmp_path / "s.zarr", zarr_format=zarr_format, consolidated=False, mode="w",
               encoding={"t2m": {**key, "chunks": (1, NLAT, NLON)}})
    back = xr.open_zarr(tmp_path / "s.zarr", consolidated=False).t2m.values
    ref = codec.decode(codec.encode(ds.t2m.values[:1]))
    np.testing.assert_array_equal(back[:1], ref)


def test_settings_dataclass_is_frozen_and_validated():
    s = CodecSettings(bits=4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.bits = 5
    with pytest.raises(ValueError, match="not both"):
        CodecSettings(target_rmse=1.0, target_ratio=10.0)
    assert CodecSettings(max_abs_error=1.0, target_ratio=10.0).error_bounded  # a bound with a target (issue 33)
    with pytest.raises(ValueError, match="bits"):
        CodecSettings(bits=0)


def test_a_store_naming_a_shipped_model_decodes_only_with_that_model():
    from inrcodec.errors import PinnedModelError

    config = COINppCodec("t2m-global", assume_global_grid=True).get_config()
    assert config["model_encoding"] == "shipped" and len(json.dumps(config)) < 1000
    with pytest.raises(PinnedModelError, match="does not ship"):
        COINppCodec.from_config({**config, "model": "no-such-model"})
    with pytest.raises(PinnedModelError, match="pinned hash"):
        COINppCodec.from_config({**config, "model_sha256": "0" * 64})


def test_pickles_carry_model_bytes_only_when_the_receiver_cannot_have_them(tiny_model):
    from inrcodec.models import modelstore

    shipped = COINppCodec("t2m-global", assume_global_grid=True)
    own = COINppCodec(tiny_model, assume_global_grid=True)
    assert len(pickle.dumps(shipped)) < 2000 < len(own.model_bytes) < len(pickle.dumps(own))
    modelstore.mark_shipped(own.model_sha256)  # as after archive.ship_models(client, [model])
    try:
        assert len(pickle.dumps(own)) < 2000
        assert pickle.loads(pickle.dumps(own)) == own
    finally:
        modelstore.unmark_shipped(own.model_sha256)


def test_every_door_writes_the_same_chunk_bytes_by_default(tmp_path):
    """No option given: the CLI, compress_dataset, COINppCodec(model), for_dataarray and the HDF5
    filter all encode with the model's encode_steps (3 here, not CodecSettings' old 10)."""
    import h5py

    import inrcodec.hdf5 as ih5
    from inrcodec.archive import compress_dataset
    from inrcodec.cli import main as cli_main

    model = build_spherical_model(seed=7)
    model.save(tmp_path / "model")
    x = smooth_field(4, seed=7).astype("f4")
    ds = xr.Dataset({"tas": (("time", "lat", "lon"), x)}, coords={"time": np.arange(4), "lat": LAT, "lon": LON})
    ds.to_netcdf(tmp_path / "in.nc")
    inp, mdir = str(tmp_path / "in.nc"), str(tmp_path / "model")
    chunks = {}
    assert cli_main(["compress", inp, str(tmp_path / "cli.zarr"), "--model", mdir, "--variables", "tas",
                     "--chunks", "time=4", "--quiet"]) == 0
    compress_dataset(inp, tmp_path / "api.zarr", mdir, variables="tas", chunks="time=4", progress=False, evaluate=False)
    for door in ("cli", "api"):  # one chunk, written as the serializer returned it (no compressors)
        chunks[door] = (tmp_path / f"{door}.zarr" / "tas" / "c" / "0" / "0" / "0").read_bytes()
    chunks["codec"] = bytes(COINppCodec(mdir, lat=LAT, lon=LON).encode(x))
    chunks["for_dataarray"] = bytes(COINppCodec.for_dataarray(ds.tas, mdir)["serializer"].encode(x))
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f.create_dataset("tas", data=x, chunks=x.shape, compression=ih5.COINpp(mdir, lat=LAT, lon=LON))
        chunks["hdf5"] = f["tas"].id.read_direct_chunk((0, 0, 0))[1]
    assert len(set(chunks.values())) == 1, {k: len(v) for k, v in chunks.items()}
    assert COINppCodec(mdir, lat=LAT, lon=LON).get_config()["inner_steps"] == model.encode_steps == 3
    np.testing.assert_array_equal(COINppCodec(mdir, lat=LAT, lon=LON).decode(chunks["hdf5"]),
                                  ih5.COINpp.of(h5py.File(tmp_path / "f.h5")["tas"]).codec.decode(chunks["cli"]))


def test_the_command_line_flags_repeat_every_setting_the_data_does_not_decide():
    import argparse

    parser = argparse.ArgumentParser()
    CodecSettings.add_arguments(parser)
    assert CodecSettings.data_fields() == ("lat", "lon", "chunk_shape", "chunk_order", "chunk_dtype")
    for opts in OPTION_SETS.values():
        s = CodecSettings(**opts)
        back = CodecSettings.from_arguments(parser.parse_args(s.to_arguments()))
        assert back == s.replace(**dict.fromkeys(CodecSettings.data_fields()))
