"""--exclude-dataset (issue #14, item 3): `realign-data pope` skips images of a training dataset with a warning;
`realign-trl eval` refuses a question set holding any (exit 2, one sentence)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from realign_data import BuildConfig, build, load_built
from realign_data.cli import app as data_app
from realign_data.evalsets.overlap import coco_id_of_name, training_images
from realign_data.evalsets.pope import load_pope
from realign_trl.cli import app as trl_app

runner = CliRunner()


@pytest.fixture(scope="module")
def trained_on(tiny_kb, tmp_path_factory):
    """A small build over the sample corpus: its seed and retrieved images are 'training data'."""
    out = tmp_path_factory.mktemp("excl") / "train"
    build(BuildConfig(index=str(tiny_kb), out=str(out), gate="lexical", top_k=3, max_samples=12, progress=False))
    return out


def pope_ids(path) -> set[int]:
    return {i for split in load_pope(path).values() for i in split["image_id"]}


def test_training_images_reads_ids_and_bytes_of_a_build(trained_on):
    ds = load_built(trained_on)
    found = training_images(trained_on)
    assert found.rows == len(ds) > 0
    expected = {int(i) for i in ds["image_id"]} | {coco_id_of_name(i) for i in ds["rejected_image_id"]}
    assert found.coco_ids == expected
    assert len(found.digests) == len(expected)  # one digest per distinct corpus file
    assert coco_id_of_name("train2014/COCO_train2014_000000000123.jpg") == 123 and coco_id_of_name("x.jpg") is None


def test_pope_skips_training_images_and_eval_refuses_a_set_with_them(trained_on, sample_corpus, tmp_path, caplog):
    base = ["pope", "--coco-root", str(sample_corpus), "--num-images", "20", "--min-objects", "1", "--quiet"]
    r = runner.invoke(data_app, base + ["--out", str(tmp_path / "plain")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(data_app, base + ["--out", str(tmp_path / "clean"), "--exclude-dataset", str(trained_on)])
    assert r.exit_code == 0, r.output
    assert any(
        rec.levelname == "WARNING" and "appear in the training data of" in rec.getMessage() for rec in caplog.records
    )
    used = training_images(trained_on).coco_ids
    assert pope_ids(tmp_path / "plain") & used, "without the option the set shares images with the training data"
    assert not pope_ids(tmp_path / "clean") & used and len(pope_ids(tmp_path / "clean")) == 20
    report = json.loads((tmp_path / "clean" / "build_report.json").read_text())
    assert report["excluded"] and set(report["excluded"]) <= used
    assert json.loads((tmp_path / "clean" / "realign_build.json").read_text())["exclude_dataset"] == str(trained_on)

    ev = [
        "eval",
        "--model",
        "m",
        "--base-url",
        "http://127.0.0.1:1/v1",
        "--max-retries",
        "0",
        "--bench",
        "pope",
        "--exclude-dataset",
        str(trained_on),
        "--quiet",
    ]
    r = runner.invoke(trl_app, ev + ["--pope", str(tmp_path / "plain"), "--out", str(tmp_path / "e1")])
    assert r.exit_code == 2 and "evaluation images (e.g. image_id" in r.output, r.output
    assert "realign-data pope --exclude-dataset" in r.output and "Traceback" not in r.output
    r = runner.invoke(trl_app, ev + ["--pope", str(tmp_path / "clean"), "--out", str(tmp_path / "e2")])
    assert r.exit_code == 1 and "no request was answered" in r.output, r.output  # past the check: the endpoint is down


def test_an_unreadable_dataset_to_exclude_is_one_sentence(sample_corpus, tmp_path):
    r = runner.invoke(
        data_app,
        [
            "pope",
            "--coco-root",
            str(sample_corpus),
            "--out",
            str(tmp_path / "p"),
            "--exclude-dataset",
            str(tmp_path / "nothing-here"),
            "--quiet",
        ],
    )
    assert r.exit_code == 2 and "--exclude-dataset" in r.output and "is not a readable dataset" in r.output, r.output
