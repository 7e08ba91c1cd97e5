"""COINppCodec as a numcodecs codec: config, pinning, dtypes, order, NaN, raw fallback."""

from __future__ import annotations

import base64
import concurrent.futures
import zlib

import numcodecs
import numpy as np
import pytest

from inrcodec.chunkcodec.latents import LatentCoder
from numcodecs.tests.common import check_config, check_err_encode_object_buffer

from conftest import NLAT, NLON, global_lat_lon, smooth_field
from helpers import config_round_trip
from inrcodec.models import modelstore
from inrcodec.chunkformat import unpack_chunk
from inrcodec.chunkformat.header import MODE_MODULATIONS, MODE_RAW
from inrcodec.codec import COINppCodec
from inrcodec.errors import CorruptChunkError, PinnedModelError


@pytest.fixture(scope="module")
def codec(tiny_model):
    # network chunks (mode 1), the model's own path: with SPERR on, the untrained model's fit moved
    # to its level makes SPERR chunks of these fields (encode.LEVEL_SHIFT)
    return COINppCodec(tiny_model, assume_global_grid=True, bits=6, inner_steps=3, residual_coder="none")


@pytest.fixture(scope="module")
def field():
    return smooth_field(4).astype("f4")


# ------------------------------------------------------------------ config / repr / registry
def test_numcodecs_check_config(codec):
    check_config(codec)


def test_get_codec_round_trip_and_equality(codec, tiny_model):
    cfg = codec.get_config()
    assert cfg["id"] == "inrcodec.coinpp"
    assert cfg["model_sha256"] == tiny_model.sha256
    assert isinstance(config_round_trip(codec), COINppCodec)
    assert COINppCodec(tiny_model, assume_global_grid=True, bits=5, inner_steps=3) != codec


def test_repr(codec, tiny_model):
    r = repr(codec)
    assert tiny_model.sha256[:12] in r and "bits=6" in r and "inner_steps=3" in r


def test_model_from_path_and_directory(tiny_model, tiny_model_dir):
    by_dir = COINppCodec(tiny_model_dir, inner_steps=3)
    by_file = COINppCodec(f"{tiny_model_dir}/model.safetensors", inner_steps=3)
    assert by_dir.model_sha256 == by_file.model_sha256 == tiny_model.sha256
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        COINppCodec(tiny_model_dir + "/nope")


def test_model_cache_shares_one_model(codec):
    again = COINppCodec.from_config(codec.get_config())
    assert again.model is codec.model


# ------------------------------------------------------------------ pinning
def _tamper_weights(cfg):
    data = bytearray(zlib.decompress(base64.b64decode(cfg["model"])))
    data[-1] ^= 0x01  # flip one bit of the last weight
    cfg = dict(cfg)
    cfg["model"] = base64.b64encode(zlib.compress(bytes(data))).decode()
    return cfg


def test_tampered_weights_are_refused(codec, tiny_model):
    cfg = _tamper_weights(codec.get_config())
    with pytest.raises(PinnedModelError) as exc:
        numcodecs.get_codec(cfg)
    assert tiny_model.sha256 in str(exc.value)  # names the pinned hash ...
    assert "hash to" in str(exc.value)  # ... and the actual one


def test_tampered_hash_is_refused(codec, tiny_model):
    cfg = codec.get_config()
    cfg["model_sha256"] = "0" * 64
    with pytest.raises(PinnedModelError) as exc:
        numcodecs.get_codec(cfg)
    assert "0" * 64 in str(exc.value) and tiny_model.sha256 in str(exc.value)


def test_garbled_inline_model_is_refused(codec):
    cfg = codec.get_config()
    cfg["model"] = "not base64!"
    with pytest.raises(PinnedModelError, match="modified or corrupted"):
        numcodecs.get_codec(cfg)


def test_chunk_from_other_model_is_refused(codec, other_model, field, tiny_model):
    chunk = COINppCodec(other_model, assume_global_grid=True, inner_steps=3).encode(field)
    with pytest.raises(CorruptChunkError) as exc:
        codec.decode(chunk)
    assert tiny_model.sha256 in str(exc.value) and "pin" in str(exc.value)


