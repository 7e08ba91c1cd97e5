"""Error-bounded mode (max_abs_error / rel_error), fill values, edge chunks, format version 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import xarray as xr
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numcodecs.tests.common import check_config

from conftest import NLAT, NLON, global_lat_lon, legacy_of, smooth_field
from inrcodec import chunkformat as cf
from inrcodec.chunkformat.header import (
    ChunkHeader, MODE_BOUNDED, MODE_MODULATIONS, MODE_PLAIN_RESIDUAL, MODE_RAW, MODE_WAVELET, V3_PREFIX, V4_PREFIX,
)
from inrcodec.chunkcodec import residual
from inrcodec.codec import COINppCodec
from inrcodec.errors import CorruptChunkError, OutOfRangeWarning
from helpers import config_round_trip, fix_crc

HYP = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _check_bound(x, y, bound):
    """max |y - x| <= bound on every finite value of x, NaN positions identical, inf exact."""
    x64, y64 = np.asarray(x, np.float64), np.asarray(y, np.float64)
    np.testing.assert_array_equal(np.isnan(y64), np.isnan(x64))
    fin = np.isfinite(x64)
    if fin.any():
        err = np.abs(y64[fin] - x64[fin])
        assert err.max() <= bound, (err.max(), bound)
    np.testing.assert_array_equal(y64[np.isinf(x64)], x64[np.isinf(x64)])


def _mode(chunk: bytes) -> int:
    return cf.unpack_chunk(chunk)[0].mode


# ------------------------------------------------------------------ config
def test_config_round_trip(tiny_model):
    c = COINppCodec(tiny_model, residual_coder="none", assume_global_grid=True, inner_steps=3, max_abs_error=0.05, rel_error=1e-3, fill_value=-9999)
    check_config(c)
    cfg = c.get_config()
    assert (cfg["max_abs_error"], cfg["rel_error"], cfg["fill_value"]) == (0.05, 1e-3, -9999.0)
    again = config_round_trip(c)
    assert again != COINppCodec(tiny_model, residual_coder="none", assume_global_grid=True, inner_steps=3, max_abs_error=0.1, rel_error=1e-3, fill_value=-9999)
    assert "max_abs_error=0.05" in repr(c)
    plain = COINppCodec(tiny_model, residual_coder="none", assume_global_grid=True, inner_steps=3).get_config()  # unchanged for plain codecs
    assert not {"max_abs_error", "rel_error", "fill_value"} & set(plain)
    for bad in (0, -1.0, float("nan"), float("inf"), "0.1", True):
        with pytest.raises(ValueError):
            COINppCodec(tiny_model, residual_coder="none", assume_global_grid=True, max_abs_error=bad)
        with pytest.raises(ValueError):
            COINppCodec(tiny_model, residual_coder="none", assume_global_grid=True, rel_error=bad)


def test_zarr3_codec_options_round_trip(tmp_path, tiny_model):
    ser = COINppCodec(model=tiny_model, residual_coder="none", assume_global_grid=True, inner_steps=3, max_abs_error=0.1, fill_value=-9999.0)
    d = json.loads(json.dumps(ser.to_dict()))
    assert d["configuration"]["max_abs_error"] == 0.1 and d["configuration"]["fill_value"] == -9999.0
    assert COINppCodec.from_dict(d) == ser
    x = smooth_field(3).astype("f4")
    x[0, 1, 2] = np.nan
    x[1, 3, 4] = -9999.0
    z = zarr.create_array(store=tmp_path / "b.zarr", shape=x.shape, chunks=(2, NLAT, NLON), dtype="f4",
                          serializer=ser, compressors=None, fill_value=np.nan)
    z[:] = x
    y = zarr.open_array(tmp_path / "b.zarr", mode="r")[:]
    assert y[1, 3, 4] == -9999.0
    fin = x != -9999.0
    _check_bound(np.where(fin, x, 0), np.where(fin, y, 0), 0.1)


# ------------------------------------------------------------------ the bound, property tests
@HYP
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(1, 3),
    bound=st.sampled_from([1e-4, 1e-3, 0.01, 0.05, 0.1, 0.5, 2.0, 20.0]),
    dtype=st.sampled_from(["<f4", "<f8", ">f4"]),
    nan_frac=st.sampled_from([0.0, 0.0, 0.1, 0.6]),
    noise=st.sampled_from([0.0, 0.5, 5.0, 30.0]),
    fill_frac=st.sampled_from([0.0, 0.0, 0.2]),
    order=st.sampled_from(["C", "F"]),
)
def test_bound_holds_on_random_fields(tiny_model, seed, n, bound, dtype, nan_frac, noise, fill_frac, order):
    rng = np.random.default_rng(seed)
    x = smooth_field(n, seed=seed % 1000) + rng.normal(0, noise, (n, NLAT, NLON))
    x[rng.random(x.shape) < nan_frac] = np.nan
    fill = rng.random(x.shape) < fill_frac
    x[fill] = -9999.0
    x = np.asarray(x.astype(dtype), order=order)
    c = COINppCodec(tiny_model, residual_coder="none", assume_global_grid=True, bits=int(rng.integers(2, 7)), inner_steps=2, max_abs_error=bound,
                    fill_value=-9999.0)
    chunk = c.encode(x)
    assert _mode(chunk) in (MODE_BOUNDED, MODE_PLAIN_RESIDUAL, MODE_RAW)
    y = c.decode(chunk)
    assert y.dtype == x.dtype and y.shape == x.shape
    assert y.flags.f_contiguous if order == "F" else y.flags.c_contiguous
    np.testing.assert_array_equal(y == -9999.0, fill)
    _check_bound(np.where(fill, 0, x), np.where(fill, 0, y), bound)


@pytest.mark.filterwarnings("ignore::inrcodec.errors.OutOfRangeWarning")  # scale 7: beside [0, 1], coded raw
@HYP
@given(
    seed=st.integers(0, 2**31 - 1),
    shape=st.tuples(st.integers(1, 2), st.integers(1, 11), st.integers(1, 13)),
    rel=st.sampled_from([1e-4, 1e-3, 1e-2, 0.1]),
    scale=st.sampled_from([1e-3, 1.0, 7.0]),
)
def test_rel_error_bound_on_cartesian_any_shape(cartesian_model, seed, shape, rel, scale):
    rng = np.random.default_rng(seed)
    x = (rng.random(shape) * scale).astype("f4")
    c = COINppCodec(cartesian_model, residual_coder="none", bits=4, inner_steps=2, rel_error=rel)
    y = c.decode(c.encode(x))
    rng_x = float(x.max()) - float(x.min())
    _check_bound(x, y, rel * rng_x)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bound=st.sampled_from([0.01, 0.05, 0.1, 0.5]), t=st.integers(0, 10))
def test_bound_holds_on_real_data(tiny_model, bound, t):
    from inrcodec.datasets import embedded_sample

    da = embedded_sample("tas")
    x = np.ascontiguousarray(da.values[t : t + 2], dtype=np.float32)
    lat, lon = da[da.dims[-2]].values, da[da.dims[-1]].values
    c = COINppCodec(tiny_model, residual_coder="none", assume_global_grid=True, bits=4, inner_steps=2, lat=lat, lon=lon, max_abs_error=bound)
    chunk = c.encode(x)
    assert _mode(chunk) in (MODE_BOUNDED, MODE_PLAIN_RESIDUAL)
    _check_bound(x, c.decode(chunk), bound)
    assert len(chunk) < x.nbytes


def test_both_options_take_the_smaller_bound(tiny_model):
    x = smooth_field(2).astype("f4")
    c = COINppCodec(tiny_model, residual_coder="none", assume_global_grid=True, inner_steps=2, max_abs_error=0.5, rel_error=1e-4)
    rng_x = float(x.max()) - float(x.min())
    assert c.settings.chunk_bound(x.ravel()) == pytest.approx(min(0.5, 1e-4 * rng_x))
    _, sections = cf.unpack_chunk(c.encode(x))
    assert residual.residual_info(sections["residual"])["bound"] == pytest.approx(1e-4 * rng_x)


def test_tighter_bound_costs_more_and_format_is_version_3(tiny_model):
    x = smooth_field(2).astype("f4")
    sizes = []
    for b in (0.5, 0.05, 0.005):
        chunk = COINppCodec(tiny_model, residual_coder="none", assume_global_grid=True, inner_steps=2, max_abs_error=b).encode(x)
        assert chunk[:2] == V3_PREFIX and _mode(chunk) in (MODE_BOUNDED, MODE_PLAIN_RESIDUAL)
        sizes.append(len(chunk))
    assert sizes[0] < sizes[1] < sizes[2]


def test_fresh_process_decodes_within_bound(tmp_path, tiny_model):
    x = smooth_field(3, seed=5).astype("f4")
    x[1, 2, 3] = np.nan
    bound = 0.01
    c = COINppCodec(tiny_model, residual_coder="none", assume_global_grid=True, bits=5, inner_steps=3, max_abs_error=bound)
    (tmp_path / "cfg.json").write_text(json.dumps(c.get_config()))
    (tmp_path / "chunk.bin").write_bytes(c.encode(x))
    np.save(tmp_path / "x.npy", x)
    script = textwrap.dedent(
        """
        import json, sys, numpy as np, numcodecs
        d = sys.argv[1]
        codec = numcodecs.get_codec(json.load(open(d + "/cfg.json")))
        y = codec.decode(open(d + "/chunk.bin", "rb").read())
        x = np.load(d + "/x.npy")
        assert (np.isnan(y) == np.isnan(x)).all()
        fin = np.isfinite(x)
        err = float(np.abs(y[fin].astype("f8") - x[fin].astype("f8")).max())
        print("max_err", err)
        assert err <= codec.settings.max_abs_error, err
        np.save(d + "/y.npy", y)
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = "1"  # another thread count than the encoder's: same reconstruction
    r = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
                       env=env, cwd="/", timeout=120)
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), c.decode((tmp_path / "chunk.bin").read_bytes()))


