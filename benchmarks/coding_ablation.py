"""Ablation of the latent coding (issue #19): baseline; + mid-tread; + patch-size knob; + time coding.

Every configuration is one ``COINppCodec(...)`` option set (``CONFIGS``), run at each ``--bits``
(or ``--target-ratio``) on chunks of ``--chunk-steps`` consecutive steps; prints per data set,
configuration and setting: compression ratio (input float32 bytes / real chunk bytes), cos(lat)
weighted RMSE, max abs error, latents per step, encode and decode seconds.

    # the climate pool's validation split (how the defaults were chosen; never a test split)
    python benchmarks/coding_ablation.py --split validation --model t2m-global --bits 1 2 3 4 5 6
    # any (time, lat, lon) variable of a netCDF file, chunks of 6 steps
    python benchmarks/coding_ablation.py --data tas.nc --var tas --chunk-steps 6 --model t2m-global

``--patch-points`` sets the aim of the ``patch`` and ``time`` configurations (0: automatic, the
default; ``model``: the model's own patches); ``--sweep-patch A B ...`` adds one ``midtread-pA``
configuration per aim (how the automatic table was measured). ``--fit-cache`` fits each chunk
once per patch size and reuses it across bit widths and configurations (the fit is deterministic,
so ratios and errors are unchanged; the encode times then mean nothing).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import sys
import time

import numpy as np

import _smoke

#: name -> COINppCodec options (cumulative, as in the issue)
CONFIGS = {
    "baseline": dict(quantizer="uniform", time_coding=False, patch_points=None),
    "midtread": dict(quantizer="midtread", time_coding=False, patch_points=None),
    "patch": dict(quantizer="midtread", time_coding=False, patch_points=0),
    "time": dict(quantizer="midtread", time_coding=True, patch_points=0),
}
PAPER_LAT = np.linspace(-90.0, 90.0, 46)  # the COIN++ paper's 4-degree grid (as climate_heldout.py)
PAPER_LON = np.arange(90) * 4.0


def load_sets(args) -> dict:
    """name -> (values (T, lat, lon) float32, lat, lon, chunk steps)."""
    if args.data:
        import xarray as xr

        ds = xr.open_dataset(args.data)
        da = ds[args.var]
        da = da.transpose(*[d for d in da.dims if d not in (da.dims[-2], da.dims[-1])], da.dims[-2], da.dims[-1])
        v = np.asarray(da.values, np.float32).reshape(-1, da.shape[-2], da.shape[-1])
        lat, lon = np.asarray(da[da.dims[-2]].values, np.float64), np.asarray(da[da.dims[-1]].values, np.float64)
        if lat[0] > lat[-1]:
            lat, v = lat[::-1], v[:, ::-1]
        if args.max_steps:
            v = v[: args.max_steps]
        return {args.var: (np.ascontiguousarray(v), lat, lon, args.chunk_steps)}
    from inrcodec.training.pool import Field, regrid
    from inrcodec.datasets import climate_pool

    split = {"validation": "val"}.get(args.split, args.split)
    if split not in ("val", "train"):
        raise SystemExit("--split: choose settings on 'validation' (or look at 'train'); the test splits stay untouched")
    das = climate_pool(split)
    out = {}
    for name in ("glosea4", "a1b", "coads", "ncep"):
        group = [d for d in das if d.name == name or d.name.startswith(name + "_m")]
        if not group:
            continue
        v = np.concatenate([np.asarray(d.values, np.float32) for d in group])
        lat, lon = np.asarray(group[0].lat.values, np.float64), np.asarray(group[0].lon.values, np.float64)
        if lat[0] > lat[-1]:
            lat, v = lat[::-1], v[:, ::-1]
        # glosea4: members of one month, not time steps: one member per chunk
        steps = 1 if name == "glosea4" else args.chunk_steps
        if args.max_steps:
            v = v[: args.max_steps]
        out[name] = (np.ascontiguousarray(v), lat, lon, steps)
        if name == "glosea4":
            g = regrid(Field(v, lat, lon, name), PAPER_LAT, PAPER_LON)
            out["glosea4_46x90"] = (np.ascontiguousarray(g.values), PAPER_LAT, PAPER_LON, 1)
    order = args.sets or list(out)
    return {k: out[k] for k in order if k in out}


def _smoke_data() -> str:
    import xarray as xr
    from conftest import global_lat_lon, smooth_field

    lat, lon = global_lat_lon()
    path = _smoke.tmpdir() + "/smoke.nc"
    xr.Dataset({"t": (("time", "lat", "lon"), smooth_field(4).astype("f4"))},
               coords={"lat": lat, "lon": lon}).to_netcdf(path)
    return path


def install_fit_cache():
    """Memoise CoinModel.encode on its exact inputs (benchmark only); returns the function that
    puts the original back."""
    from inrcodec.models.model import CoinModel

    original = CoinModel.encode
    cache: dict = {}

    @functools.wraps(original)
    def encode(self, values, grid, steps=None, mask=None, refine_steps=0, patch_aim=0):
        h = hashlib.sha256(np.ascontiguousarray(values).tobytes())
        h.update(np.ascontiguousarray(grid.coordinates()).tobytes())
        if mask is not None:
            h.update(np.packbits(np.asarray(mask, bool)).tobytes())
        key = (self.sha256, h.hexdigest(), steps, refine_steps, patch_aim)
        if key not in cache:
            cache[key] = original(self, values, grid, steps=steps, mask=mask, refine_steps=refine_steps,
                                  patch_aim=patch_aim)
        return cache[key].copy()

    CoinModel.encode = encode
    return lambda: setattr(CoinModel, "encode", original)


def run(codec, values: np.ndarray, steps: int) -> dict:
    from inrcodec import chunkformat as cf

    nbytes, t_enc, t_dec, latents = 0, 0.0, 0.0, []
    rec = np.empty_like(values)
    for start in range(0, values.shape[0], steps):
        x = values[start:start + steps]
        t0 = time.perf_counter()
        chunk = codec.encode(x)
        t1 = time.perf_counter()
        rec[start:start + steps] = codec.decode(chunk)
        t_dec += time.perf_counter() - t1
        t_enc += t1 - t0
        nbytes += len(chunk)
        hdr = cf.unpack_chunk(chunk)[0]
        grid = codec.model.make_grid(x.shape[1:], lat=np.asarray(codec.settings.lat), lon=np.asarray(codec.settings.lon))
        latents.append(codec.model.partition(grid, hdr.patch_aim).num_patches * codec.model.latent_dim)
    return dict(nbytes=nbytes, rec=rec, t_enc=t_enc, t_dec=t_dec, latents=float(np.mean(latents)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--data", help="a netCDF file (with --var)")
    src.add_argument("--split", help="the climate pool split: 'validation' (settings are chosen there)")
    ap.add_argument("--var", help="the variable of --data")
    ap.add_argument("--model", default="t2m-global")
    ap.add_argument("--chunk-steps", type=int, default=6, help="time steps per chunk (default 6)")
    ap.add_argument("--max-steps", type=int, default=0, help="use only the first N steps of each set")
    ap.add_argument("--sets", nargs="+", help="pool sets to run (default: all)")
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), help=f"of {list(CONFIGS)}")
    ap.add_argument("--bits", nargs="*", type=int, default=[1, 2, 3, 4, 5, 6])
    ap.add_argument("--target-ratio", nargs="+", type=float, default=[],
                    help="also run rate control at these ratios (patch size and width chosen per chunk)")
    ap.add_argument("--patch-points", default="0", help="aim of the patch/time configurations (0 = auto, 'model')")
    ap.add_argument("--sweep-patch", nargs="+", type=int, default=[], help="add a mid-tread configuration per aim")
    ap.add_argument("--inner-steps", type=int, default=None, help="default: the model's")
    ap.add_argument("--refine-steps", type=int, default=0)
    ap.add_argument("--fit-cache", action="store_true", help="fit once per chunk and patch size (times meaningless)")
    _smoke.add_flag(ap)
    args = ap.parse_args(argv)
    if args.smoke:  # a tiny untrained model on 4 smooth 8 x 16 fields, one width
        args.model, args.bits = _smoke.model_dir(), [2]
        args.data, args.var, args.chunk_steps = _smoke_data(), "t", 2
    if not (args.data or args.split):
        ap.error("give --data PATH --var NAME, or --split validation")
    if args.data and not args.var:
        ap.error("--data needs --var")

    restore = install_fit_cache() if args.fit_cache else (lambda: None)
    try:
        return _run_all(args)
    finally:
        restore()


def _run_all(args) -> int:
    from inrcodec import COINppCodec
    from inrcodec.metrics import rmse_coslat

    aim = None if args.patch_points == "model" else int(args.patch_points)
    configs = {k: dict(CONFIGS[k]) for k in args.configs}
    for k in ("patch", "time"):
        if k in configs:
            configs[k]["patch_points"] = aim
    for a in args.sweep_patch:
        configs[f"midtread-p{a}"] = dict(quantizer="midtread", time_coding=False, patch_points=a)
    settings = [("bits", b) for b in args.bits] + [("target_ratio", r) for r in args.target_ratio]
    sets = load_sets(args)
    print("set,config,setting,ratio,rmse_coslat,max_abs,latents_per_step,enc_s,dec_s", flush=True)
    for name, (values, lat, lon, steps) in sets.items():
        for cname, opts in configs.items():
            for key, val in settings:
                extra = {} if args.inner_steps is None else {"inner_steps": args.inner_steps}
                codec = COINppCodec(args.model, lat=lat, lon=lon, refine_steps=args.refine_steps,
                                    **{key: val}, **opts, **extra)
                r = run(codec, values, steps)
                ok = np.isfinite(values)
                err = np.abs(r["rec"][ok].astype(np.float64) - values[ok])
                rm = rmse_coslat(values, r["rec"], lat)
                print(f"{name},{cname},{key}={val:g},{values.nbytes / r['nbytes']:.1f},{rm:.4f},{err.max():.3f},"
                      f"{r['latents']:.0f},{r['t_enc']:.2f},{r['t_dec']:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
