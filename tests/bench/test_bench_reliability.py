"""Hostile cases of docs/reliability.md for benchmark scripts: each test is named for what it
holds, and says its review and case (reviews 1-3: issues 13, 21 and 32) first."""

from __future__ import annotations

import os

from conftest import global_lat_lon, smooth_field
from helpers import REPO

from inrcodec.codec import COINppCodec


def test_small_chunks_benchmark_measures_the_legacy_layout(tiny_model, monkeypatch):
    """Case 14 of the second reliability review (docs/reliability.md).

    benchmarks/small_chunks.py called ``codec._grid``, gone since the chunk pipeline moved to
    chunkcodec; every benchmark now also runs at its smallest setting (tests/bench/test_benchmarks.py)."""
    import runpy

    benchmarks = str(REPO / "benchmarks")
    monkeypatch.syspath_prepend(benchmarks)
    bench = runpy.run_path(os.path.join(benchmarks, "small_chunks.py"))
    codec = COINppCodec(tiny_model, inner_steps=1, lat=global_lat_lon()[0], lon=global_lat_lon()[1],
                        residual_coder="none")  # a network chunk, whose layout the benchmark measures
    chunk = codec.encode(smooth_field(1).astype("f4"))
    assert bench["legacy_size"](chunk, codec) > len(chunk) + 90  # the version-1 layout's full hash and fields
