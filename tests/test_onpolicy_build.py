"""On-policy builds (issue 26): the policy's own answers, checked against the image's truth span by span, corrected,
and written as preference rows with their round and policy; resumable; usage errors exit 2.

The policy is a real OpenAI-compatible server on localhost (tests/support/openai_server.py) answering each seed's
instruction with a planted answer, or the tiny LLaVA through the transformers backend.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realign_data.building.facts import find_hallucinations, truth_of
from realign_data.building.report import format_summary
from realign_data.building.schema import COLUMNS, ONPOLICY_COLUMNS, message_text
from realign_data.cli import app
from realign_data.kb.corpus import CocoAnnotations
from realign_data.objects.english import number_word, pluralize

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "support"))
from openai_server import OpenAIServer
from realign_cli import command

runner = CliRunner()
OTHER_COLOUR = {"red": "purple", "white": "green", "yellow": "blue"}


def _pick(ann: CocoAnnotations):
    """Three corpus images: one whose most frequent category has >= 2 instances and a caption colour (planted count,
    colour and object), one answered with its own caption (clean), one with a planted object only."""
    from collections import Counter

    ids = ann.image_ids()
    for i in ids:
        counts = Counter(x["category"] for x in ann.instances(i))
        cat, n = counts.most_common(1)[0]
        colour = truth_of({"instances": ann.instances(i), "captions": ann.captions(i)}).colours.get(cat)
        if n >= 2 and len(counts) >= 2 and colour and sorted(colour)[0] in OTHER_COLOUR:
            rest = [j for j in ids if j != i]
            return (i, cat, n, sorted(colour)[0]), rest[0], rest[1]
    raise AssertionError("the sample corpus has no image with two instances of a coloured category")


@pytest.fixture(scope="module")
def planted(sample_corpus, tmp_path_factory):
    """Seeds (one unique instruction per image) and the policy's planted answer to each instruction."""
    ann = CocoAnnotations(sample_corpus)
    (first, cat, n, colour), clean, second = _pick(ann)
    # objects the annotation file declares (as CHAIR, only those are checked) and the image does not have
    absent = [c for c in ann.category_names() if c not in {x["category"] for x in ann.instances(first)}]
    absent2 = [c for c in ann.category_names() if c not in {x["category"] for x in ann.instances(second)}]
    answers = {
        "Describe picture 0.": f"{number_word(n + 1).capitalize()} {OTHER_COLOUR[colour]} {pluralize(cat)} and a "
        f"{absent[0]}.",
        "Describe picture 1.": ann.captions(clean)[0],
        "Describe picture 2.": f"A {absent2[0]} is standing here.",
    }
    seeds = tmp_path_factory.mktemp("seeds") / "seeds.jsonl"
    with seeds.open("w") as f:
        for k, image in enumerate((first, clean, second)):
            row = {
                "image": str(ann.image_path(image)),
                "question": f"Describe picture {k}.",
                "answer": ann.captions(image)[0],
            }
            f.write(json.dumps(row) + "\n")
    return {
        "seeds": seeds,
        "answers": answers,
        "first": (first, cat, n, colour),
        "ann": ann,
        "absent": (absent[0], absent2[0]),
    }


def _args(kb, seeds, out, *extra):
    return ["build", "--index", str(kb), "--seeds", str(seeds), "--gate", "lexical", "--top-k", "2", "--out", str(out),
            "--quiet", *map(str, extra)]  # fmt: skip


def _load(out: Path):
    import datasets

    return datasets.load_from_disk(str(out))


def _planted_build(tiny_kb, planted, out: Path, *extra):
    """An on-policy build whose policy (``policy-v1``, a localhost server) gives the planted answers; the CLI result
    and the request bodies the server received."""
    with OpenAIServer(answer=lambda prompt: planted["answers"][prompt], keep_bodies=True) as srv:
        r = runner.invoke(
            app,
            _args(tiny_kb, planted["seeds"], out, "--responses-from", "policy-v1", "--base-url", srv.base_url, *extra),
        )
        return r, list(srv.bodies)