def test_every_chunk_header_carries_the_pin(codec, field, other_model):
    other = COINppCodec(other_model, inner_steps=3)
    assert other.pin != codec.pin
    for x in (field, np.full_like(field, np.nan)):
        hdr, _ = unpack_chunk(codec.encode(x))
        assert hdr.pin == codec.pin and hdr.model_sha256 is None


# ------------------------------------------------------------------ encode / decode
@pytest.mark.parametrize("dtype", ["f4", "f8", ">f4"])
def test_dtype_shape_preserved(codec, field, dtype):
    x = field.astype(dtype)
    y = codec.decode(codec.encode(x))
    assert y.dtype == x.dtype and y.shape == x.shape
    assert np.isfinite(y).all()
    # the untrained tiny model reconstructs roughly; check the codec is exactly the model's
    # encode -> quantize -> dequantize -> decode path on the same grid
    m, grid = codec.model, codec.model.make_grid(x.shape[1:])
    s = codec.settings
    coder = LatentCoder(m, s.entropy_coding, s.quantizer, s.time_coding)
    lat = m.encode(x.astype("=" + x.dtype.str[1:]), grid, steps=s.inner_steps, fit=s.effort)
    ref = m.decode(coder.dequantize(coder.compress(lat, s.bits), s.bits).reshape(lat.shape), grid).astype(x.dtype)
    np.testing.assert_array_equal(y, ref)


def test_leading_dims_are_items(codec):
    x = smooth_field(6).astype("f4").reshape(2, 3, NLAT, NLON)
    hdr, _ = unpack_chunk(codec.encode(x))
    assert hdr.mode == MODE_MODULATIONS and hdr.shape == x.shape
    assert codec.decode(codec.encode(x)).shape == x.shape
    y2d = codec.decode(codec.encode(x[0, 0]))  # a single 2-D field is one item
    assert y2d.shape == (NLAT, NLON)


def test_fortran_order_round_trip(codec, field):
    x = np.asfortranarray(field.astype("f8"))
    y = codec.decode(codec.encode(x))
    assert y.flags.f_contiguous and not y.flags.c_contiguous
    np.testing.assert_array_equal(y, codec.decode(codec.encode(np.ascontiguousarray(x))))
    assert unpack_chunk(codec.encode(x))[0].order == "F"


def test_deterministic_bytes(codec, field):
    assert codec.encode(field) == codec.encode(field.copy())


def test_nan_positions_preserved(codec, field):
    x = field.copy()
    x[0, 2, 3] = np.nan
    x[1, :, :4] = np.nan
    x[2] = np.nan  # a whole item: skipped by the fit
    enc = codec.encode(x)
    hdr, sections = unpack_chunk(enc)
    assert hdr.has_nan_mask and "nan_mask" in sections
    y = codec.decode(enc)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(x))


@pytest.mark.parametrize(
    "make",
    [
        lambda f: np.full_like(f, np.nan),
        lambda f: np.full_like(f, 273.15),
        lambda f: np.where(np.arange(f.size).reshape(f.shape) % 7 == 0, np.nan, 1.5).astype(f.dtype),
        lambda f: np.where(np.arange(f.size).reshape(f.shape) == 5, np.inf, f).astype(f.dtype),
        lambda f: np.where(np.arange(f.size).reshape(f.shape) == 5, -np.inf, f).astype(f.dtype),
    ],
    ids=["all-nan", "constant", "constant-with-nan", "inf", "-inf"],
)
def test_degenerate_chunks_stored_raw_lossless(codec, field, make):
    x = make(field)
    enc = codec.encode(x)
    assert unpack_chunk(enc)[0].mode == MODE_RAW
    y = codec.decode(enc)
    np.testing.assert_array_equal(y, x)
    assert y.dtype == x.dtype


def test_decode_into_out(codec, field):
    enc = codec.encode(field)
    out = np.empty_like(field)
    assert codec.decode(enc, out=out) is out
    np.testing.assert_array_equal(out, codec.decode(enc))


def test_entropy_coding_off(tiny_model, field):
    net = dict(assume_global_grid=True, inner_steps=3, residual_coder="none")  # network chunks
    plain = COINppCodec(tiny_model, entropy_coding=False, **net)
    enc = plain.encode(field)
    assert unpack_chunk(enc)[0].entropy_id == 0
    assert plain.settings.quantizer == "uniform"  # bit-packed symbols need the uniform quantizer
    uniform = COINppCodec(tiny_model, quantizer="uniform", **net)
    coded = uniform.encode(field)
    np.testing.assert_array_equal(plain.decode(enc), uniform.decode(coded))


