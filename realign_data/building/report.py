"""The build report (``build_report.json``) and its human summary.

Its shape is declared below (:class:`BuildReport` and the ``TypedDict`` s it is made of), with the keys as written.
The report holds: seeds read, pairs written, drops by reason, fills tried and the fills not kept by reason
(``fills_rejected``: the gate and the quality filters of ``quality.py``), failed requests (count and
examples), seeds per evaluation split (``evaluation_seeds``, see ``splits.py``), histograms of retrieval score,
text similarity, difficulty and the retrieval rank used, the visual negative and the curriculum, throughput, the
chunk list (for resume/merge), the build config and provenance (knowledge base, encoder, masker, filler, gate,
warnings such as an offline fallback or evaluation-split images, library versions).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Optional, TypedDict, Union

from realign_data.building.negatives import NUM_DIFFUSION_STEPS
from realign_data.building.output import REPORT_FILE, TRANSIENT_DROPS, reason_order
from realign_data.building.separability import cue_line, summary_line
from realign_data.runtime.atomic import atomic_write_json

MAX_FAILURE_EXAMPLES = 100
DIFFICULTY_FORMULA = "w * image_closeness + (1 - w) * clip(text_similarity, 0, 1)"


# ------------------------------------------------------------------ the report's shape (JSON keys as written)
class Histogram(TypedDict, total=False):
    """``count`` and ``bins`` (``[lo, hi, count]``, non-empty bins only); ``min``/``max``/``mean`` when count > 0."""

    count: int
    min: float
    max: float
    mean: float
    bins: list[list[float]]


class Histograms(TypedDict):
    retrieval_score: Histogram
    text_similarity: Histogram
    retrieval_rank: dict[str, int]  # rank used (as text) -> pairs
    difficulty: Histogram


class FailureRecord(TypedDict, total=False):
    """A failed request of a chunk: the seed, why, and (fills) the retrieval rank, image and attempts."""

    seed: str
    reason: str
    error: str
    rank: int
    retrieved: str
    attempts: int


class Failures(TypedDict):
    count: int
    examples: list[FailureRecord]  # the first MAX_FAILURE_EXAMPLES


class ImageNegatives(TypedDict, total=False):
    by_kind: dict[str, int]
    region_source: dict[str, int]  # region-noise: where the perturbed region came from


class NegativeSummary(TypedDict, total=False):
    """``image_negative``: the kind and the parameters it uses (:func:`negative_summary`)."""

    kind: str
    noise_step: int
    noise_schedule: str
    num_diffusion_steps: int
    crop_min_area: float
    crop_max_area: float
    text_fill: str


class CurriculumSplit(TypedDict):
    rows: int
    difficulty_min: float
    difficulty_max: float


class CurriculumSummary(TypedDict, total=False):
    order: Optional[str]
    difficulty_image_weight: float
    difficulty: str  # the formula
    splits: dict[str, CurriculumSplit]
    note: str


class Launch(TypedDict):
    processes: int
    process_group: Optional[str]  # the torch.distributed backend that synchronised them


class Throughput(TypedDict, total=False):
    seconds_total: float
    seconds_building: float
    seeds_built_now: int
    pairs_built_now: int
    resumed_chunks: int
    redone_chunks: int
    pairs_per_second: Optional[float]
    seeds_per_second: Optional[float]


class ShardInfo(TypedDict):
    index: int
    num_shards: int


class ChunkCounts(TypedDict):
    """What :func:`aggregate` sums from the chunk markers: the part every report has (a shard's too)."""

    seeds_read: int
    pairs_written: int
    drops: dict[str, int]  # reason -> seeds, in report order
    drops_transient: int  # a re-run retries these
    drops_permanent: int
    fills_tried: int
    fills_rejected: dict[str, int]  # fills not kept, by gate / quality reason
    evaluation_seeds: dict[str, int]  # seeds whose image comes from an evaluation split
    failures: Failures
    histograms: Histograms
    image_negatives: ImageNegatives


class BuildReport(ChunkCounts, total=False):
    """``build_report.json``. A finished build adds everything from ``blind_separability`` to ``provenance``, with
    ``complete`` True, then ``throughput`` (and ``merged_from`` for a merge); a ``--shard-index`` process's report
    has ``complete`` False, ``shard``, ``chunks`` as a count, ``chunks_missing`` and ``num_chunks``. An on-policy
    build's chunk counts have ``onpolicy`` too (:func:`aggregate` adds it after ``image_negatives``)."""

    onpolicy: dict[str, Any]  # answers, answers_checked, answers_hallucinated, pairs, hallucinations by kind

    blind_separability: Optional[dict[str, Any]]  # realign_data.building.separability
    complete: bool
    format: str
    launch: Launch
    chunks: Union[list[list[int]], int]  # [chunk, rows] of a finished build; a shard's count of chunks done
    chunk_size: int
    image_negative: NegativeSummary
    row_order: str
    curriculum: CurriculumSummary
    config: dict[str, Any]  # BuildConfig.to_dict()
    provenance: dict[str, Any]  # realign_data.publish.provenance
    throughput: Throughput
    merged_from: list[str]
    shard: ShardInfo
    chunks_missing: int
    num_chunks: int


def histogram(values: list[float], lo: float, hi: float, bins: int) -> Histogram:
    """Fixed-width histogram over [lo, hi] (values outside are clamped into the end bins) + summary stats."""
    if not values:
        return {"count": 0, "bins": []}
    width = (hi - lo) / bins
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, max(0, int((v - lo) / width)))] += 1
    return {
        "count": len(values),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
        "mean": round(sum(values) / len(values), 4),
        "bins": [[round(lo + i * width, 3), round(lo + (i + 1) * width, 3), c] for i, c in enumerate(counts) if c],
    }