# ------------------------------------------------------------------ exceptions / residual module
def test_bound_below_float32_resolution_is_still_met(tiny_model):
    x = smooth_field(1).astype("f4")  # values ~250: float32 spacing ~1.5e-5
    c = COINppCodec(tiny_model, residual_coder="none", assume_global_grid=True, inner_steps=2, max_abs_error=1e-6)
    y = c.decode(c.encode(x))
    np.testing.assert_array_equal(y, x)  # only exact values are within 1e-6


def test_residual_exceptions_and_escapes():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (2, 6, 7))
    recon = x + rng.normal(0, 0.3, x.shape)
    recon[0, 0, 0] = np.nan  # a non-finite reconstruction -> exception
    recon[0, 1, 1] = 1e30  # |r / step| > MAX_CODE -> exception
    recon[1, 2, 2] = x[1, 2, 2] + 1e4  # a large code -> escape
    valid = np.ones(x.shape, bool)
    valid[1, 0, :] = False
    enc = residual.encode_residual(x, recon, valid, 0.01, "<f8")
    assert enc.num_exceptions >= 2
    y = residual.decode_residual(enc.payload, recon, "<f8")
    assert np.abs(y - x)[valid].max() <= 0.01
    assert y[0, 0, 0] == x[0, 0, 0] and y[0, 1, 1] == x[0, 1, 1]


