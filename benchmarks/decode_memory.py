"""Peak memory of decoding SPERR chunks (modes 4 and 5): honest chunks next to their encode, and
forged ones, every header field of the SPERR stream set to each extreme value (issue 32, cases 2,
3 and 8).

Each encode or decode runs in a forked child of a process that has imported everything and
encoded once, so the child's peak RSS (``ru_maxrss``) less its RSS at the fork is that call's own
peak. Forged chunks keep a valid CRC (they are what a hostile store holds); each is refused with
CorruptChunkError or decodes to the chunk's shape, and its peak is reported beside the decoded
chunk's float32 bytes.

Data: 8 hourly steps of the climate pool's test-time ERA5 temperature at 1 degree
(``benchmarks/speed.py``'s ``era5_t_1deg``, 8 x 181 x 360), the shipped ``t2m-global-2`` model.

Usage::

    python benchmarks/decode_memory.py                      # max_abs_error=0.5 and target_ratio=400
    python benchmarks/decode_memory.py --settings bits=6
    python benchmarks/decode_memory.py --smoke
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys

import _smoke
import numpy as np
import torch

from inrcodec import COINppCodec
from inrcodec import chunkformat as cf
from inrcodec.chunkformat import mode_counts
from inrcodec.errors import CorruptChunkError

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "fuzz"))
from fuzz_decode import field_values, sperr_fields, with_field  # noqa: E402

SETTINGS = ("max_abs_error=0.5", "target_ratio=400")


def _rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def peak_mb(fn) -> tuple[float, str]:
    """(MB the call ``fn()`` added to the peak RSS, its outcome), run in a forked child."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: one call, then out without Python's exit
        os.close(r)
        start = _rss_kb()
        try:
            y = fn()
            finite = not isinstance(y, np.ndarray) or np.isfinite(y[~np.isnan(y)]).all()
            outcome = "decoded" if finite else "DECODED TO INF"
        except CorruptChunkError as exc:
            outcome = f"refused: {str(exc)[:70]}"
        except BaseException as exc:  # noqa: BLE001 - a finding, reported
            outcome = f"FAILED {type(exc).__name__}: {str(exc)[:70]}"
        grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start
        os.write(w, json.dumps([grew / 1024, outcome]).encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        text = f.read()
    os.waitpid(pid, 0)
    mb, outcome = json.loads(text) if text else (float("nan"), "FAILED: the child died")
    return mb, outcome


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), help="codec settings, e.g. bits=6")
    ap.add_argument("--model", default="t2m-global-2")
    _smoke.add_flag(ap)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)  # forked children and torch's thread pool do not mix
    if a.smoke:
        from conftest import global_lat_lon, smooth_field

        lat, lon = global_lat_lon(8, 16)
        x, model = smooth_field(2, seed=1).astype(np.float32), _smoke.model_dir()
        a.settings = ["max_abs_error=0.5"]
    else:
        from speed import data_set

        field = data_set("era5_t_1deg", "test")
        lat, lon, model = field.lat, field.lon, a.model
        x = np.ascontiguousarray(field.values[:8], dtype=np.float32)
    from inrcodec.bench.cli import codec_options

    decoded_mb = x.nbytes / 2**20
    print(f"chunk {x.shape} float32: {decoded_mb:.1f} MB decoded")
    worst = (0.0, "")
    for setting in a.settings:
        codec = COINppCodec(model, lat=lat, lon=lon, **codec_options(setting.split(",")))
        chunk = codec.encode(x)  # warm: model, torch and SPERR loaded before any fork
        codec.decode(chunk)
        enc_mb, _ = peak_mb(lambda: codec.encode(x))
        dec_mb, outcome = peak_mb(lambda: codec.decode(chunk))
        modes = mode_counts([chunk])
        print(f"\n{setting}: {len(chunk)} B, modes {modes}; encode peak +{enc_mb:.1f} MB, "
              f"decode peak +{dec_mb:.1f} MB ({dec_mb / decoded_mb:.1f}x the decoded bytes, {outcome})")
        hdr, sections = cf.unpack_chunk(chunk)
        if "wavelet" not in sections:
            continue
        print("| field offset | value | decode peak MB | outcome |\n|---|---|---|---|")
        for at, fmt in sperr_fields(sections["wavelet"]):
            for value in field_values(fmt):
                forged = cf.pack_chunk(hdr, {**sections, "wavelet": with_field(sections["wavelet"], at, value)})
                mb, outcome = peak_mb(lambda: codec.decode(forged))
                worst = max(worst, (mb, f"{setting}, offset {at} = {value.hex()}: {outcome}"))
                if mb > dec_mb + 1 or not outcome.startswith(("refused", "decoded")):  # the rest: refused or
                    # decoded within 1 MB of the honest chunk
                    print(f"| {at} | {value.hex()} | {mb:.1f} | {outcome} |")
        print("(rows shown: forged chunks whose peak exceeds the honest decode's by over 1 MB, or that failed or "
              "decoded to inf)")
    print(f"\nlargest decode peak of a forged chunk: +{worst[0]:.1f} MB ({worst[1]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
