"""Cached, resumable stages: a stage's directory counts as done once its ``done.json`` marker exists.

A stage writes into ``<dir>.partial`` and is renamed to ``<dir>`` with its marker only when it finished, so a
killed run restarts the unfinished stage from scratch and reuses every finished one.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Callable

logger = logging.getLogger("synthetic_world")
MARKER = "done.json"


def done(path: Path) -> dict | None:
    """The marker of a finished stage (what it recorded), or None."""
    marker = Path(path) / MARKER
    return json.loads(marker.read_text()) if marker.is_file() else None


def stage(path: Path, name: str, work: Callable[[Path], dict]) -> dict:
    """Run ``work(partial_dir)`` unless ``path`` is already done; return the stage's record (with its seconds)."""
    path = Path(path)
    record = done(path)
    if record is not None:
        logger.info("%s: cached (%s)", name, path)
        return record
    partial = path.with_name(path.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    logger.info("%s: running -> %s", name, path)
    started = time.time()
    record = dict(work(partial) or {})
    record["seconds"] = round(time.time() - started, 1)
    (partial / MARKER).write_text(json.dumps(record, indent=1, sort_keys=True))
    shutil.rmtree(path, ignore_errors=True)
    partial.rename(path)
    logger.info("%s: done in %.0f s", name, record["seconds"])
    return record
