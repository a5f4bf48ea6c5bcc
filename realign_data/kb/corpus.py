"""Image corpora for the knowledge base: COCO layout, plain image folders and Hugging Face datasets.

Every source yields :class:`CorpusItem` objects in a deterministic order: a stable string ``id``, a
picklable zero-argument ``load`` callable returning a ``PIL.Image`` (decoding happens lazily, in
DataLoader workers), and a ``meta`` dict (source path or key, COCO ``image_id`` and category names when
known). Width and height are measured when the image is decoded.

=============  ====================================  ==========================================
source         id                                    ``meta``
=============  ====================================  ==========================================
``coco``       ``train2014/COCO_train2014_…jpg``     path, coco_image_id, categories, split
``folder``     path relative to the root             path
``hf``         ``<split>/<row index>``               path (= the id), row
=============  ====================================  ==========================================

:class:`CocoAnnotations` indexes ``annotations/instances_*.json`` and ``captions_*.json`` once and
answers per-``image_id`` questions (instances, captions, file names) in O(1); the dataset builder uses it.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Iterator, Optional, Sequence

from realign_data.kb.corpus_base import (  # noqa: F401 - Skipped, open_image_bytes: corpus API, imported from here
    CorpusError,
    CorpusItem,
    CorpusSource,
    Skipped,
    image_extensions,
    load_hf_row,
    load_hf_value,
    open_hf_value,
    open_image_bytes,
    open_image_file,
    skip_entry,
)
from realign_data.kb.splits import ALL_SPLITS, IMAGE_EXTENSIONS, SplitError, coco_split_folders

SOURCE_TYPES = ("coco", "folder", "hf")
_COCO_ID = re.compile(r"(\d{6,})\.[A-Za-z]+$")


# ---------------------------------------------------------------------------------------------- sources


class FolderSource(CorpusSource):
    """Every file under ``root`` (recursive), sorted by relative path: images in any format PIL opens (any case)
    are read; every other entry is an item whose ``load`` raises :class:`Skipped` with the reason (not an image,
    hidden, a link to a folder or a dangling or looping link, a name that is not UTF-8), so the index build lists
    it among its skipped images: nothing in the folder goes unaccounted. Links to files are followed; links to
    folders are not (no loops, no corpus outside the root)."""

    source_type = "folder"

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise CorpusError(f"image folder {str(root)!r} does not exist or is not a directory")
        entries = []  # (id, path or None, reason or None)
        for here, dirs, files in os.walk(
            self.root,
            onerror=lambda e: entries.append(
                (_text(Path(e.filename).relative_to(self.root).as_posix()), None, f"not readable ({e.strerror})")
            ),
        ):
            base = Path(here)
            for d in list(dirs):
                rel, why = (base / d).relative_to(self.root).as_posix(), None
                if (base / d).is_symlink():
                    why = "a link to a folder (not followed)"
                elif d.startswith("."):
                    why = "a hidden folder (not read)"
                if why:
                    dirs.remove(d)
                    entries.append((_text(rel) + "/", None, why))
            for f in files:
                entries.append(_entry(self.root, base / f))
        self._entries = sorted(entries, key=lambda e: e[0])

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[CorpusItem]:
        for rel, path, why in self._entries:
            load = functools.partial(open_image_file, str(path)) if why is None else functools.partial(skip_entry, why)
            yield CorpusItem(rel, load, {"path": rel})

    def describe(self) -> dict:
        return {"type": self.source_type, "root": str(self.root)}


def _text(name: str) -> str:
    """``name`` as valid UTF-8 text: undecodable bytes (kept by the OS as surrogate escapes) shown as ``\\xNN``."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _entry(root: Path, path: Path) -> tuple[str, Optional[Path], Optional[str]]:
    """``(id, path, None)`` for an image to read, else ``(id, None, why it is skipped)``."""
    rel = path.relative_to(root).as_posix()
    shown = _text(rel)
    if shown != rel:
        return shown, None, "the file name is not valid UTF-8 (rename it to read it)"
    if any(part.startswith(".") for part in path.relative_to(root).parts):
        return rel, None, "a hidden file (not read)"
    if path.is_symlink():
        try:
            path.stat()
        except OSError as e:
            return (
                rel,
                None,
                (
                    "a symbolic link loop"
                    if e.errno == errno.ELOOP
                    else f"a dangling link (to {_text(os.readlink(path))})"
                ),
            )
    if path.suffix.lower() not in image_extensions():
        return rel, None, f"not an image format PIL opens ({path.suffix or 'no extension'})"
    if not path.is_file():
        return rel, None, "not a regular file"
    return rel, path, None


