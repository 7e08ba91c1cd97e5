"""The everyday codecs of images, speech and MRI, as ``inrcodec bench`` peers.

* images: JPEG, WebP and JPEG 2000 through Pillow, one 2-D image per item, or (``*-mosaic``) all items tiled into
  one image, which pays the format's headers once (small items such as 28 x 28);
* MRI: JPEG and JPEG 2000 per axial slice (Pillow), SPERR and SZ3 on the 3-D volume (numcodecs-wasm);
* speech: MP3 (LAME) and Opus through PyAV (FFmpeg), at bit rates matched to inrcodec's range.

Each peer sees the same held-out test split as inrcodec (``(items, *spatial)`` float32). 8-bit image codecs get
the data mapped linearly onto 0..255 over the split's [min, max] (exact for 8-bit data in [0, 1] or 0..255); the
16 bytes of min/max are counted. Speech is the test split's items joined back into one signal (they are
contiguous), encoded at 16 kHz; the whole container (MP3 frames, Ogg pages) is counted.

The specs here are plain dicts; :mod:`inrcodec.bench.peers` turns them into its ``Peer`` objects.
"""

from __future__ import annotations

import io
import struct

import numpy as np

from inrcodec.bench.scientific_peers import make_sperr, make_sz3
from inrcodec.metrics import data_range

SPEECH_RATE = 16000  # Hz: the audio recipe's data; kbps = bits/value * SPEECH_RATE / 1000

# modality of a recipe (Recipe.modality) -> default peers and the unit of its rate axis
DEFAULT_PEERS = {
    "image": ["jpeg", "webp", "jpeg2000-2d"],
    "audio": ["mp3", "opus"],
    "volume": ["jpeg-slices", "jpeg2000-slices", "sperr-3d", "sz3-3d"],
}


# -- 8-bit images, one 2-D slice at a time -------------------------------------------------------


def _uint8_range(x: np.ndarray) -> tuple[float, float]:
    """[lo, hi] mapped onto 0..255: exact for 8-bit data stored as [0, 1] floats or as 0..255 values."""
    lo, hi = float(np.min(x)), float(np.max(x))
    if lo >= 0 and hi <= 1 and np.allclose(x * 255, np.round(x * 255), atol=1e-3):
        return 0.0, 1.0
    if lo >= 0 and hi <= 255 and np.allclose(x, np.round(x), atol=1e-3):
        return 0.0, 255.0
    return lo, hi if hi > lo else lo + 1.0


class _PillowSlices:
    """A Pillow format applied to every 2-D slice of ``x.reshape(-1, H, W)``; slices stored length-prefixed."""

    def __init__(self, fmt: str, options: dict):
        self.fmt, self.options = fmt, options

    def encode(self, x: np.ndarray) -> bytes:
        from PIL import Image

        lo, hi = _uint8_range(x)
        q = np.round((x.astype(np.float64) - lo) / (hi - lo) * 255).clip(0, 255).astype(np.uint8)
        out = [struct.pack("<dd", lo, hi)]
        for sl in q.reshape(-1, *q.shape[-2:]):
            buf = io.BytesIO()
            Image.fromarray(sl, mode="L").save(buf, format=self.fmt, **self.options)
            out += [struct.pack("<I", buf.tell()), buf.getvalue()]
        return b"".join(out)

    def decode(self, data: bytes, like: np.ndarray) -> np.ndarray:
        from PIL import Image

        lo, hi = struct.unpack_from("<dd", data)
        pos, slices = 16, []
        while pos < len(data):
            (n,) = struct.unpack_from("<I", data, pos)
            with Image.open(io.BytesIO(data[pos + 4 : pos + 4 + n])) as img:
                slices.append(np.asarray(img.convert("L")))
            pos += 4 + n
        q = np.stack(slices).astype(np.float64).reshape(like.shape)
        return (lo + q / 255 * (hi - lo)).astype(like.dtype)


def _jpeg(p, x):
    return _PillowSlices("JPEG", {"quality": p["quality"], "optimize": True})


def _webp(p, x):
    return _PillowSlices("WEBP", {"quality": p["quality"], "method": 6})


def _jpeg2000_2d(p, x):
    # "rates" = compression ratio against the 8-bit input: bits per pixel = 8 / ratio
    return _PillowSlices("JPEG2000", {"quality_mode": "rates", "quality_layers": [p["ratio"]], "irreversible": True})


