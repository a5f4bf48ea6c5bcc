"""What every image corpus shares: :class:`CorpusItem` (an id, a lazy ``load`` and metadata), the
:class:`CorpusSource` interface, :class:`CorpusError`, and the image decoders the items' ``load`` callables wrap
(files, bytes, Hugging Face image values). The sources themselves are in :mod:`realign_data.kb.corpus`."""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator


class CorpusError(ValueError):
    """A corpus cannot be opened as asked (a user mistake, reported as one sentence)."""


@dataclass
class CorpusItem:
    """One image of a corpus: stable ``id``, lazy ``load()`` and known metadata."""

    id: str
    load: Callable[[], Any]
    meta: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------------- loaders
# Module-level functions wrapped in functools.partial: picklable, so DataLoader workers can run them.


def open_image_file(path: str):
    """Decode an image file fully (truncated files raise here, not later), upright (its EXIF orientation applied:
    a phone photo is not embedded sideways; a GIF gives its first frame) and in RGB."""
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im.load()
        return ImageOps.exif_transpose(im).convert("RGB")


def open_image_bytes(data: bytes):
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return ImageOps.exif_transpose(im).convert("RGB")


class Skipped(ValueError):
    """A folder entry that is not read (the message says why); the index build lists it with its reason."""


def skip_entry(reason: str):
    """The ``load`` of an entry that is not read: raises :class:`Skipped` with the reason."""
    raise Skipped(reason)


@functools.lru_cache(maxsize=1)
def image_extensions() -> frozenset:
    """Every file extension PIL can open (jpg, png, gif, tif/tiff, webp, bmp, ... and any plugin registered)."""
    from PIL import Image

    Image.init()
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


def open_hf_value(value):
    """Decode a ``datasets.Image(decode=False)`` value: ``{"bytes": ..., "path": ...}``."""
    if isinstance(value, dict):
        if value.get("bytes"):
            return open_image_bytes(value["bytes"])
        if value.get("path"):
            return open_image_file(value["path"])
        raise ValueError("empty image value")
    if hasattr(value, "convert"):  # already a PIL image
        return value.convert("RGB")
    raise ValueError(f"unsupported image value of type {type(value).__name__}")


def load_hf_row(dataset, row: int, column: str):
    return open_hf_value(dataset[row][column])


def load_hf_value(value):
    return open_hf_value(value)


class CorpusSource:
    """Base class: iterate :class:`CorpusItem` in a deterministic order."""

    source_type: str = ""

    def __iter__(self) -> Iterator[CorpusItem]:  # pragma: no cover - abstract
        raise NotImplementedError

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise TypeError(f"{type(self).__name__} has no known length")

    @property
    def streaming(self) -> bool:
        return False

    def describe(self) -> dict:
        """JSON-able description: recorded in the manifest and part of a build's fingerprint."""
        raise NotImplementedError  # pragma: no cover
