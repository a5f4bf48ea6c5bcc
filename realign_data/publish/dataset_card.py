"""The dataset card (README.md) of a Re-Align dataset on the Hub: metadata, generated body, merging.

``huggingface_hub``'s :class:`~huggingface_hub.DatasetCard` reads and writes the card (YAML front matter as
:class:`~huggingface_hub.DatasetCardData`, Markdown body); ``datasets``' ``MetadataConfigs`` and
``DatasetInfosDict`` read the ``configs`` / ``dataset_info`` entries that ``datasets.push_to_hub`` writes. The body
this module generates is the Jinja2 template ``templates/dataset_card.md``; it sits between two HTML comments::

    <!-- realign:begin -->
    ... what the dataset is, schema, provenance per config, how to load and train, citation ...
    <!-- realign:end -->

:func:`merge_card` replaces that block (or appends it when absent) and keeps every other line of the body and
every YAML key it does not own, so a card edited by hand on the Hub survives a re-push. No network here: the
Hub side lives in :mod:`realign_data.publish.hub`.
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable, Mapping, Optional

from realign_data.building.output import CONFIG_FILE, REPORT_FILE
from realign_data.building.separability import cue_line, summary_line
from realign_data.publish.provenance import Provenance

BEGIN_MARKER = "<!-- realign:begin -->"
END_MARKER = "<!-- realign:end -->"
INDEX_MANIFEST_FILE = "index_manifest.json"  # the knowledge base manifest, as uploaded next to the data
TAGS = ["dpo", "rdpo", "re-align", "vision", "preference", "synthetic"]
TASK_CATEGORIES = ["image-text-to-text", "visual-question-answering"]
SIZE_CATEGORIES = [
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
]

CITATION = """@inproceedings{xing2025realign,
  title={Re-Align: Aligning Vision Language Models via Retrieval-Augmented Direct Preference Optimization},
  author={Xing, Shuo and Li, Peiran and Wang, Yuping and Bai, Ruizheng and Wang, Yueqi and Hu, Chan-Wei and Qian, Chengxuan and Yao, Huaxiu and Tu, Zhengzhong},
  booktitle={Proceedings of the 2025 Conference on Empirical Methods in Natural Language Processing},
  year={2025},
  eprint={2502.13146},
  archivePrefix={arXiv}
}"""

# column -> description, in the order of the TRL vision format followed by the provenance columns
COLUMN_DOCS: dict[str, str] = {
    "images": "list of images: the original image `m` (TRL vision format)",
    "prompt": "conversational prompt: a user turn with an image placeholder and the instruction `x`",
    "chosen": "conversational assistant turn: the trusted response `y_w`",
    "rejected": "conversational assistant turn: the hallucinated response `y_l` (masked `y_w` filled from `m_r`)",
    "rejected_images": "list of images, parallel to `images`: the rejected image `m_r` of the visual pair: the "
    "retrieved image, or the original perturbed (see `image_negative`)",
    "id": "unique id of the pair",
    "image_id": "id of the original image in the corpus",
    "rejected_image_id": "id of the retrieved image `m_r` in the corpus; null when `m_r` is a perturbation of `m`",
    "retrieval_rank": "1-based rank of `m_r` among the top-k images retrieved for `m` (first fill that passed the gate)",
    "retrieval_score": "cosine similarity between the image embeddings of `m` and `m_r`",
    "text_similarity": "sentence-embedding cosine similarity of `y_l` to `y_w` (accepted when below the threshold)",
    "masked_chosen": "`y_w` with its visual facts masked out (the text the filler completed)",
    "filler": "backend/model that filled the masked response",
    "fill_image_id": "id of the retrieved image the filler described to write `y_l` (every kind of visual negative)",
    "image_negative": "kind of `m_r`: `retrieval` (Re-Align), `region-noise` (MFPO: diffusion noise inside the masks of "
    "the objects `y_w` names), `crop` (mDPO: random resized crop of 1-20 % of the area) or `noise` "
    "(POVID: diffusion noise over the whole image)",
    "negative_params": "JSON object of the perturbation's parameters (diffusion step `t` and schedule, `region_source` "
    "`segmentation` or `whole_image_fallback`, crop `box` and `area_fraction`; `{}` for retrieval)",
    "difficulty": "in [0, 1], `w * image_closeness + (1 - w) * text_similarity`: how close the negatives are to the "
    "positives (1 = hardest); orders the easy-to-hard curriculum",
}

# (label, BuildConfig field) of the settings table, in this order
SETTINGS = [
    ("Corpus", "coco_root"),
    ("COCO split", "coco_split"),
    ("Knowledge base (index)", "index"),
    ("Seed source", "seeds"),
    ("Filler backend", "filler"),
    ("Filler model", "model"),
    ("Masker", "masker"),
    ("Masked span kinds", "mask_kinds"),
    ("Top-k retrieved images", "top_k"),
    ("Near-duplicate cut (image similarity)", "max_similarity"),
    ("Gate", "gate"),
    ("Gate model", "gate_model"),
    ("Similarity threshold", "sim_threshold"),
    ("Quality filters", "quality_filters"),
    ("Max length ratio", "max_length_ratio"),
    ("Min similarity", "min_similarity"),
    ("Image negative", "image_negative"),
    ("Curriculum", "curriculum"),
    ("Difficulty image weight", "difficulty_image_weight"),
    ("Random seed", "seed"),
]
NEGATIVE_SETTINGS = [
    ("noise_step", "Noise step (of 1000)"),
    ("noise_schedule", "Noise schedule"),
    ("crop_min_area", "Crop area kept, min"),
    ("crop_max_area", "Crop area kept, max"),
    ("text_fill", "Text-rejected answer"),
]


@dataclass
class ConfigSummary:
    """One ``configs`` entry of the card as rendered in the body."""

    name: str
    data_dir: Optional[str]
    splits: dict[str, int]  # split -> num_examples (from dataset_info), may be empty
    provenance: Optional[Provenance]


def size_category(n: int) -> str:
    """The Hub's ``size_categories`` label for ``n`` examples."""
    return next((label for bound, label in SIZE_CATEGORIES if n < bound), "1B<n<10B")


