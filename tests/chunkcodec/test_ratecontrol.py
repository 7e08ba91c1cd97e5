"""Per-chunk choice of the latent width: rate control (target RMSE / ratio) and error-bounded
mode (smallest of several widths, fallback to the no-network residual)."""
import struct
import warnings

import numpy as np
import pytest
from conftest import NLAT, NLON, smooth_field

from inrcodec import COINppCodec
from inrcodec import chunkformat as cf
from inrcodec.chunkformat.header import ChunkHeader, MODE_PLAIN_RESIDUAL
from inrcodec.chunkcodec import encode as encode_module
from inrcodec.chunkcodec import ratecontrol, residual
from inrcodec.errors import TargetNotMetWarning


def _rmse(a, b):
    return float(np.sqrt(np.mean((np.asarray(a, "f8") - np.asarray(b, "f8")) ** 2)))


def _bits(chunk):
    return cf.unpack_chunk(chunk)[0].bits


def test_pickers_follow_their_rules():
    rmse = {1: 5.0, 2: 3.0, 3: 2.0, 4: 1.5}
    ratio = {1: 900.0, 2: 500.0, 3: 300.0, 4: 200.0}
    pick = ratecontrol.bits_for_target
    assert pick(rmse, target_rmse=2.5, rmse_of=rmse.get) == (3, True, 2.0)
    assert pick(rmse, target_rmse=0.1, rmse_of=rmse.get) == (4, False, 1.5)  # unreachable: most bits
    assert pick(ratio, target_ratio=400, ratio_of=ratio.get) == (2, True, 500.0)
    assert pick(ratio, target_ratio=5000, ratio_of=ratio.get) == (1, False, 900.0)  # unreachable: fewest bits


def _calibration_rmse(model, bits):
    """RMSE per width on a calibration chunk (seed 0), used only to choose the targets."""
    x = smooth_field(2, seed=0)
    return {b: _rmse(COINppCodec(model, residual_coder="none", assume_global_grid=True, bits=b, inner_steps=3).decode(
        COINppCodec(model, residual_coder="none", assume_global_grid=True, bits=b, inner_steps=3).encode(x)), x) for b in bits}


def test_target_rmse_is_met_on_a_held_out_chunk(tiny_model):
    widths = ratecontrol.candidate_bits(tiny_model)
    calib = _calibration_rmse(tiny_model, widths)
    target = 0.5 * (calib[widths[0]] + calib[widths[-1]])  # between the extremes
    held_out = smooth_field(2, seed=7)  # float64: no cast between measured and decoded values
    codec = COINppCodec(tiny_model, residual_coder="none", assume_global_grid=True, inner_steps=3, target_rmse=target)
    chunk = codec.encode(held_out)
    chosen = _bits(chunk)
    assert _rmse(COINppCodec(tiny_model, residual_coder="none", assume_global_grid=True).decode(chunk), held_out) <= target  # no setting needed
    smaller = [b for b in widths if b < chosen]
    if smaller:  # and it is the fewest bits that meet it
        plain = COINppCodec(tiny_model, residual_coder="none", assume_global_grid=True, bits=smaller[-1], inner_steps=3)
        assert _rmse(plain.decode(plain.encode(held_out)), held_out) > target