@pytest.mark.parametrize("coder", [residual.CODER_HISTOGRAM, residual.CODER_GEOMETRIC])
def test_both_residual_coders_round_trip(coder):
    rng = np.random.default_rng(1)
    d = np.concatenate([rng.laplace(0, 3, 5000).round(), [10**6, -(10**7), 12345]]).astype(np.int64)
    params, stream, escapes = residual.encode_codes(d, coder)
    np.testing.assert_array_equal(residual.decode_codes(coder, params, stream, escapes, d.size), d)
    q = rng.integers(-50, 50, (3, 5, 6))
    np.testing.assert_array_equal(residual.unlorenzo(residual.lorenzo(q)), q)


def test_corrupt_residual_section_is_reported(tiny_model):
    x = smooth_field(1).astype("f4")
    c = COINppCodec(tiny_model, residual_coder="none", assume_global_grid=True, inner_steps=2, max_abs_error=0.1)
    hdr, sections = cf.unpack_chunk(c.encode(x))
    sections["residual"] = sections["residual"][:-3]
    with pytest.raises(CorruptChunkError, match="residual"):
        c.decode(cf.pack_chunk(hdr, sections))


# ------------------------------------------------------------------ format version 2
def test_format_version_rules(tiny_model):
    x = smooth_field(1).astype("f4")
    v3, sections = cf.unpack_chunk(COINppCodec(tiny_model, residual_coder="none", assume_global_grid=True, inner_steps=2, max_abs_error=0.1,
                                               quantizer="uniform").encode(x))
    legacy = {**v3.__dict__, "pin": None, "model_sha256": tiny_model.sha256, "patch_shape": (),
              "num_items": 1, "num_patches": 1, "latent_dim": 8}
    hdr = ChunkHeader(**legacy)  # the same chunk in the legacy layout: version 2
    chunk = bytearray(cf.pack_chunk(hdr, sections))
    assert chunk[4] == 2
    chunk[4] = 1  # claim version 1: mode 2 is a version-2 feature
    with pytest.raises(CorruptChunkError, match="needs format version 2"):
        cf.unpack_chunk(fix_crc(chunk))
    with pytest.raises(ValueError, match="residual"):
        cf.pack_chunk(hdr, {"latents": b""})
    fill = cf.pack_chunk(ChunkHeader(**{**hdr.__dict__, "mode": 0}), {"fill_mask": b"x" * 9})
    assert fill[4] == 2
    bad = bytearray(fill)
    bad[4] = 1
    bad = bytearray(fix_crc(bad))
    with pytest.raises(CorruptChunkError, match="'fill_mask' needs format version 2"):
        cf.unpack_chunk(bytes(bad))


# ------------------------------------------------------------------ edge chunks
@pytest.mark.parametrize("bound", [None, 0.05])
@pytest.mark.parametrize(
    "make",
    [
        lambda: np.full((2, NLAT, NLON), 273.15, "f4"),  # constant
        lambda: np.full((2, NLAT, NLON), np.nan, "f4"),  # all NaN
        lambda: np.where(np.arange(NLAT * NLON).reshape(NLAT, NLON) % 2, np.nan, 280.0)[None].astype("f4"),
        lambda: np.concatenate([smooth_field(1), np.full((1, NLAT, NLON), np.inf)]).astype("f4"),  # inf
        lambda: np.zeros((0, NLAT, NLON), "f4"),  # empty
    ],
)
def test_edge_chunks_are_stored_raw_and_exact(tiny_model, bound, make):
    x = make()
    c = COINppCodec(tiny_model, residual_coder="none", assume_global_grid=True, inner_steps=2, max_abs_error=bound)
    chunk = c.encode(x)
    assert _mode(chunk) == MODE_RAW
    y = c.decode(chunk)
    np.testing.assert_array_equal(y, x)  # NaN == NaN, inf == inf here


