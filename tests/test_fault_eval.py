"""``realign-trl eval`` never scores what it did not get (issue #28): real processes against the local
OpenAI-compatible server of ``tests/support/openai_server.py``, forked from the fault suite's server (``fault_procs.py``).

Empty answers are failures (retried, never saved, re-asked after the fix); too many failures exit 1 naming how
many; answers and question sets are tied to the pictures they were drawn from; one ``--out`` has one writer;
``--request-timeout`` bounds a trickling server; a user's mistake is one sentence, never a traceback."""

from __future__ import annotations

import errno
import json
import os
import shutil
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "support"))
from fault_procs import shared_commands
from openai_server import OpenAIServer

SMALL = ["--num-images", "2", "--min-objects", "1", "--quiet", "--max-retries", "1"]


@pytest.fixture(scope="module")
def commands():
    return shared_commands()


@pytest.fixture(scope="module")
def other_corpus(sample_corpus, tmp_path_factory):
    """The sample corpus with every picture mirrored: same image ids and annotations, other pictures."""
    from PIL import Image, ImageOps

    root = tmp_path_factory.mktemp("other") / "coco"
    shutil.copytree(sample_corpus, root)
    for path in (root / "train2014").iterdir():
        ImageOps.mirror(Image.open(path).convert("RGB")).save(path, quality=70)
    return root


def evaluate(commands, corpus, out, base_url, *extra, bench="pope,chair"):
    return commands.run(
        [
            "realign-trl",
            "eval",
            "--model",
            "m",
            "--base-url",
            base_url,
            "--coco-root",
            corpus,
            "--bench",
            bench,
            "--out",
            out,
            *SMALL,
            *extra,
        ]
    )


def saved(out) -> list[dict]:
    path = out / "answers.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


