"""Hostile cases of docs/reliability.md for chunk bytes and decode-side limits: each test is named for what it
holds, and says its review and case (reviews 1-3: issues 13, 21 and 32) first."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zlib

import numpy as np
from conftest import global_lat_lon, smooth_field
from helpers import TESTS, peak_bytes, run_python

from inrcodec import chunkformat as cf
from inrcodec.chunkcodec import decode_chunk
from inrcodec.chunkformat.header import MODE_PLAIN_RESIDUAL, ChunkHeader
from inrcodec.codec import COINppCodec
from inrcodec.errors import CorruptChunkError


def _repack(chunk: bytes, **changes) -> bytes:
    hdr, sections = cf.unpack_chunk(chunk)
    fields = {k: getattr(hdr, k) for k in hdr.__dataclass_fields__}
    fields.update(changes.pop("header", {}))
    sections.update(changes)
    return cf.pack_chunk(ChunkHeader(**fields), sections)


def test_hostile_chunks_are_refused_before_allocating(tiny_model):
    """Case 8 of the first reliability review (docs/reliability.md)."""
    codec = COINppCodec(tiny_model, inner_steps=1, lat=global_lat_lon()[0], lon=global_lat_lon()[1])
    x = smooth_field(2).astype("f4")
    chunk = codec.encode(x)
    huge = _repack(chunk, header={"shape": (10**9, 8, 16)})
    xn = x.copy()
    xn[0, 0, 0] = np.nan
    with_mask = codec.encode(xn)
    bomb = zlib.compress(bytes(50 << 20), 9)
    raw = codec.encode(np.full((2, 8, 16), 3.0, "f4"))
    cases = {
        "huge shape": lambda: codec.decode(huge),
        "huge shape, pinned": lambda: decode_chunk(huge, codec.model, codec.settings, shape=(2, 8, 16)),
        "raw bomb": lambda: codec.decode(_repack(raw, raw_values=bomb)),
        "mask bomb": lambda: codec.decode(_repack(with_mask, nan_mask=bomb)),
    }
    for name, fn in cases.items():
        peak, err = peak_bytes(fn)
        assert isinstance(err, CorruptChunkError), (name, err)
        assert peak < 8 << 20, (name, peak)


def test_fuzz_mutated_chunks_and_model_metadata_bounded():
    """CRC-fixed byte mutants and repacked field/section mutants of every kind of chunk (plain, NaN
    mask, raw, bit-packed, error-bounded modes 2 and 3, entropy-coded and bit-packed, with fill
    masks, the SPERR modes 4 to 7 of format version 5), decoded pinned and unpinned, plus mutated model metadata and damaged HDF5 model and
    grid entries: each returns the chunk's shape or raises CorruptChunkError / ModelFileError,
    with peak RSS growth under 150 MB (the subprocess's timeout is the time cap)."""
    script = str(TESTS / "fuzz" / "fuzz_decode.py")
    r = subprocess.run([sys.executable, script, "200", "100", "0", "40"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["n_failures"] == 0, res["failures"]
    assert res["refused"] > 100 and res["decoded"] > 50 and res["models_refused"] > 20 and res["hdf5_refused"] > 20
    assert res["rss_growth_kb"] < 150_000, res


def test_bounded_inflate_refuses_bombs_short_long_and_broken_streams():
    from inrcodec._limits import inflate

    data = bytes(range(256)) * 4
    assert inflate(zlib.compress(data), len(data), "x") == data
    for blob, size, msg in ((zlib.compress(bytes(64 << 20)), 100, "more than"),
                            (zlib.compress(data), len(data) + 1, "expected"),
                            (zlib.compress(data)[:-6], len(data), "expected|decompress"),
                            (b"not zlib", 10, "decompress"),
                            (b"x", 10**12, "cannot hold")):
        peak, err = peak_bytes(lambda: inflate(blob, size, "section", CorruptChunkError))
        assert isinstance(err, CorruptChunkError) and peak < 1 << 20, (msg, err, peak)
        assert re.search(msg, str(err)), err


def test_bounded_and_bit_packed_chunks_check_counts_before_allocating(tiny_model):
    """Case 10 of the second reliability review (docs/reliability.md)."""
    from inrcodec.chunkcodec import residual

    lat, lon = global_lat_lon()
    x = smooth_field(2).astype("f4")
    packed = COINppCodec(tiny_model, inner_steps=1, lat=lat, lon=lon, entropy_coding=False, residual_coder="none")
    # (layout 1: the residual section's fields are patched at their offsets below)
    bounded = COINppCodec(tiny_model, inner_steps=1, lat=lat, lon=lon, max_abs_error=0.5, residual_coder="none",
                          residual_compact=False)
    compact = COINppCodec(tiny_model, inner_steps=1, lat=lat, lon=lon, max_abs_error=0.5, residual_coder="none")
    plain_residual = bounded.encode(x)  # mode 3 (no network) for this field
    section = cf.unpack_chunk(plain_residual)[1]["residual"]
    info = residual.residual_info(section)
    assert cf.unpack_chunk(plain_residual)[0].mode == MODE_PLAIN_RESIDUAL and info["count"] == x.size
    mib512 = {"header": {"shape": (1 << 20, 8, 16)}}  # 512 MiB of float32
    cases = {  # name: (codec, hostile chunk, what the error says)
        "bit-packed, 1.8 GB declared": (packed, _repack(packed.encode(x), header={"shape": (3_500_000, 8, 16)}),
                                        "bit-packed latents section of"),
        "residual, 512 MiB declared": (bounded, _repack(plain_residual, **mib512), "residual section codes 256 values"),
        "compact residual, 512 MiB declared": (compact, _repack(compact.encode(x), **mib512),
                                               "residual section codes 256 values"),
    }
    for name, (codec, chunk, msg) in cases.items():
        assert len(chunk) < 1000
        peak, err = peak_bytes(lambda: codec.decode(chunk))
        assert isinstance(err, CorruptChunkError) and msg in str(err), (name, err)
        assert peak < 8 << 20, (name, peak)
    # a residual section whose histogram does not count the values it codes
    codes = np.zeros(x.size, np.int64)
    params, stream, escapes = residual.encode_codes(codes, residual.CODER_HISTOGRAM)
    hist = section[:residual._FIXED.size + 8] + b"".join(len(b).to_bytes(8, "little") + b
                                                         for b in (params, stream, escapes, b""))
    hist = bytearray(hist)
    hist[2] = residual.CODER_HISTOGRAM
    hist[3 + 1 + 16:3 + 1 + 24] = (x.size * 4096).to_bytes(8, "little")  # count, as if 4096x the items
    big = _repack(plain_residual, header={"shape": (2 * 4096, 8, 16)}, residual=bytes(hist))
    peak, err = peak_bytes(lambda: bounded.decode(big))
    assert isinstance(err, CorruptChunkError) and "histogram counts 256 codes" in str(err), err
    assert peak < 8 << 20, peak
    # honest chunks of every kind still decode
    assert np.abs(bounded.decode(bounded.encode(x)) - x).max() <= 0.5
    assert np.isfinite(packed.decode(packed.encode(x))).all()


def test_fixtures_decode_within_the_promise_on_another_cpu_code_path(tmp_path):
    """Case 13 of the second reliability review (docs/reliability.md).

    MKL_CBWR=COMPATIBLE makes MKL take another code path, as another CPU would: the first-layout
    HDF5 file then decodes 1-2 ulps off its recorded values (on an MKL build), within the promise."""
    import shutil

    p = tmp_path / "layout1.h5"
    shutil.copy(TESTS / "data" / "hdf5_v1" / "layout1.h5", p)
    code = f"""
        import h5py, numpy as np, inrcodec.hdf5
        from inrcodec.chunkcodec.residual import cross_machine_tolerance
        with h5py.File({str(p)!r}) as f:
            for name in ("tas", "tas_global"):
                y, e = f[name][...], f["expected_" + name][...]
                print(name, int((y != e).sum()), bool(np.abs(y - e).max() <= cross_machine_tolerance(e)))
    """
    r = run_python(code, env={**os.environ, "MKL_CBWR": "COMPATIBLE"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert [line.split()[2] for line in r.stdout.split("\n") if line] == ["True", "True"], r.stdout
