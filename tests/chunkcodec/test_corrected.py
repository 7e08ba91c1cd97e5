"""Mode 7 (``sperr_corrected``): SPERR alone at a rate, its decode corrected within an error bound by a
residual section, for an error bound that comes with a ratio or RMSE target (issue 33 item 2)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import global_lat_lon, legacy_of, smooth_field

from inrcodec import COINppCodec
from inrcodec import chunkformat as cf
from inrcodec.chunkcodec import corrected, hybrid, residual, wavelet
from inrcodec.chunkformat.header import MODE_WAVELET_CORRECTED, ChunkHeader
from inrcodec.errors import CorruptChunkError

LAT, LON = global_lat_lon(32, 64)
BOUND, RMSE = 2.0, 0.5


def _spiked(n: int = 6, seed: int = 0) -> np.ndarray:
    """``n`` hourly-like items of 32 x 64, a spike of 20 in two of them: SPERR at an RMSE of 0.5 misses
    them by far more than 2, a point-wise bound of 2 makes it code every value finely."""
    base = smooth_field(1, 32, 64, seed=seed)[0]
    drift = np.cumsum(np.random.default_rng(seed).normal(0.0, 0.05, (n, 32, 64)), axis=0)
    x = (base[None] + drift).astype("f4")
    x[1, 3, 5] += 20.0
    x[n - 2, 20, 40] -= 20.0
    return x


def _errors(codec, data, x) -> tuple[float, float]:
    d = codec.decode(data).astype("f8") - x
    return float(np.sqrt(np.mean(d * d))), float(np.abs(d).max())


@pytest.mark.parametrize("network", [True, False])
def test_an_rmse_target_with_a_bound_takes_sperr_corrected_within_it(tiny_model, network):
    """The chunk is SPERR alone whose decode misses the bound at a few values, and the residual that
    brings them within it: both targets met, in fewer bytes than without mode 7; the decoder computes
    SPERR's decode, then the residual over it (the same floats as that computation)."""
    x = _spiked()
    codec = COINppCodec(tiny_model, lat=LAT, lon=LON, target_rmse=RMSE, max_abs_error=BOUND, network=network)
    data = codec.encode(x)
    header, sections = cf.unpack_chunk(data)
    assert header.mode == MODE_WAVELET_CORRECTED and header.version == 5
    rmse, worst = _errors(codec, data, x)
    assert rmse <= RMSE and worst <= BOUND
    alone = wavelet.decode(sections["wavelet"], x.shape)
    assert np.abs(alone - x).max() > 4 * BOUND  # SPERR's own decode misses the bound: the residual holds it
    want = residual.decode_residual(sections["residual"], alone, np.float32, exact=True)
    assert np.array_equal(codec.decode(data), want)
    assert codec.encode(x) == data  # deterministic
    without = COINppCodec.from_config({**codec.get_config(), "sperr_corrected": False}).encode(x)
    assert cf.chunk_mode(without) != MODE_WAVELET_CORRECTED and len(data) < len(without)


def test_a_ratio_target_with_a_bound_keeps_the_ratio_and_the_bound(tiny_model):
    """``target_ratio`` with a bound: mode 7 at the highest rate found within the ratio, every value
    within the bound."""
    x = _spiked()
    codec = COINppCodec(tiny_model, lat=LAT, lon=LON, target_ratio=40.0, max_abs_error=BOUND, network=False)
    data = codec.encode(x)
    assert cf.chunk_mode(data) == MODE_WAVELET_CORRECTED
    assert len(data) <= x.nbytes / 40.0
    assert _errors(codec, data, x)[1] <= BOUND


def test_a_stored_configuration_without_the_option_never_writes_mode_7(tiny_model):
    x = _spiked()
    codec = COINppCodec(tiny_model, lat=LAT, lon=LON, target_rmse=RMSE, max_abs_error=BOUND, network=False)
    assert cf.chunk_mode(codec.encode(x)) == MODE_WAVELET_CORRECTED
    old = legacy_of(codec, "sperr_corrected")
    data = old.encode(x)
    assert cf.chunk_mode(data) != MODE_WAVELET_CORRECTED and _errors(old, data, x)[1] <= BOUND


def test_the_rate_search_meets_the_target_and_climbs_only_while_the_chunk_shrinks():
    x = _spiked().astype("f8")
    valid = np.ones(x.shape, dtype=bool)
    cands = hybrid.WaveletCandidates(x, valid, x.size * 4, np.float32)

    def residual_of(y, bound=BOUND):
        return residual.encode_residual(x, y, valid, bound, np.float32, exact_recon=True, interpolation=True,
                                        fine_step=True, compact=True).payload

    coder = wavelet.CODER_SPERR_DCT
    found = corrected.at_rmse(cands, coder, RMSE, residual_of)
    assert found.rmse <= RMSE and found.max_error <= BOUND and found.coder == coder
    higher = corrected.corrected(cands, coder, found.rate * corrected.RATE_UP, residual_of)
    kept = corrected.climbed(cands, found, residual_of)
    assert kept.nbytes <= found.nbytes and (kept is found) == (higher.nbytes >= found.nbytes)
    # at a tight bound the residual costs more than SPERR's bits: a higher rate gives a smaller chunk
    tight = corrected.corrected(cands, coder, 0.05, lambda y: residual_of(y, 0.02))
    assert corrected.climbed(cands, tight, lambda y: residual_of(y, 0.02)).nbytes < tight.nbytes
    budget = found.nbytes + 40
    within = corrected.at_ratio(cands, coder, budget, residual_of)
    assert within.nbytes <= budget and within.max_error <= BOUND


