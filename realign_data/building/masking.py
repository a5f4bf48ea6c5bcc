"""Strategic masking: find the spans of a response that carry visual facts, and mask them.

Re-Align masks the words of the chosen answer that a VLM can get wrong about an image — objects,
attributes (colour, size, material), counts and spatial relations — and asks a model to fill them in
while looking at a *different* (retrieved) image. This module finds those spans.

The default :class:`LexiconMasker` is deterministic and model-free. Objects are the 80 MS-COCO categories
with the synonym lists of the CHAIR hallucination metric (Rohrbach et al., 2018) and their plurals, plus the
scene, clothing and other nouns, attributes, quantities and relations of :mod:`realign_data.objects.vocabulary`, and
unknown nouns heading a noun phrase (:mod:`realign_data.building.open_nouns`); colours, sizes, materials, number
words/digits and spatial prepositions come from fixed word lists. Matching is case-insensitive, longest phrase
first, on word boundaries. "orange" is a colour when it modifies the next noun ("an orange cat") and the fruit
otherwise ("an orange and a banana"): the rule of the object reader shared with the eval,
:mod:`realign_data.objects`.

An LLM-based masker (:class:`ModelMasker`) can use any :mod:`realign_data.building.fillers` backend with the same
output type; it falls back to the lexicon for span positions.

    >>> r = mask_response("Two red apples to the left of a blue car.")
    >>> r.masked
    '[COUNT] [COLOR] [OBJECT] [RELATION] a [COLOR] [OBJECT].'
    >>> [(s.kind, s.text) for s in r.spans][:3]
    [('count', 'Two'), ('color', 'red'), ('object', 'apples')]
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Iterable

from realign_data.building.open_nouns import open_noun_spans
from realign_data.objects import vocabulary
from realign_data.objects.coco import COCO_CATEGORIES, COCO_SYNONYMS, COLORS, colour_modifies, lexicon_kind  # noqa: F401  (re-exported)
from realign_data.objects.english import pluralize

# ---------------------------------------------------------------------------------------------- lexicon
# The COCO table, colours and the colour rule belong to the object reader the eval shares (realign_data.objects).
SIZES = (
    "small",
    "large",
    "big",
    "tiny",
    "huge",
    "little",
    "medium",
    "giant",
    "short",
    "tall",
    "long",
    "wide",
    "narrow",
    "massive",
    "miniature",
    "medium-sized",
    "large-sized",
    "small-sized",
)
MATERIALS = (
    "wooden",
    "metal",
    "metallic",
    "plastic",
    "glass",
    "ceramic",
    "stone",
    "brick",
    "leather",
    "paper",
    "cardboard",
    "concrete",
    "steel",
    "iron",
    "rubber",
    "fabric",
    "woven",
    "wicker",
    "marble",
    "porcelain",
)
NUMBER_WORDS = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
)
# Spatial relations, with a natural contradiction used when nothing better is known.
RELATIONS: dict[str, str] = {
    "to the left of": "to the right of",
    "to the right of": "to the left of",
    "left of": "right of",
    "right of": "left of",
    "on the left of": "on the right of",
    "on the right of": "on the left of",
    "on top of": "underneath",
    "in front of": "behind",
    "behind": "in front of",
    "next to": "far from",
    "far from": "next to",
    "beside": "far from",
    "near": "far from",
    "close to": "far from",
    "above": "below",
    "below": "above",
    "under": "on top of",
    "underneath": "on top of",
    "beneath": "above",
    "over": "under",
    "on": "under",
    "inside": "outside",
    "outside": "inside",
    "in the middle of": "at the edge of",
    "between": "beside",
    "across from": "next to",
    "along": "away from",
    "around": "away from",
    "atop": "beneath",
}
# Single-word relations that are too ambiguous to mask on their own in free text ("on the grass" is a
# relation, "turned on" is not): masked only when an object or attribute follows within a few words.
_WEAK_RELATIONS = {"on", "over", "around", "along", "near", "under", "inside", "outside"}

RELATIONS.update({k: v for k, v in vocabulary.EXTRA_RELATIONS.items() if k not in RELATIONS})
_WEAK_RELATIONS |= vocabulary.WEAK_RELATIONS

MASK_TOKENS = {
    "object": "[OBJECT]",
    "color": "[COLOR]",
    "size": "[SIZE]",
    "material": "[MATERIAL]",
    "count": "[COUNT]",
    "relation": "[RELATION]",
    "scene": "[SCENE]",
    "clothing": "[CLOTHING]",
    "attribute": "[ATTRIBUTE]",
}
NOUN_KINDS = ("object", "scene", "clothing")  # the head of a noun phrase; the other kinds modify or relate
MODIFIER_KINDS = ("color", "size", "material", "count", "attribute")
SPAN_KINDS = tuple(MASK_TOKENS)
MASKERS = ("lexicon", "model")  # model: ModelMasker over the filler's backend, the lexicon as fallback


@dataclass(frozen=True)
class Span:
    """A masked visual fact: ``text[start:end]`` of the original response.

    ``kind`` is one of :data:`SPAN_KINDS`; ``value`` is the canonical form (COCO category for COCO objects, the
    singular noun for other nouns, the integer for counts, the lower-cased word otherwise); ``plural`` says
    whether a noun was plural.
    """

    start: int
    end: int
    text: str
    kind: str
    value: str | int
    plural: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class MaskResult:
    """The response with each fact replaced by its kind's mask token, plus the spans (in order)."""

    original: str
    masked: str
    spans: list[Span] = field(default_factory=list)

    def objects(self) -> set[str]:
        """COCO categories named in the response (other nouns of :mod:`realign_data.objects.vocabulary` excluded)."""
        return {str(s.value) for s in self.spans if s.kind == "object" and s.value in COCO_SYNONYMS}

    def to_dict(self) -> dict:
        return {"original": self.original, "masked": self.masked, "spans": [s.to_dict() for s in self.spans]}


