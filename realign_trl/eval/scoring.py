"""Scoring POPE answers and CHAIR captions: pure functions, no model, no I/O.

POPE (Li et al., 2023). Two parsers (``parser=``), both computed on every run:

* ``reference``: exactly the POPE repository's ``evaluate.py`` (and LLaVA's ``eval_pope.py``): keep the first
  sentence (up to the first ``.``), drop commas, split on spaces; ``no`` when one of the words is ``No``, ``no``
  or ``not``, otherwise ``yes``. "NO", "Nope." or "I don't see a dog" are read ``yes``. Use it to compare with
  published numbers.
* ``robust`` (default): reads an answer as a person would: case and punctuation do not matter; a leading
  yes/no word decides ("No!", "NO", "Nope.", "None.", "Not that I can see."); otherwise the first sentence is read:
  a negation ("There is no dog", "There isn't a dog", "I don't see a dog") is ``no``, an affirmation ("There is a
  dog", "I can see two dogs") or an answer restating the asked object without negation ("A dog is on the couch")
  is ``yes``; when the answer names the asked object, the clause naming it decides ("There is a cat but no dog"
  is ``no`` about a dog, ``yes`` about a cat). Anything else ("I'm not sure", "A black cat." about a dog, "") is *unparseable*: it still gets the
  reference's label so that every question counts, and is counted and flagged.

CHAIR (Rohrbach et al., 2018). ``synonyms=`` chooses the object reading (:mod:`realign_data.objects`):

* ``reference`` (default): the reference ``chair.py`` reading, its synonym list, two-word objects, tokenising
  and singularising (:mod:`realign_data.objects.reference`). "puppy dog" is two mentions of dog, "an orange cat"
  names an orange, as in published tables.
* ``extended``: the project's reading (:mod:`realign_data.objects.coco`): more synonyms ("mug", "plant", ...),
  every plural ``inflect`` knows, "orange" the colour is not the fruit, adjacent words naming one object are one
  mention; plus the reference's special cases ("baby"/"adult" before an animal and "passenger" before a vehicle
  are not people, "seat" is not a chair when a toilet is mentioned).

A mention is hallucinated when its object is not among the image's ground-truth objects: its instance categories
together with the objects named in its reference captions, as in the original metric.

* CHAIR_s = captions with at least one hallucinated mention / captions
* CHAIR_i = hallucinated mentions / mentions (every mention counts, repeats included: the reference code's
  number, the one published tables report)
* chair_i_unique = hallucinated objects / objects, over the *set* of objects each caption names (the paper's
  written definition), summed over captions
* object recall = ground-truth objects mentioned / ground-truth objects (summed over images), so that a model
  that says little cannot look good.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

from .records import ChairMetrics, ChairRecord, PopeMetrics

YES, NO = "yes", "no"
POPE_PARSERS = ("robust", "reference")
CHAIR_SYNONYMS = ("reference", "extended")

# ------------------------------------------------------------------------------------------------------- POPE
_NO_WORDS = ("No", "no", "not")  # the reference's exact, case-sensitive test
_YES_LEAD = {
    "yes",
    "yeah",
    "yep",
    "yup",
    "correct",
    "indeed",
    "sure",
    "certainly",
    "absolutely",
    "affirmative",
    "true",
    "right",
    "definitely",
}
_NO_LEAD = {"no", "nope", "nah", "none", "not", "never", "negative", "false", "incorrect", "nothing", "nobody"}
_UNSURE = re.compile(
    r"\b(not sure|unsure|uncertain|unclear|hard to (tell|say)|difficult to (tell|say)|impossible to"
    r"|can ?not (tell|determine|say|be sure)|can't (tell|determine|say|be sure)|don't know"
    r"|do not know|not possible to|no idea|unknown)\b"
)
_NEGATION = re.compile(
    r"\b(no|not|none|nothing|nobody|never|neither|nor|without|isn't|aren't|wasn't|weren't|don't"
    r"|doesn't|didn't|can't|cannot|couldn't|absent)\b"
)
_AFFIRM = re.compile(
    r"\b(yes|there(?:'s| is| are)|i (can )?see|it (is|'s) (a|an|the)|this is|that is|there appears"
    r"|there seems?|appears to be|visible|present)\b"
)
_CLAUSES = re.compile(r",|;|\bbut\b|\band\b|\bwhile\b|\bwhereas\b")


def _reference_label(text: str) -> str:
    if "." in text:
        text = text.split(".")[0]
    words = text.replace(",", "").split(" ")
    return NO if any(w in words for w in _NO_WORDS) else YES


def _read(sentence: str) -> Optional[str]:
    if _UNSURE.search(sentence):
        return None
    if _NEGATION.search(sentence):
        return NO
    return YES if _AFFIRM.search(sentence) else None


def _robust_label(text: str, asked: Optional[str]) -> Optional[str]:
    t = text.lower().replace("\u2019", "'").strip()
    words = re.findall(r"[a-z]+(?:'[a-z]+)?", t)
    if not words:
        return None
    first = re.split(r"[.!?;\n]", t, maxsplit=1)[0]
    if _UNSURE.search(first):  # "Not sure.", "No idea."
        return None
    if words[0] in _YES_LEAD:
        return NO if words[1:2] == ["not"] else YES  # "Certainly not."
    if words[0] in _NO_LEAD:
        return NO
    if asked:  # the clause that names the asked object decides: "There is a dog and no cat" about a dog is yes
        from realign_data.objects.english import pluralize

        name = re.compile("|".join(rf"\b{re.escape(n)}\b" for n in {asked.lower(), pluralize(asked.lower())}))
        clauses = [c for c in _CLAUSES.split(first) if name.search(c)]
        if clauses:
            return _read(clauses[0]) or YES  # restating the object without negating it
    return _read(first)


def parse_pope_answer(text: Optional[str], parser: str = "robust", asked: Optional[str] = None) -> tuple[str, bool]:
    """``(label, recognised)`` of an answer under ``parser`` (``robust`` or ``reference``, module docstring).

    ``asked``: the object the question asks about, so that an answer restating it is read. ``recognised`` is
    False when the robust reading cannot tell (whichever parser labels); the label is then the reference's.
    """
    if parser not in POPE_PARSERS:
        raise ValueError(f"unknown POPE parser {parser!r}; valid: {', '.join(POPE_PARSERS)}")
    text = text or ""
    reference, robust = _reference_label(text), _robust_label(text, asked)
    if parser == "reference":
        return reference, robust is not None
    return (robust, True) if robust is not None else (reference, False)


def pope_metrics(records: Sequence[dict]) -> PopeMetrics:
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
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
    }


# ------------------------------------------------------------------------------------------------------ CHAIR
_ANIMALS = {"bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe"}
_VEHICLES = {"airplane", "bus", "train", "truck", "boat", "car"}
_AGE_WORDS = {"baby", "babies", "adult", "adults"}  # "baby bird" is a bird, not a person
_NOT_OBJECT_AFTER_AGE = {"animal", "animals", "cub", "cubs"}


@dataclass(frozen=True)
class Mention:
    """One object mention: ``word`` names the category ``object`` (at ``text[start:end]`` when known, else -1)."""

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
    ``synonyms``: ``reference`` (default) or ``extended``, see the module docstring.
    """

    def __init__(self, vocabulary: Optional[Iterable[str]] = None, synonyms: str = "reference") -> None:
        from realign_data.objects import COCO_CATEGORIES
        from realign_data.objects.english import pluralize

        if synonyms not in CHAIR_SYNONYMS:
            raise ValueError(f"unknown CHAIR synonym set {synonyms!r}; valid: {', '.join(CHAIR_SYNONYMS)}")
        self.synonyms = synonyms
        self.vocabulary = frozenset(vocabulary) if vocabulary is not None else frozenset(COCO_CATEGORIES)
        extra = sorted(c for c in self.vocabulary if c not in COCO_CATEGORIES)
        phrases = {p: c for c in extra for p in (c.lower(), pluralize(c.lower()))}
        self._extra = None
        if phrases:
            alts = "|".join(re.escape(p).replace(r"\ ", r"\s+") for p in sorted(phrases, key=lambda p: (-len(p), p)))
            self._extra = (re.compile(rf"(?<![\w-])(?:{alts})(?![\w-])", re.IGNORECASE), phrases)

    def mentions(self, text: str) -> list[Mention]:
        """Every scored object mention of ``text``, in order (repeats included)."""
        from realign_data.objects import coco_mentions, reference_mentions

        if self.synonyms == "reference":
            found = [Mention(-1, -1, w, c) for w, c in reference_mentions(text)]
            if self._extra is not None:
                pattern, phrases = self._extra
                found += [
                    Mention(m.start(), m.end(), m.group(0), phrases[re.sub(r"\s+", " ", m.group(0).lower())])
                    for m in pattern.finditer(text)
                ]
            return [m for m in found if m.object in self.vocabulary]
        found = [Mention(s, e, w, c) for s, e, w, c in coco_mentions(text)]
        if self._extra is not None:
            pattern, phrases = self._extra
            found += [
                Mention(m.start(), m.end(), m.group(0), phrases[re.sub(r"\s+", " ", m.group(0).lower())])
                for m in pattern.finditer(text)
            ]
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

    def score(self, caption: str, ground_truth: Iterable[str]) -> ChairRecord:
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
            "objects": sorted(named),
            "hallucinated_objects": sorted({m.object for m in hallucinated}),
        }


