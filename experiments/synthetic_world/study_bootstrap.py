"""A paired bootstrap over the held-out images for the difference between two arms.

Why: with three seeds, "2 of 3 seeds agree in sign" cannot tell a real difference of 0.01 from the luck of which
200 images were drawn. Each draw resamples every seed's held-out images with replacement, *the same images for
both arms* (the pairing removes what the images share), recomputes each metric from the evaluation's own
per-caption and per-question records with the evaluation's own functions, and averages the per-seed differences,
as the paired table does. The 95 % interval is over image sampling only: it holds the trained models fixed, so
it says nothing of seed-to-seed training noise (the sign count does).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from realign_trl.eval.scoring import chair_metrics, pope_metrics

DRAWS = 2000
# metric -> the evaluation's records file it is computed from
METRIC_FILES = {
    "pope_adversarial_accuracy": "pope_adversarial.jsonl",
    "chair_i": "chair.jsonl",
    "object_recall": "chair.jsonl",
    "missing_partner_named": "chair.jsonl",
}


def _scored(path: Path) -> dict:
    """``{image_id: [records]}`` of an evaluation's records file, without the failed requests (never scored)."""
    by_image: dict = {}
    with path.open() as f:
        for line in f:
            r = json.loads(line)
            if "error" not in r:
                by_image.setdefault(r["image_id"], []).append(r)
    return by_image


def _counts(key: str, records: list[dict], pairs) -> tuple[float, float]:
    """(numerator, denominator) of ``key`` over ``records``, from the evaluation's own scoring functions: every
    metric here is a ratio of sums over images, so a resample's value is the ratio of its images' summed counts."""
    from study_eval import partner_hallucination

    if key == "pope_adversarial_accuracy":
        m = pope_metrics(records)
        return m["tp"] + m["tn"], m["questions"]
    if key == "missing_partner_named":
        m = partner_hallucination(records, pairs)
        return m["named"], m["cases"]
    m = chair_metrics(records)
    if key == "chair_i":
        return m["hallucinated_mentions"], m["mentions"]
    return m["recalled_objects"], m["ground_truth_objects"]


def paired_interval(
    seed_dirs: list[Path], arm: str, base: str, key: str, pairs, draws: int = DRAWS, rng_seed: int = 0, load=_scored
) -> tuple[float, float] | None:
    """The 95 % percentile interval of the mean over seeds of ``arm − base`` on ``key``, resampling each seed's
    images (the ones both evaluations scored); None where a seed lacks either evaluation. ``load`` reads a records
    file (:func:`paired_intervals` passes one that reads each file once)."""
    import numpy as np

    name = METRIC_FILES[key]
    rng = np.random.default_rng(rng_seed)
    diffs = []
    for d in seed_dirs:
        a, b = d / "eval" / arm / name, d / "eval" / base / name
        if not (a.is_file() and b.is_file()):
            return None
        ra, rb = load(a), load(b)
        ids = sorted(set(ra) & set(rb))
        if not ids:
            return None
        # per image: numerator and denominator for each arm -> (images, 4)
        counts = np.array([[*_counts(key, ra[i], pairs), *_counts(key, rb[i], pairs)] for i in ids], dtype=float)
        weights = rng.multinomial(len(ids), [1 / len(ids)] * len(ids), size=draws)  # (draws, images)
        sums = weights @ counts
        with np.errstate(invalid="ignore", divide="ignore"):  # 0/0: no case in this draw
            diffs.append(sums[:, 0] / sums[:, 1] - sums[:, 2] / sums[:, 3])
    mean = np.nanmean(np.stack(diffs), axis=0)  # a draw's mean over the seeds that have a case
    mean = mean[np.isfinite(mean)]
    if not len(mean):
        return None
    low, high = np.percentile(mean, [2.5, 97.5])
    return float(low), float(high)


def paired_intervals(out: Path, records: list[dict], comparisons, pairs, draws: int = DRAWS) -> dict:
    """``{"ARM − BASE": {metric: [low, high]}}`` for every comparison whose evaluations every seed has."""
    seed_dirs = [out / f"seed-{r['seed']}" for r in records]
    load = cache(_scored)  # chair.jsonl serves three metrics, and an arm's records several comparisons
    found: dict = {}
    for arm, base in comparisons:
        for key in METRIC_FILES:
            interval = paired_interval(seed_dirs, arm, base, key, pairs, draws, load=load)
            if interval is not None:
                found.setdefault(f"{arm} − {base}", {})[key] = [round(interval[0], 4), round(interval[1], 4)]
    return found