class CocoSource(CorpusSource):
    """A COCO-layout root: image split folders (``train2014/`` ...) and optional ``annotations/``.

    ``split=None`` takes ``train2014`` when the root has it, else every sub-folder holding images (except
    ``annotations``); ``split="all"`` takes every one (see :mod:`realign_data.kb.splits`). Metadata keeps the COCO
    ``image_id`` (from the annotations, else parsed from the file name), the split and the sorted names of
    the categories present in the image (empty when there are no instance annotations).
    """

    source_type = "coco"

    def __init__(self, root: str | Path, split: Optional[str] = None):
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise CorpusError(f"COCO root {str(root)!r} does not exist or is not a directory")
        try:
            self.splits = coco_split_folders(self.root, split)
        except SplitError as e:
            raise CorpusError(str(e)) from None
        self.split = self.splits[0] if len(self.splits) == 1 else ALL_SPLITS
        self.annotations = CocoAnnotations(self.root, splits=self.splits)
        self._paths = []
        for s in self.splits:
            self._paths += sorted(
                p for p in (self.root / s).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
            )

    def __len__(self) -> int:
        return len(self._paths)

    def __iter__(self) -> Iterator[CorpusItem]:
        ann = self.annotations
        for p in self._paths:
            rel = p.relative_to(self.root).as_posix()
            split = p.parent.name
            image_id = ann.image_id_for_file(split, p.name)
            if image_id is None:
                m = _COCO_ID.search(p.name)
                image_id = int(m.group(1)) if m else None
            cats = ann.categories(image_id) if image_id is not None else []
            meta = {"path": rel, "split": split, "coco_image_id": image_id, "categories": cats}
            yield CorpusItem(rel, functools.partial(open_image_file, str(p)), meta)

    def describe(self) -> dict:
        return {"type": self.source_type, "root": str(self.root), "split": self.split}


