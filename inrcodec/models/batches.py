"""A chunk's network batches spread over threads, each thread's kernels one-threaded.

The encoder's inner loop and every reconstruction cut their work into batches of at most
``FIT_BATCH_POINTS`` points (:mod:`~inrcodec.models.fitting`) that do not depend on each other. Run
one after another, each of a batch's operations is spread by torch over the CPU's threads, which
meet after every operation (a shift added, a sine): cache-sized operations spend much of their
time there. :func:`map_batches` gives whole batches to threads instead, each running one-threaded
kernels and numpy's sine (:func:`~inrcodec.models.network.sin_`): on two cores network chunks of
1-degree and GloSea4 globes decode 1.08-1.32x as fast and are fitted 1.2-1.4x as fast
(docs/benchmarks.md, "Twelfth round").

Where the work is spread, a batch computes the same floats however many threads the caller has (a
one-threaded caller computes them too). A lone batch, or a one-threaded caller, runs in the
caller with its own threads, as before; a GPU's batches run in turn.

Example::

    >>> from inrcodec.models.batches import map_batches
    >>> map_batches(lambda b: b * b, [1, 2, 3])
    [1, 4, 9]
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

__all__ = ["map_batches"]

T = TypeVar("T")
R = TypeVar("R")

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def _forgotten_in_child() -> None:
    """A forked process makes its own pool (the parent's threads are not in it) and lock (a fork
    while another thread held it must not leave it held)."""
    global _lock, _pool
    _lock, _pool = threading.Lock(), None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forgotten_in_child)


def _one_thread() -> None:
    """A worker's kernels one-threaded. torch's thread count is OpenMP's, kept per thread, and a
    thread takes the process-wide value at its first parallel operation, which
    ``torch.set_num_threads`` also sets: the worker takes it first (``get_num_threads``), sets its
    own to 1, and a passing thread puts the process-wide value back for the threads made later."""
    others = torch.get_num_threads()
    torch.set_num_threads(1)
    restore = threading.Thread(target=torch.set_num_threads, args=(others,))
    restore.start()
    restore.join()


def _workers() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max(2, os.cpu_count() or 1), thread_name_prefix="inrcodec-batches",
                                       initializer=_one_thread)
        return _pool


def map_batches(work: Callable[[T], R], batches: Sequence[T], device: torch.device | str = "cpu") -> list[R]:
    """``[work(b) for b in batches]``, computed by as many threads as the caller's
    ``torch.get_num_threads()``, each batch on one thread with one-threaded kernels (on a CPU). A
    lone batch, a one-threaded caller or another ``device`` runs the batches in this thread, one
    after another. ``work`` must not depend on the order the batches run in; it sets its own grad
    mode (that is per thread)."""
    batches = list(batches)
    if torch.device(device).type != "cpu":
        return [work(b) for b in batches]
    threads = min(torch.get_num_threads(), len(batches))
    if threads <= 1:  # one thread, or one batch: in the caller, with its threads
        return [work(b) for b in batches]
    out: list = [None] * len(batches)
    order = iter(range(len(batches)))
    take = threading.Lock()
    failed = threading.Event()

    def share() -> None:  # the next batch not yet taken, until none is left: a slow thread takes fewer
        while not failed.is_set():
            with take:
                i = next(order, None)
            if i is None:
                return
            try:
                out[i] = work(batches[i])
            except BaseException:
                failed.set()  # the other threads take no more batches
                raise

    futures = [_workers().submit(share) for _ in range(threads)]
    try:
        for future in futures:
            future.result()
    except BaseException:  # a batch failed, or the caller was interrupted: no more batches start
        failed.set()
        raise
    return out
