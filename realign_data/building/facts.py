"""Checking a model's answer against an image's ground truth, span by span, and correcting it from that truth.

An on-policy build (:mod:`realign_data.building.onpolicy`) asks the policy to describe a seed image, then reads the
answer here:

* **objects**: the answer's object mentions are read by :func:`realign_data.objects.coco_mentions`, the reading of
  CHAIR's ``--chair-synonyms extended`` (the one reading with character offsets), and a mention is hallucinated when
  its category is not among the image's true objects;
* **counts**: a number word or digit (the masker's ``count`` spans) before a true object is wrong when the image's
  instances count that category differently (categories with a crowd instance have no exact count: not checked);
* **colours**: a colour before a true object is wrong when the image's reference captions give that object colours
  and this is none of them (COCO instances carry no colours: only what the captions say is checked).

The truth (:func:`truth_of`): with COCO instances, the image's instance categories plus the objects its reference
captions name (CHAIR's ground truth), counts from the instances and colours from the captions; without instances,
the objects named in the seed's trusted answer(s) only (every COCO category is then checked against them; counts
and colours are not checked: a caption is no exhaustive count).

:func:`correct_from_truth` is the model-free correction (the annotation filler's path: that filler describes a
*retrieved* image by design, preferring objects the original lacks, the opposite of a correction): each wrong span
gets the true fact (an unnamed true object, in the captions' order; the true count; a colour the captions give),
assembled with the annotation filler's grammar (articles, noun number, ``is``/``are``). VLM fillers correct through
their ordinary fill prompt instead, with the true image and only the hallucinated spans masked
(:func:`masked_answer`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Optional, Sequence

from realign_data.building.fillers.annotation import (
    DISPLAY_NAMES,
    AnnotationFiller,
    caption_spans,
    case_like,
    noun_groups,
)
from realign_data.building.masking import MaskResult, Span, mask_spans
from realign_data.objects import COCO_CATEGORIES, coco_mentions
from realign_data.objects.english import number_word, pluralize

FACT_KINDS = ("object", "count", "color")  # the kinds of hallucinated facts found (the report counts them by kind)
_SAME_COLOUR = {"grey": "gray"}


@dataclass
class Truth:
    """What an image shows, as far as its annotations say (see the module docstring)."""

    objects: frozenset
    source: str  # "instances" or "trusted_answer"
    vocabulary: Optional[frozenset] = None  # categories checked (None: every COCO category)
    counts: dict = field(default_factory=dict)  # category -> instances (no crowd instance)
    colours: dict = field(default_factory=dict)  # category -> colours its captions give it
    order: tuple = ()  # the true objects, in the captions' order, then the most instances first


@dataclass(frozen=True)
class Fact:
    """A hallucinated fact: ``answer[start:end]`` says ``value`` of ``kind`` where the image has ``truth``."""

    start: int
    end: int
    text: str
    kind: str  # one of FACT_KINDS
    value: object
    truth: object = None  # object: None; count: the true count; color: the colours the captions give

    def to_dict(self, replacement: Optional[str] = None) -> dict:
        return {**asdict(self), "replacement": replacement}


def _colour(value) -> str:
    return _SAME_COLOUR.get(str(value).lower(), str(value).lower())


def _objects_named(text: str, vocabulary: Optional[frozenset]) -> list[str]:
    return [cat for *_, cat in coco_mentions(text) if vocabulary is None or cat in vocabulary]


def truth_of(annotations: Optional[dict], trusted: Sequence[str] = (), vocabulary=None) -> Truth:
    """An image's truth from its COCO ``annotations`` (``instances``, ``captions``), else from ``trusted`` answers.

    ``vocabulary``: the categories an annotation file declares (mentions of others are neither true nor
    hallucinated, as in CHAIR); ignored without instances."""
    instances = (annotations or {}).get("instances") or []
    if not instances:
        named = [c for t in trusted if t for c in _objects_named(t, None)]
        return Truth(frozenset(named), "trusted_answer", order=tuple(dict.fromkeys(named)))
    vocab = frozenset(vocabulary) if vocabulary else None
    counts = Counter(str(i["category"]) for i in instances if i.get("category"))
    crowd = {str(i["category"]) for i in instances if i.get("iscrowd")}
    captions = (annotations or {}).get("captions") or []
    mentioned = [c for cap in captions for c in _objects_named(cap, vocab)]
    colours: dict[str, set] = {}
    for cap in captions:
        spans = caption_spans(cap)
        for group in noun_groups(cap, spans):
            head = spans[group[-1]]
            if head.kind == "object" and str(head.value) in COCO_CATEGORIES:
                for i in group[:-1]:
                    if spans[i].kind == "color":
                        colours.setdefault(str(head.value), set()).add(_colour(spans[i].value))
    objects = frozenset(counts) | frozenset(mentioned)
    rest = sorted((c for c in objects if c not in mentioned), key=lambda c: (-counts[c], c))
    return Truth(
        objects,
        "instances",
        vocab,
        {c: n for c, n in counts.items() if c not in crowd},
        {c: frozenset(v) for c, v in colours.items()},
        tuple(dict.fromkeys(mentioned)) + tuple(rest),
    )


def find_hallucinations(answer: str, truth: Truth) -> list[Fact]:
    """The hallucinated facts of ``answer`` (objects, counts, colours), in the answer's order."""
    facts = [
        Fact(s, e, words, "object", cat)
        for s, e, words, cat in coco_mentions(answer)
        if (truth.vocabulary is None or cat in truth.vocabulary) and cat not in truth.objects
    ]
    spans = caption_spans(answer)
    for group in noun_groups(answer, spans):
        head = spans[group[-1]]
        cat = str(head.value)
        if head.kind != "object" or cat not in truth.objects:
            continue
        for i in group[:-1]:
            s = spans[i]
            if s.kind == "count" and cat in truth.counts and int(s.value) != truth.counts[cat]:
                facts.append(Fact(s.start, s.end, s.text, "count", int(s.value), truth.counts[cat]))
            elif s.kind == "color" and truth.colours.get(cat) and _colour(s.value) not in truth.colours[cat]:
                facts.append(Fact(s.start, s.end, s.text, "color", _colour(s.value), sorted(truth.colours[cat])))
    return sorted(facts, key=lambda f: f.start)