@pytest.mark.parametrize("bound", [None, 0.05])
def test_values_far_outside_training_range_never_reach_the_network(tiny_model, bound):
    """Raw (lossless) without a bound; with one, the smaller of raw and the no-network residual
    within the bound (issue 32 case 9: SPERR alone is tried too with residual_coder="sperr")."""
    x = (smooth_field(2) * 400.0).astype("f4")  # "Pa" for a model trained on ~220..300 K
    c = COINppCodec(tiny_model, residual_coder="none", assume_global_grid=True, inner_steps=2, max_abs_error=bound)
    with pytest.warns(OutOfRangeWarning, match="training range"):
        chunk = c.encode(x)
    assert _mode(chunk) in ((MODE_RAW,) if bound is None else (MODE_RAW, MODE_PLAIN_RESIDUAL))
    _check_bound(x, c.decode(chunk), bound or 0.0)
    beside = (smooth_field(2) + 300.0).astype("f4")
    with pytest.warns(OutOfRangeWarning, match="do not come within"):  # beside the range (issue 13 #6)
        chunk = c.encode(beside)
    assert _mode(chunk) == (MODE_RAW if bound is None else MODE_PLAIN_RESIDUAL)
    _check_bound(beside, c.decode(chunk), bound or 0.0)
    with warnings.catch_warnings():  # inside the training range: no warning, neural path
        warnings.simplefilter("error")  # (partly outside it: stored raw, test_chunkcodec_reliability.py)
        near = (smooth_field(2) + 10.0).astype("f4")
        assert _mode(c.encode(near)) in (MODE_MODULATIONS, MODE_BOUNDED, MODE_PLAIN_RESIDUAL)


# ------------------------------------------------------------------ fill values
@pytest.mark.parametrize("bound", [None, 0.05])
def test_fill_value_masked_and_exact(tiny_model, bound):
    x = smooth_field(3).astype("f4")
    x[0, :3, :] = -9999.0
    x[1, 4, 5] = -9999.0
    x[2] = -9999.0  # an all-fill item
    x[1, 0, 0] = np.nan
    c = COINppCodec(tiny_model, residual_coder="none", assume_global_grid=True, inner_steps=2, max_abs_error=bound, fill_value=-9999.0)
    chunk = c.encode(x)
    hdr, sections = cf.unpack_chunk(chunk)
    assert "fill_mask" in sections and chunk[:2] in (V3_PREFIX, V4_PREFIX)
    y = c.decode(chunk)
    fill = x == -9999.0
    np.testing.assert_array_equal(y == -9999.0, fill)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(x))
    if bound is not None:
        _check_bound(np.where(fill, 0, x), np.where(fill, 0, y), bound)
    else:  # the fit ignored the fill: decoded valid values are temperatures, not dragged to -9999
        assert np.nanmin(y[~fill]) > 100.0


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_xarray_fill_value_through_cf_encoding(tmp_path, tiny_model, zarr_format):
    lat, lon = global_lat_lon()
    data = smooth_field(4).astype("f4")
    data[1, 2:4, 3:9] = np.nan
    ds = xr.Dataset({"t2m": (("time", "lat", "lon"), data)}, coords={"time": np.arange(4), "lat": lat, "lon": lon})
    bound = 0.05
    # xarray turns NaN into _FillValue before the codec sees the chunk: tell the codec the fill value
    enc = COINppCodec.for_dataarray(ds.t2m, model=tiny_model, inner_steps=2, zarr_format=zarr_format,
                                    chunks={"time": 2}, max_abs_error=bound, fill_value=-9999.0)
    store = tmp_path / "f.zarr"
    ds.to_zarr(store, encoding={"t2m": {**enc, "_FillValue": -9999.0}}, zarr_format=zarr_format,
               consolidated=False)
    back = xr.open_zarr(store, consolidated=False).t2m
    assert back.encoding["_FillValue"] == -9999.0
    _check_bound(data, back.values, bound)
    raw = xr.open_zarr(store, consolidated=False, mask_and_scale=False).t2m.values
    np.testing.assert_array_equal(raw == -9999.0, np.isnan(data))  # the fill came back exactly
    # without fill_value the -9999s look like data far outside the training range: warned, coded
    # without the network, the repeated -9999s kept exact (the mask survives), the rest within the bound
    enc2 = COINppCodec.for_dataarray(ds.t2m, model=tiny_model, inner_steps=2, zarr_format=zarr_format,
                                     chunks={"time": 2}, max_abs_error=bound)
    with pytest.warns(OutOfRangeWarning, match="kept exact"):
        ds.to_zarr(tmp_path / "g.zarr", encoding={"t2m": {**enc2, "_FillValue": -9999.0}},
                   zarr_format=zarr_format, consolidated=False)
    _check_bound(data, xr.open_zarr(tmp_path / "g.zarr", consolidated=False).t2m.values, bound)


