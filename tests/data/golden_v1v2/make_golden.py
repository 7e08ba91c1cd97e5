"""Writes the golden version-1/2 chunks of this folder (run once, with the code of commit 48bc4be,
the last one that wrote format versions 1 and 2; kept for provenance, the tests never run it).

    python tests/data/golden_v1v2/make_golden.py
"""
import json
import pathlib
import sys

import numpy as np

HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE.parent.parent))  # tests/ for conftest helpers
from conftest import build_spherical_model, smooth_field  # noqa: E402

from inrcodec import COINppCodec  # noqa: E402

model = build_spherical_model(seed=0)
model.save(HERE / "model.safetensors")
x = smooth_field(2).astype("f4")
x_nan = smooth_field(2, seed=1)  # float64
x_nan[0, 2, 3] = np.nan
x_nan[1, :, :4] = np.nan
x_fill = smooth_field(1, seed=2).astype("f4")
x_fill[0, :2, :] = -999.0
cases = {
    "v1_modulations": (dict(bits=6, inner_steps=3), x),
    "v1_nan_f8": (dict(bits=4, inner_steps=3), x_nan),
    "v1_raw_constant": (dict(), np.full((2, 8, 16), 273.15, "f4")),
    "v1_raw_bits": (dict(entropy_coding=False, bits=5, inner_steps=2), np.asfortranarray(x)),
    "v2_bounded": (dict(bits=6, inner_steps=2, max_abs_error=0.1), x),
    "v2_fill": (dict(bits=6, inner_steps=2, fill_value=-999.0), x_fill),
}
manifest = {"model_sha256": model.sha256, "chunks": {}}
arrays = {}
for name, (settings, values) in cases.items():
    codec = COINppCodec(model, **settings)
    chunk = codec.encode(values)
    (HERE / f"{name}.bin").write_bytes(chunk)
    arrays[f"{name}_input"] = values
    arrays[f"{name}_decoded"] = codec.decode(chunk)
    manifest["chunks"][name] = {"settings": settings, "version": chunk[4], "bytes": len(chunk)}
np.savez_compressed(HERE / "arrays.npz", **arrays)
(HERE / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
print(json.dumps(manifest, indent=1))
