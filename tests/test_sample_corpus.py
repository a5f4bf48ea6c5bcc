"""The synthetic COCO corpus: schema, determinism, pycocotools compatibility and CLI errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from PIL import Image

from realign_data.testing.sample import CATEGORIES, SampleCorpusError, make_sample_corpus

IMAGE_KEYS = {"license", "file_name", "coco_url", "height", "width", "date_captured", "flickr_url", "id"}
INSTANCE_KEYS = {"segmentation", "area", "iscrowd", "image_id", "bbox", "category_id", "id"}


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "realign_data.cli", *args], capture_output=True, text=True, **kw)


def test_layout_and_coco_schema(sample_corpus):
    instances = json.loads((sample_corpus / "annotations" / "instances_train2014.json").read_text())
    captions = json.loads((sample_corpus / "annotations" / "captions_train2014.json").read_text())
    assert set(instances) == {"info", "licenses", "images", "annotations", "categories"}
    assert set(captions) == {"info", "licenses", "images", "annotations"}
    assert len(instances["images"]) == 40
    for image in instances["images"]:
        assert set(image) == IMAGE_KEYS
        assert image["file_name"] == f"COCO_train2014_{image['id']:012d}.jpg"
        with Image.open(sample_corpus / "train2014" / image["file_name"]) as im:
            assert im.format == "JPEG" and im.size == (image["width"], image["height"])
    category_ids = {c["id"] for c in instances["categories"]}
    assert {c["name"] for c in instances["categories"]} == {c.name for c in CATEGORIES}
    per_image = {}
    for ann in instances["annotations"]:
        assert set(ann) == INSTANCE_KEYS
        assert ann["category_id"] in category_ids and ann["iscrowd"] == 0
        x, y, w, h = ann["bbox"]
        assert w > 0 and h > 0 and ann["area"] > 0
        polygon = ann["segmentation"][0]
        assert len(polygon) % 2 == 0 and len(polygon) >= 6
        xs, ys = polygon[0::2], polygon[1::2]
        assert min(xs) == pytest.approx(x, abs=0.02) and max(ys) == pytest.approx(y + h, abs=0.02)
        per_image[ann["image_id"]] = per_image.get(ann["image_id"], 0) + 1
    assert min(per_image.values()) >= 2, "every scene has several instances"
    caps_per_image = {}
    for ann in captions["annotations"]:
        assert set(ann) == {"image_id", "id", "caption"}
        caps_per_image.setdefault(ann["image_id"], []).append(ann["caption"])
    assert all(3 <= len(c) <= 5 for c in caps_per_image.values())


def test_captions_name_objects_colours_counts_and_relations(sample_corpus):
    captions = json.loads((sample_corpus / "annotations" / "captions_train2014.json").read_text())
    text = " ".join(a["caption"] for a in captions["annotations"]).lower()
    assert any(c.name in text for c in CATEGORIES)
    assert any(c.colour in text for c in CATEGORIES)
    assert any(w in text for w in ("two", "three"))
    assert any(r in text for r in ("left of", "right of", "above", "below", "next to"))


def test_loads_with_pycocotools(sample_corpus):
    coco_mod = pytest.importorskip("pycocotools.coco")
    coco = coco_mod.COCO(str(sample_corpus / "annotations" / "instances_train2014.json"))
    image_id = coco.getImgIds()[0]
    anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
    mask = coco.annToMask(anns[0])
    assert mask.shape == (120, 160) and mask.sum() > 0
    caps = coco_mod.COCO(str(sample_corpus / "annotations" / "captions_train2014.json"))
    assert len(caps.getAnnIds(imgIds=image_id)) >= 3


def test_same_seed_is_byte_identical_and_other_seed_differs(tmp_path):
    a = make_sample_corpus(tmp_path / "a", num_images=6, seed=7)
    b = make_sample_corpus(tmp_path / "b", num_images=6, seed=7)
    c = make_sample_corpus(tmp_path / "c", num_images=6, seed=8)
    for name in ("instances_train2014.json", "captions_train2014.json"):
        assert (a / "annotations" / name).read_bytes() == (b / "annotations" / name).read_bytes()
        assert (a / "annotations" / name).read_bytes() != (c / "annotations" / name).read_bytes()
    files = sorted(p.name for p in (a / "train2014").iterdir())
    assert all((a / "train2014" / f).read_bytes() == (b / "train2014" / f).read_bytes() for f in files)
    assert not list(a.rglob(".*tmp*")), "no temporary files left behind"


def test_bad_arguments_raise_one_clear_error(tmp_path):
    with pytest.raises(SampleCorpusError, match="at least 1"):
        make_sample_corpus(tmp_path, num_images=0)


def test_cli_sample_writes_corpus(tmp_path):
    result = _cli("sample", "--out", str(tmp_path / "corpus"), "--num-images", "5", "--seed", "3", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "Wrote 5 images" in result.stdout
    assert len(list((tmp_path / "corpus" / "train2014").glob("*.jpg"))) == 5


@pytest.mark.parametrize(
    "args, message",
    [
        (["--num-images", "0"], "--num-images must be at least 1"),
        (["--out", "/proc/cannot/write/here"], "cannot write to output directory"),
    ],
)
def test_cli_bad_input_exits_2_with_one_sentence(tmp_path, args, message):
    base = ["sample", "--out", str(tmp_path / "x")]
    result = _cli(*base, *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_cli_help_needs_no_heavy_imports():
    result = _cli("--help")
    assert result.returncode == 0 and "sample" in result.stdout
    # Not a benchmark: a guard that no heavy library (torch, faiss, transformers) is imported at start-up.
    imported = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, realign_data.cli; "
            "print(','.join(m for m in ('torch','faiss','transformers','open_clip','datasets') "
            "if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
    )
    assert imported.stdout.strip() == "", f"heavy imports at CLI start-up: {imported.stdout}"
