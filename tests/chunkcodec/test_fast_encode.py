"""Issue 30: the fast encoder (``effort="fast"``, the default) and what measures it.

The hand-written latent gradient takes autograd's steps; the fast fit (the chunk mean first, then a
few steps per item on a regular subset of each patch's points) covers masked patches; the fast
search keeps what the exhaustive one promises (never larger than SPERR alone, a bits chunk at
least as accurate as the network at ``bits``, about as accurate where 2 items stand for a large
chunk, every bound); stored configurations keep the full
encoder; and the stage timer says where an encode's time went."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from conftest import NLAT, NLON, global_lat_lon, smooth_field

from inrcodec import COINppCodec, CodecSettings
from inrcodec import chunkformat as cf
from inrcodec.chunkcodec import hybrid
from inrcodec.chunkcodec.timing import stage, stage_times
from inrcodec.chunkformat.header import MODE_MODULATIONS, MODE_WAVELET
from inrcodec.models.fitting import fit_chunk, fit_modulations, fit_subset, inner_loop, per_item_mse, reconstruct
from inrcodec.models.network import ModulatedSiren

LAT, LON = global_lat_lon()


def _values(n=5, p=48, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (p, 3)).astype(np.float32)
    phase = rng.uniform(0, 3, size=(n, 1, 1)).astype(np.float32)
    return x, (0.5 + 0.4 * np.sin(3 * x[None, :, :1] + phase)).astype(np.float32)


# ------------------------------------------------------------------ the inner loop by hand
@pytest.mark.parametrize("meta_sgd", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_hand_written_steps_take_autograds_steps(meta_sgd, masked):
    torch.manual_seed(3)
    net = ModulatedSiren(3, 1, width=24, depth=3, latent_dim=6, w0_initial=20.0, meta_sgd=meta_sgd)
    x, y = _values()
    mask = None
    if masked:
        mask = np.random.default_rng(1).random(y.shape[:2]) > 0.3
        y = np.where(mask[..., None], y, 0.0).astype(np.float32)
    ours = fit_modulations(net, x, y, steps=4, lr=1e-2, mask=mask)
    with torch.enable_grad():
        ref = inner_loop(net, torch.as_tensor(x), torch.as_tensor(y), None if mask is None else torch.as_tensor(mask),
                         4, 1e-2, create_graph=False)
    torch.testing.assert_close(ours, ref.detach(), rtol=1e-4, atol=1e-5)
    assert ours.abs().max() > 1e-3  # the steps moved the latents


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's own, while it builds the kernel
@pytest.mark.parametrize("masked", [False, True])
def test_the_compiled_step_takes_the_eager_steps(monkeypatch, masked):
    """``INRCODEC_COMPILE_FIT``: the inner loop as one compiled kernel per step fits the latents the
    eager loop fits (rounding apart), masked or not, Meta-SGD rates and the loss check included."""
    from inrcodec.models import fitting

    torch.manual_seed(3)
    net = ModulatedSiren(3, 1, width=24, depth=3, latent_dim=6, w0_initial=20.0, meta_sgd=True)
    x, y = _values(n=6)
    mask = np.random.default_rng(1).random(y.shape[:2]) > 0.3 if masked else None
    eager = fit_modulations(net, x, y, steps=6, mask=mask, min_steps=2)
    monkeypatch.setattr(fitting, "_FUSED_FAILED", [])
    monkeypatch.setenv(fitting.COMPILE_ENV, "1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fused = fit_modulations(net, x, y, steps=6, mask=mask, min_steps=2)
    if fitting._FUSED_FAILED:
        pytest.skip(f"torch.compile cannot build kernels here: {fitting._FUSED_FAILED[0]!r}")
    torch.testing.assert_close(fused, eager, rtol=1e-4, atol=1e-5)
    assert eager.abs().max() > 1e-3


def test_a_compiled_step_that_fails_falls_back_to_the_eager_loop(monkeypatch):
    """Without a compiler (or a torch that cannot build the kernel) the fit says so once and runs
    the eager loop, the same latents."""
    from inrcodec.models import fitting

    torch.manual_seed(0)
    net = ModulatedSiren(3, 1, width=16, depth=2, latent_dim=4)
    x, y = _values(n=3)
    eager = fit_modulations(net, x, y, steps=3)

    def no_compiler():
        def step(*args):
            raise RuntimeError("no C++ compiler")
        return step

    monkeypatch.setattr(fitting, "_FUSED_FAILED", [])
    monkeypatch.setattr(fitting, "_compiled_step", no_compiler)
    monkeypatch.setenv(fitting.COMPILE_ENV, "1")
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler.*eager"):
        first = fit_modulations(net, x, y, steps=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once: the next fit is eager without a word
        again = fit_modulations(net, x, y, steps=3)
    assert torch.equal(first, eager) and torch.equal(again, eager)


@pytest.mark.parametrize("masked", [False, True])
def test_bfloat16_products_take_about_the_float32_steps(monkeypatch, masked):
    """``INRCODEC_FIT_PRODUCTS=bfloat16`` (the default on a CPU that multiplies bfloat16 natively):
    the inner loop's hidden-layer products in bfloat16 fit other latents than float32's, by their
    rounding only, and leave about the same error."""
    from inrcodec.models import fitting

    torch.manual_seed(3)
    net = ModulatedSiren(3, 1, width=24, depth=3, latent_dim=6, w0_initial=20.0)
    x, y = _values(n=6)
    mask = np.random.default_rng(1).random(y.shape[:2]) > 0.3 if masked else None
    m = None if mask is None else torch.as_tensor(mask)
    fits, errors = {}, {}
    for precision in ("float32", "bfloat16"):
        monkeypatch.setenv(fitting.FIT_PRODUCTS_ENV, precision)
        fits[precision] = fit_modulations(net, x, y, steps=6, lr=0.3, mask=mask, min_steps=2)
        with torch.no_grad():
            errors[precision] = per_item_mse(net(torch.as_tensor(x), fits[precision]), torch.as_tensor(y), m)
    assert not torch.equal(fits["bfloat16"], fits["float32"])  # the bfloat16 loop ran
    torch.testing.assert_close(fits["bfloat16"], fits["float32"], rtol=0.05, atol=0.02 * fits["float32"].abs().max())
    with torch.no_grad():
        start = per_item_mse(net(torch.as_tensor(x), torch.zeros(6, 6)), torch.as_tensor(y), m)
    assert torch.all(errors["float32"] < 0.9 * start)  # the fit went somewhere worth matching
    torch.testing.assert_close(errors["bfloat16"], errors["float32"], rtol=0.02, atol=0.0)


def test_the_fit_products_follow_the_cpu_unless_the_environment_says(monkeypatch):
    """Unset, bfloat16 products where the CPU multiplies bfloat16 natively and float32 elsewhere
    (emulated bfloat16 is slower); ``float32`` or ``bfloat16`` in the environment overrides the CPU;
    anything else is a clear error, not a silent default."""
    from inrcodec.models import fitting

    monkeypatch.delenv(fitting.FIT_PRODUCTS_ENV, raising=False)
    for native in (True, False):
        monkeypatch.setattr(fitting, "_native_bfloat16", lambda native=native: native)
        assert fitting.bfloat16_products() is native
        assert fitting.bfloat16_products("cuda") is False  # measured on CPUs only
    torch.manual_seed(0)
    net = ModulatedSiren(3, 1, width=16, depth=2, latent_dim=4)
    x, y = _values(n=3)
    monkeypatch.setattr(fitting, "_native_bfloat16", lambda: True)
    native = fit_modulations(net, x, y, steps=3)
    monkeypatch.setenv(fitting.FIT_PRODUCTS_ENV, "float32")
    assert not torch.equal(fit_modulations(net, x, y, steps=3), native)
    monkeypatch.setenv(fitting.FIT_PRODUCTS_ENV, "bfloat16")
    monkeypatch.setattr(fitting, "_native_bfloat16", lambda: False)
    assert torch.equal(fit_modulations(net, x, y, steps=3), native)
    monkeypatch.setenv(fitting.FIT_PRODUCTS_ENV, "half")
    with pytest.raises(ValueError, match="INRCODEC_FIT_PRODUCTS must be 'bfloat16' or 'float32'"):
        fit_modulations(net, x, y, steps=3)


@pytest.mark.parametrize("options", [dict(bits=8, residual_coder="none"), dict(max_abs_error=0.05)])
def test_a_chunk_fitted_with_bfloat16_products_decodes_like_any_other(tiny_model, monkeypatch, options):
    """Only the encoder's search for latents changes with bfloat16 products: the chunk decodes with
    the float32 decoder, is as deterministic, reaches about float32's error at ``bits`` and keeps
    a bound at every value."""
    from inrcodec.models import fitting

    x = smooth_field(4, seed=5).astype("f4")
    codec = COINppCodec(tiny_model, lat=LAT, lon=LON, **options)
    chunks, errors = {}, {}
    for precision in ("float32", "bfloat16"):
        monkeypatch.setenv(fitting.FIT_PRODUCTS_ENV, precision)
        chunks[precision] = codec.encode(x)
        assert codec.encode(x) == chunks[precision]
        y = codec.decode(chunks[precision]).astype("f8")
        errors[precision] = (float(np.sqrt(np.mean((y - x) ** 2))), float(np.max(np.abs(y - x))))
    if "max_abs_error" in options:
        assert errors["bfloat16"][1] <= options["max_abs_error"]
    else:
        assert chunks["bfloat16"] != chunks["float32"]  # other latents, by rounding
        assert errors["bfloat16"][0] == pytest.approx(errors["float32"][0], rel=0.05)


def test_a_warm_start_continues_from_the_given_latents():
    torch.manual_seed(0)
    net = ModulatedSiren(3, 1, width=16, depth=2, latent_dim=4)
    x, y = _values(n=3)
    four = fit_modulations(net, x, y, steps=4)
    two_then_two = fit_modulations(net, x, y, steps=2, init=fit_modulations(net, x, y, steps=2))
    torch.testing.assert_close(four, two_then_two, rtol=1e-5, atol=1e-6)


def test_point_budgeted_batches_do_not_change_the_fit_or_the_decode():
    torch.manual_seed(0)
    net = ModulatedSiren(3, 1, width=16, depth=2, latent_dim=4)
    x, y = _values(n=6, p=40)
    one = fit_modulations(net, x, y, steps=3, max_points=10**6)
    many = fit_modulations(net, x, y, steps=3, max_points=40)  # one item per batch
    torch.testing.assert_close(one, many, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(reconstruct(net, one, x, max_points=10**6), reconstruct(net, one, x, max_points=40),
                               rtol=1e-5, atol=1e-6)


def test_items_step_on_while_a_step_gains(monkeypatch):
    from inrcodec.models import fitting

    torch.manual_seed(0)
    net = ModulatedSiren(3, 1, width=16, depth=2, latent_dim=4)
    x, y = _values(n=4)
    three, ten = fit_modulations(net, x, y, steps=3), fit_modulations(net, x, y, steps=10)
    monkeypatch.setattr(fitting, "STEP_GAIN", 1.0)  # no step gains that much: the minimum
    torch.testing.assert_close(fit_modulations(net, x, y, steps=10, min_steps=3), three)
    monkeypatch.setattr(fitting, "STEP_GAIN", -1.0)  # every step does: all of them
    torch.testing.assert_close(fit_modulations(net, x, y, steps=10, min_steps=3), ten)


# ------------------------------------------------------------------ the fast fit
@pytest.mark.parametrize("shape,min_points", [((16, 16), 64), ((16, 11), 64), ((48, 48), 64), ((200,), 64),
                                              ((8, 8, 8), 64), ((5, 7), 64)])
def test_the_fit_subset_is_regular_and_just_large_enough(shape, min_points):
    idx = fit_subset(shape, min_points)
    total = math.prod(shape)
    if idx is None:  # no regular subset with fewer points reaches min_points
        assert total <= 2 * min_points
        return
    assert min_points <= idx.size < total and len(set(idx.tolist())) == idx.size
    coords = np.stack(np.unravel_index(idx, shape), axis=-1)
    for axis in range(len(shape)):  # evenly spaced along every axis
        steps = np.diff(np.unique(coords[:, axis]))
        assert steps.size == 0 or (steps == steps[0]).all()
    assert idx.size < 2.5 * min_points or total < 4 * min_points


def test_fast_fit_reaches_masked_patches_the_regular_subset_misses():
    torch.manual_seed(0)
    net = ModulatedSiren(3, 1, width=16, depth=2, latent_dim=2)
    side = 8
    coords = np.random.default_rng(0).uniform(-1, 1, (2, side * side, 3)).astype(np.float32)  # 2 patches
    values = np.full((3, 2, side * side, 1), 0.9, np.float32)
    mask = np.zeros((3, 2, side * side), bool)
    mask[:, 0] = True
    mask[:, 1, :: side] = True  # patch 1: only the first column is valid
    assert not mask[0, 1][fit_subset((side, side), 8)].any()  # the regular subset sees none of it
    lat = fit_chunk(net, coords, values, mask, (side, side), steps=5).reshape(3, 2, -1)
    assert torch.all(lat[:, 1].abs().sum(dim=1) > 0)  # patch 1 was fitted, not left at zero
    zero = per_item_mse(net(torch.as_tensor(coords[1]), torch.zeros(1, 2)), torch.as_tensor(values[0, 1:2]),
                        torch.as_tensor(mask[0, 1:2]))
    fitted = per_item_mse(net(torch.as_tensor(coords[1]), lat[0, 1:2]), torch.as_tensor(values[0, 1:2]),
                          torch.as_tensor(mask[0, 1:2]))
    assert fitted < zero


def test_fast_fit_of_identical_items_is_the_mean_fit_continued(tiny_model):
    x = np.repeat(smooth_field(1), 3, axis=0)
    grid = tiny_model.make_grid((NLAT, NLON), lat=LAT, lon=LON)
    fast = tiny_model.encode(x, grid, steps=3, fit="fast")
    assert np.array_equal(fast[0], fast[1]) and np.array_equal(fast[0], fast[2])
    with pytest.raises(ValueError, match="fit must be one of"):
        tiny_model.encode(x, grid, fit="quick")


# ------------------------------------------------------------------ the setting
def test_new_codecs_are_fast_and_stored_configurations_keep_the_full_encoder(tiny_model):
    assert CodecSettings().effort == "fast" and CodecSettings.from_dict({"bits": 6}).effort == "full"
    codec = COINppCodec(tiny_model, lat=LAT, lon=LON, bits=4)
    assert codec.get_config()["effort"] == "fast"
    assert "effort" not in COINppCodec(tiny_model, lat=LAT, lon=LON, bits=4, effort="full").get_config()
    with pytest.raises(ValueError, match="effort"):
        CodecSettings(effort="quick")
    x = smooth_field(3).astype("f4")
    fast, full = codec, COINppCodec(tiny_model, lat=LAT, lon=LON, bits=4, effort="full")
    a, b = fast.encode(x), full.encode(x)
    assert a != b and fast.encode(x) == a  # another fit, deterministic
    for data in (a, b):  # both decode with either codec: the byte format is the same
        assert np.isfinite(full.decode(data)).all() and np.array_equal(fast.decode(data), full.decode(data))


# ------------------------------------------------------------------ the fast search
@pytest.mark.parametrize("options", [dict(bits=6), dict(bits=3), dict(target_ratio=40.0), dict(target_rmse=2.0),
                                     dict(max_abs_error=0.5)])
def test_the_fast_search_keeps_the_promises_of_the_full_one(tiny_model, options):
    x = smooth_field(4, seed=5).astype("f4")
    fast = COINppCodec(tiny_model, lat=LAT, lon=LON, **options)
    alone = COINppCodec(tiny_model, lat=LAT, lon=LON, residual_coder="none", **options)
    chunk = fast.encode(x)
    y = fast.decode(chunk).astype("f8")
    rmse = float(np.sqrt(np.mean((y - x) ** 2)))
    mode = cf.unpack_chunk(chunk)[0].mode
    if "bits" in options and "max_abs_error" not in options:  # at least as accurate as the network at bits
        net = alone.decode(alone.encode(x)).astype("f8")
        assert rmse <= float(np.sqrt(np.mean((net - x) ** 2))) * (1 + 1e-9) or mode == MODE_MODULATIONS
    if "target_ratio" in options:
        assert x.nbytes / len(chunk) >= options["target_ratio"]
    if "target_rmse" in options:
        assert rmse <= options["target_rmse"]
    if "max_abs_error" in options:
        assert np.max(np.abs(y - x)) <= options["max_abs_error"]


def test_sperr_search_stops_close_under_the_target(tiny_model):
    codec = COINppCodec(tiny_model, lat=LAT, lon=LON)
    x = smooth_field(4, seed=2).astype("f4")
    from inrcodec.chunkcodec.encode import _Chunk, _WaveletChunks, _Writer

    chunk = _Chunk(x, 2, None)
    waves = _WaveletChunks(_Writer(chunk, b"\0" * 4, None), chunk.items, np.ones(x.shape, bool))
    calls = []
    real = hybrid.wavelet.encode

    def counting(*args):
        calls.append(args[2])
        return real(*args)

    target = 1.0
    hybrid.wavelet.encode, before = counting, hybrid.wavelet.encode
    try:
        close = waves.at_rmse(None, 0, target, close=0.03)
        n_close = len(calls)
        calls.clear()
        full = waves.at_rmse(None, 0, target)
    finally:
        hybrid.wavelet.encode = before
    assert close is not None and full is not None and close[1] <= target and full[1] <= target
    assert len(calls) == hybrid.RATE_TRIES and n_close <= hybrid.RATE_SEARCH_TRIES
    assert close[1] >= 0.97 * target or n_close == hybrid.RATE_SEARCH_TRIES
    assert codec.settings.effort == "fast"


def _sperr_alone_candidates(x):
    from inrcodec.chunkcodec.encode import _Chunk, _WaveletChunks, _Writer

    chunk = _Chunk(x, 2, None)
    return _WaveletChunks(_Writer(chunk, b"\0" * 4, None), chunk.items, np.ones(x.shape, bool))


def test_a_ratio_payload_starts_at_the_rate_that_leaves_room_for_sperrs_fixed_bytes(monkeypatch):
    """At a ratio target SPERR writes its rate's bytes plus a fixed part (header, mean, ...): where
    a payload in a layout came out over its budget, the chunk's later payloads in that layout are
    first tried at the rate that leaves room for that part, and fit in one try what took two."""
    rng = np.random.default_rng(0)
    x = (smooth_field(8, 64, 128, seed=5) + rng.normal(0.0, 0.5, (8, 64, 128))).astype("f4")
    prediction = (x - 0.3 * smooth_field(8, 64, 128, seed=6)).astype("f8")
    calls = []
    real = hybrid.wavelet.encode
    monkeypatch.setattr(hybrid.wavelet, "encode", lambda *a: calls.append(a[2]) or real(*a))
    waves = _sperr_alone_candidates(x).payloads
    budget = x.nbytes // 40
    alone = waves.at_ratio(0, 40.0)
    assert alone is not None and len(alone[0]) <= budget and len(calls) == 2  # the first try came out over
    calls.clear()
    hybrid_first = waves.at_ratio(100, 40.0, prediction=lambda: prediction)
    assert len(calls) == 1 and 100 + len(hybrid_first[0]) <= budget
    calls.clear()
    unknown = _sperr_alone_candidates(x).payloads.at_ratio(100, 40.0, prediction=lambda: prediction)
    assert len(calls) == 2 and unknown[0] == hybrid_first[0]  # two tries to the same payload


def test_a_large_chunks_sperr_search_starts_where_its_items_meet_the_target(monkeypatch):
    """An RMSE target on a large chunk: SPERR alone is searched on the ``ESTIMATE_ITEMS`` items
    first, and the whole chunk's search starts at the rate that met the target there (its first
    try) and still meets it; a small chunk is searched as before."""
    from inrcodec.chunkcodec import encode

    x = smooth_field(8, seed=2).astype("f4")
    settings = CodecSettings(target_rmse=1.0)
    assert encode._ItemsAlone.of(_sperr_alone_candidates(x), 1.0) is None  # 8 items of NLAT x NLON: small
    monkeypatch.setattr(encode, "PROBE_MIN_ITEM_VALUES", NLAT * NLON)
    tries = []
    real = hybrid.wavelet.encode

    def counting(field, mode, rate, coder):
        tries.append((field.shape[0], rate))
        return real(field, mode, rate, coder)

    monkeypatch.setattr(hybrid.wavelet, "encode", counting)
    waves = _sperr_alone_candidates(x)
    items = encode._ItemsAlone.of(waves, 1.0)
    assert items is not None
    seeded = encode._fast_alone(settings, waves, items=items)
    on_items = [rate for n, rate in tries if n == encode.ESTIMATE_ITEMS]
    whole = [rate for n, rate in tries if n == 8]
    assert on_items and whole and whole[0] == items.payloads.rate_start  # the items' rate that met the target
    assert whole[0] != hybrid.WaveletCandidates.START_BPP
    assert seeded and all(found.rmse <= 1.0 for found, _ in seeded)
    tries.clear()
    unseeded = encode._fast_alone(settings, _sperr_alone_candidates(x))
    assert tries[0] == (8, hybrid.WaveletCandidates.START_BPP) and unseeded[0][0].rmse <= 1.0


def test_a_search_with_a_chunk_in_hand_starts_at_its_size_and_stops_at_a_miss(monkeypatch):
    """SPERR's rate only adds bits, so a try about the size of the chunk in hand that misses the
    target ends the search: one try, nothing found (where the search would otherwise start at a
    rate that meets the target and walk down from there)."""
    x = smooth_field(4, seed=2).astype("f4")
    found = _sperr_alone_candidates(x).at_rmse(None, 0, 3.0, close=0.03)
    assert found is not None and len(found[0]) < x.nbytes
    calls = []
    real = hybrid.wavelet.encode
    monkeypatch.setattr(hybrid.wavelet, "encode", lambda *a: calls.append(a[2]) or real(*a))
    waves = _sperr_alone_candidates(x)
    waves.rate_start = 8.0  # where a search would start: a rate that meets the target with a larger chunk
    assert waves.at_rmse(None, 0, 3.0, close=0.03, limit=len(found[0]) // 2) is None
    assert len(calls) == 1
    again = _sperr_alone_candidates(x).at_rmse(None, 0, 3.0, close=0.03, limit=len(found[0]) + 1)
    assert again is not None and len(again[0]) <= len(found[0]) and again[1] <= 3.0


@pytest.mark.parametrize("target", [dict(target_ratio=20.0), dict(target_rmse=2.0)], ids=["ratio", "rmse"])
@pytest.mark.parametrize("items", [8, 4])
def test_a_rate_search_probes_patch_sizes_on_a_few_items(patched_model, monkeypatch, items, target):
    """``target_ratio`` / ``target_rmse``: in a chunk of 8 items a patch size other than the
    hybrids' is fitted on ``ESTIMATE_ITEMS`` items first and dropped when those are outclassed,
    with the chunk that fitting every item at every patch size gives; a chunk of 4 is never probed."""
    from inrcodec.chunkcodec import encode
    from inrcodec.models import model as model_module

    lat, lon = global_lat_lon(32, 64)  # 5.6 degrees: the model's 4 x 4 patches, and larger aims
    x = smooth_field(items, 32, 64, seed=7).astype("f4")
    codec = COINppCodec(patched_model, lat=lat, lon=lon, **target)
    fits = []
    real = model_module.CoinModel.encode

    def counting(self, values, *args, **kwargs):
        fits.append((len(values), kwargs.get("patch_aim")))
        return real(self, values, *args, **kwargs)

    monkeypatch.setattr(model_module.CoinModel, "encode", counting)
    monkeypatch.setattr(encode, "OUTCLASSED", 1e-6)  # every network candidate is outclassed
    probed = codec.encode(x)
    aims = {aim for _, aim in fits}
    assert len(aims) > 1
    small = [aim for n, aim in fits if n == encode.ESTIMATE_ITEMS]
    whole = [aim for n, aim in fits if n == items]
    if items == 8:  # every aim but the hybrids' is probed and dropped, the hybrids' is fitted whole
        assert len(whole) == 1 and sorted(small + whole) == sorted(aims)
    else:
        assert not small and sorted(whole) == sorted(aims)
    monkeypatch.setattr(encode, "PROBE_SHARE", 10**6)  # no probes: every aim fitted on every item
    fits.clear()
    assert codec.encode(x) == probed and all(n == items for n, _ in fits)


def test_a_patch_size_probed_short_of_the_ratio_is_dropped(patched_model, monkeypatch):
    """``target_ratio`` beyond what a patch size's narrowest latents reach on the probe's items,
    where SPERR alone meets it: the size is dropped after its probe (before, a probe short of the
    ratio counted the network in the race and every size was fitted whole), with the chunk the
    search without that rule picks."""
    from inrcodec.chunkcodec import encode
    from inrcodec.models import model as model_module

    lat, lon = global_lat_lon(32, 64)
    x = smooth_field(8, 32, 64, seed=7).astype("f4")
    codec = COINppCodec(patched_model, lat=lat, lon=lon, target_ratio=600.0)
    fits, verdicts = [], []
    real_fit, real_probe = model_module.CoinModel.encode, encode._probe_outclassed

    def counting(self, values, *args, **kwargs):
        fits.append((len(values), kwargs.get("patch_aim")))
        return real_fit(self, values, *args, **kwargs)

    def probe(settings, model, fitted, aim, *args):
        verdicts.append((aim, real_probe(settings, model, fitted, aim, *args)))
        return verdicts[-1][1]

    monkeypatch.setattr(model_module.CoinModel, "encode", counting)
    monkeypatch.setattr(encode, "_probe_outclassed", probe)
    monkeypatch.setattr(encode, "PROBE_OUTCLASSED", 1e6)  # no RMSE is outclassed: only a shortfall drops a size
    probed = codec.encode(x)
    dropped = [aim for aim, out in verdicts if out]
    assert dropped and not [aim for n, aim in fits if n == 8 and aim in dropped]
    assert {aim for n, aim in fits if n == 8} == {aim for _, aim in fits} - set(dropped)
    monkeypatch.setattr(encode, "PROBE_SHORT", 1e6)  # no shortfall drops: the first probe counts the network in
    fits.clear()
    verdicts.clear()
    assert codec.encode(x) == probed
    assert len(verdicts) == 1 and not verdicts[0][1]
    assert {aim for n, aim in fits if n == 8} == {aim for _, aim in fits}


@pytest.mark.parametrize("margin,dropped", [(1.15, True), (1.25, False)])
def test_a_patch_size_whose_probe_pair_is_past_its_margin_is_not_fitted_whole(patched_model, monkeypatch, margin,
                                                                              dropped):
    """Within a ratio, a patch size whose probe pair reaches ``PROBE_OUTCLASSED`` times the best
    rival's RMSE is dropped before its whole fit: a pair at 1.2 times is dropped at 1.15 (the
    default) and was fitted whole, with every later size, at 1.25."""
    from inrcodec.chunkcodec import encode
    from inrcodec.models import model as model_module

    lat, lon = global_lat_lon(32, 64)
    x = smooth_field(8, 32, 64, seed=7).astype("f4")
    fits, verdicts, rivals = [], [], []
    real_fit, real_probe = model_module.CoinModel.encode, encode._probe_outclassed

    def counting(self, values, *args, **kwargs):
        fits.append((len(values), kwargs.get("patch_aim")))
        return real_fit(self, values, *args, **kwargs)

    def probe(settings, model, fitted, aim, writer, values, valid, found):
        rivals.append(min(e for _, e in found))
        verdicts.append((aim, real_probe(settings, model, fitted, aim, writer, values, valid, found)))
        return verdicts[-1][1]

    monkeypatch.setattr(model_module.CoinModel, "encode", counting)
    monkeypatch.setattr(encode, "_probe_outclassed", probe)
    monkeypatch.setattr(encode._ProbeFit, "rmse", lambda self, bits, values, valid: 1.2 * rivals[-1])
    monkeypatch.setattr(encode, "PROBE_SHORT", 1e6)  # no shortfall drops a size: only its RMSE
    if margin != encode.PROBE_OUTCLASSED:
        monkeypatch.setattr(encode, "PROBE_OUTCLASSED", margin)
    COINppCodec(patched_model, lat=lat, lon=lon, target_ratio=60.0).encode(x)
    assert verdicts and all(out is dropped for _, out in verdicts)
    whole = {aim for n, aim in fits if n == 8}
    assert not whole & {aim for aim, _ in verdicts} if dropped else len(verdicts) == 1 and verdicts[0][0] in whole


def test_bits_on_a_large_chunk_is_met_by_sperr_alone_from_the_probe_pair_where_it_outclasses_the_network(
        patched_model, monkeypatch):
    """``bits`` above ``patching.AUTO_MAX_BITS`` on a large chunk: where SPERR alone outclasses the
    network and every hybrid on the probe pair's own fit, it is coded at the RMSE the network
    reaches there, and the chunk is never fitted whole; where it does not, the chunk is what the
    search without the probe codes; small chunks and low widths are never probed."""
    from inrcodec.chunkcodec import encode
    from inrcodec.models import model as model_module

    lat, lon = global_lat_lon(32, 64)
    x = smooth_field(8, 32, 64, seed=7).astype("f4")
    fits, probes = [], []
    real_fit, real_probe = model_module.CoinModel.encode, encode._ProbeFit.__init__

    def counting(self, values, *args, **kwargs):
        fits.append(len(values))
        return real_fit(self, values, *args, **kwargs)

    def probing(self, *args, **kwargs):
        probes.append(args)
        real_probe(self, *args, **kwargs)

    monkeypatch.setattr(model_module.CoinModel, "encode", counting)
    monkeypatch.setattr(encode._ProbeFit, "__init__", probing)
    codec = COINppCodec(patched_model, lat=lat, lon=lon, bits=6)
    codec.encode(x)
    assert not probes and 8 in fits  # 8 items of 32 x 64 values: a small chunk
    monkeypatch.setattr(encode, "PROBE_MIN_ITEM_VALUES", 32 * 64)
    COINppCodec(patched_model, lat=lat, lon=lon, bits=encode.patching.AUTO_MAX_BITS).encode(x)
    assert not probes  # a low width
    fits.clear()
    chunk = codec.encode(x)
    assert probes and fits and set(fits) == {2} and cf.unpack_chunk(chunk)[0].mode == MODE_WAVELET
    pair = x[3:5]  # the probe pair: the network alone's RMSE there is the target (or lower, fitted moved)
    alone = COINppCodec(patched_model, lat=lat, lon=lon, bits=6, residual_coder="none")
    target = float(np.sqrt(np.mean((alone.decode(alone.encode(pair)).astype("f8") - pair) ** 2)))
    assert float(np.sqrt(np.mean((codec.decode(chunk).astype("f8") - x) ** 2))) <= target
    monkeypatch.setattr(encode, "PAIR_OUTCLASSED", 1e9)  # nothing is outclassed: the chunk is fitted whole
    fits.clear()
    fallback = codec.encode(x)
    assert 8 in fits
    monkeypatch.setattr(encode, "_alone_at_bits", lambda *args: None)
    assert codec.encode(x) == fallback  # the probe leaves no trace


@pytest.mark.parametrize("estimate,fitted_whole", [(1.2, True), (1.5, False), (2.5, False)])
def test_the_bits_probe_drops_hybrids_estimated_past_its_own_margin(patched_model, monkeypatch, estimate,
                                                                    fitted_whole):
    """The bits probe's hybrid estimates on the pair's own fit are close (``PAIR_OUTCLASSED``, not
    the rougher few-item estimates' ``HYBRID_OUTCLASSED``): a width estimated at 1.5 times SPERR
    alone no longer sends the chunk to a whole fit that ends in SPERR alone; one at 1.2 times does."""
    from inrcodec.chunkcodec import encode
    from inrcodec.models import model as model_module

    lat, lon = global_lat_lon(32, 64)
    x = smooth_field(8, 32, 64, seed=7).astype("f4")
    fits, real_fit = [], model_module.CoinModel.encode

    def counting(self, values, *args, **kwargs):
        fits.append(len(values))
        return real_fit(self, values, *args, **kwargs)

    monkeypatch.setattr(model_module.CoinModel, "encode", counting)
    monkeypatch.setattr(encode, "PROBE_MIN_ITEM_VALUES", 32 * 64)
    monkeypatch.setattr(encode._ProbeFit, "chunk_bytes", lambda self, bits: 1e6 if bits == 6 else 1.0)
    monkeypatch.setattr(encode._HybridProbe, "estimate", lambda self, bits, cap=None: estimate * self.alone)
    COINppCodec(patched_model, lat=lat, lon=lon, bits=6).encode(x)
    assert (8 in fits) is fitted_whole
    assert encode.PAIR_OUTCLASSED < 1.5 < encode.HYBRID_OUTCLASSED


def test_a_hybrid_estimate_stops_at_a_sperr_try_that_takes_it_past_its_cap(monkeypatch):
    """A hybrid width's probe only asks whether its estimate passes a cap (``PAIR_OUTCLASSED`` or
    ``HYBRID_OUTCLASSED`` times the chunk in hand): its SPERR search stops at a try that misses the
    target with a payload taking the estimate past the cap (SPERR's size only grows with its rate),
    a width whose latents alone pass it is not reconstructed, and the answer is the whole search's."""
    from types import SimpleNamespace

    from inrcodec.chunkcodec.encode import _Chunk, _HybridProbe, _WaveletChunks, _Writer

    rng = np.random.default_rng(0)
    x = (smooth_field(8, seed=3) + rng.normal(0.0, 0.3, (8, NLAT, NLON))).astype("f4")
    prediction = x + 0.1 * smooth_field(8, seed=4)  # a network that knows the data's noise, not all its scales
    chunk = _Chunk(x, 2, None)
    waves = _WaveletChunks(_Writer(chunk, b"\0" * 4, None), chunk.items, np.ones(x.shape, bool))
    target = 0.25
    alone = waves.at_rmse(None, 0, target, close=0.03).data
    tries, recons = [], []
    real_encode = hybrid.wavelet.encode
    monkeypatch.setattr(hybrid.wavelet, "encode", lambda *a: tries.append(a[2]) or real_encode(*a))
    pick = np.array([3, 4])

    def probe(latents):
        cands = SimpleNamespace(recon=lambda bits: recons.append(bits) or prediction[pick])
        return _HybridProbe(waves, None, 1, target, alone, SimpleNamespace(pick=pick, cands=cands,
                                                                          chunk_bytes=lambda bits: latents))

    uncapped = probe(0.0)
    whole = uncapped.estimate(4)
    assert whole is not None
    stopped = 0
    for latents in (0.0, 0.3 * whole):
        for cap in (0.5 * whole, 0.9 * whole, 1.1 * whole, 2.0 * whole):
            p = probe(latents)
            p._scale_of()
            tries.clear()
            capped = p.estimate(4, cap)
            n_capped = len(tries)
            reference = probe(latents)
            reference._scale_of()
            tries.clear()
            full = reference.estimate(4)
            assert (capped > cap) == (full > cap)
            assert n_capped <= len(tries)
            if capped == math.inf:
                assert n_capped == 1 < len(tries)
                stopped += 1
    assert stopped >= 2
    recons.clear()
    assert probe(2.0 * len(alone)).estimate(4, 1.5 * len(alone)) == math.inf and not recons

@pytest.mark.parametrize("coarse", [True, False])
def test_the_bits_probes_estimates_reuse_sperr_alone_on_the_pair_and_its_coarse_reconstruction(monkeypatch, coarse):
    """At ``bits`` SPERR alone is searched on the probe pair (the seed of the chunk's search), and the
    pair's hybrid estimates take their scale from that search instead of searching the pair again;
    they are made over the pair's coarse reconstruction where the chunk's hybrids may be coarse,
    over the full one where they may not. Other items than the pair's are searched for the scale."""
    from types import SimpleNamespace

    from inrcodec.chunkcodec.encode import _Chunk, _HybridProbe, _ItemsAlone, _WaveletChunks, _Writer

    x = smooth_field(8, seed=3).astype("f4")
    chunk = _Chunk(x, 2, None)
    waves = _WaveletChunks(_Writer(chunk, b"\0" * 4, None), chunk.items, np.ones(x.shape, bool), coarse=coarse)
    target = 0.25
    alone = waves.at_rmse(None, 0, target, close=0.03).data
    pick = np.array([3, 4])
    items = _ItemsAlone(waves, target, pick=pick)
    assert items.seed(1) is not None and items.found[1] > 0
    tries, recons = [], []
    real_encode = hybrid.wavelet.encode
    monkeypatch.setattr(hybrid.wavelet, "encode", lambda *a: tries.append(a[2]) or real_encode(*a))
    prediction = x + 0.1 * smooth_field(8, seed=4)
    cands = SimpleNamespace(recon=lambda bits: recons.append("full") or prediction[pick],
                            recon_coarse=lambda bits: recons.append("coarse") or prediction[pick])
    pair = SimpleNamespace(pick=pick, cands=cands, chunk_bytes=lambda bits: 10.0)
    probe = _HybridProbe(waves, None, 1, target, alone, pair, items)
    assert probe._scale_of() == len(alone) / items.found[1] and not tries  # no second search on the pair
    assert probe.estimate(4) is not None and tries
    assert recons == ["coarse" if coarse else "full"]
    tries.clear()
    others = _HybridProbe(waves, None, 1, target, alone, SimpleNamespace(pick=np.array([0, 7]), cands=cands,
                                                                         chunk_bytes=lambda bits: 10.0), items)
    assert others._scale_of() is not None and tries  # SPERR alone searched on those items


@pytest.mark.parametrize("options,large", [(dict(bits=6), True), (dict(target_ratio=200.0), True),
                                           (dict(target_ratio=200.0), False)])
def test_probe_pairs_of_large_items_are_fitted_on_fewer_points_than_the_chunk(patched_model, monkeypatch, options,
                                                                              large):
    """A probe pair (the bits probe, a patch size's probe within a ratio) only estimates: where its
    items are large it is fitted on ``PROBE_POINTS_PER_LATENT`` points per latent of each patch, a
    chunk (and a pair of small items, which the smaller subset took longer to fit) on
    ``fitting.FIT_POINTS_PER_LATENT``."""
    from inrcodec.chunkcodec import encode
    from inrcodec.models import fitting
    from inrcodec.models import model as model_module

    lat, lon = global_lat_lon(32, 64)
    x = smooth_field(8, 32, 64, seed=7).astype("f4")
    sizes, fits = [], []
    real_subset, real_encode = fitting.fit_subset, model_module.CoinModel.encode

    def recording(patch_shape, min_points):
        sizes.append(min_points)
        return real_subset(patch_shape, min_points)

    def encoding(self, values, *args, **kwargs):
        first = len(sizes)
        out = real_encode(self, values, *args, **kwargs)
        fits.append((len(values), set(sizes[first:])))
        return out

    if large:
        monkeypatch.setattr(encode, "PROBE_MIN_ITEM_VALUES", 32 * 64)
    monkeypatch.setattr(fitting, "fit_subset", recording)
    monkeypatch.setattr(model_module.CoinModel, "encode", encoding)
    COINppCodec(patched_model, lat=lat, lon=lon, **options).encode(x)
    k = patched_model.latent_dim
    assert any(n == 2 for n, _ in fits)
    for n, used in fits:
        probe = n == 2 and large
        assert used == {(encode.PROBE_POINTS_PER_LATENT if probe else fitting.FIT_POINTS_PER_LATENT) * k}
    assert encode.PROBE_POINTS_PER_LATENT < fitting.FIT_POINTS_PER_LATENT


@pytest.mark.parametrize("target", [1.0, 2.0, 4.0])
def test_an_rmse_search_reconstructs_only_widths_that_can_beat_the_chunk_in_hand(tiny_model, monkeypatch, target):
    """``target_rmse``: with a chunk that meets the target in hand (SPERR alone), a width whose chunk
    is no smaller, or whose RMSE on 2 items is ``OUTCLASSED``, is never reconstructed in full; the
    chunk is the one the unpruned search picks."""
    from inrcodec.chunkcodec import encode
    from inrcodec.chunkcodec.context import ChunkContext

    x = smooth_field(4, seed=5).astype("f4")
    codec = COINppCodec(tiny_model, lat=LAT, lon=LON, target_rmse=target)
    whole = []
    real = ChunkContext.reconstruct

    def counting(self, latents, *args, **kwargs):
        whole.append(np.shape(latents)[0] == x.shape[0])
        return real(self, latents, *args, **kwargs)

    monkeypatch.setattr(ChunkContext, "reconstruct", counting)
    pruned = codec.encode(x)
    n_pruned = sum(whole)
    monkeypatch.setattr(encode, "_rmse_choice_below", lambda s, m, c, w, v, va, limit: encode._choice_for(s, m, c, w, v, va))
    whole.clear()
    assert codec.encode(x) == pruned and sum(whole) > n_pruned


@pytest.mark.parametrize("setting", [{"bits": 6}, {"target_rmse": 2.0}])
def test_a_hybrid_width_the_probe_outclasses_is_never_reconstructed_whole(tiny_model, monkeypatch, setting):
    """An RMSE target (``bits`` sets it at the network's RMSE) in a chunk of 8 items: a hybrid width
    is first coded on ``ESTIMATE_ITEMS`` items, and one whose estimated chunk is ``HYBRID_OUTCLASSED`` by
    the chunk in hand (SPERR alone, for this untrained network) is not reconstructed over the whole
    chunk; the chunk is the one the unprobed search picks."""
    from inrcodec.chunkcodec import encode
    from inrcodec.chunkcodec.context import ChunkContext

    x = smooth_field(8, seed=5).astype("f4")
    # the plain stack, where this network's hybrids reach the probe (not so over the items' DCT)
    codec = COINppCodec(tiny_model, lat=LAT, lon=LON, sperr_item_dct=False, **setting)
    whole, verdicts = [], []
    real, outclassed = ChunkContext.reconstruct, encode._HybridProbe.outclassed

    def counting(self, latents, *args, **kwargs):
        whole.append(np.shape(latents)[0] == x.shape[0])
        return real(self, latents, *args, **kwargs)

    monkeypatch.setattr(encode, "PROBE_MIN_ITEM_VALUES", 0)  # the test grid's items are small
    monkeypatch.setattr(encode, "HYBRID_OUTCLASSED", 1.25)  # this untrained network: estimated within twice
    monkeypatch.setattr(ChunkContext, "reconstruct", counting)
    monkeypatch.setattr(encode._HybridProbe, "outclassed", lambda self, bits, limit: verdicts.append(
        outclassed(self, bits, limit)) or verdicts[-1])
    probed = codec.encode(x)
    n_probed = sum(whole)
    assert verdicts and all(verdicts)
    monkeypatch.setattr(encode._HybridProbe, "outclassed", lambda self, bits, limit: False)
    whole.clear()
    assert codec.encode(x) == probed and sum(whole) >= n_probed + len(verdicts)


def test_hybrid_probes_run_on_large_items_until_a_width_is_estimated_to_win(tiny_model, monkeypatch):
    from inrcodec.chunkcodec import encode

    x = smooth_field(8, seed=5).astype("f4")
    probed, real = [], encode._LatentCandidates.recon_items

    def spying(self, bits, items):
        probed.append(bits)
        return real(self, bits, items)

    monkeypatch.setattr(encode._LatentCandidates, "recon_items", spying)
    codec = COINppCodec(tiny_model, lat=LAT, lon=LON, bits=6)
    codec.encode(x)
    assert not [b for b in probed if b <= hybrid.HYBRID_MAX_BITS]  # items this small are not probed
    monkeypatch.setattr(encode, "PROBE_MIN_ITEM_VALUES", NLAT * NLON)
    codec.encode(x)
    assert [b for b in probed if b <= hybrid.HYBRID_MAX_BITS] == [4, 3, 2, 1]  # every width probed
    scale = encode._HybridProbe._scale_of
    monkeypatch.setattr(encode._HybridProbe, "_scale_of", lambda self: scale(self) and 0.0)  # estimates: latents alone
    probed.clear()
    codec.encode(x)
    assert [b for b in probed if b <= hybrid.HYBRID_MAX_BITS] == [4]  # the widest, estimated to win


def test_a_bounded_search_stops_at_the_first_residual_width_larger_than_the_one_before(tiny_model, monkeypatch):
    """``max_abs_error``, the fast search: the network's residual widths are tried from the
    narrowest up while their chunk falls; the first that is larger than the width before it ends
    them (past the valley), and the smallest is kept."""
    from inrcodec.chunkcodec import encode
    from inrcodec.chunkformat.header import MODE_BOUNDED

    x = smooth_field(4).astype("f4")
    codec = COINppCodec(tiny_model, lat=LAT, lon=LON, max_abs_error=0.5, residual_coder="none")
    widths = encode._bounded_widths(codec.settings, tiny_model)
    assert len(widths) >= 4
    sizes = {widths[0]: 5000, widths[1]: 4000, widths[2]: 4500}  # the valley at the second width
    tried, real = [], encode._Writer.latents

    def sized(self, cands, bits, mode=encode.MODE_MODULATIONS, extra=None):
        data = real(self, cands, bits, mode, extra)
        if mode != MODE_BOUNDED:
            return data
        tried.append(bits)
        return data + b"\0" * (sizes.get(bits, 100) - len(data))  # the later widths would be the smallest

    monkeypatch.setattr(encode._Writer, "latents", sized)
    monkeypatch.setattr(encode, "OUTCLASSED", math.inf)  # only the valley stops the widths
    monkeypatch.setattr(encode._Writer, "plain_residual", lambda self, *a, **k: b"\0" * 10**6)
    monkeypatch.setattr(encode._Writer, "raw", lambda self: b"\0" * 10**6)
    monkeypatch.setattr(encode, "_decodes_within", lambda *a: True)
    data = codec.encode(x)
    assert tried == widths[:3] and len(data) == 4000


def test_a_bounded_search_tries_hybrids_from_the_narrowest_up_until_one_is_larger_than_the_one_before(
        tiny_model, monkeypatch):
    """``max_abs_error`` with SPERR: the hybrid widths are tried from the narrowest up while their
    chunk falls; the first that is larger than the width before it ends them, and the smallest is
    kept."""
    from inrcodec.chunkcodec import encode
    from inrcodec.chunkformat.header import MODE_BOUNDED

    x = smooth_field(4).astype("f4")
    codec = COINppCodec(tiny_model, lat=LAT, lon=LON, max_abs_error=0.5)
    widths = encode.hybrid.hybrid_widths(tiny_model)
    assert len(widths) >= 4 and widths == sorted(widths)
    sizes = {widths[0]: 5000, widths[1]: 4000, widths[2]: 4500}  # the valley at the second width
    tried, real_latents, real_bound = [], encode._Writer.latents, encode._WaveletChunks.at_bound
    big = b"\0" * 10**6

    def at_bound(self, cands, bits, bound, coder=1):
        if cands is None:
            return big  # SPERR alone: a layout to code the hybrids in, no rival
        tried.append(bits)
        data = real_bound(self, cands, bits, bound, coder)
        return data + b"\0" * (sizes.get(bits, 100) - len(data))  # the later widths would be the smallest

    monkeypatch.setattr(encode._WaveletChunks, "at_bound", at_bound)
    monkeypatch.setattr(encode._Writer, "latents", lambda self, cands, bits, mode=encode.MODE_MODULATIONS, extra=None:
                        big if mode == MODE_BOUNDED else real_latents(self, cands, bits, mode, extra))
    monkeypatch.setattr(encode, "OUTCLASSED", math.inf)  # only the valley stops the widths
    for name in ("plain_residual", "raw"):
        monkeypatch.setattr(encode._Writer, name, lambda self, *a, **k: big)
    monkeypatch.setattr(encode, "_decodes_within", lambda *a: True)
    data = codec.encode(x)
    assert tried == widths[:3] and len(data) == 4000


def test_within_a_ratio_a_network_alone_candidate_far_from_the_best_is_not_reconstructed_whole(monkeypatch):
    """Within a ratio, a network-alone candidate is reconstructed whole only where its RMSE,
    estimated on a few items, is within ``NEAR_BEST`` of the best chunk measured once the hybrids
    are searched: the chunk is the one measuring every candidate picks, at fewer reconstructions,
    and a candidate estimated to be near is measured."""
    from inrcodec.chunkcodec import encode
    from inrcodec.datasets import embedded_sample

    da = embedded_sample("tas")  # real 2 m temperature, where the shipped network is in the race
    x = np.ascontiguousarray(da.values[:8], np.float32)
    # the plain stack, where network-alone candidates reach the deferral (not so over the items' DCT)
    codec = COINppCodec("t2m-global-2", lat=da.lat.values, lon=da.lon.values, target_ratio=400.0,
                        sperr_item_dct=False)
    whole, real = [], encode._network_alone
    monkeypatch.setattr(encode, "_network_alone", lambda *a: whole.append(a[1]) or real(*a))
    monkeypatch.setattr(encode, "PROBE_OUTCLASSED", math.inf)  # every patch size fitted whole: candidates to defer
    monkeypatch.setattr(encode, "NEAR_BEST", math.inf)
    every = codec.encode(x)
    measured = len(whole)
    whole.clear()
    monkeypatch.setattr(encode, "NEAR_BEST", 1.1)
    assert codec.encode(x) == every and measured > len(whole)
    whole.clear()
    estimate, estimated = encode._LatentCandidates.estimated_rmse, []  # every candidate estimated to be the best
    monkeypatch.setattr(encode._LatentCandidates, "estimated_rmse",
                        lambda *a: estimated.append(a[1]) or 1e-3 * estimate(*a))
    monkeypatch.setattr(encode, "OUTCLASSED", math.inf)  # and none dropped by another's estimate
    codec.encode(x)
    assert len(whole) == len(estimated) >= measured


def test_within_a_ratio_the_lower_max_error_wins_among_near_equal_rmses(patched_model, monkeypatch):
    """``target_ratio``: among the candidates within the ratio whose RMSE is within
    ``MAX_ERROR_MARGIN`` of the best, the one with the lowest maximum error is kept (issue 33)."""
    from inrcodec.chunkcodec import encode

    lat, lon = global_lat_lon(32, 64)
    x = smooth_field(4, 32, 64, seed=1).astype("f4")
    # the plain stack, whose candidates differ in maximum error here (not so over the items' DCT)
    codec = COINppCodec(patched_model, lat=lat, lon=lon, target_ratio=80.0, sperr_item_dct=False)

    def worst(chunk):
        return float(np.abs(codec.decode(chunk).astype("f8") - x).max())

    monkeypatch.setattr(encode, "MAX_ERROR_MARGIN", 0.0)  # the lowest RMSE, whatever its maximum error
    strict = codec.encode(x)
    monkeypatch.setattr(encode, "MAX_ERROR_MARGIN", 10.0)  # every candidate within the ratio is close
    loose = codec.encode(x)
    assert loose != strict and worst(loose) < worst(strict) and x.nbytes / len(loose) >= 80.0



@pytest.mark.parametrize("valid_min", [None, -1000.0])
def test_the_tie_break_reads_the_max_errors_the_search_measured_as_the_decoder_returns_them(
        patched_model, monkeypatch, valid_min):
    """The candidates a ratio search offers carry the maximum error of what the decoder returns,
    so the tie-break decodes none of them again; with a valid range (which the decoder clips to
    and the search does not) it decodes the close ones."""
    from inrcodec.chunkcodec import encode

    lat, lon = global_lat_lon(32, 64)
    x = smooth_field(4, 32, 64, seed=1).astype("f4")
    codec = COINppCodec(patched_model, lat=lat, lon=lon, target_ratio=80.0, valid_min=valid_min)
    offered, decoded = [], []
    real_tie_break, real_errors = encode._lower_max_error, encode._errors_of
    monkeypatch.setattr(encode, "MAX_ERROR_MARGIN", 10.0)  # every candidate within the ratio is close
    monkeypatch.setattr(encode, "_lower_max_error", lambda *a: offered.extend(a[3]) or real_tie_break(*a))
    monkeypatch.setattr(encode, "_errors_of", lambda *a: decoded.append(a[0]) or real_errors(*a))
    codec.encode(x)
    measured = [c for c in offered if not math.isnan(c.max_error)]
    assert len(measured) == len(offered) >= 2
    for c in measured:
        assert c.max_error == float(np.abs(codec.decode(c.data).astype("f8") - x).max())
    within = [c.data for c in offered if x.nbytes / len(c.data) >= 80.0]
    assert sorted(decoded) == ([] if valid_min is None else sorted(within))

# ------------------------------------------------------------------ the stage timer
def test_stage_times_say_where_an_encode_went(tiny_model):
    codec = COINppCodec(tiny_model, lat=LAT, lon=LON, bits=6)
    x = smooth_field(3).astype("f4")
    with stage("fit"):  # outside stage_times: nothing is collected, nothing breaks
        pass
    with stage_times() as seconds:
        data = codec.encode(x)
    assert {"fit", "reconstruct", "wavelet", "latents"} <= set(seconds)
    assert all(v >= 0 for v in seconds.values())
    with stage_times() as decode_seconds:
        codec.decode(data)
    assert "fit" not in decode_seconds


def test_a_ratio_bought_at_several_times_the_networks_error_is_said(tiny_model):
    """``target_ratio`` met by SPERR alone at ``COSTLY_TARGET`` times the RMSE of a network
    candidate short of the ratio warns with both (issue 33 item 4); within that, nothing is said."""
    from inrcodec.chunkcodec import encode, ratecontrol
    from inrcodec.chunkcodec.choose import Candidate
    from inrcodec.errors import TargetCostWarning

    settings = CodecSettings(target_ratio=1600.0)
    choices = [ratecontrol.TargetChoice(1, False, 653.0), None]  # the network at 1 bit: 653x, then SPERR alone
    for sperr_rmse, warned in ((9.98, True), (1.5 * 2.95, False)):
        tried = [Candidate(b"n" * 100, 2.95), Candidate(b"s" * 40, sperr_rmse)]
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            encode._warn_if_costly(settings, tiny_model, tried, choices, 1, 64_000)
        costly = [w for w in seen if issubclass(w.category, TargetCostWarning)]
        assert bool(costly) == warned
        if warned:
            assert "9.98" in str(costly[0].message) and "2.95" in str(costly[0].message) and "640x" in str(costly[0].message)


def test_a_bound_on_a_large_chunk_fits_the_network_only_where_its_probe_pair_can_win(patched_model, monkeypatch):
    """``effort="fast"``, an error bound, a large chunk the mean plus residual codes best so far:
    the network is fitted whole only where a width's chunk, estimated on the probe pair, comes
    within ``BOUNDED_PROBE_OUTCLASSED`` of it; the chunk is what the search without the probe codes.
    A field the network represents is still coded by it; small chunks are never probed; with a
    target, every bound tried is probed with the one pair, fitted once."""
    from inrcodec.chunkcodec import encode
    from inrcodec.chunkformat.header import MODE_BOUNDED, MODE_PLAIN_RESIDUAL
    from inrcodec.models import model as model_module

    lat, lon = global_lat_lon(32, 64)
    # nearly flat: the untrained network's own structure only adds to the residual (1.8 times the
    # mean's on the pair)
    flat = (250.0 + 0.05 * smooth_field(8, 32, 64, seed=7)).astype("f4")
    fits = []
    real_fit = model_module.CoinModel.encode

    def counting(self, values, *args, **kwargs):
        fits.append(len(values))
        return real_fit(self, values, *args, **kwargs)

    monkeypatch.setattr(model_module.CoinModel, "encode", counting)
    codec = COINppCodec(patched_model, lat=lat, lon=lon, bits=6, max_abs_error=0.05)
    small = codec.encode(flat)
    assert fits == [8]  # 8 items of 32 x 64 values: a small chunk, fitted whole
    # within a bound, items from BOUNDED_PROBE_MIN_ITEM_VALUES up are probed, fewer than other probes need
    assert encode.BOUNDED_PROBE_MIN_ITEM_VALUES < encode.PROBE_MIN_ITEM_VALUES
    monkeypatch.setattr(encode, "BOUNDED_PROBE_MIN_ITEM_VALUES", 32 * 64)
    fits.clear()
    chunk = codec.encode(flat)
    assert fits == [2] and cf.unpack_chunk(chunk)[0].mode == MODE_PLAIN_RESIDUAL and chunk == small
    monkeypatch.setattr(encode, "BOUNDED_PROBE_OUTCLASSED", 1e9)  # nothing outclassed: fitted whole
    fits.clear()
    assert codec.encode(flat) == chunk and fits == [2, 8]
    monkeypatch.setattr(encode, "BOUNDED_PROBE_OUTCLASSED", 1.15)
    x = smooth_field(8, 32, 64, seed=7).astype("f4")
    known = COINppCodec(patched_model, lat=lat, lon=lon, bits=6, residual_coder="none")
    y = known.decode(known.encode(x))  # a field the network represents: its residual chunk wins
    fits.clear()
    assert cf.unpack_chunk(codec.encode(y))[0].mode == MODE_BOUNDED and fits == [2, 8]
    probes = []
    real_probe = encode._network_outclassed_within
    monkeypatch.setattr(encode, "_network_outclassed_within", lambda *a: probes.append(a[2].cands) or real_probe(*a))
    with_target = COINppCodec(patched_model, lat=lat, lon=lon, bits=6, max_abs_error=0.2, target_rmse=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        chunk = with_target.encode(flat)
        assert len(probes) >= 2 and all(p is probes[0] for p in probes)  # tighter bounds, the same pair
        monkeypatch.setattr(encode, "_network_outclassed_within", lambda *a: False)
        assert with_target.encode(flat) == chunk


def test_a_bound_tries_sperr_alone_only_where_its_first_item_says_it_can_win(tiny_model, monkeypatch):
    """``effort="fast"``, an error bound, several items: SPERR alone (both layouts, each with its
    decode) is tried only where its first item's payload, times the items, is under
    ``ALONE_OUTCLASSED`` times the chunk's mean plus residual; the chunk is what the search that
    always tries it codes. Rough items (white noise, which SPERR's wavelets cannot shrink either
    way) keep trying it; a single item always does."""
    from inrcodec.chunkcodec import encode, hybrid

    calls = []
    real = hybrid.WaveletCandidates.at_bound

    def counting(self, bound, coder=1, prediction=None, exact=False):
        if prediction is None:
            calls.append(len(self.x64))
        return real(self, bound, coder, prediction, exact)

    monkeypatch.setattr(hybrid.WaveletCandidates, "at_bound", counting)
    # hourly-like items: a fixed small-scale detail (coasts, mountains) and drifting large scales,
    # which the earlier items' detail codes 4-5x smaller than SPERR alone
    lat, lon = np.meshgrid(np.linspace(-1.5, 1.5, 32), np.linspace(0.0, 2 * np.pi, 64, endpoint=False), indexing="ij")
    detail = np.random.default_rng(21).normal(0.0, 1.5, size=(32, 64))
    hourly = (np.stack([255.0 + 20.0 * np.cos(lat) + 3.0 * np.sin(lon + 0.2 * t) for t in range(8)]) + detail).astype("f4")
    rough = (260.0 + np.random.default_rng(4).normal(0.0, 3.0, hourly.shape)).astype("f4")
    codec = COINppCodec(tiny_model, inner_steps=1, assume_global_grid=True, max_abs_error=0.5)
    for x, skipped in ((hourly, True), (rough, False), (hourly[:1], False)):
        calls.clear()
        chunk = codec.encode(x)
        tried_alone = [n for n in calls if n == len(x)]
        assert (not tried_alone) == skipped and calls[0] == 1, calls  # (several items: the first one first)
        monkeypatch.setattr(encode, "_alone_outclassed_within", lambda *a: False)
        assert codec.encode(x) == chunk
        monkeypatch.undo()
        monkeypatch.setattr(hybrid.WaveletCandidates, "at_bound", counting)


def test_sample_rows_are_each_patchs_own_fixed_share_of_its_points():
    """:func:`_sample_rows`: ``count`` distinct points of each patch, ascending, a different choice
    per patch, every point position about equally often, from a fixed hash (the same rows again)."""
    from inrcodec.chunkcodec import encode

    rows = encode._sample_rows(500, 256, 64)
    assert rows.shape == (500, 64) and rows.dtype.kind == "i" and not rows.flags.writeable
    assert (np.diff(rows, axis=1) > 0).all() and rows.min() >= 0 and rows.max() < 256
    assert len({r.tobytes() for r in rows}) == 500
    picked = np.bincount(rows.ravel(), minlength=256)
    assert picked.min() > 0.5 * 500 / 4 and picked.max() < 1.5 * 500 / 4  # no position left out or favoured
    encode._sample_rows.cache_clear()
    np.testing.assert_array_equal(encode._sample_rows(500, 256, 64), rows)
    np.testing.assert_array_equal(encode._sample_rows(3, 5, 5), np.tile(np.arange(5), (3, 1)))


@pytest.mark.parametrize("masked", [False, True])
def test_a_sampled_rmse_is_the_rmse_on_every_point_and_near_it_on_a_share(patched_model, masked):
    """:meth:`_LatentCandidates.sampled_rmse` counts each grid point once (the overlapping edge
    patches' points only where the decoder keeps them): on every point it is :meth:`rmse`; on a
    quarter of them, close to it. ``CoinModel.decode_at`` is the decode at those points."""
    from inrcodec.chunkcodec import encode
    from inrcodec.chunkcodec.context import ChunkContext
    from inrcodec.chunkcodec.latents import LatentCoder

    lat, lon = global_lat_lon(45, 90)  # patches of 4 x 4 overlap at both grid edges
    x = (smooth_field(2, 45, 90, seed=3) + 2.0 * np.random.default_rng(3).standard_normal((2, 45, 90))).astype("f8")
    valid = np.ones(x.shape, bool)
    if masked:
        valid[:, 10:20, 30:70] = False
    ctx = ChunkContext(patched_model, tuple(lat), tuple(lon))
    grid = ctx.grid((45, 90))
    latents = patched_model.encode(x, grid, mask=valid, fit="fast")
    def fresh():
        return encode._LatentCandidates(ctx, LatentCoder(patched_model), latents.astype("f4"), (45, 90))

    cands = fresh()
    every, quarter = cands.sampled_rmse(6, x, valid, share=1), cands.sampled_rmse(6, x, valid, share=4)
    full = cands.rmse(6, x, valid)
    assert every == pytest.approx(full, rel=1e-5)
    assert quarter == pytest.approx(full, rel=0.1) and quarter != pytest.approx(full, rel=1e-4)
    assert cands.sampled_rmse(6, x, valid, share=4) == full  # the whole reconstruction in hand is used
    assert fresh().sampled_rmse(6, x, valid, share=4) == quarter  # the same points again
    points = math.prod(patched_model.partition(grid).patch_shape)
    deq = cands._coder.dequantize(cands.coded(6), 6).reshape(latents.shape)
    part = patched_model.partition(grid)
    rows = encode._sample_rows(part.num_patches, points, points // 4)
    at = patched_model.decode_at(deq, grid, rows)
    whole = part.extract(patched_model.decode(deq, grid)).reshape(2, part.num_patches, points)
    np.testing.assert_allclose(at, np.take_along_axis(whole, rows[None], axis=2), rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="do not fit"):
        patched_model.decode_at(deq, grid, rows[:-1])


@pytest.mark.parametrize("large", [True, False])
def test_a_large_probe_pair_measures_its_rmse_on_a_share_of_its_points(patched_model, monkeypatch, large):
    """The bits probe's pair on large items: its RMSE (the target SPERR alone is searched at, and
    own against moved) on ``PROBE_SAMPLE_SHARE``-th of each patch's points, never a whole
    reconstruction at ``bits``; on small items on every point."""
    from inrcodec.chunkcodec import encode
    from inrcodec.chunkcodec.context import ChunkContext

    lat, lon = global_lat_lon(32, 64)
    x = smooth_field(8, 32, 64, seed=7).astype("f4")
    sampled, whole = [], []
    real_at, real_recon = ChunkContext.reconstruct_at, ChunkContext.reconstruct
    monkeypatch.setattr(ChunkContext, "reconstruct_at",
                        lambda self, lat_, spatial, rows, aim=0: sampled.append((len(lat_), rows.shape))
                        or real_at(self, lat_, spatial, rows, aim))
    monkeypatch.setattr(ChunkContext, "reconstruct",
                        lambda self, lat_, spatial, aim=0: whole.append(len(lat_)) or real_recon(self, lat_, spatial, aim))
    monkeypatch.setattr(encode, "PROBE_MIN_ITEM_VALUES", 32 * 64 if large else 1 << 30)
    monkeypatch.setattr(encode, "PROBE_SHARE", 1)  # a pair is probed in small chunks too
    monkeypatch.setattr(encode, "_probed", lambda shape: True)
    COINppCodec(patched_model, lat=lat, lon=lon, bits=6).encode(x)
    if large:
        assert sampled and all(n == 2 and cols * encode.PROBE_SAMPLE_SHARE <= points < (cols + 1) *
                                   encode.PROBE_SAMPLE_SHARE for n, (patches, cols) in sampled
                               for points in [16])
    else:
        assert not sampled and 2 in whole


@pytest.mark.parametrize("large", [True, False])
def test_a_network_alone_estimate_on_large_items_reads_a_share_of_their_points(patched_model, monkeypatch, large):
    """Within a ratio, a network-alone candidate's RMSE is first estimated on ``ESTIMATE_ITEMS``
    items: on large items at ``PROBE_SAMPLE_SHARE``-th of each patch's points (the estimate
    decides only whether the whole reconstruction is paid for), on small ones on every point."""
    from inrcodec.chunkcodec import encode
    from inrcodec.chunkcodec.context import ChunkContext

    lat, lon = global_lat_lon(32, 64)
    x = smooth_field(8, 32, 64, seed=7).astype("f4")
    sampled = []
    real_at = ChunkContext.reconstruct_at
    monkeypatch.setattr(ChunkContext, "reconstruct_at",
                        lambda self, lat_, spatial, rows, aim=0: sampled.append((len(lat_), rows.shape[1]))
                        or real_at(self, lat_, spatial, rows, aim))
    estimates = []
    real_estimate = encode._LatentCandidates.estimated_rmse
    monkeypatch.setattr(encode._LatentCandidates, "estimated_rmse",
                        lambda self, *a: estimates.append(self) or real_estimate(self, *a))
    monkeypatch.setattr(encode, "PROBE_MIN_ITEM_VALUES", 32 * 64 if large else 1 << 30)
    monkeypatch.setattr(encode, "_probe_outclassed", lambda *a: False)  # no probe pair: the chunk's own fit
    COINppCodec(patched_model, lat=lat, lon=lon, target_ratio=30.0).encode(x)
    assert estimates and all(c.patches for c in estimates)
    if large:
        points = {math.prod(patched_model.partition(estimates[0]._ctx.grid((32, 64)), c.aim).patch_shape)
                  for c in estimates}
        assert sampled and all(n == 2 and any(cols == max(1, p // encode.PROBE_SAMPLE_SHARE) for p in points)
                               for n, cols in sampled)
    else:
        assert not sampled
