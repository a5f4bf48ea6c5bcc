"""POPE question sets (issue 11): the three samplings, determinism, refusal of corpora without instances."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import defaultdict

import pytest

from realign_data.evalsets.pope import PopeError, build_pope, open_annotations
from realign_data.evalsets.pope_sampling import CorpusStats, pope_questions, question_for

CLI = [sys.executable, "-m", "realign_data.cli"]
sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))


def _rows(ds):
    return {split: ds[split].remove_columns("image").to_list() for split in ds}


def test_question_wording():
    assert question_for("cat") == "Is there a cat in the image?"
    assert question_for("apple") == "Is there an apple in the image?"
    assert question_for("dining table") == "Is there a dining table in the image?"


def test_questions_are_balanced_and_true_to_the_annotations(sample_corpus):
    ann = open_annotations(sample_corpus)
    built = build_pope(sample_corpus, num_images=12, seed=3, min_objects=1)
    assert set(built.dataset) == {"random", "popular", "adversarial"}
    assert built.report.images == 12 and not built.report.skipped
    for rows in _rows(built.dataset).values():
        by_image = defaultdict(list)
        for r in rows:
            by_image[r["image_id"]].append(r)
        assert len(by_image) == 12
        assert [r["question_id"] for r in rows] == list(range(1, len(rows) + 1))
        for image_id, qs in by_image.items():
            present = set(ann.categories(image_id))
            yes = [q["object"] for q in qs if q["label"] == "yes"]
            no = [q["object"] for q in qs if q["label"] == "no"]
            assert len(yes) == len(no) == min(3, len(present))
            assert set(yes) <= present and not set(no) & present
            assert len(set(no)) == len(no)  # an object is asked about once per image
            assert [q["label"] for q in qs] == ["yes", "no"] * len(yes)  # alternating, as the reference
            assert all(q["question"] == question_for(q["object"]) for q in qs)
            assert all(q["file_name"].startswith("train2014/COCO_train2014_") for q in qs)
    # the positives are the same questions in every split
    rows = _rows(built.dataset)
    pos = {s: [(r["image_id"], r["object"]) for r in rows[s] if r["label"] == "yes"] for s in rows}
    assert pos["random"] == pos["popular"] == pos["adversarial"]
    image = built.dataset["random"][0]["image"]
    assert image.size == (160, 120)


def test_samplings_give_their_kind_of_negative(sample_corpus):
    ann = open_annotations(sample_corpus)
    stats = CorpusStats.of(ann.categories(i) for i in ann.image_ids())
    images = {i: ann.categories(i) for i in ann.image_ids()}
    qs = pope_questions(images, stats, seed=0)
    freq = {c: sum(c in cats for cats in images.values()) for c in stats.universe}
    pairs = defaultdict(int)
    for cats in images.values():
        for a in cats:
            for b in cats:
                if a != b:
                    pairs[a, b] += 1

    def negatives(split):
        by_image = defaultdict(list)
        for q in qs[split]:
            by_image[q["image_id"]].append(q)
        for image_id, rows in by_image.items():
            for pos, neg in zip(rows[::2], rows[1::2]):
                yield image_id, pos["object"], neg["object"]

    # popular: the first negative of an image is the most frequent category the image lacks
    for image_id, _, neg in negatives("popular"):
        absent = [c for c in stats.universe if c not in images[image_id]]
        assert freq[neg] >= min(freq[c] for c in absent)
    first = {}
    for image_id, _, neg in negatives("popular"):
        first.setdefault(image_id, neg)
    for image_id, neg in first.items():
        absent = [c for c in stats.universe if c not in images[image_id]]
        assert freq[neg] == max(freq[c] for c in absent)

    # adversarial negatives co-occur with the image's objects more than random ones, on average
    def co_occurrence(split):
        values = [sum(pairs[p, neg] for p in images[i]) for i, _, neg in negatives(split)]
        return sum(values) / len(values)

    assert co_occurrence("adversarial") > co_occurrence("random")
    first = {}
    for image_id, pos, neg in negatives("adversarial"):  # an image's first negative: its first object's top partner
        first.setdefault(image_id, (pos, neg))
    for image_id, (pos, neg) in first.items():
        ranked = [c for c in stats.co_occurring.get(pos, []) if c not in images[image_id]]
        if ranked:
            assert neg == ranked[0]


def test_same_seed_same_question_set_on_disk(sample_corpus, tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for out, seed in ((a, 1), (b, 1), (c, 2)):
        r = subprocess.run(
            CLI
            + [
                "pope",
                "--coco-root",
                str(sample_corpus),
                "--num-images",
                "10",
                "--min-objects",
                "1",
                "--seed",
                str(seed),
                "--out",
                str(out),
                "-q",
            ],
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, r.stderr
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files), "same seed, different bytes"
    from datasets import load_from_disk

    assert _rows(load_from_disk(str(a))) != _rows(load_from_disk(str(c)))
    config = json.loads((a / "realign_build.json").read_text())
    assert config["benchmark"] == "pope" and config["seed"] == 1 and config["split"] == "train2014"
    assert json.loads((a / "build_report.json").read_text())["questions"]["random"] == len(
        load_from_disk(str(a))["random"]
    )
    # a re-run replaces the question set (never appends)
    r = subprocess.run(
        CLI
        + ["pope", "--coco-root", str(sample_corpus), "--num-images", "4", "--min-objects", "1", "--out", str(a), "-q"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0 and len(set(load_from_disk(str(a))["random"]["image_id"])) == 4


def test_min_objects_filters_images(sample_corpus):
    ann = open_annotations(sample_corpus)
    built = build_pope(sample_corpus, num_images=500, seed=0, min_objects=3)
    ids = set(built.dataset["random"]["image_id"])
    assert ids and all(len(ann.categories(i)) >= 3 for i in ids)
    assert built.report.images == len(ids) == built.report.eligible_images  # fewer than asked: all there are


def test_corpus_without_instances_is_refused_in_one_sentence(sample_corpus, tmp_path):
    corpus = tmp_path / "no_instances"
    shutil.copytree(sample_corpus, corpus)
    (corpus / "annotations" / "instances_train2014.json").unlink()
    r = subprocess.run(
        CLI + ["pope", "--coco-root", str(corpus), "--out", str(tmp_path / "out")], capture_output=True, text=True
    )
    assert r.returncode == 2
    assert "has no instance annotations" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
    with pytest.raises(PopeError, match="no split 'val2014'|for split 'val2014'"):
        build_pope(sample_corpus, split="val2014")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(PopeError, match="exists and is not a POPE question set"):
        build_pope(sample_corpus, tmp_path / "busy", num_images=2, min_objects=1)
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--num-images", "0"], "--num-images must be at least 1"),
        (["--samplings", "random,bogus"], "unknown POPE sampling bogus"),
    ],
)
def test_bad_options_are_usage_errors(sample_corpus, tmp_path, args, message):
    r = subprocess.run(
        CLI + ["pope", "--coco-root", str(sample_corpus), "--out", str(tmp_path / "o"), *args],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_push_and_load_from_the_hub_like_any_built_dataset(sample_corpus, tmp_path):
    """`realign-data push` takes the question set as it takes a built dataset; its card says what it is."""
    import textwrap

    from hub_server import HubServer

    out = tmp_path / "pope"
    build_pope(sample_corpus, out, num_images=5, min_objects=1, seed=0)
    with HubServer(tmp_path / "hub", token="hf_test") as hub:
        env = hub.client_env(tmp_path / "hf_home")
        r = subprocess.run(
            CLI + ["push", str(out), "tester/pope", "-q"], env=env, capture_output=True, text=True, timeout=180
        )
        assert r.returncode == 0, r.stderr[-3000:]
        assert "random: " in r.stdout and "adversarial: " in r.stdout
        files = hub.list_files("tester/pope")
        assert {"data/realign_build.json", "data/build_report.json", "README.md"} <= set(files)
        card = hub.read_file("tester/pope", "README.md").decode()
        for needle in (
            "POPE question set",
            "- pope",
            "license: cc0-1.0",
            "realign-trl eval --model",
            "li2023pope",
            "<!-- realign:end -->",
        ):
            assert needle in card, needle
        assert "dual-preference" not in card and "rdpo" not in card
        code = textwrap.dedent("""
            import json
            from realign_data.evalsets.pope import load_pope
            ds = load_pope("tester/pope", ["adversarial", "random"])
            print(json.dumps({s: ds[s].remove_columns("image").to_list() for s in ds}
                             | {"size": ds["random"][0]["image"].size}))
        """)
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, r.stderr[-3000:]
    remote = json.loads(r.stdout.strip().splitlines()[-1])
    from datasets import load_from_disk

    local = load_from_disk(str(out))
    for split in ("adversarial", "random"):
        assert remote[split] == local[split].remove_columns("image").to_list()
    assert remote["size"] == [160, 120]
