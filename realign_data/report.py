"""Build reports (``build_report.json`` + printed summary) and the ``inspect`` HTML page.

The report holds: seeds read, pairs written, drops by reason, fills tried, failed requests (count and
examples), histograms of retrieval score, text similarity and the retrieval rank used, throughput, the
chunk list (for resume/merge), the build config and provenance (knowledge base, encoder, masker, filler,
gate, warnings such as an offline fallback, library versions).
"""

from __future__ import annotations

import base64
import difflib
import html
import json
import re
from pathlib import Path
from typing import Optional

from realign_data.atomic import atomic_write_json, atomic_write_text

REPORT_FILE = "build_report.json"
MAX_FAILURE_EXAMPLES = 100


def histogram(values: list[float], lo: float, hi: float, bins: int) -> dict:
    """Fixed-width histogram over [lo, hi] (values outside are clamped into the end bins) + summary stats."""
    if not values:
        return {"count": 0, "bins": []}
    width = (hi - lo) / bins
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, max(0, int((v - lo) / width)))] += 1
    return {
        "count": len(values), "min": round(min(values), 4), "max": round(max(values), 4),
        "mean": round(sum(values) / len(values), 4),
        "bins": [[round(lo + i * width, 3), round(lo + (i + 1) * width, 3), c] for i, c in enumerate(counts) if c],
    }


def aggregate(metas: list[dict], stats: dict[str, list]) -> dict:
    """Sum per-chunk markers (``seeds, rows, drops, failures, fills``) and histogram the row statistics."""
    from realign_data.builder import DROP_REASONS

    drops: dict[str, int] = {}
    failures: list[dict] = []
    failure_count = 0
    for m in metas:
        for k, v in m.get("drops", {}).items():
            drops[k] = drops.get(k, 0) + v
        failures += m.get("failures", [])
        failure_count += m.get("failure_count", len(m.get("failures", [])))
    order = {r: i for i, r in enumerate(DROP_REASONS)}
    ranks: dict[str, int] = {}
    for r in stats.get("retrieval_rank", []):
        ranks[str(r)] = ranks.get(str(r), 0) + 1
    kinds: dict[str, int] = {}
    for k in stats.get("image_negative", []):
        kinds[str(k)] = kinds.get(str(k), 0) + 1
    sources: dict[str, int] = {}
    for kind, params in zip(stats.get("image_negative", []), stats.get("negative_params", [])):
        if kind == "region-noise":
            src = json.loads(params or "{}").get("region_source", "unknown")
            sources[src] = sources.get(src, 0) + 1
    return {
        "seeds_read": sum(m.get("seeds", 0) for m in metas),
        "pairs_written": sum(m.get("rows", 0) for m in metas),
        "drops": dict(sorted(drops.items(), key=lambda kv: (order.get(kv[0], 99), kv[0]))),
        "fills_tried": sum(m.get("fills", 0) for m in metas),
        "failures": {"count": failure_count, "examples": failures[:MAX_FAILURE_EXAMPLES]},
        "histograms": {
            "retrieval_score": histogram(stats.get("retrieval_score", []), -1.0, 1.0, 40),
            "text_similarity": histogram(stats.get("text_similarity", []), -1.0, 1.0, 40),
            "retrieval_rank": dict(sorted(ranks.items(), key=lambda kv: int(kv[0]))),
            "difficulty": histogram(stats.get("difficulty", []), 0.0, 1.0, 20),
        },
        "image_negatives": {"by_kind": kinds, **({"region_source": sources} if sources else {})},
    }


def finalize_report(out: Path, report: dict) -> dict:
    atomic_write_json(Path(out) / REPORT_FILE, report)
    return report


def _bar(n: int, total: int, width: int = 24) -> str:
    return "#" * max(1 if n else 0, round(width * n / total)) if total else ""


