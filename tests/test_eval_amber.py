"""Issue 23 (5): AMBER read from its own file layout and scored as its inference.py does, by hand."""

from __future__ import annotations

import json

import pytest

from realign_trl.eval.amber import AmberData, amber_suite, score_amber
from realign_trl.eval.runner import score, work_items
from realign_trl.eval.suite import EvalError


def write_amber(root, image_bytes=b"img"):
    data = root / "data"
    (data / "query").mkdir(parents=True)
    (data / "image").mkdir()
    queries = [
        {"id": 1, "image": "AMBER_1.jpg", "query": "Describe this image."},
        {"id": 2, "image": "AMBER_2.jpg", "query": "Describe this image."},
        {"id": 3, "image": "AMBER_1.jpg", "query": "Is there a dog in this image?"},
        {"id": 4, "image": "AMBER_1.jpg", "query": "Is there a cat in this image?"},
        {"id": 5, "image": "AMBER_2.jpg", "query": "Is the dog running in this image?"},
        {"id": 6, "image": "AMBER_2.jpg", "query": "Is there direct contact between the dog and grass?"},
        {"id": 7, "image": "AMBER_2.jpg", "query": "Are there two dogs in this image?"},
    ]
    annotations = [
        {"id": 1, "type": "generative", "truth": ["dog", "grass", "tree"], "hallu": ["cat", "frisbee"]},
        {"id": 2, "type": "generative", "truth": ["person", "car"], "hallu": ["bus"]},
        {"id": 3, "type": "discriminative-hallucination", "truth": "yes"},
        {"id": 4, "type": "discriminative-hallucination", "truth": "no"},
        {"id": 5, "type": "discriminative-attribute-action", "truth": "no"},
        {"id": 6, "type": "discriminative-relation", "truth": "yes"},
        {"id": 7, "type": "discriminative-attribute-number", "truth": "no"},
    ]
    relation = {
        "dog": ["puppy"],
        "grass": ["lawn"],
        "tree": [],
        "cat": ["kitten"],
        "frisbee": [],
        "person": ["man", "woman", "people"],
        "car": ["vehicle"],
        "bus": [],
        "sky": [],
        "table": [],
    }
    (data / "query" / "query_all.json").write_text(json.dumps(queries))
    (data / "annotations.json").write_text(json.dumps(annotations))
    (data / "relation.json").write_text(json.dumps(relation))
    (data / "safe_words.txt").write_text("sky\nline\n")
    for name in ("AMBER_1.jpg", "AMBER_2.jpg"):
        (data / "image" / name).write_bytes(image_bytes)
    return root


ANSWERS = {
    # nouns: puppy (dog, covered), lawn (grass, covered), kitten (cat: hallucinated, cognised), sky (safe word),
    # table (in the vocabulary, not in the truth: hallucinated) -> 4 nouns counted, 2 hallucinated
    1: "A puppy plays on the lawn while a kitten watches under the sky near a table.",
    # nouns: men (person, covered), vehicles (car, covered) -> 2 nouns, 0 hallucinated
    2: "Two men stand next to vehicles.",
    3: "Yes",
    4: "Yes, there is a cat.",
    5: "No.",
    6: "Maybe.",
    7: "NO",
}


