"""The work of one chunk of an on-policy build (``--responses-from``): the policy's own answers become the rejected side.

    load -> retrieve -> the policy answers (K draws) -> check against the truth -> correct the wrong spans
         -> gate -> re-check -> visual negative -> row

For every seed the policy (:mod:`realign_data.building.policy`) answers the instruction ``--num-responses`` times.
Each answer is checked against the seed image's truth (:mod:`realign_data.building.facts`): hallucinated objects,
and, where the annotations say, wrong counts and colours, span by span. An answer with at least one such fact makes
one row:

* text pair: ``chosen`` = the answer with only its hallucinated spans corrected from the *true* image (a VLM filler
  fills them through its fill prompt, looking at the seed image; with the model-free annotation filler the truth
  itself is written in: :func:`~realign_data.building.facts.correct_from_truth`), ``rejected`` = the answer as the
  policy gave it. The correction passes the same gate as a fill (``chosen`` and ``rejected`` must differ: similarity
  below ``--sim-threshold``) and is read again: a correction that still hallucinates is dropped;
* image pair, as in every build: the retrieved most similar image (or the ``--image-negative`` perturbation) is the
  rejected image of the corrected answer.

An answer without hallucination makes no row (counted as ``no_hallucination``): this build does not fall back to a
retrieval fill for it (build the off-policy rows with an ordinary build and train on both if you want them).
Every row records its ``round``, the ``policy`` (model, backend, temperature, number of draws) as JSON, which draw
it is (``response_index``) and the ``changed_spans`` (character offsets in the rejected answer, the kind, what the
answer said, what the image has, and the replacement when it is known) as JSON.

``--mask-kind`` (repeatable) limits the check to those kinds of fact (``object``, ``count``, ``color``): with
``--mask-kind object`` a wrong count is neither corrected nor a reason to make a row, and the re-read of the
correction checks objects only. In the synthetic-world study wrong counts were most of what the full check found;
three rounds lost recall with every kind checked and with objects only alike (EVIDENCE.md, the on-policy rounds).

The report's ``onpolicy`` section counts the answers drawn and checked, the hallucinated facts by kind and the rows;
answers that make no row are in ``drops`` by reason (with the seeds dropped before any answer).
"""

from __future__ import annotations

import json
import zlib
from collections import Counter
from typing import TYPE_CHECKING

from realign_data.building.facts import (
    FACT_KINDS,
    correct_from_truth,
    find_hallucinations,
    masked_answer,
    truth_of,
)
from realign_data.building.policy import checked_kinds

if TYPE_CHECKING:  # pragma: no cover
    from realign_data.building.pipeline import Candidate, Pipeline


def run_chunk(pipe: Pipeline, seeds: list) -> tuple[list[dict], dict, list, int, dict]:
    """``(rows, drops, failures, corrections tried, on-policy counts)`` of one chunk of seeds (see the module
    docstring); the pipeline makes them its :class:`~realign_data.building.pipeline.ChunkResult`."""
    from realign_data.building.gate import is_rejected_fill

    cfg = pipe.config
    drops: Counter = Counter()
    failures: list = []

    def drop(seed_id: str, reason: str, detail: str = "") -> None:
        drops[reason] += 1
        if detail:
            failures.append({"seed": seed_id, "reason": reason, "error": detail})

    counts: Counter = Counter()
    kinds: Counter = Counter({k: 0 for k in FACT_KINDS})
    checked = checked_kinds(cfg)

    def hallucinations(text: str, truth) -> list:
        return [f for f in find_hallucinations(text, truth) if f.kind in checked]

    rows: list[dict] = []
    pipe._decoded = {}
    try:
        cands = pipe.load(seeds, lambda c, reason, detail="": drop(c.seed.id, reason, detail))
        pipe.retrieve(cands)
        items = [(c.seed.instruction, (lambda im=c.image: im), (lambda b=c.image_bytes: b)) for c in cands]
        draws = pipe.policy.answer(items, seeds[0].id) if cands else []
        work = []  # (candidate, draw, answer, facts, truth, annotations)
        truths = {id(c): _truth(pipe, c) for c in cands}
        for n, c in enumerate(cands):
            for k, results in enumerate(draws):
                res = results[n]
                counts["answers"] += 1
                if not res.ok:
                    drop(c.seed.id, "request_failed" if res.transient else "answer_failed", res.error or "empty answer")
                    continue
                counts["answers_checked"] += 1
                truth, annotations = truths[id(c)]
                counts[f"truth_{truth.source}"] += 1
                answer = res.text.strip()
                facts = hallucinations(answer, truth)
                kinds.update(f.kind for f in facts)
                if not facts:
                    drop(c.seed.id, "no_hallucination")
                    continue
                counts["answers_hallucinated"] += 1
                work.append((c, k, answer, facts, truth, annotations))
        corrections = _correct(pipe, work, failures)
        fixed = [(w, text, changed) for w, (text, changed, reason) in zip(work, corrections) if text is not None]
        for w, (text, _, reason) in zip(work, corrections):
            if text is None:
                drop(w[0].seed.id, reason)
        sims = pipe.gate.similarity([text for _, text, _ in fixed], [w[2] for w, _, _ in fixed]) if fixed else []
        for ((c, k, answer, facts, truth, _), text, changed), sim in zip(fixed, sims):
            if not is_rejected_fill(text, answer, sim, cfg.sim_threshold):
                drop(c.seed.id, "correction_too_similar")
            elif hallucinations(text, truth):
                drop(c.seed.id, "correction_hallucinated")
            elif not c.hits:
                drop(c.seed.id, "no_retrieval")
            else:
                row = _row(pipe, c, k, answer, text, facts, changed, sim, drop)
                if row is not None:
                    rows.append(row)
    finally:
        pipe._decoded = {}
    counts["pairs"] = len(rows)
    summary = {**dict(sorted(counts.items())), "hallucinations": dict(kinds)}
    return rows, dict(drops), failures, len(work), summary


