"""Bounded fuzz run (tests/chunkformat/test_chunkformat_reliability.py runs it in a subprocess to measure its peak RSS).

Mutates valid chunks (random bytes with the CRC fixed, and random header fields / sections
repacked with a valid CRC) of every kind (plain, NaN mask, raw, bit-packed, error-bounded with
a network (mode 2, entropy-coded and bit-packed) and without (mode 3)), model metadata, and the
model and grid entries of HDF5 files (huge never-written datasets, other dtypes and shapes,
damaged bytes); every decode must return the chunk's shape or raise the documented error.
Prints one JSON line: counts, failures, RSS growth.

    python tests/fuzz/fuzz_decode.py N_CHUNKS N_MODELS SEED [N_HDF5_ENTRIES]
"""

from __future__ import annotations

import json
import resource
import struct
import sys
import time
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this tree's inrcodec, not another installed one
from conftest import build_patched_model, build_spherical_model, global_lat_lon, smooth_field  # noqa: E402

from inrcodec import chunkformat as cf  # noqa: E402
from inrcodec.chunkformat.header import ChunkHeader, FLAG_NAN_MASK, KNOWN_MODES, MODE_BOUNDED, MODE_PLAIN_RESIDUAL
from inrcodec.models import tensorfile  # noqa: E402
from inrcodec.chunkcodec.residual import residual_info  # noqa: E402
from inrcodec.codec import COINppCodec  # noqa: E402
from inrcodec.chunkcodec import decode_chunk, residual, wavelet  # noqa: E402
from inrcodec.chunkcodec.context import ChunkContext  # noqa: E402
from inrcodec.errors import CorruptChunkError, ModelFileError  # noqa: E402
from inrcodec.models.model import CoinModel  # noqa: E402

SHAPE = (2, 8, 16)


def fix_crc(b: bytearray) -> bytes:
    b[8:16] = struct.pack("<Q", len(b)) if len(b) >= 16 else b[8:16]
    b[-4:] = struct.pack("<I", zlib.crc32(bytes(b[:-4])) & 0xFFFFFFFF)
    return bytes(b)


def byte_mutant(rng, chunk: bytes) -> bytes:
    b = bytearray(chunk)
    for _ in range(int(rng.integers(1, 6))):
        i = int(rng.integers(5, len(b) - 4))
        b[i] = int(rng.integers(0, 256)) if rng.random() < 0.7 else 0xFF
    return fix_crc(b)


def sperr_fields(payload: bytes) -> list[tuple[int, str]]:
    """(offset, struct format) of every header field of a wavelet section: the coder byte, SPERR's
    version, flags, dims, chunk dims (a chunked stream) and chunk lengths, and in the first and last
    chunk the conditioner's flags and two float64, SPECK's bitplanes and bit count, and the outlier
    stream's (docs/format.md, inrcodec.chunkcodec.wavelet); a DCT section's mean too."""
    s0 = wavelet.stream_start(payload[0])
    fields = [(0, "B")] + ([(1, "<d")] if s0 > 1 else [])
    fields += [(s0, "B"), (s0 + 1, "B"), (s0 + 2, "<I"), (s0 + 6, "<I"), (s0 + 10, "<I")]
    shape3 = struct.unpack_from("<3I", payload, s0 + 2)[::-1]
    parts = wavelet.stream_layout(payload[s0:], shape3)  # an honest payload
    table = s0 + wavelet.SPERR_HEADER
    if payload[s0 + 1] == 0x50:  # chunked: three u16 chunk dims before the lengths
        fields += [(table, "<H"), (table + 2, "<H"), (table + 4, "<H")]
        table += 6
    fields += [(table, "<I"), (table + 4 * (len(parts) - 1), "<I")]
    for part in {id(q): q for q in (parts[0], parts[-1])}.values():
        at = s0 + part["offset"]
        fields += [(at, "B"), (at + 1, "<d"), (at + 9, "<d")]
        if part["speck"]:
            fields += [(at + 17, "B"), (at + 18, "<Q")]
        if part["outliers"]:
            out = at + 17 + part["speck"]
            fields += [(out, "B"), (out + 1, "<Q")]
    return fields


def field_values(fmt: str) -> list[bytes]:
    """The extreme values a field of struct format ``fmt`` is set to."""
    if fmt == "<d":
        return [struct.pack(fmt, v) for v in (0.0, -0.0, 5e-324, 1e-300, 1e300, -1e300, 3.5e38, np.inf, np.nan)]
    width = struct.calcsize(fmt)
    ints = (0, 1, 3, 64, 65, 255, 2**16, 2**31, int(2**31.99), 2**32 - 1, 2**40, 2**63, 2**64 - 1)
    return sorted({(v % (1 << (8 * width))).to_bytes(width, "little") for v in ints})


