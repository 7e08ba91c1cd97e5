"""Rate-distortion of climate models on held-out real temperature, against SPERR, SZ3, ZFP, BitRound.

Test sets, none of them seen by training, validation or any choice of settings (docs/data.md):

* ``mpi_esm``      held out by source: MPI-ESM-LR 2005 monthly tas, 12 x 96 x 192 (about 1.9 degrees)
* ``mpi_esm_4deg`` the same fields bilinearly regridded to the COIN++ paper's 46 x 90 grid (4 degrees)
* ``glosea4``      held out by time: the pool's test-time GloSea4 month, 13 members x 145 x 192 (1.25 x 1.875)
* ``glosea4_4deg`` the same on the 46 x 90 grid
* ``e1``           held out by source (scenario): 24 annual North-American fields, 37 x 49
* ``era5_t``       held out by time, sub-daily: the pool's test-time ERA5 analysis (2017-01-02 12 UTC),
                   temperature at 850 and 500 hPa, 10 members each, 20 x 61 x 120 (3 degrees)
* ``era5_t_4deg``  the same on the 46 x 90 grid

Usage (writes CSV, plots and a markdown table per set under OUT)::

    python benchmarks/climate_heldout.py --model t2m-global --out bench-climate
    python benchmarks/climate_heldout.py --model era5-model --sets mpi_esm_4deg --bits 2 4 6
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import _smoke
import numpy as np

from inrcodec import bench, datasets
from inrcodec.training.pool import Field, regrid
from inrcodec.recipes import RecipeData

PAPER_LAT = np.linspace(-90.0, 90.0, 46)  # 4-degree grid with both poles, as in COIN++ appendix B.4
PAPER_LON = np.arange(90) * 4.0


def pool_field(split: str, name: str) -> Field:
    das = [da for da in datasets.climate_pool(split) if da.name == name or da.name.startswith(name + "_m")]
    if not das:
        raise ValueError(f"no {name!r} in the pool's {split!r} split")
    values = np.concatenate([np.asarray(d.values, np.float32) for d in das])
    return Field(values, np.asarray(das[0]["lat"].values), np.asarray(das[0]["lon"].values), name)


def test_sets() -> dict:
    mpi, glo, e1 = pool_field("test-source", "mpi_esm"), pool_field("test-time", "glosea4"), pool_field("test-source", "e1")
    era5 = pool_field("test-time", "era5_t")
    return {
        "era5_t": era5,
        "era5_t_4deg": regrid(era5, PAPER_LAT, PAPER_LON),
        "mpi_esm": mpi,
        "mpi_esm_4deg": regrid(mpi, PAPER_LAT, PAPER_LON),
        "glosea4": glo,
        "glosea4_4deg": regrid(glo, PAPER_LAT, PAPER_LON),
        "e1": e1,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", nargs="+", help="model file(s), train-recipe dirs or shipped names")
    ap.add_argument("--sets", nargs="+", default=["mpi_esm_4deg", "mpi_esm", "glosea4_4deg", "glosea4", "e1"])
    ap.add_argument("--bits", nargs="+", type=int, default=[1, 2, 3, 4, 5, 6, 8])
    ap.add_argument("--peers", nargs="+", default=["sperr", "sz3", "zfp", "bitround-zstd"])
    ap.add_argument("--out", default="bench-climate")
    _smoke.add_flag(ap)
    args = ap.parse_args(argv)
    if args.smoke:  # two fields of the smallest set, no peers
        args.model, args.sets, args.bits, args.peers = [_smoke.model_dir()], ["e1"], [2], []
        args.out = _smoke.tmpdir()
    elif not args.model:
        ap.error("--model is required")
    sets = test_sets()
    for name in args.sets:
        f = sets[name]
        if args.smoke:
            f = Field(f.values[:2], f.lat, f.lon, f.name)
        rd = RecipeData(None, None, f.values, lat=f.lat, lon=f.lon, units="K", source=f.name)
        res = bench.run_bench(rd, models=args.model, bits=args.bits, peers=args.peers, log=print, name=name)
        files = bench.write_outputs(res, Path(args.out) / name, command="python " + " ".join(sys.argv))
        print(name, files)
    return 0


if __name__ == "__main__":
    sys.exit(main())