def test_encoder_decode_check_falls_back_to_raw(tiny_model, monkeypatch):
    """The encoder decodes its own chunk bytes; a decoder that misses the bound -> raw + warning."""
    x = smooth_field(1).astype("f4")
    c = COINppCodec(tiny_model, residual_coder="none", assume_global_grid=True, inner_steps=2, max_abs_error=0.1)
    real = residual.decode_residual
    monkeypatch.setattr(residual, "decode_residual", lambda p, r, d: real(p, r, d) + np.float32(0.2))
    with pytest.warns(RuntimeWarning, match="decode check"):
        chunk = c.encode(x)
    assert _mode(chunk) == MODE_RAW
    np.testing.assert_array_equal(c.decode(chunk), x)


# ------------------------------------------------------------------ a bound with a target (issue 33)
def _errors(codec, x):
    y = codec.decode(codec.encode(x)).astype("f8")
    return float(np.sqrt(np.mean((y - x) ** 2))), float(np.abs(y - x).max())


def test_a_bound_with_an_rmse_target_meets_both(tiny_model):
    """``target_rmse`` with ``max_abs_error``: every value within the bound and the RMSE within the
    target, where the RMSE target alone breaks the bound and the bound alone misses the target."""
    from conftest import smooth_field

    x = smooth_field(4, seed=11).astype("f4")
    opts = dict(inner_steps=1, assume_global_grid=True)
    rmse_alone, worst_alone = _errors(COINppCodec(tiny_model, target_rmse=1.0, **opts), x)
    bound = 0.9 * worst_alone  # the RMSE target alone breaks it
    bound_rmse = _errors(COINppCodec(tiny_model, max_abs_error=bound, **opts), x)[0]
    target = min(1.0, 0.8 * bound_rmse)  # the bound alone misses it
    both = COINppCodec(tiny_model, target_rmse=target, max_abs_error=bound, **opts)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # met: nothing to warn about
        rmse, worst = _errors(both, x)
    assert worst <= bound and rmse <= target


def test_a_bound_with_an_rmse_target_also_tries_sperrs_pointwise_chunks(monkeypatch):
    """``target_rmse`` with ``max_abs_error``: SPERR alone in its point-wise mode, at the bound and
    tighter ones while the RMSE is missed, joins the tries, each within the bound; the chunk is the
    smallest try that meets both, never larger than without them, and where the bounded search has
    nothing smaller than the raw values, SPERR's point-wise chunk is the one kept."""
    from conftest import build_spherical_model
    from inrcodec.chunkcodec import encode

    lat, lon = global_lat_lon(32, 64)
    x = smooth_field(8, 32, 64, seed=4).astype("f4")
    # (without the corrected SPERR chunks, which win here: tests/chunkcodec/test_corrected.py)
    codec = COINppCodec(build_spherical_model(0), lat=lat, lon=lon, target_rmse=0.5, max_abs_error=2.0,
                        sperr_corrected=False)
    tries, pointwise = [], []
    real, real_pointwise = encode._within_and_at_target, encode._pointwise_alone

    def keeping(settings, chunk, candidates, bound):
        tries[:] = candidates
        return real(settings, chunk, candidates, bound)

    def recording(*args):
        pointwise[:] = real_pointwise(*args)
        return pointwise

    monkeypatch.setattr(encode, "_within_and_at_target", keeping)
    monkeypatch.setattr(encode, "_pointwise_alone", recording)
    chunk = codec.encode(x)
    y = codec.decode(chunk).astype("f8")
    assert np.abs(y - x).max() <= 2.0 and np.sqrt(np.mean((y - x) ** 2)) <= 0.5
    assert pointwise and all(_mode(c.data) == MODE_WAVELET and c.max_error <= 2.0 for c in pointwise)
    assert all(c in tries for c in pointwise)
    assert len(chunk) == min(len(c.data) for c in tries if c.max_error <= 2.0 and c.rmse <= 0.5)
    monkeypatch.setattr(encode, "_pointwise_alone", lambda *args: [])
    assert len(codec.encode(x)) >= len(chunk)
    monkeypatch.setattr(encode, "_pointwise_alone", recording)
    monkeypatch.setattr(encode, "_bounded", lambda settings, model, fitted, aim, writer, *args: writer.raw())
    chunk = codec.encode(x)
    assert chunk in [c.data for c in pointwise] and len(chunk) < x.nbytes
    y = codec.decode(chunk).astype("f8")
    assert np.abs(y - x).max() <= 2.0 and np.sqrt(np.mean((y - x) ** 2)) <= 0.5


