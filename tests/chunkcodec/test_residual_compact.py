"""Residual section layout 2: varint fields and lengths, the step as its margin exponent, zigzag escapes."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_residual_context import new_and_legacy_sections
from test_residual_fine_step import rough

from inrcodec.chunkcodec import residual
from inrcodec.chunkformat import varint

_ALL = dict(interpolation=True, item_detail=True, context=True, levels=True, cubic=True)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-(2**50), 2**50), max_size=40))
def test_zigzag_varints_give_back_every_code(values):
    v = np.array(values, dtype=np.int64)
    packed = residual._pack_zigzag(v)
    np.testing.assert_array_equal(residual._unpack_zigzag(packed, v.size, "codes"), v)
    assert len(packed) <= 8 * v.size and len(packed) >= v.size


@pytest.mark.parametrize("data, n", [(b"\x80", 1), (b"\x80\x00", 1), (b"\x05\x05", 1), (b"\x81" * 8 + b"\x01", 1),
                                     (b"\x80\x80", 0), (b"", 1)])
def test_zigzag_varints_that_are_cut_padded_overlong_or_too_many_are_refused(data, n):
    with pytest.raises(residual.ResidualError):
        residual._unpack_zigzag(data, n, "codes")


@pytest.mark.parametrize("spikes, bound, exact", [(True, 0.02, True), (False, 0.5, True), (True, 0.5, False)])
def test_a_compact_section_decodes_to_what_layout_1_decodes_in_fewer_bytes(spikes, bound, exact):
    """The same step and decoded values in layout 2, about 40-70 bytes fewer: the count, the
    exceptions' number and the blobs' lengths as varints, the step as its exponent, the escapes as
    zigzag varints (spikes' codes are escaped)."""
    x = rough()
    if spikes:
        x[0, 5, 5] += 400.0
        x[0, 20, 30] -= 300.0
    valid = np.ones(x.shape, bool)
    recon = np.full(x.shape, float(x.mean()))
    kw = dict(_ALL, exact_recon=exact, fine_step=exact)
    one = residual.encode_residual(x, recon, valid, bound, x.dtype, **kw)
    two = residual.encode_residual(x, recon, valid, bound, x.dtype, compact=True, **kw)
    i1, i2 = residual.residual_info(one.payload), residual.residual_info(two.payload)
    assert (i1["version"], i2["version"]) == (1, residual.LAYOUT_COMPACT)
    same = ("bound", "step", "count", "num_exceptions")  # (the cheaper escapes may rank another coder first)
    assert {k: i1[k] for k in same} == {k: i2[k] for k in same}
    assert len(one.payload) - len(two.payload) >= 40
    assert bool(residual.read_section(two.payload, x.size, x.dtype, exact=exact).escapes) == spikes
    y1 = residual.decode_residual(one.payload, recon, x.dtype, exact=exact)
    y2 = residual.decode_residual(two.payload, recon, x.dtype, exact=exact)
    np.testing.assert_array_equal(y1, y2)
    assert np.abs(y2.astype("f8") - x).max() <= bound


def _compact(bound=0.5, exact=True):
    x = rough()
    recon = np.full(x.shape, float(x.mean()))
    enc = residual.encode_residual(x, recon, np.ones(x.shape, bool), bound, x.dtype, exact_recon=exact,
                                   fine_step=exact, compact=True, **_ALL)
    return x, recon, enc.payload


def test_every_cut_of_a_compact_section_and_a_byte_more_are_refused():
    x, recon, payload = _compact()
    for cut in range(len(payload)):
        with pytest.raises(residual.ResidualError):
            residual.read_section(payload[:cut], x.size, x.dtype, exact=True)
    with pytest.raises(residual.ResidualError, match="unaccounted"):
        residual.read_section(payload + b"\x00", x.size, x.dtype, exact=True)


def test_a_compact_sections_exponent_count_and_lengths_are_checked():
    x, recon, payload = _compact()
    exponent = payload[3]
    assert exponent > 6  # the chunk's mean: the finer step
    with pytest.raises(residual.ResidualError, match="inconsistent residual bound"):
        residual.read_section(payload, x.size, x.dtype)  # not beside a constant prediction
    for bad in (5, residual.FINE_MARGIN_MAX + 1, 255):
        with pytest.raises(residual.ResidualError, match="inconsistent residual bound"):
            residual.read_section(payload[:3] + bytes([bad]) + payload[4:], x.size, x.dtype, exact=True)
    with pytest.raises(residual.ResidualError, match="codes .* values, the chunk has"):
        residual.read_section(payload, x.size + 1, x.dtype, exact=True)
    # a non-canonical count (a trailing zero byte) and an unknown layout
    count = varint(x.size)
    assert payload[12:12 + len(count)] == count
    longer = payload[:12] + count[:-1] + bytes([count[-1] | 0x80, 0]) + payload[12 + len(count):]
    with pytest.raises(residual.ResidualError, match="non-canonical"):
        residual.read_section(longer, x.size, x.dtype, exact=True)
    with pytest.raises(residual.ResidualError, match="unknown residual layout version 3"):
        residual.read_section(bytes([3]) + payload[1:], x.size, x.dtype, exact=True)


def test_a_new_codec_writes_compact_sections_and_a_stored_configuration_keeps_layout_1():
    new, old = new_and_legacy_sections(rough(), "residual_compact", residual_coder="none")
    assert (new["version"], old["version"]) == (residual.LAYOUT_COMPACT, 1)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_a_compact_section_with_any_bytes_changed_decodes_or_is_refused_as_a_residual_error(data):
    """Forged fields, lengths, varints or blobs: a ResidualError, or values of the chunk's shape."""
    x, recon, payload = _compact(bound=0.05)
    forged = bytearray(payload)
    for _ in range(data.draw(st.integers(1, 4))):
        forged[data.draw(st.integers(0, len(forged) - 1))] = data.draw(st.integers(0, 255))
    try:
        y = residual.decode_residual(bytes(forged), recon, x.dtype, exact=True)
    except residual.ResidualError:
        return
    assert y.shape == x.shape and y.dtype == x.dtype
