"""Images an evaluation set shares with a training dataset (``--exclude-dataset DIR_OR_REPO``).

A preference dataset built from a corpus that includes evaluation images (see :mod:`realign_data.kb.splits`) trains
on the very images POPE and CHAIR ask about. :func:`training_images` reads a training dataset once — a
``realign-data build`` output, any ``save_to_disk`` directory, or a Hub dataset id — and keeps two keys per image,
so no image has to be decoded:

* the sha256 of the encoded bytes of every image column (``images``, ``rejected_images``, ``image``...): builds and
  POPE sets both store the corpus file bytes unchanged, so the same file gives the same digest;
* the COCO image id, where the dataset names one: ``COCO_<split>_<id>`` / ``<12 digits>`` file names (image paths,
  ``rejected_image_id``, ``fill_image_id``) and the ``image_id`` of COCO caption seeds (ids ``coco-<id>``).

What each command does with a match: ``realign-data pope`` skips those images (the next image of its order takes
their place) and says how many; ``realign-trl eval`` refuses to score a set that contains any, in one sentence.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

logger = logging.getLogger(__name__)
_COCO_NAME = re.compile(r"(?:^|/)(?:COCO_[A-Za-z-]+\d{4}_)?(\d{12})\.[A-Za-z]+$")
_ID_COLUMNS = ("rejected_image_id", "fill_image_id")


class OverlapError(ValueError):
    """The dataset to exclude cannot be read (a user mistake, reported as one sentence)."""


def coco_id_of_name(name: Optional[str]) -> Optional[int]:
    """The COCO image id a file name or corpus id carries (``.../COCO_val2014_000000000042.jpg`` -> 42), else None."""
    m = _COCO_NAME.search(str(name or ""))
    return int(m.group(1)) if m else None


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class TrainingImages:
    """The images of a training dataset, as byte digests and COCO ids."""

    source: str
    digests: set[str] = field(default_factory=set)
    coco_ids: set[int] = field(default_factory=set)
    rows: int = 0

    def contains(self, *, image_id: Any = None, file_name: Optional[str] = None, data: Optional[bytes] = None) -> bool:
        """Whether an evaluation image (its COCO ``image_id``, ``file_name`` and/or encoded bytes) is among them."""
        ids = {coco_id_of_name(file_name)}
        if isinstance(image_id, int) or (isinstance(image_id, str) and image_id.isdigit()):
            ids.add(int(image_id))
        if ids & self.coco_ids:
            return True
        return data is not None and digest(data) in self.digests


def _open(dir_or_repo: str):
    import datasets

    local = Path(dir_or_repo).expanduser()
    try:
        if local.is_dir():
            from realign_data.building.output import built_splits, open_built

            if built_splits(local):
                return open_built(local)
            return datasets.load_from_disk(str(local))
        return datasets.load_dataset(str(dir_or_repo))
    except Exception as e:  # noqa: BLE001 - whatever fails, the argument does not name a readable dataset
        raise OverlapError(
            f"--exclude-dataset {str(dir_or_repo)!r} is not a readable dataset (a build directory, "
            f"a save_to_disk directory or a Hub dataset id): {type(e).__name__}: {e}"
        ) from None


def _is_image(feature) -> bool:
    import datasets

    if isinstance(feature, datasets.Image):
        return True
    inner = (feature[0] if feature else None) if isinstance(feature, list) else getattr(feature, "feature", None)
    return inner is not None and _is_image(inner)


def _undecoded(feature):
    import datasets

    if isinstance(feature, datasets.Image):
        return datasets.Image(decode=False)
    return datasets.List(_undecoded(feature[0] if isinstance(feature, list) else feature.feature))


def _values(value) -> Iterable[dict]:
    if isinstance(value, dict):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _values(v)


def training_images(dir_or_repo: str | os.PathLike) -> TrainingImages:
    """Read every split of a training dataset and collect its images' digests and COCO ids."""
    import datasets

    opened = _open(str(dir_or_repo))
    parts = opened.values() if isinstance(opened, datasets.DatasetDict) else [opened]
    found = TrainingImages(str(dir_or_repo))
    for ds in parts:
        images = [c for c, f in ds.features.items() if _is_image(f)]
        if not images:
            raise OverlapError(
                f"--exclude-dataset {str(dir_or_repo)!r} has no image column (columns: {', '.join(ds.column_names)})"
            )
        for c in images:
            ds = ds.cast_column(c, _undecoded(ds.features[c]))
        ids = [c for c in _ID_COLUMNS if c in ds.column_names]
        seeds = "id" in ds.column_names and "image_id" in ds.column_names
        for batch in ds.select_columns(images + ids + (["id", "image_id"] if seeds else [])).iter(batch_size=256):
            found.rows += len(batch[images[0]])
            for c in images:
                for value in _values(batch[c]):
                    if value.get("bytes"):
                        found.digests.add(digest(value["bytes"]))
                    if (i := coco_id_of_name(value.get("path"))) is not None:
                        found.coco_ids.add(i)
            for c in ids:
                found.coco_ids.update(i for i in map(coco_id_of_name, batch[c]) if i is not None)
            if seeds:
                found.coco_ids.update(
                    int(i)
                    for s, i in zip(batch["id"], batch["image_id"])
                    if str(s).startswith("coco-") and str(i).isdigit()
                )
    logger.info(
        "--exclude-dataset %s: %d rows, %d distinct images, %d COCO ids",
        dir_or_repo,
        found.rows,
        len(found.digests),
        len(found.coco_ids),
    )
    return found
