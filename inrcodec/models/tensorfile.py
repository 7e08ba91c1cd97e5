"""Canonical safetensors files: named arrays plus JSON metadata, never pickled.

The bytes follow the safetensors layout (8-byte little-endian header length, a JSON header,
then the raw little-endian tensor data), so ``safetensors.numpy.load`` reads them too. We write
them ourselves so that the bytes are canonical (sorted names, sorted JSON keys, no padding
surprises): a model's SHA-256 is the hash of exactly these bytes, on every machine.
"""

from __future__ import annotations

import json
import math
import struct

import numpy as np

_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "U8": np.dtype("u1"),
}
_CODES = {dt: code for code, dt in _DTYPES.items()}
_MAX_HEADER = 16 * 1024 * 1024


class TensorFileError(ValueError):
    """Bytes that are not a valid tensor file."""


def dumps(arrays: dict[str, np.ndarray], metadata: dict | None = None) -> bytes:
    """Serialise named arrays and a JSON-safe metadata dict to canonical bytes."""
    header: dict[str, object] = {}
    blobs = []
    offset = 0
    for name in sorted(arrays):
        arr = np.asarray(arrays[name])
        dt = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
        if dt not in _CODES:
            raise TypeError(f"tensor {name!r}: dtype {arr.dtype} is not storable")
        data = np.ascontiguousarray(arr, dtype=dt).tobytes()
        header[name] = {
            "dtype": _CODES[dt],
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    if metadata is not None:
        # safetensors metadata is str -> str: the whole dict travels as one canonical JSON string
        header["__metadata__"] = {"json": json.dumps(metadata, sort_keys=True, separators=(",", ":"))}
    head = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)  # 8-byte alignment of the data section, as safetensors does
    return struct.pack("<Q", len(head)) + head + b"".join(blobs)


def loads(data: bytes) -> tuple[dict[str, np.ndarray], dict]:
    """Inverse of :func:`dumps`: returns (arrays, metadata). Raises TensorFileError on bad bytes."""
    data = bytes(data)
    if len(data) < 8:
        raise TensorFileError(f"tensor file truncated: {len(data)} bytes")
    (n,) = struct.unpack_from("<Q", data, 0)
    if n > _MAX_HEADER or 8 + n > len(data):
        raise TensorFileError(f"tensor file header length {n} does not fit in {len(data)} bytes")
    try:
        header = json.loads(data[8 : 8 + n].decode())
        meta = header.pop("__metadata__", None) or {}
        metadata = json.loads(meta["json"]) if "json" in meta else {}
    except (UnicodeDecodeError, json.JSONDecodeError, TypeError, KeyError, AttributeError) as exc:
        raise TensorFileError(f"tensor file header is not valid JSON: {exc}") from None
    body = memoryview(data)[8 + n :]
    arrays = {}
    if not isinstance(header, dict) or not isinstance(metadata, dict):
        raise TensorFileError("tensor file header must be a JSON object")
    for name, spec in header.items():
        try:
            dt = _DTYPES[spec["dtype"]]
            shape = tuple(int(s) for s in spec["shape"])
            start, stop = (int(o) for o in spec["data_offsets"])
        except (KeyError, TypeError, ValueError, AttributeError):
            raise TensorFileError(f"tensor {name!r}: malformed header entry") from None
        if any(d < 0 for d in shape):
            raise TensorFileError(f"tensor {name!r}: negative dimension in shape {shape}")
        count = math.prod(shape)  # exact (numpy's int64 product wraps for hostile shapes)
        if not (0 <= start <= stop <= len(body)) or stop - start != count * dt.itemsize:
            raise TensorFileError(f"tensor {name!r}: data offsets {start}..{stop} are inconsistent")
        arrays[name] = np.frombuffer(body[start:stop], dtype=dt).reshape(shape).copy()
    return arrays, metadata
