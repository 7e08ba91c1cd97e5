"""The finer step of an exact prediction's residual (mode 3): a margin of 2**-m of the bound, m > 6."""
import numpy as np
import pytest
from test_residual_context import new_and_legacy_sections
from test_residual_cubic import smooth

from inrcodec.chunkcodec import residual


def rough(seed: int = 4) -> np.ndarray:
    """One (40, 72) item of temperature-like values with a fine noise: codes of every size."""
    rng = np.random.default_rng(seed)
    lat = np.linspace(-1.4, 1.4, 40)[:, None]
    return (250.0 + 40.0 * np.cos(lat) + rng.normal(0.0, 1.0, (40, 72)))[None].astype("f4")


@pytest.mark.parametrize("dtype, bound, largest, want", [
    ("f4", 0.1, 300.0, 11),  # float32 half ulp at 256-512: 2**-17; 0.1 / 2**-16 = 6554 -> m = 12 - 1
    ("f4", 1.0, 300.0, 15),
    ("f4", 1e-3, 300.0, 6),  # below MARGIN's room: MARGIN (the sliver's values become exceptions)
    ("f8", 0.1, 300.0, residual.FINE_MARGIN_MAX),
    ("f4", 0.5, 1.5, residual.FINE_MARGIN_MAX),
])
def test_the_margin_keeps_room_for_two_roundings_of_the_largest_value(dtype, bound, largest, want):
    x = np.array([[-1.0, largest, np.nan]], dtype=dtype)
    valid = np.array([[True, True, False]])
    m = residual.fine_margin_exponent(x, valid, bound, dtype)
    assert m == want
    room = float(np.spacing(np.asarray(largest, dtype=dtype)))
    assert m == 6 or bound * 2.0**-m >= room
    assert m == residual.FINE_MARGIN_MAX or bound * 2.0 ** -(m + 1) < room


@pytest.mark.parametrize("bound", [0.05, 0.5, 2.0])
def test_an_exact_predictions_residual_takes_the_finer_step_within_the_bound(bound):
    x = rough()
    valid = np.ones(x.shape, bool)
    recon = np.full(x.shape, float(x.mean()))
    kw = dict(exact_recon=True, interpolation=True, context=True, levels=True, cubic=True)
    before = residual.encode_residual(x, recon, valid, bound, x.dtype, **kw)
    fine = residual.encode_residual(x, recon, valid, bound, x.dtype, fine_step=True, **kw)
    m = residual.fine_margin_exponent(x, valid, bound, x.dtype)
    assert m > 6
    assert residual.residual_info(before.payload)["step"] == residual.effective_step(bound)
    assert residual.residual_info(fine.payload)["step"] == residual.effective_step(bound, m)
    assert fine.num_exceptions == 0 and len(fine.payload) < len(before.payload)
    y = residual.decode_residual(fine.payload, recon, x.dtype, exact=True)
    assert np.abs(y.astype("f8") - x).max() <= bound
    # a network's prediction (not exact) keeps MARGIN's room for another machine's reconstruction
    network = residual.encode_residual(x, recon, valid, bound, x.dtype, exact_recon=False, fine_step=True)
    assert residual.residual_info(network.payload)["step"] == residual.effective_step(bound)


def test_a_finer_step_is_read_only_beside_an_exact_prediction_and_only_at_a_margin_exponent():
    x = rough()
    recon = np.full(x.shape, float(x.mean()))
    fine = residual.encode_residual(x, recon, np.ones(x.shape, bool), 0.5, x.dtype, exact_recon=True,
                                    fine_step=True)
    residual.read_section(fine.payload, x.size, x.dtype, exact=True)
    with pytest.raises(residual.ResidualError, match="inconsistent residual bound"):
        residual.read_section(fine.payload, x.size, x.dtype)  # a network's residual (mode 2)
    info = residual.residual_info(fine.payload)
    for step in (np.nextafter(info["step"], 0.0), 2.0 * 0.5, 2.0 * 0.5 * (1 - 2.0**-21)):
        forged = fine.payload[:12] + np.float64(step).tobytes() + fine.payload[20:]  # the step: bytes 12-20
        with pytest.raises(residual.ResidualError, match="inconsistent residual bound"):
            residual.read_section(forged, x.size, x.dtype, exact=True)


def test_a_new_codec_takes_the_finer_step_and_a_stored_configuration_keeps_its_own():
    """Through the codec (mode 3, no network): new configurations say ``residual_fine_step``; a
    configuration written before the option writes the step it wrote."""
    new, old = new_and_legacy_sections(smooth(), "residual_fine_step", residual_coder="none")
    assert old["step"] == residual.effective_step(0.5)
    assert new["step"] in {residual.effective_step(0.5, m) for m in residual.MARGIN_EXPONENTS} and new["step"] > old["step"]