def test_amber_metrics_by_hand(tmp_path):
    suite = amber_suite(write_amber(tmp_path / "amber"))
    assert suite.benches == ("amber",) and sorted(suite.images) == [1, 2]
    work = work_items(suite)
    assert work["amber_generative"] == [(1, "Describe this image."), (2, "Describe this image.")]
    assert len(work["amber_discriminative"]) == 5
    by_query = {(q["image"], q["query"]): q["id"] for q in suite.amber.queries}
    answers = {
        (bench, image, query): (ANSWERS[by_query[(f"AMBER_{image}.jpg", query)]], None)
        for bench, keys in work.items()
        for image, query in keys
    }
    metrics, rows = score_amber(suite.amber, answers)
    g = metrics["generative"]
    assert g["chair"] == pytest.approx(2 / 6)  # 2 hallucinated of 6 counted nouns (4 + 2)
    assert g["cover"] == pytest.approx(4 / 5)  # dog, grass of 3; person, car of 2
    assert g["hal"] == pytest.approx(1 / 2)  # one response of two hallucinates
    assert g["cog"] == pytest.approx(1 / 3)  # cat of {cat, frisbee, bus}
    assert rows[0]["hallucinated"] == ["kitten", "table"] and rows[0]["cognised"] == ["cat"]
    d = metrics["discriminative"]
    # answers read: 3 yes (truth yes), 4 yes (truth no), 5 no (truth no), 6 unparseable -> "yes" (truth yes),
    # 7 no (truth no): 4 of 5 correct; said no: 5, 7 (both truly no); truly no: 4, 5, 7
    assert d["all"]["accuracy"] == pytest.approx(4 / 5)
    assert (d["all"]["precision"], d["all"]["recall"]) == (pytest.approx(1.0), pytest.approx(2 / 3))
    assert d["all"]["f1"] == pytest.approx(2 * (2 / 3) / (1 + 2 / 3))
    assert d["all"]["unparseable"] == 1
    assert d["existence"]["accuracy"] == pytest.approx(1 / 2) and d["existence"]["f1"] == 0.0
    assert d["attribute"]["accuracy"] == 1.0 and d["relation"]["accuracy"] == 1.0
    result = score(suite, answers)
    assert result.metrics["amber"]["generative"]["cover"] == pytest.approx(4 / 5)
    assert "AMBER generative  CHAIR 0.3333" in result.table()


def test_amber_release_errors(tmp_path):
    with pytest.raises(EvalError, match="is not an AMBER release: annotations file"):
        AmberData.load(tmp_path)
    root = write_amber(tmp_path / "amber")
    (root / "data" / "image" / "AMBER_2.jpg").unlink()
    with pytest.raises(EvalError, match="AMBER image .*AMBER_2.jpg' is missing"):
        amber_suite(root)


def test_cli_bench_amber_against_an_openai_compatible_endpoint(tmp_path):
    """`realign-trl eval --bench amber` end to end: the release's files, a real local server, the results file."""
    import io
    import subprocess
    import sys
    from pathlib import Path

    from PIL import Image

    sys.path.insert(0, str(Path(__file__).parent / "support"))
    from openai_server import OpenAIServer

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), "green").save(buf, format="JPEG")
    root = write_amber(tmp_path / "amber", buf.getvalue())

    def answer(prompt: str) -> str:
        if "Describe" in prompt:
            return "A puppy on the lawn next to a table."
        return "Yes" if "Is there a dog" in prompt else "No"

    cli = [sys.executable, "-c", "import sys; sys.argv[0] = 'realign-trl'; from realign_trl.cli import main; main()"]
    out = tmp_path / "eval"
    with OpenAIServer(answer=answer) as server:
        r = subprocess.run(
            [
                *cli,
                "eval",
                "--bench",
                "amber",
                "--amber-root",
                str(root),
                "--model",
                "served-vlm",
                "--base-url",
                server.base_url,
                "--out",
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "AMBER generative  CHAIR 0.6667  Cover 0.4000  Hal 1.0000  Cog 0.0000" in r.stdout
    data = json.loads((out / "eval_results.json").read_text())
    amber = data["metrics"]["amber"]
    # image 1: puppy (dog), lawn (grass) covered, table hallucinated; image 2: all three hallucinated -> 4 / 6
    assert amber["generative"]["chair"] == pytest.approx(4 / 6)
    assert amber["discriminative"]["all"]["accuracy"] == pytest.approx(4 / 5)  # only the contact question is wrong
    assert data["flat"]["amber_cover"] == pytest.approx(2 / 5)
    assert data["settings"]["suite"]["amber_root"] == str(root.resolve())
    rows = [json.loads(line) for line in (out / "amber.jsonl").read_text().splitlines()]
    assert [row["id"] for row in rows] == [1, 2, 3, 4, 5, 6, 7]
    bad = subprocess.run(
        [*cli, "eval", "--bench", "amber", "--model", "m", "--base-url", server.base_url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "--bench amber needs --amber-root" in bad.stderr
    mixed = subprocess.run(
        [
            *cli,
            "eval",
            "--bench",
            "pope,amber",
            "--amber-root",
            str(root),
            "--model",
            "m",
            "--base-url",
            server.base_url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert mixed.returncode == 2 and "--bench amber runs on its own" in mixed.stderr
