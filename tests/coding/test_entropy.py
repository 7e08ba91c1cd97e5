import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inrcodec._ids import ENTROPY_PER_DIMENSION, ENTROPY_RAW, ENTROPY_SHARED
from inrcodec.coding.entropy import CategoricalEntropyModel, decode_symbols, encode_symbols
from inrcodec.coding.bitpack import pack_fixed, unpack_fixed


def skewed_symbols(rng, n, k, bits):
    """Each dimension has its own peaked distribution (per-dim tables should win);
    the centres depend only on (k, bits), so train and test data match."""
    centres = np.random.default_rng(1000 * k + bits).integers(0, 2**bits, k)
    noise = np.rint(rng.normal(0, 1.0 + 0.02 * 2**bits, (n, k))).astype(np.int64)
    return np.clip(centres + noise, 0, 2**bits - 1).astype(np.uint32)


# ---------------------------------------------------------------- raw packing
@settings(max_examples=80, deadline=None)
@given(bits=st.integers(1, 16), count=st.integers(0, 70), seed=st.integers(0, 2**32 - 1))
def test_pack_fixed_round_trip(bits, count, seed):
    s = np.random.default_rng(seed).integers(0, 2**bits, count).astype(np.uint32)
    data = pack_fixed(s, bits)
    assert isinstance(data, bytes)
    assert len(data) == (count * bits + 7) // 8
    out = unpack_fixed(data, bits, count)
    assert out.dtype == np.uint32
    np.testing.assert_array_equal(out, s)


def test_pack_fixed_extremes_and_bit_order():
    for bits in range(1, 17):
        s = np.array([0, 2**bits - 1, 1, 2 ** (bits - 1)], dtype=np.uint32)
        np.testing.assert_array_equal(unpack_fixed(pack_fixed(s, bits), bits, 4), s)
    # LSB first, little-endian bit packing
    assert pack_fixed(np.array([1, 0, 0, 1]), 2) == bytes([0b01000001])


def test_pack_fixed_validation():
    with pytest.raises(ValueError):
        pack_fixed(np.array([4]), 2)
    with pytest.raises(ValueError):
        pack_fixed(np.array([-1]), 2)
    with pytest.raises(ValueError):
        pack_fixed(np.array([0]), 0)
    with pytest.raises(ValueError, match="bytes"):
        unpack_fixed(b"\x00\x00\x00", 3, 3)  # 9 bits need exactly 2 bytes
    # 3 symbols * 3 bits = 9 bits -> 2 bytes; a 7th pad bit set must be rejected
    with pytest.raises(ValueError, match="padding"):
        unpack_fixed(b"\x00\x80", 3, 3)


