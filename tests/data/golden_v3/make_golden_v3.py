"""Record the golden version-3 chunks: the sha256 of the bytes each chunk mode writes today, and
of each of its sections.

Run from the repository root (``python tests/data/golden_v3/make_golden_v3.py``) only when the
bitstream changes on purpose; tests/chunkformat/test_golden_v3.py checks every later build against it.
The inputs and the model are the version 1/2 fixtures (tests/data/golden_v1v2).
"""
import hashlib
import json
import os
import pathlib
import sys

import numpy as np  # noqa: F401

from inrcodec import chunkformat as cf

HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE.parents[1]))
from golden_cases import CASES, codec_and_input  # noqa: E402

from inrcodec.models.fitting import FIT_PRODUCTS_ENV  # noqa: E402

# the products the tests fit with (tests/conftest.py): on a CPU with native bfloat16 the default
# products would record other latents than the golden test encodes
os.environ[FIT_PRODUCTS_ENV] = "float32"

out = {}
for name in CASES:
    codec, x = codec_and_input(name)
    chunk = codec.encode(x)
    config = {k: v for k, v in codec.get_config().items() if k != "model"}
    sections = cf.unpack_chunk(chunk)[1]
    out[name] = {"sha256": hashlib.sha256(chunk).hexdigest(), "bytes": len(chunk), "mode": cf.unpack_chunk(chunk)[0].mode,
                 "config": config,
                 # per section: a hybrid's wavelet section codes the network's float residual, whose
                 # last bits differ between CPUs; the other sections do not (tests/chunkformat/test_golden_v3.py)
                 "sections_sha256": {k: hashlib.sha256(v).hexdigest() for k, v in sorted(sections.items())}}
(HERE / "manifest.json").write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
print(json.dumps({k: (v["bytes"], v["sha256"][:12]) for k, v in out.items()}, indent=1))
