"""The ``realign-data inspect`` page: pairs side by side, images inlined, changed words highlighted.

The page is the Jinja2 template ``templates/inspect.html`` (autoescaped); this module turns rows into what the
template shows. Rows with a perturbation negative show the original and the negative labelled with the kind and
its parameters; ``region-noise`` outlines the perturbed pixels on both images, ``crop`` its box on the original.
"""

from __future__ import annotations

import base64
import difflib
import html
import io
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Optional

from realign_data.building.config import BuildError
from realign_data.building.output import INSPECT_FILE, REPORT_FILE, load_built
from realign_data.building.report import format_summary
from realign_data.building.schema import message_text
from realign_data.building.separability import cue_line, summary_line
from realign_data.runtime.atomic import atomic_write_text

OUTLINE = (0, 229, 255)  # cyan: stands out on the noise and on the sample corpus's red/blue shapes
HIDDEN_PARAMS = ("categories", "instance_ids", "box")  # shown otherwise (region text, outline)


@lru_cache(maxsize=1)
def _template():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("realign_data.publish", "templates"), autoescape=True, keep_trailing_newline=True
    )
    return env.get_template("inspect.html")


def _image_bytes(img: dict) -> bytes:
    return img.get("bytes") or (
        Path(img["path"]).read_bytes() if img.get("path") and Path(img["path"]).is_file() else b""
    )


def _data_url(data: bytes) -> str:
    mime = "image/png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _png_url(image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return _data_url(buf.getvalue())


def perturbed_region(original: bytes, negative: bytes):
    """Bool HxW mask of the pixels a perturbation changed (``None`` when the sizes differ)."""
    import numpy as np
    from PIL import Image

    a = np.asarray(Image.open(io.BytesIO(original)).convert("RGB"))
    b = np.asarray(Image.open(io.BytesIO(negative)).convert("RGB"))
    if a.shape != b.shape:
        return None
    return np.any(a != b, axis=-1)


def outline(image_bytes: bytes, mask=None, box=None, color=OUTLINE):
    """The image with the boundary of ``mask`` (2 px) and/or the rectangle ``box`` drawn in ``color``."""
    import numpy as np
    from PIL import Image, ImageDraw

    image = Image.open(io.BytesIO(image_bytes)).convert("RGB")
    if mask is not None and mask.any():
        m = mask.copy()
        inner = m.copy()
        inner[1:, :] &= m[:-1, :]
        inner[:-1, :] &= m[1:, :]
        inner[:, 1:] &= m[:, :-1]
        inner[:, :-1] &= m[:, 1:]
        edge = m & ~inner
        thick = edge.copy()  # dilate the edge by one pixel so it stays visible over noise
        thick[1:, :] |= edge[:-1, :]
        thick[:-1, :] |= edge[1:, :]
        thick[:, 1:] |= edge[:, :-1]
        thick[:, :-1] |= edge[:, 1:]
        arr = np.asarray(image).copy()
        arr[thick] = color
        image = Image.fromarray(arr)
    if box is not None:
        ImageDraw.Draw(image).rectangle([box[0], box[1], box[2] - 1, box[3] - 1], outline=color, width=2)
    return image


def diff_html(chosen: str, rejected: str) -> tuple[str, str]:
    """Word-level difflib diff: changed words of ``chosen`` in <del>, of ``rejected`` in <ins> (escaped HTML)."""
    from markupsafe import Markup

    a, b = re.findall(r"\S+|\s+", chosen), re.findall(r"\S+|\s+", rejected)
    left, right = [], []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        ta, tb = html.escape("".join(a[i1:i2])), html.escape("".join(b[j1:j2]))
        if op == "equal":
            left.append(ta)
            right.append(tb)
        else:
            if ta:
                left.append(f"<del>{ta}</del>")
            if tb:
                right.append(f"<ins>{tb}</ins>")
    return Markup("".join(left)), Markup("".join(right))


