"""Residual coder 4: coder 3's contexts with the interpolation's coarser levels apart."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_residual_context import _codes, _section, new_and_legacy_sections

from inrcodec.chunkcodec import residual
from inrcodec.chunkcodec import residualcontext as rc


def wave(n_items: int = 1, seed: int = 11) -> np.ndarray:
    """Items (n, 48, 96): a wave of 16 points under a fine noise, whose coarse levels' codes are large
    where the fine levels' are small at the same slope and code size."""
    i, j = np.meshgrid(np.arange(48), np.arange(96), indexing="ij")
    rng = np.random.default_rng(seed)
    return np.stack([280.0 + 20.0 * np.sin(2 * np.pi * i / 16 + 0.7 + t) * np.sin(2 * np.pi * j / 16 + 0.3)
                     + rng.normal(0.0, 0.3, i.shape) for t in range(n_items)]).astype("f4")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=st.lists(st.integers(1, 19), min_size=2, max_size=3), seed=st.integers(0, 2**16),
       bound=st.sampled_from([1e-3, 0.05, 0.5, 4.0]), predictor=st.sampled_from([2, 3]))
def test_the_decoder_reads_every_code_back_from_the_level_contexts(shape, seed, bound, predictor):
    """The decoder knows each group's stride from the chunk's shape, so it rebuilds the level of every
    context as the encoder did: the codes and the reconstruction come back bit for bit."""
    rng = np.random.default_rng(seed)
    r = np.cumsum(rng.normal(0.0, 1.0, size=tuple(shape)), axis=-1)
    step = residual.effective_step(bound)
    d, rhat, _ = _codes(r, step, predictor)
    groups = residual._context_groups(d, rhat, step, predictor, levels=True)
    params, stream, escapes = rc.encode(groups, residual._geom_probs)
    model = rc.ContextModel.parse(params, residual._geom_probs)
    walk = residual._CodeWalk(rc.Reader(model, stream, escapes, residual.MAX_CODE),
                              residual._group_strides(r.shape, predictor))
    d2 = np.zeros(r.shape, np.int64)
    rhat2 = residual.uninterpolate_closed(d2, step, predictor, walk)
    walk.reader.finish()
    np.testing.assert_array_equal(d2, d)
    np.testing.assert_array_equal(rhat2, rhat)
    coarse = [s > residual.LEVEL_STRIDE for s in residual._group_strides(r.shape, predictor)]
    for (_, ctx), is_coarse in zip(groups, coarse):  # the coarser levels in the second tag's contexts
        if ctx.size and is_coarse:
            assert ctx.min() >= rc.NUM_CONTEXTS // 2


def test_level_contexts_code_a_wave_in_fewer_bytes_within_the_bound():
    """Coder 4 is kept where it is smaller than every other coder, coder 3 on the same codes included
    (here by more than 5 %); off (``levels`` False, what a configuration without ``residual_levels``
    writes) it is never tried."""
    x = wave()
    valid = np.ones(x.shape, bool)
    recon = np.full(x.shape, float(x.mean()))
    kw = dict(exact_recon=True, interpolation=True, item_detail=True, context=True)
    off = residual.encode_residual(x, recon, valid, 0.5, x.dtype, **kw)
    on = residual.encode_residual(x, recon, valid, 0.5, x.dtype, levels=True, **kw)
    assert all(c != residual.CODER_CONTEXT_LEVELS for _, c in off.sizes)
    assert on.coder == residual.CODER_CONTEXT_LEVELS and on.predictor == 2
    assert on.sizes[(2, residual.CODER_CONTEXT_LEVELS)] < 0.95 * on.sizes[(2, residual.CODER_CONTEXT)]
    assert len(on.payload) < len(off.payload)
    y = residual.decode_residual(on.payload, recon, x.dtype)
    assert np.abs(y.astype("f8") - x).max() <= 0.5


def test_a_new_codec_codes_level_contexts_and_a_stored_configuration_keeps_its_coding():
    """Through the codec (mode 3, no network): new configurations say ``residual_levels`` and write
    coder 4 where it is smallest; a configuration written before the option writes what it wrote."""
    # the residual of the mean (mode 3), not SPERR alone
    new, old = new_and_legacy_sections(wave(), "residual_levels", residual_coder="none")
    assert new["coder"] == residual.CODER_CONTEXT_LEVELS and old["coder"] != residual.CODER_CONTEXT_LEVELS


def test_level_sections_for_other_predictors_or_read_as_coder_3_are_refused_or_differ():
    x = wave()
    recon = np.full(x.shape, float(x.mean()))
    enc = residual.encode_residual(x, recon, np.ones(x.shape, bool), 0.5, x.dtype, exact_recon=True,
                                   interpolation=True, context=True, levels=True)
    assert enc.coder == residual.CODER_CONTEXT_LEVELS
    for predictor in (residual.PREDICTOR_NONE, residual.PREDICTOR_LORENZO):
        with pytest.raises(residual.ResidualError, match=r"interpolated codes only \(predictors 2, 3, 5 and 6\)"):
            residual.decode_residual(_section(enc, predictor=predictor)[0], recon, x.dtype)
    # the same stream read with coder 3's contexts: refused, or other values (never the right ones)
    as_coder_3 = _section(enc, coder=residual.CODER_CONTEXT)[0]
    try:
        y = residual.decode_residual(as_coder_3, recon, x.dtype)
    except residual.ResidualError:
        return
    assert not np.array_equal(y, residual.decode_residual(enc.payload, recon, x.dtype))
