"""inrcodec: COIN++ neural compression for gridded scientific data.

>>> from inrcodec import COINppCodec, CoinModel, CorruptChunkError  # doctest: +SKIP
"""

__version__ = "0.1.0"

from .codec import COINppCodec  # noqa: E402
from .errors import (  # noqa: E402
    CorruptChunkError, InrcodecError, ModelFileError, PinnedGridError, PinnedModelError,
)
from . import hdf5  # noqa: E402,F401  (registers the HDF5 filter with h5py's libhdf5)
from .grids import CartesianGrid, PatchPartition, SphericalGrid  # noqa: E402
from .metalearn import MetaTrainer, TrainConfig, fit_modulations, reconstruct  # noqa: E402
from .model import CoinModel  # noqa: E402
from .network import ModulatedSiren  # noqa: E402

__all__ = [
    "COINppCodec",
    "CartesianGrid",
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
