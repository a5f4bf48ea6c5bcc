"""Split hygiene: which COCO split a build reads, and warnings when training images come from evaluation splits.

POPE and CHAIR draw their images from COCO val2014 (and later benchmarks from val2017 or test splits). A knowledge
base or seed set that includes those images lets a model see the evaluation images during preference training,
so Re-Align builds from train2014 only. Here:

* :func:`coco_split_folders` resolves ``--coco-split``: ``None`` means ``train2014`` when the root has it, else
  every image folder; ``"all"`` means every image folder; any other value names one folder.
* :func:`is_evaluation_split` tells which split names are commonly used for evaluation
  (``val*``, ``validation``, ``test*``, ``dev*`` and COCO's ``test-dev``).
* :func:`split_of_path` finds the split of an image path (its folder, or the ``COCO_<split>_`` file name prefix),
  :func:`evaluation_counts` counts evaluation-split images, :func:`split_warning` words the warning recorded in
  the build report (``provenance.warnings``) and the dataset card.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Optional

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
DEFAULT_COCO_SPLIT = "train2014"
ALL_SPLITS = "all"
_EVAL = re.compile(r"^(val|valid|validation|test|dev|minival|testdev|test-dev)[-_]?(\d{4})?([-_].*)?$", re.IGNORECASE)
_COCO_FILE = re.compile(r"^COCO_([A-Za-z-]+\d{4})_\d+\.[A-Za-z]+$")


class SplitError(ValueError):
    """A split cannot be used as asked (a user mistake, reported as one sentence)."""


def is_evaluation_split(name: Optional[str]) -> bool:
    """Whether ``name`` is a split commonly used for evaluation (val2014, val2017, test2015, validation, ...)."""
    return bool(name) and bool(_EVAL.match(str(name)))


def image_folders(root: Path) -> list[str]:
    """The sub-folders of a COCO root that hold images (``annotations`` and hidden folders excluded), sorted."""
    return sorted(
        d.name
        for d in root.iterdir()
        if d.is_dir()
        and d.name != "annotations"
        and not d.name.startswith(".")
        and any(p.suffix.lower() in IMAGE_EXTENSIONS for p in d.iterdir())
    )


def coco_split_folders(root: Path, split: Optional[str] = None) -> list[str]:
    """The image folders ``--coco-split`` selects (see the module docstring); one-sentence errors."""
    if split and split != ALL_SPLITS:
        if not (root / split).is_dir():
            raise SplitError(f"COCO root {str(root)!r} has no split folder {split!r}")
        return [split]
    folders = image_folders(root)
    if not folders:
        raise SplitError(f"COCO root {str(root)!r} has no image folder such as {DEFAULT_COCO_SPLIT}/")
    if split is None and DEFAULT_COCO_SPLIT in folders:
        return [DEFAULT_COCO_SPLIT]
    return folders


def seed_splits(available: Iterable[str], split: Optional[str] = None) -> list[str]:
    """The annotated splits COCO caption seeds come from: same rule as :func:`coco_split_folders`."""
    available = sorted(available)
    if split and split != ALL_SPLITS:
        if split not in available:
            raise SplitError(
                f"the COCO annotations have no split {split!r} (annotated splits: "
                f"{', '.join(available) or 'none'}); choose one with --coco-split"
            )
        return [split]
    return [DEFAULT_COCO_SPLIT] if split is None and DEFAULT_COCO_SPLIT in available else available


def split_of_path(path: Optional[str]) -> Optional[str]:
    """The split an image path names: ``COCO_val2014_...`` file names, else an evaluation-like parent folder."""
    if not path:
        return None
    p = Path(str(path))
    m = _COCO_FILE.match(p.name)
    if m:
        return m.group(1)
    return next((part for part in reversed(p.parts[:-1]) if is_evaluation_split(part)), None)


def evaluation_counts(splits: Iterable[Optional[str]]) -> dict[str, int]:
    """``{split: number of images}`` for the evaluation splits among ``splits`` (one entry per image)."""
    counts: dict[str, int] = {}
    for s in splits:
        if is_evaluation_split(s):
            counts[s] = counts.get(s, 0) + 1
    return dict(sorted(counts.items()))


def split_warning(what: str, counts: dict[str, int], fix: str) -> Optional[str]:
    """One sentence naming how many images of ``what`` come from evaluation splits, or None when none do."""
    if not counts:
        return None
    listed = ", ".join(f"{n} of {s}" for s, n in counts.items())
    return (
        f"{what} include images of splits commonly used for evaluation ({listed}): POPE and CHAIR images may "
        f"be among them; {fix}"
    )


class SplitView:
    """COCO annotations seen through a split filter: :meth:`image_ids` lists only images of ``splits``; every
    other lookup (instances, captions, paths) is the wrapped :class:`~realign_data.kb.corpus.CocoAnnotations`'."""

    def __init__(self, annotations, splits: Iterable[str]):
        self._annotations = annotations
        self.splits = list(splits)

    def __getattr__(self, name: str):
        return getattr(self._annotations, name)

    def image_ids(self) -> list[int]:
        wanted = set(self.splits)
        return [i for i in self._annotations.image_ids() if self._annotations.image_info(i)["split"] in wanted]


def knowledge_base_evaluation_counts(kb_path: Path) -> dict[str, int]:
    """Images per evaluation split in a knowledge base (its ``metadata.parquet``: ``split``, else the path)."""
    import pyarrow.parquet as pq

    table = pq.read_table(Path(kb_path) / "metadata.parquet", columns=["split", "path"])
    return evaluation_counts(
        s or split_of_path(p) for s, p in zip(table.column("split").to_pylist(), table.column("path").to_pylist())
    )


def seed_evaluation_counts(seeds: Iterable, seed_split: Optional[str] = None) -> dict[str, int]:
    """Seeds per evaluation split: from each seed's image path, else the seed dataset's split name."""
    fallback = seed_split if is_evaluation_split(seed_split) else None
    return evaluation_counts(split_of_path(s.image_path) or fallback for s in seeds)
