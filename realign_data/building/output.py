"""What a build writes and how it is read back: file names, drop reasons, chunk files, the final dataset.

A build directory (``--out``)::

    OUT/data-*.arrow, dataset_info.json, state.json   the dataset (``save_to_disk``), or
    OUT/{train,easy,medium,hard}/ + dataset_dict.json  a curriculum build's splits, or
    OUT/data/{split}-*.parquet                         ``--format parquet``
    OUT/realign_build.json                             the BuildConfig (``CONFIG_FILE``)
    OUT/build_report.json                              counts, drops, histograms, provenance (``REPORT_FILE``)
    OUT/.realign-build/                                work files: config check, chunk files and markers, the
                                                       chunk count and the stages' provenance (``WORK_DIR``)

The report, the merge, the inspect page and the Hub push read builds only through this module, so the names
live here once. The final dataset is written from the chunk tables in one pass: the rows go to one Arrow stream
(``datasets`` memory-maps it) while the statistics columns of the report are collected.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Iterable, Optional

from realign_data.building.config import BuildError
from realign_data.runtime.atomic import atomic_path, is_saved_dataset

WORK_DIR = ".realign-build"
PROVENANCE_FILE = "provenance.json"  # in WORK_DIR: what the stages were, for whoever writes the dataset
REPORT_FILE = "build_report.json"
CONFIG_FILE = "realign_build.json"
INSPECT_FILE = "inspect.html"
OUTPUT_SPLITS = ("train", "easy", "medium", "hard")  # a curriculum build: train = every row, easiest first
DROP_REASONS = (
    "missing_image",
    "corrupt_image",
    "empty_instruction",
    "empty_answer",
    "chosen_generation_failed",
    "nothing_to_mask",
    "no_retrieval",
    "fill_failed",
    "all_fills_too_similar",
    "fill_changed_unmasked",
    "fill_length",
    "fill_duplicate",
    "fill_below_min_similarity",
    # on-policy builds count answers (realign_data.building.onpolicy): why an answer of the policy made no row
    "answer_failed",
    "no_hallucination",
    "no_correction",
    "correction_failed",
    "correction_too_similar",
    "correction_hallucinated",
    "request_failed",
)
# drops a later run may undo: the filler's service failed (network, HTTP error, timeout); re-runs retry them
TRANSIENT_DROPS = ("request_failed",)


def reason_order(reason: str) -> tuple[int, str]:
    """Sort key of drop and rejection reasons: the order of :data:`DROP_REASONS`, any other reason last by name."""
    return (DROP_REASONS.index(reason) if reason in DROP_REASONS else len(DROP_REASONS), reason)


STATS_COLUMNS = (
    "retrieval_score",
    "text_similarity",
    "retrieval_rank",
    "difficulty",
    "image_negative",
    "negative_params",
)
PARQUET_ROWS_PER_SHARD = 1000


# ------------------------------------------------------------------------------------------------- chunks
def write_chunk(path: Path, rows: list[dict], onpolicy: bool = False) -> None:
    """One chunk's rows as a zstd Parquet file (temporary name, then renamed); ``onpolicy``: with the on-policy
    columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from realign_data.building.schema import arrow_schema

    table = pa.Table.from_pylist(rows, schema=arrow_schema(onpolicy))
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def read_chunks(paths: Iterable[Path]):
    import pyarrow.parquet as pq

    for p in paths:
        yield pq.read_table(p)


