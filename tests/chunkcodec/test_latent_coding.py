"""Issue #19: latents coded across the leading (time) axis, the patch size as a rate knob, the
mid-tread quantizer with parametric entropy coding (format version 4), and the legacy coding
that stored configurations keep."""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
import pytest
from conftest import NLAT, NLON, global_lat_lon, smooth_field

from inrcodec import COINppCodec, CodecSettings
from inrcodec import chunkformat as cf
from inrcodec.chunkformat.header import ChunkHeader, PREDICT_PREVIOUS, V3_PREFIX, V4_PREFIX
from inrcodec.coding import entropy
from inrcodec.chunkcodec import decode_chunk, patching
from inrcodec.chunkcodec.latents import LatentCoder
from inrcodec.chunkcodec.residual import cross_machine_tolerance
from inrcodec.errors import CorruptChunkError, TargetNotMetWarning
from inrcodec.coding.quantize import MidTreadQuantizer, UniformQuantizer
from helpers import with_crc

LAT, LON = global_lat_lon()


def _codec(model, **opts):
    # the network's latent coding alone (no SPERR candidates: tests/chunkcodec/test_hybrid.py)
    return COINppCodec(model, lat=LAT, lon=LON, inner_steps=2, **{"residual_coder": "none", **opts})


# ------------------------------------------------------------------ the quantizer
def test_midtread_has_a_zero_level_and_codes_far_latents():
    q = MidTreadQuantizer(mean=0.5, std=2.0, bits=3, num_std=3.0)
    assert q.step == 2 * 3.0 * 2.0 / 8 and q.quantizer_id == 2 and q.limit == 16
    s, deq = q.quantize(np.array([[0.5, 0.5 + 0.4 * q.step, 0.5 + 0.6 * q.step, -20.0]]))
    assert s.tolist() == [[0, 0, 1, -14]] and deq[0, 0] == 0.5 and deq[0, 1] == 0.5
    # 10.25 std from the mean: the uniform quantizer clips it at 3 std, the mid-tread one codes it
    far = np.array([[0.5 + 20.5]])
    assert abs(q.quantize(far)[1][0, 0] - far[0, 0]) <= q.step / 2
    u = UniformQuantizer(0.5, 2.0, 3, 3.0)
    assert abs(float(u.dequantize(u.quantize(far))[0, 0]) - far[0, 0]) > 10
    with pytest.raises(ValueError):
        MidTreadQuantizer(0.0, 1.0, 13)


def test_closed_loop_prediction_does_not_accumulate_error():
    q = MidTreadQuantizer(mean=0.0, std=1.0, bits=4, num_std=3.0)
    rng = np.random.default_rng(0)
    x = np.cumsum(rng.normal(0, 0.3, (50, 20)), axis=0)
    s, deq = q.quantize(x, predict=True)
    assert np.abs(deq - x).max() <= q.step / 2 + 1e-12  # every step, not growing with t
    assert np.array_equal(q.dequantize(s, predict=True), deq)
    s0, _ = q.quantize(x)
    assert np.abs(s[1:]).mean() < np.abs(s0[1:]).mean() / 2  # differences are small symbols


def test_parametric_coder_round_trips_and_its_tables_are_fixed():
    rng = np.random.default_rng(1)
    a, b = rng.laplace(0, 3, 500).round().astype(np.int64), rng.normal(0, 1, 300).round().astype(np.int64)
    data = entropy.encode_parametric([(a, 64), (b, 128)], 5.0)
    got = entropy.decode_parametric(data, [(500, 64), (300, 128)], 5.0)
    assert np.array_equal(got[0], a) and np.array_equal(got[1], b)
    # the probabilities are part of the bitstream: pinned here (decimal + float64 products + fsum)
    digest = hashlib.sha256(b"".join(entropy.parametric_probabilities(p, 16, 5.0).tobytes()
                                     for p in (0, 40, 64, 127, 128, 200, 255))).hexdigest()
    assert digest == PROBABILITIES_SHA256
    with pytest.raises(ValueError):
        entropy.decode_parametric(data[:1], [(500, 64), (300, 128)], 5.0)
    with pytest.raises(ValueError):  # far too short for 10**6 symbols: refused before decoding
        entropy.decode_parametric(data[:2] + b"\0" * 4, [(10**6, 64), (300, 128)], 5.0)