# ---------------------------------------------------------------- categorical
@settings(max_examples=40, deadline=None)
@given(
    bits=st.integers(1, 12),
    n=st.integers(0, 40),
    k=st.integers(1, 6),
    per_dim=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_categorical_round_trip(bits, n, k, per_dim, seed):
    rng = np.random.default_rng(seed)
    train = skewed_symbols(rng, 50, k, bits)
    model = CategoricalEntropyModel.fit(train, bits, per_dimension=per_dim)
    s = skewed_symbols(rng, n, k, bits)
    data = model.encode(s)
    assert len(data) % 4 == 0
    out = model.decode(data, s.shape)
    assert out.dtype == np.uint32 and out.shape == (n, k)
    np.testing.assert_array_equal(out, s)
    # determinism: a model rebuilt from its arrays writes the identical bytes
    again = CategoricalEntropyModel.from_arrays(model.to_arrays()).encode(s)
    assert again == data


def test_fit_counts_with_smoothing():
    s = np.array([[0, 3], [0, 3], [1, 3]])
    shared = CategoricalEntropyModel.fit(s, 2, per_dimension=False)
    np.testing.assert_array_equal(shared.counts, [[3, 2, 1, 4]])
    assert shared.counts.dtype == np.int64
    assert shared.entropy_id == ENTROPY_SHARED and shared.latent_dim is None
    per = CategoricalEntropyModel.fit(s, 2, per_dimension=True)
    np.testing.assert_array_equal(per.counts, [[3, 2, 1, 1], [1, 1, 1, 4]])
    assert per.entropy_id == ENTROPY_PER_DIMENSION and per.latent_dim == 2
    # probabilities are exactly counts / sum in float64
    np.testing.assert_array_equal(per.probabilities(), per.counts / per.counts.sum(1, keepdims=True))


def test_per_dimension_with_one_dimension_keeps_its_id():
    s = np.array([[0], [1]])
    m = CategoricalEntropyModel.fit(s, 1, per_dimension=True)
    assert m.counts.shape == (1, 2) and m.entropy_id == ENTROPY_PER_DIMENSION
    m2 = CategoricalEntropyModel.from_arrays(m.to_arrays())
    assert m2.entropy_id == ENTROPY_PER_DIMENSION and m2 == m


def test_to_from_arrays():
    rng = np.random.default_rng(1)
    m = CategoricalEntropyModel.fit(skewed_symbols(rng, 30, 5, 6), 6, per_dimension=True)
    arrays = m.to_arrays()
    assert set(arrays) == {"counts", "entropy_id"}
    assert all(isinstance(a, np.ndarray) for a in arrays.values())
    assert arrays["counts"].dtype == np.int64
    assert CategoricalEntropyModel.from_arrays(arrays) == m
    # counts only: id inferred from the number of rows
    assert CategoricalEntropyModel.from_arrays({"counts": arrays["counts"]}).per_dimension


@pytest.mark.parametrize(
    "counts",
    [
        np.ones((1, 2**13), np.int64),  # bits 13: no tables
        np.ones((1, 3), np.int64),  # not a power of two
        np.ones((1, 1), np.int64),  # bits 0
        np.array([[1, 0, 1, 1]]),  # zero count
        np.ones((4,), np.int64),  # 1-D
        np.ones((1, 4)),  # float
        np.full((1, 4), 2**52, np.int64),  # sum >= 2**53 (float64 no longer exact)
    ],
)
def test_invalid_tables(counts):
    with pytest.raises(ValueError):
        CategoricalEntropyModel(counts)


def test_fit_rejects_large_bits_and_bad_symbols():
    with pytest.raises(ValueError, match="bits"):
        CategoricalEntropyModel.fit(np.zeros((2, 2), np.uint32), 13, per_dimension=False)
    with pytest.raises(ValueError):
        CategoricalEntropyModel.fit(np.array([[4]]), 2, per_dimension=False)
    with pytest.raises(ValueError):
        CategoricalEntropyModel.fit(np.zeros(4, np.uint32), 2, per_dimension=False)


def test_per_dimension_k_mismatch():
    m = CategoricalEntropyModel.fit(np.zeros((3, 4), np.uint32), 3, per_dimension=True)
    with pytest.raises(ValueError, match="k=5"):
        m.encode(np.zeros((2, 5), np.uint32))
    with pytest.raises(ValueError):
        m.decode(b"", (2, 5))


def test_payload_must_be_whole_words():
    m = CategoricalEntropyModel.fit(np.zeros((3, 4), np.uint32), 3, per_dimension=False)
    data = m.encode(np.zeros((3, 4), np.uint32))
    for extra in (1, 2, 3):
        with pytest.raises(ValueError, match="32-bit words"):
            m.decode(data + b"\x00" * extra, (3, 4))


def test_trailing_words_rejected():
    rng = np.random.default_rng(2)
    s = skewed_symbols(rng, 100, 4, 8)
    m = CategoricalEntropyModel.fit(s, 8, per_dimension=True)
    data = m.encode(s)
    with pytest.raises(ValueError):
        m.decode(data + b"\x01\x00\x00\x00" * 3, s.shape)


def test_model_pickles_after_use():
    s = np.array([[0, 1], [1, 1]], np.uint32)
    m = CategoricalEntropyModel.fit(s, 1, per_dimension=False)
    data = m.encode(s)
    m2 = pickle.loads(pickle.dumps(m))
    np.testing.assert_array_equal(m2.decode(data, s.shape), s)


def test_empty_symbol_arrays():
    m = CategoricalEntropyModel.fit(np.zeros((0, 3), np.uint32), 4, per_dimension=True)
    assert m.encode(np.zeros((0, 3), np.uint32)) == b""
    assert m.decode(b"", (0, 3)).shape == (0, 3)
    eid, payload = encode_symbols(np.zeros((0, 3), np.uint32), 4, [m])
    assert decode_symbols(eid, payload, (0, 3), 4, {m.entropy_id: m}).shape == (0, 3)


# ---------------------------------------------------------------- selection
def candidates(s, bits, models):
    out = {ENTROPY_RAW: pack_fixed(s, bits)}
    for m in models:
        out[m.entropy_id] = m.encode(s)
    return out


@settings(max_examples=25, deadline=None)
@given(bits=st.integers(1, 12), k=st.integers(1, 8), seed=st.integers(0, 2**32 - 1))
def test_encode_symbols_picks_smallest(bits, k, seed):
    rng = np.random.default_rng(seed)
    train = skewed_symbols(rng, 200, k, bits)
    s = skewed_symbols(rng, 60, k, bits)
    models = [
        CategoricalEntropyModel.fit(train, bits, per_dimension=False),
        CategoricalEntropyModel.fit(train, bits, per_dimension=True),
    ]
    eid, payload = encode_symbols(s, bits, models)
    sizes = {i: len(p) for i, p in candidates(s, bits, models).items()}
    assert len(payload) == min(sizes.values())
    assert sizes[eid] == len(payload)
    out = decode_symbols(eid, payload, s.shape, bits, {m.entropy_id: m for m in models})
    np.testing.assert_array_equal(out, s)


def test_selection_outcomes():
    rng = np.random.default_rng(3)
    bits, k = 8, 16
    train = skewed_symbols(rng, 2000, k, bits)
    s = skewed_symbols(rng, 300, k, bits)
    shared = CategoricalEntropyModel.fit(train, bits, per_dimension=False)
    per = CategoricalEntropyModel.fit(train, bits, per_dimension=True)
    # dimensions with different distributions: per-dimension tables are smaller
    eid, payload = encode_symbols(s, bits, [shared, per])
    assert eid == ENTROPY_PER_DIMENSION
    assert len(payload) < len(shared.encode(s)) < len(pack_fixed(s, bits))
    # only the shared table offered: it beats raw
    assert encode_symbols(s, bits, [shared, None])[0] == ENTROPY_SHARED
    # uniform 1-bit noise: nothing beats raw packing
    noise = rng.integers(0, 2, (64, 8)).astype(np.uint32)
    m = CategoricalEntropyModel.fit(noise, 1, per_dimension=False)
    assert encode_symbols(noise, 1, [m])[0] == ENTROPY_RAW
    # no tables at all (e.g. bits > 12)
    big = rng.integers(0, 2**16, (5, 3)).astype(np.uint32)
    eid, payload = encode_symbols(big, 16, [])
    assert eid == ENTROPY_RAW
    np.testing.assert_array_equal(decode_symbols(eid, payload, (5, 3), 16, {}), big)


def test_encode_symbols_validation():
    s = np.zeros((100, 2), np.uint32)
    m3 = CategoricalEntropyModel.fit(s, 3, per_dimension=False)
    with pytest.raises(ValueError, match="bits"):
        encode_symbols(s, 4, [m3])
    with pytest.raises(ValueError, match="entropy_id"):
        encode_symbols(s, 3, [m3, m3])
    eid, payload = encode_symbols(s, 3, [m3])
    assert eid == ENTROPY_SHARED
    with pytest.raises(ValueError, match="no such entropy model"):
        decode_symbols(eid, payload, s.shape, 3, {})
    with pytest.raises(ValueError):
        decode_symbols(7, payload, s.shape, 3, {1: m3})
    with pytest.raises(ValueError):  # model registered under the wrong id
        decode_symbols(ENTROPY_PER_DIMENSION, payload, s.shape, 3, {ENTROPY_PER_DIMENSION: m3})


# ---------------------------------------------------------------- garbage in
_GARBAGE_MODELS = {}


def garbage_models(bits, k):
    key = (bits, k)
    if key not in _GARBAGE_MODELS:
        rng = np.random.default_rng(bits * 100 + k)
        train = skewed_symbols(rng, 100, k, bits)
        # include an extremely peaked table
        peaked = np.ones((1, 2**bits), np.int64)
        peaked[0, 0] = 2**40
        _GARBAGE_MODELS[key] = {
            ENTROPY_SHARED: CategoricalEntropyModel.fit(train, bits, per_dimension=False),
            ENTROPY_PER_DIMENSION: CategoricalEntropyModel.fit(train, bits, per_dimension=True),
            "peaked": CategoricalEntropyModel(peaked),
        }
    return _GARBAGE_MODELS[key]


@settings(max_examples=300, deadline=None)
@given(
    payload=st.binary(max_size=64),
    entropy_id=st.sampled_from([0, 1, 2, "peaked"]),
    bits=st.integers(1, 12),
    n=st.integers(0, 30),
    k=st.integers(1, 4),
)
def test_decoding_garbage_raises_value_error_or_returns_shape(payload, entropy_id, bits, n, k):
    models = garbage_models(bits, k)
    if entropy_id == "peaked":
        model = models["peaked"]
        decode = lambda: model.decode(payload, (n, k))  # noqa: E731
    else:
        decode = lambda: decode_symbols(entropy_id, payload, (n, k), bits, models)  # noqa: E731
    try:
        out = decode()
    except ValueError:
        return
    assert out.shape == (n, k) and out.dtype == np.uint32
    assert (out < 2**bits).all()


def test_the_range_coder_is_the_one_every_stream_uses_and_its_example_runs():
    """One range coder (issue 34): the latent coders and the residual stream refuse words past
    their last symbol by the same rule, and the module's example runs."""
    import doctest

    from inrcodec.chunkcodec import residual
    from inrcodec.coding import rangecoder

    assert doctest.testmod(rangecoder, optionflags=doctest.ELLIPSIS).failed == 0
    probs = np.array([0.5, 0.25, 0.25])
    stream = rangecoder.encode([(np.array([0, 1, 2, 0]), probs)]) + bytes(8)
    with pytest.raises(rangecoder.RangeCodeError, match="data left after the last symbol"):
        rangecoder.decode(stream, [(4, probs)])
    with pytest.raises(residual.ResidualError, match="data left after the last symbol"):
        residual._range_decode(stream, probs, 4)
    model = CategoricalEntropyModel(np.array([[2, 1, 1, 1]]), per_dimension=False)
    with pytest.raises(ValueError, match="data left after the last symbol"):
        model.decode(model.encode(np.array([[0, 1, 2, 0]])) + bytes(8), (1, 4))
