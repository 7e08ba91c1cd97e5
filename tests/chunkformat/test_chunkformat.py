import hashlib
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inrcodec.chunkformat import pack_chunk, unpack_chunk
from inrcodec.errors import CorruptChunkError
from inrcodec.chunkformat.header import FORMAT_VERSION, MAGIC, SECTION_TAGS, ChunkHeader
from helpers import REPO, with_crc

SHA_A = hashlib.sha256(b"network A").hexdigest()
SHA_B = hashlib.sha256(b"network B").hexdigest()


def make_header(**kw):
    base = dict(
        model_sha256=SHA_A,
        dtype="<f4",
        shape=(2, 3, 5),
        order="C",
        mode=0,
        patch_shape=(3, 5),
        num_items=2,
        num_patches=1,
        latent_dim=8,
        bits=6,
        quantizer_id=1,
        entropy_id=2,
        flags=0,
    )
    base.update(kw)
    return ChunkHeader(**base)


def small_chunk():
    h = make_header(flags=1)
    return h, pack_chunk(h, [("latents", b"\x01\x02\x03\x04\x05"), ("nan_mask", b"\xff")])


def recrc(buf: bytearray) -> bytes:
    """Fix up the declared length and CRC of a (modified) chunk."""
    struct.pack_into("<Q", buf, 8, len(buf))
    struct.pack_into("<I", buf, len(buf) - 4, zlib.crc32(bytes(buf[:-4])) & 0xFFFFFFFF)
    return bytes(buf)


# ---------------------------------------------------------------- round trips
@pytest.mark.parametrize(
    "shape,patch_shape",
    [
        ((), ()),
        ((0,), (4,)),
        ((3, 0, 2), (1, 1)),
        ((1,), (1,)),
        ((1, 1, 1), ()),
        (tuple(range(1, 9)), tuple(range(1, 9))),
        ((2**64 - 1,), (2**32 - 1,)),
    ],
)
@pytest.mark.parametrize("dtype,order", [("<f4", "C"), ("<f8", "F"), (">f4", "C"), (">f8", "F")])
def test_header_round_trip_odd_shapes(shape, patch_shape, dtype, order):
    h = make_header(shape=shape, patch_shape=patch_shape, dtype=dtype, order=order, mode=1)
    data = pack_chunk(h, {"raw_values": b"abc"})
    h2, sections = unpack_chunk(data)
    assert h2 == h
    assert sections == {"raw_values": b"abc"}


headers = st.builds(
    ChunkHeader,
    model_sha256=st.binary(min_size=32, max_size=32).map(bytes.hex),
    dtype=st.sampled_from(["<f4", "<f8", ">f4", ">f8"]),
    shape=st.lists(st.integers(0, 2**64 - 1), max_size=8).map(tuple),
    order=st.sampled_from("CF"),
    mode=st.sampled_from([0, 1]),
    patch_shape=st.lists(st.integers(0, 2**32 - 1), max_size=8).map(tuple),
    num_items=st.integers(0, 2**64 - 1),
    num_patches=st.integers(0, 2**64 - 1),
    latent_dim=st.integers(0, 2**32 - 1),
    bits=st.integers(0, 255),
    quantizer_id=st.integers(0, 255),
    entropy_id=st.integers(0, 255),
    flags=st.sampled_from([0, 1]),
)
section_payloads = st.dictionaries(
    st.sampled_from(["latents", "raw_values", "residual"]), st.binary(max_size=40), max_size=3
)


@settings(max_examples=60, deadline=None)
@given(h=headers, secs=section_payloads, mask=st.binary(max_size=10))
def test_random_header_round_trip(h, secs, mask):
    if h.has_nan_mask:
        secs = {**secs, "nan_mask": mask}
    data = pack_chunk(h, secs)
    h2, s2 = unpack_chunk(data, expected_model_sha256=h.model_sha256)
    assert h2 == h
    assert s2 == secs and list(s2) == list(secs)  # order kept


