"""The study's outputs: invariants per seed, tables of mean ± std over seeds (markdown), and the figure."""

from __future__ import annotations

import hashlib
import json
import math
import statistics
from pathlib import Path

from study_onpolicy import ARM as ONPOLICY_ARM
from study_onpolicy import ROUNDS_DIR as ONPOLICY_ROUNDS
from study_prefs import ARM_LABELS, ARM_ORDER
from study_world import HELDOUT_SPLIT

POPE_SPLITS = ("random", "popular", "adversarial")
POPE_COLUMNS = [
    (f"pope_{s}_{m}", f"{s} {name}")
    for s in POPE_SPLITS
    for m, name in (("f1", "F1"), ("accuracy", "acc"), ("yes_ratio", "yes"))
]
CHAIR_COLUMNS = [("chair_s", "CHAIR_s ↓"), ("chair_i", "CHAIR_i ↓"), ("object_recall", "recall ↑")]
DIAG_COLUMNS = [("missing_partner_named", "missing partner named ↓"), ("other_absent_named", "other absent named ↓")]
TRAIN_COLUMNS = [
    ("rewards/margins", "text margin"),
    ("rewards/accuracies", "text acc"),
    ("rewards/visual_margins", "visual margin"),
    ("rewards/visual_accuracies", "visual acc"),
    ("rewards/chosen", "chosen reward"),
]


def check_invariants(seed_dir: Path, record: dict, sizes) -> dict:
    """Every arm trained (finite losses, the planned steps), every metric finite, and no held-out image in the SFT
    data, the knowledge base or either preference build (by image id and by file bytes)."""
    world = seed_dir / "world" / "all"
    held = json.loads((world / "annotations" / f"instances_{HELDOUT_SPLIT}.json").read_text())["images"]
    held_ids = {im["id"] for im in held}
    held_hashes = {hashlib.sha256((world / HELDOUT_SPLIT / im["file_name"]).read_bytes()).hexdigest() for im in held}
    failures = []
    if set(record["sft"]["image_ids"]) & held_ids:
        failures.append("held-out images in the SFT data")
    from datasets import Image, List

    from realign_data.building.output import load_built
    from realign_data.kb.knowledge_base import KnowledgeBase

    kb = KnowledgeBase.load(seed_dir / "clip" / "index")
    if {kb.record(i)["coco_image_id"] for i in kb.ids} & held_ids:
        failures.append("held-out images in the knowledge base")
    builds = {b: seed_dir / "prefs" / b for b in ("retrieval", "region-noise")}
    for r in record["arms"].get(ONPOLICY_ARM, {}).get("rounds", []):  # the on-policy arm's own builds
        builds[f"on-policy round {r['round']}"] = seed_dir / "arms" / ONPOLICY_ROUNDS / f"round-{r['round']}" / "data"
    for build, path in builds.items():
        ds = load_built(path)
        used = {Path(v).name for col in ("image_id", "rejected_image_id") for v in ds[col] if v}  # KB ids: split/file
        if used & {im["file_name"] for im in held}:
            failures.append(f"held-out images in the {build} preference data (by id)")
        for col in ("images", "rejected_images"):
            raw = ds.cast_column(col, List(Image(decode=False)))
            if any(
                hashlib.sha256(im["bytes"]).hexdigest() in held_hashes
                for ims in raw[col]
                for im in ims
                if im.get("bytes")
            ):
                failures.append(f"held-out image bytes in the {build} preference data ({col})")
    for arm, arm_record in record["arms"].items():
        losses = [h["loss"] for h in arm_record["log"]]
        if not losses or not all(math.isfinite(x) for x in losses) or arm_record["global_step"] != sizes.pref_steps:
            failures.append(f"arm {arm} did not train {sizes.pref_steps} steps with finite losses")
    for arm, ev in record["eval"].items():
        bad = [k for k, v in ev["flat"].items() if not math.isfinite(v)]
        if bad or len(ev["flat"]) < len(POPE_COLUMNS) + len(CHAIR_COLUMNS):
            failures.append(f"arm {arm}: missing or non-finite metrics {bad}")
    return {"ok": not failures, "failures": failures, "heldout_images": len(held_ids)}


def _values(records: list[dict], arm: str, key: str) -> list[float]:
    out = []
    for r in records:
        ev = r["eval"].get(arm)
        if ev is None:
            continue
        value = ev["flat"].get(key, ev["partner"].get(key))
        if key in TRAIN_KEYS:
            value = r["arms"].get(arm, {}).get("last_quarter", {}).get(key)
        if value is not None and math.isfinite(float(value)):  # NaN: no case in this seed (e.g. no missing partner)
            out.append(float(value))
    return out