def test_a_bound_with_a_ratio_target_keeps_the_bound(tiny_model):
    """``target_ratio`` with ``max_abs_error``: the ratio within the bound where it can be had, else
    the bound kept and a ``TargetNotMetWarning`` saying what was reached."""
    from conftest import smooth_field
    from inrcodec.errors import TargetNotMetWarning

    x = smooth_field(4, seed=12).astype("f4")
    opts = dict(inner_steps=1, assume_global_grid=True, max_abs_error=2.0)
    bounded = COINppCodec(tiny_model, **opts).encode(x)
    reachable = 0.9 * x.nbytes / len(bounded)
    codec = COINppCodec(tiny_model, target_ratio=reachable, **opts)
    chunk = codec.encode(x)
    assert x.nbytes / len(chunk) >= reachable and np.abs(codec.decode(chunk).astype("f8") - x).max() <= 2.0
    far = COINppCodec(tiny_model, target_ratio=50 * reachable, **opts)
    with pytest.warns(TargetNotMetWarning, match="within the error bound 2"):
        chunk = far.encode(x)
    assert np.abs(far.decode(chunk).astype("f8") - x).max() <= 2.0


def test_a_residual_stream_with_words_past_its_last_value_is_refused():
    """The residual's range-coded stream follows the latent decoders' rule: words the last value
    did not need are corruption (issue 34), and a stream for no values must be empty."""
    from inrcodec.chunkcodec import residual

    probs = np.array([0.5, 0.3, 0.2])
    idx = np.tile([0, 1, 2, 0, 0, 1], 50)
    stream = residual._range_encode(idx, probs)
    np.testing.assert_array_equal(residual._range_decode(stream, probs, idx.size), idx)
    for extra in (2, 3):
        with pytest.raises(residual.ResidualError, match="data left after the last symbol"):
            residual._range_decode(stream + b"\x01\x00\x00\x00" * extra, probs, idx.size)
    with pytest.raises(residual.ResidualError, match="for no symbols"):
        residual._range_decode(stream, probs, 0)


@pytest.mark.parametrize("network", [True, False])
def test_a_bound_with_an_rmse_target_keeps_nan_and_fill_and_meets_both(network):
    """A bound with ``target_rmse``, with and without the network, on a chunk with NaNs and a fill
    value: NaN and fill come back exactly, and every valid value is within the bound with the RMSE
    within the target (tighter bounds are tried where the bound alone misses it)."""
    from conftest import build_spherical_model, global_lat_lon, smooth_field

    lat, lon = global_lat_lon(32, 64)
    x = smooth_field(4, 32, 64, seed=2).astype("f4")
    x[0, 3, 5], x[1, 0, 0] = np.nan, -999.0
    x[2, 10:12, 20:30] = np.nan
    codec = COINppCodec(build_spherical_model(0), lat=lat, lon=lon, fill_value=-999.0, network=network,
                        target_rmse=1.0, max_abs_error=3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = codec.decode(codec.encode(x))
    ok = ~np.isnan(x) & (x != -999.0)
    assert np.array_equal(np.isnan(y), np.isnan(x)) and y[1, 0, 0] == -999.0
    err = y[ok].astype("f8") - x[ok]
    assert np.abs(err).max() <= 3.0 and np.sqrt(np.mean(err * err)) <= 1.0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=st.lists(st.integers(1, 19), min_size=2, max_size=4), seed=st.integers(0, 2**16),
       bound=st.sampled_from([1e-3, 0.05, 0.5, 4.0]))
def test_the_decoder_rebuilds_the_closed_loop_interpolation_bit_for_bit(shape, seed, bound):
    """Predictors 2 and 3 (closed-loop interpolation, issue 33 item 1): the decoder predicts from the
    same reconstructed residuals as the encoder did, so it rebuilds them bit for bit, and every value
    the encoder kept is within the bound, whatever the shape (1-point axes, odd sizes)."""
    rng = np.random.default_rng(seed)
    r = np.cumsum(rng.normal(0.0, 1.0, size=tuple(shape)), axis=-1)
    step = residual.effective_step(bound)
    for predictor in residual.INTERPOLATED:
        d, rhat = residual.interpolate_closed(r, step, predictor, lambda idx, values: np.ones(np.shape(values), bool))
        np.testing.assert_array_equal(residual.uninterpolate_closed(d, step, predictor), rhat)
        assert np.abs(rhat - r).max() <= step / 2 * (1 + 1e-9)


