"""Helpers the tests share (in the spirit of numcodecs' ``tests/common.py``): a fresh interpreter,
and a hand-edited chunk's CRC put right so that the check under test is the one that refuses it."""

from __future__ import annotations

import struct
import subprocess
import sys
import textwrap
import zlib


def with_crc(body: bytes) -> bytes:
    """``body`` followed by its CRC-32 (little-endian u32): a chunk of format version 3 or later."""
    return bytes(body) + struct.pack("<I", zlib.crc32(bytes(body)) & 0xFFFFFFFF)


def fix_crc(chunk) -> bytes:
    """A whole chunk with its last 4 bytes (the CRC) recomputed over the rest."""
    return with_crc(bytes(chunk[:-4]))


def run_python(code: str, *args: str, timeout: float = 120, text: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """``code`` (dedented) run by a fresh interpreter with ``args``, its output captured."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=text,
                          timeout=timeout, **kwargs)