PROBABILITIES_SHA256 = "43cb9b0f7dff489f64c6e6c8a17a630619d66863d69fe09829ce45df3e2624dd"


# ------------------------------------------------------------------ time coding
def test_time_coded_chunks_round_trip_bit_exactly(tiny_model):
    codec = _codec(tiny_model, bits=4)
    assert codec.settings.quantizer == "midtread" and codec.settings.time_coding
    x = smooth_field(5).astype("f4")
    chunk = codec.encode(x)
    hdr, sections = cf.unpack_chunk(chunk)
    assert chunk[:2] == V4_PREFIX and hdr.predict == PREDICT_PREVIOUS
    assert (hdr.quantizer_id, hdr.entropy_id) == (2, 3)
    # the decoder's latents are exactly the encoder's dequantised latents
    m, grid = tiny_model, tiny_model.make_grid((NLAT, NLON), lat=LAT, lon=LON)
    lat = m.encode(x, grid, steps=2, fit=codec.settings.effort)
    coder = LatentCoder(m, True, "midtread", True)
    coded = coder.compress(lat, 4)
    decoded = LatentCoder(m).decompress(sections["latents"], bits=4, quantizer_id=2, entropy_id=3,
                                        count=5, items=5, predict=1)
    assert coded.payload == sections["latents"] and np.array_equal(decoded, coded.dequantized)
    y = codec.decode(chunk)
    np.testing.assert_array_equal(y, m.decode(decoded.reshape(lat.shape), grid).astype("f4"))
    np.testing.assert_array_equal(codec.decode(chunk), y)
    assert codec.encode(x) == chunk  # deterministic


def test_one_step_and_missing_items(tiny_model):
    codec = _codec(tiny_model, bits=4)
    one = cf.unpack_chunk(codec.encode(smooth_field(1).astype("f4")))[0]
    assert one.predict == 0 and one.quantizer_id == 2
    x = smooth_field(4).astype("f4")
    x[1] = np.nan  # an all-missing item: the next fitted item is predicted from item 0
    x[2, 3, 4] = np.nan
    chunk = codec.encode(x)
    assert cf.unpack_chunk(chunk)[0].predict == 1
    y = codec.decode(chunk)
    assert np.isnan(y[1]).all() and np.isnan(y[2, 3, 4]) and np.isfinite(y[0]).all()


def test_refined_latents_stay_codable(tiny_model):
    codec = _codec(tiny_model, bits=6, refine_steps=3)
    x = smooth_field(3).astype("f4")
    y = codec.decode(codec.encode(x))
    assert np.isfinite(y).all() and y.shape == x.shape


# ------------------------------------------------------------------ the patch size
def test_patch_aim_is_read_from_the_chunk(patched_model):
    x = smooth_field(2).astype("f4")
    small = _codec(patched_model, bits=5, patch_points=2)
    chunk = small.encode(x)
    hdr = cf.unpack_chunk(chunk)[0]
    assert hdr.patch_aim == 2
    own = _codec(patched_model, bits=5, patch_points=None)  # another default: the model's patches
    np.testing.assert_array_equal(own.decode(chunk), small.decode(chunk))
    own_chunk = own.encode(x)
    assert cf.unpack_chunk(own_chunk)[0].patch_aim == 0 and len(own_chunk) < len(chunk)
    # an aim that gives the model's own partition is stored as 0
    assert cf.unpack_chunk(_codec(patched_model, bits=5, patch_points=4).encode(x))[0].patch_aim == 0
    grid = patched_model.make_grid((NLAT, NLON), lat=LAT, lon=LON)
    assert patched_model.patch_points(grid, 2) == (2, 2) and patched_model.patch_points(grid) == (4, 4)


def test_rate_control_searches_patch_sizes(patched_model):
    grid = patched_model.make_grid((NLAT, NLON), lat=LAT, lon=LON)
    aims = patching.candidate_aims(patched_model, grid, CodecSettings(target_ratio=20.0))
    assert len(aims) >= 1 and aims[0] == 0
    x = smooth_field(2).astype("f4")
    for target in (dict(target_ratio=30.0), dict(target_rmse=0.01)):
        codec = _codec(patched_model, patch_points=0, **target)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            y = codec.decode(codec.encode(x))
        missed = [w for w in seen if issubclass(w.category, TargetNotMetWarning)]
        assert len(missed) == ("target_rmse" in target)  # one warning per chunk, not per patch size
        assert y.shape == x.shape and np.isfinite(y).all()




