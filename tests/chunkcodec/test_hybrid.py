"""Format version 5 (issue 24): hybrid chunks (latents + SPERR-coded residual, mode 4) and
SPERR alone (mode 5); the per-chunk search over them; their guards against untrusted bytes."""
from __future__ import annotations

import struct
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from conftest import legacy_of
from golden_cases import codec_and_input

from inrcodec import COINppCodec, CodecSettings
from inrcodec import chunkformat as cf
from inrcodec.chunkformat.header import (
    ChunkHeader, KNOWN_MODES, MODE_HYBRID, MODE_HYBRID_COARSE, MODE_MODULATIONS, MODE_WAVELET,
)
from inrcodec.chunkcodec import residual
from inrcodec.chunkcodec import encode as enc
from inrcodec.chunkcodec import wavelet
from inrcodec.chunkcodec.context import ChunkContext, context
from inrcodec.errors import CorruptChunkError, TargetNotMetWarning
from helpers import with_crc

PIN = b"\x01\x02\x03\x04"


def _v5_header(mode=MODE_HYBRID, **kw):
    latents = mode == MODE_HYBRID
    return ChunkHeader(model_sha256=None, pin=PIN, dtype="<f4", shape=(2, 8, 16), order="C", mode=mode,
                          patch_shape=None, num_items=None, num_patches=None, latent_dim=None,
                          bits=3 if latents else 0, quantizer_id=2 if latents else 0,
                          entropy_id=3 if latents else 0, **kw)


def test_version5_layout_round_trips_and_keeps_one_way_per_header():
    sections = {"latents": b"\x10\x20", "wavelet": b"\x01sperr"}
    data = cf.pack_chunk(_v5_header(), sections)
    assert data[:2] == b"I\x05" and len(data) == 2 + 4 + 1 + 1 + 1 + 1 + 3 + 1 + 2 + 6 + 4
    hdr, back = cf.unpack_chunk(data)
    assert hdr == _v5_header() and back == sections and cf.chunk_mode(data) == MODE_HYBRID
    alone = cf.pack_chunk(_v5_header(MODE_WAVELET), {"wavelet": b"\x01abc"})
    assert cf.unpack_chunk(alone)[1] == {"wavelet": b"\x01abc"}
    with pytest.raises(ValueError, match="wavelet"):  # the wavelet section is the SPERR modes' alone
        cf.pack_chunk(_v5_header(MODE_WAVELET), {"wavelet": b"\x01", "latents": b""})
    with pytest.raises(ValueError, match="wavelet"):
        cf.pack_chunk(ChunkHeader(model_sha256=None, pin=PIN, dtype="<f4", shape=(2,), order="C", mode=0,
                                     patch_shape=None, num_items=None, num_patches=None, latent_dim=None,
                                     bits=3, quantizer_id=1, entropy_id=0), {"latents": b"", "wavelet": b""})
    with pytest.raises(ValueError, match="version 5"):  # no legacy (model hash) header for the new modes
        ChunkHeader(model_sha256="0" * 64, dtype="<f4", shape=(2,), order="C", mode=MODE_WAVELET,
                       patch_shape=(), num_items=0, num_patches=0, latent_dim=0, bits=0, quantizer_id=0, entropy_id=0)
    # a version-5 chunk naming mode 0 (a version-3/4 header) is refused
    body = bytearray(data[:-4])
    body[7] = MODE_MODULATIONS | 1 << 3
    with pytest.raises(CorruptChunkError):
        cf.unpack_chunk(with_crc(body))


def test_wavelet_payload_round_trips_and_leaves_out_the_wrapper_header():
    x = np.cumsum(np.random.default_rng(0).normal(size=(3, 8, 16)), axis=2)
    payload = wavelet.encode(x, "pwe", 0.01)
    assert payload[0] == wavelet.CODER_SPERR
    np.testing.assert_array_less(np.abs(wavelet.decode(payload, x.shape) - x), 0.01 + 1e-12)
    assert wavelet.field_shape((5, 40)) == (1, 5, 40)
    with pytest.raises(wavelet.WaveletError, match="dims"):
        wavelet.decode(payload, (2, 8, 16))


