"""Corpus sources (COCO layout, folders, HF datasets incl. streaming) and CocoAnnotations."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from realign_data.kb.corpus import (
    CocoAnnotations,
    CocoSource,
    CorpusError,
    FolderSource,
    HFSource,
    Skipped,
    open_source,
)


def test_coco_source_ids_meta_and_loading(sample_corpus):
    src = open_source("coco", sample_corpus)
    items = list(src)
    assert len(items) == len(src) == 40
    assert [i.id for i in items] == sorted(i.id for i in items)
    assert all(i.id.startswith("train2014/COCO_train2014_") for i in items)
    ann = CocoAnnotations(sample_corpus)
    first = items[0]
    assert first.meta["coco_image_id"] in ann.image_ids()
    assert first.meta["categories"] == ann.categories(first.meta["coco_image_id"])
    assert first.meta["categories"], "sample images have instances"
    img = first.load()
    info = ann.image_info(first.meta["coco_image_id"])
    assert img.mode == "RGB" and img.size == (info["width"], info["height"])
    assert src.describe() == {"type": "coco", "root": str(sample_corpus.resolve()), "split": "train2014"}


def test_coco_annotations_lookups(sample_corpus):
    ann = CocoAnnotations(sample_corpus)
    ids = ann.image_ids()
    assert len(ids) == len(ann) == 40
    iid = ids[0]
    inst = ann.instances(iid)
    assert inst and set(inst[0]) >= {"category", "category_id", "bbox", "segmentation", "area", "iscrowd"}
    assert len(inst[0]["bbox"]) == 4 and isinstance(inst[0]["segmentation"], list)
    assert all(isinstance(c, str) and c for c in ann.captions(iid))
    assert ann.captions(iid)
    assert ann.image_path(iid).is_file()
    assert ann.file_name(iid) == ann.image_path(iid).name
    names = ann.category_names()
    assert set(ann.categories(iid)) <= set(names)
    assert {"id", "name", "supercategory"} <= set(ann.category_table()[0])
    assert ann.instances(-1) == [] and ann.captions(-1) == []
    with pytest.raises(KeyError):
        ann.file_name(-1)


def test_coco_without_annotations_parses_ids_from_names(tmp_path):
    (tmp_path / "val2014").mkdir()
    Image.new("RGB", (8, 8), "red").save(tmp_path / "val2014" / "COCO_val2014_000000000042.jpg")
    src = CocoSource(tmp_path)
    (item,) = list(src)
    assert item.meta["coco_image_id"] == 42 and item.meta["categories"] == []
    with pytest.raises(CorpusError, match="no split folder"):
        CocoSource(tmp_path, split="train2014")
    with pytest.raises(CorpusError, match="no image folder"):
        CocoSource(tmp_path / "val2014")


def test_folder_source_recursive_and_filtered(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / ".hidden").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "z.jpg")
    Image.new("RGB", (4, 4)).save(tmp_path / "a" / "b" / "x.PNG")
    Image.new("RGB", (4, 4)).save(tmp_path / "a" / "y.webp")
    Image.new("RGB", (4, 4)).save(tmp_path / ".hidden" / "h.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    src = FolderSource(tmp_path)  # every entry is an item; the ones not read say why when loaded
    assert [i.id for i in src] == [".hidden/", "a/b/x.PNG", "a/y.webp", "notes.txt", "z.jpg"]
    items = {i.id: i for i in src}
    assert items["a/b/x.PNG"].load().size == (4, 4)
    with pytest.raises(Skipped, match="hidden folder"):
        items[".hidden/"].load()
    with pytest.raises(Skipped, match=r"not an image format PIL opens \(.txt\)"):
        items["notes.txt"].load()
    with pytest.raises(CorpusError, match="does not exist"):
        FolderSource(tmp_path / "missing")
    with pytest.raises(CorpusError, match="unknown corpus source"):
        open_source("s3", tmp_path)


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    import datasets

    imgs = [Image.new("RGB", (16 + i, 12), (i * 40, 100, 200 - i * 30)) for i in range(5)]
    ds = datasets.Dataset.from_dict(
        {"picture": imgs, "caption": [f"c{i}" for i in range(5)]},
        features=datasets.Features({"picture": datasets.Image(), "caption": datasets.Value("string")}),
    )
    out = tmp_path_factory.mktemp("hf") / "ds"
    datasets.DatasetDict({"train": ds}).save_to_disk(str(out))
    return out


def test_hf_source_local_and_streaming(hf_dir):
    plain = HFSource(str(hf_dir))
    assert plain.image_column == "picture" and plain.split == "train" and len(plain) == 5
    a = list(plain)
    b = list(HFSource(str(hf_dir), streaming=True))
    assert [i.id for i in a] == [i.id for i in b] == [f"train/{i}" for i in range(5)]
    for x, y in zip(a, b):
        assert x.load().tobytes() == y.load().tobytes()
    assert a[3].load().size == (19, 12)
    assert plain.load_row(2).size == (18, 12)
    assert json.dumps(plain.describe())  # JSON-able for the manifest


def test_hf_source_errors(hf_dir, tmp_path):
    with pytest.raises(CorpusError, match="no column 'img'"):
        HFSource(str(hf_dir), image_column="img")
    with pytest.raises(CorpusError, match="no split 'test'"):
        HFSource(str(hf_dir), split="test")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="save_to_disk"):
        HFSource(str(tmp_path / "empty"))
