"""Seed sources: COCO captions, any tabular dataset with column mapping, clear column errors."""

from __future__ import annotations

import json

import pytest

from realign_data.building.seeds import (
    DESCRIPTION_PROMPTS,
    SeedError,
    as_text,
    choose_caption,
    coco_caption_seeds,
    dataset_seeds,
)


def test_coco_caption_seeds(sample_corpus):
    seeds = list(coco_caption_seeds(sample_corpus, seed=0))
    assert len(seeds) == 40
    s = seeds[0]
    assert s.instruction in DESCRIPTION_PROMPTS and s.chosen and s.categories
    assert s.image_path.endswith(".jpg")
    again = list(coco_caption_seeds(sample_corpus, seed=0))
    assert [(x.instruction, x.chosen) for x in again] == [(x.instruction, x.chosen) for x in seeds]
    assert len({x.instruction for x in seeds}) > 1  # prompts vary per image
    joined = next(coco_caption_seeds(sample_corpus, caption="all"))
    assert len(joined.chosen) >= len(s.chosen)


def test_choose_caption():
    caps = ["A cat.", "A gray cat on a chair", "Two cats."]
    assert choose_caption(caps, "longest", seed=0, key="1") == "A gray cat on a chair"
    assert choose_caption(caps, "random", seed=0, key="1") in caps
    assert choose_caption(caps, "all", seed=0, key="1") == "A cat. A gray cat on a chair. Two cats."
    with pytest.raises(SeedError):
        choose_caption(caps, "shortest", seed=0, key="1")


def test_jsonl_seeds_with_column_mapping(tmp_path, sample_corpus):
    rows = [
        {"img": f"train2014/{p.name}", "q": "What is here?", "a": "A red apple."}
        for p in sorted((sample_corpus / "train2014").iterdir())[:3]
    ]
    path = tmp_path / "seeds.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    seeds = list(
        dataset_seeds(
            str(path), image_column="img", instruction_column="q", chosen_column="a", image_root=sample_corpus
        )
    )
    assert [s.chosen for s in seeds] == ["A red apple."] * 3
    assert seeds[0].read_image_bytes()[:2] == b"\xff\xd8"


def test_missing_column_lists_existing_columns(tmp_path):
    path = tmp_path / "seeds.jsonl"
    path.write_text(json.dumps({"image": "x.jpg", "question": "q?", "answer": "a"}))
    with pytest.raises(SeedError, match=r"'caption'.*columns are: image, question, answer"):
        list(dataset_seeds(str(path), chosen_column="caption"))
    path.write_text(json.dumps({"picture": "x.jpg", "question": "q?", "answer": "a"}))
    with pytest.raises(SeedError, match=r"no image column.*picture, question, answer"):
        list(dataset_seeds(str(path)))


def test_save_to_disk_with_image_feature_and_conversational_text(tmp_path):
    import datasets
    from PIL import Image

    ds = datasets.Dataset.from_dict(
        {
            "images": [[Image.new("RGB", (8, 8), "red")]],
            "prompt": [
                [{"role": "user", "content": [{"type": "image", "text": None}, {"type": "text", "text": "Describe."}]}]
            ],
            "chosen": [[{"role": "assistant", "content": [{"type": "text", "text": "A red square."}]}]],
        },
        features=datasets.Features(
            {
                "images": datasets.List(datasets.Image()),
                "prompt": datasets.List(
                    {
                        "role": datasets.Value("string"),
                        "content": datasets.List({"type": datasets.Value("string"), "text": datasets.Value("string")}),
                    }
                ),
                "chosen": datasets.List(
                    {
                        "role": datasets.Value("string"),
                        "content": datasets.List({"type": datasets.Value("string"), "text": datasets.Value("string")}),
                    }
                ),
            }
        ),
    )
    ds.save_to_disk(str(tmp_path / "ds"))
    (s,) = list(dataset_seeds(str(tmp_path / "ds")))
    assert s.instruction == "Describe." and s.chosen == "A red square."
    assert s.image_data and s.read_image_bytes()


def test_as_text_reduces_strings_and_conversations():
    assert as_text("hi") == "hi"
    assert as_text([{"role": "assistant", "content": [{"type": "text", "text": "yo"}]}]) == "yo"
    assert as_text(None) == ""


def test_unknown_seed_source(tmp_path):
    (tmp_path / "x.txt").write_text("nope")
    with pytest.raises(SeedError, match="unknown type"):
        list(dataset_seeds(str(tmp_path / "x.txt")))
