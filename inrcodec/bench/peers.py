"""The peer codecs ``inrcodec bench`` compares against: one :class:`Peer` per codec family.

Scientific (gridded data) peers come from numcodecs and the numcodecs-wasm packages; the everyday
codecs of images, speech and MRI from :mod:`inrcodec.bench.modality_peers`. Every peer is
optional: :func:`available_peers` says which import and how to install the others.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from inrcodec.bench.modality_peers import DEFAULT_PEERS as MODALITY_PEERS
from inrcodec.bench.modality_peers import PEER_SPECS as MODALITY_PEER_SPECS
from inrcodec.metrics import data_range


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
                importlib.import_module(m)
            except Exception:  # ImportError, or a broken wasm runtime
                out.append(m)
        return out


class NumcodecsPeer:
    """A numcodecs codec (or a chain) used as a peer: encode -> bytes, decode -> float32 array."""

    def __init__(self, codecs):
        self.codecs = list(codecs)

    def encode(self, x: np.ndarray) -> bytes:
        buf = x
        for c in self.codecs:
            buf = c.encode(buf)
        return bytes(np.asarray(buf).tobytes()) if not isinstance(buf, (bytes, bytearray)) else bytes(buf)

    def decode(self, data: bytes, like: np.ndarray) -> np.ndarray:
        buf = data
        for c in reversed(self.codecs):
            buf = c.decode(buf)
        return np.frombuffer(np.asarray(buf).tobytes(), dtype=like.dtype).reshape(like.shape)

    def config(self) -> list[dict]:
        return [c.get_config() for c in self.codecs]


class WasmPeer(NumcodecsPeer):
    """A numcodecs-wasm codec; its encoded output is an ndarray of bytes, decoded with ``out=``."""

    def encode(self, x: np.ndarray) -> bytes:
        return np.asarray(self.codecs[0].encode(x)).tobytes()

    def decode(self, data: bytes, like: np.ndarray) -> np.ndarray:
        out = np.empty_like(like)
        res = self.codecs[0].decode(np.frombuffer(data, dtype=np.uint8), out=out)
        return np.asarray(res if res is not None else out).reshape(like.shape)


class Jpeg2000Peer:
    """JPEG 2000 on float data: linear quantisation to uint16 over [min, max], then JPEG 2000
    (which only takes integers). The 16 bytes of min/max (float64) are counted in the output."""

    def __init__(self, codec):
        self.codec = codec

    def encode(self, x: np.ndarray) -> bytes:
        lo, hi = float(np.min(x)), float(np.max(x))
        span = hi - lo if hi > lo else 1.0
        q = np.round((x.astype(np.float64) - lo) / span * 65535.0).astype(np.uint16)
        return np.array([lo, hi], "<f8").tobytes() + np.asarray(self.codec.encode(q)).tobytes()

    def decode(self, data: bytes, like: np.ndarray) -> np.ndarray:
        lo, hi = np.frombuffer(data[:16], "<f8")
        span = hi - lo if hi > lo else 1.0
        q = np.empty(like.shape, np.uint16)
        res = self.codec.decode(np.frombuffer(data[16:], dtype=np.uint8), out=q)
        q = np.asarray(res if res is not None else q).reshape(like.shape)
        return (lo + q.astype(np.float64) / 65535.0 * span).astype(like.dtype)

    def config(self) -> list[dict]:
        return [{"id": "uint16-linear"}, self.codec.get_config()]


_REL_BOUNDS = [0.5, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01, 3e-3, 1e-3, 1e-4]
_REL_BOUNDS_QUICK = [0.1, 0.01]


def make_bitround(p, x):
    from numcodecs import BitRound, Zstd

    return NumcodecsPeer([BitRound(keepbits=p["keepbits"]), Zstd(level=p.get("level", 19))])


def make_sz3(p, x):
    """SZ3 with an absolute error bound ``p["eb_abs"]``."""
    from numcodecs_wasm_sz3 import Sz3

    return WasmPeer([Sz3(eb_mode="abs", eb_abs=p["eb_abs"])])


def make_zfp(p, x):
    from numcodecs_wasm_zfp import Zfp

    return WasmPeer([Zfp(mode="fixed-accuracy", tolerance=p["tolerance"])])


def make_zfp_rate(p, x):
    from numcodecs_wasm_zfp import Zfp

    return WasmPeer([Zfp(mode="fixed-rate", rate=p["rate"])])


def make_sperr(p, x):
    """SPERR with a point-wise error bound ``p["pwe"]``."""
    from numcodecs_wasm_sperr import Sperr

    return WasmPeer([Sperr(mode="pwe", pwe=p["pwe"])])


def make_jpeg2000(p, x):
    from numcodecs_wasm_jpeg2000 import Jpeg2000

    return Jpeg2000Peer(Jpeg2000(mode="rate", rate=p["rate"]))


def make_fourier(p, x):
    from numcodecs_wasm_fourier_network import FourierNetwork

    return WasmPeer([FourierNetwork(
        fourier_features=p["fourier_features"], fourier_scale=p.get("fourier_scale", 1.0),
        learning_rate=p.get("learning_rate", 1e-3), mini_batch_size=None, num_blocks=p["num_blocks"],
        num_epochs=p["num_epochs"], seed=42,
    )])


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
