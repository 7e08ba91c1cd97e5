"""Progress of a compress run: ``<store>/.inrcodec-progress.json`` (what resuming reads), the
region progress bar and the caller's ``on_region`` callback, all fed by :class:`RunProgress`."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable

from inrcodec.settings import CodecSettings

__all__ = ["PROGRESS_FILE", "ignore_progress_file_warning", "ProgressFile", "RunProgress", "request_fingerprint", "input_fingerprint",
           "fingerprint_difference", "resume_command"]

PROGRESS_FILE = ".inrcodec-progress.json"
PROGRESS_VERSION = 3
#: bytes hashed at each end of an input file, on top of its size and mtime
HASHED_ENDS = 1 << 20
_ZARR_METADATA = ("zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata")


def ignore_progress_file_warning() -> None:
    """Inside ``warnings.catch_warnings()``: zarr warns that it does not know our progress file
    when it lists an unfinished store; we know it (the store is reported as unfinished instead)."""
    warnings.filterwarnings("ignore", message=f".*{PROGRESS_FILE} is not recognized", category=UserWarning)


def input_fingerprint(path) -> dict:
    """The input's path and content, so a resume against a changed input is refused: a file's
    size, mtime and a hash of its first and last MiB; a directory (Zarr store) a hash of its
    metadata files' bytes and of every other file's name, size and mtime."""
    p = Path(path)
    out = {"path": str(p.resolve())}
    if p.is_file():
        st = p.stat()
        out.update(size=st.st_size, mtime_ns=st.st_mtime_ns, sha256_ends=_ends_digest(p, st.st_size))
    elif p.is_dir():
        out.update(_tree_digest(p))
    return out


def _ends_digest(path: Path, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(HASHED_ENDS))
        if size > HASHED_ENDS:
            f.seek(max(HASHED_ENDS, size - HASHED_ENDS))
            h.update(f.read())
    return h.hexdigest()


def _tree_digest(root: Path) -> dict:
    h, files, total = hashlib.sha256(), 0, 0
    for base, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            f = Path(base, name)
            st = f.stat()
            files, total = files + 1, total + st.st_size
            h.update(f"{f.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
            if name in _ZARR_METADATA:
                h.update(f.read_bytes())
    return {"files": files, "bytes": total, "sha256_tree": h.hexdigest()}


def request_fingerprint(input, variables, models: dict, settings: dict, dim, size) -> dict:
    """What must match for a store to be resumed: input, variables, models, every option, chunking.

    ``models`` / ``settings``: each variable's StoredModel and CodecSettings. One model for every
    variable is recorded as before (a hash and one set of options), so such runs resume across
    versions; per-variable models as ``{variable: hash}`` and ``{variable: options}``."""
    shas = {v: models[v].sha256 for v in sorted(variables)}
    opts = {v: settings[v].to_dict() for v in sorted(variables)}
    one = len(set(shas.values())) == 1 and len({json.dumps(o, sort_keys=True) for o in opts.values()}) == 1
    return {"input": input_fingerprint(input), "variables": sorted(variables),
            "model_sha256": next(iter(shas.values())) if one else shas,
            "settings": next(iter(opts.values())) if one else opts, "region_dim": dim, "chunk": size}


def fingerprint_difference(old: dict, new: dict) -> str:
    """Why an unfinished run's fingerprint ``old`` is not the request ``new`` (one phrase)."""
    a, b = old.get("input", {}), new["input"]
    if a.get("path") == b["path"] and a != b and set(a) == set(b):  # (else an older progress file)
        return (f"the input {b['path']} changed since that run started (its content differs): resuming "
                "would mix old and new data")
    parts = {"input": "input", "variables": "variables", "model_sha256": "model", "settings": "codec options",
             "region_dim": "chunks", "chunk": "chunks"}
    differ = sorted({what for key, what in parts.items() if old.get(key) != new.get(key)}) or ["progress file version"]
    return f"it is an unfinished run of another request ({', '.join(differ)} differ)"


class ProgressFile:
    """``<store>/.inrcodec-progress.json``: the request's fingerprint and the finished regions."""

    def __init__(self, store: Path, fingerprint: dict, regions: list[list[int]], dim: str | None,
                 done: set[int] = frozenset(), started: bool = True):
        self.path = store / PROGRESS_FILE
        self.fingerprint, self.regions, self.dim = fingerprint, regions, dim
        self.done: set[int] = set(done)
        #: False until the store's metadata is written: a run killed before that starts again
        self.started = started
        self._lock = threading.Lock()

    @staticmethod
    def read(store: Path) -> dict | None:
        """The progress document of ``store`` (None: no file; {}: unreadable)."""
        try:
            return json.loads((Path(store) / PROGRESS_FILE).read_text())
        except FileNotFoundError:
            return None
        except ValueError:
            return {}

    def write(self) -> None:
        with self._lock:
            doc = {"version": PROGRESS_VERSION, "fingerprint": self.fingerprint, "region_dim": self.dim,
                   "regions": self.regions, "done": sorted(self.done), "complete": False, "started": self.started}
            # written beside and renamed: a kill never leaves a half-written file
            tmp = self.path.with_name(self.path.name + f".tmp{os.getpid()}.{threading.get_ident()}")
            tmp.write_text(json.dumps(doc, indent=1))
            os.replace(tmp, self.path)

    def mark(self, i: int) -> None:
        with self._lock:
            self.done.add(int(i))
        self.write()

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


class RunProgress:
    """Called once per finished region (:meth:`finished`), in the process running the compress:
    records it in the progress file, redraws the bar, then calls ``on_region(index, done, total)``.
    An exception from ``on_region`` stops the run; the recorded regions are kept for a resume."""

    def __init__(self, file: ProgressFile, bar: bool, on_region: Callable[[int, int, int], Any] | None):
        self.file, self.bar, self.on_region = file, bar, on_region
        self.resumed = len(file.done)
        self._t0 = time.perf_counter()

    def finished(self, i: int) -> None:
        self.file.mark(i)
        done, total = len(self.file.done), len(self.file.regions)
        if self.bar:
            self._draw(done, total)
        if self.on_region is not None:
            self.on_region(int(i), done, total)

    def _draw(self, done: int, total: int) -> None:
        width = 30
        fill = int(width * done / max(total, 1))
        end = "\n" if done >= total else ""
        sys.stderr.write(f"\r[{'#' * fill}{' ' * (width - fill)}] {done}/{total} regions along "
                         f"{self.file.dim!r} ({self.resumed} resumed) {time.perf_counter() - self._t0:6.1f} s{end}")
        sys.stderr.flush()


def resume_command(store, doc: dict) -> str:
    """The ``inrcodec compress`` command that resumes the run whose progress document is ``doc``."""
    fp = doc.get("fingerprint", {})
    try:
        # options missing from an older file take their legacy values, which may differ from today's defaults
        flags = " ".join(CodecSettings.from_dict(fp.get("settings", {})).to_arguments())
    except (TypeError, ValueError):  # an edited or older progress file: say what is known
        flags = "..."
    return (f"inrcodec compress {fp.get('input', {}).get('path', 'INPUT')} {store} --model MODEL "
            f"(sha256 {str(fp.get('model_sha256', ''))[:12]}) --variables {','.join(fp.get('variables', []))} "
            f"{flags} --chunks {fp.get('region_dim')}={fp.get('chunk')}")