class _Mosaic:
    """A 2-D peer on all items tiled into one mosaic image (``rows x cols`` items, ``cols`` the smallest divisor of
    the item count at or above its square root): for small items (28 x 28) whose per-file headers would otherwise
    outweigh the pixels, so the peer pays its headers once, as inrcodec's one chunk does."""

    def __init__(self, inner):
        self.inner = inner

    @staticmethod
    def _layout(n: int) -> tuple[int, int]:
        cols = next(d for d in range(int(np.ceil(np.sqrt(n))), n + 1) if n % d == 0)
        return n // cols, cols

    def _tile(self, x: np.ndarray) -> np.ndarray:
        items = x.reshape(-1, *x.shape[-2:])
        (rows, cols), (h, w) = self._layout(len(items)), items.shape[1:]
        return items.reshape(rows, cols, h, w).transpose(0, 2, 1, 3).reshape(1, rows * h, cols * w)

    def encode(self, x: np.ndarray) -> bytes:
        return self.inner.encode(self._tile(x))

    def decode(self, data: bytes, like: np.ndarray) -> np.ndarray:
        items = like.reshape(-1, *like.shape[-2:])
        (rows, cols), (h, w) = self._layout(len(items)), items.shape[1:]
        mosaic = self.inner.decode(data, self._tile(like))
        return mosaic.reshape(rows, h, cols, w).transpose(0, 2, 1, 3).reshape(like.shape)


# -- 3-D volumes ----------------------------------------------------------------------------------


class _Volume:
    """A 3-D codec on the slabs of the test split joined along axis 0 (they are contiguous slices)."""

    def __init__(self, codec):
        self.codec = codec

    def encode(self, x: np.ndarray) -> bytes:
        return self.codec.encode(np.ascontiguousarray(x.reshape(-1, *x.shape[-2:])))

    def decode(self, data: bytes, like: np.ndarray) -> np.ndarray:
        flat = like.reshape(-1, *like.shape[-2:])
        return np.asarray(self.codec.decode(data, flat)).reshape(like.shape)


def _sz3_3d(p, x):
    return _Volume(make_sz3({"eb_abs": p["eb_rel"] * data_range(x)}, x))


def _sperr_3d(p, x):
    return _Volume(make_sperr({"pwe": p["pwe_rel"] * data_range(x)}, x))


# -- speech ---------------------------------------------------------------------------------------


class _PyAVAudio:
    """MP3 or Opus through PyAV: the items joined into one 16 kHz mono signal, encoded in memory."""

    def __init__(self, codec: str, container: str, kbps: float):
        self.codec, self.container, self.kbps = codec, container, kbps

    def encode(self, x: np.ndarray) -> bytes:
        import av

        signal = np.ascontiguousarray(x.reshape(1, -1), dtype=np.float32)
        buf = io.BytesIO()
        with av.open(buf, "w", format=self.container) as c:
            # LAME keeps 16 kHz; libopus runs at 48 kHz (its decoder always outputs 48 kHz)
            stream = c.add_stream(self.codec, rate=SPEECH_RATE if self.codec == "libmp3lame" else 48000, layout="mono")
            stream.bit_rate = int(self.kbps * 1000)
            frame = av.AudioFrame.from_ndarray(signal, format="flt", layout="mono")
            frame.sample_rate = SPEECH_RATE
            resampler = av.AudioResampler(format=stream.format.name, layout="mono", rate=stream.rate)
            for f in resampler.resample(frame) + resampler.resample(None):
                for packet in stream.encode(f):
                    c.mux(packet)
            for packet in stream.encode(None):
                c.mux(packet)
        return buf.getvalue()

    def decode(self, data: bytes, like: np.ndarray) -> np.ndarray:
        import av

        parts = []
        with av.open(io.BytesIO(data), "r", format=self.container) as c:
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SPEECH_RATE)
            for frame in c.decode(audio=0):
                parts += [f.to_ndarray().ravel() for f in resampler.resample(frame)]
            parts += [f.to_ndarray().ravel() for f in resampler.resample(None)]
        y = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        n = like.size  # the decoders remove the encoder delay; trim/pad the last frame's padding
        y = np.pad(y[:n], (0, max(0, n - len(y))))
        return y.reshape(like.shape).astype(like.dtype)


def _mp3(p, x):
    return _PyAVAudio("libmp3lame", "mp3", p["kbps"])


def _opus(p, x):
    return _PyAVAudio("libopus", "ogg", p["kbps"])


def _mosaic(make):
    return lambda p, x: _Mosaic(make(p, x))


# -- specs for inrcodec.bench.peers.Peer ------------------------------------------------------------------

