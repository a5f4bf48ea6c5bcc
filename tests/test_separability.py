"""Image-blind separability: a text-only classifier's held-out accuracy at picking the chosen answer, in every build's
report, summary, inspect page and card, and for any preference dataset through ``realign-data audit``."""

from __future__ import annotations

import json
import random

import pytest
from typer.testing import CliRunner

from realign_data import BuildConfig, build
from realign_data.building.separability import MIN_PAIRS, answer_text, blind_separability, wilson
from realign_data.cli import app

runner = CliRunner()
OBJECTS = ["cat", "dog", "cup", "bottle", "car", "bus", "apple", "banana", "chair", "clock", "bird", "umbrella"]
COLOURS = ["gray", "brown", "pink", "white", "blue", "green", "red", "yellow"]


def captions(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [
        f"There is a {rng.choice(COLOURS)} {rng.choice(OBJECTS)} and two {rng.choice(COLOURS)} "
        f"{rng.choice(OBJECTS)}s on the {rng.choice(['grass', 'floor', 'sand'])}."
        for _ in range(n)
    ]


def cued(n: int = 200) -> tuple[list[str], list[str]]:
    """Rejected answers that say "one" where the chosen ones say "a", and relate objects to the floor."""
    chosen = captions(n, 1)
    rejected = [
        c.replace("There is a ", "There is one ").replace(" on the ", " to the left of the ") for c in captions(n, 2)
    ]
    return chosen, rejected


def test_a_cue_that_needs_no_image_is_found_and_named():
    result = blind_separability(*cued())
    assert result["accuracy"] >= 0.95 and result["n_heldout"] == 200 and result["folds"] == 5
    assert result["ci_low"] <= result["accuracy"] <= result["ci_high"] and result["ci_low"] > 0.9
    leaned = [c["feature"] for c in result["rejected_cues"]]
    assert {"one", "left", "to the", "is one"} & set(leaned), leaned
    assert all(c["weight"] < 0 for c in result["rejected_cues"]) and all(c["weight"] > 0 for c in result["chosen_cues"])


def test_answers_from_the_same_distribution_are_not_separable():
    result = blind_separability(captions(300, 3), captions(300, 4))
    assert result["ci_low"] <= 0.5 <= result["ci_high"], result
    assert 0.4 <= result["accuracy"] <= 0.6


def test_deterministic_under_a_seed_and_grouped_by_chosen_text():
    chosen, rejected = cued(120)
    assert blind_separability(chosen, rejected, seed=3) == blind_separability(chosen, rejected, seed=3)
    # the same chosen answer with several rejected ones: a group is held out whole, so memorising the chosen text
    # in training cannot score it (every rejected answer here is a word-for-word copy of another chosen answer)
    same = captions(40, 5)
    result = blind_separability(
        [c for c in same for _ in range(3)], [same[(i + 1) % 40] for i in range(40) for _ in range(3)]
    )
    assert result["n_heldout"] == 120 and result["accuracy"] <= 0.75


def test_too_few_pairs_gives_no_number():
    chosen, rejected = cued(MIN_PAIRS - 1)
    result = blind_separability(chosen, rejected)
    assert result["status"] == "too_few_pairs" and "accuracy" not in result and result["n_pairs"] == MIN_PAIRS - 1
    assert blind_separability(["same"] * 50, ["other"] * 50)["status"] == "too_few_pairs"  # one chosen text


def test_wilson_interval():
    low, high = wilson(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-3) and high == pytest.approx(0.5962, abs=1e-3)
    assert wilson(10, 10)[1] == 1.0 and wilson(0, 10)[0] == 0.0


def test_answer_text_reads_strings_and_trl_conversations():
    assert answer_text("A cat.") == "A cat."
    assert answer_text([{"role": "assistant", "content": [{"type": "text", "text": "A cat."}]}]) == "A cat."
    conversation = [{"role": "user", "content": "Describe."}, {"role": "assistant", "content": "A dog."}]
    assert answer_text(conversation) == "A dog."
    assert answer_text(None) == ""


def write_jsonl(path, chosen, rejected, conversational=False):
    with open(path, "w") as f:
        for c, r in zip(chosen, rejected):
            if conversational:
                c, r = ([{"role": "assistant", "content": [{"type": "text", "text": t}]}] for t in (c, r))
            f.write(json.dumps({"prompt": "Describe the image.", "chosen": c, "rejected": r}) + "\n")
    return path


def test_audit_command_on_local_files(tmp_path):
    chosen, rejected = cued()
    strings = write_jsonl(tmp_path / "pairs.jsonl", chosen, rejected)
    r = runner.invoke(app, ["audit", str(strings)])
    assert r.exit_code == 0, r.output
    assert "image-blind accuracy" in r.output and "on 200 held-out pairs" in r.output and "95 % CI" in r.output
    assert "leans on for rejected" in r.output
    # the same pairs as TRL conversational messages in parquet: the same measure
    import datasets

    rows = [json.loads(line) for line in strings.read_text().splitlines()]
    conv = [
        {
            "chosen": [{"role": "assistant", "content": [{"type": "text", "text": x["chosen"]}]}],
            "rejected": [{"role": "assistant", "content": [{"type": "text", "text": x["rejected"]}]}],
        }
        for x in rows
    ]
    datasets.Dataset.from_list(conv).to_parquet(str(tmp_path / "pairs.parquet"))
    r = runner.invoke(app, ["audit", str(tmp_path / "pairs.parquet"), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out == {**blind_separability(chosen, rejected), "dataset": str(tmp_path / "pairs.parquet")}
    datasets.Dataset.from_list(conv).save_to_disk(str(tmp_path / "saved"))
    r = runner.invoke(app, ["audit", str(tmp_path / "saved"), "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["accuracy"] == out["accuracy"]


def test_audit_command_refusals(tmp_path):
    bad = tmp_path / "sft.jsonl"
    bad.write_text("".join(json.dumps({"prompt": "p", "completion": "c"}) + "\n" for _ in range(30)))
    r = runner.invoke(app, ["audit", str(bad)])
    assert r.exit_code == 2 and "no 'chosen' and no 'rejected' column" in r.output and "'completion'" in r.output
    r = runner.invoke(app, ["audit", str(tmp_path / "missing.parquet")])
    assert r.exit_code == 2 and "is not a file or folder" in r.output
    (tmp_path / "notes.txt").write_text("x")
    r = runner.invoke(app, ["audit", str(tmp_path / "notes.txt")])
    assert r.exit_code == 2 and ".txt file" in r.output
    few = write_jsonl(tmp_path / "few.jsonl", *cued(5))
    r = runner.invoke(app, ["audit", str(few)])
    assert r.exit_code == 0 and "too few to split" in r.output and "accuracy" not in r.output.replace("no accuracy", "")
    assert "Traceback" not in r.output


def test_every_build_reports_it(tiny_kb, tmp_path):
    from realign_data.building.output import load_built
    from realign_data.building.report import format_summary
    from realign_data.building.schema import message_text
    from realign_data.building.separability import blind_separability as measure
    from realign_data.publish.dataset_card import _stats
    from realign_data.publish.inspect_page import write_inspect_html

    res = build(
        BuildConfig(
            index=str(tiny_kb), out=str(tmp_path / "out"), gate="lexical", top_k=3, chunk_size=8, progress=False
        )
    )
    report = json.loads((tmp_path / "out" / "build_report.json").read_text())
    blind = report["blind_separability"]
    ds = load_built(tmp_path / "out")
    assert blind == measure([message_text(m) for m in ds["chosen"]], [message_text(m) for m in ds["rejected"]])
    assert blind["n_heldout"] == res.pairs_written == len(ds) >= MIN_PAIRS
    line = f"picks the chosen answer in {blind['accuracy']:.3f} of {blind['n_heldout']} held-out pairs"
    assert line in format_summary(report)
    assert any(line in s for s in _stats(report))
    html = write_inspect_html(tmp_path / "out").read_text()
    assert line in html and "leans on" in html


def test_audit_command_on_a_hub_dataset(tmp_path):
    """A Hub id goes through ``datasets.load_dataset`` (a local fake Hub: no network)."""
    import subprocess
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent / "support"))
    from hub_server import HubServer

    chosen, rejected = cued(60)
    pairs = write_jsonl(tmp_path / "pairs.jsonl", chosen, rejected, conversational=True)
    with HubServer(tmp_path / "hub", token="hf_test_token") as hub:
        env = hub.client_env(tmp_path / "home")
        push = (
            f"import datasets; datasets.load_dataset('json', data_files={str(pairs)!r}, split='train')"
            ".push_to_hub('tester/prefs')"
        )
        r = subprocess.run([sys.executable, "-c", push], env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        cli = [
            sys.executable,
            "-c",
            "import sys; sys.argv[0] = 'realign-data'; from realign_data.cli import main; main()",
        ]
        r = subprocess.run(
            cli + ["audit", "tester/prefs", "--json"], env=env, capture_output=True, text=True, timeout=300
        )
        assert r.returncode == 0, r.stderr[-3000:]
        assert json.loads(r.stdout) == {**blind_separability(chosen, rejected), "dataset": "tester/prefs"}
        r = subprocess.run(cli + ["audit", "tester/absent"], env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 2 and "cannot read the dataset 'tester/absent'" in r.stderr
        assert "Traceback" not in r.stderr