def data_dir_of(config_entry: Mapping) -> Optional[str]:
    """``data`` for ``data_files: [{split: train, path: data/train-*}]``."""
    files = config_entry.get("data_files")
    entries = files if isinstance(files, list) else [files]
    for f in entries:
        paths = f.get("path") if isinstance(f, Mapping) else f
        for p in paths if isinstance(paths, list) else [paths]:
            if isinstance(p, str) and "/" in p:
                return posixpath.dirname(p)
    return None


def config_summaries(card_data, provenance: Mapping[str, Optional[Provenance]]) -> list[ConfigSummary]:
    """One summary per ``configs`` entry of the card, with split sizes from ``dataset_info``."""
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs

    infos = DatasetInfosDict.from_dataset_card_data(card_data)
    out = []
    for name, entry in MetadataConfigs.from_dataset_card_data(card_data).items():
        info = infos.get(name)
        splits = {s.name: int(s.num_examples or 0) for s in info.splits.values()} if info and info.splits else {}
        out.append(ConfigSummary(name, data_dir_of(entry), splits, provenance.get(name)))
    return out


# ---------------------------------------------------------------------------------------------------------------
# body
# ---------------------------------------------------------------------------------------------------------------
def _cell(value: Any, limit: int = 300) -> str:
    text = json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else str(value)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _json(obj: Any, limit: int = 20_000) -> str:
    text = json.dumps(obj, indent=2, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + "\n... (truncated; the full file is in the repository)"


def _settings(prov: Provenance) -> list[tuple[str, str]]:
    cfg, report, manifest = prov.config or {}, prov.report or {}, prov.manifest or {}
    resolved = report.get("provenance") or {}
    rows = [
        (label, f"{_cell(cfg[key])} (`{key}` in {CONFIG_FILE})")
        for label, key in SETTINGS
        if cfg.get(key) not in (None, "", [], {})
    ]
    for key, label in (("masker", "Masker used"), ("filler", "Filler used"), ("gate", "Gate used")):
        if resolved.get(key):
            rows.append((label, f"{_cell(resolved[key])} (`provenance.{key}` in {REPORT_FILE})"))
    negative = report.get("image_negative")
    if isinstance(negative, Mapping):
        rows += [
            (label, f"{_cell(negative[key])} (`image_negative.{key}` in {REPORT_FILE})")
            for key, label in NEGATIVE_SETTINGS
            if key in negative
        ]
    enc, idx = manifest.get("encoder") or {}, manifest.get("index") or {}
    if enc:
        rows.append(
            (
                "Image encoder (open_clip)",
                f"`{enc.get('model')}`, pretrained `{enc.get('pretrained')}`, dim {enc.get('dim')}",
            )
        )
    if isinstance(manifest.get("count"), int):
        rows.append(("Indexed corpus images", f"{manifest['count']:,}"))
    if idx:
        rows.append(
            (
                "FAISS index",
                f"`{idx.get('factory')}`, recall@10 {idx.get('recall_at_10')}, "
                f"search params `{_cell(idx.get('search_params'))}`",
            )
        )
    if manifest.get("source"):
        rows.append(("Corpus (from the index manifest)", _cell(manifest["source"])))
    if prov.license:
        rows.append(("Corpus licence", f"`{prov.license}`"))
    return rows


def _stats(report: dict) -> list[str]:
    lines = [
        f"{label}: {_cell(report[key])}"
        for label, key in (
            ("Seed records read", "seeds_read"),
            ("Pairs written", "pairs_written"),
            ("Fills tried", "fills_tried"),
        )
        if key in report
    ]
    throughput = report.get("throughput") or {}
    if throughput.get("pairs_per_second") is not None:
        lines.append(f"Throughput: {throughput['pairs_per_second']} pairs/s")
    drops = report.get("drops")
    if isinstance(drops, Mapping):
        lines.append("Drops by reason: " + (", ".join(f"`{k}` {_cell(v)}" for k, v in drops.items()) or "none"))
    rejected = report.get("fills_rejected")
    if isinstance(rejected, Mapping) and rejected:
        lines.append("Fills not kept by reason: " + ", ".join(f"`{k}` {_cell(v)}" for k, v in rejected.items()))
    negs = report.get("image_negatives") or {}
    if negs.get("by_kind"):
        lines.append("Image negatives by kind: " + ", ".join(f"`{k}` {_cell(v)}" for k, v in negs["by_kind"].items()))
    if negs.get("region_source"):
        lines.append(
            "Region-noise regions: " + ", ".join(f"`{k}` {_cell(v)}" for k, v in negs["region_source"].items())
        )
    blind = report.get("blind_separability")
    if isinstance(blind, Mapping):
        lines += [line.strip() for line in (summary_line(dict(blind)), cue_line(dict(blind))) if line]
    hist = (report.get("histograms") or {}).get("difficulty") or {}
    if hist.get("count"):
        lines.append(f"Difficulty: mean {hist.get('mean')}, min {hist.get('min')}, max {hist.get('max')}")
    splits = (report.get("curriculum") or {}).get("splits")
    if isinstance(splits, Mapping):
        lines.append(
            "Curriculum splits (easy to hard): "
            + ", ".join(
                f"`{k}` {v.get('rows')} (difficulty {v.get('difficulty_min')}-{v.get('difficulty_max')})"
                for k, v in splits.items()
                if k != "train" and isinstance(v, Mapping)
            )
        )
    return lines


def _warnings(report: Optional[Mapping]) -> list[str]:
    """The build's warnings (evaluation-split images, a gate fallback), shown as notes on the card."""
    warnings = ((report or {}).get("provenance") or {}).get("warnings") or []
    return [f"Warning: {w}" for w in warnings if isinstance(w, str)]


def _config_view(summary: ConfigSummary) -> dict:
    prov = summary.provenance
    view = {
        "name": summary.name,
        "splits": summary.splits,
        "provenance": prov is not None,
        "where": f"{summary.data_dir}/" if summary.data_dir else "",
    }
    if prov is None:
        return view
    files = [
        (title, name, _json(obj))
        for title, name, obj in (
            ("Full build configuration", CONFIG_FILE, prov.config),
            ("Build report", REPORT_FILE, prov.report),
            ("Knowledge base manifest", INDEX_MANIFEST_FILE, prov.manifest),
        )
        if obj
    ]
    return {
        **view,
        "settings": _settings(prov),
        "stats": _stats(prov.report) if prov.report else [],
        "notes": [*_warnings(prov.report), *prov.notes],
        "files": files,
        "reproducible": bool(prov.config),
    }


@lru_cache(maxsize=2)
def _template(name: str = "dataset_card.md"):
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("realign_data.publish", "templates"), autoescape=False, keep_trailing_newline=False
    )
    return env.get_template(name)


