"""Wavelet coder 3 (``sperr_item_dct``): SPERR on the items' orthonormal DCT along the item axis, less
their mean. SPERR transforms no axis shorter than 9, so a chunk of a few time steps was coded as that
many separate fields; the DCT gives the stack the transform along time."""
from __future__ import annotations

import math
import struct

import numpy as np
import pytest
from conftest import NLAT, NLON, global_lat_lon, legacy_of, smooth_field

from inrcodec import COINppCodec
from inrcodec import chunkformat as cf
from inrcodec.chunkformat.header import MODE_WAVELET_CORRECTED
from inrcodec.chunkcodec import wavelet
from inrcodec.errors import CorruptChunkError

LAT, LON = global_lat_lon(32, 64)


def _hours(n: int = 8, seed: int = 0) -> np.ndarray:
    """``n`` items of 32 x 64 that change a little from one to the next, as hourly fields do."""
    base = smooth_field(1, 32, 64, seed=seed)[0]
    rng = np.random.default_rng(seed)
    drift = np.cumsum(rng.normal(0.0, 0.05, (n, 32, 64)), axis=0)
    return (base[None] + drift).astype("f4")


@pytest.mark.parametrize("n", [2, 3, 5, 8, 13, 16])
def test_the_dct_is_orthonormal_and_its_inverse_undoes_it(n):
    d = wavelet._dct_matrix(n)
    i = np.arange(n)
    want = np.cos(np.pi * (2 * i[None, :] + 1) * i[:, None] / (2 * n)) * np.sqrt(2.0 / n)
    want[0] /= math.sqrt(2.0)
    assert np.abs(d - want).max() < 4e-15 and np.abs(d @ d.T - np.eye(n)).max() < 1e-15
    x = np.random.default_rng(n).normal(size=(n, 3, 5))
    assert np.abs(wavelet.inverse_item_dct(wavelet.item_dct(x)) - x).max() < 1e-13


def test_the_dct_and_its_inverse_are_the_same_sums_in_the_same_order_on_every_machine():
    """The decoder's inverse is each item's sum of products taken in order, one rounding per
    operation (no BLAS reduction, no fused multiply-add): exactly what plain Python floats compute."""
    rng = np.random.default_rng(1)
    c = rng.normal(size=(6, 4, 7)) * 100.0
    d = wavelet._dct_matrix(6)
    out = wavelet.inverse_item_dct(c)
    for i in range(6):
        for p in np.ndindex(4, 7):
            acc = float(c[(0, *p)]) * float(d[0, i])
            for k in range(1, 6):
                acc = acc + float(c[(k, *p)]) * float(d[k, i])
            assert out[(i, *p)] == acc
    forward = wavelet.item_dct(c)  # the encoder sums alike: a golden chunk's bytes are every machine's
    for k in range(6):
        for p in np.ndindex(4, 7):
            acc = float(c[(0, *p)]) * float(d[k, 0])
            for i in range(1, 6):
                acc = acc + float(c[(i, *p)]) * float(d[k, i])
            assert forward[(k, *p)] == acc


def test_new_codecs_code_time_steps_on_their_dct_in_fewer_bytes_and_stored_configurations_do_not(tiny_model):
    x = _hours()
    codec = COINppCodec(tiny_model, lat=LAT, lon=LON, target_rmse=0.05, network=False)
    data = codec.encode(x)
    payload = cf.unpack_chunk(data)[1]["wavelet"]
    assert payload[0] == wavelet.CODER_SPERR_DCT
    assert struct.unpack_from("<d", payload, 1)[0] == pytest.approx(float(x.astype("f8").mean()))
    y = codec.decode(data)
    assert np.sqrt(np.mean((y.astype("f8") - x) ** 2)) <= 0.05
    old = legacy_of(codec, "sperr_item_dct")
    before = old.encode(x)
    assert cf.unpack_chunk(before)[1]["wavelet"][0] != wavelet.CODER_SPERR_DCT
    assert np.sqrt(np.mean((old.decode(before).astype("f8") - x) ** 2)) <= 0.05
    assert 2 * len(data) < len(before)  # the same target in under half the bytes


@pytest.mark.parametrize("options", [dict(target_ratio=60.0), dict(bits=4), dict(target_rmse=0.05)])
def test_every_rate_target_tries_the_dct_first(tiny_model, monkeypatch, options):
    x = _hours(seed=2)
    codec = COINppCodec(tiny_model, lat=LAT, lon=LON, **options)
    layouts, real = [], wavelet.encode
    monkeypatch.setattr(wavelet, "encode", lambda field, mode, value, coder=1: layouts.append(coder) or
                        real(field, mode, value, coder))
    data = codec.encode(x)
    assert layouts[0] == wavelet.CODER_SPERR_DCT and "wavelet" in cf.unpack_chunk(data)[1]
    assert np.isfinite(codec.decode(data)).all()