# ----------------------------------------------------------------------------------------- the matcher
@lru_cache(maxsize=1)
def _phrases() -> dict[str, tuple[str, str | int, bool]]:
    """Lower-cased phrase -> (kind, canonical value, plural?). Built on first use (plurals need inflect)."""
    phrase_kind: dict[str, tuple[str, str | int, bool]] = {}
    for cat, syns in COCO_SYNONYMS.items():
        for syn in syns:
            plural = pluralize(syn)
            phrase_kind.setdefault(syn, ("object", cat, False))
            if plural != syn:
                phrase_kind.setdefault(plural, ("object", cat, True))
    phrase_kind["people"] = ("object", "person", True)
    for word in vocabulary.PERSON_COMPOUNDS:
        phrase_kind.setdefault(word, ("object", "person", False))
        phrase_kind.setdefault(pluralize(word), ("object", "person", True))
    for kind, words in (("object", vocabulary.OBJECTS), ("scene", vocabulary.SCENE), ("clothing", vocabulary.CLOTHING)):
        for word in words:
            phrase_kind.setdefault(word, (kind, word, False))
            phrase_kind.setdefault(pluralize(word), (kind, word, True))
    for word in vocabulary.PLURAL_ONLY:
        phrase_kind.setdefault(word, ("clothing" if word in vocabulary.PLURAL_ONLY_CLOTHING else "object", word, True))
    for w in vocabulary.ATTRIBUTES:
        phrase_kind.setdefault(w, ("attribute", w, False))
    for w in vocabulary.EXTRA_COLORS:
        phrase_kind.setdefault(w, ("color", w, False))
    for w in vocabulary.EXTRA_MATERIALS:
        phrase_kind.setdefault(w, ("material", w, False))
    for w, n in vocabulary.QUANTITIES.items():
        phrase_kind.setdefault(w, ("count", n, False))
    for w in COLORS:
        phrase_kind.setdefault(w, ("color", w, False))
    phrase_kind["orange"] = ("object", "orange", False)  # disambiguated in _classify
    for w in SIZES:
        phrase_kind.setdefault(w, ("size", w, False))
    for w in MATERIALS:
        phrase_kind.setdefault(w, ("material", w, False))
    for i, w in enumerate(NUMBER_WORDS):
        phrase_kind.setdefault(w, ("count", i, False))
    for rel in RELATIONS:
        phrase_kind.setdefault(rel, ("relation", rel, False))
    return phrase_kind


