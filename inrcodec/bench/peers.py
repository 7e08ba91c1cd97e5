"""The peer codecs ``inrcodec bench`` compares against: one :class:`Peer` per codec family.

Scientific (gridded data) peers come from numcodecs and the numcodecs-wasm packages
(:mod:`inrcodec.bench.scientific_peers`); the everyday codecs of images, speech and MRI from
:mod:`inrcodec.bench.modality_peers`. Every peer is
optional: :func:`available_peers` says which import and how to install the others.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from inrcodec.bench.modality_peers import DEFAULT_PEERS as MODALITY_PEERS
from inrcodec.bench.modality_peers import PEER_SPECS as MODALITY_PEER_SPECS
from inrcodec.bench.scientific_peers import (
    make_bitround, make_fourier, make_jpeg2000, make_sperr, make_sperr_bpp, make_sz3, make_zfp,
    make_zfp_rate,
)
from inrcodec.metrics import data_range
from inrcodec.wasmcodecs import import_wasm_module


@dataclass
class Peer:
    """A peer codec family: how to build one codec per setting, and which settings to sweep.

    ``make(params, x)`` returns an object with ``encode(x) -> bytes-like`` and
    ``decode(bytes, x_like) -> ndarray``; ``sweep(x)`` and ``quick(x)`` return the list of
    ``params`` dicts (bounds relative to the data range ``x.max() - x.min()``).
    """

    name: str
    label: str
    modules: tuple[str, ...]
    pip: str
    make: Callable[[dict, np.ndarray], Any]
    sweep: Callable[[np.ndarray], list[dict]]
    quick: Callable[[np.ndarray], list[dict]]
    slow: bool = False
    time_budget_s: float | None = None

    def missing(self) -> list[str]:
        out = []
        for m in self.modules:
            try:
                if m.startswith("numcodecs_wasm"):
                    import_wasm_module(m)  # the user's __main__ stays finalisable (inrcodec.wasmcodecs)
                else:
                    importlib.import_module(m)
            except Exception:  # ImportError, or a broken wasm runtime
                out.append(m)
        return out


_REL_BOUNDS = [0.5, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01, 3e-3, 1e-3, 1e-4]
_REL_BOUNDS_QUICK = [0.1, 0.01]


def _relative(key: str, rels):
    """A sweep of ``key`` at fractions ``rels`` of the data range."""
    return lambda x: [{key: r * data_range(x)} for r in rels]


def _values(key: str, values):
    return lambda x: [{key: v} for v in values]


SCIENTIFIC = [
    Peer("bitround-zstd", "BitRound + Zstd", ("numcodecs",), "numcodecs", make_bitround,
         _values("keepbits", (0, 1, 2, 3, 4, 6, 8, 10, 12, 16)), _values("keepbits", (2, 8))),
    Peer("sz3", "SZ3 (abs)", ("numcodecs_wasm_sz3",), "numcodecs-wasm-sz3", make_sz3,
         _relative("eb_abs", _REL_BOUNDS), _relative("eb_abs", _REL_BOUNDS_QUICK)),
    Peer("zfp", "ZFP (fixed accuracy)", ("numcodecs_wasm_zfp",), "numcodecs-wasm-zfp", make_zfp,
         _relative("tolerance", [2.0, 1.0] + _REL_BOUNDS), _relative("tolerance", _REL_BOUNDS_QUICK)),
    Peer("zfp-rate", "ZFP (fixed rate)", ("numcodecs_wasm_zfp",), "numcodecs-wasm-zfp", make_zfp_rate,
         _values("rate", (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)), _values("rate", (1.0, 4.0))),
    Peer("sperr", "SPERR (pwe)", ("numcodecs_wasm_sperr",), "numcodecs-wasm-sperr", make_sperr,
         _relative("pwe", _REL_BOUNDS), _relative("pwe", _REL_BOUNDS_QUICK)),
    # SPERR's rate mode: it spends its bytes on the RMSE, not on the largest error (issue 24's fair peer)
    Peer("sperr-bpp", "SPERR (bpp)", ("numcodecs_wasm_sperr",), "numcodecs-wasm-sperr", make_sperr_bpp,
         _values("bpp", (0.004, 0.008, 0.012, 0.016, 0.024, 0.032, 0.048, 0.064, 0.1, 0.16, 0.25, 0.4, 0.64,
                         1.0, 2.0, 4.0, 8.0)),
         _values("bpp", (0.1, 1.0))),
    Peer("jpeg2000", "JPEG 2000 (uint16)", ("numcodecs_wasm_jpeg2000",), "numcodecs-wasm-jpeg2000", make_jpeg2000,
         _values("rate", (5, 10, 30, 100, 300, 1000, 3000)), _values("rate", (10, 300))),
    Peer("fourier-network", "Fourier-feature network", ("numcodecs_wasm_fourier_network",),
         "numcodecs-wasm-fourier-network", make_fourier,
         lambda x: [{"fourier_features": 16, "num_blocks": 1, "num_epochs": 10},
                    {"fourier_features": 32, "num_blocks": 2, "num_epochs": 30}],
         lambda x: [{"fourier_features": 8, "num_blocks": 1, "num_epochs": 2}],
         slow=True, time_budget_s=240.0),
]
#: every peer by name: the scientific ones, then the everyday codecs of images, speech and MRI
PEERS: dict[str, Peer] = {p.name: p for p in SCIENTIFIC}
PEERS.update({spec["name"]: Peer(**spec) for spec in MODALITY_PEER_SPECS})
SCIENTIFIC_PEERS = [p.name for p in SCIENTIFIC]  # the default for gridded (climate) data


def default_peers(modality: str | None) -> list[str]:
    """The peers a modality is compared with by default: its everyday codecs, else the scientific ones."""
    return list(MODALITY_PEERS.get(modality, SCIENTIFIC_PEERS))


def available_peers(names=None) -> tuple[list[Peer], dict[str, str]]:
    """The requested peers (default: the scientific ones) that import, and ``{name: install hint}`` for the rest."""
    names = list(SCIENTIFIC_PEERS) if names is None else list(names)
    unknown = [n for n in names if n not in PEERS]
    if unknown:
        raise ValueError(f"unknown peer(s) {unknown}; known: {sorted(PEERS)}")
    ok, missing = [], {}
    for n in names:
        if PEERS[n].missing():
            missing[n] = f"pip install {PEERS[n].pip}  (or: pip install 'inrcodec[bench]')"
        else:
            ok.append(PEERS[n])
    return ok, missing
