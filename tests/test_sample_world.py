"""The sample corpus's world options: the co-occurrence prior, the held-out split, complete captions, backgrounds
and occlusion; and the default corpus staying byte for byte what it was."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from realign_data.building.masking import find_visual_facts
from realign_data.testing.sample import COOCCURRING_PAIRS, PARTNER, SampleCorpusError, make_sample_corpus

# sha256 over (file name, bytes) of every file of make_sample_corpus(num_images=12, seed=3), as written before the
# world options existed: the default corpus (and every benchmark and test built on it) must not move.
DEFAULT_CORPUS_SHA256 = "b53ac1dacaacebcb122e3ed1fbe08a5294460744b5a3e21b2f4075afa3c97283"


def _tree_sha256(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def _load(root: Path, split: str):
    instances = json.loads((root / "annotations" / f"instances_{split}.json").read_text())
    captions = json.loads((root / "annotations" / f"captions_{split}.json").read_text())
    names = {c["id"]: c["name"] for c in instances["categories"]}
    objects = defaultdict(lambda: defaultdict(int))
    for a in instances["annotations"]:
        objects[a["image_id"]][names[a["category_id"]]] += 1
    caps = defaultdict(list)
    for a in captions["annotations"]:
        caps[a["image_id"]].append(a["caption"])
    return instances, objects, caps


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_sample_corpus(
        tmp_path_factory.mktemp("world") / "w",
        num_images=150,
        seed=5,
        width=48,
        height=48,
        cooccurrence=0.9,
        heldout=30,
        min_visible=0.4,
        complete_caption=True,
        world_backgrounds=True,
    )


def test_defaults_are_byte_identical_to_the_corpus_before_world_options(tmp_path):
    assert _tree_sha256(make_sample_corpus(tmp_path / "d", num_images=12, seed=3)) == DEFAULT_CORPUS_SHA256


def test_cooccurrence_prior_has_the_documented_strength(world, tmp_path):
    def partner_share(objects):
        pairs = [(c, PARTNER[c] in cats) for cats in objects.values() for c in cats if c in PARTNER]
        return sum(hit for _, hit in pairs) / len(pairs)

    _, objects, _ = _load(world, "train2014")
    _, uniform, _ = _load(make_sample_corpus(tmp_path / "u", num_images=150, seed=5, width=48, height=48), "train2014")
    assert partner_share(objects) > 0.75  # 0.9, less the partners hidden by occlusion
    assert partner_share(uniform) < 0.35
    assert len(COOCCURRING_PAIRS) == 6 and all(PARTNER[b] == a for a, b in COOCCURRING_PAIRS)


def test_heldout_split_is_a_second_coco_split_with_disjoint_images(world):
    coco = pytest.importorskip("pycocotools.coco")
    train = coco.COCO(str(world / "annotations" / "instances_train2014.json"))
    held = coco.COCO(str(world / "annotations" / "instances_val2014.json"))
    assert len(train.getImgIds()) == 150 and len(held.getImgIds()) == 30
    assert not set(train.getImgIds()) & set(held.getImgIds())
    for image in held.loadImgs(held.getImgIds()):
        assert (world / "val2014" / image["file_name"]).is_file() and image["file_name"].startswith("COCO_val2014_")


def test_first_caption_names_every_annotated_object_and_the_background(world):
    instances, objects, caps = _load(world, "val2014")
    background = {im["id"]: im["background"] for im in instances["images"]}
    for image_id, counts in objects.items():
        first = caps[image_id][0]
        assert first.startswith("There ") and first.endswith(f" on the {background[image_id]}.")
        for name in counts:
            assert name in first, (name, first)
        assert 3 <= len(caps[image_id]) <= 5


def test_backgrounds_are_recorded_and_no_coco_category(world):
    instances, _, _ = _load(world, "train2014")
    names = {im["background"] for im in instances["images"]}
    assert "table" not in names and "floor" in names
    for name in names:
        assert not [s for s in find_visual_facts(f"a scene on the {name}") if s.kind == "object"], name


def test_min_visible_drops_hidden_instances(tmp_path):
    def annotated(min_visible):
        root = make_sample_corpus(
            tmp_path / str(min_visible),
            num_images=40,
            seed=2,
            width=48,
            height=48,
            min_visible=min_visible,
            cooccurrence=0.9,
        )
        return sum(sum(c.values()) for c in _load(root, "train2014")[1].values())

    assert annotated(0.9) < annotated(0.3) <= annotated(0.0)


def test_cli_world_flags_and_errors(tmp_path):
    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "realign_data.cli", "sample", *args], capture_output=True, text=True
        )

    ok = cli(
        "--out",
        str(tmp_path / "c"),
        "--num-images",
        "4",
        "--width",
        "40",
        "--height",
        "40",
        "--heldout",
        "2",
        "--cooccurrence",
        "0.5",
        "--complete-caption",
        "-q",
    )
    assert ok.returncode == 0, ok.stderr
    held = json.loads((tmp_path / "c" / "annotations" / "instances_val2014.json").read_text())
    assert [(im["width"], im["height"]) for im in held["images"]] == [(40, 40)] * 2
    for bad, words in (
        (["--cooccurrence", "1.5"], "--cooccurrence"),
        (["--min-visible", "1"], "--min-visible"),
        (["--heldout", "2", "--heldout-split", "train2014"], "held-out split"),
    ):
        r = cli("--out", str(tmp_path / "bad"), *bad)
        assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr
    with pytest.raises(SampleCorpusError):
        make_sample_corpus(tmp_path / "x", heldout=-1)


def test_partners_option_draws_other_pairs_and_records_them(tmp_path):
    root = make_sample_corpus(
        tmp_path / "p", num_images=150, seed=5, width=48, height=48, cooccurrence=0.9, partners="car-dog,cup-clock"
    )
    instances, objects, _ = _load(root, "train2014")
    assert instances["info"]["world"] == {"cooccurrence": 0.9, "partners": [["car", "dog"], ["cup", "clock"]]}
    with_car = [cats for cats in objects.values() if "car" in cats]
    with_cat = [cats for cats in objects.values() if "cat" in cats]
    assert sum("dog" in cats for cats in with_car) / len(with_car) > 0.75
    assert sum("dog" in cats for cats in with_cat) / len(with_cat) < 0.5  # cat-dog is no pair in this world


@pytest.mark.parametrize(
    "partners, message",
    [
        ("car-car", "two different categories"),
        ("car-spaceship", "two different categories"),
        ("car-bus,bus-cat", "'bus' in two pairs"),
    ],
)
def test_bad_partners_are_one_sentence(tmp_path, partners, message):
    with pytest.raises(SampleCorpusError, match=message):
        make_sample_corpus(tmp_path / "bad", num_images=4, seed=0, cooccurrence=0.5, partners=partners)


def test_partners_on_the_command_line(tmp_path):
    out = tmp_path / "cli"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "realign_data.cli",
            "sample",
            "--out",
            str(out),
            "--num-images",
            "6",
            "--cooccurrence",
            "0.5",
            "--partners",
            "apple-umbrella",
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    info = json.loads((out / "annotations" / "instances_train2014.json").read_text())["info"]
    assert info["world"]["partners"] == [["apple", "umbrella"]]
    bad = subprocess.run(
        [sys.executable, "-m", "realign_data.cli", "sample", "--out", str(tmp_path / "b"), "--partners", "apple"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "--partners takes pairs" in bad.stderr and "Traceback" not in bad.stderr