def test_interpolated_residuals_are_smaller_on_smooth_fields_and_keep_the_bound():
    """Smooth fields correlated along items (hourly weather): the interpolation predictors code the
    residual in fewer bytes than the Lorenzo difference, within the bound; off (the legacy value of
    ``residual_interpolation``), the section is what earlier builds wrote."""
    base, drift = smooth_field(1, 32, 64, seed=11)[0], smooth_field(1, 32, 64, seed=12)[0]
    x = np.stack([base + 0.1 * t * (drift - drift.mean()) for t in range(8)]).astype("f4")  # items drift slowly
    valid = np.ones(x.shape, bool)
    recon = np.full(x.shape, float(x.mean()))
    plain = residual.encode_residual(x, recon, valid, 0.5, x.dtype, exact_recon=True)
    interp = residual.encode_residual(x, recon, valid, 0.5, x.dtype, exact_recon=True, interpolation=True)
    assert plain.predictor in (residual.PREDICTOR_NONE, residual.PREDICTOR_LORENZO)
    assert interp.predictor in (residual.PREDICTOR_INTERP_SPACE, residual.PREDICTOR_INTERP_ALL)
    assert len(interp.payload) < len(plain.payload)
    y = residual.decode_residual(interp.payload, recon, x.dtype)
    assert np.abs(y.astype("f8") - x).max() <= 0.5
    legacy_of(COINppCodec("t2m-global-2", assume_global_grid=True, max_abs_error=0.5, network=False),
              "residual_interpolation")  # new configurations say so; one written before it keeps its coding


def test_residual_codes_beyond_what_a_section_holds_are_refused():
    """A forged residual whose restored codes exceed ``MAX_CODE`` (the encoder stores those values as
    exceptions) is refused instead of decoding to values beyond the data's range."""
    x = smooth_field(2, seed=1).astype("f4")
    recon = np.full(x.shape, 280.0)
    enc = residual.encode_residual(x, recon, np.ones(x.shape, bool), 0.5, x.dtype, exact_recon=True)
    sec = residual.read_section(enc.payload, x.size, x.dtype)
    huge = np.zeros(x.size, np.int64)
    huge[3] = 2**55
    params, stream, escapes = residual.encode_codes(huge, residual.CODER_GEOMETRIC)
    forged = residual.ResidualSection(residual.PREDICTOR_NONE, sec.step, sec.count, 0,
                                      residual._code_model(residual.CODER_GEOMETRIC, params), stream, escapes, b"")
    with pytest.raises(residual.ResidualError, match="beyond"):
        residual.decode_residual(forged, recon, x.dtype)


def _persistent_items(n: int = 6, seed: int = 21) -> np.ndarray:
    """Items that share their small scales (a fixed detail field, like coasts and mountains) and
    whose large scales drift: what an hourly chunk looks like to the residual coder."""
    rng = np.random.default_rng(seed)
    detail = rng.normal(0.0, 1.5, size=(32, 64))
    lat, lon = np.meshgrid(np.linspace(-1.5, 1.5, 32), np.linspace(0.0, 2 * np.pi, 64, endpoint=False), indexing="ij")
    big = [280.0 + 20.0 * np.cos(lat) + 3.0 * np.sin(lon + 0.2 * t) for t in range(n)]
    return (np.stack(big) + detail).astype("f4")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=st.lists(st.integers(1, 13), min_size=2, max_size=4), seed=st.integers(0, 2**16),
       bound=st.sampled_from([1e-3, 0.05, 0.5, 4.0]))
def test_the_decoder_rebuilds_the_previous_items_detail_bit_for_bit(shape, seed, bound):
    """Predictor 4 (the previous item's detail, issue 33 item 1): the decoder rebuilds the encoder's
    reconstruction bit for bit from the codes and the stored weights, whatever the shape (one item,
    1-point axes, odd sizes), and every value is within half a step of its residual."""
    rng = np.random.default_rng(seed)
    r = np.cumsum(rng.normal(0.0, 1.0, size=tuple(shape)), axis=-1) + rng.normal(0.0, 1.0, size=tuple(shape[1:]))
    step = residual.effective_step(bound)
    known = rng.random(r.shape) > 0.1  # the weights are fitted on these alone
    d, rhat, weights = residual.interpolate_detail_closed(
        r, step, lambda t: lambda idx, values: np.ones(np.shape(values), bool), known)
    assert weights.shape == (residual.detail_weight_count(r.shape),)
    np.testing.assert_array_equal(residual.uninterpolate_detail_closed(d, step, weights), rhat)
    assert np.abs(rhat - r).max() <= step / 2 * (1 + 1e-9)


@pytest.mark.parametrize("with_nan", [False, True])
def test_the_previous_items_detail_codes_persistent_small_scales_in_fewer_bytes(with_nan):
    """Items sharing their small scales: predictor 4 is kept, in fewer bytes than the interpolation
    predictors alone (``item_detail`` off: what a configuration without ``residual_item_detail``
    writes, the legacy value), and decodes within the bound; masked values take no part."""
    x = _persistent_items()
    valid = np.ones(x.shape, bool)
    if with_nan:
        valid[:, 3:9, 10:30] = False  # land in a sea-surface field: any values there
        x[~valid] = 1e6
    recon = np.full(x.shape, float(x[valid].mean()))
    kw = dict(exact_recon=True, interpolation=True)
    before = residual.encode_residual(x, recon, valid, 0.5, x.dtype, **kw)
    after = residual.encode_residual(x, recon, valid, 0.5, x.dtype, item_detail=True, **kw)
    assert before.predictor in residual.INTERPOLATED and residual.PREDICTOR_INTERP_DETAIL not in {
        p for p, _ in before.sizes}
    assert after.predictor == residual.PREDICTOR_INTERP_DETAIL
    assert len(after.payload) < 0.9 * len(before.payload)
    y = residual.decode_residual(after.payload, recon, x.dtype)
    assert np.abs(y.astype("f8") - x)[valid].max() <= 0.5
    one = residual.encode_residual(x[:1], recon[:1], valid[:1], 0.5, x.dtype, item_detail=True, **kw)
    assert residual.PREDICTOR_INTERP_DETAIL not in {p for p, _ in one.sizes}  # one item: nothing before it


