"""Rate-distortion benchmark of inrcodec against the lossy codecs people use today.

``inrcodec bench DATASET --model DIR [DIR ...]`` (:func:`run_bench`) compresses the held-out
test split of a recipe's data (:func:`inrcodec.recipes.load_recipe_data`) with

* inrcodec (:class:`~inrcodec.codec.COINppCodec`) for each model and bit width, and
* each installed peer codec (:data:`PEERS`) at a sweep of its own settings,

and measures, on the bytes each codec actually wrote: compression ratio against float32, bits per
value, RMSE, max abs error, PSNR relative to the data range, for lat/lon grids the
cos(latitude)-weighted RMSE and per-latitude-band errors, the high-wavenumber power ratio of the
last-axis (zonal) spectrum (all from :mod:`inrcodec.metrics`), and encode/decode wall-clock time on
this machine's CPU. Results go to a CSV (every point), PNG plots and a markdown summary.

Modules, each importing only the ones before it: :mod:`~inrcodec.bench.scientific_peers` (the
numcodecs and numcodecs-wasm codecs), :mod:`~inrcodec.bench.modality_peers` (the everyday codecs
of images, speech and MRI), :mod:`~inrcodec.bench.peers` (the peer registry and sweeps),
:mod:`~inrcodec.bench.report` (CSV, markdown, comparisons), :mod:`~inrcodec.bench.plots`
(figures), :mod:`~inrcodec.bench.outputs` (the files of a result), :mod:`~inrcodec.bench.measure`
(timing and measuring) and :mod:`~inrcodec.bench.cli` (the sub-command: its flags and its run).

Peers are optional: a peer whose package is missing is reported (with the pip command that
installs it) and skipped; ``pip install "inrcodec[bench]"`` installs all of them.

Conventions (also written into the markdown summary):

* the whole test split ``(items, *spatial)`` is one array handed to each codec, as one Zarr chunk
  would be; peers may exploit correlation along the leading (time) axis, inrcodec fits each item
  independently;
* ``raw bytes`` = ``4 * number of values`` (float32); ratio = raw bytes / written bytes; bits per
  value = 8 * written bytes / number of values;
* inrcodec's written bytes are the chunk bytes (header, CRC included); the model (base network and
  coding tables), shared by every chunk of an array and stored once in its metadata, is NOT counted
  per chunk but reported in the ``model_bytes`` column; the Fourier-feature network's bytes include
  its per-chunk weights;
* ``psnr_data_range_db`` = 20 log10(data range / RMSE), the range of the original test split;
* times are the median of ``repeats`` wall-clock runs after one untimed warm-up call on the first
  item (the Fourier network is timed once, without warm-up: it trains a network per call).
"""

from inrcodec.bench.cli import main
from inrcodec.bench.measure import ChunkedPeer, machine_info, measure, run_bench
from inrcodec.bench.peers import PEERS, SCIENTIFIC_PEERS, Peer, available_peers, default_peers
from inrcodec.bench.outputs import load_result, write_outputs
from inrcodec.bench.report import (
    COLUMNS,
    BenchResult,
    comparison,
    fourier_comparison,
    interpolate_max,
    interpolate_ratio,
    interpolate_rmse,
    markdown,
    read_csv,
    relative_speed,
    write_csv,
)

__all__ = [
    "main", "ChunkedPeer", "machine_info", "measure", "run_bench", "PEERS", "SCIENTIFIC_PEERS", "Peer", "available_peers",
    "default_peers", "COLUMNS", "BenchResult", "comparison", "fourier_comparison", "interpolate_max",
    "interpolate_ratio", "interpolate_rmse",
    "load_result", "markdown", "read_csv", "relative_speed", "write_csv", "write_outputs",
]