def aggregate(metas: list[dict], stats: dict[str, list]) -> ChunkCounts:
    """Sum per-chunk markers (``seeds, rows, drops, failures, fills``) and histogram the row statistics."""
    drops: Counter = Counter()
    failures: list[FailureRecord] = []
    failure_count = 0
    evaluation_seeds: Counter = Counter()  # seeds whose image comes from an evaluation split (splits.py)
    fills_rejected: Counter = Counter()  # fills not kept, by gate / quality reason (quality.py)
    onpolicy: Counter = Counter()  # an on-policy build's counts (onpolicy.py); hallucinations by kind apart
    facts: Counter = Counter()
    for m in metas:
        if "onpolicy" in m:
            onpolicy.update({k: v for k, v in m["onpolicy"].items() if k != "hallucinations"})
            facts.update(m["onpolicy"].get("hallucinations", {}))
        drops.update(m.get("drops", {}))
        failures += m.get("failures", [])
        failure_count += m.get("failure_count", len(m.get("failures", [])))
        evaluation_seeds.update(m.get("evaluation_seeds", {}))
        fills_rejected.update(m.get("fills_rejected", {}))
    ranks = Counter(str(r) for r in stats.get("retrieval_rank", []))
    kinds = Counter(str(k) for k in stats.get("image_negative", []))
    sources = Counter(
        json.loads(params or "{}").get("region_source", "unknown")
        for kind, params in zip(stats.get("image_negative", []), stats.get("negative_params", []))
        if kind == "region-noise"
    )
    extra = {"onpolicy": {**dict(sorted(onpolicy.items())), "hallucinations": dict(facts)}} if facts else {}
    return {
        "seeds_read": sum(m.get("seeds", 0) for m in metas),
        "pairs_written": sum(m.get("rows", 0) for m in metas),
        "drops": dict(sorted(drops.items(), key=lambda kv: reason_order(kv[0]))),
        "drops_transient": sum(v for k, v in drops.items() if k in TRANSIENT_DROPS),  # a re-run retries these
        "drops_permanent": sum(v for k, v in drops.items() if k not in TRANSIENT_DROPS),
        "fills_tried": sum(m.get("fills", 0) for m in metas),
        "fills_rejected": dict(sorted(fills_rejected.items(), key=lambda kv: reason_order(kv[0]))),
        "evaluation_seeds": dict(sorted(evaluation_seeds.items())),
        "failures": {"count": failure_count, "examples": failures[:MAX_FAILURE_EXAMPLES]},
        "histograms": {
            "retrieval_score": histogram(stats.get("retrieval_score", []), -1.0, 1.0, 40),
            "text_similarity": histogram(stats.get("text_similarity", []), -1.0, 1.0, 40),
            "retrieval_rank": dict(sorted(ranks.items(), key=lambda kv: int(kv[0]))),
            "difficulty": histogram(stats.get("difficulty", []), 0.0, 1.0, 20),
        },
        "image_negatives": {"by_kind": dict(kinds), **({"region_source": dict(sources)} if sources else {})},
        **extra,  # type: ignore[typeddict-item]
    }


def write_report(out: Path, report: BuildReport) -> BuildReport:
    from realign_data.runtime.redact import redact_tree

    atomic_write_json(Path(out) / REPORT_FILE, redact_tree(report))  # no URL credentials in any recorded error
    return report


