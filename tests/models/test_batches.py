"""Network batches spread over threads (inrcodec.models.batches)."""
import os
import threading

import numpy as np
import pytest
import torch

from inrcodec.models.batches import map_batches
from inrcodec.models import fitting
from inrcodec.models.fitting import fit_modulations, reconstruct
from inrcodec.models.network import ModulatedSiren


@pytest.fixture
def two_threads():
    own = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(own)


def test_results_keep_the_batches_order_and_each_batch_runs_one_threaded(two_threads):
    seen = []

    def work(b):
        seen.append((threading.get_ident(), torch.get_num_threads()))
        return b * b

    assert map_batches(work, range(7)) == [b * b for b in range(7)]
    assert {n for _, n in seen} == {1}
    assert torch.get_num_threads() == 2  # the caller's setting is its own again
    assert map_batches(work, []) == []


def test_a_failing_batch_raises_in_the_caller(two_threads):
    def work(b):
        if b == 3:
            raise ValueError("batch 3")
        return b

    with pytest.raises(ValueError, match="batch 3"):
        map_batches(work, range(6))


def test_one_thread_runs_the_batches_in_the_caller():
    own = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert {ident for ident in map_batches(lambda b: threading.get_ident(), range(4))} == {threading.get_ident()}
    finally:
        torch.set_num_threads(own)


def _net():
    torch.manual_seed(3)
    return ModulatedSiren(dim_in=3, dim_out=1, width=32, depth=3, latent_dim=8, w0=30.0)


@pytest.mark.parametrize("what", ["reconstruct", "fit"])
def test_floats_do_not_depend_on_the_callers_thread_count(what):
    """Every batch runs one-threaded however many threads the caller has: a chunk's reconstruction
    and fitted latents are the same floats with 1, 2 or 3 threads (many batches, spread or not)."""
    net = _net()
    rng = np.random.default_rng(0)
    coords = rng.uniform(-1, 1, (300, 3)).astype(np.float32)
    latents = rng.normal(0, 0.5, (40, 8)).astype(np.float32)
    values = rng.normal(0, 1, (40, 300, 1)).astype(np.float32)
    own, results = torch.get_num_threads(), []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            if what == "reconstruct":
                results.append(reconstruct(net, latents, coords, batch_size=4, max_points=1200))
            else:
                results.append(fit_modulations(net, coords, values, steps=3, batch_size=4, max_points=1200))
    finally:
        torch.set_num_threads(own)
    assert results[0].shape[0] == 40
    for other in results[1:]:
        assert torch.equal(results[0], other)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_process_makes_its_own_threads(two_threads):
    map_batches(lambda b: b, range(4))  # the parent's pool exists
    pid = os.fork()
    if pid == 0:  # the child: its batches must run (the parent's threads are not here)
        ok = False
        try:
            ok = map_batches(lambda b: b + 1, range(4)) == [1, 2, 3, 4]
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_the_callers_and_later_threads_keep_their_thread_count(two_threads):
    """The workers' one thread is their own: the caller, and threads made after them, keep torch's
    process-wide setting, and a caller that changes it later does not change the workers'."""
    map_batches(lambda b: b, range(4))
    assert torch.get_num_threads() == 2
    later = []
    thread = threading.Thread(target=lambda: later.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    assert later == [2]
    torch.set_num_threads(3)
    assert set(map_batches(lambda b: torch.get_num_threads(), range(6))) == {1}


@pytest.mark.parametrize("items, points", [(48, 256), (47, 256), (10, 300), (3, 5000), (1, 64), (40, 100)])
def test_cache_blocks_cover_a_batch_in_order_and_keep_the_least_points(items, points):
    batch = slice(5, 5 + items)
    blocks = fitting._cache_blocks(batch, points)
    assert [i for b in blocks for i in range(b.start, b.stop)] == list(range(batch.start, batch.stop))
    sizes = [b.stop - b.start for b in blocks]
    assert max(sizes) - min(sizes) <= 1
    if items * points >= fitting.CACHE_POINTS:
        assert min(sizes) * points >= fitting.CACHE_POINTS - points  # nearly equal blocks of at least the least
        assert len(blocks) == min(items, items * points // fitting.CACHE_POINTS)
    else:
        assert blocks == [batch]


def test_a_reconstruction_in_cache_blocks_is_the_networks_output(monkeypatch):
    """Blocks of a few items give what the network gives for the whole chunk at once."""
    net = _net()
    rng = np.random.default_rng(1)
    coords = rng.uniform(-1, 1, (40, 300, 3)).astype(np.float32)
    latents = rng.normal(0, 0.5, (40, 8)).astype(np.float32)
    with torch.no_grad():
        whole = net(torch.from_numpy(coords), torch.from_numpy(latents))
    monkeypatch.setattr(fitting, "CACHE_POINTS", 700)  # blocks of 2-3 items
    blocked = reconstruct(net, latents, coords, batch_size=8, max_points=2400)
    torch.testing.assert_close(blocked, whole, rtol=0, atol=1e-5)
    monkeypatch.setattr(fitting, "_cache_blocks", lambda batch, points: [slice(batch.start, batch.start + 1)])
    assert not torch.allclose(reconstruct(net, latents, coords, batch_size=8, max_points=2400), whole, atol=1e-5)
