"""inrcodec: COIN++ neural compression for gridded scientific data.

>>> import inrcodec
>>> codec = inrcodec.COINppCodec("t2m-global", bits=6, assume_global_grid=True)
>>> codec.settings.bits
6

``import inrcodec`` loads the codec and its maths only: training (``MetaTrainer``,
``TrainConfig``) loads on first use, and the HDF5 filter is registered by
``import inrcodec.hdf5`` (the hdf5plugin convention).
"""

__version__ = "0.1.0"

from .codec import COINppCodec  # noqa: E402
from .errors import (  # noqa: E402
    CorruptChunkError, InrcodecError, ModelFileError, PinnedGridError, PinnedModelError,
)
from .grids import CartesianGrid, PatchPartition, SphericalGrid  # noqa: E402
from .model import CoinModel  # noqa: E402
from .network import ModulatedSiren  # noqa: E402
from .settings import CodecSettings  # noqa: E402

#: public names whose modules load on first use (training code stays out of decoding processes)
_LAZY = {"MetaTrainer": "metalearn", "TrainConfig": "metalearn", "fit_modulations": "metalearn",
         "reconstruct": "metalearn"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "COINppCodec",
    "CartesianGrid",
    "CodecSettings",
    "CoinModel",
    "CorruptChunkError",
    "InrcodecError",
    "MetaTrainer",
    "ModelFileError",
    "ModulatedSiren",
    "PatchPartition",
    "PinnedGridError",
    "PinnedModelError",
    "SphericalGrid",
    "TrainConfig",
    "fit_modulations",
    "reconstruct",
]
