"""Export a realign build to the data layout of the trainer people already use (``realign-data export``).

    from realign_data import export
    result = export("out/realign", to="swift", out="out/swift")

Formats (:data:`FORMATS`; layouts and the source files they were read from in :mod:`realign_data.publish.exports.formats`
and docs/export.md):

- ``llamafactory``: sharegpt with ``ranking`` + a ready ``dataset_info.json`` entry. LLaMA-Factory gives chosen
  and rejected one image list, so it holds the text pair only; the export says so and counts the rows.
- ``swift``: ms-swift JSONL, two rows per pair, both with ``rejected_messages`` + ``rejected_images``: the text
  pair (rejected answer, same image) and the image pair (chosen answer, retrieved image), i.e. both of rDPO's terms.
- ``realign-json``: the JSON list the Re-Align authors' ``train_rdpo.py`` reads, with its image folder.
- ``rlaif-v``: RLAIF-V's parquet layout (images embedded; text pair only).

Images are written once each, named by the sha256 of their bytes; every path in the output is relative. The
export is staged in a hidden folder beside ``out`` and renamed into place when complete, so ``out`` holds either
the previous export or the whole new one; every file is written to a temporary name first.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from realign_data.publish.exports.formats import NEEDS, TRAINERS, WRITERS, image_folder, rows_of

FORMATS = tuple(WRITERS)
MANIFEST = ".realign-export.json"  # hidden: loaders that read every file of a folder (datasets) skip it
log = logging.getLogger("realign_data.publish.exports")


class ExportError(ValueError):
    """A user's mistake: unknown format, a dataset without the columns a format needs, an occupied ``out``."""


@dataclass
class ExportResult:
    format: str
    out: Path
    pairs: int  # rows of the source dataset
    rows: int  # rows written (swift: two per pair)
    images: int  # distinct images (files under images/, or embedded for rlaif-v)
    files: list[str] = field(default_factory=list)  # data files, relative to out
    notes: list[str] = field(default_factory=list)  # what the target cannot hold, said once per export

    def to_dict(self) -> dict:
        d = asdict(self)
        d["out"] = str(self.out)
        return d


def export(
    dataset,
    to: str,
    out: str | os.PathLike,
    *,
    split: str = "train",
    name: str = "realign",
    overwrite: bool = False,
    progress: bool = False,
) -> ExportResult:
    """Write ``dataset`` (a build directory, a ``save_to_disk`` folder, or a ``datasets.Dataset`` with the build's
    columns) in the layout of ``to`` (one of :data:`FORMATS`) into the folder ``out``.

    ``name`` names the data file and the ``dataset_info.json`` entry (LLaMA-Factory's ``dataset:``). ``out`` must be
    new or empty unless ``overwrite``. Raises :class:`ExportError` for a user's mistake.
    """
    if to not in WRITERS:
        raise ExportError(f"unknown export format {to!r}; valid formats: {', '.join(FORMATS)}")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name or ""):
        raise ExportError(
            f"--name {name!r} is not a plain file name: use letters, digits, '.', '-' and '_', "
            f"starting with a letter or digit"
        )
    ds, source = _open(dataset, split)
    missing = [c for c in NEEDS[to] if c not in ds.column_names]
    if missing:
        raise ExportError(
            f"{source} has no {', '.join(missing)} column{'s' if len(missing) > 1 else ''}; "
            f"--to {to} needs {', '.join(NEEDS[to])} (the columns of a realign build)"
        )
    out = Path(out).expanduser()
    _check_out(out, source, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = out.parent / f".{out.name}.export-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        result = _write(ds, to, stage, name, split, progress)
        _manifest(stage, result, source, split)
        _replace(out, stage)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    result.out = out
    for note in result.notes:
        log.warning(note)
    return result


def _open(dataset, split: str):
    """The dataset to export and how to name it in messages."""
    if not isinstance(dataset, (str, os.PathLike)):
        return dataset, "the dataset"
    from realign_data.building.config import BuildError
    from realign_data.building.output import dataset_dir, load_built

    path = Path(dataset).expanduser()
    folder = dataset_dir(path)
    if folder is None:
        raise ExportError(
            f"{path} holds no realign build (no save_to_disk dataset or data/*.parquet); give the "
            f"--out folder of `realign-data build` or `demo`"
        )
    try:
        return load_built(folder, split), str(folder)
    except BuildError as e:
        raise ExportError(str(e)) from None


def _check_out(out: Path, source: str, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} is a file; give a folder for the export")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ExportError(
            f"--out {out} exists and is not empty; pass --overwrite to replace it, or choose a new folder"
        )
    if source != "the dataset":
        src, dst = Path(source).resolve(), out.resolve()
        if dst == src or dst in src.parents or src in dst.parents:
            raise ExportError(f"--out {out} overlaps the dataset {source}; export into a folder outside it")


def _write(ds, to: str, stage: Path, name: str, split: str, progress: bool) -> ExportResult:
    from tqdm.auto import tqdm

    from realign_data.publish.exports.images import ImageStore

    store = ImageStore(stage, image_folder(to), write=to != "rlaif-v")
    writer = WRITERS[to](stage, store, name, split)
    pairs = 0
    try:
        batches = ds.with_format("arrow").iter(batch_size=256)  # raw rows: images stay encoded bytes
        for row in tqdm(rows_of(batches), total=len(ds), disable=not progress, desc=f"export {to}", unit="pair"):
            try:
                writer.add(row)
            except ValueError as e:
                raise ExportError(str(e)) from None
            pairs += 1
        files = writer.close()
    except BaseException:
        writer.abort()
        raise
    notes = []
    if to in ("llamafactory", "rlaif-v"):
        shared = "one image list" if to == "llamafactory" else "one image"
        notes.append(
            f"{TRAINERS[to]} gives chosen and rejected {shared}, so this export holds only the text "
            f"pair: {writer.rows} rows, one per pair; {writer.image_pairs_left_out} image-rejected pairs "
            f"(rejected_images) are left out (--to swift or --to realign-json keeps them)"
        )
    return ExportResult(to, stage, pairs, writer.rows, len(store), files, notes)


def _manifest(stage: Path, result: ExportResult, source: str, split: str) -> None:
    from realign_data import __version__
    from realign_data.runtime.atomic import atomic_write_json

    d = result.to_dict()
    d.pop("out")
    d.update(source=Path(source).name if source != "the dataset" else None, split=split, realign_version=__version__)
    atomic_write_json(stage / MANIFEST, d)


def _replace(out: Path, stage: Path) -> None:
    """Rename the complete ``stage`` onto ``out``; a previous export is moved aside first and removed after."""
    if not out.exists():
        os.replace(stage, out)
        return
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    shutil.rmtree(old, ignore_errors=True)
    os.replace(out, old)
    os.replace(stage, out)
    shutil.rmtree(old, ignore_errors=True)


def read_manifest(out: str | os.PathLike) -> Optional[dict]:
    """The manifest of an export folder (format, counts, files), or None."""
    p = Path(out) / MANIFEST
    return json.loads(p.read_text()) if p.is_file() else None
