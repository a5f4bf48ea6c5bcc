"""POPE answer parsing and CHAIR scoring against hand-computed expectations (issue 11)."""

from __future__ import annotations

import pytest

from realign_trl.eval.scoring import ChairScorer, chair_metrics, parse_pope_answer, pope_metrics


@pytest.mark.parametrize(
    "answer, label, readable",
    [
        ("Yes.", "yes", True),
        ("No, there is not.", "no", True),
        ("yes there is a cat", "yes", True),
        ("", "yes", False),  # the reference scores an empty answer "yes"
        ("There is no cat in the image.", "no", True),
        ("I do not think so", "no", True),  # "not" anywhere in the first sentence
        ("Yes. There is no dog, though.", "yes", True),  # only the first sentence counts
        ("A black cat.", "yes", True),  # restates the asked object (cat)
        ("A black dog.", "yes", False),  # neither yes nor no about a cat
        ("Nope", "yes", True),  # the reference misreads it; a person reads no
        ("NO", "yes", True),  # the reference's test is case-sensitive: No / no / not
    ],
)
def test_pope_answers_parse_as_the_reference(answer, label, readable):
    assert parse_pope_answer(answer, "reference", "cat") == (label, readable)


@pytest.mark.parametrize(
    "answer",
    [
        "No!",
        "NO",
        "Nope.",
        "None.",
        "Not that I can see.",
        "There isn't a dog",
        "There is no dog",
        "I don't see a dog",
        "no, there is none",
        "Nah.",
    ],
)
def test_robust_pope_parser_reads_negative_answers(answer):
    assert parse_pope_answer(answer, asked="dog") == ("no", True)
    assert parse_pope_answer(answer) == ("no", True)


@pytest.mark.parametrize(
    "answer, label, recognised",
    [
        ("Yes!", "yes", True),
        ("YES", "yes", True),
        ("There is a dog.", "yes", True),
        ("I can see two dogs", "yes", True),
        ("A dog is lying on the couch.", "yes", True),  # restates the asked object
        ("Yes. There is no dog, though.", "yes", True),  # the leading word decides
        ("A black cat.", "yes", False),  # ambiguous: the reference's label, flagged
        ("I'm not sure.", "no", False),
        ("", "yes", False),
        ("Not sure.", "yes", False),
        ("No idea.", "no", False),  # unsure, not a "no"
        ("Certainly not.", "no", True),
        ("There's a dog.", "yes", True),
        ("The answer is yes.", "yes", True),
        ("There is a dog and no cat.", "yes", True),  # the clause that names the dog decides
        ("There is a cat but no dog.", "no", True),
    ],
)
def test_robust_pope_parser_affirmations_and_ambiguity(answer, label, recognised):
    assert parse_pope_answer(answer, asked="dog") == (label, recognised)


def test_unknown_pope_parser():
    with pytest.raises(ValueError, match="unknown POPE parser 'llm'; valid: robust, reference"):
        parse_pope_answer("yes", "llm")


def test_pope_metrics_by_hand():
    rows = [("yes", "Yes."), ("yes", "No."), ("no", "no"), ("no", "Yes, there is."), ("no", ""), ("yes", "yes")]
    records = []
    for label, answer in rows:
        prediction, recognised = parse_pope_answer(answer, "reference")
        records.append({"label": label, "prediction": prediction, "recognised": recognised})
    m = pope_metrics(records)
    # TP = 2 (rows 1, 6), FN = 1 (row 2), TN = 1 (row 3), FP = 2 (rows 4, 5: the empty answer counts as yes)
    assert (m["tp"], m["fn"], m["tn"], m["fp"]) == (2, 1, 1, 2)
    assert m["accuracy"] == pytest.approx(3 / 6)
    assert m["precision"] == pytest.approx(2 / 4)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 * (1 / 2) * (2 / 3) / (1 / 2 + 2 / 3))
    assert m["yes_ratio"] == pytest.approx(4 / 6)
    assert m["unparseable"] == 1 and m["questions"] == 6
    assert pope_metrics([{"label": "yes", "prediction": "no"}])["f1"] == 0.0  # undefined precision: 0, no crash


def _mentions(scorer, text):
    return [(m.word, m.object) for m in scorer.mentions(text)]


def test_chair_mentions_synonyms_plurals_and_two_word_objects():
    s = ChairScorer(synonyms="extended")
    assert _mentions(s, "Two hot dogs on a dining table next to a puppy.") == [
        ("hot dogs", "hot dog"),
        ("dining table", "dining table"),
        ("puppy", "dog"),
    ]
    assert _mentions(s, "A man and two women with kittens near a sofa.") == [
        ("man", "person"),
        ("women", "person"),
        ("kittens", "cat"),
        ("sofa", "couch"),
    ]
    assert _mentions(s, "An orange cat eats an orange.") == [("cat", "cat"), ("orange", "orange")]
    # the reference chair.py's special cases
    assert _mentions(s, "A baby elephant and an adult giraffe.") == [("elephant", "elephant"), ("giraffe", "giraffe")]
    assert _mentions(s, "A passenger jet.") == [("jet", "airplane")]
    assert _mentions(s, "A toilet seat and a toilet.") == [("toilet", "toilet"), ("toilet", "toilet")]
    assert _mentions(s, "A teddy bear, not a bear.") == [("teddy bear", "teddy bear"), ("bear", "bear")]
    assert _mentions(s, "A mobile phone.") == [("mobile phone", "cell phone")]  # one object, one mention
    # the colour rule of the shared object reader: "orange" modifies the next noun, or is the fruit
    assert _mentions(s, "I can see an apple, an orange and a traffic light.") == [
        ("apple", "apple"),
        ("orange", "orange"),
        ("traffic light", "traffic light"),
    ]
    assert _mentions(s, "An orange and two women.") == [("orange", "orange"), ("women", "person")]