# ------------------------------------------------------------------------------------------- final dataset
def write_dataset(
    out: Path,
    work: Path,
    tables: Iterable,
    fmt: str,
    fingerprint_salt: str,
    curriculum: Optional[str] = None,
    onpolicy: bool = False,
) -> tuple[int, Optional[dict], dict]:
    """Write the final dataset into ``out`` (arrow ``save_to_disk`` or parquet shards), atomically per file.

    ``tables`` (Arrow tables in row order) are read once. With a curriculum the rows are reordered by difficulty
    and written as the splits of a ``DatasetDict`` (``train`` = every row, easiest first, and its ``easy`` /
    ``medium`` / ``hard`` terciles). Returns the row count, ``{split: {"rows", "difficulty_min",
    "difficulty_max"}}`` (curriculum only) and the :data:`STATS_COLUMNS` values of every row. ``onpolicy``: the
    rows have the on-policy columns (:data:`realign_data.building.schema.ONPOLICY_COLUMNS`).
    """
    import datasets

    tmp_arrow = work / "combined.arrow"
    n, stats = _combined_stream(tables, tmp_arrow, onpolicy)
    stage = work / "final"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    datasets.disable_progress_bars()
    ds = datasets.Dataset.from_file(str(tmp_arrow))
    split_info = None
    if curriculum:
        index = curriculum_row_indices(ds)
        diffs = stats["difficulty"]
        split_info = {
            k: {
                "rows": len(v),
                "difficulty_min": round(min((diffs[i] for i in v), default=0.0), 6),
                "difficulty_max": round(max((diffs[i] for i in v), default=0.0), 6),
            }
            for k, v in index.items()
        }
        parts = {
            k: datasets.Dataset.from_file(str(_take_stream(ds.data.table, v, work / f"split-{k}.arrow")))
            for k, v in index.items()
        }
    else:
        parts = {"train": ds}
    if fmt == "arrow":
        if curriculum:
            for k, part in parts.items():
                _save_arrow(part, stage / k, f"{fingerprint_salt}:{k}")
            (stage / "dataset_dict.json").write_text(json.dumps({"splits": list(parts)}))
        else:
            _save_arrow(ds, stage, fingerprint_salt)
    else:
        (stage / "data").mkdir()
        for k, part in parts.items():
            num = max(1, -(-len(part) // PARQUET_ROWS_PER_SHARD))
            for i in range(num):
                piece = part.select(range(i * PARQUET_ROWS_PER_SHARD, min(len(part), (i + 1) * PARQUET_ROWS_PER_SHARD)))
                piece.to_parquet(str(stage / "data" / f"{k}-{i:05d}-of-{num:05d}.parquet"))
    del ds, parts
    _replace_dataset_files(out, stage)
    tmp_arrow.unlink()
    for f in work.glob("split-*.arrow"):
        f.unlink()
    return n, split_info, stats


def _replace_dataset_files(out: Path, stage: Path) -> None:
    """Move the staged dataset into ``out``; old data files the new build does not have are removed."""
    old = list(out.glob("data-*.arrow")) + (list((out / "data").glob("*.parquet")) if (out / "data").is_dir() else [])
    for f in old:
        f.unlink()
    for split in OUTPUT_SPLITS:  # split directories of a curriculum build
        if (out / split / "state.json").is_file():
            shutil.rmtree(out / split)
    for meta in ("dataset_dict.json", "state.json", "dataset_info.json"):
        (out / meta).unlink(missing_ok=True)
    for p in sorted(stage.rglob("*")):
        if p.is_file():
            dest = out / p.relative_to(stage)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(p, dest)
    shutil.rmtree(stage, ignore_errors=True)


def _combined_stream(tables: Iterable, path: Path, onpolicy: bool = False) -> tuple[int, dict]:
    """Write tables to one Arrow stream file (the format ``datasets`` memory-maps); rows and report statistics."""
    import pyarrow as pa

    from realign_data.building.schema import arrow_schema

    schema = arrow_schema(onpolicy)
    n = 0
    stats: dict[str, list] = {k: [] for k in STATS_COLUMNS}
    with pa.OSFile(str(path), "wb") as f:
        writer = pa.ipc.new_stream(f, schema)
        for t in tables:
            if t.num_rows:
                t = t.cast(schema).combine_chunks()
                for b in t.to_batches():
                    writer.write_batch(b)
                for k in STATS_COLUMNS:
                    stats[k] += t.column(k).to_pylist()
                n += t.num_rows
        writer.close()
    return n, stats


def _take_stream(table, indices: list[int], path: Path, batch: int = 256) -> Path:
    """Write ``table``'s rows ``indices`` (in that order) to an Arrow stream file, a batch at a time.

    ``take`` copies into fresh buffers, so the bytes written depend only on the rows, not on how the source
    was laid out (a merged build and a single-process build give identical files)."""
    import pyarrow as pa

    with pa.OSFile(str(path), "wb") as f:
        writer = pa.ipc.new_stream(f, table.schema)
        for i in range(0, len(indices), batch):
            for b in table.take(pa.array(indices[i : i + batch], type=pa.int64())).to_batches():
                writer.write_batch(b)
        writer.close()
    return path


def _save_arrow(ds, stage: Path, fingerprint_salt: str) -> None:
    from realign_data.runtime.atomic import file_sha256

    ds.save_to_disk(str(stage))
    # the fingerprint is derived from the written content (not from temporary paths), so identical
    # inputs give an identical state.json
    h = hashlib.sha256(fingerprint_salt.encode())
    for f in sorted(stage.glob("data-*.arrow")):
        h.update(file_sha256(f).encode())
    state = json.loads((stage / "state.json").read_text())
    state["_fingerprint"] = h.hexdigest()[:16]
    (stage / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True))


def curriculum_row_indices(ds) -> dict[str, list[int]]:
    """Row indices of ``train`` (all rows, easiest first; ties by id, then by seed order) and of the
    ``easy`` / ``medium`` / ``hard`` terciles of that order."""
    from realign_data.building.difficulty import curriculum_order, tercile_splits

    diffs = ds.data.column("difficulty").to_pylist()
    ids = ds.data.column("id").to_pylist()
    return {"train": curriculum_order(diffs, ids), **tercile_splits(diffs, ids)}


# ---------------------------------------------------------------------------------------------- reading
def dataset_dir(path: str | os.PathLike) -> Optional[Path]:
    """The dataset folder of a build: ``path`` itself, or ``path/dataset`` (a ``realign-data demo`` folder)."""
    path = Path(path).expanduser()
    for candidate in (path, path / "dataset"):
        if candidate.is_dir() and built_splits(candidate):
            return candidate
    return None


def built_splits(path: str | os.PathLike) -> list[str]:
    """Splits of a built dataset directory: ``["train"]``, or ``train, easy, medium, hard`` (curriculum)."""
    p = Path(path)
    if (p / "dataset_dict.json").is_file():
        return list(json.loads((p / "dataset_dict.json").read_text())["splits"])
    if is_saved_dataset(p):
        return ["train"]
    names = {f.name.split("-", 1)[0] for f in (p / "data").glob("*.parquet")} if (p / "data").is_dir() else set()
    return sorted(names, key=lambda k: (OUTPUT_SPLITS.index(k) if k in OUTPUT_SPLITS else len(OUTPUT_SPLITS), k))


def load_built(path: str | os.PathLike, split: str = "train"):
    """Open one split of a built dataset directory (``save_to_disk`` or parquet shards) as a ``datasets.Dataset``.

    Every build has ``train`` (all rows); a ``--curriculum easy-to-hard`` build also has ``easy``, ``medium``
    and ``hard``. Nothing is written next to the files (parquet is read through the ``datasets`` cache).
    """
    import datasets

    p = Path(path)
    splits = built_splits(p)
    if not splits:
        raise BuildError(f"{p} holds no built dataset (no state.json, dataset_dict.json or data/*.parquet)")
    if split not in splits:
        raise BuildError(f"{p} has no split {split!r}; it has {', '.join(splits)}")
    if (p / "dataset_dict.json").is_file():
        return datasets.load_from_disk(str(p / split))
    if is_saved_dataset(p):
        return datasets.load_from_disk(str(p))
    files = sorted(str(f) for f in (p / "data").glob(f"{split}-*.parquet"))
    return datasets.load_dataset("parquet", data_files=files, split="train")


def open_built(path: str | os.PathLike):
    """Every split of a built dataset directory: a ``Dataset`` (one split) or a ``DatasetDict`` (curriculum)."""
    import datasets

    splits = built_splits(path)
    if len(splits) == 1:
        return load_built(path, splits[0])
    return datasets.DatasetDict({s: load_built(path, s) for s in splits})
