"""``realign-trl eval`` as a user runs it: tiny LLaVA / Qwen2-VL, the local OpenAI-compatible server, --compare."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SUPPORT_DIR = Path(__file__).parent / "support"  # shared helpers: trl_models, openai_server...
sys.path.insert(0, str(SUPPORT_DIR))
from openai_server import DEFAULT_ANSWER, OpenAIServer  # noqa: E402

CLI = [sys.executable, "-c", "import sys; sys.argv[0] = 'realign-trl'; from realign_trl.cli import main; main()"]
SMALL = ["--num-images", "3", "--min-objects", "1", "--pope-max-new-tokens", "4", "--chair-max-new-tokens", "6"]


def run(args, timeout=300):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TQDM_DISABLE="1", OMP_NUM_THREADS="1")
    return subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True, env=env, timeout=timeout)


def check_results_file(out: Path, model: str) -> dict:
    data = json.loads((out / "eval_results.json").read_text())
    assert data["model"] == model
    assert set(data["metrics"]["pope"]["splits"]) == {"random", "popular", "adversarial"}
    for key in (
        "pope_random_f1",
        "pope_popular_accuracy",
        "pope_adversarial_f1",
        "pope_yes_ratio",
        "chair_s",
        "chair_i",
        "object_recall",
    ):
        assert 0.0 <= data["flat"][key] <= 1.0, key
    settings = data["settings"]
    assert settings["suite"]["num_images"] == 3 and settings["suite"]["seed"] == 0
    assert settings["generation"]["pope_max_new_tokens"] == 4
    for name in data["records"].values():
        assert (out / name).stat().st_size > 0
    return data


@pytest.mark.parametrize("family", ["tiny_llava", "tiny_qwen2_vl"])
def test_eval_tiny_models_on_the_sample_corpus(family, request, sample_corpus, tmp_path):
    model = str(request.getfixturevalue(family))
    out = tmp_path / "eval"
    r = run(
        [
            "eval",
            "--model",
            model,
            "--coco-root",
            sample_corpus,
            *SMALL,
            "--batch-size",
            "4",
            "--device",
            "cpu",
            "--out",
            out,
        ]
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "POPE" in r.stdout and "CHAIR_s" in r.stdout and "adversarial" in r.stdout  # the summary table
    data = check_results_file(out, model)
    assert data["settings"]["backend"]["backend"] == "transformers"
    assert data["settings"]["backend"]["device"] == "cpu"


def test_eval_against_an_openai_compatible_endpoint(sample_corpus, tmp_path):
    out = tmp_path / "eval"
    with OpenAIServer() as server:
        r = run(
            [
                "eval",
                "--model",
                "served-vlm",
                "--base-url",
                server.base_url,
                "--coco-root",
                sample_corpus,
                *SMALL,
                "--out",
                out,
                "-q",
            ]
        )
        assert r.returncode == 0, r.stderr[-3000:]
        assert server.images_received == server.requests > 0  # every request carried its image
    data = check_results_file(out, "served-vlm")
    assert data["settings"]["backend"]["base_url"] == server.base_url
    # the server answers every prompt with the same caption: POPE "yes" without a yes word, CHAIR apple + car
    pope = data["metrics"]["pope"]
    assert pope["yes_ratio"] == 1.0
    # the robust parser reads the answer as yes to "Is there an apple/a car?" (it names them) and cannot read it
    # for any other object: those are unparseable, flagged in the per-question files, given the reference's "yes"
    asked = [
        json.loads(line) for split in pope["splits"] for line in (out / f"pope_{split}.jsonl").read_text().splitlines()
    ]
    assert [r["unparseable"] for r in asked] == [r["object"] not in ("apple", "car") for r in asked]
    assert pope["unparseable"] == sum(r["object"] not in ("apple", "car") for r in asked) > 0
    assert pope["parser"] == "robust" and pope["parser_disagreements"] == 0  # both read yes
    assert data["settings"]["suite"]["pope_parser"] == "robust"
    assert data["settings"]["suite"]["chair_synonyms"] == "reference"
    assert data["metrics"]["chair"]["synonyms"] == "reference" and "chair_i_unique" in data["metrics"]["chair"]
    rows = [json.loads(line) for line in (out / "chair.jsonl").read_text().splitlines()]
    assert all(r["answer"] == DEFAULT_ANSWER for r in rows)
    hallucinated = [len({"apple", "car"} - set(r["ground_truth"])) for r in rows]
    assert data["metrics"]["chair"]["chair_s"] == pytest.approx(sum(h > 0 for h in hallucinated) / len(rows))
    assert data["metrics"]["chair"]["chair_i"] == pytest.approx(sum(hallucinated) / (2 * len(rows)))
    truth = sum(len(r["ground_truth"]) for r in rows)
    assert data["metrics"]["chair"]["object_recall"] == pytest.approx(
        sum(len({"apple", "car"} & set(r["ground_truth"])) for r in rows) / truth
    )


def test_unreachable_endpoint_is_a_runtime_error(sample_corpus, tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = run(
        [
            "eval",
            "--model",
            "m",
            "--base-url",
            f"http://127.0.0.1:{port}/v1",
            "--coco-root",
            sample_corpus,
            "--num-images",
            "1",
            "--min-objects",
            "1",
            "--bench",
            "chair",
            "--max-retries",
            "0",
            "--out",
            tmp_path / "e",
            "-q",
        ]
    )
    assert r.returncode == 1
    assert "no request was answered" in r.stderr and "Traceback" not in r.stderr


def test_compare_and_plot(tmp_path):
    runs = []
    for name, f1, chair_s in (("base", 0.70, 0.5), ("rdpo", 0.80, 0.3)):
        d = tmp_path / name
        d.mkdir()
        flat = {
            "pope_random_f1": f1,
            "pope_random_accuracy": f1,
            "pope_yes_ratio": 0.5,
            "chair_s": chair_s,
            "chair_i": chair_s / 2,
            "object_recall": 0.6,
        }
        metrics = {"pope": {"splits": {"random": {}}}, "chair": {}}
        settings = {"suite": {"pope_parser": "reference" if name == "base" else "robust"}}
        (d / "eval_results.json").write_text(
            json.dumps({"model": name, "flat": flat, "metrics": metrics, "settings": settings})
        )
        runs.append(d / "eval_results.json")
    png = tmp_path / "fig" / "runs.png"
    r = run(["eval", "--compare", *runs, "--plot", png])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[0] == "run" and "CHAIR_s" in lines[0]
    # headers a reader can read: the split's full name, not "ran F1"
    assert "random F1" in lines[0] and "random acc" in lines[0] and "yes ratio" in lines[0] and "ran " not in lines[0]
    assert lines[1].split()[:2] == ["base", "0.7000"] and lines[2].split()[:2] == ["rdpo", "0.8000"]
    # runs scored with different POPE parsers are flagged (issue 23)
    assert "note: the runs differ in pope_parser ('reference', 'robust')" in r.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "args, message",
    [
        (["eval", "--coco-root", "."], "--model is required"),
        (["eval", "--model", "m", "--bench", "pope,mme"], "unknown benchmark mme; valid: pope, chair"),
        (
            ["eval", "--model", "/no/such/model", "--coco-root", "CORPUS", "--num-images", "1", "--min-objects", "1"],
            "model directory '/no/such/model' does not exist",
        ),
        (["eval", "--model", "m", "--coco-root", "/no/such/corpus"], "COCO root '/no/such/corpus' does not exist"),
        (["eval", "--model", "m", "--plot", "x.png"], "--plot goes with --compare"),
        (["eval", "--compare", "/no/such/eval_results.json"], "is not an eval_results.json file"),
        (["eval", "--model", "m", "--base-url", "http://127.0.0.1:1/v1", "--adapter", "a"], "--adapter loads a PEFT"),
    ],
)
def test_usage_errors_are_one_sentence_exit_2(args, message, sample_corpus):
    r = run([str(sample_corpus) if a == "CORPUS" else a for a in args], timeout=120)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert message in r.stderr and "Traceback" not in r.stderr


def test_the_summary_of_an_adapter_run_names_the_adapter():
    from realign_trl.cli import run_name

    assert run_name("llava-hf/llava-1.5-7b-hf", "out/rdpo") == "llava-hf/llava-1.5-7b-hf + adapter out/rdpo"
    assert run_name("tiny-llava", None) == "tiny-llava"