def with_field(payload: bytes, at: int, value: bytes) -> bytes:
    w = bytearray(payload)
    w[at:at + len(value)] = value
    return bytes(w)


def wavelet_field_mutant(rng, payload: bytes) -> bytes:
    fields = sperr_fields(payload)
    at, fmt = fields[int(rng.integers(0, len(fields)))]
    values = field_values(fmt)
    return with_field(payload, at, values[int(rng.integers(0, len(values)))])


def outcome(decode, what: str, bad: list, check_shape: bool, check_finite: bool = False) -> bool | None:
    """True: ``decode()`` returned the chunk's shape (and finite values, when asked); False: it
    raised CorruptChunkError; None: anything else, a finding appended to ``bad``."""
    try:
        y = decode()
    except CorruptChunkError:
        return False
    except Exception as exc:  # noqa: BLE001 - anything else is a finding
        bad.append(f"{what}: {type(exc).__name__}: {str(exc)[:120]}")
        return None
    if (check_shape and y.shape != SHAPE) or (check_finite and not np.isfinite(y[~np.isnan(y)]).all()):
        bad.append(f"{what}: shape {y.shape} or a value beyond the dtype")
        return None
    return True


def field_mutant(rng, chunk: bytes) -> bytes:
    hdr, sections = cf.unpack_chunk(chunk)
    f = {k: getattr(hdr, k) for k in hdr.__dataclass_fields__}
    big = [0, 1, 3, 255, 2**16, 2**31, 10**9, 2**32 - 1]
    key = rng.choice(["shape", "num_items", "num_patches", "latent_dim", "bits", "entropy_id", "patch_shape",
                      "dtype", "order", "mode", "section", "bomb", "residual", "quantizer_id", "patch_aim",
                      "predict", "wavelet"])
    if key == "shape":
        s = list(f["shape"])
        s[int(rng.integers(len(s)))] = int(rng.choice(big))
        f["shape"] = tuple(s)
    elif key == "patch_shape":
        f["patch_shape"] = tuple(int(rng.choice(big[:6])) for _ in range(int(rng.integers(0, 3))))
    elif key in ("num_items", "num_patches", "latent_dim"):
        f[key] = int(rng.choice(big))
    elif key in ("bits", "entropy_id", "quantizer_id", "predict"):
        f[key] = int(rng.integers(0, 20))
    elif key == "patch_aim":
        f[key] = int(rng.choice([0, 1, 2, 3, 4, 7, 100, 255]))
    elif key == "dtype":
        f["dtype"] = str(rng.choice(["<f4", "<f8", ">f4", ">f8"]))
    elif key == "order":
        f["order"] = "F" if f["order"] == "C" else "C"
    elif key == "mode":
        f["mode"] = int(rng.choice(list(KNOWN_MODES)))
    elif key == "residual" and "residual" in sections:  # its counts: values, exceptions, blob lengths
        r = bytearray(sections["residual"])
        at = int(rng.choice([2, 28, 36, 44]))  # coder, count, exceptions, params length
        r[at:at + (1 if at == 2 else 8)] = int(rng.choice(big)).to_bytes(8, "little")[:1 if at == 2 else 8]
        sections["residual"] = bytes(r)
        if rng.random() < 0.5:  # and a header declaring as many values
            f["shape"] = (int(rng.choice(big[3:])), *f["shape"][1:])
    elif key == "wavelet" and "wavelet" in sections:  # any field of the SPERR stream's headers
        sections["wavelet"] = wavelet_field_mutant(rng, sections["wavelet"])
    elif key == "section" and sections:
        name = str(rng.choice(sorted(sections)))
        sections[name] = rng.bytes(int(rng.integers(0, 64)))
    else:  # a zlib bomb in any compressed section
        name = str(rng.choice(["raw_values", "nan_mask", "fill_mask", "residual"]))
        sections[name] = (b"\0" * 8 if name == "fill_mask" else b"") + BOMB
    if "residual" in sections and f["mode"] not in (MODE_BOUNDED, MODE_PLAIN_RESIDUAL):
        sections.pop("residual")
    f["flags"] = FLAG_NAN_MASK if "nan_mask" in sections else 0
    try:
        return cf.pack_chunk(ChunkHeader(**f), sections)
    except ValueError:
        return chunk


