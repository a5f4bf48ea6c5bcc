"""Seed records: (image, instruction, chosen answer) triples the builder turns into preference pairs.

Three ways in:

* **COCO captions** (:func:`coco_caption_seeds`): one seed per annotated image of a COCO root with
  ``annotations/captions_*.json``. The instruction is one of :data:`DESCRIPTION_PROMPTS` (or your own
  list), chosen deterministically per image; the chosen answer is a human caption: the ``longest``
  (default), a ``random`` one (seeded per image) or ``all`` of them joined.
* **Any dataset** (:func:`dataset_seeds`): a local ``.jsonl``/``.json``/``.parquet``/``.csv`` file, a
  ``save_to_disk`` directory, or a Hub id (when online), with column mapping for the image (a path
  relative to ``image_root``, a ``datasets.Image`` feature, bytes, or a list of those), the instruction
  and the chosen answer. Conversational values (TRL's list of messages) are reduced to their text.
* **No answers**: leave ``chosen_column`` unset (or the column empty) and let the builder generate the
  chosen answer with a VLM backend (``--chosen-from``).

Seeds are yielded lazily, in a deterministic order, and never read or decode images: the builder does that
once per image (:mod:`realign_data.building.pipeline`), so that a bad image becomes a counted drop, not a crash.

Seed image paths are confined: with an ``image_root``, a path that leaves it once resolved (``..``, an absolute
path, a symbolic link pointing out) is not read unless ``allow_outside_root`` (drop ``outside_image_root``), and
every image is read only from a regular file (a FIFO or a device is ``not_a_file``) of at most
``max_image_bytes`` (``image_too_large``): :meth:`Seed.read_image_bytes`.
"""

from __future__ import annotations

import io
import os
import stat
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

DESCRIPTION_PROMPTS: tuple[str, ...] = (
    "Describe this image.",
    "What do you see in this picture?",
    "Write a short description of the image.",
    "Describe the objects in this image and where they are.",
    "What does this photo show?",
)
CAPTION_CHOICES = ("longest", "random", "all")
IMAGE_COLUMNS = ("images", "image", "image_path", "file_name", "path", "img")
INSTRUCTION_COLUMNS = ("instruction", "question", "prompt", "query", "text")
CHOSEN_COLUMNS = ("chosen", "answer", "response", "output", "caption")
DEFAULT_MAX_IMAGE_BYTES = 64 * 1024 * 1024


class SeedError(ValueError):
    """Seeds cannot be read as asked (a user mistake, reported as one sentence)."""


class SeedImageError(OSError):
    """A seed image that is not read: ``reason`` is the drop reason (``outside_image_root``, ``not_a_file``,
    ``image_too_large``), the message says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def read_image_file(path: str | os.PathLike, max_bytes: Optional[int] = DEFAULT_MAX_IMAGE_BYTES) -> bytes:
    """The bytes of ``path`` when it is a regular file of at most ``max_bytes`` (None: no cap), else
    :class:`SeedImageError`. Opened without blocking, so a FIFO never hangs, and read up to the cap, so a device
    such as ``/dev/zero`` or a huge file never fills the memory."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))  # FileNotFoundError passes
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = (
                "a folder"
                if stat.S_ISDIR(st.st_mode)
                else "a FIFO"
                if stat.S_ISFIFO(st.st_mode)
                else "a device"
                if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
                else "not a regular file"
            )
            raise SeedImageError("not_a_file", f"{os.fspath(path)} is {kind}, not an image file")
        data = f.read(-1 if max_bytes is None else max_bytes + 1)
    if max_bytes is not None and len(data) > max_bytes:
        raise SeedImageError(
            "image_too_large", f"{os.fspath(path)} has more than {max_bytes} bytes (--max-image-bytes)"
        )
    return data