@pytest.mark.parametrize("mode", ["null", "empty"])
def test_empty_answers_are_failures_never_saved_and_asked_again(mode, commands, sample_corpus, tmp_path):
    out = tmp_path / "eval"
    with OpenAIServer(mode=mode) as srv:
        code, err = evaluate(commands, sample_corpus, out, srv.base_url, bench="chair")
        assert code == 1 and "no request was answered" in err and "empty answer" in err, err
        assert "Traceback" not in err and not (out / "eval_results.json").exists()
        assert srv.requests == 2 * 2  # two images, each tried twice (--max-retries 1)
        assert saved(out) == []  # nothing empty kept as an answer
        srv.mode = None  # the endpoint is fixed: the same command asks again
        code, err = evaluate(commands, sample_corpus, out, srv.base_url, bench="chair")
        assert code == 0, err
        assert srv.requests == 2 * 2 + 2
    rows = [json.loads(line) for line in (out / "chair.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["answer"] and "error" not in r for r in rows)


def test_failures_over_the_threshold_exit_1_naming_how_many_then_resume(commands, sample_corpus, tmp_path):
    out = tmp_path / "eval"
    chair = "Please describe this image in detail."
    with OpenAIServer(answer=lambda p: "" if p == chair else "Yes, there is.") as srv:
        code, err = evaluate(commands, sample_corpus, out, srv.base_url)
        results = json.loads(json.dumps(saved(out)))
        asked_pope = len({(r["image_id"], r["prompt"]) for r in results})
        assert code == 1 and f"2 of {asked_pope + 2} requests" in err and "--max-failures 0.01" in err, err
        assert "Traceback" not in err and not (out / "eval_results.json").exists()
        assert all(r["bench"] == "pope" and r["answer"] == "Yes, there is." for r in results)
        before = srv.requests
        code, err = evaluate(commands, sample_corpus, out, srv.base_url, "--max-failures", "0.5")
        assert code == 0, err
        assert srv.requests == before + 2 * 2  # only the two CHAIR prompts are asked again (2 attempts each)
    data = json.loads((out / "eval_results.json").read_text())
    assert data["metrics"]["chair"]["failed"] == 2 and data["metrics"]["pope"]["failed"] == 0
    assert data["metrics"]["pope"]["yes_ratio"] == 1.0


def test_resuming_into_an_out_made_from_other_pictures_is_refused(commands, sample_corpus, other_corpus, tmp_path):
    out = tmp_path / "eval"
    with OpenAIServer() as srv:
        code, err = evaluate(commands, sample_corpus, out, srv.base_url, bench="chair")
        assert code == 0, err
        before = srv.requests
        code, err = evaluate(commands, other_corpus, out, srv.base_url, bench="chair")
        assert srv.requests == before
    assert code == 2 and "holds answers about other pictures" in err and str(sample_corpus) in err, err
    assert "Traceback" not in err
    data = json.loads((out / "eval_results.json").read_text())
    assert len(data["settings"]["suite"]["images_digest"]) == 64
    assert set(data["settings"]["suite"]["annotations_sha256"]) == {
        "instances_train2014.json",
        "captions_train2014.json",
    }


def test_a_question_set_is_evaluated_only_with_its_own_corpus(commands, sample_corpus, other_corpus, tmp_path):
    pope = tmp_path / "pope"
    code, err = commands.run(
        ["pope", "--coco-root", sample_corpus, "--out", pope, "--num-images", "2", "--min-objects", "1", "--quiet"]
    )
    assert code == 0, err
    config = json.loads((pope / "realign_build.json").read_text())
    assert len(config["images_digest"]) == 64 and "instances_train2014.json" in config["annotations_sha256"]
    with OpenAIServer() as srv:
        code, err = commands.run(
            [
                "realign-trl",
                "eval",
                "--model",
                "m",
                "--base-url",
                srv.base_url,
                "--pope",
                pope,
                "--coco-root",
                other_corpus,
                "--out",
                tmp_path / "e",
                *SMALL,
            ]
        )
        assert srv.requests == 0
    assert code == 2 and "was drawn from other pictures than" in err and "Traceback" not in err, err
    # the same question set with its own corpus runs
    with OpenAIServer() as srv:
        code, err = commands.run(
            [
                "realign-trl",
                "eval",
                "--model",
                "m",
                "--base-url",
                srv.base_url,
                "--pope",
                pope,
                "--coco-root",
                sample_corpus,
                "--out",
                tmp_path / "e2",
                *SMALL,
            ]
        )
    assert code == 0, err


def test_a_question_set_built_from_other_annotations_is_refused(commands, sample_corpus, tmp_path):
    corpus = tmp_path / "coco"
    shutil.copytree(sample_corpus, corpus)
    pope = tmp_path / "pope"
    assert (
        commands.run(
            ["pope", "--coco-root", corpus, "--out", pope, "--num-images", "2", "--min-objects", "1", "--quiet"]
        )[0]
        == 0
    )
    captions = corpus / "annotations" / "captions_train2014.json"
    data = json.loads(captions.read_text())
    data["annotations"] = data["annotations"][:-1]
    captions.write_text(json.dumps(data))
    code, err = commands.run(
        [
            "realign-trl",
            "eval",
            "--model",
            "m",
            "--base-url",
            "http://127.0.0.1:9/v1",
            "--pope",
            pope,
            "--coco-root",
            corpus,
            "--out",
            tmp_path / "e",
            *SMALL,
        ]
    )
    assert code == 2 and "was drawn from other annotations" in err and "captions_train2014.json" in err, err


def test_two_evaluations_into_one_out_one_is_refused(commands, sample_corpus, tmp_path):
    out = tmp_path / "eval"
    with OpenAIServer(latency=0.3) as srv:
        args = [
            "realign-trl",
            "eval",
            "--model",
            "m",
            "--base-url",
            srv.base_url,
            "--coco-root",
            sample_corpus,
            "--bench",
            "chair",
            "--out",
            out,
            *SMALL,
        ]
        results = sorted(commands.run_together([args, args]))
    (ok, _), (refused, err) = results
    assert (ok, refused) == (0, 1), results
    assert "is being written by pid" in err and "Traceback" not in err
    assert srv.requests == 2  # every question asked once


def test_request_timeout_bounds_a_trickling_server(commands, sample_corpus, tmp_path):
    with OpenAIServer(mode="trickle", trickle_interval=0.2) as srv:
        t0 = time.monotonic()
        code, err = commands.run(
            [
                "realign-trl",
                "eval",
                "--model",
                "m",
                "--base-url",
                srv.base_url,
                "--coco-root",
                sample_corpus,
                "--bench",
                "chair",
                "--num-images",
                "1",
                "--min-objects",
                "1",
                "--request-timeout",
                "0.5",
                "--max-retries",
                "0",
                "--out",
                tmp_path / "e",
                "-q",
            ]
        )
        took = time.monotonic() - t0
    assert code == 1 and "no complete answer within 0.5 s" in err, err
    assert took < 15  # the process's own start and suite, plus one 0.5 s attempt


@pytest.fixture(scope="module")
def truncated_corpus(sample_corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("truncated") / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "train2014").symlink_to(sample_corpus / "train2014")
    text = (sample_corpus / "annotations" / "instances_train2014.json").read_text()
    (root / "annotations" / "instances_train2014.json").write_text(text[: len(text) // 2])
    return root


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--out", "A-FILE"], "is a file, not a directory"),
        (["--api-key-env", "sk-proj-abcdefghijklmnopqrstuvwxyz123456"], "looks like a key"),
        (["--coco-root", "TRUNCATED"], "is not valid JSON"),
        (["--pope", "/no/such/pope-set"], "POPE question set '/no/such/pope-set' does not exist"),
        (["--max-retries", "-1"], "--max-retries must be 0 or more (got -1)"),
        (["--request-timeout", "0"], "--request-timeout must be more than 0 seconds"),
        (["--max-failures", "2"], "--max-failures is a fraction of the requests, from 0 to 1 (got 2)"),
    ],
)
def test_eval_mistakes_are_one_sentence_exit_2(extra, words, commands, sample_corpus, truncated_corpus, tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    args = [
        "realign-trl",
        "eval",
        "--model",
        "m",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--num-images",
        "1",
        "--min-objects",
        "1",
        "--out",
        tmp_path / "e",
        "-q",
    ]
    if "--coco-root" not in extra and "--pope" not in extra:
        args += ["--coco-root", sample_corpus]
    swap = {"A-FILE": tmp_path / "a-file", "TRUNCATED": truncated_corpus}
    code, err = commands.run(args + [swap.get(a, a) for a in extra])
    assert code == 2 and words in err, err
    assert "Traceback" not in err and len([line for line in err.splitlines() if line.strip()]) == 1, err


def test_a_full_disk_says_the_answers_survive_and_how_to_resume(sample_corpus, tmp_path, monkeypatch):
    """ENOSPC while saving answers (the writer fails after its first batch): one sentence, exit 1, the saved
    answers are kept and the same command resumes from them."""
    from typer.testing import CliRunner

    from realign_trl.cli import app
    from realign_trl.eval.answer_store import AnswerStore

    real_add, calls = AnswerStore.add, []

    def add(self, fresh):
        calls.append(len(fresh))
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_add(self, fresh)

    out = tmp_path / "eval"
    with OpenAIServer() as srv:
        args = [
            "eval",
            "--model",
            "m",
            "--base-url",
            srv.base_url,
            "--coco-root",
            str(sample_corpus),
            "--bench",
            "chair",
            "--num-images",
            "3",
            "--min-objects",
            "1",
            "--concurrency",
            "1",
            "--out",
            str(out),
            "-q",
        ]
        monkeypatch.setattr(AnswerStore, "add", add)
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 1, r.output
        assert "is full" in r.output and "are kept" in r.output and "run the same command to resume" in r.output
        assert "Traceback" not in r.output and len(saved(out)) == 1
        monkeypatch.setattr(AnswerStore, "add", real_add)
        before = srv.requests
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 0, r.output
        assert srv.requests == before + 2  # the saved answer is reused


def test_empty_answers_saved_by_an_earlier_version_are_asked_again(commands, sample_corpus, tmp_path):
    """An --out written before this fix holds empty answers as if final: the next run asks them again."""
    out = tmp_path / "eval"
    with OpenAIServer() as srv:
        assert evaluate(commands, sample_corpus, out, srv.base_url, bench="chair")[0] == 0
        rows = saved(out)
        rows[0]["answer"] = ""  # what the old store kept for a 200 with empty content
        (out / "answers.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        before = srv.requests
        code, err = evaluate(commands, sample_corpus, out, srv.base_url, bench="chair")
        assert code == 0, err
        assert srv.requests == before + 1
    records = [json.loads(line) for line in (out / "chair.jsonl").read_text().splitlines()]
    assert all(r["answer"] for r in records)
