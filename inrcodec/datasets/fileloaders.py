"""Loaders for other modalities: audio (soundfile, or the stdlib for PCM WAV), 3-D volumes
(NIfTI through nibabel, or ``.npy``) and images (Pillow).

Everything here is numpy (plus the optional readers); nothing imports torch.
"""

from __future__ import annotations

import os
import wave
from pathlib import Path

import numpy as np


def load_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read an audio file as ``(mono float32 samples in [-1, 1], sample_rate)``.

    Any format libsndfile reads (WAV, FLAC, OGG/Vorbis, MP3 ...) through ``soundfile`` (``pip install
    'inrcodec[audio]'``). Without soundfile, PCM WAV is still read with the stdlib ``wave`` module (8-bit unsigned,
    16-, 24- and 32-bit integer). Several channels are averaged to mono; integers are scaled by ``2**(bits-1)``
    (int16 -32768 -> -1.0). A ``.npy`` file holding a 1-D float array is also accepted (sample rate from a
    ``<name>.rate`` side file, else 16000).

    >>> import tempfile, wave, numpy as np, os
    >>> p = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> with wave.open(p, "wb") as w:
    ...     w.setnchannels(1); w.setsampwidth(2); w.setframerate(8000)
    ...     w.writeframes(np.array([0, 16384, -32768], "<i2").tobytes())
    >>> x, rate = load_audio(p)
    >>> x.tolist(), rate
    ([0.0, 0.5, -1.0], 8000)
    """
    path = Path(os.fspath(path))
    if path.suffix == ".npy":
        x = np.load(path, allow_pickle=False).astype("float32")
        if x.ndim == 2:
            x = x.mean(axis=1, dtype="float32")
        rate_file = path.with_suffix(".rate")
        rate = int(rate_file.read_text().strip()) if rate_file.exists() else 16000
        return np.clip(x, -1.0, 1.0).astype("float32"), rate
    try:
        import soundfile
    except ImportError:
        if path.suffix.lower() != ".wav":
            raise ImportError(f"load_audio: reading {path.suffix or 'this'} files needs soundfile: "
                              "pip install 'inrcodec[audio]' (or pip install soundfile)") from None
        return _load_wav_stdlib(path)
    if not path.exists():
        raise FileNotFoundError(f"load_audio: no such file: {path}")
    try:
        x, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as err:
        raise ValueError(f"load_audio: cannot read {path}: not an audio file libsndfile reads "
                         f"(WAV, FLAC, OGG, MP3 ...): {err}") from err
    x = x.mean(axis=1, dtype="float32") if x.shape[1] > 1 else x[:, 0]
    return np.clip(x, -1.0, 1.0).astype("float32"), int(rate)


def _load_wav_stdlib(path: Path) -> tuple[np.ndarray, int]:
    """PCM WAV through the stdlib ``wave`` module, for installs without soundfile."""
    try:
        with wave.open(str(path), "rb") as w:
            channels, width, rate, frames = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            raw = w.readframes(frames)
    except wave.Error as err:
        raise ValueError(f"load_audio: {path} is not a PCM WAV file the stdlib can read ({err}); "
                         "pip install 'inrcodec[audio]' to read other formats") from err
    if width == 1:
        x = (np.frombuffer(raw, dtype="u1").astype("float32") - 128.0) / 128.0
    elif width in (2, 4):
        x = (np.frombuffer(raw, dtype=f"<i{width}").astype("float64") / float(1 << (8 * width - 1))).astype("float32")
    elif width == 3:  # little-endian 24-bit: sign-extend into int32
        b = np.frombuffer(raw, dtype="u1").reshape(-1, 3)
        v = np.pad(b, ((0, 0), (1, 0))).copy().view("<i4").ravel() >> 8
        x = v.astype("float32") / float(1 << 23)
    else:
        raise ValueError(f"load_audio: unsupported sample width {width} bytes in {path}")
    if channels > 1:
        x = x.reshape(-1, channels).mean(axis=1, dtype="float32")
    return np.clip(x, -1.0, 1.0).astype("float32"), int(rate)


def load_volume(path: str | os.PathLike) -> np.ndarray:
    """Read a 3-D volume as float32: NIfTI (``.nii``/``.nii.gz``, scaling slope/intercept applied) through nibabel,
    or a ``.npy`` array. The array is returned in the file's voxel order (no reorientation).

    NIfTI needs nibabel (``pip install 'inrcodec[mri]'``); without it this raises ImportError saying so.

    >>> vol = load_volume(modality_sample_paths("mri")["train"][0])  # doctest: +SKIP
    >>> vol.shape, vol.dtype.name  # doctest: +SKIP
    ((80, 96, 80), 'float32')
    """
    path = Path(os.fspath(path))
    if path.suffix == ".npy":
        return np.asarray(np.load(path, allow_pickle=False), dtype=np.float32)
    try:
        import nibabel
    except ImportError as err:
        raise ImportError("load_volume needs nibabel to read NIfTI files: pip install 'inrcodec[mri]' "
                          "(or pip install nibabel)") from err
    try:
        img = nibabel.load(os.fspath(path))
    except nibabel.filebasedimages.ImageFileError as err:
        raise ValueError(f"load_volume: {path} is not a volume nibabel reads: {err}") from err
    vol = np.asarray(img.get_fdata(dtype=np.float32), dtype=np.float32)
    if vol.ndim == 4 and vol.shape[3] == 1:
        vol = vol[..., 0]
    if vol.ndim != 3:
        raise ValueError(f"load_volume: {path} holds a {vol.ndim}-D array {vol.shape}; expected a 3-D volume")
    return vol


def load_image(path: str | os.PathLike, *, drop_alpha: bool = True) -> np.ndarray:
    """Read an image (PNG, JPEG, and whatever else Pillow reads) as float32 in [0, 1], ``(H, W)`` or ``(H, W, C)``.

    8-bit images are divided by 255, 16-bit ones by 65535; palette images become RGB(A). With ``drop_alpha`` an RGBA
    image becomes RGB (and grey+alpha becomes grey). Pillow comes with matplotlib, a dependency.

    >>> import tempfile, os, numpy as np
    >>> from PIL import Image
    >>> p = os.path.join(tempfile.mkdtemp(), "g.png")
    >>> Image.fromarray(np.array([[0, 51], [204, 255]], np.uint8)).save(p)
    >>> load_image(p).tolist()
    [[0.0, 0.20000000298023224], [0.800000011920929, 1.0]]
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(os.fspath(path)) as img:
            img.load()
            if img.mode == "P":
                img = img.convert("RGBA" if "transparency" in img.info else "RGB")
            elif img.mode in ("1", "CMYK", "YCbCr", "LAB", "HSV"):
                img = img.convert("L" if img.mode == "1" else "RGB")
            arr = np.asarray(img)
    except UnidentifiedImageError as err:
        raise ValueError(f"load_image: {path} is not an image Pillow reads: {err}") from err
    if np.issubdtype(arr.dtype, np.integer):
        arr = arr.astype("float64") / (255.0 if arr.dtype == np.uint8 else 65535.0)  # 16-bit: I;16 or I
    img = arr.astype("float32")
    if drop_alpha and img.ndim == 3 and img.shape[2] in (2, 4):
        img = img[..., :-1]
        if img.shape[2] == 1:
            img = img[..., 0]
    return np.clip(img, 0.0, 1.0)
