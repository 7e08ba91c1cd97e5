"""Where a chunk's encode and decode time goes: named stages, timed only inside
:func:`stage_times` (``benchmarks/speed.py``); elsewhere :func:`stage` costs one context lookup.

>>> from inrcodec.chunkcodec.timing import stage, stage_times
>>> with stage_times() as seconds:
...     with stage("fit"):
...         pass
>>> sorted(seconds)
['fit']
"""

from __future__ import annotations

import contextlib
import contextvars
import time

__all__ = ["STAGES", "stage", "stage_times"]

#: the stages the chunk pipeline marks: fitting latents, evaluating the network, SPERR (the
#: wavelet section), quantizing and entropy coding latents, the bounded residual, and the
#: end-to-end decode check of bounded chunks
STAGES = ("fit", "reconstruct", "wavelet", "latents", "residual", "check")

_times: contextvars.ContextVar[dict | None] = contextvars.ContextVar("inrcodec_stage_times", default=None)


@contextlib.contextmanager
def stage(name: str):
    """Add the block's wall time to stage ``name`` when :func:`stage_times` collects (stages do
    not nest: a stage inside another is counted in both)."""
    times = _times.get()
    if times is None:
        yield
        return
    start = time.perf_counter()
    try:
        yield
    finally:
        times[name] = times.get(name, 0.0) + time.perf_counter() - start


@contextlib.contextmanager
def stage_times():
    """Collect the seconds per stage of the chunk work done in this thread inside the block."""
    times: dict[str, float] = {}
    token = _times.set(times)
    try:
        yield times
    finally:
        _times.reset(token)
