"""Nouns no word list knows: the head of a noun phrase after a determiner or a visual modifier.

A lexicon lags behind real captions ("a saucer", "a croissant", "the fireplace"); measured on fresh captions the
word lists alone miss about one noun in five (BENCHMARKS.md, masking recall). English marks noun phrases well
enough for captions: after ``a/an/the/its/...``, ``of/with/and/or`` or a known colour/size/material/attribute/count,
the next unknown words up to a function word or punctuation are a noun phrase. :func:`open_noun_spans` returns
those phrases (1-3 words; the last is the head, its plural told by ``inflect``) that overlap no span the lexicon
found; one unknown word right before a known noun is a modifier ("a rushing river"), an ``attribute``. Used by
:class:`realign_data.building.masking.LexiconMasker` unless ``open_nouns=False``. Words that name amounts or views rather
than things ("a lot of", "a close-up of", "a group of") and the ambiguous "light" are never nouns here.
"""

from __future__ import annotations

import re
from functools import lru_cache

DETERMINERS = {
    "a",
    "an",
    "the",
    "his",
    "her",
    "its",
    "their",
    "this",
    "that",
    "these",
    "those",
    "each",
    "every",
    "another",
    "our",
    "my",
    "your",
    "some",
}
_FUNCTION = DETERMINERS | {
    "in",
    "on",
    "at",
    "of",
    "with",
    "to",
    "from",
    "by",
    "for",
    "into",
    "onto",
    "over",
    "under",
    "near",
    "behind",
    "above",
    "below",
    "through",
    "across",
    "along",
    "around",
    "between",
    "beside",
    "past",
    "up",
    "down",
    "out",
    "off",
    "about",
    "against",
    "toward",
    "towards",
    "inside",
    "outside",
    "while",
    "and",
    "or",
    "but",
    "as",
    "which",
    "who",
    "whom",
    "where",
    "when",
    "than",
    "then",
    "is",
    "are",
    "was",
    "were",
    "be",
    "been",
    "being",
    "has",
    "have",
    "had",
    "do",
    "does",
    "did",
    "can",
    "will",
    "would",
    "could",
    "should",
    "may",
    "might",
    "it",
    "he",
    "she",
    "they",
    "them",
    "him",
    "there",
    "here",
    "very",
    "so",
    "too",
    "also",
    "just",
    "not",
    "no",
    "other",
    "next",
    "together",
    "each",
    "all",
    "both",
    "one",
    "ones",
    "someone",
    "something",
    "itself",
    "himself",
    "herself",
}
NOT_THINGS = {
    "lot",
    "lots",
    "bit",
    "couple",
    "few",
    "number",
    "kind",
    "type",
    "sort",
    "variety",
    "view",
    "picture",
    "image",
    "close-up",
    "closeup",
    "shot",
    "scene",
    "time",
    "way",
    "day",
    "trick",
    "side",
    "middle",
    "edge",
    "distance",
    "group",
    "bunch",
    "row",
    "flock",
    "herd",
    "pair",
    "set",
    "pile",
    "stack",
    "dozen",
    "piece",
    "part",
    "top",
    "bottom",
    "front",
    "back",
    "end",
    "area",
    "place",
    "spot",
    "thing",
    "things",
    "game",
    "shape",
    "color",
    "colour",
    "camera's",
    "moment",
    "look",
    "line",
    "amount",
    "light",
    "assortment",
    "selection",
    "collection",
    "display",
    "angle",
    "half",
}
OPENERS = DETERMINERS | {"of", "with", "and", "or"}  # bare nouns follow these too: "a bowl of cereal"
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")
_MAX_WORDS = 3


@lru_cache(maxsize=4096)
def singular(word: str) -> tuple[str, bool]:
    """``(singular form, was plural)`` of a noun, by ``inflect``."""
    from realign_data.objects.english import _engine

    s = _engine().singular_noun(word)
    return (s, True) if s and s != word else (word, False)


def _is_stop(word: str) -> bool:
    low = word.lower()
    return low in _FUNCTION or low.endswith("ly")


def open_noun_spans(text: str, known: list[tuple[int, int, str]]) -> list[tuple[int, int, str, str, bool]]:
    """``(start, end, kind, value, plural)`` of unknown nouns (kind ``object``) and unknown pre-noun modifiers
    (kind ``attribute``). ``known`` holds ``(start, end, kind)`` of the lexicon's spans."""
    words = list(_WORD.finditer(text))
    covered = {}
    for start, end, kind in known:
        for w in words:
            if w.start() < end and w.end() > start:
                covered[w.start()] = kind
    modifiers = {"color", "size", "material", "attribute", "count"}
    out = []
    i = 0
    while i < len(words):
        w = words[i]
        opens = (w.group(0).lower() in OPENERS and w.start() not in covered) or covered.get(w.start()) in modifiers
        i += 1
        if not opens:
            continue
        while i < len(words) and covered.get(words[i].start()) in modifiers:
            i += 1  # the known modifiers of the phrase
        phrase = []
        while (
            i < len(words)
            and len(phrase) < _MAX_WORDS
            and words[i].start() not in covered
            and not _is_stop(words[i].group(0))
            and not re.search(r"[.,;:!?()]", text[words[i - 1].end() : words[i].start()])
        ):
            phrase.append(words[i])
            i += 1
        if not phrase:
            continue
        noun_follows = (
            i < len(words)
            and covered.get(words[i].start()) in ("object", "scene", "clothing")
            and not re.search(r"[.,;:!?()]", text[phrase[-1].end() : words[i].start()])
        )
        heads = [p.group(0).lower() for p in phrase]
        if noun_follows:  # "a rushing river": one unknown word before a known noun modifies it
            if len(phrase) == 1 and heads[0] not in NOT_THINGS:
                out.append((phrase[0].start(), phrase[0].end(), "attribute", heads[0], False))
            continue
        if heads[-1].endswith("ing") or heads[0] in NOT_THINGS or heads[-1] in NOT_THINGS:
            continue  # a verb ("a man holding"), or an amount / a view ("a lot", "a close-up")
        head, plural = singular(heads[-1])
        out.append((phrase[0].start(), phrase[-1].end(), "object", " ".join(heads[:-1] + [head]), plural))
    return out
