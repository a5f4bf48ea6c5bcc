"""Issue 23 (5): AMBER read from its own file layout and scored as its inference.py does, by hand."""

from __future__ import annotations

import json

import pytest

from realign_trl.eval.amber import AmberData, amber_suite, score_amber
from realign_trl.eval.runner import score, work_items
from realign_trl.eval.suite import EvalError


def write_amber(root, image_bytes=b"img"):
    data = root / "data"
    (data / "query").mkdir(parents=True)
    (data / "image").mkdir()
    queries = [{"id": 1, "image": "AMBER_1.jpg", "query": "Describe this image."},
               {"id": 2, "image": "AMBER_2.jpg", "query": "Describe this image."},
               {"id": 3, "image": "AMBER_1.jpg", "query": "Is there a dog in this image?"},
               {"id": 4, "image": "AMBER_1.jpg", "query": "Is there a cat in this image?"},
               {"id": 5, "image": "AMBER_2.jpg", "query": "Is the dog running in this image?"},
               {"id": 6, "image": "AMBER_2.jpg", "query": "Is there direct contact between the dog and grass?"},
               {"id": 7, "image": "AMBER_2.jpg", "query": "Are there two dogs in this image?"}]
    annotations = [{"id": 1, "type": "generative", "truth": ["dog", "grass", "tree"], "hallu": ["cat", "frisbee"]},
                   {"id": 2, "type": "generative", "truth": ["person", "car"], "hallu": ["bus"]},
                   {"id": 3, "type": "discriminative-hallucination", "truth": "yes"},
                   {"id": 4, "type": "discriminative-hallucination", "truth": "no"},
                   {"id": 5, "type": "discriminative-attribute-action", "truth": "no"},
                   {"id": 6, "type": "discriminative-relation", "truth": "yes"},
                   {"id": 7, "type": "discriminative-attribute-number", "truth": "no"}]
    relation = {"dog": ["puppy"], "grass": ["lawn"], "tree": [], "cat": ["kitten"], "frisbee": [],
                "person": ["man", "woman", "people"], "car": ["vehicle"], "bus": [], "sky": [], "table": []}
    (data / "query" / "query_all.json").write_text(json.dumps(queries))
    (data / "annotations.json").write_text(json.dumps(annotations))
    (data / "relation.json").write_text(json.dumps(relation))
    (data / "safe_words.txt").write_text("sky\nline\n")
    for name in ("AMBER_1.jpg", "AMBER_2.jpg"):
        (data / "image" / name).write_bytes(image_bytes)
    return root


ANSWERS = {
    # nouns: puppy (dog, covered), lawn (grass, covered), kitten (cat: hallucinated, cognised), sky (safe word),
    # table (in the vocabulary, not in the truth: hallucinated) -> 4 nouns counted, 2 hallucinated
    1: "A puppy plays on the lawn while a kitten watches under the sky near a table.",
    # nouns: men (person, covered), vehicles (car, covered) -> 2 nouns, 0 hallucinated
    2: "Two men stand next to vehicles.",
    3: "Yes", 4: "Yes, there is a cat.", 5: "No.", 6: "Maybe.", 7: "NO",
}


def test_amber_metrics_by_hand(tmp_path):
    suite = amber_suite(write_amber(tmp_path / "amber"))
    assert suite.benches == ("amber",) and sorted(suite.images) == [1, 2]
    work = work_items(suite)
    assert work["amber_generative"] == [(1, "Describe this image."), (2, "Describe this image.")]
    assert len(work["amber_discriminative"]) == 5
    by_query = {(q["image"], q["query"]): q["id"] for q in suite.amber.queries}
    answers = {(bench, image, query): (ANSWERS[by_query[(f"AMBER_{image}.jpg", query)]], None)
               for bench, keys in work.items() for image, query in keys}
    metrics, rows = score_amber(suite.amber, answers)
    g = metrics["generative"]
    assert g["chair"] == pytest.approx(2 / 6)          # 2 hallucinated of 6 counted nouns (4 + 2)
    assert g["cover"] == pytest.approx(4 / 5)          # dog, grass of 3; person, car of 2
    assert g["hal"] == pytest.approx(1 / 2)            # one response of two hallucinates
    assert g["cog"] == pytest.approx(1 / 3)            # cat of {cat, frisbee, bus}
    assert rows[0]["hallucinated"] == ["kitten", "table"] and rows[0]["cognised"] == ["cat"]
    d = metrics["discriminative"]
    # answers read: 3 yes (truth yes), 4 yes (truth no), 5 no (truth no), 6 unparseable -> "yes" (truth yes),
    # 7 no (truth no): 4 of 5 correct; said no: 5, 7 (both truly no); truly no: 4, 5, 7
    assert d["all"]["accuracy"] == pytest.approx(4 / 5)
    assert (d["all"]["precision"], d["all"]["recall"]) == (pytest.approx(1.0), pytest.approx(2 / 3))
    assert d["all"]["f1"] == pytest.approx(2 * (2 / 3) / (1 + 2 / 3))
    assert d["all"]["unparseable"] == 1
    assert d["existence"]["accuracy"] == pytest.approx(1 / 2) and d["existence"]["f1"] == 0.0
    assert d["attribute"]["accuracy"] == 1.0 and d["relation"]["accuracy"] == 1.0
    result = score(suite, answers)
    assert result.metrics["amber"]["generative"]["cover"] == pytest.approx(4 / 5)
    assert "AMBER generative  CHAIR 0.3333" in result.table()


def test_amber_release_errors(tmp_path):
    with pytest.raises(EvalError, match="is not an AMBER release: annotations file"):
        AmberData.load(tmp_path)
    root = write_amber(tmp_path / "amber")
    (root / "data" / "image" / "AMBER_2.jpg").unlink()
    with pytest.raises(EvalError, match="AMBER image .*AMBER_2.jpg' is missing"):
        amber_suite(root)