class HFSource(CorpusSource):
    """A Hugging Face dataset with an image column: a ``save_to_disk`` directory or a Hub id (online).

    ``streaming=True`` never materialises the dataset: rows are read one by one (a local directory is
    streamed through ``Dataset.to_iterable_dataset``). Images are decoded lazily from their bytes. The id of
    a row is ``"<split>/<row index>"``; the order is the dataset's row order.
    """

    source_type = "hf"

    def __init__(
        self, path_or_id: str, split: Optional[str] = None, image_column: Optional[str] = None, streaming: bool = False
    ):
        self.path_or_id = str(path_or_id)
        self.local = Path(path_or_id).expanduser().is_dir()
        if self.local:
            self.path_or_id = str(Path(path_or_id).expanduser().resolve())
        self._streaming = streaming
        self.split = split
        self.image_column = image_column
        self._ds = None
        self._open()

    def _open(self) -> None:
        import datasets

        if self.local:
            from realign_data.runtime.atomic import is_saved_dataset

            if not is_saved_dataset(self.path_or_id):
                raise CorpusError(
                    f"{self.path_or_id!r} is not a dataset saved with save_to_disk (no state.json + "
                    "dataset_info.json or dataset_dict.json)"
                )
            try:
                ds = datasets.load_from_disk(self.path_or_id)
            except Exception as e:
                raise CorpusError(f"{self.path_or_id!r} is not a dataset saved with save_to_disk ({e})") from e
            if isinstance(ds, datasets.DatasetDict):
                if self.split is None:
                    self.split = "train" if "train" in ds else sorted(ds)[0]
                if self.split not in ds:
                    raise CorpusError(
                        f"dataset {self.path_or_id!r} has no split {self.split!r} (available: {', '.join(sorted(ds))})"
                    )
                ds = ds[self.split]
            elif self.split is None:
                self.split = "train"
            if self._streaming:
                ds = ds.to_iterable_dataset()
        else:
            self.split = self.split or "train"
            try:
                ds = datasets.load_dataset(self.path_or_id, split=self.split, streaming=self._streaming)
            except Exception as e:
                raise CorpusError(
                    f"could not open Hugging Face dataset {self.path_or_id!r} split {self.split!r} "
                    f"(not a local directory, and the Hub could not serve it: {e})"
                ) from e
        features = ds.features or {}
        image_cols = [c for c, f in features.items() if isinstance(f, datasets.Image)]
        if self.image_column is None:
            if not image_cols:
                raise CorpusError(
                    f"dataset {self.path_or_id!r} has no Image column; pass --image-column "
                    f"(columns: {', '.join(features)})"
                )
            self.image_column = image_cols[0]
        elif self.image_column not in features:
            raise CorpusError(
                f"dataset {self.path_or_id!r} has no column {self.image_column!r} (columns: {', '.join(features)})"
            )
        self._ds = self._cast(ds)

    def _cast(self, ds):
        import datasets

        col = self.image_column
        if col is None:
            return ds
        feat = (ds.features or {}).get(col)
        if isinstance(feat, datasets.Image) and feat.decode:
            ds = ds.cast_column(col, datasets.Image(decode=False))
        return ds

    @property
    def streaming(self) -> bool:
        return self._streaming

    def __len__(self) -> int:
        if self._streaming:
            raise TypeError("a streaming dataset has no known length")
        return len(self._ds)

    def __iter__(self) -> Iterator[CorpusItem]:
        if self._streaming:
            for i, row in enumerate(self._ds):
                key = f"{self.split}/{i}"
                yield CorpusItem(key, functools.partial(load_hf_value, row[self.image_column]), {"path": key, "row": i})
        else:
            col = self.image_column
            for i in range(len(self._ds)):
                key = f"{self.split}/{i}"
                yield CorpusItem(key, functools.partial(load_hf_row, self._ds, i, col), {"path": key, "row": i})

    def load_row(self, row: int):
        """Decode the image of one row (random access; streaming Hub datasets are read up to the row)."""
        if not self._streaming:
            return load_hf_row(self._ds, row, self.image_column)
        for i, r in enumerate(self._ds):
            if i == row:
                return open_hf_value(r[self.image_column])
        raise KeyError(row)

    def describe(self) -> dict:
        return {
            "type": self.source_type,
            "root": self.path_or_id,
            "split": self.split,
            "image_column": self.image_column,
            "streaming": self._streaming,
            "local": self.local,
        }


def open_source(
    source: str,
    root: str | Path,
    *,
    split: Optional[str] = None,
    image_column: Optional[str] = None,
    streaming: bool = False,
) -> CorpusSource:
    """Open a corpus by type name: ``coco`` (also the synthetic sample corpus), ``folder`` or ``hf``."""
    if source == "coco":
        return CocoSource(root, split=split)
    if source == "folder":
        return FolderSource(root)
    if source == "hf":
        return HFSource(str(root), split=split, image_column=image_column, streaming=streaming)
    raise CorpusError(f"unknown corpus source {source!r} (valid: {', '.join(SOURCE_TYPES)})")


# ------------------------------------------------------------------------------------ COCO annotations


def _shape_problem(e: Exception) -> str:
    return f"missing key {e}" if isinstance(e, KeyError) else f"{type(e).__name__}: {str(e)[:120]}"


