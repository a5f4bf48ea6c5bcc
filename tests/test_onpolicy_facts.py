"""Checking an answer against an image's truth and correcting it (realign_data/building/facts.py): fast units."""

from __future__ import annotations

from realign_data.building.facts import correct_from_truth, find_hallucinations, masked_answer, truth_of

ANNOTATIONS = {
    "instances": [{"category": "cat"}, {"category": "cat"}, {"category": "apple"}, {"category": "car", "iscrowd": 1}],
    "captions": ["Two grey cats next to a red apple.", "A picture of two gray cats, an apple and cars."],
}


def test_truth_from_instances_counts_and_caption_colours():
    truth = truth_of(ANNOTATIONS)
    assert truth.source == "instances" and truth.objects == {"cat", "apple", "car"}
    assert truth.counts == {"cat": 2, "apple": 1}  # a crowd instance has no exact count
    assert truth.colours == {"cat": {"gray"}, "apple": {"red"}}  # "grey" is "gray"
    assert truth.order[:2] == ("cat", "apple")  # the captions' order


def test_each_kind_of_hallucination_is_found_at_its_characters():
    answer = "Three grey cats, two cars and a blue apple near a dog."
    facts = find_hallucinations(answer, truth_of(ANNOTATIONS))
    assert [(f.kind, answer[f.start : f.end], f.truth) for f in facts] == [
        ("count", "Three", 2),
        ("color", "blue", ["red"]),
        ("object", "dog", None),
    ]  # "two cars": the car is a crowd, not counted; "grey" is one of the cats' colours
    assert masked_answer(answer, facts).masked == "[COUNT] grey cats, two cars and a [COLOR] apple near a [OBJECT]."


def test_the_correction_writes_the_truth_in_with_its_grammar():
    truth = truth_of(ANNOTATIONS)
    answer = "There are three dogs and one cat."
    text, changed = correct_from_truth(answer, find_hallucinations(answer, truth), truth)
    assert text == "There is one apple and two cats."  # the new object takes its own count and number
    assert [(c["text"], c["replacement"]) for c in changed] == [("dogs", "apple"), ("one", "two")]
    assert find_hallucinations(text, truth) == []


def test_no_correction_when_every_true_object_is_named():
    truth = truth_of(ANNOTATIONS)
    answer = "Two cats, an apple, cars and a dog."
    assert correct_from_truth(answer, find_hallucinations(answer, truth), truth) is None


def test_without_instances_the_trusted_answer_is_the_truth():
    truth = truth_of(None, ["A man riding a horse on a beach."])
    assert truth.source == "trusted_answer" and truth.objects == {"person", "horse"} and not truth.counts
    facts = find_hallucinations("Three men ride a horse next to a dog.", truth)
    assert [(f.kind, f.text) for f in facts] == [("object", "dog")]  # counts are not checked without instances


def test_only_declared_categories_are_checked():
    truth = truth_of(ANNOTATIONS, vocabulary=["cat", "apple", "car"])
    assert find_hallucinations("Two cats on a table near a dog.", truth) == []  # as CHAIR with the file's categories