@dataclass
class Seed:
    """One seed. ``image_path`` or ``image_data`` locates the image; ``kb_id`` is its knowledge-base id
    when the image is part of the indexed corpus (then its stored embedding serves as the query)."""

    index: int
    id: str
    instruction: str
    chosen: Optional[str]
    image_id: str
    image_path: Optional[str] = None
    image_data: Optional[bytes] = None
    kb_id: Optional[str] = None
    categories: tuple[str, ...] = ()
    meta: dict = field(default_factory=dict)
    image_error: Optional[tuple[str, str]] = None  # (drop reason, message): a path that must not be read

    def read_image_bytes(self, max_bytes: Optional[int] = DEFAULT_MAX_IMAGE_BYTES) -> bytes:
        """The encoded image, as stored (not decoded); raises ``FileNotFoundError`` when it is missing and
        :class:`SeedImageError` when it must not be read (outside the image root, not a regular file, larger than
        ``max_bytes``)."""
        if self.image_error:
            raise SeedImageError(*self.image_error)
        if self.image_data is not None:
            if max_bytes is not None and len(self.image_data) > max_bytes:
                raise SeedImageError(
                    "image_too_large",
                    f"the image of {self.id} has {len(self.image_data)} bytes, "
                    f"more than {max_bytes} (--max-image-bytes)",
                )
            return self.image_data
        if self.image_path:
            return read_image_file(self.image_path, max_bytes)
        raise FileNotFoundError("seed has no image")


def _pick(seed: int, key: str, n: int) -> int:
    return zlib.crc32(f"{seed}:{key}".encode()) % n


def choose_caption(captions: Sequence[str], how: str, *, seed: int, key: str) -> str:
    caps = [c.strip() for c in captions if c and c.strip()]
    if not caps:
        return ""
    if how == "longest":
        return max(caps, key=lambda c: (len(c), c))
    if how == "random":
        return sorted(caps)[_pick(seed, key, len(caps))]
    if how == "all":
        return " ".join(c if c.endswith((".", "!", "?")) else c + "." for c in caps)
    raise SeedError(f"unknown caption choice {how!r}; valid: {', '.join(CAPTION_CHOICES)}")


def coco_caption_seeds(
    root: str | Path,
    *,
    prompts: Sequence[str] = DESCRIPTION_PROMPTS,
    caption: str = "longest",
    seed: int = 0,
    annotations=None,
    kb_id_for=None,
) -> Iterator[Seed]:
    """Seeds from a COCO root's captions, in ascending ``image_id`` order.

    ``kb_id_for(image_id) -> id | None`` maps COCO image ids to knowledge-base ids (so the seed can query
    by its stored embedding instead of re-embedding the image).
    """
    from realign_data.kb.corpus import CocoAnnotations

    if caption not in CAPTION_CHOICES:
        raise SeedError(f"unknown caption choice {caption!r}; valid: {', '.join(CAPTION_CHOICES)}")
    if not prompts:
        raise SeedError("the list of description prompts is empty")
    ann = annotations or CocoAnnotations(root)
    ids = [i for i in ann.image_ids() if ann.captions(i)]
    if not ids:
        raise SeedError(
            f"COCO root {str(root)!r} has no captions (annotations/captions_*.json); give --seeds PATH instead"
        )
    for n, image_id in enumerate(ids):
        key = str(image_id)
        yield Seed(
            index=n,
            id=f"coco-{image_id}",
            instruction=prompts[_pick(seed, key, len(prompts))],
            chosen=choose_caption(ann.captions(image_id), caption, seed=seed, key=key),
            image_id=key,
            image_path=str(ann.image_path(image_id)),
            kb_id=kb_id_for(image_id) if kb_id_for else None,
            categories=tuple(ann.categories(image_id)),
        )