def _chair_special_cases(text: str, mentions: list[Mention]) -> list[Mention]:
    """The reference chair.py's hand rules, then one mention per run of adjacent words naming one object."""
    has_toilet = any(m.object == "toilet" for m in mentions)
    kept: list[Mention] = []
    for i, m in enumerate(mentions):
        word = m.word.lower()
        nxt = mentions[i + 1] if i + 1 < len(mentions) else None
        adjacent = nxt is not None and not text[m.end : nxt.start].strip()
        next_word = re.match(r"\s+([A-Za-z]+)", text[m.end :])
        if (
            m.object == "person"
            and word in _AGE_WORDS
            and (
                (adjacent and nxt.object in _ANIMALS)
                or (next_word and next_word.group(1).lower() in _NOT_OBJECT_AFTER_AGE)
            )
        ):
            continue
        if m.object == "person" and word in ("passenger", "passengers") and adjacent and nxt.object in _VEHICLES:
            continue
        if m.object == "chair" and word in ("seat", "seats") and has_toilet:
            continue
        if kept and kept[-1].object == m.object and not text[kept[-1].end : m.start].strip():
            prev = kept.pop()
            m = Mention(prev.start, m.end, text[prev.start : m.end], m.object)
        kept.append(m)
    return kept


def chair_metrics(records: Sequence[dict]) -> ChairMetrics:
    """CHAIR_s, CHAIR_i, chair_i_unique, object recall and counts over scored captions (:meth:`ChairScorer.score`
    records)."""
    n = len(records)
    mentions = sum(len(r["mentions"]) for r in records)
    hallucinated = sum(len(r["hallucinated"]) for r in records)
    truths = sum(len(r["ground_truth"]) for r in records)
    recalled = sum(len(r["recalled"]) for r in records)
    objects = sum(len(r.get("objects", ())) for r in records)
    hallucinated_objects = sum(len(r.get("hallucinated_objects", ())) for r in records)
    top = Counter(h["object"] for r in records for h in r["hallucinated"]).most_common(10)
    return {
        "chair_s": sum(r["chair_s"] for r in records) / n if n else 0.0,
        "chair_i": hallucinated / mentions if mentions else 0.0,
        "chair_i_unique": hallucinated_objects / objects if objects else 0.0,
        "object_recall": recalled / truths if truths else 0.0,
        "captions": n,
        "mentions": mentions,
        "hallucinated_mentions": hallucinated,
        "objects": objects,
        "hallucinated_objects": hallucinated_objects,
        "ground_truth_objects": truths,
        "recalled_objects": recalled,
        "empty_captions": sum(not (r.get("answer") or "").strip() for r in records),
        "mean_words": sum(len((r.get("answer") or "").split()) for r in records) / n if n else 0.0,
        "most_hallucinated": [{"object": o, "mentions": c} for o, c in top],
    }
