"""inrcodec: COIN++ neural compression for gridded scientific data.

>>> from inrcodec import COINppCodec, CoinModel, CorruptChunkError  # doctest: +SKIP
"""

__version__ = "0.1.0"

from .chunkformat import CorruptChunkError  # noqa: E402
from .codec import COINppCodec, PinnedModelError  # noqa: E402
from . import hdf5  # noqa: E402,F401  (registers the HDF5 filter with h5py's libhdf5)
from .grids import CartesianGrid, PatchPartition, SphericalGrid  # noqa: E402
from .metalearn import MetaTrainer, TrainConfig, fit_modulations, reconstruct  # noqa: E402
from .model import CoinModel, ModelFileError  # noqa: E402
from .network import ModulatedSiren  # noqa: E402

__all__ = [
    "COINppCodec",
    "CartesianGrid",
    "CoinModel",
    "CorruptChunkError",
    "MetaTrainer",
    "ModelFileError",
    "ModulatedSiren",
    "PatchPartition",
    "PinnedModelError",
    "SphericalGrid",
    "TrainConfig",
    "fit_modulations",
    "reconstruct",
]
