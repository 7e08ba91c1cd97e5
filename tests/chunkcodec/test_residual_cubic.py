"""Residual predictors 5 and 6: predictors 2 and 3 with four-point (cubic) interpolation."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_residual_context import _section, new_and_legacy_sections

from inrcodec.chunkcodec import residual
from inrcodec.chunkcodec import residualcontext as rc


def smooth(n_items: int = 1) -> np.ndarray:
    """Items (n, 48, 96) of a smooth wave of 13-17 points: the cubic predicts it far better."""
    i, j = np.meshgrid(np.arange(48), np.arange(96), indexing="ij")
    return np.stack([280.0 + 20.0 * np.sin(2 * np.pi * i / 16.5 + 0.7 + t) * np.sin(2 * np.pi * j / 13.7 + 0.3)
                     + 0.1 * j for t in range(n_items)]).astype("f4")


def test_the_cubic_prediction_is_exact_on_cubics_inside_a_line_and_linear_at_its_ends():
    n, h, s = 23, 2, 4
    t = np.arange(n, dtype=np.float64)
    line = (0.01 * t**3 - 0.2 * t**2 + t - 3.0)[None, :]  # (1, n): one line along axis 1
    idx = (slice(None), slice(h, None, s))
    got = residual._cubic(line, idx, 1, h, s)[0]
    pos = np.arange(h, n, s)
    four = (pos >= 3 * h) & (pos + 3 * h < n)
    assert four.any() and (~four).any()
    np.testing.assert_allclose(got[four], line[0, pos[four]], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(got[~four], residual._interpolated(line, idx, 1, h, s)[0][~four])
    assert not np.allclose(residual._interpolated(line, idx, 1, h, s)[0][four], line[0, pos[four]])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=st.lists(st.integers(1, 19), min_size=2, max_size=3), seed=st.integers(0, 2**16),
       bound=st.sampled_from([1e-3, 0.05, 0.5, 4.0]), predictor=st.sampled_from([5, 6]),
       levels=st.booleans())
def test_the_decoder_rebuilds_every_cubic_prediction_bit_for_bit(shape, seed, bound, predictor, levels):
    """The closed loop predicts from what is reconstructed, as the decoder does: with one model or the
    contexts (coders 3 and 4), the codes and the reconstruction come back bit for bit."""
    rng = np.random.default_rng(seed)
    r = np.cumsum(np.cumsum(rng.normal(0.0, 1.0, size=tuple(shape)), axis=-1), axis=-1)
    step = residual.effective_step(bound)
    d, rhat = residual.interpolate_closed(r, step, predictor, lambda idx, v: np.ones(np.shape(v), bool))
    np.testing.assert_array_equal(residual.uninterpolate_closed(d.copy(), step, predictor), rhat)
    assert np.abs(rhat - r).max() <= step / 2 * (1 + 1e-12)
    groups = residual._context_groups(d, rhat, step, predictor, levels)
    params, stream, escapes = rc.encode(groups, residual._geom_probs)
    walk = residual._CodeWalk(rc.Reader(rc.ContextModel.parse(params, residual._geom_probs), stream, escapes,
                                        residual.MAX_CODE),
                              residual._group_strides(r.shape, predictor) if levels else None)
    d2 = np.zeros(r.shape, np.int64)
    rhat2 = residual.uninterpolate_closed(d2, step, predictor, walk)
    walk.reader.finish()
    np.testing.assert_array_equal(d2, d)
    np.testing.assert_array_equal(rhat2, rhat)


def test_a_smooth_field_is_coded_cubic_in_fewer_bytes_within_the_bound():
    """On with ``cubic``: predictor 5 is kept where smaller than every linear coding (here by more
    than a quarter); off (what a configuration without ``residual_cubic`` writes) it is never tried."""
    x = smooth()
    valid = np.ones(x.shape, bool)
    recon = np.full(x.shape, float(x.mean()))
    kw = dict(exact_recon=True, interpolation=True, item_detail=True, context=True, levels=True)
    off = residual.encode_residual(x, recon, valid, 0.5, x.dtype, **kw)
    on = residual.encode_residual(x, recon, valid, 0.5, x.dtype, cubic=True, **kw)
    assert all(p not in (5, 6) for p, _ in off.sizes)
    assert on.predictor == residual.PREDICTOR_CUBIC_SPACE
    assert len(on.payload) < 0.75 * len(off.payload)
    y = residual.decode_residual(on.payload, recon, x.dtype)
    assert np.abs(y.astype("f8") - x).max() <= 0.5
    # white noise: cubic tried, larger than the linear interpolation (its weights add more noise), not kept
    rough = (280.0 + np.random.default_rng(0).normal(0.0, 3.0, x.shape)).astype("f4")
    kept = residual.encode_residual(rough, recon, valid, 0.5, x.dtype, cubic=True, **kw)
    assert kept.predictor not in (5, 6)
    assert all(kept.sizes[(5, c)] > kept.sizes[(2, c)] for c in (residual.CODER_HISTOGRAM, residual.CODER_GEOMETRIC))


def test_chunks_of_several_items_keep_the_earlier_items_detail_without_a_cubic_walk():
    x = smooth(4) + np.random.default_rng(1).normal(0.0, 0.3, (1, 48, 96)).astype("f4")  # a shared detail
    recon = np.full(x.shape, float(x.mean()))
    enc = residual.encode_residual(x, recon, np.ones(x.shape, bool), 0.5, x.dtype, exact_recon=True,
                                   interpolation=True, item_detail=True, context=True, levels=True, cubic=True)
    assert enc.predictor == residual.PREDICTOR_INTERP_DETAIL
    assert all(p not in (5, 6) for p, _ in enc.sizes)


def test_a_new_codec_codes_cubic_predictions_and_a_stored_configuration_keeps_its_coding():
    """Through the codec (mode 3, no network): new configurations say ``residual_cubic`` and write
    predictor 5 where it is smallest; a configuration written before the option writes what it wrote."""
    # the residual of the mean (mode 3), not SPERR alone
    new, old = new_and_legacy_sections(smooth(), "residual_cubic", residual_coder="none")
    assert new["predictor"] == residual.PREDICTOR_CUBIC_SPACE and old["predictor"] not in (5, 6)


def test_a_cubic_section_read_as_its_linear_predictor_or_as_an_unknown_one_differs_or_is_refused():
    x = smooth()
    recon = np.full(x.shape, float(x.mean()))
    enc = residual.encode_residual(x, recon, np.ones(x.shape, bool), 0.5, x.dtype, exact_recon=True,
                                   interpolation=True, context=True, levels=True, cubic=True)
    assert enc.predictor == residual.PREDICTOR_CUBIC_SPACE
    with pytest.raises(residual.ResidualError, match="unknown residual predictor 7"):
        residual.decode_residual(_section(enc, predictor=7)[0], recon, x.dtype)
    try:  # the same codes read as predictor 2's: refused, or other values (never the right ones)
        linear = residual.decode_residual(_section(enc, predictor=residual.PREDICTOR_INTERP_SPACE)[0], recon, x.dtype)
    except residual.ResidualError:
        return
    assert not np.array_equal(linear, residual.decode_residual(enc.payload, recon, x.dtype))
