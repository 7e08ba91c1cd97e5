"""Error-bounded mode with SPERR among the candidates (issue 24) next to SZ3 and SPERR alone, on the
held-out ERA5 file of ``heldout_rd.py`` or a pool set (``--data pool:mpi_esm``): ratio and measured
max error at each bound, chunks of ``--chunk`` items, every codec through its real encoder and decoder.

    python benchmarks/hybrid_bound.py --data heldout_weather.nc --split test --grid 4deg --bounds 0.1 0.5
    python benchmarks/hybrid_bound.py --data pool:mpi_esm --bounds 0.1 0.5
    python benchmarks/hybrid_bound.py --data pool:era5_t_4deg --split val   # a pool set's validation split
    python benchmarks/hybrid_bound.py --data pool:mpi_esm --codec-option residual_context=false  # the build before
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import _smoke
import numpy as np
from heldout_rd import _smoke_data, load

from inrcodec import CodecSettings, COINppCodec
from inrcodec.bench.cli import codec_options
from inrcodec.models import modelstore
from inrcodec import chunkformat as cf
from inrcodec.chunkformat.header import KNOWN_MODES
from inrcodec.wasmcodecs import wasm_codec_class


def _peer(name: str, bound: float):
    """SZ3 (a bench extra: None when not installed) or SPERR (a core dependency) at ``bound``."""
    if name == "SZ3":
        try:
            Sz3 = wasm_codec_class("numcodecs_wasm_sz3", "Sz3")
        except ImportError:
            return None
        return Sz3(eb_mode="abs", eb_abs=bound)
    Sperr = wasm_codec_class("numcodecs_wasm_sperr", "Sperr")
    return Sperr(mode="pwe", pwe=bound)


def _run(codec, x: np.ndarray, chunk: int, decode):
    t = time.perf_counter()
    chunks = [bytes(np.asarray(codec.encode(np.ascontiguousarray(x[i:i + chunk]))).tobytes())
              for i in range(0, len(x), chunk)]
    t_enc = time.perf_counter() - t
    t = time.perf_counter()
    y = np.concatenate([decode(codec, c, x[i * chunk:(i + 1) * chunk]) for i, c in enumerate(chunks)])
    return chunks, y, t_enc, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data")
    ap.add_argument("--variable", default="t850")
    ap.add_argument("--split", default="test", choices=["val", "test"])
    ap.add_argument("--grid", default="4deg", choices=["native", "4deg"])
    ap.add_argument("--chunk", type=int, default=4)
    ap.add_argument("--bounds", nargs="+", type=float, default=[0.1, 0.5])
    ap.add_argument("--bits", type=int, default=4)
    ap.add_argument("--model", default="t2m-global")
    ap.add_argument("--codec-option", action="append", default=[], metavar="KEY=VALUE",
                    help="an inrcodec codec option (repeatable), e.g. residual_context=false")
    _smoke.add_flag(ap)
    args = ap.parse_args()
    if args.smoke:  # a tiny untrained model on 2 smooth fields, one bound
        args.data, args.model, args.bounds, args.chunk, args.bits, args.grid = \
            _smoke_data(), _smoke.model_dir(), [0.5], 2, 2, "native"
    elif not args.data:
        ap.error("--data is required")
    if args.data.startswith("pool:") and args.split == "val":  # where settings are chosen
        from effort_validation import validation_set

        field = validation_set(args.data[5:])
    else:
        _, field = load(args.data, args.variable, args.split, args.grid, args.chunk)
    x = np.ascontiguousarray(field.values, np.float32)
    model = modelstore.load(args.model).model
    options = codec_options(args.codec_option)
    print("| bound | codec | ratio | max abs err | RMSE | encode s | decode s | modes |\n|---|---|---|---|---|---|---|---|")
    for bound in args.bounds:
        # (an inrcodec without the option, e.g. the one the smoke test imports, runs "none" only)
        coders = ("none", "sperr") if "residual_coder" in CodecSettings.names() else ("none",)
        rows = [(f"inrcodec {rc}", COINppCodec(model, bits=args.bits, inner_steps=model.encode_steps, lat=field.lat,
                                               lon=field.lon, max_abs_error=bound, **options,
                                               # named even for "none": the default is "sperr"
                                               **({"residual_coder": rc} if len(coders) > 1 else {})),
                 lambda c, d, like: c.decode(d)) for rc in coders]
        rows += [(p, _peer(p, bound), lambda c, d, like: np.asarray(c.decode(np.frombuffer(d, np.uint8))).reshape(like.shape))
                 for p in ("SZ3", "SPERR") if _peer(p, bound) is not None]
        for name, codec, dec in rows:
            chunks, y, te, td = _run(codec, x, args.chunk, dec)
            err = y.astype("f8") - x
            modes = ""
            if name.startswith("inrcodec"):
                counts = Counter(KNOWN_MODES[cf.unpack_chunk(c)[0].mode] for c in chunks)
                modes = ", ".join(f"{k} {v}/{len(chunks)}" for k, v in counts.most_common())
            print(f"| {bound:g} | {name} | {x.nbytes / sum(map(len, chunks)):.2f}x | {np.abs(err).max():.4g} | "
                  f"{np.sqrt(np.mean(err ** 2)):.4g} | {te:.3g} | {td:.3g} | {modes} |", flush=True)


if __name__ == "__main__":
    main()