@pytest.mark.parametrize("name", ["hybrid", "wavelet", "coarse_hybrid"])
def test_golden_version5_chunks_keep_their_bound(name):
    codec, x = codec_and_input(name)
    data = codec.encode(x)
    assert data[:2] == b"I\x05"
    y = codec.decode(data)
    assert np.abs(y.astype("f8") - x).max() <= codec.settings.max_abs_error


@pytest.mark.parametrize("name,mode,network", [("hybrid", MODE_HYBRID, "reconstruct"),
                                               ("coarse_hybrid", MODE_HYBRID_COARSE, "reconstruct_coarse")])
def test_hybrid_decodes_within_the_promise_on_another_machine(monkeypatch, name, mode, network):
    """The decoder adds SPERR's residual to *its* prediction: another machine's network (off by
    the promised tolerance) moves the values by no more than that, and the bound still holds."""
    codec, x = codec_and_input(name)
    data = codec.encode(x)
    assert cf.chunk_mode(data) == mode
    here = codec.decode(data).astype("f8")
    tol = residual.cross_machine_tolerance(x)
    original = getattr(ChunkContext, network)
    for sign in (1.0, -1.0):
        monkeypatch.setattr(ChunkContext, network,
                            lambda self, *a, **k: original(self, *a, **k) + sign * tol)
        there = codec.decode(data).astype("f8")
        assert np.abs(there - here).max() <= tol + 2 * np.spacing(np.float32(np.abs(x).max()))
        assert np.abs(there - x).max() <= codec.settings.max_abs_error


def _sperr_alone(codec, x, **target):
    """The mode-5 chunk the search considers for ``x`` (what SPERR alone writes for the target)."""
    chunk = enc._Chunk(x, 2, None)
    writer = enc._Writer(chunk, context(codec.model, codec.settings).pin, None)
    waves = enc._WaveletChunks(writer, x, np.ones(x.shape, bool))
    if "target_ratio" in target:
        return waves.at_ratio(None, 0, target["target_ratio"])[0]
    close = enc.CLOSE_ENOUGH if codec.settings.effort == "fast" else 0.0  # the search of the codec's effort
    return waves.at_rmse(None, 0, target["target_rmse"], close=close)[0]


@pytest.mark.parametrize("target", [dict(target_rmse=0.3), dict(target_rmse=2.0), dict(target_ratio=4.0),
                                    dict(target_ratio=8.0)])
def test_search_is_never_larger_than_sperr_alone(tiny_model, target):
    from conftest import smooth_field

    x = smooth_field(2, seed=3).astype("f4")
    codec = COINppCodec(tiny_model, inner_steps=2, assume_global_grid=True, residual_coder="sperr", **target)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = codec.encode(x)
    alone = _sperr_alone(codec, x, **target)
    assert len(data) <= len(alone)
    err = np.sqrt(np.mean((codec.decode(data).astype("f8") - x) ** 2))
    if "target_rmse" in target:
        assert err <= target["target_rmse"]
    else:
        assert x.nbytes / len(data) >= target["target_ratio"]
        assert err <= np.sqrt(np.mean((codec.decode(alone).astype("f8") - x) ** 2))