def test_input_types_and_section_order():
    h, data = small_chunk()
    for view in (data, bytearray(data), memoryview(data), np.frombuffer(data, np.uint8)):
        h2, s = unpack_chunk(view)
        assert h2 == h
        assert list(s) == ["latents", "nan_mask"]
        assert s["latents"] == b"\x01\x02\x03\x04\x05" and isinstance(s["latents"], bytes)
    # int tags and ndarray payloads, list order preserved
    payload = np.arange(3, dtype="<u2")
    d2 = pack_chunk(make_header(), [(SECTION_TAGS["residual"], payload), ("latents", b"")])
    _, s = unpack_chunk(d2)
    assert list(s) == ["residual", "latents"]
    assert s["residual"] == payload.tobytes() and s["latents"] == b""
    # no sections at all
    assert unpack_chunk(pack_chunk(make_header(), {}))[1] == {}


def test_packing_is_deterministic():
    assert small_chunk()[1] == small_chunk()[1]


def test_header_normalisation():
    h = make_header(model_sha256=SHA_A.upper(), dtype=np.dtype("<f8"), shape=[4, np.int64(2)])
    assert h.model_sha256 == SHA_A and h.dtype == "<f8" and h.shape == (4, 2)


@pytest.mark.parametrize(
    "kw",
    [
        dict(model_sha256="ab" * 31),
        dict(model_sha256="zz" * 32),
        dict(model_sha256=b"\x00" * 32),
        dict(dtype="<i4"),
        dict(dtype="<f2"),
        dict(dtype=None),
        dict(order="A"),
        dict(mode=7),
        dict(flags=2),
        dict(shape=tuple([1] * 9)),
        dict(shape=(-1,)),
        dict(shape=(2**64,)),
        dict(patch_shape=(2**32,)),
        dict(latent_dim=2**32),
        dict(bits=256),
        dict(entropy_id=-1),
        dict(num_items=1.5),
    ],
)
def test_header_validation(kw):
    with pytest.raises(ValueError):
        make_header(**kw)


def test_pack_validation():
    with pytest.raises(ValueError, match="unknown section"):
        pack_chunk(make_header(), {"bogus": b""})
    with pytest.raises(ValueError, match="unknown section"):
        pack_chunk(make_header(), [(99, b"")])
    with pytest.raises(ValueError, match="twice"):
        pack_chunk(make_header(), [("latents", b""), (SECTION_TAGS["latents"], b"")])
    with pytest.raises(ValueError, match="nan_mask"):
        pack_chunk(make_header(flags=1), {"latents": b""})
    with pytest.raises(ValueError, match="nan_mask"):
        pack_chunk(make_header(flags=0), {"nan_mask": b""})
    with pytest.raises(TypeError):
        pack_chunk("not a header", {})


# ---------------------------------------------------------------- corruption
def test_every_truncation_is_reported():
    _, data = small_chunk()
    for n in range(len(data)):
        with pytest.raises(CorruptChunkError, match="truncated") as info:
            unpack_chunk(data[:n])
        if n >= 16:
            assert f"truncated at byte {n} of {len(data)}" in str(info.value)


def test_every_single_bit_flip_is_detected():
    _, data = small_chunk()
    for i in range(len(data)):
        for b in range(8):
            bad = bytearray(data)
            bad[i] ^= 1 << b
            with pytest.raises(CorruptChunkError) as info:
                unpack_chunk(bytes(bad))
            if 16 <= i:  # past the preamble: the CRC must catch it
                assert "checksum mismatch" in str(info.value)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(h=headers, secs=section_payloads, data=st.data())
def test_random_bit_flip_or_truncation_of_random_chunk(h, secs, data):
    if h.has_nan_mask:
        secs = {**secs, "nan_mask": b"\x00"}
    chunk = pack_chunk(h, secs)
    if data.draw(st.booleans()):
        pos = data.draw(st.integers(0, len(chunk) * 8 - 1))
        bad = bytearray(chunk)
        bad[pos // 8] ^= 1 << (pos % 8)
        bad = bytes(bad)
    else:
        bad = chunk[: data.draw(st.integers(0, len(chunk) - 1))]
    with pytest.raises(CorruptChunkError):
        unpack_chunk(bad)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes(raw):
    with pytest.raises(CorruptChunkError):
        unpack_chunk(raw)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_behind_valid_magic_and_version(raw):
    with pytest.raises(CorruptChunkError):
        unpack_chunk(MAGIC + bytes([FORMAT_VERSION]) + raw)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_garbage_with_valid_checksum_never_escapes(data):
    """Defensive parsing behind the CRC: mutate the body, then fix length and CRC.
    The reader must raise CorruptChunkError or return a well-formed result."""
    _, chunk = small_chunk()
    buf = bytearray(chunk)
    for _ in range(data.draw(st.integers(1, 6))):
        i = data.draw(st.integers(5, len(buf) - 5))
        if i in range(8, 16):  # total length is fixed up by recrc
            continue
        buf[i] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):  # also grow / shrink the body
        cut = data.draw(st.integers(16, len(buf) - 4))
        extra = data.draw(st.binary(max_size=12))
        buf = buf[:cut] + extra + buf[cut:]
    try:
        h, secs = unpack_chunk(recrc(buf))
    except CorruptChunkError:
        return
    assert isinstance(h, ChunkHeader)
    assert all(isinstance(v, bytes) for v in secs.values())