@lru_cache(maxsize=1)
def _pattern() -> re.Pattern:
    phrases = sorted(_phrases(), key=lambda p: (-len(p), p))
    alts = "|".join(re.escape(p).replace(r"\ ", r"\s+") for p in phrases)
    return re.compile(rf"(?<![\w-])(?:{alts}|\d+)(?![\w-])", re.IGNORECASE)


class LexiconMasker:
    """Deterministic, model-free masker (see module docstring).

    ``kinds`` restricts which span kinds are masked (default: all of :data:`SPAN_KINDS`); ``open_nouns=False``
    masks only the words of the lists.
    """

    name = "lexicon"

    def __init__(self, kinds: Iterable[str] = SPAN_KINDS, open_nouns: bool = True) -> None:
        kinds = tuple(kinds)
        bad = [k for k in kinds if k not in SPAN_KINDS]
        if bad:
            raise ValueError(f"unknown span kind(s) {bad}; valid: {', '.join(SPAN_KINDS)}")
        self.kinds = kinds
        self.open_nouns = open_nouns  # also mask nouns no list knows (realign_data.building.open_nouns)

    def find_spans(self, text: str) -> list[Span]:
        raw: list[Span] = []
        for m in _pattern().finditer(text):
            word = m.group(0)
            key = re.sub(r"\s+", " ", word.lower())
            if key.isdigit():
                if len(key) != 4:  # four digits are a year, not a count
                    raw.append(Span(m.start(), m.end(), word, "count", int(key)))
                continue
            kind, value, plural = _phrases()[key]
            raw.append(Span(m.start(), m.end(), word, kind, value, plural))
        if self.open_nouns:
            found = open_noun_spans(text, [(s.start, s.end, s.kind) for s in raw])
            raw = sorted(
                raw + [Span(a, b, text[a:b], kind, value, plural) for a, b, kind, value, plural in found],
                key=lambda s: s.start,
            )
        spans = []
        for i, s in enumerate(raw):
            s = self._classify(text, raw, i)
            if s is not None and s.kind in self.kinds:
                spans.append(s)
        return spans

    @staticmethod
    def _followed_by(text: str, raw: list[Span], i: int, kinds: set[str], max_gap_words: int) -> bool:
        """Is span ``i`` followed (within ``max_gap_words`` plain words) by a span of one of ``kinds``?"""
        for j in range(i + 1, len(raw)):
            gap = text[raw[i].end if j == i + 1 else raw[j - 1].end : raw[j].start]
            if re.search(r"[.,;:!?()]", gap):
                return False
            if len(gap.split()) > max_gap_words:
                return False
            if raw[j].kind in kinds:
                return True
            if raw[j].kind not in MODIFIER_KINDS:
                return False
        return False

    def _classify(self, text: str, raw: list[Span], i: int) -> Span | None:
        s = raw[i]
        low = s.text.lower()
        nouns = set(NOUN_KINDS)
        if s.kind == "object" and low == "orange":
            # colour when it modifies the next noun ("an orange cat"), not in "an orange and a banana"
            kinds = {r.start: r.kind for r in raw[i + 1 :]}

            def kind_of(start: int, word: str) -> str | None:
                kind = kinds.get(start)
                return (
                    "noun"
                    if kind in NOUN_KINDS
                    else "modifier"
                    if kind in MODIFIER_KINDS and kind != "count"
                    else lexicon_kind(start, word)
                )

            if colour_modifies(text, s.end, kind_of):
                return Span(s.start, s.end, s.text, "color", "orange")
            return s
        if s.kind == "count":
            if low == "one" and not self._followed_by(text, raw, i, nouns, 2):
                return None  # "one of the", "the one on the left"
            return s
        if s.kind == "relation" and low == "in" and self._followed_by(text, raw, i, {"clothing"}, 3):
            return None  # "a man in a red shirt": wearing, not a place
        if s.kind == "relation" and re.sub(r"\s+", " ", low) in _WEAK_RELATIONS:
            return s if self._followed_by(text, raw, i, nouns, 3) else None  # through modifiers, to a noun
        if s.kind == "size" and low in ("short", "long", "tall", "wide", "narrow"):
            # adjectives that are only visual facts before a noun ("a tall giraffe", not "long ago")
            return s if self._followed_by(text, raw, i, nouns, 2) else None
        if s.kind == "attribute" and low in vocabulary.NEAR_NOUN:
            # "an open field" / "the door is open", not "open up" or "old enough"
            return s if self._followed_by(text, raw, i, nouns, 2) or self._after_noun(text, raw, i) else None
        return s

    @staticmethod
    def _after_noun(text: str, raw: list[Span], i: int) -> bool:
        """Is span ``i`` a predicate of the noun right before it ("the door is open", "a street that is busy")?"""
        if i == 0 or raw[i - 1].kind not in NOUN_KINDS:
            return False
        gap = text[raw[i - 1].end : raw[i].start]
        return not re.search(r"[.,;:!?()]", gap) and len(gap.split()) <= 3

    def mask_many(self, texts: list[str]) -> list[MaskResult]:
        return [self.mask(t) for t in texts]

    def mask(self, text: str) -> MaskResult:
        spans = self.find_spans(text)
        out, pos = [], 0
        for s in spans:
            out.append(text[pos : s.start])
            out.append(MASK_TOKENS[s.kind])
            pos = s.end
        out.append(text[pos:])
        return MaskResult(original=text, masked="".join(out), spans=spans)

    def to_config(self) -> dict:
        return {"name": self.name, "kinds": list(self.kinds)}


