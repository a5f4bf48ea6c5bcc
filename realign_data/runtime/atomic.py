"""Crash-safe file writes: every file the project writes goes to a temporary name, then is renamed.

A reader (or a resumed run after ``kill -9``) therefore sees either the old file or the complete new
one, never a torn write. Use these instead of ``open(path, "w")`` for anything a run produces.
:func:`file_sha256` fingerprints what was written (checkpoints, manifests, unit files); :func:`is_saved_dataset`
tells a ``datasets`` ``save_to_disk`` folder from any other.
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed onto ``path``.

    For writers that want a file name (``faiss.write_index``, ``pq.write_table``, ``np.save``).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 2) -> None:
    """Write JSON deterministically (sorted keys are *not* forced: key order is the caller's)."""
    atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + ("\n" if indent else ""))


def file_record(path: str | os.PathLike) -> dict:
    """``{"bytes", "sha256"}`` of a written file: what a marker or a manifest keeps so that a later reader can tell
    the file is still the one written (see :func:`record_mismatch`)."""
    return {"bytes": os.path.getsize(path), "sha256": file_sha256(path)}


def record_mismatch(
    path: str | os.PathLike, want: dict, recorder: str, *, checksum: bool = True, complete: bool = False
) -> str | None:
    """Why the existing file ``path`` is not the one ``want`` (a :func:`file_record`) describes, or None; size
    first (cheap), then, with ``checksum``, the sha256. A key missing from ``want`` is not checked (older
    records), unless ``complete``: then the record is one this code wrote whole, and a missing key is a damaged
    record. ``recorder`` names the record in the message ("its marker", "the manifest")."""
    name, size = Path(path).name, os.path.getsize(path)
    if complete and (lost := [k for k in ("bytes", "sha256") if want.get(k) is None]):
        return f"{name} has no {' or '.join(lost)} in {recorder}"
    if want.get("bytes") is not None and size != want["bytes"]:
        return f"{name} has {size} bytes where {recorder} recorded {want['bytes']}"
    if checksum and want.get("sha256") and file_sha256(path) != want["sha256"]:
        return f"{name} is not the file {recorder} recorded (sha256 differs)"
    return None


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def is_saved_dataset(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a ``datasets`` ``save_to_disk`` folder (a ``Dataset`` or a ``DatasetDict``).

    The one place that decides it: seeds, corpora, the builder's outputs and the Hub push all ask here.
    """
    p = Path(path)
    return (p / "dataset_dict.json").is_file() or ((p / "state.json").is_file() and (p / "dataset_info.json").is_file())
