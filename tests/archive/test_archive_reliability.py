"""Hostile cases of docs/reliability.md for whole stores (compress, decompress, resume, info): each test is
named for what it holds, and says its review and case (reviews 1-3: issues 13, 21 and 32) first."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import xarray as xr
import zarr
from golden_cases import codec_and_input
from helpers import Stop, file_hashes, stop_after_first_region

from inrcodec import archive
from inrcodec.cli import main as cli_main
from inrcodec.errors import IncompleteStoreWarning

KW = dict(variables=["tas"], chunks="time=2", inner_steps=1, progress=False, evaluate=False)


def _stop_first_then_resume_against(inp, model, tmp_path, change):
    out = tmp_path / "changed.zarr"
    with pytest.raises(Stop):
        archive.compress_dataset(inp, out, model, on_region=stop_after_first_region, scheduler="synchronous", **KW)
    change()
    with pytest.raises(archive.StoreMismatchError, match="changed since that run started"):
        archive.compress_dataset(inp, out, model, **KW)
    return out


def test_compress_never_destroys_its_input_or_foreign_directories(small, tmp_path):
    """Case 1 of the first reliability review (docs/reliability.md)."""
    inp, model, _ = small
    zin = tmp_path / "in.zarr"
    xr.open_dataset(inp).to_zarr(zin, consolidated=False)
    before = file_hashes(zin)
    for out in (zin, zin / "tas"):
        assert cli_main(["compress", str(zin), str(out), "--model", model, "--variables", "tas",
                         "--inner-steps", "1", "--quiet", "--overwrite"]) == 2
    assert file_hashes(zin) == before
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "thesis.txt").write_text("irreplaceable")
    with pytest.raises(ValueError, match="not a Zarr store"):
        archive.compress_dataset(inp, foreign, model, overwrite=True, **KW)
    assert (foreign / "thesis.txt").read_text() == "irreplaceable"
    # --overwrite of a complete store that stops early leaves the old store exactly as it was
    out = tmp_path / "out.zarr"
    archive.compress_dataset(inp, out, model, **KW)
    old = file_hashes(out)
    with pytest.raises(Stop):
        archive.compress_dataset(inp, out, model, overwrite=True, on_region=stop_after_first_region,
                                 **dict(KW, inner_steps=2))
    assert file_hashes(out) == old
    archive.compress_dataset(inp, out, model, overwrite=True, **dict(KW, inner_steps=2))
    assert file_hashes(out) != old and archive.store_info(out)["variables"]["tas"]["settings"]["inner_steps"] == 2


def test_decompress_refuses_to_replace_an_existing_file(small, tmp_path, capsys):
    """Case 2 of the first reliability review (docs/reliability.md)."""
    inp, model, _ = small
    out = tmp_path / "s.zarr"
    archive.compress_dataset(inp, out, model, **KW)
    nc = tmp_path / "original.nc"
    nc.write_bytes(b"the lossless original")
    assert cli_main(["decompress", str(out), str(nc), "--quiet"]) == 2
    assert "exists" in capsys.readouterr().err and nc.read_bytes() == b"the lossless original"
    assert cli_main(["decompress", str(out), str(nc), "--quiet", "--overwrite"]) == 0
    assert xr.open_dataset(nc).tas.shape == (4, 8, 16)


def test_unfinished_store_is_reported_and_refused(small, tmp_path, capsys):
    """Case 3 of the first reliability review (docs/reliability.md)."""
    inp, model, _ = small
    part = tmp_path / "part.zarr"
    with pytest.raises(Stop):
        archive.compress_dataset(inp, part, model, scheduler="synchronous", on_region=stop_after_first_region, **KW)
    assert cli_main(["info", str(part)]) == 2
    err = capsys.readouterr().err
    assert "incomplete: 1 of 2 regions written, resume with" in err and len(err.strip().splitlines()) == 1
    assert cli_main(["decompress", str(part), str(tmp_path / "p.nc"), "--quiet"]) == 2
    assert not (tmp_path / "p.nc").exists()
    with pytest.raises(archive.IncompleteStoreError, match="1 of 2"):
        archive.open_store(part)
    with pytest.warns(IncompleteStoreWarning, match="incomplete"):
        xr.open_zarr(part, consolidated=False)
    archive.compress_dataset(inp, part, model, **KW)  # resumed: complete, no warning any more
    with warnings.catch_warnings():
        warnings.simplefilter("error", IncompleteStoreWarning)
        assert np.isfinite(archive.open_store(part).tas.values).all()
    assert cli_main(["info", str(part)]) == 0


def test_worker_malloc_env_and_no_global_client(small, tmp_path):
    """Case 10 and 11 of the first reliability review (docs/reliability.md)."""
    from distributed import Client, LocalCluster, default_client

    client, cluster = archive.make_client(None, 1)
    try:
        env = client.run(lambda: {k: os.environ.get(k) for k in archive.WORKER_MALLOC_ENV})
        assert list(env.values()) == [archive.WORKER_MALLOC_ENV]
    finally:
        client.close()
        cluster.close()
    inp, model, _ = small
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as lc:
        archive.compress_dataset(inp, tmp_path / "d.zarr", model, scheduler=lc.scheduler_address, **KW)
        with pytest.raises(ValueError):
            default_client()  # the compress run's client is closed and not the default
        with Client(lc) as c:
            assert c.submit(lambda: 1).result() == 1


def test_a_run_killed_while_starting_leaves_a_store_marked_unfinished(small, tmp_path, monkeypatch, capsys):
    """Case 3 of the second reliability review (docs/reliability.md)."""
    inp, model, _ = small
    out = tmp_path / "start.zarr"
    to_zarr = xr.Dataset.to_zarr

    def killed_after_the_metadata(self, *args, **kwargs):
        result = to_zarr(self, *args, **kwargs)
        if kwargs.get("region") is None:
            raise Stop("killed")
        return result

    monkeypatch.setattr(xr.Dataset, "to_zarr", killed_after_the_metadata)
    with pytest.raises(Stop):
        archive.compress_dataset(inp, out, model, **KW)
    monkeypatch.undo()
    assert cli_main(["info", str(out)]) == 2
    assert "incomplete: 0 of 2 regions written, resume with" in capsys.readouterr().err
    assert cli_main(["decompress", str(out), str(tmp_path / "d.nc"), "--quiet"]) == 2
    assert not (tmp_path / "d.nc").exists()
    archive.compress_dataset(inp, out, model, **KW)  # the same command completes it
    assert np.isfinite(archive.open_store(out).tas.values).all()


def test_two_runs_into_one_store_are_locked_out(small, tmp_path, capsys):
    """Case 4 of the second reliability review (docs/reliability.md)."""
    inp, model, _ = small
    out = tmp_path / "locked.zarr"
    holder = f"""
        import time
        from inrcodec import archive
        def hold(index, done, total):
            print("writing", flush=True)
            time.sleep(300)
        archive.compress_dataset({inp!r}, {str(out)!r}, {model!r}, variables=["tas"], chunks="time=2",
                                 inner_steps=1, progress=False, evaluate=False, scheduler="synchronous",
                                 on_region=hold)
    """
    p = subprocess.Popen([sys.executable, "-c", textwrap.dedent(holder)], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "writing"
        argv = ["compress", inp, str(out), "--model", model, "--variables", "tas", "--chunks", "time=2",
                "--inner-steps", "1", "--quiet"]
        for extra in (["--max-abs-error", "0.2"], ["--max-abs-error", "0.2", "--overwrite"]):
            assert cli_main(argv + extra) == 2
            err = capsys.readouterr().err
            assert f"{out} is being written by another inrcodec process (pid {p.pid})" in err, err
    finally:
        p.kill()
        p.wait()
        p.stdout.close()
    # the lock died with its process: the same request resumes, and no lock file is left
    assert cli_main(argv) == 0
    assert "(1 done before)" in capsys.readouterr().out
    assert not any(".inrcodec-lock" in f for f in os.listdir(tmp_path))


@pytest.mark.filterwarnings("ignore:Failed to open Zarr store with consolidated metadata")
def test_resume_against_a_changed_input_is_refused(small, tmp_path, capsys):
    """Case 5 of the second reliability review (docs/reliability.md)."""
    nc, model, _ = small
    zin = tmp_path / "in.zarr"
    xr.open_dataset(nc).to_zarr(zin, consolidated=False)

    def new_values_in_zarr():  # the input store rewritten, same shape and names
        ds = xr.open_zarr(zin, consolidated=False).load()
        (ds + 1.0).to_zarr(zin, mode="w", consolidated=False)

    (tmp_path / "z").mkdir()
    out = _stop_first_then_resume_against(str(zin), model, tmp_path / "z", new_values_in_zarr)
    argv = ["compress", str(zin), str(out), "--model", model, "--variables", "tas", "--chunks", "time=2",
            "--inner-steps", "1", "--quiet"]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert "changed since that run started" in err and len(err.strip().splitlines()) == 1
    assert cli_main(argv + ["--overwrite"]) == 0  # starts again from the new data
    # a netCDF file edited in place, same size, its mtime put back
    inp = tmp_path / "in.nc"
    inp.write_bytes(open(nc, "rb").read())

    def same_size_same_mtime():
        st = inp.stat()
        data = bytearray(inp.read_bytes())
        data[-1] ^= 0xFF
        inp.write_bytes(bytes(data))
        os.utime(inp, ns=(st.st_atime_ns, st.st_mtime_ns))

    (tmp_path / "n").mkdir()
    _stop_first_then_resume_against(str(inp), model, tmp_path / "n", same_size_same_mtime)


def test_info_shows_the_bits_the_chunks_use_not_the_setting(tmp_path):
    """Case 9 of the third reliability review (docs/reliability.md).

    A store written with ``bits=6`` whose chunks are all SPERR alone has no latents: ``info``
    said 6 bits; it shows '-' (and ``latent_bits`` lists the widths chunks with latents use)."""

    from inrcodec import archive

    codec, x = codec_and_input("wavelet")
    assert codec.settings.bits == 6
    root = zarr.open_group(tmp_path / "s.zarr", mode="w")
    arr = root.create_array("t", shape=x.shape, chunks=x.shape, dtype=x.dtype, serializer=codec, compressors=None)
    arr[:] = x
    info = archive.store_info(tmp_path / "s.zarr")
    entry = info["variables"]["t"]
    assert entry["chunk_modes"] == {"wavelet": 1} and entry["latent_bits"] == []
    row = next(line for line in archive.format_info(info).splitlines() if line.startswith("t "))
    assert row.split()[2] == "-", row
