"""Masking recall of the lexicon masker on held-out captions (benchmarks/data/masking_heldout.txt).

Each caption marks its visual facts as ``[[kind:words]]``. A marked span is *found* when the masker masks exactly
those characters (same start and end): that is the recall. ``word_coverage`` is laxer: the share of marked spans
every word of which is masked, however the masker splits them ("kitchen table" as one span or as scene + object:
either way no word of the fact survives into the rejected answer); ``kind_agreement`` is the share of found spans whose masker kind equals the
annotated one (``object`` also accepts ``scene``/``clothing``: which noun list a word belongs to is a filing choice).
Recall is reported overall and per annotated kind, with the missed spans listed; the extra spans the masker finds
that are not annotated are counted too (they lower precision, not recall). The COCO-80-only masker (the lexicon
before issue #14) is measured on the same captions, side by side.

    python benchmarks/masking_recall.py --json masking_recall.json        # goal: recall >= 0.95
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path

DATA = Path(__file__).parent / "data" / "masking_heldout.txt"
MARK = re.compile(r"\[\[(\w+):([^\]]+)\]\]")
NOUNS = {"object", "scene", "clothing"}


def parse(line: str) -> tuple[str, list[tuple[int, int, str]]]:
    """The plain caption and its annotated spans ``(start, end, kind)``."""
    text, spans, pos = [], [], 0
    length = 0
    for m in MARK.finditer(line):
        before = line[pos : m.start()]
        text.append(before)
        length += len(before)
        spans.append((length, length + len(m.group(2)), m.group(1)))
        text.append(m.group(2))
        length += len(m.group(2))
        pos = m.end()
    text.append(line[pos:])
    return "".join(text), spans


def coco_only(spans):
    """The spans the pre-#14 lexicon would have produced: COCO objects and the original colour, size, material,
    count and relation words (the words vocabulary.py added to those kinds are removed too)."""
    from realign_data.building.masking import COCO_SYNONYMS
    from realign_data.objects import vocabulary as v

    added = {*v.EXTRA_RELATIONS, *v.EXTRA_COLORS, *v.EXTRA_MATERIALS, *v.QUANTITIES, *v.PERSON_COMPOUNDS}
    old = {"color", "size", "material", "count", "relation"}
    return [
        s
        for s in spans
        if s.text.lower() not in added and ((s.kind == "object" and s.value in COCO_SYNONYMS) or s.kind in old)
    ]


def measure(captions: list[tuple[str, list]], restrict=None) -> dict:
    from realign_data.building.masking import find_visual_facts

    found = Counter()
    total = Counter()
    kind_ok = 0
    extra = 0
    covered = 0  # annotated spans every word of which is masked, however the masker segments them
    missed = []
    for text, gold in captions:
        spans = find_visual_facts(text)
        if restrict:
            spans = restrict(spans)
        by_pos = {(s.start, s.end): s for s in spans}
        masked_chars = {i for s in spans for i in range(s.start, s.end)}
        for start, end, kind in gold:
            total[kind] += 1
            words = [m for m in re.finditer(r"\w+", text[start:end])]
            covered += all(start + w.start() in masked_chars for w in words)
            s = by_pos.get((start, end))
            if s is None:
                missed.append(f"{kind}:{text[start:end]!r} in {text!r}")
                continue
            found[kind] += 1
            kind_ok += s.kind == kind or (kind in NOUNS and s.kind in NOUNS)
        gold_pos = {(a, b) for a, b, _ in gold}
        extra += sum((s.start, s.end) not in gold_pos for s in spans)
    n, f = sum(total.values()), sum(found.values())
    return {
        "spans": n,
        "found": f,
        "recall": round(f / n, 4),
        "word_coverage": round(covered / n, 4),
        "kind_agreement": round(kind_ok / max(f, 1), 4),
        "unannotated_spans_masked": extra,
        "recall_by_kind": {k: round(found[k] / total[k], 4) for k in sorted(total)},
        "spans_by_kind": dict(sorted(total.items())),
        "missed": missed,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA, help="Annotated captions, one per line (# comments).")
    ap.add_argument("--json", type=Path, help="Write the figures here.")
    ap.add_argument("--show-missed", action="store_true", help="List every missed span.")
    args = ap.parse_args()
    lines = [ln.strip() for ln in args.data.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    captions = [parse(ln) for ln in lines]
    ours, before = measure(captions), measure(captions, coco_only)
    figures = {
        "captions": len(captions),
        "lexicon": ours,
        "coco80_only": {k: v for k, v in before.items() if k != "missed"},
    }
    print(f"{len(captions)} captions, {ours['spans']} annotated spans")
    print(f"{'masker':<14}{'recall':>8}{'words':>8}{'kind agr.':>11}{'extra':>7}")
    for name, m in (("lexicon", ours), ("COCO-80 only", before)):
        print(
            f"{name:<14}{m['recall']:>8.3f}{m['word_coverage']:>8.3f}{m['kind_agreement']:>11.3f}"
            f"{m['unannotated_spans_masked']:>7}"
        )
    print(
        "recall by kind: "
        + ", ".join(f"{k} {v:.3f} ({ours['spans_by_kind'][k]})" for k, v in ours["recall_by_kind"].items())
    )
    if args.show_missed or len(ours["missed"]) <= 10:
        print("missed:\n  " + "\n  ".join(ours["missed"]) if ours["missed"] else "missed: none")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