def test_a_new_codec_tries_the_previous_items_detail_and_a_stored_configuration_keeps_its_coding():
    """Through the codec (mode 3, no network): new configurations say ``residual_item_detail`` and
    write predictor 4 where it is smallest; a configuration written before the option keeps writing
    the bytes it wrote."""
    x = _persistent_items()
    codec = COINppCodec("t2m-global-2", assume_global_grid=True, max_abs_error=0.5, network=False)
    legacy = legacy_of(codec, "residual_item_detail")
    new, old = codec.encode(x), legacy.encode(x)
    assert residual.residual_info(cf.unpack_chunk(new)[1]["residual"])["predictor"] == residual.PREDICTOR_INTERP_DETAIL
    assert residual.residual_info(cf.unpack_chunk(old)[1]["residual"])["predictor"] in residual.INTERPOLATED
    assert len(new) < len(old)
    _check_bound(x, codec.decode(new), 0.5)
    _check_bound(x, legacy.decode(old), 0.5)


def test_a_previous_items_detail_section_with_the_wrong_weights_is_refused():
    """Predictor 4's weights blob: missing, or not the chunk's shape's count, is a clear error before
    anything is decoded."""
    x = _persistent_items(4)
    valid = np.ones(x.shape, bool)
    recon = np.full(x.shape, float(x.mean()))
    enc = residual.encode_residual(x, recon, valid, 0.5, x.dtype, exact_recon=True, interpolation=True,
                                   item_detail=True)
    assert enc.predictor == residual.PREDICTOR_INTERP_DETAIL
    n_weights = residual.detail_weight_count(x.shape)
    assert n_weights == 5 * len(residual.detail_groups(x.shape))  # item 1 one a group, items 2 and 3 two
    with pytest.raises(residual.ResidualError, match="truncated before its weights blob"):
        residual.read_section(enc.payload[:-(8 + n_weights)], x.size, x.dtype)
    for cut in (1, n_weights):  # one weight short, none at all: the blob's length says so
        short = enc.payload[:-(8 + n_weights)] + np.uint64(n_weights - cut).tobytes() + enc.payload[-n_weights:][cut:]
        with pytest.raises(residual.ResidualError, match="weights, the chunk's shape needs"):
            residual.decode_residual(short, recon, x.dtype)
    with pytest.raises(residual.ResidualError, match="weights, the chunk's shape needs"):  # another chunk shape
        residual.decode_residual(enc.payload, recon.reshape(2, 2, 32, 64).transpose(1, 0, 2, 3).reshape(2, 64, 64),
                                 x.dtype)


def test_the_previous_items_detail_weights_are_the_least_squares_ones():
    """Two references (the item before, the mean of those before it): the weights solve the least
    squares in 1/64 units; nearly the same references fall back to the first alone; one reference
    has one weight."""
    rng = np.random.default_rng(3)
    d1, d2 = rng.normal(size=500), rng.normal(size=500)
    assert residual._detail_weights([d1, d2], 0.5 * d1 + 0.25 * d2) == [32, 16]
    assert residual._detail_weights([d1, d1], 0.75 * d1) == [48, 0]
    assert residual._detail_weights([d1], -0.5 * d1) == [-32]
    assert residual._detail_weights([d1], 5.0 * d1) == [127]  # int8: clipped
    assert residual._detail_weights([np.zeros(4)], np.ones(4)) == [0]


def test_the_previous_items_detail_is_not_tried_on_small_items():
    """Predictor 4 runs item by item: on items of fewer than ``DETAIL_MIN_ITEM_VALUES`` values (a chunk
    of many small items) it is not tried, and the section is what the other predictors write."""
    x = _persistent_items()[:, :16, :32]
    assert x[0].size < residual.DETAIL_MIN_ITEM_VALUES
    valid = np.ones(x.shape, bool)
    recon = np.full(x.shape, float(x.mean()))
    kw = dict(exact_recon=True, interpolation=True)
    small = residual.encode_residual(x, recon, valid, 0.5, x.dtype, item_detail=True, **kw)
    assert residual.PREDICTOR_INTERP_DETAIL not in {p for p, _ in small.sizes}
    assert small.payload == residual.encode_residual(x, recon, valid, 0.5, x.dtype, **kw).payload