def model_mutant(rng, data: bytes) -> bytes:
    arrays, meta = tensorfile.loads(data)
    meta = json.loads(json.dumps(meta))
    path = rng.choice(["network.width", "network.depth", "network.latent_dim", "network.dim_in", "patch_shape",
                       "normalisation.scale", "coding.bits", "coding.latent_mean", "grid_kind", "encode_steps"])
    *parents, leaf = path.split(".")
    d = meta
    for p in parents:
        d = d[p] if isinstance(d.get(p), dict) else d.setdefault(p, {})
    values = [0, -1, 3, 16384, 100000, 2**40, "x", None, [1, 2], [], {"a": 1}, 1e308]
    d[leaf] = values[int(rng.integers(len(values)))]
    return tensorfile.dumps(arrays, meta)


def hdf5_mutant(rng, f, model, lat, lon) -> None:
    """A model or grid entry of ``f`` (an open h5py File), damaged one way."""
    import h5py  # noqa: F401 (h5py objects are passed in)

    import inrcodec.hdf5 as ih5

    g = f.require_group(ih5.MODELS_GROUP)
    for name in list(g):
        del g[name]
    ih5.store_model(f, model, lat=lat, lon=lon)
    name = str(rng.choice(sorted(g)))
    data = g[name][()]
    del g[name]
    kind = rng.choice(["huge", "dtype", "2d", "bytes", "short", "header"])
    if kind == "huge":  # never written: bytes of metadata, gigabytes when read
        g.create_dataset(name, shape=(int(rng.choice([2**31, 2**36, 2**40])),), dtype=data.dtype, chunks=(1 << 16,))
    elif kind == "dtype":
        g.create_dataset(name, data=data.astype(rng.choice(["f8", "u1", "i4", "f2"])))
    elif kind == "2d":
        g.create_dataset(name, data=np.resize(data, (2, max(1, data.size // 2))))
    elif kind in ("bytes", "header"):
        d = data.copy()
        idx = rng.integers(0, 2 if kind == "header" else d.size, 3)
        d[idx] = rng.choice([0, 255, 1e300, np.nan, -1]) if d.dtype.kind == "f" else rng.integers(0, 256, 3)
        g.create_dataset(name, data=d)
    else:
        g.create_dataset(name, data=data[: int(rng.integers(0, data.size))])


def fuzz_hdf5(rng, n: int, model, lat, lon, bad: list) -> tuple[int, int]:
    import h5py

    import inrcodec.hdf5 as ih5
    from inrcodec.models import modelstore

    ok = refused = 0
    for i in range(n):
        with h5py.File(f"fuzz{i}.h5", "w", driver="core", backing_store=False) as f:
            hdf5_mutant(rng, f, model, lat, lon)
            modelstore.clear()  # the model must come from the damaged file
            try:
                ih5.load_models(f)
                ok += 1
            except (ModelFileError, ValueError):  # ValueError: a grid whose values do not hash to its name
                refused += 1
            except Exception as exc:  # noqa: BLE001
                bad.append(f"hdf5 entry {i}: {type(exc).__name__}: {str(exc)[:120]}")
    return ok, refused


def main(n_chunks: int, n_models: int, seed: int = 0, n_hdf5: int = 0) -> None:
    rng = np.random.default_rng(seed)
    model = build_spherical_model()
    lat, lon = global_lat_lon()
    x = smooth_field(2).astype("f4")
    xn = x.copy()
    xn[0, :2] = np.nan
    plain = COINppCodec(model, inner_steps=1, residual_coder="none", lat=lat, lon=lon)
    # the network's own modes (residual_coder "none"); SPERR's modes 4 to 7 below
    bounded = COINppCodec(model, inner_steps=1, residual_coder="none", lat=lat, lon=lon, max_abs_error=0.5,
                          fill_value=-9999.0)
    packed = COINppCodec(model, inner_steps=1, residual_coder="none", lat=lat, lon=lon, entropy_coding=False)
    xf = x.copy()
    xf[1, 3] = -9999.0
    xr = (plain.decode(plain.encode(x)) + np.random.default_rng(1).normal(0, 0.05, SHAPE)).astype("f4")
    xrf = xr.copy()
    xrf[0, 2] = -9999.0  # a field the network represents: mode 2 wins
    bounded_packed = COINppCodec(model, inner_steps=1, residual_coder="none", lat=lat, lon=lon, max_abs_error=0.02,
                                 entropy_coding=False)
    seeds = [(plain, plain.encode(x)), (plain, plain.encode(xn)), (plain, plain.encode(np.full(SHAPE, 5.0, "f4"))),
             (bounded, bounded.encode(xf)), (packed, packed.encode(xn)), (bounded, bounded.encode(xrf)),
             (bounded_packed, bounded_packed.encode(xr))]
    # version 4 (mid-tread, items predicted, patch aims: plain above) and version 3 (uniform quantizer)
    uniform = COINppCodec(model, inner_steps=1, residual_coder="none", lat=lat, lon=lon, quantizer="uniform")
    patched = COINppCodec(build_patched_model(), inner_steps=1, residual_coder="none", lat=lat, lon=lon, patch_points=2)
    seeds += [(uniform, uniform.encode(x)), (patched, patched.encode(x))]
    # the residual's codes predicted by interpolation (predictors 2 and 3) and by the Lorenzo difference
    interpolated = COINppCodec(model, inner_steps=1, residual_coder="none", lat=lat, lon=lon, max_abs_error=0.2)
    lorenzo = COINppCodec(model, inner_steps=1, residual_coder="none", lat=lat, lon=lon, max_abs_error=0.2,
                          residual_interpolation=False)
    # and by the previous item's detail (predictor 4: its weights blob): the second item the first, warmer
    # (tried on items of DETAIL_MIN_ITEM_VALUES or more, which the decoder does not ask)
    persistent = np.stack([x[0], x[0] + np.float32(0.3)])
    residual.DETAIL_MIN_ITEM_VALUES = x[0].size
    # and coded with a model per context (coder 3): a field rough in its eastern half, smooth elsewhere
    rough = x.copy()
    rough[..., SHAPE[-1] // 2:] += np.random.default_rng(2).normal(0.0, 2.0, rough[..., SHAPE[-1] // 2:].shape)
    # and with the coarser levels' contexts apart (coder 4): a 32 x 64 wave of 16 points under a fine noise
    # (on the 8 x 16 grid the contexts' parameters outweigh what they save)
    i, j = np.meshgrid(np.arange(32), np.arange(64), indexing="ij")
    wave = (280.0 + 20.0 * np.sin(2 * np.pi * i / 16 + 0.7) * np.sin(2 * np.pi * j / 16 + 0.3)
            + np.random.default_rng(3).normal(0.0, 0.3, i.shape))[None].astype("f4")
    levels = COINppCodec(model, inner_steps=1, residual_coder="none", assume_global_grid=True, max_abs_error=0.5)
    legacy_step = COINppCodec(model, inner_steps=1, residual_coder="none", assume_global_grid=True, max_abs_error=0.5,
                              residual_fine_step=False, residual_compact=False)  # MARGIN's step, layout 1 too
    # and with the cubic interpolation (predictor 5): the same wave without the noise, not periodic on the grid
    smooth = (280.0 + 20.0 * np.sin(2 * np.pi * i / 16.5 + 0.7) * np.sin(2 * np.pi * j / 13.7 + 0.3)
              + 0.1 * j)[None].astype("f4")
    seeds += [(interpolated, interpolated.encode(x)), (lorenzo, lorenzo.encode(x)),
              (interpolated, interpolated.encode(persistent)), (interpolated, interpolated.encode(rough)),
              (levels, levels.encode(wave)), (levels, levels.encode(smooth)), (legacy_step, legacy_step.encode(wave))]
    sections = [residual_info(cf.unpack_chunk(c)[1]["residual"]) for _, c in seeds if "residual" in cf.unpack_chunk(c)[1]]
    assert {1, 3, 4, 5} <= {s["predictor"] for s in sections}, sections
    assert len({s["step"] / s["bound"] for s in sections}) > 1, sections  # MARGIN's step and finer ones
    assert {1, residual.LAYOUT_COMPACT} <= {s["version"] for s in sections}, sections  # both layouts
    assert {residual.CODER_CONTEXT, residual.CODER_CONTEXT_LEVELS} <= {s["coder"] for s in sections}, sections
    # version 5 (issue 24): SPERR's residual of a field the network represents (hybrid, mode 4)
    # and SPERR alone on one it does not (mode 5)
    # (layout 1's residual sections: with compact ones the residual chunks beat SPERR's on these small
    # fields, and the seeds would lose modes 4 and 5)
    waves = COINppCodec(model, inner_steps=1, lat=lat, lon=lon, max_abs_error=0.02, residual_coder="sperr",
                        residual_compact=False)
    waves_fill = COINppCodec(model, inner_steps=1, lat=lat, lon=lon, max_abs_error=0.5, fill_value=-9999.0,
                             residual_coder="sperr", residual_compact=False)
    seeds += [(waves, waves.encode(xr)), (waves_fill, waves_fill.encode(xf))]
    # the network on the coarse grid (mode 6): a field its coarse reconstruction follows
    ctx = ChunkContext(model, tuple(lat), tuple(lon))
    fit = model.encode(x, ctx.grid(x.shape[1:]), steps=1)
    xc = (ctx.reconstruct_coarse(fit, x.shape[1:]) + np.random.default_rng(1).normal(0, 0.05, SHAPE)).astype("f4")
    seeds += [(waves, waves.encode(xc))]
    # SPERR alone on the items' DCT (wavelet coder 3, its mean before the stream): two items a level apart
    dct = COINppCodec(model, lat=lat, lon=lon, target_rmse=0.2, network=False)
    seeds += [(dct, dct.encode(np.stack([x[0], x[0] + np.float32(0.3)])))]
    # SPERR alone corrected within a bound (mode 7): the smooth wave twice, a spike of 20 in each item,
    # at an RMSE of 0.5 within 2
    spiked = np.concatenate([smooth, smooth + np.float32(0.5)])
    spiked[0, 3, 5] += 20.0
    spiked[1, 16, 40] -= 20.0
    corrected = COINppCodec(model, assume_global_grid=True, target_rmse=0.5, max_abs_error=2.0, network=False)
    seeds += [(corrected, corrected.encode(spiked))]
    modes = sorted({cf.unpack_chunk(c)[0].mode for _, c in seeds})
    assert modes == sorted(KNOWN_MODES), modes
    # every wavelet layout: the items stacked (the hybrid seed), tiled as a mosaic (SPERR alone), their DCT
    coders = sorted({cf.unpack_chunk(c)[1]["wavelet"][0] for _, c in seeds if "wavelet" in cf.unpack_chunk(c)[1]})
    assert coders == [1, 2, 3], coders
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ok = refused = 0
    bad: list[str] = []
    slowest = 0.0
    t0 = time.perf_counter()
    for i in range(n_chunks):
        codec, chunk = seeds[i % len(seeds)]
        m = byte_mutant(rng, chunk) if i % 2 else field_mutant(rng, chunk)
        for pinned in (True, False):
            t = time.perf_counter()
            decoded = outcome(lambda: decode_chunk(m, codec.model, codec.settings, shape=SHAPE, dtype="f4")
                              if pinned else codec.decode(m), f"chunk {i} pinned={pinned}", bad, check_shape=pinned)
            ok, refused = ok + (decoded is True), refused + (decoded is False)
            slowest = max(slowest, time.perf_counter() - t)
    # every header field of every SPERR stream, set to each extreme value (issue 32, cases 2-3)
    sperr_ok = sperr_refused = 0
    for codec, chunk in seeds:
        hdr, sections = cf.unpack_chunk(chunk)
        if "wavelet" not in sections:
            continue
        for at, fmt in sperr_fields(sections["wavelet"]):
            for value in field_values(fmt):
                m = cf.pack_chunk(hdr, {**sections, "wavelet": with_field(sections["wavelet"], at, value)})
                decoded = outcome(lambda: decode_chunk(m, codec.model, codec.settings, shape=SHAPE, dtype="f4"),
                                  f"SPERR field {at} = {value.hex()}", bad, check_shape=True, check_finite=True)
                sperr_ok, sperr_refused = sperr_ok + (decoded is True), sperr_refused + (decoded is False)
    data = model.to_bytes()
    m_ok = m_refused = 0
    for i in range(n_models):
        try:
            CoinModel.from_bytes(model_mutant(rng, data))
            m_ok += 1
        except ModelFileError:
            m_refused += 1
        except Exception as exc:  # noqa: BLE001
            bad.append(f"model {i}: {type(exc).__name__}: {str(exc)[:120]}")
    h_ok, h_refused = fuzz_hdf5(rng, n_hdf5, model, lat, lon, bad)
    grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
    print(json.dumps({"decoded": ok, "refused": refused, "models_ok": m_ok, "models_refused": m_refused,
                      "sperr_fields_decoded": sperr_ok, "sperr_fields_refused": sperr_refused,
                      "hdf5_ok": h_ok, "hdf5_refused": h_refused,
                      "failures": bad[:20], "n_failures": len(bad), "rss_growth_kb": grew,
                      "seconds": round(time.perf_counter() - t0, 2), "slowest_decode_s": round(slowest, 3)}))


BOMB = zlib.compress(bytes(64 << 20), 9)

if __name__ == "__main__":
    main(*[int(a) for a in sys.argv[1:5]])
