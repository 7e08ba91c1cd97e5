"""Small chunks: one time step of a 46 x 90 globe per chunk, chunk format version 3 vs. 1/2.

    nice -n 10 python benchmarks/small_chunks.py --model /tmp/globe46-model

Data: the embedded ``tas`` sample (12 monthly fields, 96 x 192) interpolated (bilinear) to the
46 x 90 cell-centre grid of the COIN++ paper's ERA5 setting; the recipe's contiguous split
(train 8 / validation 2 / test 2 steps). Without ``--model`` a small whole-globe model (one latent
vector per globe, ``era5`` recipe ``paper`` preset shrunk by ``--width/--depth/--latent/--steps``)
is trained on the train split first. Every test step is compressed as its own (1, 46, 90)
float32 chunk (16,560 bytes); reported per ``bits``: mean chunk bytes in format version 3 and the
same chunk re-packed in the version-1 layout (same sections), the ratios and the RMSE (K).
"""

from __future__ import annotations

import argparse
import pathlib

import _smoke
import numpy as np


def globe46(da):
    """``da`` (time, lat, lon) interpolated (bilinear, numpy) to 46 x 90 cell centres."""
    import xarray as xr

    lat = -90.0 + 180.0 / 46 * (np.arange(46) + 0.5)
    lon = -180.0 + 4.0 * np.arange(90)
    src_lat = np.asarray(da[da.dims[-2]].values, np.float64)
    src_lon = np.asarray(da[da.dims[-1]].values, np.float64)
    order = np.argsort(src_lat)
    v = np.asarray(da.values, np.float64)[:, order]
    along_lat = np.stack([[np.interp(lat, src_lat[order], v[t, :, j]) for j in range(v.shape[2])]
                          for t in range(v.shape[0])], axis=0).transpose(0, 2, 1)
    out = np.stack([[np.interp(lon, src_lon, along_lat[t, i], period=360.0) for i in range(46)]
                    for t in range(v.shape[0])])
    return xr.DataArray(out.astype(np.float32), dims=da.dims, attrs=da.attrs,
                        coords={da.dims[0]: da[da.dims[0]].values, da.dims[1]: lat, da.dims[2]: lon})


def legacy_size(chunk: bytes, codec) -> int:
    """Bytes of the same chunk in the version-1 layout (full sha256, fixed-width fields)."""
    from inrcodec import chunkformat as cf
    from inrcodec.chunkformat.header import ChunkHeader
    from inrcodec.chunkcodec.context import context

    hdr, sections = cf.unpack_chunk(chunk)
    part = codec.model.partition(context(codec.model, codec.settings).grid(tuple(hdr.shape[-2:])))
    legacy = ChunkHeader(**{**hdr.__dict__, "pin": None, "model_sha256": codec.model_sha256,
                               "patch_shape": part.patch_shape, "num_items": hdr.shape[0],
                               "num_patches": part.num_patches, "latent_dim": codec.model.latent_dim})
    return len(cf.pack_chunk(legacy, sections))


def main(argv=None) -> None:
    import torch

    from inrcodec import COINppCodec
    from inrcodec.datasets import embedded_sample
    from inrcodec.recipes import load_recipe, load_recipe_data, train_recipe

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="/tmp/globe46-model")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--latent", type=int, default=16)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--bits", default="1,2,3,4,6")
    ap.add_argument("--inner-steps", type=int, default=10)
    _smoke.add_flag(ap)
    args = ap.parse_args(argv)
    if args.smoke:  # a tiny untrained model instead of training one
        args.model, args.bits, args.inner_steps = _smoke.model_dir(), "2", 1
    torch.set_num_threads(1)

    da = globe46(embedded_sample("tas"))
    if not (pathlib.Path(args.model) / "model.safetensors").exists():
        train_recipe("era5", data=[da], preset="paper", steps=args.steps, out=args.model, progress=False,
                     overrides=dict(width=args.width, depth=args.depth, latent_dim=args.latent,
                                    outer_lr=3e-4, w0=30.0, encode_steps=args.inner_steps,
                                    batch_size=args.batch, outer_points=512),
                     report_bits=[])
    rd = load_recipe_data(load_recipe("era5"), [da])
    test = np.ascontiguousarray(rd.test, dtype=np.float32)
    print(f"test split: {test.shape} float32, one chunk per time step ({test[0:1].nbytes} bytes each)")
    print()
    print("| bits | v3 bytes | v3 ratio | v1 layout bytes | v1 ratio | latent payload bytes | RMSE (K) |")
    print("|---|---|---|---|---|---|---|")
    for bits in [int(b) for b in args.bits.split(",")]:
        codec = COINppCodec(args.model, bits=bits, inner_steps=args.inner_steps, lat=rd.lat, lon=rd.lon,
                            residual_coder="none")  # the network chunk: its layout is what is measured
        v3, v1, payload, se = [], [], [], []
        for t in range(test.shape[0]):
            x = test[t : t + 1]
            chunk = codec.encode(x)
            y = codec.decode(chunk)
            v3.append(len(chunk))
            v1.append(legacy_size(chunk, codec))
            payload.append(len(chunk) - 16)
            se.append(np.mean((y.astype(np.float64) - x) ** 2))
        n = x.nbytes
        print(f"| {bits} | {np.mean(v3):.1f} | {n / np.mean(v3):.0f}x | {np.mean(v1):.1f} | "
              f"{n / np.mean(v1):.0f}x | {np.mean(payload):.1f} | {np.sqrt(np.mean(se)):.3f} |")


if __name__ == "__main__":
    main()