def test_explicit_lat_lon(tiny_model, field):
    lat, lon = global_lat_lon()
    explicit = COINppCodec(tiny_model, assume_global_grid=True, inner_steps=3, lat=lat, lon=lon)
    default = COINppCodec(tiny_model, assume_global_grid=True, inner_steps=3)
    assert explicit.encode(field) == default.encode(field)  # the default is that same global grid
    with pytest.raises(ValueError, match="chunk only along the leading"):
        explicit.encode(field[:, :4])


# ------------------------------------------------------------------ rejected inputs
def test_object_buffers_rejected(codec):
    check_err_encode_object_buffer(codec)
    enc = codec.encode(smooth_field(1).astype("f4"))
    with pytest.raises(TypeError):
        codec.decode(enc, out=np.empty((1, NLAT, NLON), dtype=object))


@pytest.mark.parametrize("x", [np.arange(NLAT * NLON, dtype="i4").reshape(NLAT, NLON), b"\x00" * 64,
                               np.zeros((NLAT, NLON), "f2")])
def test_other_dtypes_rejected(codec, x):
    with pytest.raises(TypeError, match="float32 or float64"):
        codec.encode(x)


def test_too_few_dims_rejected(codec):
    with pytest.raises(ValueError, match="at least 2"):
        codec.encode(np.zeros(10, "f4"))


def test_corrupt_chunk(codec, field):
    enc = bytearray(codec.encode(field))
    for pos in range(len(enc)):  # every byte: a flipped byte is always caught
        bad = enc.copy()
        bad[pos] ^= 0xFF
        with pytest.raises(CorruptChunkError):
            codec.decode(bytes(bad))


# ------------------------------------------------------------------ threads, cartesian
def test_concurrent_calls_match_serial(codec):
    xs = [smooth_field(2, seed=s).astype("f4") for s in range(6)]
    serial = [codec.encode(x) for x in xs]
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        parallel = list(pool.map(codec.encode, xs))
        decoded = list(pool.map(codec.decode, parallel))
    assert parallel == serial
    for d, s in zip(decoded, serial):
        np.testing.assert_array_equal(d, codec.decode(s))


def test_cartesian_model_any_chunk_shape(cartesian_model):
    c = COINppCodec(cartesian_model, inner_steps=3)
    assert "grid=" not in repr(c)
    x = np.random.default_rng(0).random((2, 10, 7)).astype("f4")  # 10x7 is not a multiple of 4x4
    y = c.decode(c.encode(x))
    assert y.shape == x.shape and np.isfinite(y).all()
    with pytest.raises(ValueError, match="spherical"):
        COINppCodec(cartesian_model, lat=[0.0], lon=[0.0])


def test_cache_clear_then_from_config(codec, field):
    enc = codec.encode(field)
    cfg = codec.get_config()
    modelstore.clear()  # as in a fresh process
    again = COINppCodec.from_config(cfg)
    np.testing.assert_array_equal(again.decode(enc), codec.decode(enc))


def test_codec_pickles_with_all_settings_and_decodes_the_same(tiny_model):
    import pickle

    from inrcodec.codec import COINppCodec as Codec

    codec = Codec(tiny_model, bits=5, inner_steps=2, max_abs_error=0.5, fill_value=-9999.0, assume_global_grid=True)
    clone = pickle.loads(pickle.dumps(codec))
    assert clone == codec and clone.get_config() == codec.get_config()
    data = smooth_field(2).astype("float32")
    enc = codec.encode(data)
    assert clone.encode(data) == enc
    np.testing.assert_array_equal(clone.decode(enc), codec.decode(enc))


def test_pin_names_the_grid(tiny_model, field):
    lat, lon = global_lat_lon()
    shifted = COINppCodec(tiny_model, inner_steps=3, lat=lat, lon=lon + 1.0)
    default = COINppCodec(tiny_model, inner_steps=3)
    assert COINppCodec(tiny_model, inner_steps=3, lat=lat, lon=lon).pin == default.pin
    assert shifted.pin != default.pin
    with pytest.raises(CorruptChunkError, match="pin"):
        default.decode(shifted.encode(field))  # same model, other grid: refused
