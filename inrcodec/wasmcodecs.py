"""Loading the numcodecs-wasm codecs (SPERR, SZ3, ZFP, ...) without breaking the user's exit.

numcodecs-wasm 0.2.5 builds each codec class from its WebAssembly component when the codec's
module is imported. While doing so it evaluates a ``lambda ...: None`` with no globals of its own,
which Python gives ``__main__.__dict__``, and keeps that function alive for the life of the
process. ``__main__``'s namespace can then never be freed, so nothing in it is finalised at exit:
a user script that writes ``f = open("out.txt", "w"); f.write(...)`` and forgets ``close()``
leaves an empty file once any of these modules was imported (issue 32, case 4).

:func:`wasm_codec_class` imports such a module while ``sys.modules["__main__"]`` is a throwaway
module, so the function the binding keeps holds that module's empty namespace instead. The swap
lasts for the import only (tens of milliseconds, under a lock). A module the user imported
before inrcodec did keeps the upstream behaviour: inrcodec cannot undo it.

Example::

    >>> from inrcodec.wasmcodecs import wasm_codec_class
    >>> Sperr = wasm_codec_class("numcodecs_wasm_sperr", "Sperr")
    >>> Sperr.codec_id
    'sperr.rs'
"""

from __future__ import annotations

import importlib
import sys
import threading
import types

__all__ = ["import_wasm_module", "wasm_codec_class"]

_LOCK = threading.Lock()
#: the modules imported through here, fully initialised (another thread may be halfway through one)
_LOADED: dict[str, types.ModuleType] = {}


def import_wasm_module(name: str) -> types.ModuleType:
    """Import the numcodecs-wasm codec module ``name`` with ``__main__`` left out of its reach.

    Thread-safe: a thread that asks while another is importing waits for the finished module.
    Raises ImportError (or the binding's own error) as a plain import would.
    """
    module = _LOADED.get(name)
    if module is not None:
        return module
    importlib.import_module("numcodecs_wasm")  # its own dependencies import as usual, outside the swap
    with _LOCK:
        if name not in _LOADED:
            if sys.modules.get(name) is not None:  # imported before, by the user: as it is
                _LOADED[name] = importlib.import_module(name)
            else:
                main = sys.modules.get("__main__")
                sys.modules["__main__"] = types.ModuleType("__main__")
                try:
                    _LOADED[name] = importlib.import_module(name)
                finally:
                    if main is None:
                        sys.modules.pop("__main__", None)
                    else:
                        sys.modules["__main__"] = main
        return _LOADED[name]


def wasm_codec_class(module: str, name: str) -> type:
    """The codec class ``name`` of the numcodecs-wasm module ``module`` (see :func:`import_wasm_module`)."""
    return getattr(import_wasm_module(module), name)