def render_generated_section(repo_id: str, summaries: list[ConfigSummary], columns: Iterable[str]) -> str:
    """The Markdown block between the realign markers (markers included)."""
    columns = list(columns)
    shown = [c for c in list(COLUMN_DOCS) + [c for c in columns if c not in COLUMN_DOCS] if not columns or c in columns]
    return _template().render(
        repo_id=repo_id,
        columns=[(c, COLUMN_DOCS.get(c, "")) for c in shown],
        configs=[_config_view(s) for s in summaries],
        citation=CITATION,
    )


def render_pope_section(repo_id: str, summaries: list[ConfigSummary]) -> str:
    """The realign block of a pushed POPE question set (``realign-data pope``): what it is, how to evaluate."""
    from realign_data.evalsets import pope

    configs = []
    for s in summaries:
        cfg = (s.provenance.config if s.provenance is not None else None) or {}
        settings = ", ".join(
            f"{k} `{cfg[k]}`" for k in ("split", "num_images", "objects_per_image", "min_objects", "seed") if k in cfg
        )
        configs.append(
            {
                "name": s.name,
                "arg": "" if s.name == "default" else f', "{s.name}"',
                "sizes": ", ".join(f"`{k}` {v}" for k, v in s.splits.items()) or "see the files",
                "settings": settings or "unknown settings",
            }
        )
    return _template("pope_card.md").render(repo_id=repo_id, configs=configs, citation=pope.CARD_CITATION)


