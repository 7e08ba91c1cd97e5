"""Hostile cases of docs/reliability.md for the package face (the codec's configuration, Zarr, the command line):
each test is named for what it holds, and says its review and case (reviews 1-3: issues 13, 21 and 32) first."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
import zarr
from conftest import global_lat_lon, smooth_field
from golden_cases import codec_and_input
from helpers import small_dataset, store_with_config

import inrcodec.hdf5 as ih5
from inrcodec import archive
from inrcodec.cli import main as cli_main
from inrcodec.codec import COINppCodec
from inrcodec.errors import CorruptChunkError, ModelFileError, PinnedGridError
from inrcodec.models import tensorfile
from inrcodec.models.model import CoinModel


def _one_line_error(argv, capsys, *fragments):
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for f in fragments:
        assert f in err, err
    return err


def test_swapped_zarr2_chunk_files(tmp_path, tiny_model):
    """Case 4 of the first reliability review (docs/reliability.md)."""
    ds = small_dataset(4)
    enc = COINppCodec.for_dataarray(ds.tas, tiny_model, inner_steps=1, zarr_format=2, chunks={"time": 2})
    ds[["tas"]].to_zarr(tmp_path / "a.zarr", encoding={"tas": enc}, zarr_format=2)
    enc1 = COINppCodec.for_dataarray(ds.tas, tiny_model, inner_steps=1, zarr_format=2, chunks={"time": 1})
    ds[["tas"]].to_zarr(tmp_path / "b.zarr", encoding={"tas": enc1}, zarr_format=2)
    os.replace(tmp_path / "b.zarr/tas/0.0.0", tmp_path / "a.zarr/tas/1.0.0")  # a 1-step chunk in a 2-step slot
    with pytest.raises(CorruptChunkError, match="chunk it fills"):
        zarr.open_array(tmp_path / "a.zarr/tas")[...]
    # an F-order chunk file of the right shape decodes to the right values, not a transposed scramble
    good = zarr.open_array(tmp_path / "a.zarr/tas")[0:2]
    codec = enc["compressors"][0]
    (tmp_path / "a.zarr/tas/0.0.0").write_bytes(codec.encode(np.asfortranarray(ds.tas.values[0:2])))
    np.testing.assert_allclose(zarr.open_array(tmp_path / "a.zarr/tas")[0:2], good, atol=1e-3)


def test_edited_zarr_grid_is_refused(tmp_path, tiny_model):
    """Case 5 of the first reliability review (docs/reliability.md)."""
    ds = small_dataset(2)
    enc = COINppCodec.for_dataarray(ds.tas, tiny_model, inner_steps=1)
    ds[["tas"]].to_zarr(tmp_path / "g.zarr", encoding={"tas": enc}, consolidated=False)
    meta = tmp_path / "g.zarr/tas/zarr.json"
    doc = json.loads(meta.read_text())
    conf = doc["codecs"][0]["configuration"]
    assert len(conf["grid_sha256"]) == 64
    conf["lat"][0] += 10.0
    meta.write_text(json.dumps(doc))
    with pytest.raises(PinnedGridError, match="grid_sha256"):
        zarr.open_array(tmp_path / "g.zarr/tas")


def test_spherical_codec_without_coordinates_must_say_global(tiny_model):
    """Case 7 of the first reliability review (docs/reliability.md)."""
    x = smooth_field(1).astype("f4")
    with pytest.raises(ValueError, match="assume_global_grid=True"):
        COINppCodec(tiny_model, inner_steps=1).encode(x)
    ds = small_dataset(1).drop_vars(["lat", "lon"])
    with pytest.raises(ValueError, match="no 'lat'/'lon' coordinates"):
        COINppCodec.for_dataarray(ds.tas, tiny_model)
    with pytest.raises(ValueError, match="assume_global_grid=True"):
        ih5.h5py_kwargs(tiny_model)
    codec = COINppCodec(tiny_model, inner_steps=1, assume_global_grid=True)
    assert codec.decode(codec.encode(x)).shape == x.shape
    assert COINppCodec.from_config(codec.get_config()).settings.assume_global_grid


def test_clear_one_line_errors(small, tmp_path, tiny_model, capsys):
    """Case 9 of the first reliability review (docs/reliability.md)."""
    inp, model, _ = small
    codec = COINppCodec(tiny_model, inner_steps=1, lat=global_lat_lon()[0], lon=global_lat_lon()[1])
    for empty in (np.zeros((0, 8, 16), "f4"), np.zeros((2, 0, 16), "f4")):
        assert codec.decode(codec.encode(empty)).shape == empty.shape
    chunk = codec.encode(smooth_field(1).astype("f4"))
    with pytest.raises(TypeError, match="out= must be a float32 or float64"):
        codec.decode(chunk, out=np.empty((1, 8, 16), "i4"))
    with pytest.raises(CorruptChunkError, match="buffer it fills"):
        codec.decode(chunk, out=np.empty((2, 8, 16), "f4"))
    with pytest.raises(ValueError, match="unknown codec setting"):
        COINppCodec.from_config({**codec.get_config(), "bitz": 4})
    arrays, meta = tensorfile.loads(tiny_model.to_bytes())
    for bad in ({**meta, "network": "wide"}, {k: v for k, v in meta.items() if k != "normalisation"}):
        with pytest.raises(ModelFileError, match="malformed model metadata"):
            CoinModel.from_bytes(tensorfile.dumps(arrays, bad))
    existing = tmp_path / "file.zarr"
    existing.write_text("x")
    for argv, msg in (
        (["--variables", "land"], "not float"),
        (["--chunks", "tim=2"], "'tim'"),
        ([], "existing file"),
    ):
        out = str(existing) if not argv else str(tmp_path / f"o{len(msg)}.zarr")
        assert cli_main(["compress", inp, out, "--model", model, "--quiet"] + argv) == 2
        err = capsys.readouterr().err
        assert msg in err and len(err.strip().splitlines()) == 1, err


def test_zarr2_chunks_other_than_the_pinned_ones_are_refused_at_write(tmp_path, tiny_model):
    """Case 2 of the second reliability review (docs/reliability.md)."""
    ds = small_dataset(4)
    enc = COINppCodec.for_dataarray(ds.tas, tiny_model, inner_steps=1, zarr_format=2)  # pins chunks (4, 8, 16)
    enc["chunks"] = (2, 8, 16)
    with pytest.raises(ValueError, match=r"chunk of shape \(2, 8, 16\) .* pins chunk_shape \(4, 8, 16\).* no reader"):
        ds[["tas"]].to_zarr(tmp_path / "a.zarr", encoding={"tas": enc}, zarr_format=2)
    assert not [f for f in os.listdir(tmp_path / "a.zarr/tas") if not f.startswith(".")]  # no unreadable chunk
    enc = COINppCodec.for_dataarray(ds.tas, tiny_model, inner_steps=1, zarr_format=2, chunks={"time": 2})
    ds[["tas"]].to_zarr(tmp_path / "b.zarr", encoding={"tas": enc}, zarr_format=2)  # what was asked: written
    assert np.isfinite(zarr.open_array(tmp_path / "b.zarr/tas")[...]).all()


def test_clear_errors_instead_of_tracebacks(small, tmp_path, tiny_model, monkeypatch, capsys):
    """Case 12 of the second reliability review (docs/reliability.md)."""
    import errno

    from zarr.storage import LocalStore

    inp, model, _ = small
    argv = ["compress", inp, None, "--model", model, "--variables", "tas", "--chunks", "time=2",
            "--inner-steps", "1", "--quiet"]
    # a full disk, a read-only file system: one line; the unfinished store resumes afterwards
    set_chunk = LocalStore.set
    for code, text in ((errno.ENOSPC, "No space left on device"), (errno.EROFS, "Read-only file system")):
        out = tmp_path / f"e{code}.zarr"
        argv[2] = str(out)

        async def fails(self, key, value, _code=code, _text=text):
            if key.startswith("tas/c/1"):
                raise OSError(_code, _text, key)
            return await set_chunk(self, key, value)

        monkeypatch.setattr(LocalStore, "set", fails)
        _one_line_error(argv, capsys, text, "tas/c/1", "resumes when the same command is run again")
        monkeypatch.undo()
        assert cli_main(argv) == 0 and "done before" in capsys.readouterr().out  # resumed
        assert np.isfinite(archive.open_store(out).tas.values).all()
    # --overwrite of a mount point (EBUSY on rename): refused before anything is written
    monkeypatch.setattr(os.path, "ismount", lambda p: str(p) == str(out))
    _one_line_error(argv + ["--overwrite"], capsys, "is a mount point")
    monkeypatch.undo()
    # --overwrite through a symlink replaces the store it points to, every time, leaving nothing hidden
    link = tmp_path / "link.zarr"
    link.symlink_to(out)
    argv[2] = str(link)
    for steps in ("2", "1"):
        assert cli_main(argv[:-2] + [steps, "--quiet", "--overwrite"]) == 0
        assert link.is_symlink() and archive.store_info(link)["variables"]["tas"]["settings"]["inner_steps"] == int(steps)
    assert sorted(f for f in os.listdir(tmp_path) if "inrcodec" in f) == []
    capsys.readouterr()
    # decompress into the store it reads; info of an array of a store
    _one_line_error(["decompress", str(out), str(out / "tas" / "x.nc"), "--quiet"], capsys, "lies inside the store")
    assert not (out / "tas" / "x.nc").exists()
    _one_line_error(["info", str(out / "tas")], capsys, "is the array 'tas' of a Zarr store", f"give the store: {out}")
    # a Zarr 2 f8 chunk file in an f4 array: CorruptChunkError naming both
    ds = small_dataset(4)
    enc = COINppCodec.for_dataarray(ds.tas, tiny_model, inner_steps=1, zarr_format=2, chunks={"time": 2})
    ds[["tas"]].to_zarr(tmp_path / "f4.zarr", encoding={"tas": enc}, zarr_format=2)
    f8 = COINppCodec(tiny_model, enc["compressors"][0].settings.replace(chunk_dtype=None))
    (tmp_path / "f4.zarr/tas/1.0.0").write_bytes(f8.encode(ds.tas.values[2:].astype("f8")))
    with pytest.raises(CorruptChunkError, match="chunk holds float64 values but the array is float32"):
        zarr.open_array(tmp_path / "f4.zarr/tas")[...]


def test_step_counts_are_bounded(tmp_path, tiny_model):
    """Case 11 of the second reliability review (docs/reliability.md)."""
    from inrcodec.settings import MAX_INNER_STEPS, MAX_REFINE_STEPS, CodecSettings

    for opts, msg in (({"inner_steps": 10**12}, f"inner_steps must be an integer in 0..{MAX_INNER_STEPS}"),
                      ({"refine_steps": 2**70}, f"refine_steps must be an integer in 0..{MAX_REFINE_STEPS}")):
        with pytest.raises(ValueError, match=re.escape(msg)):
            CodecSettings(**opts)
        with pytest.raises(ValueError, match=re.escape(msg)):
            COINppCodec(tiny_model, assume_global_grid=True, **opts)
    # a store whose metadata was edited refuses to open, so no append can start the endless fit
    edited = store_with_config(tmp_path / "s.zarr", tiny_model, inner_steps=10**12)
    with pytest.raises(ValueError, match="inner_steps must be an integer in 0..10000"):
        zarr.open_array(edited)
    # the model's own encode_steps (compress_dataset's default inner_steps) is bounded alike
    arrays, m = tensorfile.loads(tiny_model.to_bytes())
    with pytest.raises(ModelFileError, match="encode_steps 1000000000000"):
        CoinModel.from_bytes(tensorfile.dumps(arrays, {**m, "encode_steps": 10**12}))


def test_a_hostile_option_in_a_configuration_is_said_to_come_from_it():
    """Case 9 of the third reliability review (docs/reliability.md)."""
    from inrcodec import COINppCodec

    codec, _ = codec_and_input("wavelet")
    config = {**codec.get_config(), "inner_steps": 10**12}
    with pytest.raises(ValueError, match=r"codec configuration \(a store's metadata\).*inner_steps"):
        COINppCodec.from_config(config)