def test_chair_metrics_by_hand():
    s = ChairScorer()
    truth = {
        1: s.ground_truth(["dog", "dining table"], ["A dog under a table with a frisbee."]),
        2: s.ground_truth(["person", "pizza"]),
        3: s.ground_truth(["cat"]),
    }
    assert truth[1] == {"dog", "dining table", "frisbee"}  # instances + objects of the reference captions
    captions = {
        # mentions: hot dog (hallucinated), dining table, dog, puppy (dog again) -> 4 mentions, 1 hallucinated
        1: "A hot dog on a dining table and a dog with a puppy.",
        # mentions: women (person), pizzas, oven (hallucinated), oven (repeat, hallucinated) -> 4 mentions, 2 halluc.
        2: "Two women share pizzas by an oven; the oven is hot.",
        # says nothing: no mention, recalls nothing
        3: "",
    }
    records = []
    for image_id, caption in captions.items():
        records.append({"image_id": image_id, "answer": caption, **s.score(caption, truth[image_id])})
    assert [r["chair_s"] for r in records] == [1, 1, 0]
    assert records[1]["hallucinated"] == [{"word": "oven", "object": "oven"}] * 2
    m = chair_metrics(records)
    assert m["chair_s"] == pytest.approx(2 / 3)
    assert m["chair_i"] == pytest.approx(3 / 8)  # every mention counts, repeats included
    # the set of objects of each caption: {hot dog, dining table, dog} with hot dog hallucinated, {person, pizza,
    # oven} with oven hallucinated, {} -> 2 / 6
    assert m["chair_i_unique"] == pytest.approx(2 / 6)
    # recall: image 1 names dog + dining table of {dog, dining table, frisbee}; image 2 person + pizza of 2;
    # image 3 nothing of {cat}: 4 / 6
    assert m["object_recall"] == pytest.approx(4 / 6)
    assert (m["mentions"], m["hallucinated_mentions"], m["ground_truth_objects"]) == (8, 3, 6)
    assert m["empty_captions"] == 1
    assert m["most_hallucinated"][0] == {"object": "oven", "mentions": 2}


def test_vocabulary_limited_to_the_annotated_categories():
    """The synthetic corpus annotates 14 categories: its "table" background is not a hallucination there."""
    caption = "A red apple and a cat on the table."
    assert ChairScorer().score(caption, {"apple", "cat"})["hallucinated"] == [
        {"word": "table", "object": "dining table"}
    ]
    sample = ChairScorer(["apple", "banana", "cat", "dog"])
    record = sample.score(caption, {"apple", "cat"})
    assert record["hallucinated"] == [] and record["recalled"] == ["apple", "cat"]
    # categories outside the synonym table are found by name and plural
    custom = ChairScorer(["fire truck", "traffic cone", "cat"])
    assert sorted(_mentions(custom, "Two traffic cones by a fire truck, a truck and a cat.")) == [
        ("cat", "cat"),
        ("fire truck", "fire truck"),
        ("traffic cones", "traffic cone"),
    ]
    custom = ChairScorer(["fire truck", "traffic cone", "cat"], synonyms="extended")
    assert _mentions(custom, "Two traffic cones by a fire truck, a truck and a cat.") == [
        ("traffic cones", "traffic cone"),
        ("fire truck", "fire truck"),
        ("cat", "cat"),
    ]


def test_score_runs_both_pope_parsers_and_says_when_they_disagree():
    """Issue 23 (3): answers in sentences; the robust parser labels, the reference one is computed beside it."""
    from realign_trl.eval.runner import score
    from realign_trl.eval.suite import EvalSuite

    answers_by_label = [
        ("no", "NO"),
        ("no", "Nope."),
        ("no", "There isn't a dog."),
        ("no", "No."),
        ("yes", "Yes."),
        ("yes", "There is a dog."),
        ("no", "I'm not sure"),
        ("yes", "Yes"),
    ]
    questions = [
        {"question_id": k, "image_id": 1, "object": "dog", "label": label, "question": f"Q{k}?"}
        for k, (label, _) in enumerate(answers_by_label)
    ]
    answers = {("pope", 1, f"Q{k}?"): (text, None) for k, (_, text) in enumerate(answers_by_label)}
    suite = EvalSuite(benches=("pope",), images={1: b""}, pope={"random": questions})
    result = score(suite, answers)
    pope = result.metrics["pope"]
    # robust: NO, Nope, isn't -> no (reference: yes); "I'm not sure" unparseable -> the reference's "no"
    assert pope["parser"] == "robust" and pope["splits"]["random"]["accuracy"] == pytest.approx(8 / 8)
    assert pope["other_parser"]["parser"] == "reference"
    assert pope["other_parser"]["splits"]["random"]["accuracy"] == pytest.approx(5 / 8)
    assert (pope["unparseable"], pope["parser_disagreements"]) == (1, 3)
    assert "disagree on 37.5% of the answers" in result.table()
    rows = result.records["pope"]["random"]
    assert [r["unparseable"] for r in rows] == [False] * 6 + [True, False]
    assert [r["prediction_reference"] for r in rows[:3]] == ["yes"] * 3
    reference = score(
        EvalSuite(benches=("pope",), images={1: b""}, pope={"random": questions}, pope_parser="reference"), answers
    )
    assert reference.metrics["pope"]["splits"]["random"]["accuracy"] == pytest.approx(5 / 8)
    assert reference.records["pope"]["random"][0]["prediction_robust"] == "no"
