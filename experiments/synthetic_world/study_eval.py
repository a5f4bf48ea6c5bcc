"""Stage 5, evaluation on held-out images with the project's harness (``realign_trl.eval``: POPE random, popular,
adversarial and CHAIR), plus the diagnostic the prior calls for: how often a caption names the co-occurring
partner of an object in the image when that partner is absent (per object), against any other absent category."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from study_world import HELDOUT_SPLIT, world_partners


def heldout_suite(all_root: Path, sizes, seed: int):
    """POPE questions and CHAIR ground truth of the first ``eval_images`` held-out images (min. 2 categories)."""
    from realign_trl.eval import EvalSuite

    return EvalSuite.from_coco(all_root, split=HELDOUT_SPLIT, num_images=sizes.eval_images, seed=seed, min_objects=2)


def evaluate_model(out: Path, model_dir: str, suite, sizes) -> dict:
    """Evaluate a checkpoint; ``out`` gets ``eval_results.json`` and the records; return the flat metrics + the
    partner diagnostic."""
    from realign_trl.eval import evaluate

    result = evaluate(
        model_dir,
        suite,
        batch_size=sizes.eval_batch,
        chair_max_new_tokens=sizes.chair_max_new_tokens,
        device="cpu",
        out=out,
    )
    return {
        "flat": result.flat(),
        "partner": partner_hallucination(result.records.get("chair", []), world_partners(sizes)),
        "most_hallucinated": result.metrics.get("chair", {}).get("most_hallucinated", []),
    }


def training_questions(model_dir: str, train_root: Path, sizes, seed: int, limit: int = 400) -> dict:
    """How the model answers the first ``limit`` yes/no questions of its own SFT data (training images): tells a
    base model that never learned the question format from one that learned it and does not generalise."""
    from PIL import Image
    from study_sft import sft_rows
    from study_verdict import YES_NO

    from realign_trl.eval.backends import TransformersBackend
    from realign_trl.eval.scoring import parse_pope_answer

    rows = [r for r in sft_rows(train_root, sizes, seed) if r["answer"] in YES_NO][:limit]
    backend = TransformersBackend(model_dir, device="cpu", batch_size=sizes.eval_batch)
    try:
        items = [(r["prompt"], lambda path=r["image"]: Image.open(path).convert("RGB"), None) for r in rows]
        said = [parse_pope_answer(text)[0] for batch in backend.generate(items, 8) for text, _ in batch]
    finally:
        backend.close()
    truth = [parse_pope_answer(r["answer"])[0] for r in rows]
    per_object: dict = defaultdict(lambda: {"yes": [0, 0], "no": [0, 0]})  # object -> truth -> [right, asked]
    for r, a, b in zip(rows, said, truth):
        cell = per_object[r["object"]][b]
        cell[0] += a == b
        cell[1] += 1
    return {
        "questions": len(rows),
        "accuracy": round(sum(a == b for a, b in zip(said, truth)) / len(rows), 4),
        "yes_ratio": round(said.count("yes") / len(rows), 4),
        # the verdict is learned object by object: which objects a seed's model answers at chance
        "per_object": {o: {t: f"{r}/{n}" for t, (r, n) in v.items()} for o, v in sorted(per_object.items())},
    }


def partner_hallucination(records: list[dict], pairs) -> dict:
    """Share of (caption, present object whose partner is absent) cases where the caption names the partner, per
    partner and overall; and, for contrast, the share of (caption, other absent category) cases named. ``pairs``:
    the world's co-occurring pairs."""
    from realign_data.testing.sample import CATEGORIES

    partner = {**dict(pairs), **{b: a for a, b in pairs}}
    names = [c.name for c in CATEGORIES]
    hit, seen = defaultdict(int), defaultdict(int)
    other_hit = other_seen = 0
    for r in records:
        if "error" in r:
            continue
        truth = set(r["ground_truth"])
        said = {h["object"] for h in r["hallucinated"]}
        partners = {partner[c] for c in truth if c in partner and partner[c] not in truth}
        for p in partners:
            seen[p] += 1
            hit[p] += p in said
        for c in names:
            if c not in truth and c not in partners:
                other_seen += 1
                other_hit += c in said
    per = {p: round(hit[p] / seen[p], 4) for p in sorted(seen)}
    total = sum(seen.values())
    return {
        "missing_partner_named": round(sum(hit.values()) / total, 4) if total else float("nan"),
        "other_absent_named": round(other_hit / other_seen, 4) if other_seen else float("nan"),
        "cases": total,
        "named": sum(hit.values()),
        "per_partner": per,
    }
