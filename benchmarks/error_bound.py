"""Error-bounded mode: compression ratio and measured max error next to SZ3, ZFP and SPERR.

    /tmp/venv/bin/python benchmarks/error_bound.py --model /tmp/bound-model

Data: the embedded ``tas`` sample (MPI-ESM-LR 2005 monthly near-surface air temperature,
12 x 96 x 192, K), held-out last 2 time steps, compressed as one (2, 96, 192) float32 chunk.
The model should be trained on the other steps, e.g.
``train_recipe("era5", steps=1500, out="/tmp/bound-model", progress=False)`` (its default
contiguous split puts the last steps in validation/test).

inrcodec runs with ``bits`` = ``--bits`` (the widest latent width it tries; it also tries narrower
widths and the no-network residual per chunk and keeps the smallest); the chunk's mode and width
are reported.
Peers (``numcodecs-wasm-*`` from PyPI): SZ3 ``eb_mode="abs"``, ZFP ``fixed-accuracy`` with
``tolerance=bound``, SPERR ``pwe=bound``. A peer that is not installed or fails is reported as such.
"no-network ablation": the same residual coder (:mod:`inrcodec.chunkcodec.residual`) against a constant
prediction (the chunk mean), i.e. without the neural reconstruction: what the network contributes.
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import platform
import time
from importlib import metadata

import _smoke
import numpy as np

from inrcodec.wasmcodecs import wasm_codec_class


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _peer(name: str, bound: float):
    if name == "SZ3":
        Sz3 = wasm_codec_class("numcodecs_wasm_sz3", "Sz3")
        return Sz3(eb_mode="abs", eb_abs=bound)
    if name == "ZFP":
        Zfp = wasm_codec_class("numcodecs_wasm_zfp", "Zfp")
        return Zfp(mode="fixed-accuracy", tolerance=bound)
    if name == "SPERR":
        Sperr = wasm_codec_class("numcodecs_wasm_sperr", "Sperr")
        return Sperr(mode="pwe", pwe=bound)
    raise ValueError(name)


def _measure(codec, x: np.ndarray) -> tuple[float, float, float]:
    t = time.perf_counter()
    enc = codec.encode(x)
    dec = np.asarray(codec.decode(enc)).reshape(x.shape)
    dt = time.perf_counter() - t
    nbytes = len(memoryview(enc).cast("B")) if not isinstance(enc, np.ndarray) else enc.nbytes
    err = float(np.nanmax(np.abs(dec.astype(np.float64) - x.astype(np.float64))))
    return x.nbytes / nbytes, err, dt


def _coder_sizes(codec, chunk: bytes, x: np.ndarray) -> str:
    """Residual bytes of each (predictor, coder) pair for this chunk (the codec keeps the smallest)."""
    from inrcodec import chunkformat as cf
    from inrcodec.chunkformat.header import ChunkHeader, KNOWN_MODES, MODE_BOUNDED, MODE_MODULATIONS
    from inrcodec.chunkcodec import residual

    hdr, sections = cf.unpack_chunk(chunk)
    if hdr.mode != MODE_BOUNDED:
        return f"{KNOWN_MODES[hdr.mode]} (mode {hdr.mode})"  # raw, no-network residual, hybrid, SPERR alone
    plain = dict(sections)
    info = residual.residual_info(plain.pop("residual"))
    h0 = ChunkHeader(**{**hdr.__dict__, "mode": MODE_MODULATIONS})
    recon = codec.decode(cf.pack_chunk(h0, plain))  # the reconstruction alone (in the chunk dtype)
    enc = residual.encode_residual(x, recon, np.isfinite(x), info["bound"], x.dtype)
    name = {(0, 1): "hist", (0, 2): "geom", (1, 1): "lorenzo+hist", (1, 2): "lorenzo+geom"}
    return ", ".join(f"{name[k]} {v}" for k, v in sorted(enc.sizes.items(), key=lambda kv: kv[1]))


def _mode2_sizes(args, lat, lon, x: np.ndarray, bound: float) -> dict:
    """Bytes of a mode-2 chunk (latents + residual, no fallback) at each width 1..``--bits``:
    the plain chunk at that width plus the residual of its reconstruction (+2 for the section
    length varint), i.e. what the codec weighs against mode 3."""
    from inrcodec.chunkcodec import residual
    from inrcodec.codec import COINppCodec

    sizes = {}
    for bits in range(1, args.bits + 1):
        c = COINppCodec(args.model, bits=bits, inner_steps=args.inner_steps, lat=lat, lon=lon)
        plain = c.encode(x)
        recon = c.decode(plain).astype(np.float64)
        res = residual.encode_residual(x, recon, np.isfinite(x), bound, x.dtype)
        sizes[bits] = len(plain) + len(res.payload) + 2
    return sizes


def main(argv=None) -> None:
    from inrcodec.codec import COINppCodec
    from inrcodec.datasets import embedded_sample

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="/tmp/bound-model")
    ap.add_argument("--bounds", default="0.01,0.05,0.1,0.5")
    ap.add_argument("--bits", type=int, default=6)
    ap.add_argument("--mode2", action="store_true",
                    help="also the best mode-2 chunk (network + residual, no fallback) over widths 1..bits")
    ap.add_argument("--inner-steps", type=int, default=10)
    _smoke.add_flag(ap)
    args = ap.parse_args(argv)
    if args.smoke:  # peers that are not installed are reported as such
        args.model, args.bounds, args.bits, args.inner_steps = _smoke.model_dir(), "0.5", 2, 1
    bounds = [float(b) for b in args.bounds.split(",")]

    da = embedded_sample("tas")
    x = np.ascontiguousarray(da.values[-2:], dtype=np.float32)
    lat, lon = da[da.dims[-2]].values, da[da.dims[-1]].values
    rows, coder_notes = [], []
    for bound in bounds:
        from inrcodec import chunkformat as cf

        c = COINppCodec(args.model, bits=args.bits, inner_steps=args.inner_steps, lat=lat, lon=lon,
                        max_abs_error=bound)
        chunk = c.encode(x)
        err = float(np.max(np.abs(c.decode(chunk).astype(np.float64) - x)))
        hdr = cf.unpack_chunk(chunk)[0]
        chosen = f"mode {hdr.mode}" + (f", {hdr.bits} bits" if hdr.bits else "")
        row = [f"{bound:g}", f"{x.nbytes / len(chunk):.2f}", f"{err:.4g}", chosen]
        if args.mode2:
            m2 = _mode2_sizes(args, lat, lon, x, bound)
            b2 = min(m2, key=m2.get)
            row.append(f"{x.nbytes / m2[b2]:.2f} ({b2} bits)")
        from inrcodec.chunkcodec import residual

        alone = residual.encode_residual(x, np.full(x.shape, float(x.mean())), np.isfinite(x), bound, x.dtype)
        row.append(f"{x.nbytes / len(alone.payload):.2f}")
        coder_notes.append(f"bound {bound:g}, {chosen}: residual bytes {_coder_sizes(c, chunk, x)}")
        for peer in ("SZ3", "ZFP", "SPERR"):
            try:
                ratio, err, _ = _measure(_peer(peer, bound), x)
                row += [f"{ratio:.2f}", f"{err:.4g}"]
            except Exception as exc:  # report, do not hide
                row += [f"failed: {type(exc).__name__}", "-"]
        rows.append(row)
        print(f"# bound {bound:g} done", flush=True)

    print()
    print(f"data: embedded tas, last 2 time steps, shape {x.shape} float32 ({x.nbytes} bytes); "
          f"range {x.min():.2f}..{x.max():.2f} K")
    print(f"machine: {platform.machine()} {platform.processor() or ''}, python {platform.python_version()}; "
          + ", ".join(f"{d} {_version(d)}" for d in ("inrcodec", "torch", "numcodecs-wasm-sz3",
                                                     "numcodecs-wasm-zfp", "numcodecs-wasm-sperr")))
    print()
    m2_head = "| best mode 2 ratio " if args.mode2 else ""
    print("| bound (K) | inrcodec ratio | inrcodec max err | chunk mode, bits " + m2_head + "| no-network ablation ratio "
          "| SZ3 ratio | SZ3 max err | ZFP ratio | ZFP max err | SPERR ratio | SPERR max err |")
    print("|---" * (11 + bool(args.mode2)) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()
    print("Residual coding, bytes per (predictor, coder), smallest first:")
    print()
    for note in coder_notes:
        print(f"- {note}")


if __name__ == "__main__":
    main()