def merge_body(existing: str, generated: str, title: Optional[str] = None) -> str:
    """Replace the realign block of ``existing`` by ``generated``; keep everything else.

    No block yet: the generated block is appended after the existing text (a title is added first when the
    body is empty).
    """
    pattern = re.compile(re.escape(BEGIN_MARKER) + r".*?" + re.escape(END_MARKER), re.S)
    if pattern.search(existing):
        return pattern.sub(lambda _: generated, existing, count=1)
    body = existing.strip("\n")
    if not body:
        head = f"# {title}\n\n" if title else ""
        return f"\n{head}{generated}\n"
    return f"{existing.rstrip()}\n\n{generated}\n"


def merge_card(
    existing_readme: Optional[str],
    *,
    repo_id: str,
    provenance: Mapping[str, Optional[Provenance]],
    columns: Iterable[str],
    license: Optional[str] = None,
    pretty_name: Optional[str] = None,
    num_examples: Optional[int] = None,
) -> str:
    """Return the new README.md text: the existing card (YAML written by ``datasets`` included) + ours.

    YAML keys we own are merged: ``tags`` and ``task_categories`` (union), ``size_categories`` (recomputed),
    ``license`` (``license`` argument > value already on the card > licence of the corpus > ``other``),
    ``pretty_name`` (kept when present). Every other key and every line outside the markers is kept.
    """
    from huggingface_hub import DatasetCard

    from realign_data.evalsets import pope

    card = DatasetCard(existing_readme or "---\n---\n", ignore_metadata_errors=True)
    data = card.data
    known = [p.license for p in provenance.values() if p is not None and p.license]
    is_pope = any(p is not None and pope.is_pope_config(p.config) for p in provenance.values())  # realign-data pope
    data["license"] = license or data.get("license") or (known[0] if known else None) or "other"
    data["task_categories"] = _union(data.get("task_categories"), TASK_CATEGORIES)
    data["tags"] = _union(data.get("tags"), pope.CARD_TAGS if is_pope else TAGS)
    summaries = config_summaries(data, provenance)
    n = sum(sum(s.splits.values()) for s in summaries) or (num_examples or 0)
    data["size_categories"] = [size_category(n)]
    if not data.get("pretty_name"):
        data["pretty_name"] = pretty_name or (
            f"POPE question set ({repo_id.split('/')[-1]})"
            if is_pope
            else f"Re-Align dual-preference dataset ({repo_id.split('/')[-1]})"
        )
    generated = (
        render_pope_section(repo_id, summaries) if is_pope else render_generated_section(repo_id, summaries, columns)
    )
    card.text = merge_body(card.text, generated, title=data.get("pretty_name"))
    return str(card)


def _union(existing: Any, ours: list[str]) -> list[str]:
    out = [existing] if isinstance(existing, str) else list(existing or [])
    return out + [item for item in ours if item not in out]