def test_planted_hallucinations_are_corrected_span_by_span(tiny_kb, planted, tmp_path):
    r, bodies = _planted_build(
        tiny_kb, planted, tmp_path / "out", "--num-responses", 2, "--temperature", 0.7, "--round", 2
    )
    assert r.exit_code == 0, r.output
    assert {b["temperature"] for b in bodies} == {0.7} and len({b["seed"] for b in bodies}) == 2  # two draws
    report = json.loads((tmp_path / "out" / "build_report.json").read_text())
    onp = report["onpolicy"]
    assert (onp["answers"], onp["answers_checked"], onp["answers_hallucinated"], onp["pairs"]) == (6, 6, 4, 4)
    assert onp["hallucinations"] == {"object": 4, "count": 2, "color": 2}
    from realign_data.building import onpolicy  # the module that made these rows: every kind it reads is counted

    assert set(onp["hallucinations"]) == set(onpolicy.FACT_KINDS)
    assert report["drops"] == {"no_hallucination": 2}  # the clean answer, drawn twice: no text pair
    assert report["provenance"]["policy"]["model"] == "policy-v1"

    ds = _load(tmp_path / "out")
    assert set(COLUMNS) | set(ONPOLICY_COLUMNS) <= set(ds.column_names) and len(ds) == 4
    assert sorted(ds["response_index"]) == [0, 0, 1, 1] and set(ds["round"]) == {2}
    policy = json.loads(ds[0]["policy"])
    assert policy == {"model": "policy-v1", "backend": "openai", "temperature": 0.7, "num_responses": 2, "round": 2}

    first, cat, n, colour = planted["first"]
    row = next(r for r in ds if message_text(r["prompt"]) == "Describe picture 0.")
    rejected, chosen = message_text(row["rejected"]), message_text(row["chosen"])
    assert rejected == planted["answers"]["Describe picture 0."]  # the policy's answer, as it was
    spans = json.loads(row["changed_spans"])
    assert [(s["kind"], rejected[s["start"] : s["end"]]) for s in spans] == [
        ("count", number_word(n + 1).capitalize()),
        ("color", OTHER_COLOUR[colour]),
        ("object", planted["absent"][0]),
    ]
    new_object = spans[2]["replacement"]
    ann = planted["ann"]
    assert new_object in {x["category"] for x in ann.instances(first)} - {cat}
    article = "an" if new_object[0] in "aeiou" else "a"
    assert chosen == f"{number_word(n).capitalize()} {colour} {pluralize(cat)} and {article} {new_object}."
    truth = truth_of({"instances": ann.instances(first), "captions": ann.captions(first)})
    assert find_hallucinations(chosen, truth) == []  # the correction states only what the image shows
    assert row["fill_image_id"] and row["rejected_images"][0].tobytes() != row["images"][0].tobytes()

    second = next(r for r in ds if message_text(r["prompt"]) == "Describe picture 2.")
    assert json.loads(second["changed_spans"])[0]["text"] == planted["absent"][1]
    assert planted["absent"][1] not in message_text(second["chosen"]) and message_text(second["chosen"]).endswith(
        " is standing here."
    )


def test_mask_kind_object_checks_and_corrects_objects_only(tiny_kb, planted, tmp_path):
    r, _ = _planted_build(tiny_kb, planted, tmp_path / "out", "--mask-kind", "object")
    assert r.exit_code == 0, r.output
    onp = json.loads((tmp_path / "out" / "build_report.json").read_text())["onpolicy"]
    assert onp["hallucinations"] == {"object": 2, "count": 0, "color": 0} and onp["pairs"] == 2
    row = next(r for r in _load(tmp_path / "out") if message_text(r["prompt"]) == "Describe picture 0.")
    rejected, chosen = message_text(row["rejected"]), message_text(row["chosen"])
    assert [s["kind"] for s in json.loads(row["changed_spans"])] == ["object"]
    first, cat, n, colour = planted["first"]
    # the wrong count and colour stay as the policy wrote them: only the absent object is replaced
    assert chosen.startswith(f"{number_word(n + 1).capitalize()} {OTHER_COLOUR[colour]} {pluralize(cat)} and ")
    assert planted["absent"][0] in rejected and planted["absent"][0] not in chosen