TRAIN_KEYS = {k for k, _ in TRAIN_COLUMNS}


def mean_std(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def _table(records: list[dict], columns: list[tuple[str, str]], arms=ARM_ORDER) -> str:
    head = "| arm | " + " | ".join(name for _, name in columns) + " |"
    rule = "|---|" + "---|" * len(columns)
    rows = [
        f"| {ARM_LABELS[a]} | " + " | ".join(mean_std(_values(records, a, k)) for k, _ in columns) + " |" for a in arms
    ]
    return "\n".join([head, rule, *rows])


def _partner_table(records: list[dict], arms=ARM_ORDER) -> str:
    """Arms × absent partner: the share of captions naming it (mean over the seeds that had such a case)."""
    partners = sorted({p for r in records for ev in r["eval"].values() for p in ev["partner"].get("per_partner", {})})

    def mean(arm: str, partner: str) -> str:
        values = [
            r["eval"][arm]["partner"]["per_partner"][partner]
            for r in records
            if arm in r["eval"] and partner in r["eval"][arm]["partner"].get("per_partner", {})
        ]
        return f"{statistics.mean(values):.3f}" if values else "–"

    rows = [f"| {ARM_LABELS[a]} | " + " | ".join(mean(a, p) for p in partners) + " |" for a in arms]
    return "\n".join(["| arm | " + " | ".join(partners) + " |", "|---|" + "---|" * len(partners), *rows])


PAIRED_COLUMNS = [
    ("pope_adversarial_accuracy", "POPE adv. acc ↑"),
    ("pope_adversarial_f1", "POPE adv. F1 ↑"),
    ("chair_i", "CHAIR_i ↓"),
    ("chair_s", "CHAIR_s ↓"),
    ("object_recall", "recall ↑"),
    ("missing_partner_named", "missing partner ↓"),
]


def paired(records: list[dict], arm: str, base: str, key: str) -> list[float]:
    """Per seed ``arm − base`` on ``key``, over the seeds where both are finite."""
    out = []
    for r in records:
        a, b = _values([r], arm, key), _values([r], base, key)
        if a and b:
            out.append(a[0] - b[0])
    return out


PAIRED_COMPARISONS = (("rdpo", "dpo"), ("rdpo", "sft"), ("dpo", "sft"), (ONPOLICY_ARM, "rdpo"))


def _paired_table(records: list[dict], pairs=PAIRED_COMPARISONS) -> str:
    """Mean per-seed difference between two arms, and in how many seeds it has the sign of the mean: the
    comparison a reader can trust with few seeds (the same world, SFT model and rows on both sides)."""

    def cell(arm: str, base: str, key: str) -> str:
        d = paired(records, arm, base, key)
        if not d:
            return "–"
        mean = statistics.mean(d)
        agree = sum((x > 0) == (mean > 0) and x != 0 for x in d)
        return f"{mean:+.3f} ({agree}/{len(d)})"

    head = "| difference | " + " | ".join(name for _, name in PAIRED_COLUMNS) + " |"
    rows = [
        f"| {arm} − {base} | " + " | ".join(cell(arm, base, k) for k, _ in PAIRED_COLUMNS) + " |" for arm, base in pairs
    ]
    return "\n".join([head, "|---|" + "---|" * len(PAIRED_COLUMNS), *rows])


ROUND_COLUMNS = [
    ("pope_adversarial_accuracy", "POPE adversarial acc"),
    ("chair_i", "CHAIR_i ↓"),
    ("object_recall", "recall ↑"),
    ("missing_partner_named", "missing partner named ↓"),
]


def _rounds_section(records: list[dict]) -> list[str]:
    """The on-policy arm round by round (round 0: the SFT model): what each build found and how the model moved."""
    rounds = [r["arms"][ONPOLICY_ARM]["rounds"] for r in records if ONPOLICY_ARM in r.get("arms", {})]
    if not rounds:
        return []
    head = "| round | captions with a hallucination | pairs | rows, steps | " + " | ".join(n for _, n in ROUND_COLUMNS)
    lines = ["### The on-policy arm, round by round (round 0: the SFT model)", "", head + " |"]
    lines.append("|---|---|---|---|" + "---|" * len(ROUND_COLUMNS))
    sft = [{"eval": {"x": r["eval"]["sft"]}} for r in records if "sft" in r["eval"] and ONPOLICY_ARM in r["arms"]]
    lines.append("| 0 | – | – | – | " + " | ".join(mean_std(_values(sft, "x", k)) for k, _ in ROUND_COLUMNS) + " |")
    for k in range(max(len(x) for x in rounds)):
        at = [x[k] for x in rounds if len(x) > k]
        counts = [a["build"].get("onpolicy") or {} for a in at]
        share = [c["answers_hallucinated"] / c["answers_checked"] for c in counts if c.get("answers_checked")]
        evals = [{"eval": {"x": a["eval"]}} for a in at]
        lines.append(
            f"| {at[0]['round']} | {mean_std(share)} | {statistics.mean(a['build']['pairs'] for a in at):.0f} | "
            f"{statistics.mean(a['rows'] for a in at):.0f}, {at[0]['steps']} | "
            + " | ".join(mean_std(_values(evals, "x", key)) for key, _ in ROUND_COLUMNS)
            + " |"
        )
    return lines + [""]


def _interval_table(intervals: dict) -> list[str]:
    """The paired differences' 95 % bootstrap intervals over images (``study_bootstrap.paired_intervals``)."""
    if not intervals:
        return []
    from study_bootstrap import METRIC_FILES

    names = dict(PAIRED_COLUMNS)
    keys = list(METRIC_FILES)
    lines = [
        "### Paired differences: 95 % bootstrap interval over the held-out images (models fixed; excludes 0 = "
        "larger than the image-sampling noise)",
        "",
        "| difference | " + " | ".join(names[k] for k in keys) + " |",
        "|---|" + "---|" * len(keys),
    ]
    for name, found in intervals.items():
        cells = [f"[{found[k][0]:+.3f}, {found[k][1]:+.3f}]" if k in found else "–" for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines + [""]


def tables(records: list[dict], sizes, intervals: dict | None = None) -> str:
    """The markdown tables: POPE, CHAIR + the partner diagnostic, paired differences (with their bootstrap
    intervals, where given), training diagnostics, encoder and SFT."""
    n = len(records)
    parts = [
        f"Mean ± std over {n} seed{'s' if n != 1 else ''} ({', '.join(str(r['seed']) for r in records)}); "
        f"held-out images: {sizes.eval_images} per seed.",
        "",
        "### POPE (held-out images)",
        "",
        _table(records, POPE_COLUMNS),
        "",
        "### CHAIR and the co-occurrence diagnostic (held-out captions)",
        "",
        _table(records, CHAIR_COLUMNS + DIAG_COLUMNS),
        "",
        "### Paired differences per seed (mean, and seeds whose difference has that sign)",
        "",
        _paired_table(records),
        "",
        *_interval_table(intervals or {}),
        *_rounds_section(records),
        "### Per object: how often a caption names the absent partner of an object it shows",
        "",
        _partner_table(records),
        "",
        "### Training diagnostics (mean over the last quarter of the logged steps)",
        "",
        _table(records, TRAIN_COLUMNS, arms=ARM_ORDER[1:]),
        "",
        "### Retrieval encoder and SFT",
        "",
        "| seed | top-1 category Jaccard | random-image Jaccard | top-1 same category set | "
        "preference pairs (retrieval / region-noise) | rows per arm | SFT loss first → last | "
        "SFT yes/no accuracy on its training questions (yes ratio) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        q, c, fit = r.get("retrieval"), r.get("sft", {}).get("curve"), r.get("sft_fit")
        prefs, rows = r.get("prefs"), next((a["rows"] for a in r.get("arms", {}).values()), None)
        parts.append(
            " | ".join(
                [
                    f"| {r['seed']}",
                    *(
                        (f"{q['top1_jaccard']:.3f}", f"{q['random_jaccard']:.3f}", f"{q['top1_same_categories']:.3f}")
                        if q
                        else ("–",) * 3
                    ),
                    f"{prefs['retrieval']['pairs']} / {prefs['region-noise']['pairs']}" if prefs else "–",
                    str(rows or "–"),
                    f"{c[0]['loss']:.3f} → {c[-1]['loss']:.3f}" if c else "–",
                    f"{fit['accuracy']:.3f} ({fit['yes_ratio']:.2f}) |" if fit else "– |",
                ]
            )
        )
    partial = [f"seed {r['seed']}: {', '.join(r['missing'])}" for r in records if r.get("missing")]
    if partial:
        parts += ["", "**Partial results** (stages not finished yet: " + "; ".join(partial) + ")."]
    return "\n".join(parts) + "\n"


def collect_record(seed_dir: Path, seed: int) -> dict:
    """A seed's record from the ``done.json`` of its finished stages (a run still going, or killed), with the
    list of ``missing`` stages."""
    from study_prefs import ARMS
    from study_stages import done

    record: dict = {"seed": seed, "arms": {}, "eval": {}, "missing": []}
    for key, path in (
        ("world", "world"),
        ("clip", "clip"),
        ("sft", "sft"),
        ("prefs", "prefs"),
        ("sft_fit", "eval/sft_training_questions"),
    ):
        value = done(seed_dir / path)
        if value is None:
            record["missing"].append(key)
        else:
            record[key] = value
    verdict = done(seed_dir / "sft_verdict")  # the verdict phase (absent with verdict_steps=0)
    if verdict is not None:
        record["sft_verdict"] = verdict
    if "clip" in record:
        record["retrieval"] = record["clip"]["retrieval"]
    for arm in ARM_ORDER:
        if arm in ARMS:
            value = done(seed_dir / "arms" / arm)
            if value is None:
                record["missing"].append(f"arm {arm}")
            else:
                record["arms"][arm] = value
        value = done(seed_dir / "eval" / arm)
        if value is None:
            record["missing"].append(f"eval {arm}")
        else:
            record["eval"][arm] = value
    return record


def figure(records: list[dict], out: Path) -> Path:
    """Bars of mean ± std per arm that ran: POPE accuracy per split (against chance, 0.5: POPE asks as many yes as
    no questions) and adversarial F1, then CHAIR_s, CHAIR_i, recall, missing partner named; the SFT level as a
    dotted line across each group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [(f"pope_{s}_accuracy", f"POPE {s}\naccuracy ↑") for s in POPE_SPLITS] + [
        ("pope_adversarial_f1", "POPE adversarial\nF1 ↑"),
        ("chair_s", "CHAIR_s ↓"),
        ("chair_i", "CHAIR_i ↓"),
        ("object_recall", "recall ↑"),
        ("missing_partner_named", "missing partner\nnamed ↓"),
    ]
    fig, ax = plt.subplots(figsize=(12, 4.6))
    shown = [arm for arm in ARM_ORDER if any(_values(records, arm, m) for m, _ in metrics)]  # arms that ran
    width = 0.8 / max(1, len(shown))
    for k, arm in enumerate(shown):
        vals = [_values(records, arm, m) for m, _ in metrics]
        means = [statistics.mean(v) if v else float("nan") for v in vals]
        errs = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in vals]
        xs = [i - 0.4 + width * (k + 0.5) for i in range(len(metrics))]
        ax.bar(xs, means, width=width, yerr=errs, capsize=2, label=ARM_LABELS[arm])
        if arm == "sft":  # the SFT level as a line across each group: where an arm's bar should be compared
            for i, mean in enumerate(means):
                label = "SFT level" if i == 0 else None
                ax.hlines(mean, i - 0.42, i + 0.42, colors="tab:blue", linestyles="dotted", linewidth=1.2, label=label)
    ax.hlines(
        0.5, -0.45, len(POPE_SPLITS) - 0.55, colors="black", linestyles="dashed", linewidth=1, label="POPE chance"
    )
    ax.set_xticks(range(len(metrics)), [name for _, name in metrics], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(f"Synthetic world, held-out images: mean ± std over {len(records)} seed(s)")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=6, frameon=False)  # off the bars
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def learning_curves(records: list[dict], out: Path) -> Path:
    """The base model's learning curve per seed: TRL's SFT loss (the mean over completion tokens), then, dashed, the
    verdict phase's (the verdict's cross-entropy plus the caption loss) from the step where SFT ended."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    for r in records:
        curve = r.get("sft", {}).get("curve") or []
        label = f"seed {r['seed']}"
        (line,) = ax.plot([p["step"] for p in curve], [p["loss"] for p in curve], label=label if curve else None)
        verdict = r.get("sft_verdict", {}).get("curve") or []
        start = r.get("sft", {}).get("steps", 0)
        xs, ys = [start + p["step"] for p in verdict], [p["loss"] for p in verdict]
        ax.plot(xs, ys, "--", color=line.get_color(), label=None if curve else label)
    ax.set_xlabel("step (SFT, then the verdict phase, dashed)")
    ax.set_ylabel("training loss (log scale)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
