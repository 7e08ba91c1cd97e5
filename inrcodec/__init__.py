"""inrcodec: COIN++ neural compression for gridded scientific data.

>>> import inrcodec
>>> codec = inrcodec.COINppCodec("t2m-global", bits=6, assume_global_grid=True)
>>> codec.settings.bits
6

``import inrcodec`` is light and has no side effects: the codec, its settings and errors load
at once; the model (torch) loads with the first model, training (``MetaTrainer``) on first use,
and the HDF5 filter is registered by ``import inrcodec.hdf5`` (the hdf5plugin convention).
"""

from ._version import __version__  # noqa: F401
from .codec import COINppCodec
from .errors import CorruptChunkError, InrcodecError, ModelFileError, PinnedGridError, PinnedModelError
from .grids import CartesianGrid, PatchPartition, SphericalGrid
from .settings import CodecSettings

#: public names whose modules load on first use: torch with the model, training code only when
#: training (a process that decodes never imports it)
_LAZY = {"CoinModel": "models.model", "ModulatedSiren": "models.network", "MetaTrainer": "training.metalearn",
         "TrainConfig": "training.metalearn", "fit_modulations": "models.fitting", "reconstruct": "models.fitting"}


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