def negative_summary(config: Any) -> NegativeSummary:
    """The visual-negative kind and the parameters it uses (for the report and the card)."""
    kind = config.image_negative
    params: NegativeSummary = {"kind": kind}
    if kind in ("region-noise", "noise"):
        params.update(
            {
                "noise_step": config.noise_step,
                "noise_schedule": config.noise_schedule,
                "num_diffusion_steps": NUM_DIFFUSION_STEPS,
            }
        )
    if kind == "crop":
        params.update({"crop_min_area": config.crop_min_area, "crop_max_area": config.crop_max_area})
    if kind != "retrieval":
        params["text_fill"] = "mask-and-fill from a retrieved image (fill_image_id)"
    return params


def curriculum_summary(config: Any, split_info: Optional[dict[str, CurriculumSplit]]) -> CurriculumSummary:
    d: CurriculumSummary = {
        "order": config.curriculum,
        "difficulty_image_weight": config.difficulty_image_weight,
        "difficulty": DIFFICULTY_FORMULA,
    }
    if split_info:
        d["splits"] = split_info
    return d


def _bar(n: int, total: int, width: int = 24) -> str:
    return "#" * max(1 if n else 0, round(width * n / total)) if total else ""


def format_summary(report: BuildReport) -> str:
    """A short human summary of a build report."""
    lines = [
        f"Seeds read: {report['seeds_read']}   pairs written: {report['pairs_written']}   "
        f"fills tried: {report.get('fills_tried', 0)}"
    ]
    drops = report.get("drops", {})
    if drops:
        lines.append("Dropped: " + ", ".join(f"{k} {v}" for k, v in drops.items()))
    else:
        lines.append("Dropped: none")
    onp = report.get("onpolicy")
    if onp:
        kinds = ", ".join(f"{k} {v}" for k, v in onp.get("hallucinations", {}).items())
        lines.append(
            f"On-policy: {onp.get('answers_checked', 0)} answers checked of {onp.get('answers', 0)} drawn, "
            f"{onp.get('answers_hallucinated', 0)} with hallucinations ({kinds}), {onp.get('pairs', 0)} pairs"
        )
    rejected = report.get("fills_rejected", {})
    if rejected:
        lines.append("Fills not kept: " + ", ".join(f"{k} {v}" for k, v in rejected.items()))
    blind = report.get("blind_separability")
    lines += [line for line in (summary_line(blind), cue_line(blind)) if line]
    if report.get("drops_transient"):
        lines.append(
            f"{report['drops_transient']} seeds failed for a transient reason (the filler service): run the "
            "same command again to retry them"
        )
    fc = report.get("failures", {}).get("count", 0)
    if fc:
        lines.append(f"Failed fill/generation requests: {fc} (see build_report.json)")
    h = report.get("histograms", {})
    for hist, label in (
        (h.get("retrieval_score", {}), "retrieval score"),
        (h.get("text_similarity", {}), "text similarity"),
    ):
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
        lines.append(
            f"Curriculum {cur.get('order')}: "
            + ", ".join(
                f"{k} {v['rows']} [{v['difficulty_min']:.3f}, {v['difficulty_max']:.3f}]"
                for k, v in cur["splits"].items()
                if k != "train"
            )
        )
    elif cur.get("note"):
        lines.append(f"Curriculum: {cur['note']}")
    t, procs = report.get("throughput", {}), report.get("launch", {}).get("processes", 1)
    if t.get("pairs_per_second") is not None:
        lines.append(
            f"Throughput: {t['pairs_per_second']:.1f} pairs/s, {t['seeds_per_second']:.1f} seeds/s "
            f"({t['seconds_building']:.1f} s building, {t['seconds_total']:.1f} s total"
            f"{', ' + str(t['resumed_chunks']) + ' chunks resumed' if t.get('resumed_chunks') else ''}"
            f"{', figures of rank 0 of ' + str(procs) if procs > 1 else ''})"
        )
    prov = report.get("provenance", {})
    gate = prov.get("gate", {})
    if gate:
        lines.append(
            f"Gate: {gate.get('gate')}{' (' + gate['model'] + ')' if gate.get('model') else ''} "
            f"< {gate.get('threshold')}   filler: {prov.get('filler', {}).get('filler')}"
        )
    if prov.get("knowledge_base", {}).get("random_encoder"):
        lines.append(
            "Note: the knowledge base was embedded with a randomly initialised encoder (no pretrained "
            "CLIP weights), so retrieval is arbitrary"
        )
    for w in prov.get("warnings", []):
        lines.append(f"Note: {w}")
    return "\n".join(lines)
