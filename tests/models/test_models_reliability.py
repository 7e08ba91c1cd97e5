"""Hostile cases of docs/reliability.md for models (shipped names, metadata, inline copies): each test is named
for what it holds, and says its review and case (reviews 1-3: issues 13, 21 and 32) first."""

from __future__ import annotations

import base64
import subprocess
import sys
import textwrap
import time
import zlib

import numpy as np
import pytest
import xarray as xr
import zarr
from conftest import global_lat_lon, smooth_field
from helpers import peak_bytes, store_with_config

from inrcodec.cli import main as cli_main
from inrcodec.codec import COINppCodec
from inrcodec.errors import ModelFileError, PinnedModelError
from inrcodec.models import tensorfile


def _shipped_store(path, n=2):
    """A tiny Zarr 3 store of the shipped t2m-global model (a 24 x 48 global grid)."""
    lat, lon = -88.0 + 7.5 * np.arange(24) + 1.75, 7.5 * np.arange(48)
    x = (250.0 + 20.0 * np.random.default_rng(0).random((n, 24, 48))).astype("f4")
    ds = xr.Dataset({"t2m": (("time", "lat", "lon"), x)}, coords={"time": np.arange(n), "lat": lat, "lon": lon})
    enc = COINppCodec.for_dataarray(ds.t2m, "t2m-global", inner_steps=1)
    ds.to_zarr(path, encoding={"t2m": enc}, consolidated=False)
    return ds


def test_model_metadata_claiming_a_huge_network_is_refused(tiny_model):
    """Case 8 of the first reliability review (docs/reliability.md)."""
    arrays, meta = tensorfile.loads(tiny_model.to_bytes())
    meta["network"]["width"] = 100000
    evil = tensorfile.dumps(arrays, meta)
    code = """
        import resource
        from inrcodec.models.model import CoinModel, ModelFileError
        import sys
        data = sys.stdin.buffer.read()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            CoinModel.from_bytes(data)
        except ModelFileError as exc:
            print("refused", exc)
        print("grew_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
    """
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], input=evil, capture_output=True, timeout=120)
    out = r.stdout.decode()
    assert "refused" in out, r.stderr.decode()[-2000:]
    assert int(out.split("grew_kb")[1]) < 200_000


def test_shipped_model_name_resolves_inside_the_package_only(tmp_path, monkeypatch, capsys):
    """Case 1 of the second reliability review (docs/reliability.md)."""
    from inrcodec.models import modelstore, zoo

    store = tmp_path / "s.zarr"
    ds = _shipped_store(store)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t2m-global").mkdir()  # a folder of the model's name in the working directory
    modelstore.clear()
    back = xr.open_zarr(store, consolidated=False)
    assert list(back.data_vars) == ["t2m"] and back.t2m.shape == ds.t2m.shape
    # the shipped file missing: a PinnedModelError, never "no such array" (the variable dropped)
    modelstore.clear()
    monkeypatch.setattr(zoo, "model_path", lambda name: tmp_path / "gone" / f"{name}.safetensors")
    with pytest.raises(PinnedModelError, match="'t2m-global' .* cannot be read from this inrcodec installation"):
        xr.open_zarr(store, consolidated=False)
    assert cli_main(["decompress", str(store), str(tmp_path / "out.nc"), "--quiet"]) == 2
    assert "reinstall inrcodec" in capsys.readouterr().err and not (tmp_path / "out.nc").exists()
    # any lookup or OS error while loading the pinned model is an inrcodec error zarr does not swallow
    monkeypatch.undo()
    modelstore.clear()

    def lookup_fails(name):
        raise KeyError(name)

    monkeypatch.setattr(modelstore, "read_shipped", lookup_fails)
    with pytest.raises(ModelFileError, match="cannot be loaded: KeyError"):
        xr.open_zarr(store, consolidated=False)
    modelstore.clear()


def test_inline_model_is_inflated_with_a_cap(tmp_path, tiny_model):
    """Case 9 of the second reliability review (docs/reliability.md)."""
    from inrcodec._limits import MAX_MODEL_BYTES
    from inrcodec.errors import PinnedModelError

    z = zlib.compressobj(9)  # 256 MiB of zeros (4 x the cap) in 250 KB, streamed
    bomb = b"".join([z.compress(bytes(1 << 20)) for _ in range(256)] + [z.flush()])
    edited = store_with_config(tmp_path / "m.zarr", tiny_model, model=base64.b64encode(bomb).decode("ascii"))
    assert (edited / "zarr.json").stat().st_size < 400_000
    del bomb
    t = time.perf_counter()
    peak, err = peak_bytes(lambda: zarr.open_array(edited))
    assert isinstance(err, PinnedModelError), err
    assert f"more than the {MAX_MODEL_BYTES} bytes a model may have" in str(err)
    # the inflated bytes are held once and joined once: twice the cap, not what the stream holds
    assert peak < 2 * MAX_MODEL_BYTES + (16 << 20) and time.perf_counter() - t < 5, (peak, time.perf_counter() - t)
    # model files and bytes beyond the cap are refused before they are read or parsed
    from inrcodec.models import modelstore

    big = tmp_path / "big.safetensors"
    with open(big, "wb") as fh:
        fh.truncate(MAX_MODEL_BYTES + 1)
    for arg in (big, bytes(MAX_MODEL_BYTES + 1)):
        with pytest.raises(ModelFileError, match="more than the"):
            modelstore.load(arg)


def test_a_local_folder_named_like_a_shipped_model_is_named_in_the_error(tmp_path, monkeypatch, capsys):
    """Case 9 of the third reliability review (docs/reliability.md)."""
    from inrcodec.cli import main as cli_main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "t2m-global-2").mkdir()  # a folder of that name, without a model in it
    xr = pytest.importorskip("xarray")

    lat, lon = global_lat_lon(8, 16)
    xr.Dataset({"t2m": (("time", "lat", "lon"), smooth_field(2, seed=1).astype("f4"))},
               coords={"lat": lat, "lon": lon}).to_netcdf(tmp_path / "in.nc")
    assert cli_main(["compress", "in.nc", "out.zarr", "--model", "t2m-global-2"]) == 2
    err = capsys.readouterr().err
    assert "shipped model" in err and "takes precedence" in err, err