def format_summary(report: dict) -> str:
    """A short human summary of a build report."""
    lines = [f"Seeds read: {report['seeds_read']}   pairs written: {report['pairs_written']}   "
             f"fills tried: {report.get('fills_tried', 0)}"]
    drops = report.get("drops", {})
    if drops:
        lines.append("Dropped: " + ", ".join(f"{k} {v}" for k, v in drops.items()))
    else:
        lines.append("Dropped: none")
    fc = report.get("failures", {}).get("count", 0)
    if fc:
        lines.append(f"Failed fill/generation requests: {fc} (see build_report.json)")
    h = report.get("histograms", {})
    for key, label in (("retrieval_score", "retrieval score"), ("text_similarity", "text similarity")):
        hist = h.get(key, {})
        if hist.get("count"):
            lines.append(f"{label}: mean {hist['mean']:.3f}  min {hist['min']:.3f}  max {hist['max']:.3f}")
    ranks = h.get("retrieval_rank", {})
    if ranks:
        total = sum(ranks.values())
        lines.append("rank used: " + "  ".join(f"{r}:{n}" for r, n in ranks.items()))
        lines += [f"  {r:>2} {_bar(n, total)} {n}" for r, n in ranks.items()]
    negs = report.get("image_negatives", {})
    if negs.get("by_kind"):
        params = {k: v for k, v in report.get("image_negative", {}).items() if k not in ("kind", "text_fill")}
        line = "Image negatives: " + ", ".join(f"{k} {v}" for k, v in negs["by_kind"].items())
        if params:
            line += " (" + ", ".join(f"{k}={v}" for k, v in params.items()) + ")"
        if negs.get("region_source"):
            line += "; regions: " + ", ".join(f"{k} {v}" for k, v in negs["region_source"].items())
        lines.append(line)
    hist = h.get("difficulty", {})
    if hist.get("count"):
        lines.append(f"difficulty: mean {hist['mean']:.3f}  min {hist['min']:.3f}  max {hist['max']:.3f}")
    cur = report.get("curriculum", {})
    if cur.get("splits"):
        lines.append(f"Curriculum {cur.get('order')}: " + ", ".join(
            f"{k} {v['rows']} [{v['difficulty_min']:.3f}, {v['difficulty_max']:.3f}]"
            for k, v in cur["splits"].items() if k != "train"))
    elif cur.get("note"):
        lines.append(f"Curriculum: {cur['note']}")
    t = report.get("throughput", {})
    if t.get("pairs_per_second") is not None:
        lines.append(f"Throughput: {t['pairs_per_second']:.1f} pairs/s, {t['seeds_per_second']:.1f} seeds/s "
                     f"({t['seconds_building']:.1f} s building, {t['seconds_total']:.1f} s total"
                     f"{', ' + str(t['resumed_chunks']) + ' chunks resumed' if t.get('resumed_chunks') else ''})")
    prov = report.get("provenance", {})
    gate = prov.get("gate", {})
    if gate:
        lines.append(f"Gate: {gate.get('gate')}{' (' + gate['model'] + ')' if gate.get('model') else ''} "
                     f"< {gate.get('threshold')}   filler: {prov.get('filler', {}).get('filler')}")
    if prov.get("knowledge_base", {}).get("random_encoder"):
        lines.append("Note: the knowledge base was embedded with a randomly initialised encoder (no pretrained "
                     "CLIP weights), so retrieval is arbitrary")
    for w in prov.get("warnings", []):
        lines.append(f"Note: {w}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- inspect
def _data_url(img: dict) -> str:
    data = img.get("bytes") or (Path(img["path"]).read_bytes() if img.get("path") and Path(img["path"]).is_file()
                                else b"")
    mime = "image/png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


OUTLINE = (0, 229, 255)  # cyan: stands out on the noise and on the sample corpus's red/blue shapes


def _png_url(image) -> str:
    import io

    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return f"data:image/png;base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def _image_bytes(img: dict) -> bytes:
    return img.get("bytes") or (Path(img["path"]).read_bytes() if img.get("path") and Path(img["path"]).is_file()
                                else b"")


def perturbed_region(original: bytes, negative: bytes):
    """Bool HxW mask of the pixels a perturbation changed (``None`` when the sizes differ)."""
    import io

    import numpy as np
    from PIL import Image

    a = np.asarray(Image.open(io.BytesIO(original)).convert("RGB"))
    b = np.asarray(Image.open(io.BytesIO(negative)).convert("RGB"))
    if a.shape != b.shape:
        return None
    return np.any(a != b, axis=-1)


def outline(image_bytes: bytes, mask=None, box=None, color=OUTLINE):
    """The image with the boundary of ``mask`` (2 px) and/or the rectangle ``box`` drawn in ``color``."""
    import io

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
    """Word-level difflib diff: changed words of ``chosen`` in <del>, of ``rejected`` in <ins>."""
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
    return "".join(left), "".join(right)


_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:20px} .meta{color:#666;font-size:12px}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:16px;background:#fff;border:1px solid #ddd;
border-radius:8px;padding:12px;margin:12px 0}
.pair img{max-width:100%;max-height:280px;image-rendering:pixelated;border:1px solid #ccc}
.q{grid-column:1/3;font-weight:600}
del{background:#ffd7d5;text-decoration:none} ins{background:#ccffd8;text-decoration:none}
.label{font-size:12px;color:#555;text-transform:uppercase;letter-spacing:.04em}
pre{white-space:pre-wrap;font-size:12px;background:#f3f3f3;padding:8px}
"""


def render_html(dataset, *, num: int = 20, title: str = "realign dataset", report: Optional[dict] = None) -> str:
    """A self-contained HTML page (images inlined as base64) showing the first ``num`` pairs."""

    from realign_data.schema import message_text

    # only the rows shown, read as raw Arrow (images stay encoded bytes): nothing is decoded, cast or cached
    rows = dataset.with_format("arrow")[: min(num, len(dataset))].to_pylist()
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"
             f"<p class='meta'>{len(dataset)} pairs; showing {len(rows)}. Left: original image with the chosen "
             f"answer. Right: the rejected image (retrieved, or the original perturbed: region-noise, crop, noise) "
             f"with the rejected answer (changed words highlighted). Perturbed regions are outlined in cyan.</p>"]
    if report:
        from realign_data.report import format_summary

        parts.append(f"<pre>{html.escape(format_summary(report))}</pre>")
    for row in rows:
        chosen, rejected = message_text(row["chosen"]), message_text(row["rejected"])
        left, right = diff_html(chosen, rejected)
        kind = row.get("image_negative") or "retrieval"
        if kind != "retrieval":
            parts.append(_perturbed_pair_html(row, kind, left, right))
            continue
        parts.append(
            f"<div class='pair'><div class='q'>{html.escape(message_text(row['prompt']))} "
            f"<span class='meta'>{html.escape(str(row['id']))}</span></div>"
            f"<div><div class='label'>original · {html.escape(str(row['image_id']))}</div>"
            f"<img src='{_data_url(row['images'][0])}'><div class='label'>chosen</div><p>{left}</p></div>"
            f"<div><div class='label'>retrieved · rank {row['retrieval_rank']} · score {row['retrieval_score']:.3f}"
            f" · {html.escape(str(row['rejected_image_id']))}</div>"
            f"<img src='{_data_url(row['rejected_images'][0])}'><div class='label'>rejected · similarity "
            f"{row['text_similarity']:.3f} · {html.escape(str(row['filler']))}</div><p>{right}</p>"
            f"<div class='meta'>masked: {html.escape(row['masked_chosen'])}"
            f"{_difficulty_html(row)}</div></div></div>")
    parts.append("</body></html>")
    return "".join(parts)


def _difficulty_html(row: dict) -> str:
    return f" · difficulty {row['difficulty']:.3f}" if row.get("difficulty") is not None else ""


def _perturbed_pair_html(row: dict, kind: str, left: str, right: str) -> str:
    """Original vs perturbed negative side by side, labelled with the kind and its parameters."""
    from realign_data.schema import message_text

    params = json.loads(row.get("negative_params") or "{}")
    original, negative = _image_bytes(row["images"][0]), _image_bytes(row["rejected_images"][0])
    orig_src, neg_src, region = _data_url(row["images"][0]), _data_url(row["rejected_images"][0]), ""
    if kind == "region-noise" and params.get("region_source") == "segmentation":
        mask = perturbed_region(original, negative)
        if mask is not None:
            orig_src = _png_url(outline(original, mask))
            neg_src = _png_url(outline(negative, mask))
        region = (f"region: masks of {', '.join(params.get('categories', []))} "
                  f"({params.get('region_fraction', 0):.1%} of the image)")
    elif kind == "region-noise":
        region = (f"region: whole image (fallback: no instance mask for "
                  f"{', '.join(params.get('categories', [])) or 'any named object'})")
    elif kind == "crop" and params.get("box"):
        orig_src = _png_url(outline(original, box=params["box"]))
        region = f"crop box {params['box']} outlined on the original ({params.get('area_fraction', 0):.1%} of the area)"
    shown = {k: v for k, v in params.items() if k not in ("categories", "instance_ids", "box")}
    label = f"{kind} negative · " + " · ".join(f"{k} {round(v, 4) if isinstance(v, float) else v}"
                                               for k, v in shown.items())
    return (
        f"<div class='pair'><div class='q'>{html.escape(message_text(row['prompt']))} "
        f"<span class='meta'>{html.escape(str(row['id']))}</span></div>"
        f"<div><div class='label'>original · {html.escape(str(row['image_id']))}</div>"
        f"<img src='{orig_src}'><div class='label'>chosen</div><p>{left}</p></div>"
        f"<div><div class='label kind'>{html.escape(label)}</div>"
        f"<img src='{neg_src}'><div class='meta'>{html.escape(region)}</div>"
        f"<div class='label'>rejected · similarity {row['text_similarity']:.3f} · "
        f"{html.escape(str(row['filler']))}</div><p>{right}</p>"
        f"<div class='meta'>text fill from retrieved image {html.escape(str(row.get('fill_image_id')))} (rank "
        f"{row['retrieval_rank']}, score {row['retrieval_score']:.3f}) · masked: "
        f"{html.escape(row['masked_chosen'])}{_difficulty_html(row)}</div></div></div>")


def write_inspect_html(dataset_dir: str | Path, out_html: str | Path | None = None, *, num: int = 20,
                       split: str = "train") -> Path:
    """Write the inspect page for one split of a built dataset directory (default ``DIR/inspect.html``)."""
    from realign_data.builder import load_built

    dataset_dir = Path(dataset_dir)
    ds = load_built(dataset_dir, split)
    report = None
    if (dataset_dir / REPORT_FILE).is_file():
        report = json.loads((dataset_dir / REPORT_FILE).read_text())
    out_html = Path(out_html) if out_html else dataset_dir / "inspect.html"
    title = f"realign · {dataset_dir.name}" + (f" · {split}" if split != "train" else "")
    atomic_write_text(out_html, render_html(ds, num=num, title=title, report=report))
    return out_html