_DEFAULT = LexiconMasker()


def mask_response(text: str, kinds: Iterable[str] | None = None) -> MaskResult:
    """Mask the visual facts of ``text`` with the default lexicon masker."""
    return (_DEFAULT if kinds is None else LexiconMasker(kinds)).mask(text)


def find_visual_facts(text: str) -> list[Span]:
    """The typed spans of ``text`` (objects, attributes, counts, relations), in order."""
    return _DEFAULT.find_spans(text)


class ModelMasker:
    """Masker that asks a text backend which words carry visual facts.

    ``generate`` is any callable ``list[str] -> list[str]`` (e.g. ``OpenAIFiller.complete_text``). The
    model is asked to repeat the response with facts wrapped as ``[[kind:words]]``; the wrapped words are
    located in the original text. Words it marks that the lexicon also knows keep the lexicon's kind and
    value; others keep the model's kind. On an unusable answer the lexicon's spans are used.
    """

    name = "model"
    PROMPT = (
        "Repeat the text below exactly, but wrap every word or phrase that states a visual fact as "
        "[[kind:words]] where kind is one of " + ", ".join(SPAN_KINDS) + ".\n\n"
        "Text: {text}"
    )

    def __init__(self, generate, fallback: LexiconMasker | None = None) -> None:
        self.generate = generate
        self.fallback = fallback or _DEFAULT

    def mask_many(self, texts: list[str]) -> list[MaskResult]:
        answers = self.generate([self.PROMPT.format(text=t) for t in texts])
        return [self._parse(t, a) for t, a in zip(texts, answers)]

    def mask(self, text: str) -> MaskResult:
        return self.mask_many([text])[0]

    def _parse(self, text: str, answer: str | None) -> MaskResult:
        lex = {(s.start, s.end): s for s in self.fallback.find_spans(text)}
        spans: list[Span] = []
        pos = 0
        for m in re.finditer(r"\[\[(\w+):([^\]]+)\]\]", answer or ""):
            kind, words = m.group(1).lower(), m.group(2).strip()
            if kind not in SPAN_KINDS:
                continue
            at = text.lower().find(words.lower(), pos)
            if at < 0:
                continue
            end = at + len(words)
            spans.append(lex.get((at, end)) or Span(at, end, text[at:end], kind, words.lower()))
            pos = end
        if not spans:
            return self.fallback.mask(text)
        return mask_spans(text, spans)

    def to_config(self) -> dict:
        return {"name": self.name}


def mask_spans(text: str, spans: list[Span]) -> MaskResult:
    """``text`` with each of ``spans`` (sorted, not overlapping) replaced by its kind's mask token."""
    out, pos = [], 0
    for s in spans:
        out += [text[pos : s.start], MASK_TOKENS[s.kind]]
        pos = s.end
    out.append(text[pos:])
    return MaskResult(original=text, masked="".join(out), spans=spans)
