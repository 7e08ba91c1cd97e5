import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from inrcodec.coding.quantize import UniformQuantizer

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(
    mean=finite,
    std=st.floats(1e-3, 1e4),
    bits=st.integers(1, 16),
    num_std=st.floats(0.5, 5.0),
    u=hnp.arrays(np.float64, st.integers(0, 50), elements=st.floats(0.0, 1.0)),
)
def test_round_trip_within_half_bin(mean, std, bits, num_std, u):
    q = UniformQuantizer(mean, std, bits, num_std)
    x = q.lo + u * (q.hi - q.lo)  # values inside the range
    s = q.quantize(x)
    assert s.dtype == np.uint32 and s.shape == x.shape
    assert (s < 2**bits).all()
    y = q.dequantize(s)
    assert y.dtype == np.float32 and y.shape == x.shape
    # half a bin, plus the float32 rounding of the result and float64 noise
    tol = q.bin_width / 2 * (1 + 1e-9) + np.abs(y.astype(np.float64)) * 2.0**-23 + 1e-12
    assert (np.abs(y.astype(np.float64) - x) <= tol).all()


def test_bins_are_equal_width_and_centred():
    q = UniformQuantizer(mean=1.0, std=2.0, bits=3)
    assert q.lo == -5.0 and q.hi == 7.0 and q.num_bins == 8
    centres = q.dequantize(np.arange(8))
    np.testing.assert_allclose(np.diff(centres), q.bin_width)
    np.testing.assert_allclose(centres[0], q.lo + q.bin_width / 2)
    # each centre quantizes to its own bin
    np.testing.assert_array_equal(q.quantize(centres), np.arange(8))


def test_clipping_and_monotonic():
    q = UniformQuantizer(mean=0.0, std=1.0, bits=4)
    x = np.array([-np.inf, -1e9, q.lo, q.hi, 1e9, np.inf])
    s = q.quantize(x)
    np.testing.assert_array_equal(s, [0, 0, 0, 15, 15, 15])
    xs = np.linspace(-5, 5, 1001)
    assert (np.diff(q.quantize(xs).astype(np.int64)) >= 0).all()


def test_nan_raises():
    q = UniformQuantizer(0.0, 1.0, 8)
    with pytest.raises(ValueError, match="NaN"):
        q.quantize(np.array([0.0, np.nan]))


def test_dequantize_rejects_out_of_range_symbols():
    q = UniformQuantizer(0.0, 1.0, 4)
    with pytest.raises(ValueError):
        q.dequantize(np.array([16]))
    with pytest.raises(ValueError):
        q.dequantize(np.array([-1]))
    with pytest.raises(ValueError):
        q.dequantize(np.array([0.5]))


def test_fit_uses_global_statistics():
    rng = np.random.default_rng(0)
    lat = rng.normal(2.0, 3.0, size=(10, 4, 8)) * np.arange(1, 9)  # per-dim scales differ
    q = UniformQuantizer.fit(lat, bits=6, num_std=2.5)
    assert q.mean == pytest.approx(lat.mean())
    assert q.std == pytest.approx(lat.std())
    assert q.bits == 6 and q.num_std == 2.5
    assert isinstance(q.mean, float) and isinstance(q.bits, int)


def test_fit_constant_latents_std_zero():
    lat = np.full((5, 3), 0.25, dtype=np.float32)
    q = UniformQuantizer.fit(lat, bits=5)
    assert q.std == 0.0
    s = q.quantize(lat)
    np.testing.assert_array_equal(q.dequantize(s), lat)


@pytest.mark.parametrize("bad", [np.array([]), np.array([1.0, np.nan]), np.array([np.inf])])
def test_fit_rejects_bad_input(bad):
    with pytest.raises(ValueError):
        UniformQuantizer.fit(bad, bits=8)


@given(mean=finite, std=st.floats(0, 1e4), bits=st.integers(1, 16), num_std=st.floats(0.1, 10))
@settings(max_examples=40, deadline=None)
def test_dict_round_trip_is_json_safe(mean, std, bits, num_std):
    q = UniformQuantizer(mean, std, bits, num_std)
    d = json.loads(json.dumps(q.to_dict()))
    q2 = UniformQuantizer.from_dict(d)
    assert q2 == q
    x = np.linspace(q.lo - 1, q.hi + 1, 37)
    np.testing.assert_array_equal(q2.quantize(x), q.quantize(x))


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(mean=0.0, std=1.0, bits=0),
        dict(mean=0.0, std=1.0, bits=17),
        dict(mean=0.0, std=1.0, bits=True),
        dict(mean=0.0, std=1.0, bits=4.0),
        dict(mean=0.0, std=-1.0, bits=4),
        dict(mean=math.nan, std=1.0, bits=4),
        dict(mean=0.0, std=math.inf, bits=4),
        dict(mean=0.0, std=1.0, bits=4, num_std=0.0),
        dict(mean=1e308, std=1e308, bits=4),
    ],
)
def test_validation(kwargs):
    with pytest.raises(ValueError):
        UniformQuantizer(**kwargs)


@pytest.mark.parametrize(
    "d",
    [
        {"mean": 0.0, "std": 1.0},
        {"mean": 0.0, "std": 1.0, "bits": 99},
        {"mean": 0.0, "std": 1.0, "bits": 4, "extra": 1},
        {"mean": 0.0, "std": 1.0, "bits": 4, "quantizer_id": 2},
        [0.0, 1.0, 4],
    ],
)
def test_from_dict_validation(d):
    with pytest.raises(ValueError):
        UniformQuantizer.from_dict(d)


def test_quantizer_id():
    assert UniformQuantizer.quantizer_id == 1
    assert UniformQuantizer(0.0, 1.0, 4).quantizer_id == 1
