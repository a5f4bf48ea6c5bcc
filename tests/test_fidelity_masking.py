"""Masking beyond COCO-80 (issue #14, item 4): scene, clothing and other nouns, attributes, quantities and
relations are masked with their kind; the model-free filler swaps them for words of the retrieved image's captions;
recall on the annotated caption list stays >= 0.95."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from realign_data.building.fillers.annotation import AnnotationFiller
from realign_data.building.fillers.base import FillRequest
from realign_data.building.masking import find_visual_facts, mask_response
from realign_data.objects import vocabulary

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def kinds(text):
    return [(s.kind, s.text) for s in find_visual_facts(text)]


def test_words_of_real_captions_outside_coco_are_masked_with_their_kind():
    assert kinds("A man in a striped shirt on the grass under a cloudy sky near white cabinets.") == [
        ("object", "man"),
        ("attribute", "striped"),
        ("clothing", "shirt"),
        ("relation", "on"),
        ("scene", "grass"),
        ("relation", "under"),
        ("attribute", "cloudy"),
        ("scene", "sky"),
        ("relation", "near"),
        ("color", "white"),
        ("object", "cabinets"),
    ]
    spans = find_visual_facts("Several boats, a couple of buildings and a saucer with trees in the background.")
    assert [(s.kind, s.value) for s in spans] == [
        ("count", 3),
        ("object", "boat"),
        ("count", 2),
        ("scene", "building"),
        ("object", "saucer"),
        ("scene", "tree"),
        ("relation", "in the background"),
    ]
    assert [s.plural for s in spans if s.kind in ("object", "scene")] == [True, True, False, True]
    # the COCO categories a response names stay COCO categories (region-noise and CHAIR read them)
    assert mask_response("A dog wearing a red collar on a sofa near the window.").objects() == {"dog", "couch"}
    # "in" is a place, not clothing; "table" is COCO's dining table; years and "one of" stay unmasked
    assert ("relation", "in") not in kinds("A woman in a pink dress.")
    assert [s.value for s in find_visual_facts("on the kitchen table")][-1] == "dining table"
    assert kinds("In 2019 one of them came back.") == []


def fill(chosen: str, captions: list[str], instances: list[str], original=("person",)) -> str:
    annotations = {"instances": [{"category": c} for c in instances], "captions": captions}
    (res,) = AnnotationFiller().fill(
        [
            FillRequest(
                instruction="Describe the image.",
                chosen=chosen,
                masked=mask_response(chosen),
                annotations=annotations,
                original_categories=original,
                rng_seed=0,
            )
        ]
    )
    assert res.ok, res.error
    return res.text


def test_model_free_fill_takes_non_coco_words_from_the_retrieved_captions():
    captions = ["A brown dog in a red collar runs on a sandy beach under a cloudy sky.", "A dog plays near the ocean."]
    chosen = "A man in a blue jacket stands on the grass next to a tall building."
    out = fill(chosen, captions, ["dog"])
    before, after = find_visual_facts(chosen), find_visual_facts(out)
    assert [s.kind for s in after] == [s.kind for s in before]  # every slot refilled with a word of its kind
    by_kind = {k: [s.value for s in after if s.kind == k] for k in ("object", "clothing", "scene", "relation")}
    assert by_kind["object"] == ["dog"] and by_kind["scene"] == ["beach", "sky"]  # the captions' scene nouns
    assert by_kind["clothing"][0] in vocabulary.CLOTHING and by_kind["clothing"] != ["jacket"]  # none in captions
    assert set(by_kind["relation"]) <= {"in", "on", "under", "near"}  # the captions' relations
    assert out == fill(chosen, captions, ["dog"])  # deterministic
    # a COCO word the seed image does not annotate, used as a surface, becomes a scene noun of the captions
    surface = fill("A cup on the table.", captions, ["dog"], original=("cup",))
    assert surface.startswith("A dog ") and surface.endswith(" the beach.")
    # phrase-final relations swap with each other only
    assert fill("Trees in the background.", captions, ["dog"]).endswith("in the foreground.")


def test_masking_recall_on_the_annotated_caption_list():
    spec = importlib.util.spec_from_file_location("masking_recall", BENCH / "masking_recall.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    lines = [
        ln.strip()
        for ln in (BENCH / "data" / "masking_heldout.txt").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    captions = [bench.parse(ln) for ln in lines]
    assert len(captions) == 100
    result = bench.measure(captions)
    assert result["recall"] >= 0.95, result["missed"]
    assert bench.measure(captions, bench.coco_only)["recall"] < 0.7  # what COCO-80 alone would mask