def _pair(row: dict) -> dict:
    """What the template shows of one row."""
    chosen, rejected = diff_html(message_text(row["chosen"]), message_text(row["rejected"]))
    original, negative = _image_bytes(row["images"][0]), _image_bytes(row["rejected_images"][0])
    kind = row.get("image_negative") or "retrieval"
    pair = {
        "kind": kind,
        "prompt": message_text(row["prompt"]),
        "id": row["id"],
        "image_id": row["image_id"],
        "chosen": chosen,
        "rejected": rejected,
        "rank": row["retrieval_rank"],
        "score": row["retrieval_score"],
        "rejected_image_id": row["rejected_image_id"],
        "fill_image_id": row.get("fill_image_id"),
        "similarity": row["text_similarity"],
        "filler": row["filler"],
        "masked": row["masked_chosen"],
        "difficulty": row.get("difficulty"),
        "original_src": _data_url(original),
        "negative_src": _data_url(negative),
        "region": "",
        "params": [],
    }
    if kind == "retrieval":
        return pair
    params = json.loads(row.get("negative_params") or "{}")
    categories = ", ".join(params.get("categories", []))
    if kind == "region-noise" and params.get("region_source") == "segmentation":
        mask = perturbed_region(original, negative)
        if mask is not None:
            pair["original_src"], pair["negative_src"] = (
                _png_url(outline(original, mask)),
                _png_url(outline(negative, mask)),
            )
        pair["region"] = f"region: masks of {categories} ({params.get('region_fraction', 0):.1%} of the image)"
    elif kind == "region-noise":
        pair["region"] = f"region: whole image (fallback: no instance mask for {categories or 'any named object'})"
    elif kind == "crop" and params.get("box"):
        pair["original_src"] = _png_url(outline(original, box=params["box"]))
        pair["region"] = (
            f"crop box {params['box']} outlined on the original ({params.get('area_fraction', 0):.1%} of the area)"
        )
    pair["params"] = [
        f"{k} {round(v, 4) if isinstance(v, float) else v}" for k, v in params.items() if k not in HIDDEN_PARAMS
    ]
    return pair


def render_html(dataset, *, num: int = 20, title: str = "realign dataset", report: Optional[dict] = None) -> str:
    """A self-contained HTML page (images inlined as base64) showing the first ``num`` pairs."""
    # only the rows shown, read as raw Arrow (images stay encoded bytes): nothing is decoded, cast or cached
    rows = dataset.with_format("arrow")[: min(num, len(dataset))].to_pylist()
    blind = (report or {}).get("blind_separability")
    return _template().render(
        title=title,
        total=len(dataset),
        pairs=[_pair(r) for r in rows],
        summary=format_summary(report) if report else None,
        blind=[line.strip() for line in (summary_line(blind), cue_line(blind)) if line],
    )


def write_inspect_html(
    dataset_dir: str | Path, out_html: str | Path | None = None, *, num: int = 20, split: str = "train"
) -> Path:
    """Write the inspect page for one split of a built dataset directory (default ``DIR/inspect.html``)."""
    dataset_dir = Path(dataset_dir)
    ds = load_built(dataset_dir, split)
    report = None
    if (dataset_dir / REPORT_FILE).is_file():
        report = json.loads((dataset_dir / REPORT_FILE).read_text())
    out_html = Path(out_html) if out_html else dataset_dir / INSPECT_FILE
    if out_html.is_dir():
        raise BuildError(
            f"--html {str(out_html)!r} is a folder; give the file to write, e.g. {out_html / INSPECT_FILE}"
        )
    if num < 1:
        raise BuildError(f"-n must be at least 1 (pairs to show), got {num}")
    try:
        out_html.parent.mkdir(parents=True, exist_ok=True)  # a new folder for the page is fine
    except OSError as e:
        raise BuildError(f"cannot create the folder of --html {str(out_html)!r} ({e.strerror or e})") from None
    title = f"realign · {dataset_dir.name}" + (f" · {split}" if split != "train" else "")
    atomic_write_text(out_html, render_html(ds, num=num, title=title, report=report))
    return out_html
