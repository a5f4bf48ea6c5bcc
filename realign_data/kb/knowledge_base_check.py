"""Is a knowledge base whole? The manifest checked against the files it describes, before anything trusts them.

A truncated ``index.faiss``, a garbled ``metadata.parquet``, a manifest that is a list or counts other rows, a
deleted embedding shard: each is found here and reported in one sentence with the fix, instead of a traceback from
FAISS or Arrow (or, worse, a search that answers from the wrong rows). :func:`check_manifest` and
:func:`check_files` are cheap (sizes, Parquet footers, the index header) and run on every
:meth:`~realign_data.kb.knowledge_base.KnowledgeBase.load`; ``verify=True`` also compares sha256 checksums
(``realign-data index info`` does).

The fix is always the same: the index and metadata are made from the embedding shards, so removing the manifest
and running the same ``realign-data index build`` again rebuilds them, reusing every intact shard (a damaged or
missing shard is re-embedded, see :meth:`realign_data.runtime.jobs.Job.check`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Iterable, Optional

from realign_data.runtime.atomic import file_record, record_mismatch

CHECKED_FILES = ("index.faiss", "metadata.parquet")


class KnowledgeBaseDamaged(ValueError):
    """A knowledge base's files do not match its manifest (the message says what, and how to rebuild)."""


def file_records(root: Path, names: Iterable[str] = CHECKED_FILES) -> dict:
    """``{name: {"bytes", "sha256"}}`` of files in ``root``: what the manifest records for later checks."""
    return {n: file_record(root / n) for n in names}


def fix(path: Path) -> str:
    return (
        f"remove {path / 'manifest.json'} and run the same 'realign-data index build' again (it rebuilds the "
        "index from the intact embedding shards and re-embeds the rest), or delete the folder and build it anew"
    )


def damaged(path: Path, what: str) -> KnowledgeBaseDamaged:
    return KnowledgeBaseDamaged(f"the knowledge base {path} is damaged: {what}; {fix(path)}")


def check_manifest(path: Path) -> dict:
    """The manifest of ``path`` when it is a JSON object with the fields a knowledge base needs."""
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise damaged(path, f"manifest.json is not valid JSON ({e})") from None
    if not isinstance(manifest, dict):
        raise damaged(path, f"manifest.json holds a JSON {type(manifest).__name__}, not an object")
    for key, kind in (("dim", int), ("count", int), ("index", dict), ("encoder", dict), ("shards", list)):
        if not isinstance(manifest.get(key), kind) or isinstance(manifest.get(key), bool):
            raise damaged(path, f"manifest.json has no valid {key!r}")
    if manifest["dim"] < 1 or manifest["count"] < 0:
        raise damaged(path, f"manifest.json says dim {manifest['dim']} and count {manifest['count']}")
    return manifest


def check_files(path: Path, manifest: dict, *, verify: bool = False) -> list[str]:
    """Raise :class:`KnowledgeBaseDamaged` when the index or metadata cannot serve searches as the manifest says
    (missing, truncated, other sizes or, with ``verify``, other checksums than recorded; a row count or
    dimension that differs), or when an embedding shard is missing or of another size than its marker recorded
    (another sha256 too, with ``verify``): a build reads the stored embeddings, and so does a disk re-ranking
    index. Returns the remaining problems (none: kept for callers that list warnings)."""
    import pyarrow.parquet as pq

    recorded = manifest.get("files") if isinstance(manifest.get("files"), dict) else {}
    for name in CHECKED_FILES:
        f = path / name
        if not f.is_file():
            raise damaged(path, f"{name} is missing")
        want = recorded.get(name) or ({"bytes": manifest["index"].get("bytes")} if name == "index.faiss" else {})
        if problem := record_mismatch(f, want, "the manifest", checksum=verify):
            raise damaged(path, problem)
    try:
        rows = pq.read_metadata(path / "metadata.parquet").num_rows
    except Exception as e:  # noqa: BLE001 - Arrow raises several types for a garbled file
        raise damaged(path, f"metadata.parquet is not readable ({type(e).__name__})") from None
    if rows != manifest["count"]:
        raise damaged(path, f"metadata.parquet has {rows} rows, the manifest counts {manifest['count']}")
    problems = shard_problems(path, manifest, verify=verify)
    if problems:
        more = f" (and {len(problems) - 1} more shard{'s' if len(problems) > 2 else ''})" if len(problems) > 1 else ""
        raise damaged(path, problems[0] + more)
    return []


def check_index(path: Path, manifest: dict, index) -> None:
    """The loaded FAISS ``index`` holds ``count`` vectors of ``dim`` dimensions."""
    if index.ntotal != manifest["count"] or index.d != manifest["dim"]:
        raise damaged(
            path,
            f"index.faiss holds {index.ntotal} vectors of dim {index.d}, the manifest says "
            f"{manifest['count']} of dim {manifest['dim']}",
        )


def read_index(path: Path, flags: int = 0):
    """``faiss.read_index`` of ``path/index.faiss``, a damaged file reported as such."""
    import faiss

    try:
        return faiss.read_index(str(path / "index.faiss"), flags)
    except RuntimeError as e:
        raise damaged(path, f"index.faiss is not readable ({str(e).strip().splitlines()[0][:120]})") from None


def shard_problems(path: Path, manifest: dict, *, verify: bool = False) -> list[str]:
    """Embedding shards the manifest lists that are missing or differ from their markers (size; with ``verify``,
    sha256 too)."""
    problems = []
    for shard in manifest.get("shards", []):
        name = shard.get("file") if isinstance(shard, dict) else None
        if not name:
            continue
        f = path / "embeddings" / name
        if not f.is_file():
            problems.append(f"embedding shard {name} is missing")
        else:
            try:
                marker = json.loads(f.with_suffix(".json").read_text())
                want = marker.get("files", {}).get(name, {})
            except (OSError, ValueError, AttributeError):
                want = {}
            if problem := record_mismatch(f, want, "its marker", checksum=verify):
                problems.append(f"embedding shard {problem}")
    return problems


def remove_failed_stub(path: Path, existed: bool) -> Optional[Path]:
    """After a failed build: remove ``path`` when this build created it and left nothing worth keeping (no
    finished shard), so the retry the error advises starts clean. Returns the removed path, else None."""
    if existed or not path.is_dir():
        return None
    emb = path / "embeddings"
    if (path / "manifest.json").exists() or (emb.is_dir() and any(p.suffix == ".json" for p in emb.iterdir())):
        return None
    shutil.rmtree(path, ignore_errors=True)
    return path
