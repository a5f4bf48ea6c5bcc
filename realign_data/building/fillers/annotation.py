"""Model-free filler: describe the *retrieved* image using its COCO annotations.

Each masked slot of the chosen answer is filled with a fact of the retrieved image, so the fill is a
plausible description of the wrong image — exactly the hallucination Re-Align wants as ``rejected``. It keeps the
chosen answer's own phrasing, so that the two answers differ only in visual facts (a text-only classifier should
not tell them apart: :mod:`realign_data.building.separability`):

* object slots get categories present in the retrieved image and absent from the original image, in the order the
  retrieved captions name them (then its other categories, then other objects of the original, then any other COCO
  category); a repeated object maps consistently;
* a count before an object becomes the number of instances of the new category in the retrieved image, in the
  answer's own words ("a"/"an" for one unless the answer says "one"; digits if it writes digits; in an answer that
  counts, "a dog" is a count too), with the noun's grammatical number and the verb before or after it ("there are
  ...", "... is sitting") made to agree; invariant nouns count as plural after "a group of", "several"...; a bare
  singular (mass) noun ("a table with pizza") is replaced by a bare plural ("a table with cows");
* nouns outside COCO-80 (scene, clothing and other object nouns of :mod:`realign_data.objects.vocabulary`) become a
  noun of the same kind that the retrieved image's captions use (one the chosen answer does not use first), else
  another word of that kind; the background (a scene noun, or a COCO noun the seed image does not annotate used as
  a surface: "on the table") becomes the retrieved captions' background, else stays;
* colours, sizes, materials and other attributes come from the retrieved image's captions where they describe
  the new noun, else from the answer's own description of it, else another value of the same kind, in the
  answer's order; relations between objects come from its captions (never one used against the background),
  else the opposite; a relation against the background ("on the grass") is kept;
* "a"/"an" before a filled slot is corrected.

Deterministic: every random choice uses ``random.Random(request.rng_seed)``.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from typing import Optional

from realign_data.building.fillers.base import FillRequest, FillResult
from realign_data.building.masking import (
    COCO_CATEGORIES,
    COLORS,
    MATERIALS,
    MODIFIER_KINDS,
    NOUN_KINDS,
    RELATIONS,
    LexiconMasker,
    Span,
)
from realign_data.objects import vocabulary
from realign_data.objects.english import number_word, pluralize

_MODIFIERS = MODIFIER_KINDS
_VOCABULARY = {"object": vocabulary.OBJECTS, "scene": vocabulary.SCENE, "clothing": vocabulary.CLOTHING}
_SURFACE = re.compile(r"\b(?:on|at|across|over|under|along)\s+(?:the|a|an)\s+$", re.IGNORECASE)
_SIZE_SWAP = {
    "small": "large",
    "large": "small",
    "big": "small",
    "tiny": "huge",
    "huge": "tiny",
    "little": "big",
    "medium": "large",
    "giant": "tiny",
    "short": "tall",
    "tall": "short",
    "long": "short",
    "wide": "narrow",
    "narrow": "wide",
    "massive": "tiny",
    "miniature": "huge",
    "medium-sized": "large",
    "large-sized": "small-sized",
    "small-sized": "large-sized",
}
_BASIC_COLORS = ("red", "green", "blue", "yellow", "orange", "purple", "pink", "brown", "black", "white", "gray")
DISPLAY_NAMES = {
    "sports ball": "ball",
    "dining table": "table",
    "potted plant": "plant",
    "tv": "TV",
    "skis": "ski",
    "hair drier": "hair dryer",
}
_MASKER = LexiconMasker()
# a determiner right before a noun phrase: without one, a singular noun is used as a mass noun ("a table with
# pizza"), and a countable replacement must then be a bare plural ("a table with cows") to stay grammatical
_DETERMINER = re.compile(
    r"\b(a|an|the|this|that|these|those|his|her|its|their|our|my|your|one|each|every|another|"
    r"any|no|some|either|neither)\s+$",
    re.IGNORECASE,
)
# cues that an invariant noun (sheep, skis) is plural: "a group of sheep", "several skis"
_PLURAL_CUE = re.compile(
    r"\b(?:(?:group|herd|flock|bunch|pair|couple|lot|lots|number|set|pile|row|rows|stack|team|"
    r"pack|collection|variety|plenty) of|many|several|some|few|multiple|various|these|those|"
    r"both|numerous)\s+$",
    re.IGNORECASE,
)
_PLURAL_ONLY = {"scissors": "pair of scissors"}  # singular use needs a counter noun
# a relation that places an object on/in/under its background ("on the grass", "in the sky"): kept as it is, since
# a relation is a fact between objects ("to the left of the floor" is no description of any image)
_SURFACE_RELATIONS = {"on", "in", "at", "across", "over", "under", "along", "onto", "into", "inside", "on top of"}
_ARTICLE = re.compile(r"\b([Aa]n?)(\s+)$")
_VERB_NUMBER = {"is": "are", "are": "is", "was": "were", "were": "was"}


def noun_groups(text: str, spans: list[Span]) -> list[list[int]]:
    """Group span indices into noun phrases: modifiers attach to the object right after them."""
    groups: list[list[int]] = []
    cur: list[int] = []
    for i, s in enumerate(spans):
        if cur:
            gap = text[spans[cur[-1]].end : s.start]
            joined = not re.search(r"[.,;:!?()]", gap) and len(gap.split()) <= 1
            if not (joined and spans[cur[-1]].kind in _MODIFIERS and s.kind in _MODIFIERS + NOUN_KINDS):
                groups.append(cur)
                cur = []
        cur.append(i)
        if s.kind in NOUN_KINDS or s.kind == "relation":
            groups.append(cur)
            cur = []
    if cur:
        groups.append(cur)
    return groups


def _indefinite(following: str) -> str:
    """``a`` or ``an`` before ``following``."""
    word = following.strip()
    return "an" if re.match(r"[aeiouAEIOU]", word) and not word.lower().startswith(("uni", "one", "eu")) else "a"


def caption_spans(text: str) -> list[Span]:
    return _reread(text, _MASKER.find_spans(text))


def _reread(text: str, spans: list[Span]) -> list[Span]:
    """Spans with a colour word that is also a COCO noun read as that noun when it heads the phrase ("an orange
    orange": the second "orange" is the fruit)."""
    out: list[Span] = []
    for i, s in enumerate(spans):
        nxt = spans[i + 1] if i + 1 < len(spans) else None
        prev = out[-1] if out else None
        if (
            s.kind == "color"
            and str(s.value) in COCO_CATEGORIES
            and prev is not None
            and prev.kind in _MODIFIERS
            and text[prev.end : s.start].isspace()
            and not (nxt and nxt.kind in NOUN_KINDS and text[s.end : nxt.start].isspace())
        ):
            s = Span(s.start, s.end, s.text, "object", s.value, False)
        out.append(s)
    return out


def _backgrounds(text: str, spans: list[Span], groups: list[list[int]], annotated: Optional[set]) -> set[int]:
    """Groups that are the scene's background: a scene noun, or a COCO noun the image does not annotate (``None``:
    unknown, no COCO noun is), right after a surface preposition ("on the grass", "on the table")."""
    out = set()
    for g, group in enumerate(groups):
        last = spans[group[-1]]
        coco = last.kind == "object" and str(last.value) in COCO_CATEGORIES
        if last.kind == "scene" or (
            annotated is not None
            and coco
            and str(last.value) not in annotated
            and _SURFACE.search(text[: spans[group[0]].start])
        ):
            out.add(g)
    return out


def _against_background(text: str, spans: list[Span], groups: list[list[int]], g: int, backgrounds: set[int]) -> bool:
    """Whether group ``g`` is a surface relation whose object is the background ("on | the grass")."""
    rel = spans[groups[g][-1]]
    if rel.kind != "relation" or str(rel.value) not in _SURFACE_RELATIONS or g + 1 not in backgrounds:
        return False
    return not re.search(r"[.,;:!?()]", text[rel.end : spans[groups[g + 1][0]].start])


def image_facts(annotations: dict | None) -> dict:
    """Counts per category (instances); attributes per noun, relations between objects and non-COCO nouns by kind
    (captions; a COCO noun the image does not annotate, used as a surface, counts as a scene noun)."""
    annotations = annotations or {}
    counts = Counter(str(i.get("category")) for i in annotations.get("instances", ()) if i.get("category"))
    annotated = set(counts)
    attrs: dict[str, dict[str, str]] = {}
    relations: list[str] = []
    nouns: dict[str, list[str]] = {k: [] for k in NOUN_KINDS}  # non-COCO nouns of the captions, in order
    caption_counts: Counter = Counter()
    mentioned: list[str] = []  # COCO categories in the order the captions first name them
    for cap in annotations.get("captions", ()):
        spans = caption_spans(cap)
        groups = noun_groups(cap, spans)
        backgrounds = _backgrounds(cap, spans, groups, annotated or None)
        for g, group in enumerate(groups):
            kinds = [spans[i].kind for i in group]
            if kinds[-1] == "relation":
                if not _against_background(cap, spans, groups, g, backgrounds):
                    relations.append(str(spans[group[-1]].value))
            elif kinds[-1] in NOUN_KINDS:
                obj = str(spans[group[-1]].value)
                if g in backgrounds and obj in COCO_CATEGORIES:
                    if obj not in nouns["scene"]:
                        nouns["scene"].append(obj)
                    continue
                if obj not in COCO_CATEGORIES and obj not in nouns[kinds[-1]]:
                    nouns[kinds[-1]].append(obj)
                elif obj in COCO_CATEGORIES and obj not in mentioned:
                    mentioned.append(obj)
                for i in group[:-1]:
                    s = spans[i]
                    if s.kind == "count":
                        caption_counts[obj] = max(caption_counts[obj], int(s.value))
                    else:
                        attrs.setdefault(obj, {}).setdefault(s.kind, str(s.value))
    for obj, n in caption_counts.items():  # captions fill in counts when there are no instances
        counts.setdefault(obj, n)
    return {"counts": counts, "attrs": attrs, "relations": relations, "nouns": nouns, "mentioned": mentioned}


def case_like(new: str, old: str) -> str:
    if old[:1].isupper():
        return new[:1].upper() + new[1:]
    return new


class AnnotationFiller:
    """See module docstring. ``fill(requests) -> results``; never raises on a request."""

    name = "annotation"

    def fill(self, requests: list[FillRequest]) -> list[FillResult]:
        out = []
        for r in requests:
            try:
                out.append(FillResult(self.fill_one(r)))
            except Exception as e:  # noqa: BLE001 - a bad record must not stop the run
                out.append(FillResult(None, error=f"{type(e).__name__}: {e}"))
        return out

    def fill_one(self, req: FillRequest) -> str:
        rng = random.Random(req.rng_seed)
        text, spans = req.masked.original, _reread(req.masked.original, req.masked.spans)
        facts = image_facts(req.annotations)
        counts: Counter = facts["counts"]
        named = {str(s.value) for s in spans if s.kind == "object" and s.value in COCO_CATEGORIES}
        original = set(req.original_categories) | req.masked.objects() | named
        own_attrs = image_facts({"captions": [text]})["attrs"]  # how the answer itself describes each noun
        order = facts["mentioned"]  # the retrieved captions' own order, then the most instances first
        present = sorted(counts, key=lambda c: (order.index(c) if c in order else len(order), -counts[c], c))
        fresh = [c for c in present if c not in original]
        # preference: in the retrieved image and not the original, then in the retrieved image, then another object
        # of the original (a word of the answer's own world), then any other COCO category (random); a category is
        # used for one original object only when possible
        tiers = [
            fresh,
            [c for c in present if c in original],
            sorted(c for c in original if c not in present) if present else [],
            [c for c in COCO_CATEGORIES if c not in original and c not in present],
        ]
        used: dict = {}  # original noun (COCO category, or (kind, noun)) -> its replacement
        replacement: dict = {}
        # the answer's own way of counting: "a"/"an" for one (unless it says "one"), digits if it writes digits;
        # an answer that counts its objects ("two cats and a dog") uses "a" as the count one
        counting = any(s.kind == "count" for s in spans)
        one_word = "one" if any(s.kind == "count" and s.text.lower() == "one" for s in spans) else "a"
        digits = any(s.kind == "count" and s.text.isdigit() for s in spans)

        def count_word(n: int, old: str) -> str:
            return str(n) if old.isdigit() or (digits and not old.isalpha()) else number_word(n)

        def new_object(cat: str) -> str:
            if cat not in used:
                for tier_no, tier in enumerate(tiers):
                    free = [c for c in tier if c != cat and c not in used.values()]
                    if tier_no == 3 and present and len(named) > 1 and cat not in used.values():
                        free = [cat]  # no word of the answer's world left: this object stays, the others changed
                    if free:
                        used[cat] = free[0] if tier_no < 2 else rng.choice(free)
                        break
                else:
                    used[cat] = rng.choice([c for c in COCO_CATEGORIES if c != cat])
            return used[cat]

        said = {str(sp.value) for sp in spans if sp.kind in NOUN_KINDS}

        def new_noun(kind: str, value: str) -> str:
            """A noun of ``kind`` the retrieved captions use: one the answer does not, else any (the retrieved image
            has it too: "grass" stays "grass"); without any, another word of that kind from the vocabulary."""
            if (kind, value) not in used:
                free = [n for n in facts["nouns"][kind] if n not in used.values()]
                seen = [n for n in free if n not in said] or free
                pool = [n for n in _VOCABULARY[kind] if n not in said and n not in used.values()]
                used[kind, value] = seen[0] if seen else rng.choice(pool)  # type: ignore[index]
            return used[kind, value]  # type: ignore[index]

        groups = noun_groups(text, spans)
        backgrounds = _backgrounds(text, spans, groups, set(req.original_categories))
        slots = list(
            dict.fromkeys(
                str(spans[gr[-1]].value)
                for g, gr in enumerate(groups)
                if g not in backgrounds and spans[gr[-1]].kind == "object" and spans[gr[-1]].value in COCO_CATEGORIES
            )
        )
        picked = [new_object(v) for v in slots]
        # the new objects in the order the retrieved captions name them (then the others in the answer's order), as
        # a caption of that image would list them, unless a slot would then name its own object
        rank = {c: i for i, c in enumerate(present)}
        ordered = sorted(picked, key=lambda c: (rank.get(c, len(rank)), picked.index(c)))
        if all(new != old for new, old in zip(ordered, slots)):
            used.update(zip(slots, ordered))
        for g, group in enumerate(groups):
            last = spans[group[-1]]
            if last.kind in NOUN_KINDS:
                before_group = text[: spans[group[0]].start]
                if g in backgrounds:  # the background: the retrieved image's, else the answer's own
                    cat = new_noun("scene", str(last.value)) if facts["nouns"]["scene"] else str(last.value)
                elif last.kind == "object" and last.value in COCO_CATEGORIES:
                    cat = new_object(str(last.value))
                else:
                    cat = new_noun(last.kind, str(last.value))
                noun = DISPLAY_NAMES.get(cat, cat)
                plural = last.plural or (
                    pluralize(str(last.value)) == str(last.value) and bool(_PLURAL_CUE.search(before_group))
                )
                has_count = any(spans[i].kind == "count" for i in group)
                if not (
                    plural or has_count or _DETERMINER.search(before_group) or last.kind == "scene" or g in backgrounds
                ):
                    plural = True  # bare singular (mass) noun -> bare plural; scene nouns stay mass ("on grass")
                counted_article = (
                    counting
                    and not has_count
                    and g not in backgrounds
                    and cat in counts
                    and counts[cat] > 1
                    and _ARTICLE.search(before_group)
                )
                if counted_article:  # "a dog" in an answer that counts: the article is the count
                    replacement["article", group[0]] = count_word(counts[cat], "")
                    plural = True
                for i in group[:-1]:
                    s = spans[i]
                    if s.kind == "count":
                        n = counts.get(cat) or int(s.value)
                        if n == int(s.value) and cat == last.value:
                            n += 1
                        plural = n != 1
                        if n == 1 and one_word == "a" and s.text.isalpha():
                            word, replacement["indefinite", i] = "a", True  # type: ignore[index]
                        else:
                            word = count_word(n, s.text)
                        replacement[i] = case_like(word, s.text)
                    else:
                        known = {**own_attrs.get(cat, {}), **facts["attrs"].get(cat, {})}
                        replacement[i] = case_like(self._attribute(s, known, rng), s.text)
                if noun in vocabulary.PLURAL_ONLY:
                    word = noun if plural or noun not in vocabulary.PLURAL_ONLY_CLOTHING else f"pair of {noun}"
                    plural = plural or noun not in vocabulary.PLURAL_ONLY_CLOTHING
                else:
                    word = pluralize(noun) if plural else _PLURAL_ONLY.get(noun, noun)
                replacement[group[-1]] = case_like(word, last.text)
                if has_count or counted_article:
                    replacement["verb", group[0]] = "are" if plural else "is"  # type: ignore[index]
                replacement["verb_after", group[-1]] = plural  # type: ignore[index]
            else:
                for i in group:
                    s = spans[i]
                    if s.kind == "relation":
                        if not _against_background(text, spans, groups, g, backgrounds):  # else kept as it is
                            replacement[i] = case_like(self._relation(str(s.value), facts["relations"], rng), s.text)
                    elif s.kind == "count":
                        n = int(s.value) + rng.choice((1, 2))
                        replacement[i] = case_like(count_word(n, s.text), s.text)
                    else:
                        replacement[i] = case_like(self._attribute(s, {}, rng), s.text)
        return self._assemble(text, spans, replacement)

    @staticmethod
    def _attribute(span: Span, known: dict[str, str], rng: random.Random) -> str:
        if span.kind in known:
            return known[span.kind]
        value = str(span.value)
        if span.kind == "size":
            return _SIZE_SWAP.get(value, "large")
        choices = {"color": _BASIC_COLORS, "material": MATERIALS, "attribute": vocabulary.ATTRIBUTES}.get(
            span.kind, COLORS
        )
        return rng.choice([c for c in choices if c != value])

    @staticmethod
    def _relation(value: str, seen: list[str], rng: random.Random) -> str:
        if value in vocabulary.STANDALONE_RELATIONS:
            return RELATIONS[value]
        other = [
            r for r in seen if r != value and RELATIONS.get(r) is not None and r not in vocabulary.STANDALONE_RELATIONS
        ]
        if other:
            return rng.choice(sorted(set(other)))
        return RELATIONS.get(value, "next to")

    @staticmethod
    def _assemble(text: str, spans: list[Span], replacement: dict) -> str:
        out, pos = [], 0
        plural_before: bool | None = None  # number of the noun phrase that ended right before this text
        pending: int | None = None  # index in ``out`` of an indefinite article that takes the form of the next word

        def agree_following_verb(chunk: str) -> str:
            """``is/are/was/were`` right after a noun phrase takes that phrase's (new) number."""
            if plural_before is None:
                return chunk

            def fix(m: re.Match) -> str:
                verb = m.group(2).lower()
                want = verb if (verb in ("are", "were")) == plural_before else _VERB_NUMBER[verb]
                return m.group(1) + case_like(want, m.group(2))

            return re.sub(r"^(\s+)(is|are|was|were)\b", fix, chunk, count=1, flags=re.IGNORECASE)

        def settle(following: str) -> None:
            nonlocal pending
            if pending is not None:
                out[pending] = case_like(_indefinite(following), out[pending])
                pending = None

        for i, s in enumerate(spans):
            before = agree_following_verb(text[pos : s.start])
            verb = replacement.get(("verb", i))
            if verb:
                before = re.sub(
                    r"\b(is|are)(\s+)((?:[Aa]n?\s+)?)$",
                    lambda m, verb=verb: case_like(verb, m.group(1)) + m.group(2) + m.group(3),
                    before,
                )
            new = replacement.get(i, s.text)
            settle(new if not before.strip() else before)
            m = _ARTICLE.search(before)
            if m and replacement.get(("article", i)):  # "a dog" -> "three cats": the article was the count
                before = before[: m.start(1)] + case_like(replacement["article", i], m.group(1)) + m.group(2)
            elif m:  # fix the article right before a filled slot
                before = before[: m.start(1)] + case_like(_indefinite(new), m.group(1)) + m.group(2)
            out += [before, new]
            if replacement.get(("indefinite", i)):
                pending = len(out) - 1
            pos = s.end
            plural_before = replacement.get(("verb_after", i))
        tail = agree_following_verb(text[pos:])
        settle(tail)
        out.append(tail)
        return "".join(out)

    def describe(self) -> dict:
        return {"filler": self.name}

    def close(self) -> None:
        pass