# ------------------------------------------------------------------ settings and old configurations
def test_old_configurations_keep_the_legacy_coding(tiny_model):
    old = {"bits": 5, "inner_steps": 2, "lat": list(LAT), "lon": list(LON), "entropy_coding": True}
    settings = CodecSettings.from_dict(old)
    assert (settings.quantizer, settings.time_coding, settings.patch_points) == ("uniform", False, None)
    assert settings.to_dict() == old
    codec = COINppCodec(tiny_model, settings)
    chunk = codec.encode(smooth_field(3).astype("f4"))
    assert chunk[:2] == V3_PREFIX
    back = COINppCodec.from_config(codec.get_config())
    assert back.settings == settings and back.encode(smooth_field(3).astype("f4")) == chunk
    new = COINppCodec(tiny_model, lat=LAT, lon=LON)
    assert {"quantizer": "midtread", "time_coding": True, "patch_points": 0}.items() <= new.get_config().items()


# ------------------------------------------------------------------ corrupt version-4 chunks
def test_corrupt_version4_chunks_are_refused(tiny_model, patched_model):
    codec = _codec(tiny_model, bits=4)
    x = smooth_field(3).astype("f4")
    chunk = codec.encode(x)
    for cut in range(1, len(chunk)):
        with pytest.raises(CorruptChunkError):
            decode_chunk(chunk[:cut], tiny_model, codec.settings, shape=x.shape)
    body = bytearray(chunk[:-4])
    # layout: I 4 pin(4) layout content coding latent-layout(varint aim << 1 | predict) shape...
    assert body[:2] == V4_PREFIX and body[9] == 1
    big = bytearray(body)
    big[9:10] = b"\x80\x04"  # aim 256
    with pytest.raises(CorruptChunkError, match="exceeds 255"):
        codec.decode(with_crc(bytes(big)))
    aim = bytearray(body)
    aim[9] = 2 << 1 | 1  # this model's patches are not sized in degrees
    with pytest.raises(CorruptChunkError, match="patch aim"):
        codec.decode(with_crc(bytes(aim)))
    v3 = bytearray(body)
    v3[1] = 3  # version 3 cannot name the mid-tread quantizer
    with pytest.raises(CorruptChunkError):
        codec.decode(with_crc(bytes(v3[:9] + v3[10:])))
    hdr, sections = cf.unpack_chunk(chunk)
    for payload in (b"", sections["latents"][:1], sections["latents"][:-4], sections["latents"] + b"\0\0\0\0",
                    b"\xff" * len(sections["latents"])):
        data = cf.pack_chunk(hdr, {"latents": payload})
        try:
            y = decode_chunk(data, tiny_model, codec.settings, shape=x.shape)
        except CorruptChunkError:
            continue
        assert y.shape == x.shape  # some garbage decodes to some latents: the CRC is the guard
    patched = _codec(patched_model, bits=4, patch_points=2)
    chunk = patched.encode(x)
    hdr, sections = cf.unpack_chunk(chunk)
    for a in (1, 3, 255):  # another aim changes the latent count: refused or decoded, never a crash
        try:
            decode_chunk(cf.pack_chunk(ChunkHeader(**{**hdr.__dict__, "patch_aim": a}), sections),
                         patched_model, patched.settings, shape=x.shape)
        except CorruptChunkError:
            pass


# ------------------------------------------------------------------ a golden version-4 chunk
#: the golden model's v1_modulations_input (tests/data/golden_v1v2) with the default coding at
#: bits=4, inner_steps=3 (mid-tread, two items predicted): the bytes; tests/data/golden_v3/v4_decoded.npy
#: holds what they decoded to on the machine that recorded them
GOLDEN_V4 = "4904971136560304e301020810c100beebe4f10a726db1"


def test_golden_version4_chunk():
    from golden_cases import DATA, golden_model

    with np.load(DATA / "arrays.npz") as z:
        x = z["v1_modulations_input"].copy()
    codec = COINppCodec(golden_model(), bits=4, inner_steps=3, assume_global_grid=True, effort="full")
    chunk = bytes.fromhex(GOLDEN_V4)
    hdr = cf.unpack_chunk(chunk)[0]
    assert (hdr.quantizer_id, hdr.entropy_id, hdr.predict, hdr.patch_aim) == (2, 3, 1, 0)
    y = codec.decode(chunk)
    # network output on another CPU: the cross-machine promise, not one machine's floats (issue 32:
    # an Intel AVX-512 machine decoded other last bits)
    expected = np.load(DATA.parent / "golden_v3" / "v4_decoded.npy")
    assert y.dtype == expected.dtype and y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=0, atol=cross_machine_tolerance(expected))
    assert codec.encode(x) == chunk


