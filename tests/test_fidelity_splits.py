"""Split hygiene (issue #14, item 3): COCO builds read train2014 by default; evaluation-split images are warned
about in the report, the summary and the card; `--coco-split` chooses."""

from __future__ import annotations

import json

import pytest

from realign_data import BuildConfig, BuildError, build, load_built
from realign_data.kb.corpus import CocoAnnotations
from realign_data.kb.splits import is_evaluation_split, split_of_path
from realign_data.testing.sample import make_sample_corpus


@pytest.fixture(scope="module")
def two_splits(tmp_path_factory):
    """A COCO root with train2014 and val2014 (different images), like the usual MS-COCO layout."""
    import shutil

    root, val = tmp_path_factory.mktemp("coco2") / "coco", tmp_path_factory.mktemp("coco2val") / "coco"
    make_sample_corpus(root, num_images=10, seed=0, split="train2014")
    make_sample_corpus(val, num_images=6, seed=1, split="val2014")
    shutil.copytree(val / "val2014", root / "val2014")
    for f in (val / "annotations").glob("*_val2014.json"):
        shutil.copy(f, root / "annotations" / f.name)
    return root


def cfg(root, tmp, name, tiny_open_clip, **kw) -> BuildConfig:
    model, ckpt = tiny_open_clip
    return BuildConfig(
        index=str(tmp / f"kb-{name}"),
        coco_root=str(root),
        kb_model=model,
        kb_pretrained=str(ckpt),
        out=str(tmp / name),
        gate="lexical",
        top_k=3,
        progress=False,
        **kw,
    )


def test_a_root_with_train_and_val_builds_from_train2014_only(two_splits, tmp_path, tiny_open_clip):
    import pyarrow.parquet as pq

    result = build(cfg(two_splits, tmp_path, "default", tiny_open_clip))
    ann = CocoAnnotations(two_splits)
    train_ids = {str(i) for i in ann.image_ids() if ann.image_info(i)["split"] == "train2014"}
    assert result.seeds_read == len(train_ids) == 10
    ds = load_built(tmp_path / "default")
    assert len(ds) > 0 and set(ds["image_id"]) <= train_ids
    kb_paths = pq.read_table(tmp_path / "kb-default" / "metadata.parquet").column("path").to_pylist()
    assert len(kb_paths) == 10 and all(p.startswith("train2014/") for p in kb_paths)
    assert all(p.startswith("train2014/") for p in ds["rejected_image_id"])
    report = json.loads((tmp_path / "default" / "build_report.json").read_text())
    assert report["evaluation_seeds"] == {} and report["provenance"]["warnings"] == []
    assert report["provenance"]["knowledge_base"]["evaluation_splits"] == {}


def test_every_split_is_warned_about_in_report_summary_and_card(two_splits, tmp_path, tiny_open_clip):
    from realign_data.building.report import format_summary
    from realign_data.building.schema import COLUMNS
    from realign_data.publish.dataset_card import ConfigSummary, render_generated_section
    from realign_data.publish.provenance import read_provenance

    build(cfg(two_splits, tmp_path, "all", tiny_open_clip, coco_split="all"))
    report = json.loads((tmp_path / "all" / "build_report.json").read_text())
    assert report["seeds_read"] == 16 and report["evaluation_seeds"] == {"val2014": 6}
    assert report["provenance"]["knowledge_base"]["evaluation_splits"] == {"val2014": 6}
    kb_warning, seed_warning = report["provenance"]["warnings"]
    assert "knowledge base's images" in kb_warning and "6 of val2014" in kb_warning
    assert "seeds" in seed_warning and "6 of val2014" in seed_warning and "--coco-split train2014" in seed_warning
    assert f"Note: {seed_warning}" in format_summary(report)
    text = render_generated_section(
        "me/ds", [ConfigSummary("default", "data", {"train": 1}, read_provenance(tmp_path / "all"))], COLUMNS
    )
    assert f"> Warning: {kb_warning}" in text and f"> Warning: {seed_warning}" in text


def test_an_explicit_split_is_used_and_a_missing_one_is_one_sentence(two_splits, tmp_path, tiny_open_clip):
    result = build(cfg(two_splits, tmp_path, "val", tiny_open_clip, coco_split="val2014"))
    assert result.seeds_read == 6
    with pytest.raises(BuildError, match=r"has no split folder 'train2017'"):
        build(cfg(two_splits, tmp_path, "nope", tiny_open_clip, coco_split="train2017"))


def test_evaluation_split_names_and_paths():
    assert all(map(is_evaluation_split, ["val2014", "val2017", "test2015", "test-dev2017", "validation", "test"]))
    assert not any(map(is_evaluation_split, ["train2014", "train2017", "train", "restval", None]))
    assert split_of_path("/data/x/COCO_val2014_000000000042.jpg") == "val2014"
    assert split_of_path("/data/coco/val2017/000000000042.jpg") == "val2017"
    assert split_of_path("validation/12") == "validation" and split_of_path("/data/coco/train2014/a.jpg") is None
