"""Visual negatives (region noise, crop, noise) and the difficulty score, on the sample corpus."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from realign_data.building.difficulty import difficulty, tercile_splits
from realign_data.building.negatives import (
    alpha_bar,
    diffuse,
    image_closeness,
    random_crop,
    region_noise,
    segmentation_mask,
    whole_image_noise,
)


@pytest.fixture(scope="module")
def scene(sample_corpus):
    """The first sample image with its instances (category names attached)."""
    ann = json.loads((sample_corpus / "annotations" / "instances_train2014.json").read_text())
    names = {c["id"]: c["name"] for c in ann["categories"]}
    info = ann["images"][0]
    instances = [dict(a, category=names[a["category_id"]]) for a in ann["annotations"] if a["image_id"] == info["id"]]
    image = Image.open(sample_corpus / "train2014" / info["file_name"]).convert("RGB")
    return image, instances


def test_region_noise_changes_only_named_objects(scene):
    image, instances = scene
    named = instances[0]["category"]
    neg = region_noise(image, np.random.default_rng(0), instances, [named], t=500)
    assert neg.params["region_source"] == "segmentation"
    mask = segmentation_mask([i["segmentation"] for i in instances if i["category"] == named], image.size)
    before = np.asarray(image)
    after = np.asarray(Image.open(__import__("io").BytesIO(neg.png_bytes())))  # through its stored encoding
    assert np.array_equal(after[~mask], before[~mask]), "pixels outside the named objects are untouched"
    changed = np.any(after != before, axis=-1)[mask]
    assert changed.mean() > 0.9, "pixels inside the named objects are noised"
    assert 0 < neg.params["region_fraction"] < 1


def test_masks_are_cocos_own_polygons_and_crowd_rle(scene):
    """Polygon masks cover what COCO's ``area`` says; a crowd annotation's RLE is a region like any other."""
    from pycocotools import mask as coco_mask

    image, instances = scene
    w, h = image.size
    for inst in instances:
        mask = segmentation_mask([inst["segmentation"]], (w, h))
        assert mask.shape == (h, w) and mask.sum() == pytest.approx(inst["area"], rel=0.1, abs=4)
    crowd = np.zeros((h, w), dtype=np.uint8)
    crowd[5:25, 40:90] = 1
    rle = coco_mask.encode(np.asfortranarray(crowd))
    rle["counts"] = rle["counts"].decode("ascii")  # as COCO's JSON stores it
    people = [{"id": 99, "category": "person", "iscrowd": 1, "segmentation": rle}]
    neg = region_noise(image, np.random.default_rng(0), people, ["person"], t=500)
    assert neg.params["region_source"] == "segmentation" and neg.params["instance_ids"] == [99]
    changed = np.any(np.asarray(neg.image) != np.asarray(image), axis=-1)
    assert changed[~crowd.astype(bool)].sum() == 0 and changed[crowd.astype(bool)].mean() > 0.9
    uncompressed = {"size": [h, w], "counts": [h * w]}  # uncompressed RLE of an empty mask
    assert not segmentation_mask([uncompressed], (w, h)).any()


def test_region_noise_falls_back_to_whole_image_when_no_region(scene):
    image, instances = scene
    neg = region_noise(image, np.random.default_rng(0), instances, ["giraffe"], t=500)
    assert neg.params["region_source"] == "whole_image_fallback"
    assert np.any(np.asarray(neg.image) != np.asarray(image), axis=-1).mean() > 0.9


def test_crop_keeps_between_1_and_20_percent_of_the_area(scene):
    image, _ = scene
    rng = np.random.default_rng(1)
    for _ in range(50):
        neg = random_crop(image, rng)
        left, top, right, bottom = neg.params["box"]
        fraction = (right - left) * (bottom - top) / (image.width * image.height)
        assert 0.01 <= fraction <= 0.2 and fraction == pytest.approx(neg.params["area_fraction"])
        assert neg.image.size == image.size


@pytest.mark.parametrize("schedule", ["sigmoid", "linear", "cosine"])
def test_noise_matches_the_schedule_at_step_t(schedule):
    rng = np.random.default_rng(0)
    x0 = np.full((256, 256, 3), 0.3)
    for t in (100, 500, 900):
        xt = diffuse(x0, t, rng, schedule)
        abar = alpha_bar(t, schedule)
        assert xt.mean() == pytest.approx(math.sqrt(abar) * 0.3, abs=0.01)
        assert xt.var() == pytest.approx(1 - abar, rel=0.03)


def test_noise_level_of_the_saved_image_matches_the_schedule():
    # mid-grey and a small step, so clipping to [0, 255] does not distort the statistics
    image = Image.new("RGB", (256, 256), (128, 128, 128))
    neg = whole_image_noise(image, np.random.default_rng(0), t=20)
    x = np.asarray(neg.image, dtype=np.float64) / 127.5 - 1
    abar = alpha_bar(20)
    assert x.std() == pytest.approx(math.sqrt(1 - abar), rel=0.05)
    assert x.mean() == pytest.approx(math.sqrt(abar) * (128 / 127.5 - 1), abs=0.01)


def test_linear_schedule_is_ddpm():
    betas = np.linspace(1e-4, 0.02, 1000)
    assert alpha_bar(0, "linear") == pytest.approx(1 - 1e-4)
    assert alpha_bar(999, "linear") == pytest.approx(np.prod(1 - betas))
    assert alpha_bar(500, "linear") == pytest.approx(np.prod(1 - betas[:501]))
    assert alpha_bar(500, "linear") < alpha_bar(100, "linear")
    with pytest.raises(ValueError, match="between 0 and 999"):
        alpha_bar(1000)


def test_perturbations_are_deterministic_under_a_seed(scene):
    image, instances = scene
    a = region_noise(image, np.random.default_rng(5), instances, [instances[0]["category"]]).png_bytes()
    b = region_noise(image, np.random.default_rng(5), instances, [instances[0]["category"]]).png_bytes()
    assert a == b
    assert random_crop(image, np.random.default_rng(5)).params == random_crop(image, np.random.default_rng(5)).params


def test_difficulty_is_monotone_in_both_inputs():
    grid = np.linspace(0, 1, 11)
    for w in (0.0, 0.3, 0.5, 1.0):
        for a in grid:
            values = [difficulty(a, b, w) for b in grid]
            assert values == sorted(values)
            values = [difficulty(b, a, w) for b in grid]
            assert values == sorted(values)
    assert difficulty(1.0, 1.0) == 1.0 and difficulty(0.0, 0.0) == 0.0
    assert difficulty(0.9, 0.5) > difficulty(0.2, 0.5)


def test_image_closeness_orders_perturbations_by_strength():
    assert image_closeness("noise", {"t": 100}) > image_closeness("noise", {"t": 500})
    assert image_closeness("region-noise", {"t": 500, "region_fraction": 0.1}) > image_closeness("noise", {"t": 500})
    assert image_closeness("crop", {"area_fraction": 0.2}) > image_closeness("crop", {"area_fraction": 0.01})
    assert image_closeness("retrieval", {}, retrieval_score=0.9) == pytest.approx(0.9)


def test_tercile_splits_partition_rows_in_difficulty_order():
    rng = np.random.default_rng(0)
    d = rng.random(31).tolist()
    ids = [f"row{i}" for i in range(31)]
    splits = tercile_splits(d, ids)
    all_rows = splits["easy"] + splits["medium"] + splits["hard"]
    assert sorted(all_rows) == list(range(31))
    assert max(d[i] for i in splits["easy"]) <= min(d[i] for i in splits["medium"])
    assert max(d[i] for i in splits["medium"]) <= min(d[i] for i in splits["hard"])
    assert {len(v) for v in splits.values()} <= {10, 11}