def test_a_vlm_filler_fills_the_masked_spans_and_a_wrong_correction_is_dropped(tiny_kb, planted, tmp_path):
    """With a VLM filler only the wrong spans are masked and filled, looking at the true image. The test server fills
    every slot with a fixed word ([COUNT] seven, [COLOR] purple, [OBJECT] zebra: tests/support/openai_server.py):
    picture 0's correction still miscounts, so the re-check drops it; picture 2's "zebra" is no category the
    annotations declare (not checked, as in CHAIR), so its correction is kept."""
    from openai_server import answer_for

    with OpenAIServer(answer=lambda p: planted["answers"].get(p) or answer_for(p), keep_bodies=True) as srv:
        r = runner.invoke(
            app,
            _args(tiny_kb, planted["seeds"], tmp_path / "out", "--responses-from", "policy", "--base-url",
                  srv.base_url, "--filler", "openai", "--model", "filler", "--temperature", 0),
        )  # fmt: skip
        fills = [b for b in srv.bodies if b["model"] == "filler"]
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "out" / "build_report.json").read_text())
    assert report["drops"] == {"no_hallucination": 1, "correction_hallucinated": 1} and report["pairs_written"] == 1
    assert "On-policy: 3 answers checked of 3 drawn, 2 with hallucinations (object 2, count 1, color 1), 1 pairs" in (
        format_summary(report)
    )
    prompts = {part["text"].rsplit("Answer with slots: ", 1)[1] for b in fills for part in b["messages"][0]["content"]
               if part["type"] == "text"}  # fmt: skip
    absent2, cat = planted["absent"][1], planted["first"][1]
    assert prompts == {"A [OBJECT] is standing here.", f"[COUNT] [COLOR] {pluralize(cat)} and a [OBJECT]."}
    assert all(b["messages"][0]["content"][0]["type"] == "image_url" for b in fills)  # the true image
    row = _load(tmp_path / "out")[0]
    assert message_text(row["chosen"]) == "A zebra is standing here."
    assert message_text(row["rejected"]) == f"A {absent2} is standing here."
    assert [(s["text"], s["kind"], s["replacement"]) for s in json.loads(row["changed_spans"])] == [
        (absent2, "object", None)
    ]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--responses-from", "p", "--num-responses", "3", "--temperature", "0"], "3 identical greedy answers"),
        (["--num-responses", "2"], "give the policy with it"),
        (["--responses-from", "./no-such-checkpoint"], "is a local path that does not exist"),
        (["--responses-from", "p", "--temperature", "-1"], "--temperature must be >= 0"),
        (["--responses-from", "p", "--mask-kind", "relation"], "--mask-kind relation is none of them"),
    ],
)
def test_bad_onpolicy_options_are_usage_errors(tiny_kb, planted, tmp_path, extra, message):
    r = runner.invoke(app, _args(tiny_kb, planted["seeds"], tmp_path / "out", *extra))
    assert r.exit_code == 2 and message in r.output, r.output
    assert "Traceback" not in r.output


def _hashes(d: Path) -> dict:
    files = sorted(d.glob("data-*.arrow")) + [d / "dataset_info.json"]
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.mark.slow  # two realign-data processes (~15 s), as test_build_cli.py::test_kill_9_and_resume
def test_an_onpolicy_round_resumes_after_kill_9(tiny_kb, planted, tmp_path):
    with OpenAIServer(answer=lambda prompt: planted["answers"][prompt]) as srv:
        args = _args(tiny_kb, planted["seeds"], tmp_path / "ref", "--responses-from", "policy", "--base-url",
                     srv.base_url, "--chunk-size", 1, "--round", 1)  # fmt: skip
        ref = runner.invoke(app, args)
        assert ref.exit_code == 0, ref.output
        out = tmp_path / "killed"
        args[args.index(str(tmp_path / "ref"))] = str(out)
        p = subprocess.Popen(command(*args, pause=30), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        markers = out / ".realign-build" / "chunks"
        deadline = time.time() + 120
        while time.time() < deadline and not list(markers.glob("*.json")) and p.poll() is None:
            time.sleep(0.05)
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        assert len(list(markers.glob("*.json"))) == 1 and not (out / "build_report.json").exists()
        p = subprocess.Popen(command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert p.wait(timeout=300) == 0, p.stderr.read()
    report = json.loads((out / "build_report.json").read_text())
    assert report["throughput"]["resumed_chunks"] == 1 and report["onpolicy"]["answers"] == 3
    assert _hashes(out) == _hashes(tmp_path / "ref")
    assert set(_load(out)["round"]) == {1}


def test_a_tiny_vlm_policy_through_transformers(tiny_kb, tiny_llava, planted, tmp_path):
    r = runner.invoke(
        app,
        _args(
            tiny_kb,
            planted["seeds"],
            tmp_path / "out",
            "--responses-from",
            tiny_llava,
            "--num-responses",
            2,
            "--temperature",
            1.0,
            "--max-new-tokens",
            8,
            "--device",
            "cpu",
        ),  # fmt: skip
    )
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "out" / "build_report.json").read_text())
    onp = report["onpolicy"]
    assert onp["answers"] == 6 and onp["answers"] == onp["answers_checked"] + report["drops"].get("answer_failed", 0)
    assert onp["answers_checked"] == onp["answers_hallucinated"] + report["drops"].get("no_hallucination", 0)
    assert onp["pairs"] == report["pairs_written"] == len(_load(tmp_path / "out"))
    assert report["provenance"]["policy"] == {
        "model": str(tiny_llava), "backend": "transformers", "temperature": 1.0, "num_responses": 2, "round": 0,
    }  # fmt: skip