# ----------------------------------------------------------------------------------------- datasets
def check_text_file(path: Path, encoding: str = "utf-8") -> None:
    """Read a ``.jsonl``/``.json``/``.csv`` seeds file once and raise :class:`SeedError` naming the file, the line
    and what is wrong at the first text that is not ``encoding`` or (``.jsonl``) a line that is not one JSON object
    (``datasets`` would only fail later, mid-build, without a line number)."""
    import codecs
    import json

    try:
        codecs.lookup(encoding)
    except LookupError:
        raise SeedError(
            f"unknown --seeds-encoding {encoding!r}; use a Python codec name such as utf-8, latin-1 or cp1252"
        ) from None
    jsonl = path.suffix.lower() == ".jsonl"
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode(encoding)
            except UnicodeDecodeError as e:
                raise SeedError(
                    f"seeds file {str(path)!r}, line {n}: not valid {encoding} text (byte "
                    f"0x{raw[e.start]:02x} at column {e.start + 1}); save it as UTF-8, or pass "
                    "--seeds-encoding with its encoding (e.g. latin-1)"
                ) from None
            if jsonl and line.strip():
                try:
                    ok = isinstance(json.loads(line), dict)
                    why = "" if ok else "not a JSON object"
                except ValueError as e:
                    ok, why = False, f"{getattr(e, 'msg', e)} at column {getattr(e, 'colno', '?')}"
                if not ok:
                    raise SeedError(
                        f"seeds file {str(path)!r}, line {n}: {why}; each line must be one JSON object "
                        'such as {"image": "a.jpg", "instruction": "...", "chosen": "..."}'
                    )