def test_a_damaged_mode_7_chunk_is_refused(tiny_model):
    x = _spiked()
    codec = COINppCodec(tiny_model, lat=LAT, lon=LON, target_rmse=RMSE, max_abs_error=BOUND, network=False)
    data = codec.encode(x)
    header, sections = cf.unpack_chunk(data)
    with pytest.raises(ValueError, match="'residual' is missing"):  # its residual section is required
        cf.pack_chunk(header, {"wavelet": sections["wavelet"]})
    fields = {k: getattr(header, k) for k in ChunkHeader.__dataclass_fields__}
    short = cf.pack_chunk(ChunkHeader(**{**fields, "shape": (x.shape[0] - 1, *x.shape[1:])}), sections)
    with pytest.raises(CorruptChunkError):  # a residual of another count than the chunk's values
        COINppCodec.from_config(codec.get_config()).decode(short)
    res = residual.residual_info(sections["residual"])
    assert res["step"] != residual.effective_step(res["bound"])  # mode 3's finer margin: SPERR decodes alike
    with pytest.raises(residual.ResidualError, match="inconsistent residual bound"):  # what mode 2 may not have
        residual.read_section(sections["residual"], x.size, np.float32)


@pytest.mark.parametrize("fill", [None, -9999.0])
def test_mode_7_restores_nans_and_fill_values_and_keeps_the_bound_elsewhere(tiny_model, fill):
    x = _spiked()
    x[2, 5:9, 10:20] = np.nan
    x[3] = np.nan  # an item with no valid value: not coded
    if fill is not None:
        x[4, 1, 1] = fill
    codec = COINppCodec(tiny_model, lat=LAT, lon=LON, target_rmse=RMSE, max_abs_error=BOUND, network=False,
                        fill_value=fill)
    data = codec.encode(x)
    assert cf.chunk_mode(data) == MODE_WAVELET_CORRECTED
    y = codec.decode(data)
    missing = np.isnan(x) | (x == fill)
    assert np.array_equal(np.isnan(y), np.isnan(x)) and np.array_equal(y[x == fill], x[x == fill])
    assert np.abs(y[~missing].astype("f8") - x[~missing]).max() <= BOUND


def test_a_corrected_chunk_in_hand_stops_the_tightening_at_a_larger_chunk(tiny_model, monkeypatch):
    """With a chunk that meets both in hand, the bounded and point-wise searches stop tightening at a
    chunk as large (a tighter bound only adds bytes): fewer tries, the same chunk."""
    from inrcodec.chunkcodec import encode

    x = _spiked()
    codec = COINppCodec(tiny_model, lat=LAT, lon=LON, target_rmse=RMSE, max_abs_error=BOUND)
    scored, real = [], encode._scored

    def counting(data, *args):
        scored.append(len(data))
        return real(data, *args)

    monkeypatch.setattr(encode, "_scored", counting)
    data = codec.encode(x)
    assert cf.chunk_mode(data) == MODE_WAVELET_CORRECTED
    limited = list(scored)
    scored.clear()
    monkeypatch.setattr(encode, "_smallest_meeting_both", lambda *args: None)
    assert codec.encode(x) == data and len(limited) < len(scored)


@pytest.mark.parametrize("network", [True, False])
def test_no_corrected_chunk_is_tried_where_the_targets_own_chunk_keeps_the_bound(tiny_model, monkeypatch, network):
    """A smooth field, SPERR alone at the ratio within a loose bound: no mode-7 try (it would be SPERR
    at a lower rate plus a residual); with spikes that SPERR misses, mode 7 is tried."""
    calls, real = [], corrected.corrected

    def counting(*args):
        calls.append(args[2])
        return real(*args)

    monkeypatch.setattr(corrected, "corrected", counting)
    x = _spiked()
    x[1, 3, 5] -= 20.0
    x[-2, 20, 40] += 20.0
    codec = COINppCodec(tiny_model, lat=LAT, lon=LON, target_ratio=40.0, max_abs_error=5.0, network=network)
    data = codec.encode(x)
    assert _errors(codec, data, x)[1] <= 5.0 and calls == []
    assert cf.chunk_mode(codec.encode(_spiked())) == MODE_WAVELET_CORRECTED and calls