def _truth(pipe: Pipeline, c: Candidate):
    """The seed image's truth and its COCO annotations (None when the corpus has none for it)."""
    annotations = pipe.annotations_of(c.seed.kb_id) if c.seed.kb_id else None
    vocabulary = pipe.ann.category_names() if pipe.ann is not None else None
    trusted = [c.seed.chosen] if c.seed.chosen else []
    return truth_of(annotations, trusted, vocabulary), annotations


def _correct(pipe: Pipeline, work: list, failures: list) -> list[tuple]:
    """``(corrected text or None, changed spans, drop reason)`` per answer, in order."""
    if pipe.config.filler == "annotation":
        out = []
        for _, _, answer, facts, truth, _ in work:
            done = correct_from_truth(answer, facts, truth)
            out.append((done[0], done[1], None) if done else (None, [], "no_correction"))
        return out
    from realign_data.building.fillers import FillRequest

    reqs = [
        FillRequest(
            instruction=c.seed.instruction,
            chosen=answer,
            masked=masked_answer(answer, facts),
            load_image=(lambda im=c.image: im),
            image_bytes=(lambda b=c.image_bytes: b),
            annotations=annotations,
            original_categories=tuple(sorted(truth.objects)),
            rng_seed=zlib.crc32(f"{pipe.config.seed}:{c.seed.id}:{k}".encode()),
        )
        for c, k, answer, facts, truth, annotations in work
    ]
    out = []
    for (c, _, _, facts, _, _), res in zip(work, pipe.filler.fill(reqs) if reqs else []):
        if res.ok:
            out.append((res.text.strip(), [f.to_dict() for f in facts], None))
        else:
            failures.append({"seed": c.seed.id, "reason": "correction", "error": res.error or "empty fill"})
            out.append((None, [], "request_failed" if res.transient else "correction_failed"))
    return out


def _row(pipe: Pipeline, c: Candidate, k: int, answer: str, text: str, facts, changed, sim, drop):
    """The row of a corrected answer, with its visual negative; None (and a drop) when that image is unreadable."""
    from dataclasses import replace
    from pathlib import Path

    from realign_data.building.schema import make_row

    pair = replace(c, chosen=text, fill=answer, masked=masked_answer(answer, facts), hit=c.hits[0], similarity=sim)
    try:
        neg = pipe.visual_negative(pair)
    except FileNotFoundError as e:
        drop(c.seed.id, "missing_image", str(e))
        return None
    except (ValueError, OSError) as e:
        drop(c.seed.id, "corrupt_image", str(e))
        return None
    s = c.seed
    row = make_row(
        seed_id=s.id,
        image_id=s.image_id,
        image_bytes=c.image_bytes,
        image_name=Path(s.image_path).name if s.image_path else None,
        instruction=s.instruction,
        chosen=text,
        rejected=answer,
        rejected_image_id=neg.rejected_image_id,
        rejected_bytes=neg.image_bytes,
        rejected_name=neg.name,
        rank=pair.hit.rank,
        score=round(pair.hit.score, 6),
        similarity=sim,
        masked=pair.masked.masked,
        filler=pipe.filler_name,
        fill_image_id=s.kb_id or s.image_id,  # the corrected answer describes the seed image itself
        image_negative=pipe.config.image_negative,
        negative_params=neg.params,
        difficulty=neg.difficulty,
    )
    return {
        **row,
        "round": pipe.config.round,
        "policy": json.dumps(pipe.policy.describe(), sort_keys=True),
        "response_index": k,
        "changed_spans": json.dumps(changed, sort_keys=True),
    }
