"""Output safety: never destroy data that is not ours, replace a store only when the new one is
complete (a temporary sibling swapped into place), and mark an unfinished store so every reader
knows."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from inrcodec.archive.progress import ProgressFile, resume_command
from inrcodec.errors import IncompleteStoreError
from inrcodec.zarr3 import CODEC_ID, INCOMPLETE_KEY

__all__ = ["check_output", "temp_sibling", "remove_zarr_store", "swap_into_place", "mark_incomplete",
           "check_complete", "is_zarr_store"]


def is_zarr_store(path: Path) -> bool:
    return any((path / f).is_file() for f in ("zarr.json", ".zgroup", ".zarray"))


def check_output(input, output: Path) -> None:
    """Refuse outputs that would destroy data: the input itself, a path inside it or around it,
    an existing file, an existing directory that is not a Zarr store."""
    src, dst = Path(input).resolve(), output.resolve()
    if dst == src or src in dst.parents or dst in src.parents:
        rel = "is" if dst == src else ("lies inside" if src in dst.parents else "contains")
        raise ValueError(f"output {output} {rel} the input {input}; write the store somewhere else")
    if output.exists() and not output.is_dir():
        raise ValueError(f"output {output} is an existing file, not a Zarr store; choose another path")
    if output.is_dir() and any(output.iterdir()) and not is_zarr_store(output):
        raise ValueError(f"output {output} is a non-empty directory that is not a Zarr store; "
                         "refusing to write into it (nothing was deleted)")


def temp_sibling(path: Path) -> Path:
    """Where an ``overwrite`` run writes until it is complete."""
    return path.with_name(f".{path.name}.inrcodec-tmp")


def remove_zarr_store(path: Path) -> None:
    """Delete ``path`` if it is a Zarr store or an empty directory; refuse anything else."""
    if path.is_dir() and (is_zarr_store(path) or not any(path.iterdir())):
        shutil.rmtree(path)
    elif path.exists():
        raise ValueError(f"{path} exists and is not a Zarr store; refusing to delete it")


def swap_into_place(new: Path, final: Path) -> None:
    """Replace the store ``final`` by the complete store ``new`` (its temporary sibling)."""
    old = final.with_name(f".{final.name}.inrcodec-old")
    if old.exists():
        remove_zarr_store(old)
    os.replace(final, old)
    os.replace(new, final)
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