def masked_answer(answer: str, facts: Sequence[Fact]) -> MaskResult:
    """``answer`` with only the hallucinated spans masked (the fill request of a VLM correction)."""
    return mask_spans(answer, [Span(f.start, f.end, f.text, f.kind, f.value) for f in facts])


def _overlapping(spans: list[Span], fact: Fact, kind: str) -> Optional[int]:
    return next((i for i, s in enumerate(spans) if s.kind == kind and s.start < fact.end and fact.start < s.end), None)


def correct_from_truth(answer: str, facts: Sequence[Fact], truth: Truth) -> Optional[tuple[str, list[dict]]]:
    """``(corrected answer, changed spans)``: every fact replaced by the truth; None when a hallucinated object has
    no true object left to stand for it (every true object is named already) or a fact is not one the masker reads.
    """
    spans = caption_spans(answer)
    groups = {i: g for g in noun_groups(answer, spans) for i in g}
    free = [c for c in truth.order if c not in set(_objects_named(answer, truth.vocabulary))]
    replacement: dict = {}
    changed: list[dict] = []

    def number(noun: int, n: int, cat: str) -> None:  # the noun and the verbs around it take the count's number
        word = DISPLAY_NAMES.get(cat, cat)
        replacement[noun] = case_like(pluralize(word) if n != 1 else word, spans[noun].text)
        replacement["verb", groups[noun][0]] = "are" if n != 1 else "is"
        replacement["verb_after", noun] = n != 1

    def count_word(n: int, old: str) -> str:
        return case_like(str(n) if old.isdigit() else number_word(n), old)

    for f in facts:
        if f.kind == "object":
            i = _overlapping(spans, f, "object")
            if i is None or not free:
                return None
            new = free.pop(0)
            counts = [j for j in groups[i][:-1] if spans[j].kind == "count"]
            if counts and new in truth.counts:  # "three zebras" -> "two apples": the count follows the new object
                n = truth.counts[new]
                replacement[counts[0]] = count_word(n, spans[counts[0]].text)
                number(i, n, new)
            else:
                word = DISPLAY_NAMES.get(new, new)
                replacement[i] = case_like(pluralize(word) if spans[i].plural else word, spans[i].text)
            changed.append(f.to_dict(replacement[i]))
        elif f.kind == "count":
            i = _overlapping(spans, f, "count")
            if i is None or i in replacement:
                continue  # already set with its object
            replacement[i] = count_word(int(f.truth), spans[i].text)
            noun = groups[i][-1]
            number(noun, int(f.truth), str(spans[noun].value))
            changed.append(f.to_dict(replacement[i]))
        else:
            i = _overlapping(spans, f, "color")
            if i is None:
                return None
            replacement[i] = case_like(sorted(f.truth)[0], spans[i].text)
            changed.append(f.to_dict(replacement[i]))
    return AnnotationFiller._assemble(answer, spans, replacement), changed
