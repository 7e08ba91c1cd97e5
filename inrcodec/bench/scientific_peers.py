"""The scientific peer codecs as objects ``inrcodec bench`` can time: numcodecs and numcodecs-wasm
codecs behind one ``encode(x) -> bytes`` / ``decode(bytes, like) -> ndarray`` interface, and one
factory ``make_*(params, x)`` per codec. :mod:`inrcodec.bench.peers` sweeps their settings;
:mod:`inrcodec.bench.modality_peers` reuses SZ3 and SPERR on MRI volumes.
"""

from __future__ import annotations

import numpy as np

from inrcodec.wasmcodecs import wasm_codec_class


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


def make_bitround(p, x):
    from numcodecs import BitRound, Zstd

    return NumcodecsPeer([BitRound(keepbits=p["keepbits"]), Zstd(level=p.get("level", 19))])


def _wasm_peer(module: str, name: str, **config) -> WasmPeer:
    """A peer of one numcodecs-wasm codec (``module``'s class ``name``) with ``config``."""
    return WasmPeer([wasm_codec_class(module, name)(**config)])


def make_sz3(p, x):
    """SZ3 with an absolute error bound ``p["eb_abs"]``."""
    return _wasm_peer("numcodecs_wasm_sz3", "Sz3", eb_mode="abs", eb_abs=p["eb_abs"])


def make_zfp(p, x):
    return _wasm_peer("numcodecs_wasm_zfp", "Zfp", mode="fixed-accuracy", tolerance=p["tolerance"])


def make_zfp_rate(p, x):
    return _wasm_peer("numcodecs_wasm_zfp", "Zfp", mode="fixed-rate", rate=p["rate"])


def make_sperr(p, x):
    """SPERR with a point-wise error bound ``p["pwe"]``."""
    return _wasm_peer("numcodecs_wasm_sperr", "Sperr", mode="pwe", pwe=p["pwe"])


def make_sperr_bpp(p, x):
    """SPERR at a fixed rate of ``p["bpp"]`` bits per value (the mode inrcodec's wavelet chunks use)."""
    return _wasm_peer("numcodecs_wasm_sperr", "Sperr", mode="bpp", bpp=p["bpp"])


def make_jpeg2000(p, x):
    Jpeg2000 = wasm_codec_class("numcodecs_wasm_jpeg2000", "Jpeg2000")

    return Jpeg2000Peer(Jpeg2000(mode="rate", rate=p["rate"]))


def make_fourier(p, x):
    FourierNetwork = wasm_codec_class("numcodecs_wasm_fourier_network", "FourierNetwork")

    return WasmPeer([FourierNetwork(
        fourier_features=p["fourier_features"], fourier_scale=p.get("fourier_scale", 1.0),
        learning_rate=p.get("learning_rate", 1e-3), mini_batch_size=None, num_blocks=p["num_blocks"],
        num_epochs=p["num_epochs"], seed=42,
    )])