def test_target_ratio_is_met_on_a_held_out_chunk(tiny_model):
    held_out = smooth_field(4, seed=11).astype("f4")
    sizes = {b: len(COINppCodec(tiny_model, residual_coder="none", assume_global_grid=True, bits=b, inner_steps=3).encode(held_out))
             for b in ratecontrol.candidate_bits(tiny_model)}
    target = held_out.nbytes / sorted(sizes.values())[len(sizes) // 2]  # a width in the middle
    chunk = COINppCodec(tiny_model, residual_coder="none", assume_global_grid=True, inner_steps=3, target_ratio=target).encode(held_out)
    assert held_out.nbytes / len(chunk) >= target
    chosen = _bits(chunk)
    wider = [b for b in sizes if b > chosen]
    assert all(held_out.nbytes / sizes[b] < target for b in wider)  # the most bits that meet it


def test_unreachable_rmse_target_warns_with_what_was_reached(tiny_model):
    x = smooth_field(2, seed=3).astype("f4")
    codec = COINppCodec(tiny_model, residual_coder="none", assume_global_grid=True, inner_steps=2, target_rmse=1e-6)
    with pytest.warns(TargetNotMetWarning, match=r"target_rmse 1e-06 not reached: best ([0-9.e+-]+) at (\d+) bits") as rec:
        chunk = codec.encode(x)
    best, bits = rec[0].message.args[0].split("best ")[1].split(" at ")
    assert int(bits.split()[0]) == _bits(chunk) == max(ratecontrol.candidate_bits(tiny_model))
    assert float(best.split()[0]) == pytest.approx(_rmse(codec.decode(chunk), x), rel=1e-2)


def test_unreachable_ratio_target_warns_with_what_was_reached(tiny_model):
    x = smooth_field(2, seed=3).astype("f4")
    codec = COINppCodec(tiny_model, residual_coder="none", assume_global_grid=True, inner_steps=2, target_ratio=1e9)
    with pytest.warns(TargetNotMetWarning, match=r"target_ratio 1e\+09 not reached: best ([0-9.]+)x at (\d+) bits") as rec:
        chunk = codec.encode(x)
    assert _bits(chunk) == min(ratecontrol.candidate_bits(tiny_model))
    assert f"best {x.nbytes / len(chunk):.3g}x" in str(rec[0].message)


def test_reachable_targets_do_not_warn(tiny_model):
    x = smooth_field(2, seed=3).astype("f4")
    with warnings.catch_warnings():
        warnings.simplefilter("error", TargetNotMetWarning)
        COINppCodec(tiny_model, residual_coder="none", assume_global_grid=True, inner_steps=2, target_rmse=1e6).encode(x)
        COINppCodec(tiny_model, residual_coder="none", assume_global_grid=True, inner_steps=2, target_ratio=1.0).encode(x)


def test_rate_control_options(tiny_model):
    with pytest.raises(ValueError, match="not both"):
        COINppCodec(tiny_model, residual_coder="none", assume_global_grid=True, target_rmse=1.0, target_ratio=10.0)
    with pytest.raises(ValueError, match="target_ratio"):
        COINppCodec(tiny_model, residual_coder="none", assume_global_grid=True, target_ratio=-3)
    c = COINppCodec(tiny_model, residual_coder="none", assume_global_grid=True, target_rmse=0.7, refine_steps=0)
    assert COINppCodec.from_config(c.get_config()) == c and c.get_config()["target_rmse"] == 0.7
    assert "target_rmse" not in COINppCodec(tiny_model, residual_coder="none", assume_global_grid=True).get_config()  # plain configs unchanged


# ------------------------------------------------------------------ error-bounded mode
def _no_network_chunk(codec, x, bound):
    """The mode-3 chunk for a NaN-free chunk x: the residual of its mean, no network."""
    items = x.reshape(-1, NLAT, NLON)
    mean = float(np.mean(items, dtype=np.float64))
    res = residual.encode_residual(items, np.full(items.shape, mean), np.ones(items.shape, bool),
                                   bound, x.dtype)
    hdr = ChunkHeader(model_sha256=None, pin=codec.pin, dtype=x.dtype.str, shape=x.shape,
                         order="C", mode=MODE_PLAIN_RESIDUAL, patch_shape=None, num_items=None,
                         num_patches=None, latent_dim=None, bits=0, quantizer_id=0, entropy_id=0)
    return cf.pack_chunk(hdr, {"residual": res.payload, "prediction": struct.pack("<d", mean)})


@pytest.mark.parametrize("noise", [0.0, 3.0, 40.0])
@pytest.mark.parametrize("bound", [0.05, 0.5])
def test_bounded_chunk_is_never_larger_than_the_no_network_residual(tiny_model, noise, bound):
    rng = np.random.default_rng(3)
    x = (smooth_field(2, seed=5) + rng.normal(0, noise, (2, NLAT, NLON))).astype("f4")
    codec = COINppCodec(tiny_model, residual_coder="none", assume_global_grid=True, inner_steps=2, max_abs_error=bound)
    chunk = codec.encode(x)
    plain = _no_network_chunk(codec, x, bound)
    assert len(chunk) <= len(plain)
    y = codec.decode(chunk)
    assert np.max(np.abs(y.astype("f8") - x)) <= bound
    assert np.max(np.abs(codec.decode(plain).astype("f8") - x)) <= bound


def test_noise_chunk_falls_back_to_mode_3(tiny_model):
    # nearly flat: the mean predicts every value within the bound, the network cannot do better
    x = (260.0 + np.random.default_rng(0).normal(0, 0.05, (1, NLAT, NLON))).astype("f4")
    codec = COINppCodec(tiny_model, residual_coder="none", assume_global_grid=True, inner_steps=2, max_abs_error=0.5)
    chunk = codec.encode(x)
    hdr, sections = cf.unpack_chunk(chunk)
    assert hdr.mode == MODE_PLAIN_RESIDUAL and "latents" not in sections
    assert np.max(np.abs(codec.decode(chunk).astype("f8") - x)) <= 0.5


def test_bounded_mode_keeps_the_smallest_width(tiny_model, monkeypatch):
    x = smooth_field(2, seed=9).astype("f4")
    codec = COINppCodec(tiny_model, residual_coder="none", assume_global_grid=True, bits=6, inner_steps=2, max_abs_error=0.05)
    chunk = codec.encode(x)
    widths = [b for b in ratecontrol.candidate_bits(tiny_model) if b <= 6]
    monkeypatch.setattr(encode_module, "BOUNDED_TRIES", 1)  # one width at a time
    for b in widths:
        single = COINppCodec(tiny_model, residual_coder="none", assume_global_grid=True, bits=b, inner_steps=2, max_abs_error=0.05).encode(x)
        assert len(chunk) <= len(single)


def test_mode_3_needs_version_3():
    hdr = ChunkHeader(model_sha256="ab" * 32, dtype="<f4", shape=(1, 2), order="C", mode=3,
                         patch_shape=(), num_items=1, num_patches=1, latent_dim=1, bits=0,
                         quantizer_id=0, entropy_id=0)
    with pytest.raises(ValueError, match="version 3"):
        cf.pack_chunk(hdr, {"residual": b"r", "prediction": b"p" * 8})


# ------------------------------------------------------------------ encode-time refinement
def test_refine_steps_reach_the_engine_and_the_config(tiny_model):
    x = smooth_field(2, seed=4).astype("f4")
    codec = COINppCodec(tiny_model, residual_coder="none", assume_global_grid=True, bits=8, inner_steps=2, refine_steps=5,
                        quantizer="uniform")
    assert codec.get_config()["refine_steps"] == 5 and "refine_steps" not in COINppCodec(tiny_model, residual_coder="none", assume_global_grid=True).get_config()
    assert COINppCodec.from_config(codec.get_config()) == codec
    y = codec.decode(codec.encode(x))
    grid, q = tiny_model.make_grid(x.shape[1:]), tiny_model.quantizer(8)
    lat = tiny_model.encode(x, grid, steps=2, refine_steps=5, fit=codec.settings.effort)
    ref = tiny_model.decode(q.dequantize(q.quantize(lat.reshape(-1, lat.shape[-1]))).reshape(lat.shape), grid)
    np.testing.assert_array_equal(y, ref.astype("f4"))
    plain = COINppCodec(tiny_model, residual_coder="none", assume_global_grid=True, bits=8, inner_steps=2)
    assert not np.array_equal(plain.decode(plain.encode(x)), y)  # the refinement changed the fit
    with pytest.raises(ValueError, match="refine_steps"):
        COINppCodec(tiny_model, residual_coder="none", assume_global_grid=True, refine_steps=-1)


def test_one_chooser_keeps_the_chunk_each_target_asks_for():
    """``choose``: the fewest bytes that meet an RMSE target, the lowest RMSE within a ratio,
    the fewest bytes without a target; where nothing meets the target, the closest; ties keep
    the earlier candidate."""
    from inrcodec.chunkcodec.choose import Candidate, choose

    nbytes = 12000
    c = [Candidate(b"a" * 240, 1.0), Candidate(b"b" * 150, 1.5), Candidate(b"c" * 100, 2.5), Candidate(b"d" * 150, 1.5)]
    assert choose(c, nbytes, target_ratio=70.0) == 1  # 80x and 120x meet it: the lower RMSE (the earlier of equals)
    assert choose(c, nbytes, target_ratio=500.0) == 2  # none meets it: the highest ratio
    assert choose(c, nbytes, target_rmse=2.0) == 1  # 1.0 and 1.5 meet it: the fewer bytes
    assert choose(c, nbytes, target_rmse=0.5) == 0  # none meets it: the lowest RMSE
    assert choose(c) == 2 and choose(c[:2] + c[3:]) == 1
    nan = Candidate(b"e" * 50)  # RMSE not measured: meets no RMSE target
    assert choose([nan, *c], nbytes, target_rmse=2.0) == 2
    with pytest.raises(ValueError):
        choose([])
    with pytest.raises(ValueError):
        choose(c, nbytes, target_rmse=1.0, target_ratio=10.0)