def load_seed_table(path_or_id: str, *, split: Optional[str] = None, encoding: str = "utf-8"):
    """Open a seed source as a ``datasets.Dataset`` (images not decoded); text files are read as ``encoding``."""
    import datasets

    from realign_data.runtime.atomic import is_saved_dataset

    p = Path(path_or_id).expanduser()
    try:
        if p.is_dir() and is_saved_dataset(p):
            ds = datasets.load_from_disk(str(p))
        elif p.is_file():
            kind = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}.get(p.suffix.lower())
            if kind is None:
                raise SeedError(f"seed file {str(p)!r} has an unknown type; use .jsonl, .json, .parquet or .csv")
            if p.stat().st_size == 0:
                raise SeedError(
                    f"seeds file {str(p)!r} is empty; it needs one row per seed (image, instruction, chosen answer)"
                )
            if kind != "parquet":
                check_text_file(p, encoding)
            ds = datasets.load_dataset(
                kind, data_files=str(p), split="train", **({"encoding": encoding} if kind != "parquet" else {})
            )
        elif p.exists() or str(path_or_id).startswith((".", "/", "~")):
            raise SeedError(f"seed path {str(path_or_id)!r} is neither a data file nor a save_to_disk directory")
        else:
            ds = datasets.load_dataset(str(path_or_id), split=split or "train")
    except SeedError:
        raise
    except Exception as e:
        raise SeedError(
            f"cannot open seeds {str(path_or_id)!r} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        ) from e
    if isinstance(ds, datasets.DatasetDict):
        name = split or ("train" if "train" in ds else sorted(ds)[0])
        if name not in ds:
            raise SeedError(f"split {name!r} not in {str(path_or_id)!r}; splits: {', '.join(sorted(ds))}")
        ds = ds[name]
    # never decode images up front
    for col, feat in ds.features.items():
        if isinstance(feat, datasets.Image):
            ds = ds.cast_column(col, datasets.Image(decode=False))
        elif isinstance(feat, (datasets.List, datasets.Sequence)) and isinstance(feat.feature, datasets.Image):
            ds = ds.cast_column(col, datasets.List(datasets.Image(decode=False)))
    if len(ds) == 0:
        raise SeedError(
            f"seeds {str(path_or_id)!r} hold no rows; give one row per seed (image, instruction, chosen answer)"
        )
    return ds


def _resolve_column(
    columns: Sequence[str], given: Optional[str], candidates: Sequence[str], what: str, flag: str, required: bool = True
) -> Optional[str]:
    if given:
        if given not in columns:
            raise SeedError(f"seed column {given!r} ({what}, {flag}) does not exist; columns are: {', '.join(columns)}")
        return given
    for c in candidates:
        if c in columns:
            return c
    if required:
        raise SeedError(
            f"no {what} column found (looked for {', '.join(candidates)}); pass {flag} — "
            f"columns are: {', '.join(columns)}"
        )
    return None


def as_text(value: Any) -> str:
    """Text of a plain string or of TRL conversational messages (last message's text parts)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        content = value.get("content", value.get("text", ""))
        return as_text(content)
    if isinstance(value, (list, tuple)):
        if value and isinstance(value[0], dict) and "role" in value[0]:
            return as_text(value[-1])
        return (
            " ".join(p.get("text") or "" for p in value if isinstance(p, dict) and p.get("type") == "text")
            if value and isinstance(value[0], dict)
            else " ".join(map(str, value))
        )
    return str(value)


def dataset_seeds(
    path_or_id: str,
    *,
    image_column: Optional[str] = None,
    instruction_column: Optional[str] = None,
    chosen_column: Optional[str] = None,
    id_column: Optional[str] = None,
    image_root: Optional[str | Path] = None,
    split: Optional[str] = None,
    require_chosen: bool = True,
    kb_lookup=None,
    encoding: str = "utf-8",
    allow_outside_root: bool = False,
) -> Iterator[Seed]:
    """Seeds from any tabular dataset (see module docstring). ``kb_lookup(path) -> kb id | None``; ``encoding``:
    of a text seeds file (``.jsonl``/``.json``/``.csv``). With ``image_root``, a path that resolves outside it
    (symbolic links followed) gets an ``image_error`` (never read) unless ``allow_outside_root``."""
    ds = load_seed_table(path_or_id, split=split, encoding=encoding)
    cols = list(ds.column_names)
    img_col = _resolve_column(cols, image_column, IMAGE_COLUMNS, "image", "--image-column")
    ins_col = _resolve_column(cols, instruction_column, INSTRUCTION_COLUMNS, "instruction", "--instruction-column")
    cho_col = _resolve_column(
        cols, chosen_column, CHOSEN_COLUMNS, "chosen answer", "--chosen-column", required=require_chosen
    )
    if id_column:
        _resolve_column(cols, id_column, (), "id", "--id-column")
    root = Path(image_root).expanduser() if image_root else None
    real_root = os.path.realpath(root) if root is not None else None
    for n, row in enumerate(ds):
        value = row[img_col]
        if isinstance(value, (list, tuple)):
            value = value[0] if value else None
        path, data = None, None
        if isinstance(value, dict):
            data = value.get("bytes")
            if not data and value.get("path"):
                path = value["path"]
        elif isinstance(value, (bytes, bytearray)):
            data = bytes(value)
        elif isinstance(value, str) and value:
            path = value
        elif value is not None and hasattr(value, "save"):  # a decoded PIL image
            buf = io.BytesIO()
            value.save(buf, format="PNG")
            data = buf.getvalue()
        if path and root is not None and not Path(path).is_absolute():
            path = str(root / path)
        error = None
        if path and real_root is not None and not allow_outside_root:
            real = os.path.realpath(path)
            if os.path.commonpath([real, real_root]) != real_root:
                error = (
                    "outside_image_root",
                    f"{path} resolves to {real}, outside --image-root {real_root} (pass "
                    "--allow-outside-root to read it)",
                )
        image_id = str(row[id_column]) if id_column else (Path(path).name if path else f"row-{n}")
        yield Seed(
            index=n,
            id=str(row[id_column]) if id_column else f"seed-{n}",
            instruction=as_text(row[ins_col]).strip(),
            chosen=as_text(row[cho_col]).strip() if cho_col else None,
            image_id=image_id,
            image_path=path,
            image_data=data,
            image_error=error,
            kb_id=kb_lookup(path) if (kb_lookup and path and not error) else None,
        )