class CocoAnnotations:
    """COCO ``instances_*.json`` and ``captions_*.json`` of a corpus root, indexed once by ``image_id``.

    >>> ann = CocoAnnotations("data/coco")            # every split found under annotations/
    >>> ann.instances(9)[0]["category"], ann.captions(9)[:1]

    Missing annotation files are fine: the corresponding lookups return empty lists. Instances are dicts
    with ``id, category, category_id, supercategory, bbox [x, y, w, h], segmentation, area, iscrowd``.
    """

    def __init__(self, root: str | Path, splits: Optional[Sequence[str]] = None):
        self.root = Path(root).expanduser().resolve()
        ann_dir = self.root / "annotations"
        self._images: dict[int, dict] = {}
        self._by_file: dict[tuple[str, str], int] = {}
        self._instances: dict[int, list[dict]] = defaultdict(list)
        self._captions: dict[int, list[str]] = defaultdict(list)
        self._categories: dict[int, dict] = {}
        if splits is None:
            found = set()
            if ann_dir.is_dir():
                for p in ann_dir.glob("*.json"):
                    m = re.match(r"(?:instances|captions)_(.+)\.json$", p.name)
                    if m:
                        found.add(m.group(1))
            splits = sorted(found)
        self.splits = list(splits)
        for split in self.splits:
            for kind in ("instances", "captions"):
                path = ann_dir / f"{kind}_{split}.json"
                if path.is_file():
                    self._ingest(split, kind, path)

    def _ingest(self, split: str, kind: str, path: Path) -> None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise CorpusError(f"COCO annotation file {str(path)!r} is not valid JSON ({e})") from e
        try:
            self._add(split, kind, data)
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            raise CorpusError(
                f"COCO annotation file {str(path)!r} is not shaped like COCO's ({_shape_problem(e)}); "
                "it needs 'images' (objects with id and file_name) and 'annotations' (objects with "
                "image_id and caption, or category_id for instances)"
            ) from None

    def _add(self, split: str, kind: str, data: dict) -> None:
        if not isinstance(data, dict) or not all(isinstance(data.get(k, []), list) for k in ("images", "annotations")):
            raise TypeError("the file must be an object whose 'images' and 'annotations' are lists")
        for img in data.get("images", []):
            info = dict(img)
            info["split"] = split
            self._images.setdefault(img["id"], info)
            self._by_file[(split, img["file_name"])] = img["id"]
        for cat in data.get("categories", []):
            self._categories[cat["id"]] = cat
        if kind == "captions":
            for a in data.get("annotations", []):
                self._captions[a["image_id"]].append(a["caption"])
        else:
            for a in data.get("annotations", []):
                cat = self._categories.get(a["category_id"], {})
                self._instances[a["image_id"]].append(
                    {
                        "id": a.get("id"),
                        "category": cat.get("name", str(a["category_id"])),
                        "category_id": a["category_id"],
                        "supercategory": cat.get("supercategory"),
                        "bbox": a.get("bbox"),
                        "segmentation": a.get("segmentation"),
                        "area": a.get("area"),
                        "iscrowd": a.get("iscrowd", 0),
                    }
                )

    def __len__(self) -> int:
        return len(self._images)

    def image_ids(self) -> list[int]:
        """All annotated image ids, sorted."""
        return sorted(self._images)

    def image_info(self, image_id: int) -> dict:
        """The COCO ``images`` entry (``id, file_name, width, height, ...``) plus its ``split``."""
        try:
            return self._images[image_id]
        except KeyError:
            raise KeyError(f"COCO image_id {image_id} is not in the annotations of {self.root}") from None

    def file_name(self, image_id: int) -> str:
        return self.image_info(image_id)["file_name"]

    def image_path(self, image_id: int) -> Path:
        """Absolute path of the image file: ``root/<split>/<file_name>``."""
        info = self.image_info(image_id)
        return self.root / info["split"] / info["file_name"]

    def image_id_for_file(self, split: str, file_name: str) -> Optional[int]:
        return self._by_file.get((split, file_name))

    def instances(self, image_id: int) -> list[dict]:
        """Instance annotations of an image (empty list when none)."""
        return list(self._instances.get(image_id, ()))

    def captions(self, image_id: int) -> list[str]:
        """Human captions of an image (empty list when none)."""
        return list(self._captions.get(image_id, ()))

    def categories(self, image_id: int) -> list[str]:
        """Sorted unique category names present in an image."""
        return sorted({a["category"] for a in self._instances.get(image_id, ())})

    def category_names(self) -> list[str]:
        """Names of all categories declared in the annotation files, in category-id order."""
        return [self._categories[c]["name"] for c in sorted(self._categories)]

    def category_table(self) -> list[dict]:
        """The COCO ``categories`` entries (``id, name, supercategory``), in id order."""
        return [dict(self._categories[c]) for c in sorted(self._categories)]
