"""Chunks written by older builds (format versions 1 and 2) still decode, and the legacy writer
still produces them byte for byte. Fixtures: tests/data/golden_v1v2 (see make_golden.py there)."""
import json

import numpy as np
import pytest

from inrcodec import COINppCodec
from inrcodec import chunkformat as cf
from inrcodec.chunkformat.header import MODE_RAW, V3_PREFIX
from inrcodec.models.model import CoinModel
from inrcodec.chunkcodec.residual import cross_machine_tolerance
from helpers import TESTS

DATA = TESTS / "data" / "golden_v1v2"
MANIFEST = json.loads((DATA / "manifest.json").read_text())
NAMES = sorted(MANIFEST["chunks"])


@pytest.fixture(scope="module")
def golden_model():
    return CoinModel.load(DATA / "model.safetensors", expected_sha256=MANIFEST["model_sha256"])


@pytest.fixture(scope="module")
def arrays():
    with np.load(DATA / "arrays.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.mark.parametrize("name", NAMES)
def test_legacy_chunk_parses_and_repacks_byte_for_byte(name):
    chunk = (DATA / f"{name}.bin").read_bytes()
    hdr, sections = cf.unpack_chunk(chunk, expected_model_sha256=MANIFEST["model_sha256"])
    assert chunk[4] == MANIFEST["chunks"][name]["version"] and hdr.pin is None
    assert cf.pack_chunk(hdr, sections) == chunk


@pytest.mark.parametrize("name", NAMES)
def test_legacy_chunk_decodes_to_the_recorded_values(name, golden_model, arrays):
    settings = MANIFEST["chunks"][name]["settings"]
    codec = COINppCodec(golden_model, **settings)
    y = codec.decode((DATA / f"{name}.bin").read_bytes())
    x, expected = arrays[f"{name}_input"], arrays[f"{name}_decoded"]
    assert y.dtype == expected.dtype and y.shape == expected.shape
    assert y.flags.f_contiguous == expected.flags.f_contiguous
    np.testing.assert_array_equal(np.isnan(y), np.isnan(expected))
    mode = cf.unpack_chunk((DATA / f"{name}.bin").read_bytes())[0].mode
    if mode == MODE_RAW:
        np.testing.assert_array_equal(y, x)
    else:  # network output, recorded on another machine: the cross-machine promise (docs/reliability.md)
        np.testing.assert_allclose(y, expected, rtol=0, atol=cross_machine_tolerance(expected))
    if "max_abs_error" in settings:
        assert np.nanmax(np.abs(y.astype("f8") - x)) <= settings["max_abs_error"]
    if "fill_value" in settings:
        np.testing.assert_array_equal(y == settings["fill_value"], x == settings["fill_value"])


def test_new_chunks_are_version_3_and_decode_like_the_legacy_ones(golden_model, arrays):
    # the coding of versions 1-3 (uniform quantizer, the model's patches): version 3
    codec = COINppCodec(golden_model, bits=6, inner_steps=3, assume_global_grid=True, quantizer="uniform",
                        patch_points=None, effort="full")
    x = arrays["v1_modulations_input"]
    chunk = codec.encode(x)
    assert chunk[:2] == V3_PREFIX
    legacy = (DATA / "v1_modulations.bin").read_bytes()
    # same latents, denser header: the payload is identical and the overhead shrinks
    assert cf.unpack_chunk(chunk)[1]["latents"] == cf.unpack_chunk(legacy)[1]["latents"]
    assert len(chunk) < len(legacy) - 90
    np.testing.assert_array_equal(codec.decode(chunk), codec.decode(legacy))
