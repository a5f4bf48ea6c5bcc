"""``realign-trl iterate``: on-policy rounds (build from the policy's answers -> rDPO -> eval), resumable per round."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realign_trl.cli import app

REPO = Path(__file__).parent.parent
runner = CliRunner()
SMALL_EVAL = (
    "--num-images 3 --min-objects 1 --pope-max-new-tokens 4 --chair-max-new-tokens 6 --batch-size 4 --device cpu"
)


def _args(out, tiny_kb, tiny_llava, sample_corpus, rounds=1, **over):
    build = (
        f"--index {tiny_kb} --gate lexical --top-k 2 --max-samples 12 --num-responses 3 --temperature 1.0 "
        "--max-new-tokens 16 --device cpu --chunk-size 4"
    )
    args = {
        "--rounds": rounds,
        "--policy": tiny_llava,
        "--out": out,
        "--dpo-config": REPO / "examples" / "rdpo_tiny.yaml",
        "--build-args": build,
        "--eval-args": f"--coco-root {sample_corpus} {SMALL_EVAL}",
        **over,
    }
    return ["iterate"] + [str(x) for kv in args.items() for x in kv]


@pytest.mark.slow
def test_one_round_trains_on_its_own_answers_and_resumes(tmp_path, tiny_kb, tiny_llava, sample_corpus):
    out = tmp_path / "rounds"
    r = runner.invoke(app, _args(out, tiny_kb, tiny_llava, sample_corpus))
    assert r.exit_code == 0, r.output
    done = json.loads((out / "round-0" / "round.json").read_text())
    assert done["policy"] == str(out / "round-0" / "policy")  # the LoRA adapter merged into a checkpoint
    assert (out / "round-0" / "policy" / "config.json").is_file()
    report = json.loads((out / "round-0" / "data" / "build_report.json").read_text())
    assert report["onpolicy"]["answers"] == 36 and report["pairs_written"] > 0
    assert report["config"]["round"] == 0 and report["config"]["responses_from"] == str(tiny_llava)
    table = r.output.strip().splitlines()
    head = next(i for i, line in enumerate(table) if line.startswith("run"))
    assert "CHAIR_s" in table[head] and "F1" in table[head]
    assert [line.split()[0] for line in table[head + 1 : head + 3]] == ["start", "round"]

    # a finished round is skipped; a round whose evaluation is missing redoes only that
    (out / "round-0" / "round.json").unlink()
    trained = (out / "round-0" / "train" / "trained.json").stat().st_mtime_ns
    r = runner.invoke(app, _args(out, tiny_kb, tiny_llava, sample_corpus))
    assert r.exit_code == 0, r.output
    assert (out / "round-0" / "train" / "trained.json").stat().st_mtime_ns == trained  # not trained again
    assert (out / "round-0" / "round.json").is_file()
    r = runner.invoke(app, _args(out, tiny_kb, tiny_llava, sample_corpus))
    assert r.exit_code == 0 and "round 0: done earlier" in r.output


def test_iterate_usage_errors(tmp_path, tiny_kb, tiny_llava, sample_corpus):
    cases = [
        ({"--rounds": 0}, "--rounds must be >= 1"),
        ({"--policy": tmp_path / "missing"}, "is a local path that does not exist"),
        ({"--dpo-config": tmp_path / "nope.yaml"}, "is not a file"),
        ({"--build-args": "--index x --round 3"}, "--build-args must leave --round"),
        ({"--eval-args": "--model other"}, "--eval-args must leave --model"),
        ({"--build-args": "--index 'x"}, "cannot be read as command-line arguments"),
    ]
    from realign_trl.iterate import IterateError, check  # the check the command runs first, called directly

    with pytest.raises(IterateError, match="--rounds must be >= 1, got 0"):
        check(0, str(tiny_llava), tmp_path / "o", tmp_path / "nope.yaml", "", "")
    for over, message in cases:
        r = runner.invoke(app, _args(tmp_path / "o", tiny_kb, tiny_llava, sample_corpus, **over))
        assert r.exit_code == 2 and message in r.output, (over, r.output)
    other = tmp_path / "other"
    other.mkdir()
    (other / "stray.txt").write_text("x")
    r = runner.invoke(app, _args(other, tiny_kb, tiny_llava, sample_corpus))
    assert r.exit_code == 2 and "holds no rounds" in r.output
