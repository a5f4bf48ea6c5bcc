"""Scoring POPE answers and CHAIR captions: pure functions, no model, no I/O.

POPE (Li et al., 2023): an answer is parsed exactly as the reference ``evaluate.py`` of the POPE repository (and
LLaVA's ``eval_pope.py``) does: keep the first sentence (up to the first ``.``), drop commas, split on spaces;
the answer is ``no`` when one of the words is ``No``, ``no`` or ``not``, otherwise ``yes``. An answer with no
yes/no word at all (``""``, ``"I cannot tell"``, ``"A cat."``) is scored ``yes`` like the reference does, so that
numbers stay comparable, and counted as *unparseable*.

CHAIR (Rohrbach et al., 2018): the COCO objects a caption mentions are found with the masker's synonym table
(:mod:`realign_data.masking`: CHAIR's synonyms, plurals, multi-word names such as "hot dog" and "dining table",
"orange" the colour vs the fruit), plus the reference ``chair.py``'s special cases: "baby"/"adult" before an
animal and "passenger" before a vehicle are not people, and "seat" is not a chair when a toilet is mentioned.
Adjacent words naming the same object ("mobile phone") are one mention. A mention is hallucinated when its
object is not among the image's ground-truth objects: its instance categories together with the objects named
in its reference captions, as in the original metric.

* CHAIR_s = captions with at least one hallucinated mention / captions
* CHAIR_i = hallucinated mentions / mentions (every mention counts, repeats included, as in the reference)
* object recall = ground-truth objects mentioned / ground-truth objects (summed over images), so that a model
  that says little cannot look good.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

YES, NO = "yes", "no"

# ------------------------------------------------------------------------------------------------------- POPE
_NO_WORDS = ("No", "no", "not")  # the reference's exact, case-sensitive test
_ANSWER_WORDS = {"yes", "no", "not"}


def parse_pope_answer(text: Optional[str]) -> tuple[str, bool]:
    """``(label, recognised)``: the reference POPE label of an answer, and whether it held a yes/no word."""
    text = text or ""
    if "." in text:
        text = text.split(".")[0]
    words = text.replace(",", "").split(" ")
    label = NO if any(w in words for w in _NO_WORDS) else YES
    recognised = any(re.sub(r"\W", "", w).lower() in _ANSWER_WORDS for w in words)
    return label, recognised


def pope_metrics(records: Sequence[dict]) -> dict:
    """Accuracy, precision, recall, F1 (positive class ``yes``), yes ratio and counts of scored POPE records.

    Each record has ``label`` (the truth) and ``prediction`` (:func:`parse_pope_answer`), and optionally
    ``recognised``. Precision/recall/F1 are 0 when undefined (no predicted or no true ``yes``).
    """
    tp = sum(r["prediction"] == YES and r["label"] == YES for r in records)
    fp = sum(r["prediction"] == YES and r["label"] == NO for r in records)
    tn = sum(r["prediction"] == NO and r["label"] == NO for r in records)
    fn = sum(r["prediction"] == NO and r["label"] == YES for r in records)
    n = len(records)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        "accuracy": (tp + tn) / n if n else 0.0,
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "yes_ratio": (tp + fp) / n if n else 0.0,
        "questions": n,
        "unparseable": sum(not r.get("recognised", True) for r in records),
        "tp": tp, "fp": fp, "tn": tn, "fn": fn,
    }


# ------------------------------------------------------------------------------------------------------ CHAIR
_ANIMALS = {"bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe"}
_VEHICLES = {"airplane", "bus", "train", "truck", "boat", "car"}
_AGE_WORDS = {"baby", "babies", "adult", "adults"}  # "baby bird" is a bird, not a person
_NOT_OBJECT_AFTER_AGE = {"animal", "animals", "cub", "cubs"}


@dataclass(frozen=True)
class Mention:
    """One object mention: ``text[start:end]`` names the category ``object``."""

    start: int
    end: int
    word: str
    object: str


class ChairScorer:
    """Find the objects a caption mentions and score it against an image's ground truth.

    ``vocabulary``: the categories that are scored (default: the 80 COCO categories). Mentions of anything else
    are ignored, neither hallucinated nor recalled: pass the categories an annotation file declares so that words
    the annotations cannot confirm (the synthetic corpus's "table" background) are not counted as hallucinations.
    Categories missing from the synonym table are matched by their name and its plural.
    """

    def __init__(self, vocabulary: Optional[Iterable[str]] = None) -> None:
        from realign_data.masking import COCO_CATEGORIES, pluralize

        self.vocabulary = frozenset(vocabulary) if vocabulary is not None else frozenset(COCO_CATEGORIES)
        extra = sorted(c for c in self.vocabulary if c not in COCO_CATEGORIES)
        phrases = {p: c for c in extra for p in (c.lower(), pluralize(c.lower()))}
        self._extra = None
        if phrases:
            alts = "|".join(re.escape(p).replace(r"\ ", r"\s+") for p in sorted(phrases, key=lambda p: (-len(p), p)))
            self._extra = (re.compile(rf"(?<![\w-])(?:{alts})(?![\w-])", re.IGNORECASE), phrases)

    def mentions(self, text: str) -> list[Mention]:
        """Every scored object mention of ``text``, in order (repeats included)."""
        from realign_data.masking import find_visual_facts

        found = [Mention(s.start, s.end, s.text, str(s.value)) for s in find_visual_facts(text) if s.kind == "object"]
        if self._extra is not None:
            pattern, phrases = self._extra
            found += [Mention(m.start(), m.end(), m.group(0), phrases[re.sub(r"\s+", " ", m.group(0).lower())])
                      for m in pattern.finditer(text)]
            found.sort(key=lambda m: (m.start, -(m.end - m.start)))
            kept: list[Mention] = []
            for m in found:  # longest match wins where a name overlaps a synonym ("fire truck" vs "truck")
                if not kept or m.start >= kept[-1].end:
                    kept.append(m)
            found = kept
        found = _chair_special_cases(text, found)
        return [m for m in found if m.object in self.vocabulary]

    def objects(self, text: str) -> set[str]:
        """The scored categories ``text`` names."""
        return {m.object for m in self.mentions(text)}

    def ground_truth(self, instance_categories: Iterable[str], captions: Iterable[str] = ()) -> set[str]:
        """An image's ground-truth objects: instance categories plus objects its reference captions name."""
        truth = {c for c in instance_categories if c in self.vocabulary}
        for caption in captions:
            truth |= self.objects(caption)
        return truth

    def score(self, caption: str, ground_truth: Iterable[str]) -> dict:
        """One caption's record: its mentions, which are hallucinated, which truths it recalls."""
        truth = set(ground_truth)
        mentions = self.mentions(caption or "")
        named = {m.object for m in mentions}
        hallucinated = [m for m in mentions if m.object not in truth]
        return {
            "mentions": [{"word": m.word, "object": m.object} for m in mentions],
            "hallucinated": [{"word": m.word, "object": m.object} for m in hallucinated],
            "ground_truth": sorted(truth),
            "recalled": sorted(named & truth),
            "chair_s": int(bool(hallucinated)),
        }


def _chair_special_cases(text: str, mentions: list[Mention]) -> list[Mention]:
    """The reference chair.py's hand rules, then one mention per run of adjacent words naming one object."""
    has_toilet = any(m.object == "toilet" for m in mentions)
    kept: list[Mention] = []
    for i, m in enumerate(mentions):
        word = m.word.lower()
        nxt = mentions[i + 1] if i + 1 < len(mentions) else None
        adjacent = nxt is not None and not text[m.end:nxt.start].strip()
        next_word = re.match(r"\s+([A-Za-z]+)", text[m.end:])
        if m.object == "person" and word in _AGE_WORDS and (
                (adjacent and nxt.object in _ANIMALS)
                or (next_word and next_word.group(1).lower() in _NOT_OBJECT_AFTER_AGE)):
            continue
        if m.object == "person" and word in ("passenger", "passengers") and adjacent and nxt.object in _VEHICLES:
            continue
        if m.object == "chair" and word in ("seat", "seats") and has_toilet:
            continue
        if kept and kept[-1].object == m.object and not text[kept[-1].end:m.start].strip():
            prev = kept.pop()
            m = Mention(prev.start, m.end, text[prev.start:m.end], m.object)
        kept.append(m)
    return kept


def chair_metrics(records: Sequence[dict]) -> dict:
    """CHAIR_s, CHAIR_i, object recall and counts over scored captions (:meth:`ChairScorer.score` records)."""
    n = len(records)
    mentions = sum(len(r["mentions"]) for r in records)
    hallucinated = sum(len(r["hallucinated"]) for r in records)
    truths = sum(len(r["ground_truth"]) for r in records)
    recalled = sum(len(r["recalled"]) for r in records)
    top = Counter(h["object"] for r in records for h in r["hallucinated"]).most_common(10)
    return {
        "chair_s": sum(r["chair_s"] for r in records) / n if n else 0.0,
        "chair_i": hallucinated / mentions if mentions else 0.0,
        "object_recall": recalled / truths if truths else 0.0,
        "captions": n,
        "mentions": mentions,
        "hallucinated_mentions": hallucinated,
        "ground_truth_objects": truths,
        "recalled_objects": recalled,
        "empty_captions": sum(not (r.get("answer") or "").strip() for r in records),
        "mean_words": sum(len((r.get("answer") or "").split()) for r in records) / n if n else 0.0,
        "most_hallucinated": [{"object": o, "mentions": c} for o, c in top],
    }
