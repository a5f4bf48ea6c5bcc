"""Quality filters (issue #14, item 5): each drops a constructed bad fill with its own reason, counted in the
report; --min-similarity; the annotation filler refuses a corpus without COCO annotations."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realign_data import BuildConfig, BuildError, build
from realign_data.building.quality import QualityFilters, keeps_unmasked_words, length_ratio
from realign_data.cli import app

sys.path.insert(0, str(Path(__file__).parent / "support"))
from openai_server import OpenAIServer, answer_for

runner = CliRunner()


def run(kb, out, answer=None, **kw):
    with OpenAIServer(answer=answer) as srv:
        base = dict(
            index=str(kb),
            out=str(out),
            gate="lexical",
            top_k=2,
            max_samples=4,
            filler="openai",
            model="m",
            base_url=srv.base_url,
            progress=False,
        )
        return build(BuildConfig(**{**base, **kw}))


def check_dropped_for(res, reason: str, seeds: int = 4, fills: int = 8) -> None:
    assert res.pairs_written == 0 and res.drops == {reason: seeds}
    assert res.report["fills_rejected"] == {reason: fills}
    assert res.report["provenance"]["quality_filters"]["enabled"] is True


def seed_file(tmp_path, sample_corpus, answers: list[str], questions=("Describe the image.",)) -> str:
    images = sorted((sample_corpus / "train2014").iterdir())
    path = tmp_path / "seeds.jsonl"
    path.write_text(
        "".join(
            json.dumps({"image": str(images[i]), "question": q, "answer": a}) + "\n"
            for i, a in enumerate(answers)
            for q in questions
        )
    )
    return str(path)


def test_a_fill_that_rewrites_the_unmasked_words_is_dropped(tiny_kb, tmp_path, sample_corpus):
    seeds = seed_file(
        tmp_path,
        sample_corpus,
        [
            "In this photo we can see a red car parked by the grass.",
            "Here a small dog waits patiently beside two cups.",
        ],
    )
    res = run(
        tiny_kb,
        tmp_path / "o",
        seeds=seeds,
        answer=lambda p: "Some zebras far from a purple desert today." if "Answer with slots" in p else answer_for(p),
    )
    check_dropped_for(res, "fill_changed_unmasked", seeds=2, fills=4)
    assert run(tiny_kb, tmp_path / "ok", seeds=seeds).pairs_written == 2  # fills that only change the slots pass
    # articles and is/are may change (fillers make them agree); every other unmasked word stays, in order
    assert keeps_unmasked_words(
        "A [COLOR] [OBJECT] is [RELATION] the [SCENE] today.", "An orange dog are under the sand today."
    )
    assert not keeps_unmasked_words(
        "A [COLOR] [OBJECT] sits [RELATION] the [SCENE] today.", "Today a red dog sits under the sand."
    )


def test_a_fill_of_another_length_is_dropped(tiny_kb, tmp_path):
    res = run(
        tiny_kb,
        tmp_path / "o",
        answer=lambda p: answer_for(p) + " It" + " goes on and on" * 12 if "Answer with slots" in p else answer_for(p),
    )
    check_dropped_for(res, "fill_length")
    assert length_ratio("one two three four", "one two three four five six seven eight") == 2.0
    assert QualityFilters(max_length_ratio=2.0).check("[OBJECT] x y z", "a x y z", "b x y z w v u t", 0.5) is None


def test_a_duplicate_of_another_seeds_rejected_answer_of_the_same_image_is_dropped(tiny_kb, tmp_path, sample_corpus):
    seeds = seed_file(
        tmp_path,
        sample_corpus,
        ["Two red apples to the left of a blue car on the grass."],
        questions=("Describe the image.", "What is in the picture?"),
    )
    res = run(tiny_kb, tmp_path / "o", seeds=seeds)  # the server's fill ignores the image: same text twice
    assert res.pairs_written == 1 and res.drops == {"fill_duplicate": 1}
    assert res.report["fills_rejected"] == {"fill_duplicate": 2}
    from realign_data.building.schema import COLUMNS
    from realign_data.publish.dataset_card import ConfigSummary, render_generated_section
    from realign_data.publish.provenance import read_provenance

    card = render_generated_section(
        "me/ds", [ConfigSummary("default", "data", {"train": 1}, read_provenance(tmp_path / "o"))], COLUMNS
    )
    assert "| Quality filters | True (`quality_filters`" in card
    assert "Fills not kept by reason: `fill_duplicate` 2" in card
    off = run(tiny_kb, tmp_path / "off", seeds=seeds, quality_filters=False)
    assert off.pairs_written == 2 and off.report["provenance"]["quality_filters"]["checks"] == []


def test_min_similarity_drops_fills_too_far_from_the_chosen_answer(tiny_kb, tmp_path):
    plain = run(tiny_kb, tmp_path / "plain")
    assert plain.pairs_written == 4
    sims = json.loads((tmp_path / "plain" / "build_report.json").read_text())["histograms"]["text_similarity"]
    res = run(tiny_kb, tmp_path / "o", min_similarity=round(sims["max"] + 0.01, 3))
    check_dropped_for(res, "fill_below_min_similarity")
    with pytest.raises(
        BuildError,
        match=r"min similarity must be in \[-1, 0.95\) \(below the sim-threshold\), "
        r"got 0.97",
    ):
        BuildConfig(index="x", min_similarity=0.97)


def test_the_annotation_filler_refuses_a_corpus_without_annotations(tiny_open_clip, sample_corpus, tmp_path):
    from realign_data.kb.corpus import open_source
    from realign_data.kb.knowledge_base_build import build_knowledge_base

    name, ckpt = tiny_open_clip
    build_knowledge_base(
        open_source("folder", sample_corpus / "train2014"),
        tmp_path / "kb",
        model=name,
        pretrained=str(ckpt),
        num_workers=0,
        progress=False,
    )
    image = sorted((sample_corpus / "train2014").iterdir())[0]
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(json.dumps({"image": str(image), "question": "Describe.", "answer": "A red car."}) + "\n")
    r = runner.invoke(
        app,
        [
            "build",
            "--index",
            str(tmp_path / "kb"),
            "--seeds",
            str(seeds),
            "--gate",
            "lexical",
            "--out",
            str(tmp_path / "o"),
            "--quiet",
        ],
    )
    assert r.exit_code == 2 and "--filler transformers or --filler openai" in r.output, r.output
    assert "Traceback" not in r.output
