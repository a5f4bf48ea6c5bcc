"""The dataset card (README.md) of a Re-Align dataset on the Hub: metadata, generated body, merging.

The card has YAML front matter (``license``, ``task_categories``, ``tags``, ``size_categories`` and the
``configs`` / ``dataset_info`` entries that ``datasets`` writes) and a Markdown body. Everything this module
generates sits between two HTML comments::

    <!-- realign:begin -->
    ... what the dataset is, schema, provenance per config, how to load and train, citation ...
    <!-- realign:end -->

:func:`merge_card` replaces that block (or appends it when absent) and keeps every other line of the body and
every YAML key it does not own, so a card edited by hand on the Hub survives a re-push. No network here: the
Hub side lives in :mod:`realign_data.hub`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional

BEGIN_MARKER = "<!-- realign:begin -->"
END_MARKER = "<!-- realign:end -->"
TAGS = ["dpo", "rdpo", "re-align", "vision", "preference", "synthetic"]
TASK_CATEGORIES = ["image-text-to-text", "visual-question-answering"]

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

# Settings the card lists first, found by key name anywhere in the build configuration (first match wins).
KEY_SETTINGS: list[tuple[str, tuple[str, ...]]] = [
    ("Corpus", ("coco_root", "corpus", "corpus_root", "corpus_source", "source")),
    ("Knowledge base (index)", ("index", "index_dir", "index_path", "knowledge_base", "kb")),
    ("Seed source", ("seeds", "seed_source", "seed_path", "seeds_path", "seed_file")),
    ("Filler backend", ("filler", "filler_backend", "backend")),
    ("Filler model", ("model", "filler_model", "vlm", "vlm_model")),
    ("Masking (span kinds)", ("mask_kinds", "masker", "masking", "mask")),
    ("Top-k retrieved images", ("top_k", "topk", "num_retrieved")),
    ("Near-duplicate cut (image similarity)", ("max_similarity",)),
    ("Gate", ("gate",)),
    ("Gate model", ("gate_model", "sentence_model", "sentence_transformer")),
    ("Similarity threshold", ("sim_threshold", "similarity_threshold", "threshold", "gate_threshold")),
    ("Image negative", ("image_negative",)),
    ("Curriculum", ("curriculum",)),
    ("Difficulty image weight", ("difficulty_image_weight",)),
    ("Random seed", ("seed", "random_seed")),
]

REPORT_SETTINGS: list[tuple[str, tuple[str, ...]]] = [
    ("Seed records read", ("seeds_read", "num_seeds", "seeds_total", "records_read")),
    ("Pairs written", ("pairs_written", "num_pairs", "written", "rows_written")),
    ("Fills tried", ("fills_tried",)),
    ("Pairs dropped", ("dropped", "num_dropped", "drops_total")),
    ("Wall time (s)", ("elapsed_seconds", "seconds", "elapsed", "wall_time", "duration_s")),
    ("Throughput", ("throughput", "pairs_per_second", "pairs_per_s", "seeds_per_second")),
]
DROP_KEYS = ("drops", "drops_by_reason", "dropped_by_reason", "drop_reasons", "skipped_by_reason")


@dataclass
class Provenance:
    """What is known about how one config of the dataset was built (any part may be missing)."""

    config: Optional[dict] = None  # the build configuration (realign_build.json)
    report: Optional[dict] = None  # the build report (build_report.json)
    manifest: Optional[dict] = None  # the knowledge base manifest (index manifest.json)
    license: Optional[str] = None  # licence inferred from the corpus, when known
    notes: list[str] = field(default_factory=list)  # what could not be found, said plainly


@dataclass
class ConfigSummary:
    """One ``configs`` entry of the card as rendered in the body."""

    name: str
    data_dir: Optional[str]
    splits: dict[str, int]  # split -> num_examples (from dataset_info), may be empty
    provenance: Optional[Provenance]


# ---------------------------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------------------------
def size_category(n: int) -> str:
    """The Hub's ``size_categories`` label for ``n`` examples."""
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
              (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")]
    for bound, label in bounds:
        if n < bound:
            return label
    return "1B<n<10B"


def find_key(obj: Any, names: Iterable[str]) -> tuple[Optional[str], Any]:
    """First ``(key path, value)`` whose last key is one of ``names`` (breadth-first, names in priority order)."""
    names = list(names)
    for name in names:
        queue: list[tuple[str, Any]] = [("", obj)]
        while queue:
            prefix, node = queue.pop(0)
            if isinstance(node, Mapping):
                for k, v in node.items():
                    path = f"{prefix}.{k}" if prefix else str(k)
                    if str(k) == name and v not in (None, "", [], {}):
                        return path, v
                    if isinstance(v, Mapping):
                        queue.append((path, v))
    return None, None


def _fmt(value: Any, limit: int = 300) -> str:
    if isinstance(value, (dict, list)):
        text = json.dumps(value, ensure_ascii=False, sort_keys=False)
    else:
        text = str(value)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _json_block(obj: Any, limit: int = 20_000) -> str:
    text = json.dumps(obj, indent=2, ensure_ascii=False, default=str)
    if len(text) > limit:
        text = text[:limit] + "\n... (truncated; the full file is in the repository)"
    return f"```json\n{text}\n```"


def data_dir_of(config_entry: Mapping) -> Optional[str]:
    """``data`` for ``data_files: [{split: train, path: data/train-*}]``."""
    files = config_entry.get("data_files")
    paths: list[str] = []
    if isinstance(files, str):
        paths = [files]
    elif isinstance(files, list):
        for f in files:
            p = f.get("path") if isinstance(f, Mapping) else f
            paths.extend(p if isinstance(p, list) else [p])
    for p in paths:
        if isinstance(p, str) and "/" in p:
            return p.rsplit("/", 1)[0]
    return None


def config_summaries(card_data: Mapping, provenance: Mapping[str, Optional[Provenance]]) -> list[ConfigSummary]:
    """One summary per ``configs`` entry of the card, with split sizes from ``dataset_info``."""
    infos = card_data.get("dataset_info") or []
    if isinstance(infos, Mapping):
        infos = [infos]
    sizes: dict[str, dict[str, int]] = {}
    for info in infos:
        if isinstance(info, Mapping):
            name = info.get("config_name", "default")
            sizes[name] = {s.get("name"): int(s.get("num_examples") or 0) for s in info.get("splits") or []
                           if isinstance(s, Mapping)}
    out = []
    for entry in card_data.get("configs") or []:
        if not isinstance(entry, Mapping):
            continue
        name = entry.get("config_name", "default")
        out.append(ConfigSummary(name, data_dir_of(entry), sizes.get(name, {}), provenance.get(name)))
    return out


def total_examples(card_data: Mapping) -> int:
    infos = card_data.get("dataset_info") or []
    if isinstance(infos, Mapping):
        infos = [infos]
    return sum(int(s.get("num_examples") or 0) for info in infos if isinstance(info, Mapping)
               for s in info.get("splits") or [] if isinstance(s, Mapping))


# ---------------------------------------------------------------------------------------------------------------
# body
# ---------------------------------------------------------------------------------------------------------------
def _provenance_section(summary: ConfigSummary, repo_id: str) -> str:
    name = summary.name
    lines = [f"### Config `{name}`", ""]
    if summary.splits:
        lines.append("Splits: " + ", ".join(f"`{s}` ({n:,} pairs)" for s, n in summary.splits.items()) + ".")
        lines.append("")
    prov = summary.provenance
    if prov is None:
        lines += ["No Re-Align build provenance was uploaded for this config.", ""]
        return "\n".join(lines)
    where = f"{summary.data_dir}/" if summary.data_dir else ""
    cfg, report, manifest = prov.config, prov.report, prov.manifest
    rows: list[tuple[str, str]] = []
    # the build configuration first, then what the build resolved (report "provenance": filler, gate, masker)
    sources = [(f"{where}realign_build.json", cfg), (f"{where}build_report.json",
                                                     (report or {}).get("provenance"))]
    for label, keys in KEY_SETTINGS:
        for fname, src in sources:
            if not src:
                continue
            path, value = find_key(src, keys)
            if path is not None:
                rows.append((label, f"{_fmt(value)} (`{path}` in {fname.rsplit('/', 1)[-1]})"))
                break
    # the parameters of the visual negative that the build used (only those of its kind)
    negative = (report or {}).get("image_negative")
    if isinstance(negative, Mapping):
        for key, label in (("noise_step", "Noise step (of 1000)"), ("noise_schedule", "Noise schedule"),
                           ("crop_min_area", "Crop area kept, min"), ("crop_max_area", "Crop area kept, max"),
                           ("text_fill", "Text-rejected answer")):
            if key in negative:
                rows.append((label, f"{_fmt(negative[key])} (`image_negative.{key}` in build_report.json)"))
    if manifest:
        enc = manifest.get("encoder") or {}
        if enc:
            rows.append(("Image encoder (open_clip)",
                         f"`{enc.get('model')}`, pretrained `{enc.get('pretrained')}`, dim {enc.get('dim')}"))
        idx = manifest.get("index") or {}
        if manifest.get("count") is not None:
            rows.append(("Indexed corpus images", f"{manifest.get('count'):,}" if isinstance(manifest.get("count"), int)
                         else _fmt(manifest.get("count"))))
        if idx:
            rows.append(("FAISS index", f"`{idx.get('factory')}`, recall@10 {idx.get('recall_at_10')}, "
                                        f"search params `{_fmt(idx.get('search_params'))}`"))
        if manifest.get("source"):
            rows.append(("Corpus (from the index manifest)", _fmt(manifest.get("source"))))
    if prov.license:
        rows.append(("Corpus licence", f"`{prov.license}`"))
    if rows:
        lines += ["| setting | value |", "| --- | --- |"] + [f"| {a} | {b} |" for a, b in rows] + [""]
    if report:
        stats = []
        for label, keys in REPORT_SETTINGS:
            path, value = find_key(report, keys)
            if path is not None and not isinstance(value, Mapping):
                stats.append(f"- {label}: {_fmt(value)}")
        _, drops = find_key(report, DROP_KEYS)
        if isinstance(drops, Mapping) and drops:
            stats.append("- Drops by reason: " + ", ".join(f"`{k}` {_fmt(v)}" for k, v in drops.items()))
        elif isinstance(drops, Mapping):
            stats.append("- Drops by reason: none")
        negs = report.get("image_negatives")
        if isinstance(negs, Mapping) and negs.get("by_kind"):
            stats.append("- Image negatives by kind: " + ", ".join(f"`{k}` {_fmt(v)}" for k, v in negs["by_kind"].items()))
            if negs.get("region_source"):
                stats.append("- Region-noise regions: " + ", ".join(f"`{k}` {_fmt(v)}"
                                                                    for k, v in negs["region_source"].items()))
        hist = (report.get("histograms") or {}).get("difficulty")
        if isinstance(hist, Mapping) and hist.get("count"):
            stats.append(f"- Difficulty: mean {hist.get('mean')}, min {hist.get('min')}, max {hist.get('max')}")
        splits = (report.get("curriculum") or {}).get("splits") if isinstance(report.get("curriculum"), Mapping) \
            else None
        if isinstance(splits, Mapping):
            stats.append("- Curriculum splits (easy to hard): " + ", ".join(
                f"`{k}` {v.get('rows')} (difficulty {v.get('difficulty_min')}-{v.get('difficulty_max')})"
                for k, v in splits.items() if k != "train" and isinstance(v, Mapping)))
        if stats:
            lines += ["Build report:", ""] + stats + [""]
    for note in prov.notes:
        lines.append(f"> {note}")
    if prov.notes:
        lines.append("")
    if cfg:
        lines += [f"<details><summary>Full build configuration (<code>{where}realign_build.json</code>)</summary>",
                  "", _json_block(cfg), "", "</details>", ""]
    if report:
        lines += [f"<details><summary>Build report (<code>{where}build_report.json</code>)</summary>", "",
                  _json_block(report), "", "</details>", ""]
    if manifest:
        lines += [f"<details><summary>Knowledge base manifest (<code>{where}index_manifest.json</code>)</summary>",
                  "", _json_block(manifest), "", "</details>", ""]
    if cfg:
        lines += ["Reproduce this config:", "", "```bash",
                  f"hf download {repo_id} {where}realign_build.json --repo-type dataset --local-dir .",
                  f"realign-data build --config {where}realign_build.json --out rebuilt",
                  "```", ""]
    return "\n".join(lines)


def render_generated_section(repo_id: str, summaries: list[ConfigSummary], columns: Iterable[str]) -> str:
    """The Markdown block between the realign markers (markers included)."""
    columns = list(columns)
    names = [s.name for s in summaries] or ["default"]
    load_lines = []
    for n in names:
        arg = "" if n == "default" else f', "{n}"'
        load_lines.append(f'ds = load_dataset("{repo_id}"{arg}, split="train")')
    schema = ["| column | content |", "| --- | --- |"]
    for col in list(COLUMN_DOCS) + [c for c in columns if c not in COLUMN_DOCS]:
        if columns and col not in columns:
            continue
        schema.append(f"| `{col}` | {COLUMN_DOCS.get(col, '')} |")
    provenance = "\n".join(_provenance_section(s, repo_id) for s in summaries) or "No config found in the card.\n"
    return f"""{BEGIN_MARKER}
<!-- This block is regenerated by `realign-data push`; edit outside the realign markers. -->

## What this dataset is

A **Re-Align dual-preference dataset** for vision-language models, built with the `realign` toolkit
(`realign-data build`) following *Re-Align: Aligning Vision Language Models via Retrieval-Augmented
Direct Preference Optimization* ([arXiv 2502.13146](https://arxiv.org/abs/2502.13146)). Every row holds two
preference pairs that share the chosen response `y_w` to the instruction `x` on the original image `m`:

- a **text pair**: `y_w` vs the hallucinated `y_l`, both on `m`. `y_l` is made by masking the visual facts
  (objects, attributes, counts, relations) of `y_w` and letting a filler complete the masked text while looking
  at a *retrieved* similar image `m_r`; it is kept only when its sentence-embedding similarity to `y_w` is
  below the threshold;
- a **visual pair**: `y_w` on `m` vs `y_w` on `m_r` (`rejected_images`).

The rDPO loss trains on both with equal weight: `L = -log σ(r(y_w|x,m) - r(y_l|x,m)) - log σ(r(y_w|x,m) - r(y_w|x,m_r))`.

## Schema

The columns follow TRL's vision preference format (`images`, `prompt`, `chosen`, `rejected`) plus
`rejected_images` and provenance columns. The rejected image is the retrieved `m_r`, or, for builds with
`--image-negative region-noise|crop|noise`, the original perturbed (`y_l` is still filled from a retrieved
image, so every row stays dual). `--curriculum easy-to-hard` builds order `train` by `difficulty` and add the
splits `easy`, `medium` and `hard` (its terciles):

{chr(10).join(schema)}

## How it was built

{provenance}
## Load it

```python
from datasets import load_dataset

{chr(10).join(load_lines)}
print(ds[0]["chosen"], ds[0]["rejected"])
ds[0]["images"][0], ds[0]["rejected_images"][0]  # PIL images
```

## Train on it with TRL and rDPO

```python
import realign_trl  # registers loss_type="rdpo" with TRL
from trl import DPOConfig, DPOTrainer

args = DPOConfig(output_dir="out", loss_type="rdpo", beta=0.1, learning_rate=1e-6)
trainer = DPOTrainer(model=model, args=args, train_dataset=ds, processing_class=processor)
trainer.train()
```

or from the command line (same flags as `trl dpo`; `realign-trl dpo --help` lists them all):

```bash
realign-trl dpo --model_name_or_path llava-hf/llava-1.5-7b-hf --dataset_name {repo_id} \\
    --loss_type rdpo --beta 0.1 --learning_rate 1e-6 --output_dir out
```

## Citation

```bibtex
{CITATION}
```
{END_MARKER}"""


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


def merge_card(existing_readme: Optional[str], *, repo_id: str, provenance: Mapping[str, Optional[Provenance]],
               columns: Iterable[str], license: Optional[str] = None, pretty_name: Optional[str] = None,
               num_examples: Optional[int] = None) -> str:
    """Return the new README.md text: the existing card (YAML written by ``datasets`` included) + ours.

    YAML keys we own are merged: ``tags`` and ``task_categories`` (union), ``size_categories`` (recomputed),
    ``license`` (``license`` argument > value already on the card > licence of the corpus > ``other``),
    ``pretty_name`` (kept when present). Every other key and every line outside the markers is kept.
    """
    from huggingface_hub import DatasetCard

    from realign_data import pope

    card = DatasetCard(existing_readme or "---\n---\n", ignore_metadata_errors=True)
    data = card.data
    known = [p.license for p in provenance.values() if p is not None and p.license]
    is_pope = any(p is not None and pope.is_pope_config(p.config) for p in provenance.values())  # realign-data pope
    data["license"] = license or data.get("license") or (known[0] if known else None) or "other"
    data["task_categories"] = _union(data.get("task_categories"), TASK_CATEGORIES)
    data["tags"] = _union(data.get("tags"), pope.CARD_TAGS if is_pope else TAGS)
    n = total_examples(data.to_dict()) or (num_examples or 0)
    data["size_categories"] = [size_category(n)]
    if not data.get("pretty_name"):
        data["pretty_name"] = pretty_name or (f"POPE question set ({repo_id.split('/')[-1]})" if is_pope else
                                              f"Re-Align dual-preference dataset ({repo_id.split('/')[-1]})")
    summaries = config_summaries(data.to_dict(), provenance)
    generated = (pope.card_section(repo_id, summaries, BEGIN_MARKER, END_MARKER) if is_pope
                 else render_generated_section(repo_id, summaries, columns))
    card.text = merge_body(card.text, generated, title=data.get("pretty_name"))
    return str(card)


def _union(existing: Any, ours: list[str]) -> list[str]:
    out = [existing] if isinstance(existing, str) else list(existing or [])
    for item in ours:
        if item not in out:
            out.append(item)
    return out