def test_huge_declared_lengths_do_not_allocate():
    _, chunk = small_chunk()
    buf = bytearray(chunk)
    struct.pack_into("<Q", buf, 8, 2**63)
    with pytest.raises(CorruptChunkError, match=f"truncated at byte {len(buf)} of {2**63}"):
        unpack_chunk(bytes(buf))
    # a section claiming 2**64-1 bytes behind a valid checksum
    h = make_header()
    data = bytearray(pack_chunk(h, {"latents": b"xyzw"}))
    sec_off = data.index(b"xyzw") - 9
    struct.pack_into("<Q", data, sec_off + 1, 2**64 - 1)
    with pytest.raises(CorruptChunkError, match="declares"):
        unpack_chunk(recrc(data))
    # header length beyond the body
    data = bytearray(pack_chunk(h, {}))
    struct.pack_into("<H", data, 6, 0xFFFF)
    with pytest.raises(CorruptChunkError, match="header length"):
        unpack_chunk(recrc(data))


def test_messages():
    h, data = small_chunk()
    with pytest.raises(CorruptChunkError, match="bad magic"):
        unpack_chunk(b"PK\x03\x04" + data[4:])
    newer = bytearray(data)
    newer[4] = FORMAT_VERSION + 1
    with pytest.raises(
        CorruptChunkError,
        match=f"unsupported format version {FORMAT_VERSION + 1} \\(this build reads up to {FORMAT_VERSION}\\)",
    ):
        unpack_chunk(bytes(newer))
    with pytest.raises(CorruptChunkError, match="3 trailing bytes"):
        unpack_chunk(data + b"\x00\x00\x00")
    flipped = bytearray(data)
    flipped[-6] ^= 0x10  # inside a section payload
    with pytest.raises(CorruptChunkError, match="checksum mismatch"):
        unpack_chunk(bytes(flipped))
    assert issubclass(CorruptChunkError, ValueError)


def test_expected_model_hash():
    h, data = small_chunk()
    assert unpack_chunk(data, expected_model_sha256=SHA_A)[0] == h
    assert unpack_chunk(data, expected_model_sha256=SHA_A.upper())[0] == h
    with pytest.raises(CorruptChunkError) as info:
        unpack_chunk(data, expected_model_sha256=SHA_B)
    msg = str(info.value)
    assert SHA_A in msg and SHA_B in msg


def test_unknown_fields_behind_valid_checksum():
    h = make_header()
    data = bytearray(pack_chunk(h, {"latents": b"ab"}))
    bad = bytearray(data)
    bad[5] = 1  # header flags: none defined in version 1
    with pytest.raises(CorruptChunkError, match="header flags"):
        unpack_chunk(recrc(bad))
    bad = bytearray(data)
    bad[16 + 32 + 2] = 9  # mode
    with pytest.raises(CorruptChunkError, match="mode"):
        unpack_chunk(recrc(bad))
    bad = bytearray(data)
    bad[data.index(b"ab") - 9] = 200  # section tag
    with pytest.raises(CorruptChunkError, match="unknown section tag 200"):
        unpack_chunk(recrc(bad))


# ---------------------------------------------------------------- version 3 (compact)
PIN = b"\x01\x02\x03\x04"


def v3_header(**kw):
    base = dict(model_sha256=None, pin=PIN, dtype="<f4", shape=(1, 46, 90), order="C", mode=0,
                patch_shape=None, num_items=None, num_patches=None, latent_dim=None, bits=6,
                quantizer_id=1, entropy_id=2, flags=0)
    base.update(kw)
    return ChunkHeader(**base)


