"""Images of an export, written once each under a name made of their content's sha256.

A dataset stores each image as ``{"bytes", "path"}`` (``datasets.Image`` undecoded). The store writes the bytes as
``<sha256>.<ext>`` in one folder, once per distinct content, and hands back the name relative to the export: the
same photo used by ten rows (or as the original of one row and the retrieved image of another) is one file.
Encoded bytes are kept as they are (no re-encoding, so nothing changes in the pixels); only an image whose format
is not one the trainers open everywhere (PNG, JPEG, GIF, WebP, BMP) is converted to PNG.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

from realign_data.runtime.atomic import atomic_write_bytes

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpg"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
)


def image_extension(data: bytes) -> str | None:
    """File extension of encoded image bytes from their signature, or None for another format."""
    for magic, ext in _MAGIC:
        if data.startswith(magic):
            return ext
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


class ImageStore:
    """Content-addressed image files under ``root / folder``; :meth:`add` returns the path relative to ``root``."""

    def __init__(self, root: Path, folder: str = "images", write: bool = True):
        self.root, self.folder, self.write = Path(root), folder, write
        self.names: dict[str, str] = {}  # sha256 of the stored bytes -> relative path
        self.bytes_written = 0

    def encoded(self, value, what: str) -> bytes:
        """The encoded bytes of one ``datasets.Image`` value (``{"bytes", "path"}``, a path string or a PIL image)."""
        if value is None:
            raise ValueError(f"{what} is empty")
        if isinstance(value, (str, os.PathLike)):
            value = {"bytes": None, "path": str(value)}
        if not isinstance(value, dict):  # a decoded PIL image
            buf = io.BytesIO()
            value.save(buf, format="PNG")
            return buf.getvalue()
        data = value.get("bytes")
        if data is None:
            path = value.get("path")
            if not path or not Path(path).is_file():
                raise ValueError(f"{what} has no bytes and its path {path!r} is not a readable file")
            data = Path(path).read_bytes()
        if image_extension(data) is None:
            from PIL import Image

            buf = io.BytesIO()
            try:
                with Image.open(io.BytesIO(data)) as im:
                    im.save(buf, format="PNG")
            except OSError as e:  # PIL.UnidentifiedImageError and truncated files
                raise ValueError(f"{what} is not an image Pillow can read ({e})") from None
            data = buf.getvalue()
        return data

    def add(self, value, what: str = "image") -> tuple[str, bytes]:
        """Store one image (once per content); returns ``(relative path, encoded bytes)``."""
        data = self.encoded(value, what)
        digest = hashlib.sha256(data).hexdigest()
        name = self.names.get(digest)
        if name is None:
            name = (
                f"{self.folder}/{digest}.{image_extension(data)}"
                if self.folder
                else f"{digest}.{image_extension(data)}"
            )
            if self.write:
                path = self.root / name
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(path, data)
                self.bytes_written += len(data)
            self.names[digest] = name
        return name, data

    def __len__(self) -> int:
        return len(self.names)
