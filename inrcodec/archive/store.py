"""Output safety: never destroy data that is not ours, one writer per store (a lock beside it),
replace a store only when the new one is complete (a temporary sibling swapped into place), and
mark an unfinished store so every reader knows."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Iterator

from inrcodec.archive.progress import PROGRESS_FILE, ProgressFile, resume_command
from inrcodec.errors import IncompleteStoreError, StoreLockedError
from inrcodec.zarr3 import CODEC_ID, INCOMPLETE_KEY

__all__ = ["check_output", "output_path", "output_lock", "temp_sibling", "remove_zarr_store", "swap_into_place",
           "mark_incomplete", "check_complete", "is_zarr_store"]


def is_zarr_store(path: Path) -> bool:
    """A Zarr store, or the start of one by ``inrcodec compress`` (its progress file first)."""
    return any((path / f).is_file() for f in ("zarr.json", ".zgroup", ".zarray", PROGRESS_FILE))


def check_output(input, output: Path, overwrite: bool = False) -> None:
    """Refuse outputs that would destroy data: the input itself, a path inside it or around it,
    an existing file, an existing directory that is not a Zarr store; and a mount point to
    ``overwrite`` (it cannot be renamed)."""
    src, dst = Path(input).resolve(), output.resolve()
    if dst == src or src in dst.parents or dst in src.parents:
        rel = "is" if dst == src else ("lies inside" if src in dst.parents else "contains")
        raise ValueError(f"output {output} {rel} the input {input}; write the store somewhere else")
    if output.exists() and not output.is_dir():
        raise ValueError(f"output {output} is an existing file, not a Zarr store; choose another path")
    if output.is_dir() and any(output.iterdir()) and not is_zarr_store(output):
        raise ValueError(f"output {output} is a non-empty directory that is not a Zarr store; "
                         "refusing to write into it (nothing was deleted)")
    if overwrite and os.path.ismount(output):
        raise ValueError(f"output {output} is a mount point: --overwrite replaces a store by renaming it, "
                         f"which a mount point does not allow; write to a path inside it (e.g. {output / 'store.zarr'})")


def output_path(output) -> Path:
    """The store a run writes: through a symlink, the store it points to (the link stays), so an
    overwrite swaps the real store, never renames or deletes the link."""
    path = Path(output)
    return path.resolve() if path.is_symlink() else path


@contextlib.contextmanager
def output_lock(output: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``output`` (a ``flock`` of ``.NAME.inrcodec-lock`` beside it) or
    raise :class:`StoreLockedError` naming the process that holds it. The kernel drops the lock
    when the process ends, however it ends; the file is removed when the run ends."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock
        yield
        return
    path = output.with_name(f".{output.name}.inrcodec-lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _locked_fd(path, output, fcntl)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        path.unlink(missing_ok=True)  # still locked: a process that opened it before sees it gone
        os.close(fd)


def _locked_fd(path: Path, output: Path, fcntl) -> int:
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            pid = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StoreLockedError(f"{output} is being written by another inrcodec process (pid {pid}); "
                                   "wait for it to finish (a killed run releases its lock)") from None
        try:  # the holder before us removed the file after we opened it: lock the file that is there
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def temp_sibling(path: Path) -> Path:
    """Where an ``overwrite`` run writes until it is complete."""
    return path.with_name(f".{path.name}.inrcodec-tmp")


def remove_zarr_store(path: Path) -> None:
    """Delete ``path`` if it is a Zarr store or an empty directory; refuse anything else. A
    symlink is unlinked, never followed."""
    if path.is_symlink():
        path.unlink()
    elif path.is_dir() and (is_zarr_store(path) or not any(path.iterdir())):
        shutil.rmtree(path)
    elif path.exists():
        raise ValueError(f"{path} exists and is not a Zarr store; refusing to delete it")


def swap_into_place(new: Path, final: Path) -> None:
    """Replace the store ``final`` by the complete store ``new`` (its temporary sibling)."""
    old = final.with_name(f".{final.name}.inrcodec-old")
    if old.exists():
        remove_zarr_store(old)
    os.replace(final, old)
    try:
        os.replace(new, final)
    except OSError:
        os.replace(old, final)  # the old store back in place; the run can be repeated
        raise
    remove_zarr_store(old)


def mark_incomplete(store: Path, names: list[str], flag: bool) -> None:
    """Mark (or unmark) the COIN++ arrays ``names`` of an unfinished store in their codec
    configuration, so even a plain ``xr.open_zarr`` warns (``IncompleteStoreWarning``)."""
    for name in names:
        path = store / name / "zarr.json"
        doc = json.loads(path.read_text())
        for c in doc.get("codecs", []):
            if c.get("name") == CODEC_ID:
                if flag:
                    c["configuration"][INCOMPLETE_KEY] = True
                else:
                    c["configuration"].pop(INCOMPLETE_KEY, None)
        path.write_text(json.dumps(doc, indent=2))


def check_complete(store: str | os.PathLike) -> None:
    """Raise :class:`~inrcodec.errors.IncompleteStoreError` (saying how to resume) if a compress
    run of ``store`` did not finish."""
    doc = ProgressFile.read(Path(store))
    if doc is None:
        return
    done, total = len(doc.get("done", [])), len(doc.get("regions", []))
    raise IncompleteStoreError(
        f"{store} is incomplete: {done} of {total} regions written, resume with: {resume_command(store, doc)}")