PEER_SPECS = [
    dict(name="jpeg", label="JPEG (Pillow)", modules=("PIL",), pip="pillow", make=_jpeg,
         sweep=lambda x: [{"quality": q} for q in (5, 10, 20, 30, 50, 70, 85, 95)],
         quick=lambda x: [{"quality": q} for q in (10, 70)]),
    dict(name="webp", label="WebP (Pillow)", modules=("PIL",), pip="pillow", make=_webp,
         sweep=lambda x: [{"quality": q} for q in (5, 10, 20, 30, 50, 70, 85, 95)],
         quick=lambda x: [{"quality": q} for q in (10, 70)]),
    dict(name="jpeg2000-2d", label="JPEG 2000 (Pillow)", modules=("PIL",), pip="pillow", make=_jpeg2000_2d,
         sweep=lambda x: [{"ratio": r} for r in (4, 8, 16, 32, 64, 128, 256)],
         quick=lambda x: [{"ratio": r} for r in (8, 64)]),
    dict(name="jpeg-mosaic", label="JPEG, one mosaic of all items (Pillow)", modules=("PIL",), pip="pillow",
         make=_mosaic(_jpeg), sweep=lambda x: [{"quality": q} for q in (5, 10, 20, 30, 50, 70, 85, 95)],
         quick=lambda x: [{"quality": q} for q in (10, 70)]),
    dict(name="webp-mosaic", label="WebP, one mosaic of all items (Pillow)", modules=("PIL",), pip="pillow",
         make=_mosaic(_webp), sweep=lambda x: [{"quality": q} for q in (5, 10, 20, 30, 50, 70, 85, 95)],
         quick=lambda x: [{"quality": q} for q in (10, 70)]),
    dict(name="jpeg2000-mosaic", label="JPEG 2000, one mosaic of all items (Pillow)", modules=("PIL",),
         pip="pillow", make=_mosaic(_jpeg2000_2d), sweep=lambda x: [{"ratio": r} for r in (4, 6, 8, 12, 16, 32, 64)],
         quick=lambda x: [{"ratio": r} for r in (8, 32)]),
    dict(name="jpeg-slices", label="JPEG per slice (Pillow)", modules=("PIL",), pip="pillow", make=_jpeg,
         sweep=lambda x: [{"quality": q} for q in (5, 10, 20, 30, 50, 70, 85, 95)],
         quick=lambda x: [{"quality": q} for q in (10, 70)]),
    dict(name="jpeg2000-slices", label="JPEG 2000 per slice (Pillow)", modules=("PIL",), pip="pillow",
         make=_jpeg2000_2d, sweep=lambda x: [{"ratio": r} for r in (4, 8, 16, 32, 64, 128, 256)],
         quick=lambda x: [{"ratio": r} for r in (8, 64)]),
    dict(name="sperr-3d", label="SPERR 3-D (pwe)", modules=("numcodecs_wasm_sperr",), pip="numcodecs-wasm-sperr",
         make=_sperr_3d, sweep=lambda x: [{"pwe_rel": r} for r in (0.5, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01, 3e-3)],
         quick=lambda x: [{"pwe_rel": r} for r in (0.2, 0.02)]),
    dict(name="sz3-3d", label="SZ3 3-D (abs)", modules=("numcodecs_wasm_sz3",), pip="numcodecs-wasm-sz3",
         make=_sz3_3d, sweep=lambda x: [{"eb_rel": r} for r in (0.3, 0.2, 0.1, 0.05, 0.02, 0.01, 3e-3)],
         quick=lambda x: [{"eb_rel": r} for r in (0.1, 0.01)]),
    dict(name="mp3", label="MP3 (LAME via PyAV)", modules=("av",), pip="av", make=_mp3,
         sweep=lambda x: [{"kbps": k} for k in (8, 16, 24, 32, 48, 64)],
         quick=lambda x: [{"kbps": k} for k in (16, 32)]),
    dict(name="opus", label="Opus (libopus via PyAV)", modules=("av",), pip="av", make=_opus,
         sweep=lambda x: [{"kbps": k} for k in (6, 8, 12, 16, 24, 32)],
         quick=lambda x: [{"kbps": k} for k in (8, 16)]),
]


# -- the rate axis of PSNR plots, in the modality's own unit ------------------------------------------


def rate_axis(modality: str | None) -> tuple[str, float]:
    """(label, factor from bits per value) of a modality's rate axis: kbps for speech, bpp (bits/voxel) else."""
    if modality == "audio":
        return "kbps (16 kHz)", SPEECH_RATE / 1000
    if modality == "volume":
        return "bits per voxel", 1.0
    return "bits per pixel", 1.0
