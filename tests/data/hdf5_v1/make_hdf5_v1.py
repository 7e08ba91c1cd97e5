"""Write ``layout1.h5``: datasets filtered with the FIRST ``cd_values`` layout (version 1).

The file was produced by the HDF5 filter of commit a939806 (before issue #14 moved the filter
into the ``inrcodec.hdf5`` package), so ``tests/hdf5/test_hdf5.py`` proves that files written then
still decode, to the very values that code decoded (stored beside them as ``expected_*``).
Regenerate only with that commit's sources first on the path::

    git archive a939806 inrcodec tests/conftest.py | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old:/tmp/old/tests python tests/data/hdf5_v1/make_hdf5_v1.py
"""
import pathlib

import h5py
from conftest import build_spherical_model, global_lat_lon, smooth_field

import inrcodec.hdf5 as ih5

HERE = pathlib.Path(__file__).parent
model = build_spherical_model(seed=0)
lat, lon = global_lat_lon()
x = smooth_field(2).astype("f4")
with h5py.File(HERE / "layout1.h5", "w") as f:
    ih5.store_model(f, model, lat=lat, lon=lon)
    f.create_dataset("tas", data=x, chunks=x.shape,
                     **ih5.h5py_kwargs(model, bits=5, inner_steps=2, lat=lat, lon=lon))
    f.create_dataset("tas_global", data=x.astype("f8"), chunks=(1,) + x.shape[1:],
                     **ih5.h5py_kwargs(model, bits=4, inner_steps=1, entropy_coding=False,
                                       assume_global_grid=True))
    ih5.store_model(f, model)  # labels the second dataset too
with h5py.File(HERE / "layout1.h5", "a") as f:
    for name in ("tas", "tas_global"):
        f.create_dataset("expected_" + name, data=f[name][...])
print(sorted(h5py.File(HERE / "layout1.h5")), (HERE / "layout1.h5").stat().st_size, "bytes")
