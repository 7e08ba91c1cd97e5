"""The chunk header and the constants every chunk layout shares (modes, flags, section tags,
dtype and order codes), plus the bounds-checked reader the layouts parse with.

:mod:`inrcodec.chunkformat` writes and reads the compact
version 3; :mod:`inrcodec.chunkformat.legacy` the self-describing versions 1 and 2.
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass

import numpy as np

from inrcodec._ids import ENTROPY_PARAMETRIC, QUANTIZER_MIDTREAD
from inrcodec.errors import CorruptChunkError

MAGIC = b"INRC"
#: the newest version this build writes and reads. Headers with a ``pin`` are written as
#: version 3; headers with a ``model_sha256`` as the lowest legacy version that can express
#: them (version 1 unless they use a version-2 feature)
FORMAT_VERSION = 5
SUPPORTED_VERSIONS = (1, 2, 3, 4, 5)
#: version 3 starts with MAGIC[:1] and then the version byte (legacy chunks: the whole MAGIC)
V3_PREFIX = MAGIC[:1] + bytes([3])
#: version 4 is version 3 plus the latent layout (patch aim, item prediction) and the coding of
#: ``QUANTIZER_MIDTREAD`` / ``ENTROPY_PARAMETRIC``; it starts with MAGIC[:1] and then 4
V4_PREFIX = MAGIC[:1] + bytes([4])
#: version 5 is version 4 with a varint content field (3 mode bits) for the wavelet modes 4 to 7
V5_PREFIX = MAGIC[:1] + bytes([5])
#: quantizer / entropy ids only version 4 may name (docs/format.md, "Version 4"): QUANTIZER_MIDTREAD
#: and ENTROPY_PARAMETRIC (inrcodec._ids)
#: ``ChunkHeader.predict`` values: items coded independently / item i predicted from item i-1
PREDICT_NONE, PREDICT_PREVIOUS = 0, 1
KNOWN_PREDICTORS = (PREDICT_NONE, PREDICT_PREVIOUS)
PIN_SIZE = 4
LEGACY_VERSIONS = (1, 2)  # the versions that start with the whole MAGIC

MODE_MODULATIONS = 0  #: latents of the base network (the codec path)
MODE_RAW = 1  #: raw lossless values (constant / all-NaN / non-finite chunks)
MODE_BOUNDED = 2  #: latents + error-bounded residual (format version 2)
MODE_PLAIN_RESIDUAL = 3  #: error-bounded residual of a constant prediction, no network (version 3)
MODE_HYBRID = 4  #: latents + the wavelet-coded residual of their reconstruction (version 5)
MODE_WAVELET = 5  #: the wavelet coder alone, no network (version 5)
#: latents + the wavelet-coded residual of their reconstruction on a coarser grid, interpolated
#: (version 5; builds before it refuse the chunk: unknown mode)
MODE_HYBRID_COARSE = 6
#: the wavelet coder alone, its decode corrected within an error bound by a residual section (version 5;
#: builds before it refuse the chunk: unknown mode)
MODE_WAVELET_CORRECTED = 7

#: the masks any mode's chunk may carry
_MASKS = frozenset({"nan_mask", "fill_mask"})


@dataclass(frozen=True)
class ChunkMode:
    """One row of :data:`MODES`: what predicts a chunk's values, what corrects the prediction, the
    sections its chunks hold, and the first format version that has it (docs/format.md, "Modes")."""

    number: int
    name: str
    #: "network" (the base network's latents), "coarse network" (the network at every
    #: ``chunkcodec.coarse.STRIDE``-th point of each axis, interpolated), "constant" (one f64), "wavelet"
    #: (the ``wavelet`` section's values) or "none"
    prediction: str
    correction: str  #: "none", "residual" (error-bounded), "wavelet" (SPERR) or "raw" (the values)
    sections: frozenset  #: the sections every chunk of the mode has
    optional: frozenset  #: the sections it may also have
    version: int  #: the first format version with this mode

    @property
    def latents(self) -> bool:
        """Whether the chunk holds latents (the header's coding byte and latent layout)."""
        return self.prediction in ("network", "coarse network")

    @property
    def checked(self) -> frozenset:
        """The sections a chunk of this mode is refused without when packed or read. A chunk of a
        mode before version 5 without its ``latents`` or ``raw_values`` is refused only when
        decoded (versions 1-3 never checked them); version-5 modes are held to exactly
        ``sections`` and ``optional``."""
        return self.sections if self.version >= 5 else self.sections - {"latents", "raw_values"}


#: the chunk modes: every check of modes and sections is derived from this table
MODES = (
    ChunkMode(MODE_MODULATIONS, "modulations", "network", "none", frozenset({"latents"}), _MASKS, 1),
    ChunkMode(MODE_RAW, "raw", "none", "raw", frozenset({"raw_values"}), _MASKS, 1),
    ChunkMode(MODE_BOUNDED, "bounded", "network", "residual", frozenset({"latents", "residual"}), _MASKS, 2),
    ChunkMode(MODE_PLAIN_RESIDUAL, "plain-residual", "constant", "residual", frozenset({"prediction", "residual"}),
              _MASKS, 3),
    ChunkMode(MODE_HYBRID, "hybrid", "network", "wavelet", frozenset({"latents", "wavelet"}), _MASKS, 5),
    ChunkMode(MODE_WAVELET, "wavelet", "none", "wavelet", frozenset({"wavelet"}), _MASKS, 5),
    ChunkMode(MODE_HYBRID_COARSE, "coarse-hybrid", "coarse network", "wavelet", frozenset({"latents", "wavelet"}),
              _MASKS, 5),
    ChunkMode(MODE_WAVELET_CORRECTED, "corrected-wavelet", "wavelet", "residual", frozenset({"wavelet", "residual"}),
              _MASKS, 5),
)
MODE_BY_NUMBER = {m.number: m for m in MODES}
KNOWN_MODES = {m.number: m.name for m in MODES}
#: the first format version of each section that versions 1 has not got
SECTION_VERSIONS = {"fill_mask": 2, "prediction": 3, "wavelet": 5}
#: modes whose version-3 header stores no coding byte (no latents)
MODES_WITHOUT_LATENTS = {m.number for m in MODES if not m.latents}
#: modes and sections that need format version 5 (and only they are written in it)
V5_MODES = {m.number for m in MODES if m.version == 5}
V5_SECTIONS = {name for name, v in SECTION_VERSIONS.items() if v == 5}
#: modes and sections that need format version 3
V3_MODES = {m.number for m in MODES if m.version == 3}
V3_SECTIONS = {name for name, v in SECTION_VERSIONS.items() if v == 3}
#: modes and sections that need format version 2
V2_MODES = {m.number for m in MODES if m.version == 2}
V2_SECTIONS = {name for name, v in SECTION_VERSIONS.items() if v == 2}


def check_sections(mode: int, names, error: type[Exception]) -> None:
    """Raise ``error`` unless a chunk of ``mode`` (a known one) with sections ``names`` has what
    :data:`MODES` says: its :attr:`ChunkMode.checked` sections, no section of a version-5 mode
    that is not its own, and a version-5 mode nothing beyond its own."""
    row, names = MODE_BY_NUMBER[mode], set(names)
    missing = sorted(row.checked - names)
    if missing:
        raise error(f"a mode-{mode} ({row.name}) chunk has sections {sorted(row.sections)} "
                    + (f"and optionally {sorted(row.optional)}; " if row.version >= 5 else "; ")
                    + f"{missing[0]!r} is missing (got {sorted(names)})")
    foreign = sorted(n for n in names - row.sections - row.optional
                     if row.version >= 5 or SECTION_VERSIONS.get(n, 1) >= 5)
    if foreign:
        owners = sorted(m.number for m in MODES if foreign[0] in m.sections)
        raise error(f"section {foreign[0]!r} belongs to modes {owners}, not to mode {mode} ({row.name})")


FLAG_NAN_MASK = 1 << 0  #: a "nan_mask" section is present
KNOWN_FLAGS = FLAG_NAN_MASK

#: section name <-> u8 tag stored in the chunk
SECTION_TAGS: dict[str, int] = {
    "latents": 1,  # entropy-coded latent symbols
    "nan_mask": 2,  # compressed NaN mask
    "raw_values": 3,  # raw values (mode 1)
    "residual": 4,  # error-bound residual stream (mode 2; reserved in version 1)
    "fill_mask": 5,  # fill value + compressed mask of its positions (version 2)
    "prediction": 6,  # f64 LE constant prediction of mode 3 (version 3)
    "wavelet": 7,  # wavelet-coded field: the residual (modes 4, 6) or the values (modes 5, 7) (version 5)
}
TAG_NAMES = {v: k for k, v in SECTION_TAGS.items()}

DTYPE_CODES: dict[str, int] = {"<f4": 1, "<f8": 2, ">f4": 3, ">f8": 4}
DTYPE_BY_CODE = {v: k for k, v in DTYPE_CODES.items()}
ORDER_CODES: dict[str, int] = {"C": 0, "F": 1}
ORDER_BY_CODE = {v: k for k, v in ORDER_CODES.items()}

MAX_NDIM = 8
CRC_SIZE = 4

U8, U16, U32, U64 = 2**8 - 1, 2**16 - 1, 2**32 - 1, 2**64 - 1
_HEX64 = re.compile(r"[0-9a-f]{64}")


# ---------------------------------------------------------------------- header
def _uint(name: str, value, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"ChunkHeader.{name} must be an int, got {value!r}")
    value = int(value)
    if not 0 <= value <= maximum:
        raise ValueError(f"ChunkHeader.{name} must be in 0..{maximum}, got {value}")
    return value


def _dims(name: str, value, maximum: int) -> tuple[int, ...]:
    try:
        dims = tuple(value)
    except TypeError:
        raise ValueError(f"ChunkHeader.{name} must be a tuple of ints, got {value!r}") from None
    if len(dims) > MAX_NDIM:
        raise ValueError(f"ChunkHeader.{name} has {len(dims)} dims; at most {MAX_NDIM} allowed")
    return tuple(_uint(f"{name}[{i}]", d, maximum) for i, d in enumerate(dims))


@dataclass(frozen=True)
class ChunkHeader:
    """Everything a decoder needs besides the sections.

    model_sha256  64 hex chars (stored lower-case): sha256 of the base network file
                  (versions 1 and 2; None in version 3, which stores ``pin`` instead).
    dtype         '<f4', '<f8', '>f4' or '>f8' (anything ``np.dtype`` maps to these).
    shape         the chunk's shape, 0..8 dims, each 0..2**64-1.
    order         'C' or 'F' memory order of the original chunk.
    mode          0 = modulations, 1 = raw lossless values, 2 = modulations + error-bounded
                  residual, 3 = plain residual, 4 = hybrid (latents + wavelet residual), 5 = wavelet
                  alone, 6 = hybrid over the network on a coarser grid, 7 = wavelet alone corrected within
                  an error bound by a residual (see ``KNOWN_MODES``; mode 2 needs format version 2, mode 3
                  version 3, modes 4 to 7 version 5).
    patch_shape   0..8 dims, each 0..2**32-1.
    num_items, num_patches   u64;  latent_dim u32;  bits, quantizer_id, entropy_id u8.
    flags         u32, bit 0 = a "nan_mask" section is present; other bits must be 0.
    pin           version 3 only: ``PIN_SIZE`` bytes naming the base network and grid
                  (:func:`model_pin`). With a pin, ``patch_shape``, ``num_items``,
                  ``num_patches`` and ``latent_dim`` are not stored (the model and the chunk's
                  masks imply them) and must be None; ``bits``, ``quantizer_id`` and
                  ``entropy_id`` are stored only in modes 0 and 2 (bits 1..16, ids 0..3) and
                  are 0 in mode 1.
    patch_aim     version 4, modes 0 and 2: the patch side in grid points the model's patch rule
                  aims at (:meth:`CoinModel.patch_points`), 1..255; 0 = the model's own
                  ``patch_shape`` (what versions 1-3 imply).
    predict       version 4, modes 0 and 2: 0 = items coded independently, 1 = fitted item i
                  coded as the difference from the dequantised latents of fitted item i - 1
                  (``PREDICT_PREVIOUS``; needs quantizer_id 2 and entropy_id 3).
    A header with a pin is written as version 5 in modes 4 to 7 (the wavelet modes), else as
    version 4 when it sets ``patch_aim`` or ``predict`` or names quantizer_id 2 or entropy_id 3,
    else as version 3 (:attr:`version`).
    """

    model_sha256: str | None
    dtype: str
    shape: tuple[int, ...]
    order: str
    mode: int
    patch_shape: tuple[int, ...] | None
    num_items: int | None
    num_patches: int | None
    latent_dim: int | None
    bits: int
    quantizer_id: int
    entropy_id: int
    flags: int = 0
    pin: bytes | None = None
    patch_aim: int = 0
    predict: int = 0

    @property
    def version3(self) -> bool:
        """A compact header (version 3 or 4: a pin instead of the model hash)."""
        return self.pin is not None

    @property
    def version(self) -> int:
        """The format version this header is written in (1 or 2: see chunkformat.legacy)."""
        if self.pin is None:
            return 1
        if self.mode in V5_MODES:
            return 5
        new = (self.patch_aim, self.predict) != (0, 0) or self.quantizer_id == QUANTIZER_MIDTREAD \
            or self.entropy_id == ENTROPY_PARAMETRIC
        return 4 if new else 3

    def __post_init__(self) -> None:
        sha = self.model_sha256
        if self.pin is not None:
            if sha is not None:
                raise ValueError("ChunkHeader takes model_sha256 (versions 1, 2) or pin (version 3), not both")
            if not isinstance(self.pin, (bytes, bytearray)) or len(self.pin) != PIN_SIZE:
                raise ValueError(f"ChunkHeader.pin must be {PIN_SIZE} bytes, got {self.pin!r}")
            object.__setattr__(self, "pin", bytes(self.pin))
            self._check_v3()
        elif not isinstance(sha, str) or not _HEX64.fullmatch(sha.lower()):
            raise ValueError(f"ChunkHeader.model_sha256 must be 64 hex characters, got {sha!r}")
        elif self.mode in V5_MODES:
            raise ValueError(f"mode {self.mode} needs format version 5 (a header with a pin)")
        dtype = None
        if isinstance(self.dtype, (str, np.dtype)):
            try:
                dtype = np.dtype(self.dtype).str
            except (TypeError, ValueError):
                pass
        if dtype not in DTYPE_CODES:
            raise ValueError(
                f"ChunkHeader.dtype must be one of {sorted(DTYPE_CODES)}, got {self.dtype!r}"
            )
        if not isinstance(self.order, str) or self.order not in ORDER_CODES:
            raise ValueError(f"ChunkHeader.order must be 'C' or 'F', got {self.order!r}")
        mode = _uint("mode", self.mode, U8)
        if mode not in KNOWN_MODES:
            raise ValueError(
                f"ChunkHeader.mode {mode} is unknown (this build knows {sorted(KNOWN_MODES)})"
            )
        flags = _uint("flags", self.flags, U32)
        if flags & ~KNOWN_FLAGS:
            raise ValueError(
                f"ChunkHeader.flags 0x{flags:x} sets unknown bits (known mask 0x{KNOWN_FLAGS:x})"
            )
        values = {
            "model_sha256": None if sha is None else sha.lower(),
            "dtype": dtype,
            "shape": _dims("shape", self.shape, U64),
            "mode": mode,
        }
        if self.pin is None:
            values.update({
                "patch_shape": _dims("patch_shape", self.patch_shape, U32),
                "num_items": _uint("num_items", self.num_items, U64),
                "num_patches": _uint("num_patches", self.num_patches, U64),
                "latent_dim": _uint("latent_dim", self.latent_dim, U32),
            })
        values.update({
            "bits": _uint("bits", self.bits, U8),
            "quantizer_id": _uint("quantizer_id", self.quantizer_id, U8),
            "entropy_id": _uint("entropy_id", self.entropy_id, U8),
            "flags": flags,
            "patch_aim": _uint("patch_aim", self.patch_aim, U8),
            "predict": _uint("predict", self.predict, U8),
        })
        for name, value in values.items():
            object.__setattr__(self, name, value)
        if self.pin is not None and self.mode not in MODES_WITHOUT_LATENTS:
            if not (1 <= self.bits <= 16 and self.quantizer_id <= 3 and self.entropy_id <= 3):
                raise ValueError(
                    "a version-3 header (pin set) stores bits 1..16 and quantizer/entropy ids "
                    f"0..3; got bits={self.bits}, quantizer_id={self.quantizer_id}, "
                    f"entropy_id={self.entropy_id}"
                )
        if (self.pin is None or self.mode in MODES_WITHOUT_LATENTS) and (self.patch_aim, self.predict) != (0, 0):
            raise ValueError("patch_aim and predict are version-4 fields of chunks with latents (pin set, "
                             f"mode 0, 2 or 4); got patch_aim={self.patch_aim}, predict={self.predict}")
        if self.predict not in KNOWN_PREDICTORS:
            raise ValueError(f"ChunkHeader.predict must be one of {KNOWN_PREDICTORS}, got {self.predict}")
        if self.predict and (self.quantizer_id, self.entropy_id) != (QUANTIZER_MIDTREAD, ENTROPY_PARAMETRIC):
            raise ValueError("predicted items (predict=1) need quantizer_id 2 and entropy_id 3")

    def _check_v3(self) -> None:
        implied = {k: getattr(self, k) for k in ("patch_shape", "num_items", "num_patches", "latent_dim")}
        if any(v is not None for v in implied.values()):
            raise ValueError(
                "a version-3 header (pin set) does not store patch_shape, num_items, num_patches "
                f"or latent_dim (the model and the chunk imply them); pass None, got {implied}"
            )
        if self.mode in MODES_WITHOUT_LATENTS and (self.bits, self.quantizer_id, self.entropy_id) != (0, 0, 0):
            raise ValueError(f"a version-3 mode-{self.mode} header (raw or plain residual, no latents) "
                             "has bits, quantizer_id, entropy_id = 0")

    @property
    def has_nan_mask(self) -> bool:
        return bool(self.flags & FLAG_NAN_MASK)


# ---------------------------------------------------------------------- bytes
def tag_of(tag) -> tuple[int, str]:
    if isinstance(tag, str):
        if tag not in SECTION_TAGS:
            raise ValueError(f"unknown section name {tag!r} (known: {sorted(SECTION_TAGS)})")
        return SECTION_TAGS[tag], tag
    if isinstance(tag, (int, np.integer)) and not isinstance(tag, bool) and int(tag) in TAG_NAMES:
        return int(tag), TAG_NAMES[int(tag)]
    raise ValueError(f"unknown section tag {tag!r} (known: {SECTION_TAGS})")


def as_bytes_view(obj) -> memoryview:
    if isinstance(obj, np.ndarray):
        obj = np.ascontiguousarray(obj)
        return memoryview(obj.reshape(-1).view(np.uint8))
    view = memoryview(obj)
    if not view.c_contiguous:
        view = memoryview(view.tobytes())
    return view.cast("B") if (view.format != "B" or view.ndim != 1) else view


class Reader:
    """Bounds-checked cursor over ``buf[start:end]``."""

    def __init__(self, buf: memoryview, start: int, end: int, what: str):
        self.buf, self.pos, self.end, self.what = buf, start, end, what

    def take(self, n: int, field: str) -> memoryview:
        if n < 0 or n > self.end - self.pos:
            raise CorruptChunkError(
                f"{self.what}: field {field} needs {n} bytes at offset {self.pos} but only "
                f"{self.end - self.pos} remain"
            )
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str | struct.Struct, field: str) -> tuple:
        st = fmt if isinstance(fmt, struct.Struct) else struct.Struct(fmt)
        return st.unpack(self.take(st.size, field))