def test_v3_common_chunk_overhead_is_16_bytes():
    payload = bytes(range(7))
    data = pack_chunk(v3_header(), {"latents": payload})
    assert data[:2] == b"I\x03" and len(data) - len(payload) == 16
    assert unpack_chunk(data, expected_pin=PIN) == (v3_header(), {"latents": payload})


v3_headers = st.builds(
    ChunkHeader,
    model_sha256=st.none(),
    pin=st.binary(min_size=4, max_size=4),
    dtype=st.sampled_from(["<f4", "<f8", ">f4", ">f8"]),
    shape=st.lists(st.integers(0, 2**64 - 1), max_size=8).map(tuple),
    order=st.sampled_from("CF"),
    mode=st.just(0),
    patch_shape=st.none(), num_items=st.none(), num_patches=st.none(), latent_dim=st.none(),
    bits=st.integers(1, 16),
    quantizer_id=st.integers(0, 3),
    entropy_id=st.integers(0, 3),
    flags=st.sampled_from([0, 1]),
)


@settings(max_examples=80, deadline=None)
@given(h=v3_headers, secs=st.dictionaries(st.sampled_from(["latents", "residual", "fill_mask"]),
                                          st.binary(max_size=300), max_size=3),
       mask=st.binary(max_size=10), bounded=st.booleans())
def test_v3_random_header_round_trip(h, secs, mask, bounded):
    if bounded:
        h = ChunkHeader(**{**h.__dict__, "mode": 2})
        secs = {**secs, "residual": b"r"}
    if h.has_nan_mask:
        secs = {**secs, "nan_mask": mask}
    data = pack_chunk(h, secs)
    h2, s2 = unpack_chunk(data, expected_pin=h.pin)
    assert h2 == h and s2 == secs
    assert list(s2) == sorted(secs, key=SECTION_TAGS.get)  # version 3 stores sections in tag order


def test_v3_raw_mode_and_pin_check():
    h = v3_header(mode=1, bits=0, quantizer_id=0, entropy_id=0, shape=(3, 4), order="F", dtype=">f8")
    data = pack_chunk(h, {"raw_values": b"xyz"})
    assert unpack_chunk(data)[0] == h
    with pytest.raises(CorruptChunkError, match="does not match the codec's pin"):
        unpack_chunk(data, expected_pin=b"\x00" * 4)


@pytest.mark.parametrize("kw,match", [
    (dict(model_sha256=SHA_A), "not both"),
    (dict(pin=b"abc"), "4 bytes"),
    (dict(num_items=1), "does not store"),
    (dict(bits=17), "bits 1..16"),
    (dict(bits=0), "bits 1..16"),
    (dict(entropy_id=4), "ids"),
    (dict(mode=1), "raw"),
])
def test_v3_header_rejects_what_it_cannot_store(kw, match):
    with pytest.raises(ValueError, match=match):
        v3_header(**kw)


def test_v3_corruption_is_reported():
    data = pack_chunk(v3_header(), {"latents": b"abcdef"})
    for cut in range(1, len(data)):
        with pytest.raises(CorruptChunkError):
            unpack_chunk(data[:cut])
    with pytest.raises(CorruptChunkError, match="checksum"):
        unpack_chunk(data + b"\x00")
    body = bytearray(data[:-4])
    # non-canonical varint for shape[0] = 1: 0x81 0x00
    bad = bytes(body[:9]) + b"\x81\x00" + bytes(body[10:])
    with pytest.raises(CorruptChunkError, match="non-canonical"):
        unpack_chunk(with_crc(bad))
    reserved = bytearray(body)
    reserved[6] |= 0x80
    with pytest.raises(CorruptChunkError, match="reserved"):
        unpack_chunk(with_crc(bytes(reserved)))
    bounded = bytearray(body)
    bounded[7] = (bounded[7] & ~3) | 2  # mode 2 without a residual section
    with pytest.raises(CorruptChunkError, match="residual"):
        unpack_chunk(with_crc(bytes(bounded)))
    with pytest.raises(CorruptChunkError, match="unsupported format version 6"):
        unpack_chunk(b"I\x06" + bytes(body[2:]) + b"\x00" * 4)