def test_residual_coder_none_writes_what_earlier_builds_wrote(tiny_model):
    from conftest import smooth_field

    x = smooth_field(2, seed=3).astype("f4")
    kw = dict(inner_steps=2, assume_global_grid=True, target_rmse=0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = COINppCodec(tiny_model, residual_coder="none", **kw).encode(x)
    assert cf.chunk_mode(data) == MODE_MODULATIONS
    assert CodecSettings.from_dict({}).residual_coder == "none"  # a configuration written before the key
    assert CodecSettings().to_dict()["residual_coder"] == "sperr"  # the default, written explicitly
    assert "residual_coder" not in CodecSettings(residual_coder="none").to_dict()  # as earlier builds wrote
    with pytest.raises(ValueError, match="residual_coder"):
        CodecSettings(residual_coder="zfp")


@pytest.mark.parametrize("name", ["hybrid", "wavelet", "coarse_hybrid"])
def test_damaged_version5_chunks_raise_corrupt_chunk_error(name):
    codec, x = codec_and_input(name)
    data = codec.encode(x)
    for cut in range(len(data)):  # truncation: the CRC says so
        with pytest.raises(CorruptChunkError):
            codec.decode(data[:cut])
    hdr, sections = cf.unpack_chunk(data)
    stream = sections["wavelet"]
    rng = np.random.default_rng(0)
    for _ in range(30):  # damage behind a valid CRC: refused, or decoded to something of the chunk's shape
        bad = bytearray(stream)
        for i in rng.integers(0, len(bad), size=int(rng.integers(1, 4))):
            bad[i] = int(rng.integers(0, 256))
        try:
            y = codec.decode(cf.pack_chunk(hdr, {**sections, "wavelet": bytes(bad)}))
        except CorruptChunkError:
            continue
        assert y.shape == x.shape
    huge = bytearray(stream)
    huge[3:15] = struct.pack("<3I", 1 << 30, 1 << 30, 1 << 30)  # dims no chunk has: refused before SPERR
    for bad, why in ((bytes(huge), "dims"), (b"\x07" + stream[1:], "coder"), (stream[:5], "shorter")):
        with pytest.raises(CorruptChunkError, match=why):
            codec.decode(cf.pack_chunk(hdr, {**sections, "wavelet": bad}))


def test_store_info_reports_the_share_of_chunks_per_mode(tmp_path, tiny_model):
    import zarr

    from conftest import smooth_field
    from inrcodec import archive

    codec = COINppCodec(tiny_model, inner_steps=1, assume_global_grid=True, target_rmse=0.5, residual_coder="sperr")
    x = smooth_field(4, seed=5).astype("f4")
    root = zarr.open_group(tmp_path / "s.zarr", mode="w")
    arr = root.create_array("t", shape=x.shape, chunks=(2, *x.shape[1:]), dtype="f4", serializer=codec,
                            compressors=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arr[:] = x
    info = archive.store_info(tmp_path / "s.zarr")
    modes = info["variables"]["t"]["chunk_modes"]
    assert sum(modes.values()) == 2 and set(modes) <= set(KNOWN_MODES.values())
    assert "chunk modes" in archive.format_info(info)


def _volume_model():
    import torch

    from inrcodec.models.model import CoinModel
    from inrcodec.models.network import ModulatedSiren
    from inrcodec.training.calibration import calibrate

    torch.manual_seed(4)
    model = CoinModel(ModulatedSiren(3, 1, width=16, depth=2, latent_dim=8), "cartesian", patch_shape=(4, 4, 4),
                      offset=0.0, scale=1.0, encode_steps=2)
    train = np.random.default_rng(4).random((2, 8, 8, 8))
    calibrate(model, model.encode(train, model.make_grid((8, 8, 8)), steps=2))
    return model


def test_volumes_take_the_wavelet_modes():
    """3-D models (the mri recipe) get the hybrid and SPERR-alone chunks too: their volumes stacked
    along the first axis are one SPERR field, so an RMSE the network cannot reach is still met."""
    model = _volume_model()
    assert wavelet.field_shape((2, 4, 8, 16)) == (8, 8, 16)
    z, y, x_ = np.meshgrid(*[np.linspace(0, 3, 8)] * 3, indexing="ij")
    x = (0.5 + 0.4 * np.stack([np.sin(z + y) * np.cos(2 * x_), np.cos(z - x_) * np.sin(y)])).astype("f4")
    kw = dict(inner_steps=1, target_rmse=0.01)
    with pytest.warns(TargetNotMetWarning):
        alone = COINppCodec(model, residual_coder="none", **kw).encode(x)
    assert np.sqrt(np.mean((COINppCodec(model).decode(alone) - x) ** 2)) > 0.01  # the network cannot
    codec = COINppCodec(model, **kw)
    data = codec.encode(x)
    assert cf.chunk_mode(data) in (MODE_HYBRID, MODE_HYBRID_COARSE, MODE_WAVELET)
    y = codec.decode(data)
    assert y.shape == x.shape and np.sqrt(np.mean((y.astype("f8") - x) ** 2)) <= 0.01
    hdr, sections = cf.unpack_chunk(data)
    flat = bytearray(sections["wavelet"])  # a stream of the volumes' dims unstacked is not this chunk's
    flat[3:15] = struct.pack("<3I", 8, 8, 8)  # one volume, not the two stacked
    with pytest.raises(CorruptChunkError, match="dims"):
        codec.decode(cf.pack_chunk(hdr, {**sections, "wavelet": bytes(flat)}))


def test_many_small_images_are_coded_as_one_mosaic(cartesian_model):
    """Several items of a 2-D model may be tiled as one plane for SPERR (coder 2): small unrelated
    images leave a stack few wavelet levels, so the search keeps the mosaic, which decodes back to the
    items in order; the coders a chunk cannot use are refused."""
    assert wavelet.mosaic_grid(500, 28, 28) == (22, 23) and wavelet.mosaic_grid(3, 64, 8) == (1, 3) and wavelet.mosaic_grid(3, 8, 64) == (3, 1)
    assert wavelet.coders((1, 8, 16)) == wavelet.coders((5, 40)) == wavelet.coders((2, 4, 8, 16)) == (wavelet.CODER_SPERR,)
    rng = np.random.default_rng(7)
    yy, xx = np.meshgrid(np.linspace(0, 1, 16), np.linspace(0, 1, 16), indexing="ij")
    f = rng.uniform(1, 4, size=(50, 4))
    x = (0.5 + 0.2 * np.sin(f[:, :1, None] * 3 * yy + f[:, 1:2, None]) * np.cos(f[:, 2:3, None] * 3 * xx + f[:, 3:, None]))
    x = x.astype("f4")
    payload = wavelet.encode(x, "pwe", 0.01, wavelet.CODER_SPERR_MOSAIC)
    assert payload[0] == wavelet.CODER_SPERR_MOSAIC and wavelet.layout_shape(x.shape, 2) == (1, 7 * 16, 8 * 16)
    np.testing.assert_array_less(np.abs(wavelet.decode(payload, x.shape) - x), 0.01 + 1e-6)
    with pytest.raises(wavelet.WaveletError, match="coder 2"):
        wavelet.decode(payload, (1, 7 * 16, 8 * 16))  # one item: no mosaic
    codec = COINppCodec(cartesian_model, inner_steps=1, target_ratio=16.0)
    data = codec.encode(x)
    assert cf.unpack_chunk(data)[1]["wavelet"][0] == wavelet.CODER_SPERR_MOSAIC
    y = codec.decode(data)
    assert x.nbytes / len(data) >= 16.0
    waves = enc._WaveletChunks(enc._Writer(enc._Chunk(x, 2, None), b"\0" * 4, None), x, np.ones(x.shape, bool))
    stacked_rmse = waves.at_ratio(None, 0, 16.0, wavelet.CODER_SPERR).rmse
    assert np.sqrt(np.mean((y.astype("f8") - x) ** 2)) < stacked_rmse


@settings(max_examples=60, deadline=None)
@given(shape=st.lists(st.integers(1, 11), min_size=1, max_size=3),
       patch=st.lists(st.integers(1, 5), min_size=3, max_size=3))
def test_the_coarse_grid_reads_each_coarse_point_once_and_interpolates_linearly(shape, patch):
    """Mode 6's grid: every second point of each axis and the last, each read from the patch that
    keeps it; in between, linear in grid index (a field linear along every axis comes back exactly)."""
    from inrcodec.chunkcodec.coarse import CoarseGrid, coarse_index
    from inrcodec.grids import PatchPartition

    shape = tuple(shape)
    part = PatchPartition(shape, tuple(patch[: len(shape)]))
    grid = CoarseGrid.of(part)
    for n, idx in zip(shape, grid.index):
        assert idx.tolist() == sorted(set(range(0, n, 2)) | {n - 1})
        np.testing.assert_array_equal(coarse_index(n), idx)
    axes = np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij")
    field = 1.5 + sum((d + 1) * a for d, a in enumerate(axes))  # linear along each axis
    field = np.stack([field, -2.0 * field])
    at_rows = np.take_along_axis(part.extract(field).reshape(2, part.num_patches, -1), grid.rows[None], axis=2)
    coarse = grid.scatter(at_rows)
    np.testing.assert_array_equal(coarse, field[np.ix_(range(2), *grid.index)])
    np.testing.assert_allclose(grid.upsample(coarse), field, rtol=0, atol=1e-12)
    wavy = np.sin(3.0 * field)  # not linear: the coarse points keep their values, the others move
    kept = grid.upsample(wavy[np.ix_(range(2), *grid.index)])
    np.testing.assert_array_equal(kept[np.ix_(range(2), *grid.index)], wavy[np.ix_(range(2), *grid.index)])


def test_a_coarse_hybrid_decodes_the_network_on_the_coarse_grid_plus_sperrs_field():
    """Mode 6: the decoder's prediction is the network at the coarse points (the values a full
    reconstruction has there, up to the products' rounding), interpolated; ``y = dtype(recon + r)``."""
    from inrcodec.chunkcodec.coarse import CoarseGrid
    from inrcodec.chunkcodec.latents import LatentCoder

    codec, x = codec_and_input("coarse_hybrid")
    data = codec.encode(x)
    hdr, sections = cf.unpack_chunk(data)
    assert hdr.mode == MODE_HYBRID_COARSE and hdr.version == 5
    ctx = context(codec.model, codec.settings)
    n, spatial, k = x.shape[0], x.shape[1:], codec.model.latent_dim
    part = codec.model.partition(ctx.grid(spatial), hdr.patch_aim)
    latents = LatentCoder(codec.model).decompress(
        sections["latents"], bits=hdr.bits, quantizer_id=hdr.quantizer_id, entropy_id=hdr.entropy_id,
        count=n * part.num_patches, items=n, predict=hdr.predict).reshape(n, part.num_patches, k)
    coarse = ctx.reconstruct_coarse(latents, spatial, hdr.patch_aim)
    full = ctx.reconstruct(latents, spatial, hdr.patch_aim).reshape(x.shape)
    index = np.ix_(range(n), *CoarseGrid.of(part).index)
    np.testing.assert_allclose(coarse[index], full[index], rtol=1e-6, atol=1e-5)
    assert np.abs(coarse - full).max() > 1e-3  # between the coarse points it is not the network
    want = (coarse + wavelet.decode(sections["wavelet"], x.shape)).astype(x.dtype)
    np.testing.assert_array_equal(codec.decode(data), want)


def test_coarse_hybrids_are_tried_per_chunk_and_never_by_a_stored_configuration(monkeypatch):
    """``coarse_hybrid`` (on in new codecs, off in configurations without it): a chunk's first
    hybrid is coded over both predictions and the better one kept for its later hybrids; a field
    the coarse one follows gets mode 6, one the full network represents keeps mode 4."""
    codec, x = codec_and_input("coarse_hybrid")
    assert codec.settings.coarse_hybrid
    assert cf.chunk_mode(codec.encode(x)) == MODE_HYBRID_COARSE
    off = COINppCodec.from_config({**codec.get_config(), "coarse_hybrid": False})
    legacy = legacy_of(codec, "coarse_hybrid")
    assert cf.chunk_mode(off.encode(x)) != MODE_HYBRID_COARSE
    assert off.encode(x) == legacy.encode(x)
    represented, y = codec_and_input("hybrid")
    on = COINppCodec.from_config({**represented.get_config(), "coarse_hybrid": True})
    assert cf.chunk_mode(on.encode(y)) == MODE_HYBRID == cf.chunk_mode(represented.encode(y))
    decided = []
    real = enc._WaveletChunks._both_ways

    def watching(self, cands, search, better):
        before = self.coarse
        out = real(self, cands, search, better)
        decided.append((cands is not None, before, self.coarse))
        return out

    monkeypatch.setattr(enc._WaveletChunks, "_both_ways", watching)
    codec.encode(x)
    hybrids = [(b, a) for is_hybrid, b, a in decided if is_hybrid]
    assert hybrids[0] == (None, True) and all(b is True for b, _ in hybrids[1:])


@pytest.mark.parametrize("ndim", [1, 2, 3])
@pytest.mark.parametrize("masked", [False, True])
def test_coarse_hybrids_keep_the_bound_on_cartesian_models_of_every_rank(ndim, masked):
    """Mode 6 on 1-D (audio), 2-D (images) and 3-D (volumes) models, with missing values: a field
    its coarse reconstruction follows gets it, decodes within the bound, its NaNs where they were."""
    import torch

    from inrcodec.models.model import CoinModel
    from inrcodec.models.network import ModulatedSiren
    from inrcodec.training.calibration import calibrate

    torch.manual_seed(4)
    model = CoinModel(ModulatedSiren(ndim, 1, width=16, depth=2, latent_dim=8), "cartesian", patch_shape=(4,) * ndim,
                      offset=0.0, scale=1.0, encode_steps=2)
    shape = {1: (64,), 2: (8, 16), 3: (8, 8, 8)}[ndim]
    calibrate(model, model.encode(np.random.default_rng(4).random((2,) + shape), model.make_grid(shape), steps=2))
    ctx = ChunkContext(model, None, None)
    x = (0.5 + 0.3 * np.sin(np.linspace(0, 6, int(np.prod(shape))))).reshape(shape)[None].repeat(2, 0)
    fit = model.encode(x, ctx.grid(shape), steps=2)
    x = (ctx.reconstruct_coarse(fit, shape) + np.random.default_rng(1).normal(0, 0.01, x.shape)).astype("f4")
    if masked:
        x.reshape(2, -1)[0, :5] = np.nan
    # (layout 1's residual sections: compact ones make the mean plus residual smaller on these tiny fields)
    codec = COINppCodec(model, inner_steps=2, max_abs_error=0.01, residual_compact=False)
    data = codec.encode(x)
    assert cf.chunk_mode(data) == MODE_HYBRID_COARSE
    y = codec.decode(data)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(x))
    assert np.nanmax(np.abs(y.astype("f8") - x)) <= 0.01


def test_sperr_alone_within_a_bound_is_tried_at_the_bound_itself_first(monkeypatch):
    """``sperr_exact_bound`` (new codecs: on; stored configurations without it: off, and their
    bytes): SPERR alone is first coded at the bound itself, then 1/64 under it where this machine's
    decode of that misses; every chunk keeps the bound."""
    codec, x = codec_and_input("wavelet")
    assert not codec.settings.sperr_exact_bound  # a stored configuration: the golden bytes
    old = codec.encode(x)
    exact = COINppCodec.from_config({**codec.get_config(), "sperr_exact_bound": True})
    tolerances = []
    real = wavelet.encode
    monkeypatch.setattr(wavelet, "encode", lambda field, mode, q, coder=wavelet.CODER_SPERR:
                        tolerances.append((mode, q)) or real(field, mode, q, coder))
    new = exact.encode(x)
    bound = codec.settings.max_abs_error
    assert cf.chunk_mode(new) == cf.chunk_mode(old) == MODE_WAVELET and new != old  # (SPERR's size is not
    # monotone in its tolerance: here 274 B against 273; over the validation sets the bound itself saved bytes)
    assert ("pwe", bound) in tolerances
    for data in (old, new):
        assert np.abs(exact.decode(data).astype("f8") - x).max() <= bound
    tolerances.clear()
    monkeypatch.setattr(enc.hybrid.WaveletCandidates, "decoded",
                        lambda self, payload, recon=None: self.x64 + 2.0 * bound)  # no decode within the bound
    assert exact.encode(x) != new
    assert [q for m, q in tolerances if m == "pwe"][:2] == [bound, bound * (1 - residual.MARGIN)]