@pytest.mark.parametrize("options", [dict(max_abs_error=0.05), dict(target_rmse=0.05, max_abs_error=0.1),
                                     dict(target_rmse=0.05, max_abs_error=0.1, sperr_corrected=False)])
def test_an_error_bound_is_never_trusted_to_the_dct(tiny_model, options):
    """SPERR's point-wise tolerance holds coefficient by coefficient, and each value of the DCT's
    inverse sums up to 16 of them: bounded chunks keep the layouts whose tolerance is the values', but
    where a residual section holds the bound over SPERR's decode (mode 7)."""
    x = _hours(seed=3)
    codec = COINppCodec(tiny_model, lat=LAT, lon=LON, **options)
    data = codec.encode(x)
    sections = cf.unpack_chunk(data)[1]
    if sections.get("wavelet", b"\x01")[0] == wavelet.CODER_SPERR_DCT:
        assert cf.chunk_mode(data) == MODE_WAVELET_CORRECTED and "residual" in sections
    assert np.abs(codec.decode(data).astype("f8") - x).max() <= options["max_abs_error"]
    with pytest.raises(ValueError, match="point-wise"):
        wavelet.encode(x.astype("f8"), "pwe", 0.05, wavelet.CODER_SPERR_DCT)


def test_the_dct_is_offered_from_two_to_sixteen_items_of_a_2d_model():
    assert wavelet.CODER_SPERR_DCT not in wavelet.coders((1, NLAT, NLON))
    assert wavelet.CODER_SPERR_DCT in wavelet.coders((2, NLAT, NLON))
    assert wavelet.CODER_SPERR_DCT in wavelet.coders((wavelet.DCT_MAX_ITEMS, NLAT, NLON))
    assert wavelet.CODER_SPERR_DCT not in wavelet.coders((wavelet.DCT_MAX_ITEMS + 1, NLAT, NLON))
    assert wavelet.CODER_SPERR_DCT not in wavelet.coders((4, 8))  # a 1-D model's items
    assert wavelet.search_coders((8, NLAT, NLON), True) == (wavelet.CODER_SPERR_DCT, wavelet.CODER_SPERR,
                                                            wavelet.CODER_SPERR_MOSAIC)
    assert wavelet.search_coders((8, NLAT, NLON), False) == (wavelet.CODER_SPERR, wavelet.CODER_SPERR_MOSAIC)
    assert wavelet.pointwise_coders((8, NLAT, NLON)) == (wavelet.CODER_SPERR, wavelet.CODER_SPERR_MOSAIC)


def test_the_searches_tile_only_small_items():
    """Items whose shorter side has ``MOSAIC_SMALL_SIDE`` points or more are not tried as a mosaic (a
    decoder still reads one)."""
    side = wavelet.MOSAIC_SMALL_SIDE
    for shape in ((8, side, 2 * side), (8, 181, 360), (3, 2 * side, side)):
        assert wavelet.search_coders(shape, True) == (wavelet.CODER_SPERR_DCT, wavelet.CODER_SPERR)
        assert wavelet.pointwise_coders(shape) == (wavelet.CODER_SPERR,)
        assert wavelet.CODER_SPERR_MOSAIC in wavelet.coders(shape)
    for shape in ((8, side - 1, 4 * side), (20, 28, 28)):
        assert wavelet.CODER_SPERR_MOSAIC in wavelet.search_coders(shape, True)
        assert wavelet.pointwise_coders(shape) == (wavelet.CODER_SPERR, wavelet.CODER_SPERR_MOSAIC)


def test_a_dct_section_that_does_not_fit_its_chunk_is_refused(tiny_model):
    x = _hours(4, seed=4)
    codec = COINppCodec(tiny_model, lat=LAT, lon=LON, target_rmse=0.05, network=False)
    data = codec.encode(x)
    hdr, sections = cf.unpack_chunk(data)
    payload = sections["wavelet"]
    assert payload[0] == wavelet.CODER_SPERR_DCT
    for bad, why in [(payload[:9 + wavelet.SPERR_HEADER - 1], "shorter than its headers"),
                     (payload[:1] + struct.pack("<d", math.nan) + payload[9:], "mean is not finite"),
                     (payload[:1] + struct.pack("<d", math.inf) + payload[9:], "mean is not finite")]:
        with pytest.raises(wavelet.WaveletError, match=why):
            wavelet.check(bad, x.shape)
        with pytest.raises(CorruptChunkError):
            codec.decode(cf.pack_chunk(hdr, {**sections, "wavelet": bad}))
    with pytest.raises(wavelet.WaveletError, match="unknown wavelet coder 3"):  # one item: no DCT
        wavelet.check(payload, (1, 32, 4 * 64))