def test_version4_header_round_trip_and_checks():
    pin = b"\x01\x02\x03\x04"
    base = dict(model_sha256=None, dtype="<f4", shape=(3, 8, 16), order="C", mode=0, patch_shape=None,
                num_items=None, num_patches=None, latent_dim=None, bits=5, quantizer_id=2, entropy_id=3, pin=pin)
    for aim, predict in ((0, 0), (0, 1), (63, 1), (64, 0), (255, 1)):
        hdr = ChunkHeader(**base, patch_aim=aim, predict=predict)
        data = cf.pack_chunk(hdr, {"latents": b"\x05" * 8})
        assert data[:2] == V4_PREFIX and len(data) == 13 + (aim >= 64) + 8 + 4
        assert cf.unpack_chunk(data) == (hdr, {"latents": b"\x05" * 8})
    legacy = ChunkHeader(**{**base, "quantizer_id": 1, "entropy_id": 1})
    assert cf.pack_chunk(legacy, {"latents": b"x"})[:2] == V3_PREFIX  # the old coding stays version 3
    with pytest.raises(ValueError, match="predict"):
        ChunkHeader(**{**base, "quantizer_id": 1, "entropy_id": 1}, predict=1)
    with pytest.raises(ValueError, match="version-4 fields"):
        ChunkHeader(**{**base, "mode": 1, "bits": 0, "quantizer_id": 0, "entropy_id": 0}, patch_aim=3)
    with pytest.raises(ValueError, match="version-4 fields"):
        ChunkHeader(**{**base, "pin": None, "model_sha256": "ab" * 32, "patch_shape": (), "num_items": 1,
                          "num_patches": 1, "latent_dim": 1}, patch_aim=3)
    # a version-4 chunk that a version-3 header could express is refused (one way to write it)
    body = bytearray(cf.pack_chunk(legacy, {"latents": b"x"})[:-4])
    body[1] = 4
    body[9:9] = b"\x00"
    with pytest.raises(CorruptChunkError, match="version 3"):
        cf.unpack_chunk(with_crc(bytes(body)))


def test_new_options_validate_and_parse_from_the_command_line():
    import argparse

    p = argparse.ArgumentParser()
    CodecSettings.add_arguments(p)
    s = CodecSettings.from_arguments(p.parse_args(["--quantizer", "uniform", "--no-time-coding",
                                                   "--patch-points", "model", "--residual-coder", "none",
                                                   "--effort", "full", "--no-residual-interpolation",
                                                   "--no-residual-item-detail", "--no-coarse-hybrid",
                                                   "--no-sperr-exact-bound", "--no-residual-context",
                                                   "--no-residual-levels", "--no-residual-cubic",
                                                   "--no-residual-fine-step", "--no-residual-compact",
                                                   "--no-sperr-item-dct", "--no-sperr-corrected"]))
    assert (s.quantizer, s.time_coding, s.patch_points, s.residual_coder, s.effort) == ("uniform", False, None, "none",
                                                                                     "full")
    assert CodecSettings.from_arguments(p.parse_args(["--patch-points", "auto", "--time-coding"])) == CodecSettings()
    assert s.to_dict() == CodecSettings.from_dict({"bits": 6, "inner_steps": None}).to_dict()  # legacy values unwritten
    assert CodecSettings.from_arguments(p.parse_args(s.to_arguments())) == s  # the flags that repeat it
    for bad in (dict(quantizer="zigzag"), dict(patch_points=256), dict(patch_points=-1), dict(patch_points=True),
                dict(coarse_hybrid="False"), dict(time_coding="no"), dict(network=2)):  # a string is no switch
        with pytest.raises(ValueError):
            CodecSettings(**bad)
    assert CodecSettings(entropy_coding=False).quantizer == "uniform"  # bit packing needs it
    assert CodecSettings(bits=14).quantizer == "uniform" and not CodecSettings(quantizer="uniform").time_coding
