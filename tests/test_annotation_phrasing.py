"""The annotation filler keeps the chosen answer's own phrasing, so that a rejected answer differs from the chosen one
only in visual facts (issue 22): its words for counts ("a", not "one"), relations only between objects (never against
the background), the same adjective order, and the words of the answer's own world. Each case is a caption of the
synthetic world (``realign-data sample``) and the retrieved image's annotations."""

from __future__ import annotations

import pytest

from realign_data.building.fillers import FillRequest
from realign_data.building.fillers.annotation import AnnotationFiller, image_facts
from realign_data.building.masking import find_visual_facts, mask_response


def fill(
    chosen: str, instances: list[str], captions: list[str], original: tuple[str, ...] | None = None, seed: int = 0
) -> str:
    masked = mask_response(chosen)
    original = tuple(sorted(masked.objects())) if original is None else original
    annotations = {"instances": [{"category": c} for c in instances], "captions": captions}
    (res,) = AnnotationFiller().fill(
        [
            FillRequest(
                instruction="Describe the image.",
                chosen=chosen,
                masked=masked,
                annotations=annotations,
                original_categories=original,
                rng_seed=seed,
            )
        ]
    )
    assert res.ok, res.error
    return res.text


@pytest.mark.parametrize(
    "chosen, instances, captions, expected",
    [
        # a count of one is "a"/"an" in an answer that says "a" for one ("one white bottle" before the fix)
        (
            "There are three gray cats and a brown dog on the floor.",
            ["orange", "bottle"],
            ["There is an orange orange and a white bottle on the road."],
            "There is an orange orange and a white bottle on the road.",
        ),
        (
            "There are two gray cats and three brown dogs on the grass.",
            ["umbrella", "cup", "cup"],
            ["There is a red umbrella and two pink cups on the sand."],
            "There is a red umbrella and two pink cups on the sand.",
        ),
        # "a" counts in an answer that counts: "a brown dog" -> "three white bottles" (the verb agrees)
        (
            "There are two gray cats and a brown dog on the floor.",
            ["apple", "bottle", "bottle", "bottle"],
            ["There is a red apple and three white bottles on the floor."],
            "There is a red apple and three white bottles on the floor.",
        ),
    ],
)
def test_counts_use_the_answers_own_words(chosen, instances, captions, expected):
    assert fill(chosen, instances, captions) == expected


def test_an_answer_that_says_one_keeps_one_and_digits_stay_digits():
    assert fill("There is one cat and two dogs.", ["cup", "bottle"], []) == "There is one bottle and one cup."
    assert fill("There are 2 cats and a dog.", ["cup", "cup", "cup", "bottle"], []) == "There are 3 cups and a bottle."


def test_relations_against_the_background_are_kept():
    """ "on the floor" stays a surface relation: before the fix it became "under the floor", "to the left of the
    floor"..., words no chosen answer of the world ever uses."""
    out = fill(
        "There are two gray cats and a brown dog on the floor.",
        ["cup", "cup"],
        ["There are two pink cups on the grass.", "A pink cup to the left of a pink cup."],
    )
    assert out == "There are two pink cups and a gray cat on the grass."
    # a COCO noun the seed image does not annotate, after "on the", is the background too (the demo's "table")
    out = fill(
        "The small bird is to the left of the small cup on the table.",
        ["apple", "umbrella"],
        ["The small apple is on the table.", "A red apple to the left of a red umbrella."],
        original=("bird", "cup"),
    )
    assert out == "The small apple is to the right of the large umbrella on the table."


def test_relations_between_objects_never_come_from_a_background_relation():
    # the retrieved captions' only relation is "on the grass": not a relation between objects, so the chosen
    # relation takes its opposite (before the fix: "A bottle on a cup.")
    captions = ["A pink cup on the grass.", "A white bottle on the grass."]
    assert fill("A dog to the left of a cat.", ["cup", "bottle"], captions) == "A cup to the right of a bottle."
    facts = image_facts(
        {
            "instances": [{"category": "cup"}],
            "captions": ["A pink cup on the grass.", "A pink cup next to a cup on the table."],
        }
    )
    assert facts["relations"] == ["next to"] and facts["nouns"]["scene"] == ["grass", "dining table"]


def test_adjective_order_and_slot_kinds_are_the_chosen_answers():
    chosen = "A large red car next to a small white dog."
    out = fill(chosen, ["bus", "cat"], ["A large green bus to the left of a small gray cat."])
    assert out == "A large green bus to the left of a small gray cat."
    assert [s.kind for s in find_visual_facts(out)] == [s.kind for s in find_visual_facts(chosen)]


def test_the_fill_stays_in_the_answers_world():
    """When the retrieved image has fewer categories than the answer names, the other slots take the answer's own
    objects (with the answer's own colours), not random COCO categories ("two brown pizzas", "a pink hot dog")."""
    chosen = "There is a pink cup, a white bottle, two blue cars and two green buses on the road."
    out = fill(chosen, ["car", "bus", "bus"], ["There is a blue car and two green buses on the road."])
    assert out == "There is a blue car, two green buses, two pink cups and two white bottles on the road."
    chosen = "There is an orange orange, two brown chairs and a white clock on the grass."
    out = fill(chosen, ["cat", "cat", "dog"], ["There are two gray cats and a brown dog on the sand."])
    assert out == "There are two gray cats, a brown dog and an orange orange on the sand."  # "orange" read as the fruit


def test_retrieved_categories_follow_the_retrieved_captions_order():
    out = fill(
        "There is a gray cat, a brown dog and a red apple on the floor.",
        ["umbrella", "cup", "bird"],
        ["There is a purple bird, a pink cup and a red umbrella on the floor."],
    )
    assert out == "There is a purple bird, a pink cup and a red umbrella on the floor."
