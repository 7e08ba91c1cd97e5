"""Residual coder 3: the interpolation predictors' codes with a geometric model per context."""
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from conftest import legacy_of
from hypothesis import strategies as st

from inrcodec import COINppCodec
from inrcodec import chunkformat as cf
from inrcodec.chunkcodec import residual
from inrcodec.chunkcodec import residualcontext as rc


def rough_and_smooth(n_items: int = 1, seed: int = 5) -> np.ndarray:
    """Items (n, 40, 72) smooth in the west and rough in the east (mountains beside a plain): the
    codes of the rough half are large and those of the smooth half small, which one model cannot
    tell apart and the contexts can."""
    rng = np.random.default_rng(seed)
    lat, lon = np.meshgrid(np.linspace(-1.4, 1.4, 40), np.linspace(0.0, 2 * np.pi, 72, endpoint=False), indexing="ij")
    rough = np.where(lon > np.pi, 1.0, 0.0) * rng.normal(0.0, 2.0, size=lat.shape)
    return np.stack([280.0 + 25.0 * np.cos(lat) + 2.0 * np.sin(lon + 0.3 * t) + rough
                     for t in range(n_items)]).astype("f4")


def _codes(r: np.ndarray, step: float, predictor: int):
    """The closed loop's codes and reconstruction of ``r`` (every value accepted)."""
    accept = lambda idx, values: np.ones(np.shape(values), bool)  # noqa: E731
    if predictor == residual.PREDICTOR_INTERP_DETAIL:
        d, rhat, weights = residual.interpolate_detail_closed(r, step, lambda t: accept, np.ones(r.shape, bool))
        return d, rhat, weights
    d, rhat = residual.interpolate_closed(r, step, predictor, accept)
    return d, rhat, None


def _read_back(params, stream, escapes, shape, step, predictor, weights):
    model = rc.ContextModel.parse(params, residual._geom_probs)
    walk = residual._CodeWalk(rc.Reader(model, stream, escapes, residual.MAX_CODE))
    d = np.zeros(shape, np.int64)
    if predictor == residual.PREDICTOR_INTERP_DETAIL:
        rhat = residual.uninterpolate_detail_closed(d, step, weights, walk)
    else:
        rhat = residual.uninterpolate_closed(d, step, predictor, walk)
    walk.reader.finish()
    return d, rhat


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=st.lists(st.integers(1, 13), min_size=2, max_size=4), seed=st.integers(0, 2**16),
       bound=st.sampled_from([1e-3, 0.05, 0.5, 4.0]), spikes=st.integers(0, 3),
       predictor=st.sampled_from([2, 3, 4]))
def test_the_decoder_reads_every_code_back_from_the_contexts_it_rebuilds(shape, seed, bound, spikes, predictor):
    """The decoder derives each value's context from what it has reconstructed, as the encoder did
    from its final codes: the codes and the reconstruction come back bit for bit, whatever the shape
    (one item, 1-point axes, odd sizes), escaped spikes included."""
    rng = np.random.default_rng(seed)
    r = np.cumsum(rng.normal(0.0, 1.0, size=tuple(shape)), axis=-1)
    r.reshape(-1)[rng.integers(0, r.size, spikes)] += 1e4  # codes far beyond their context's support
    step = residual.effective_step(bound)
    d, rhat, weights = _codes(r, step, predictor)
    params, stream, escapes = rc.encode(residual._context_groups(d, rhat, step, predictor), residual._geom_probs)
    d2, rhat2 = _read_back(params, stream, escapes, r.shape, step, predictor, weights)
    np.testing.assert_array_equal(d2, d)
    np.testing.assert_array_equal(rhat2, rhat)


@pytest.mark.parametrize("n_items", [1, 4])
def test_contexts_code_a_field_with_rough_and_smooth_regions_in_fewer_bytes_and_decode_alike(n_items):
    """Coder 3 is kept where it is smaller than the one-model coders (here by more than 5 %); the
    codes are the same, so the decoded values are the same bits as without it; off (``context``
    False, what a configuration without ``residual_context`` writes) it is never tried."""
    x = rough_and_smooth(n_items)
    valid = np.ones(x.shape, bool)
    recon = np.full(x.shape, float(x.mean()))
    kw = dict(exact_recon=True, interpolation=True, item_detail=True)
    off = residual.encode_residual(x, recon, valid, 0.5, x.dtype, **kw)
    on = residual.encode_residual(x, recon, valid, 0.5, x.dtype, context=True, **kw)
    assert off.coder != residual.CODER_CONTEXT and all(c != residual.CODER_CONTEXT for _, c in off.sizes)
    assert on.coder == residual.CODER_CONTEXT and on.predictor == off.predictor
    assert len(on.payload) < 0.95 * len(off.payload)
    y_on, y_off = (residual.decode_residual(e.payload, recon, x.dtype) for e in (on, off))
    np.testing.assert_array_equal(y_on, y_off)
    assert np.abs(y_on.astype("f8") - x).max() <= 0.5