def _docs_mode_grid() -> list[list[str]]:

    text = (REPO / "docs" / "format.md").read_text()
    block = text.split("## Modes\n", 1)[1].split("\n## ", 1)[0]
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in block.splitlines()
            if line.startswith("| ") and not line.startswith("| mode ")]


def test_the_format_docs_show_the_mode_table():
    """docs/format.md's mode grid is the table every check is derived from (issue 34)."""
    from inrcodec.chunkformat.header import MODES

    want = [[str(m.number), m.name, m.prediction, m.correction, ", ".join(sorted(m.sections)), str(m.version)]
            for m in MODES]
    assert _docs_mode_grid() == want


def _pinned_header(mode: int) -> ChunkHeader:
    from inrcodec.chunkformat.header import MODE_BY_NUMBER

    bits = 6 if MODE_BY_NUMBER[mode].latents else 0
    return ChunkHeader(model_sha256=None, dtype="<f4", shape=(2, 4), order="C", mode=mode, patch_shape=None,
                       num_items=None, num_patches=None, latent_dim=None, bits=bits, quantizer_id=0,
                       entropy_id=0, pin=b"abcd")


def test_each_modes_sections_are_checked_as_its_row_says():
    """Packing and reading refuse a chunk without a section its mode's row checks, and a section
    of a version-5 mode in another mode's chunk (``header.check_sections``, from ``MODES``)."""
    from inrcodec.chunkformat.header import MODES

    for row in MODES:
        full = {name: b"\x01\x02" for name in sorted(row.sections)}
        header, sections = unpack_chunk(pack_chunk(_pinned_header(row.number), full))
        assert (header.mode, set(sections)) == (row.number, set(full))
        for name in row.checked:
            with pytest.raises(ValueError, match=f"{name!r} is missing"):
                pack_chunk(_pinned_header(row.number), {k: v for k, v in full.items() if k != name})
        if "wavelet" not in row.sections:
            with pytest.raises(ValueError, match="'wavelet' belongs to modes \\[4, 5, 6, 7\\]"):
                pack_chunk(_pinned_header(row.number), {**full, "wavelet": b"\x00"})
        if row.version >= 5 and "residual" not in row.sections:
            with pytest.raises(ValueError, match="'residual' belongs to modes \\[2, 3, 7\\]"):
                pack_chunk(_pinned_header(row.number), {**full, "residual": b"\x00"})
        if row.version >= 5 and "latents" not in row.sections:
            with pytest.raises(ValueError, match="'latents' belongs to modes \\[0, 2, 4, 6\\]"):
                pack_chunk(_pinned_header(row.number), {**full, "latents": b"\x00"})
    assert {r.number for r in MODES if r.checked != r.sections} == {0, 1, 2}  # latents / raw_values: at decode


def test_a_chunk_without_the_section_its_mode_reads_is_corrupt_when_decoded(tiny_model):
    """Modes 0-2 chunks lacking ``latents`` / ``raw_values`` pack (versions 1-3 never checked them)
    and are refused when decoded, as docs/format.md says."""
    from inrcodec import COINppCodec
    from inrcodec.chunkformat.header import MODE_BY_NUMBER

    codec = COINppCodec(tiny_model, assume_global_grid=True, bits=6, residual_coder="none")
    chunk = codec.encode(np.full((1, 8, 16), 280.0, "f4") + np.arange(16, dtype="f4"))
    header, sections = unpack_chunk(chunk)
    for mode in (0, 1, 2):
        row = MODE_BY_NUMBER[mode]
        kept = {k: v for k, v in sections.items() if k not in ("latents", "raw_values")}
        kept.update({name: b"\x00" for name in row.checked})
        coding = {} if row.latents else dict(bits=0, quantizer_id=0, entropy_id=0, patch_aim=0, predict=0)
        forged = pack_chunk(ChunkHeader(**{**header.__dict__, "mode": mode, **coding}), kept)
        with pytest.raises(CorruptChunkError):
            codec.decode(forged)


def test_the_section_payload_examples_run():
    """chunkcodec/sections.py (each section's pack and read side by side, issue 34) shows its use."""
    import doctest

    from inrcodec.chunkcodec import sections

    assert doctest.testmod(sections).failed == 0
