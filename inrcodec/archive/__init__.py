"""Archive-scale compression: a netCDF/HDF5/Zarr dataset -> a Zarr store with COIN++ variables.

Behind ``inrcodec compress|decompress|info``:

* :func:`compress_dataset` reads the input lazily (xarray + Dask), encodes the chosen float
  variables with :class:`~inrcodec.codec.COINppCodec` (Zarr format 3 serializer; every codec
  option, a :class:`~inrcodec.settings.CodecSettings`), copies every other variable, all
  coordinates and all attributes losslessly (zarr's default zstd), and reports the chunk and
  store ratios and the error per variable.
* :func:`decompress_store` writes a store back to a plain netCDF file.
* :func:`store_info` lists the arrays of a store with codec, pinned model, settings and ratios.

    >>> from inrcodec.archive import compress_dataset, store_info, decompress_store  # doctest: +SKIP
    >>> report = compress_dataset("era5.nc", "era5.zarr", model="t2m-global",
    ...                           variables=["t2m"], bits=6, chunks={"time": 24})  # doctest: +SKIP
    >>> report["variables"]["t2m"]["chunk_ratio"], report["store_ratio"]  # doctest: +SKIP

How the write works (and why it can resume)
-------------------------------------------
1. :mod:`.plan`: the variables, the region dimension (``time`` unless ``chunks`` names another)
   and one region per Zarr chunk along it, so every write is chunk-aligned and no chunk is read
   back and re-encoded.
2. :mod:`.compress`: holding a lock on the output, the progress file, then the store's
   metadata and the variables without the region dimension are written first
   (``to_zarr(mode="a", compute=False)``, not consolidated), then the regions.
3. :mod:`.progress`: each finished region is recorded in ``<store>/.inrcodec-progress.json``
   with a fingerprint of the request (input path and content, variables, model hash, every
   codec option, chunks). Running the same request again skips the recorded regions; encoding is
   deterministic, so a resumed run gives the same chunk bytes as an uninterrupted one. The
   file is removed when the run completes.
4. :mod:`.store`: outputs that would destroy data are refused, one run writes a store at a
   time (``output_lock``), an overwrite goes to a temporary sibling swapped into place when
   complete, and an unfinished store is marked.
5. :mod:`.schedulers`: dask's local threads/processes or a ``dask.distributed`` cluster; worker
   processes get ``cores_on_host // workers_on_host`` torch threads, the HDF5 filter and the
   model once (:func:`ship_models`: codecs then pickle as the model's hash only, through
   ``COINppCodec.__reduce__`` and :func:`inrcodec.models.modelstore.mark_shipped`).
6. :mod:`.report`: sizes, ratios and errors; :mod:`.readback`: :func:`open_store`,
   :func:`decompress_store`.
"""

from inrcodec.archive.compress import compress_dataset
from inrcodec.archive.plan import encodable_variables
from inrcodec.archive.progress import PROGRESS_FILE
from inrcodec.archive.readback import decompress_store, open_store
from inrcodec.archive.report import format_info, format_report, store_info
from inrcodec.archive.schedulers import WORKER_MALLOC_ENV, make_client, ship_models
from inrcodec.archive.store import check_complete
from inrcodec.errors import IncompleteStoreError, StoreLockedError, StoreMismatchError

__all__ = ["compress_dataset", "decompress_store", "store_info", "format_info", "format_report", "open_store",
           "check_complete", "encodable_variables", "ship_models", "make_client", "PROGRESS_FILE",
           "WORKER_MALLOC_ENV", "StoreMismatchError", "IncompleteStoreError", "StoreLockedError"]