def new_and_legacy_sections(x: np.ndarray, option: str, **codec_options) -> tuple[dict, dict]:
    """The residual sections (``residual_info``) that a new codec and one configured before ``option``
    existed write for ``x`` through the codec (mode 3, no network, within 0.5): the new chunk is the
    smaller, and both decode within the bound."""
    codec = COINppCodec("t2m-global-2", assume_global_grid=True, max_abs_error=0.5, network=False, **codec_options)
    legacy = legacy_of(codec, option)
    new, old = codec.encode(x), legacy.encode(x)
    assert len(new) < len(old)
    for c, data in ((codec, new), (legacy, old)):
        assert np.abs(c.decode(data).astype("f8") - x).max() <= 0.5
    return tuple(residual.residual_info(cf.unpack_chunk(data)[1]["residual"]) for data in (new, old))


def test_a_new_codec_codes_contexts_and_a_stored_configuration_keeps_its_coding():
    """Through the codec: new configurations say ``residual_context`` and write coder 3 where it is
    smallest; a configuration written before the option writes what it wrote."""
    new, old = new_and_legacy_sections(rough_and_smooth(4), "residual_context")
    assert new["coder"] == residual.CODER_CONTEXT and old["coder"] != residual.CODER_CONTEXT


def test_a_parameter_byte_stands_for_one_magnitude_and_its_table_ends_where_its_weight_is_negligible():
    for b in (1, 8, 77, 200, 255):
        e, m = divmod(b, 8)
        assert rc.magnitude(b) == (1 + m / 8) * 2.0 ** (e - 12)
        k, theta = rc.geometric(b)
        assert 0 < theta < 1 and 1 <= k <= rc.MAX_K
        if k < rc.MAX_K:
            assert theta**k < 2.0**-24 <= theta ** (k - 1)
    assert rc.geometric(0)[0] == 2  # no magnitude: 1e-6, so one step below 2**-24
    for a in (0.003, 0.7, 1.0, 13.0, 500.0):
        b = rc._fit_mean(a)
        assert abs(np.log2(rc.magnitude(b) / a)) <= min(abs(np.log2(rc.magnitude(c) / a)) for c in range(1, 256))


def _section(enc: residual.EncodedResidual, *, coder=None, predictor=None, params=None, stream=None, escapes=None):
    """``enc``'s section bytes with fields or blobs replaced."""
    payload = enc.payload
    version, pred, cod, reserved, bound, step, count = residual._FIXED.unpack_from(payload, 0)
    (n_exc,) = struct.unpack_from("<Q", payload, residual._FIXED.size)
    names = residual.BLOBS + (("weights",) if pred == residual.PREDICTOR_INTERP_DETAIL else ())
    blobs = dict(zip(names, residual._blobs(payload, residual._FIXED.size + 8, names)))
    for name, value in (("params", params), ("stream", stream), ("escapes", escapes)):
        if value is not None:
            blobs[name] = value
    out = [residual._FIXED.pack(version, pred if predictor is None else predictor, cod if coder is None else coder,
                                reserved, bound, step, count), struct.pack("<Q", n_exc)]
    for name in names:
        out += [struct.pack("<Q", len(blobs[name])), blobs[name]]
    return b"".join(out), blobs


def test_damaged_context_sections_are_refused_with_a_clear_error():
    x = rough_and_smooth(1)
    x[0, 5, 60] += 4000.0  # a spike: one escaped code
    recon = np.full(x.shape, float(x.mean()))
    enc = residual.encode_residual(x, recon, np.ones(x.shape, bool), 0.5, x.dtype, exact_recon=True,
                                   interpolation=True, context=True)
    assert enc.coder == residual.CODER_CONTEXT
    good, blobs = _section(enc)
    assert np.array_equal(residual.decode_residual(good, recon, x.dtype), residual.decode_residual(enc.payload, recon,
                                                                                                    x.dtype))
    params = blobs["params"]
    (n_esc,) = struct.unpack_from("<I", params, 0)
    assert n_esc == 1
    bitmap = np.unpackbits(np.frombuffer(params[4:8], np.uint8), bitorder="little")
    used = np.flatnonzero(bitmap)
    dropped = bitmap.copy()
    dropped[used[-1]] = 0  # the last used context's byte gone with its bit
    no_model = params[:4] + np.packbits(dropped, bitorder="little").tobytes() + params[8:-1]
    cases = {
        "interpolated codes only": _section(enc, predictor=residual.PREDICTOR_LORENZO)[0],
        "truncated": _section(enc, params=params[:6])[0],
        "bytes for": _section(enc, params=params[:-1])[0],
        "no model": _section(enc, params=no_model)[0],
        "left unread": _section(enc, params=struct.pack("<I", 2) + params[4:],
                                escapes=zlib.compress(np.array([4000, 1], "<i8").tobytes()))[0],
        "escapes more codes": _section(enc, params=struct.pack("<I", 0) + params[4:], escapes=b"")[0],
        "beyond": _section(enc, escapes=zlib.compress(np.array([2**55], "<i8").tobytes()))[0],
        "left after the last symbol": _section(enc, stream=blobs["stream"] + bytes(8))[0],
    }
    for match, payload in cases.items():
        with pytest.raises(residual.ResidualError, match=match):
            residual.decode_residual(payload, recon, x.dtype)
