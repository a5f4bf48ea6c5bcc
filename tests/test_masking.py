"""Strategic masking: objects (COCO + CHAIR synonyms + plurals), attributes, counts, relations."""

from __future__ import annotations

import pytest

from realign_data.building.masking import (
    COCO_CATEGORIES,
    LexiconMasker,
    ModelMasker,
    find_visual_facts,
    mask_response,
    pluralize,
)


def kinds(text):
    return [(s.kind, s.text, s.value) for s in find_visual_facts(text)]


def test_masks_every_kind_with_offsets():
    text = "Two red apples to the left of a blue car."
    r = mask_response(text)
    assert r.masked == "[COUNT] [COLOR] [OBJECT] [RELATION] a [COLOR] [OBJECT]."
    assert [(s.kind, s.value) for s in r.spans] == [
        ("count", 2),
        ("color", "red"),
        ("object", "apple"),
        ("relation", "to the left of"),
        ("color", "blue"),
        ("object", "car"),
    ]
    for s in r.spans:
        assert text[s.start : s.end] == s.text
    assert r.spans[2].plural and not r.spans[5].plural
    assert r.objects() == {"apple", "car"}


def test_coco_80_categories_synonyms_and_plurals():
    assert len(COCO_CATEGORIES) == 80
    assert kinds("A man and three kittens near a sofa.") == [
        ("object", "man", "person"),
        ("count", "three", 3),
        ("object", "kittens", "cat"),
        ("relation", "near", "near"),
        ("object", "sofa", "couch"),
    ]
    assert [s.value for s in find_visual_facts("people, knives, buses, teddy bears, hot dogs, a cell phone")] == [
        "person",
        "knife",
        "bus",
        "teddy bear",
        "hot dog",
        "cell phone",
    ]
    assert pluralize("knife") == "knives" and pluralize("bus") == "buses" and pluralize("Cup") == "Cups"
    assert pluralize("giraffe") == "giraffes"
    assert kinds("Two giraffes in a field.") == [
        ("count", "Two", 2),
        ("object", "giraffes", "giraffe"),
        ("relation", "in", "in"),
        ("scene", "field", "field"),
    ]  # #14


def test_attributes_counts_and_relations():
    assert kinds("A large wooden table with 3 cups on top of it.") == [
        ("size", "large", "large"),
        ("material", "wooden", "wooden"),
        ("object", "table", "dining table"),
        ("count", "3", 3),
        ("object", "cups", "cup"),
        ("relation", "on top of", "on top of"),
    ]
    assert ("relation", "on top of", "on top of") in kinds("A cat on top of a red car.")
    assert ("relation", "behind", "behind") in kinds("A dog sits behind the bench.")
    assert ("relation", "next to", "next to") in kinds("A bus next to a bicycle.")


def test_orange_colour_or_fruit_and_ambiguous_words():
    assert kinds("An orange cat next to an orange.")[0] == ("color", "orange", "orange")
    assert kinds("An orange cat next to an orange.")[-1] == ("object", "orange", "orange")
    # years, "one of", a weak relation with nothing visual after it: not facts
    assert kinds("In 2019 one of them turned the light on.") == []


def test_nothing_to_mask():
    r = mask_response("It is a nice day.")
    assert r.spans == [] and r.masked == "It is a nice day."


def test_restricting_kinds_and_bad_kind():
    r = LexiconMasker(["object"]).mask("Two red apples.")
    assert r.masked == "Two red [OBJECT]."
    with pytest.raises(ValueError, match="unknown span kind"):
        LexiconMasker(["shape"])


def test_model_masker_uses_backend_and_falls_back():
    text = "A red apple on a table."
    m = ModelMasker(lambda prompts: ["A [[color:red]] [[object:apple]] on a table." for _ in prompts])
    r = m.mask(text)
    assert r.masked == "A [COLOR] [OBJECT] on a table."
    assert r.spans[1].value == "apple"  # the lexicon's canonical value is kept
    fallback = ModelMasker(lambda prompts: ["garbage" for _ in prompts]).mask(text)
    assert fallback.masked == mask_response(text).masked


def test_deterministic():
    text = "There are two red umbrellas, three black bicycles and three blue cars on the grass."
    assert mask_response(text).to_dict() == mask_response(text).to_dict()


@pytest.mark.parametrize(
    "text, reading",
    [
        ("An orange cat.", "color"),
        ("An orange and a banana.", "object"),  # a conjunction and a determiner: a new noun phrase
        ("An orange and two women.", "object"),
        ("I can see an apple, an orange and a traffic light.", "object"),
        ("Orange juice in a glass.", "object"),  # a food head: the fruit
        ("Orange and white cups.", "color"),  # a coordinated colour still modifies the noun
    ],
)
def test_orange_is_a_colour_only_when_it_modifies_the_next_noun(text, reading):
    """Issue 23: "orange" followed by "and a ..." was read as a colour, losing the fruit."""
    assert [kind for kind, word, _ in kinds(text) if word.lower() == "orange"] == [reading]
    assert ("object", "oranges", "orange") in kinds("Two oranges.")
    from realign_data.objects import coco_mentions  # the eval reads objects with the same rule

    assert ("orange" in [c for *_, c in coco_mentions(text)]) == (reading == "object")
