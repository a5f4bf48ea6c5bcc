"""The synthetic-world study (experiments/synthetic_world/run.py) end to end at --smoke sizes: every arm trains,
every metric is finite, held-out images never reach the SFT data, the knowledge base or the preference data, and a
second run resumes from the cached stages."""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

STUDY = Path(__file__).resolve().parent.parent / "experiments" / "synthetic_world"
ARMS = ("sft", "dpo", "rdpo", "rdpo_anchor", "rdpo_region_noise", "rdpo_onpolicy")


def _run(out: Path, *extra: str):
    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    return subprocess.run(
        [sys.executable, str(STUDY / "run.py"), "--smoke", "--out", str(out), *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "smoke"
    result = _run(out)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


def test_smoke_run_writes_tables_figure_and_holds_its_invariants(smoke):
    out, result = smoke
    assert "invariants hold for every seed" in result.stdout
    # said plainly, as the last line: smoke numbers mean nothing
    assert result.stdout.strip().splitlines()[-1].startswith("--smoke: tiny sizes") and "mean nothing" in result.stdout
    data = json.loads((out / "results.json").read_text())
    assert data["versions"]["trl"] and data["sizes"]["pref_steps"] >= 1
    (record,) = data["seeds"]
    assert record["invariants"] == {"ok": True, "failures": [], "heldout_images": data["sizes"]["heldout_images"]}
    assert set(record["eval"]) == set(ARMS)
    fit = record["sft_fit"]  # the base model on its own training questions, per object too
    asked = [int(c.split("/")[1]) for v in fit["per_object"].values() for c in v.values()]
    assert fit["questions"] > 0 and sum(asked) == fit["questions"] and 0 <= fit["accuracy"] <= 1
    for arm in ARMS:
        flat = record["eval"][arm]["flat"]
        for split in ("random", "popular", "adversarial"):
            assert math.isfinite(flat[f"pope_{split}_f1"]) and math.isfinite(flat[f"pope_{split}_accuracy"])
        for key in ("chair_s", "chair_i", "object_recall"):
            assert math.isfinite(flat[key])
        assert (out / "seed-0" / "eval" / arm / "eval_results.json").is_file()
    for arm in ARMS[1:]:
        trained = record["arms"][arm]
        assert trained["global_step"] == data["sizes"]["pref_steps"]
        assert all(math.isfinite(h["loss"]) for h in trained["log"])
        if arm != "rdpo_onpolicy":  # its rows are what its own builds found, at most the same number
            assert trained["rows"] == record["arms"]["dpo"]["rows"]  # same data size for every arm
    assert record["arms"]["rdpo"]["loss_type"] == "rdpo" and record["arms"]["dpo"]["loss_type"] == "sigmoid"
    assert "rewards/visual_margins" in record["arms"]["rdpo"]["log"][-1]
    tables = (out / "tables.md").read_text()
    assert "(c) rDPO" in tables and "adversarial F1" in tables and "CHAIR_i" in tables
    # paired interval over the held-out images (the smoke model may name no object: no CHAIR_i to resample)
    low, high = data["bootstrap"]["rdpo − dpo"]["pope_adversarial_accuracy"]
    assert low <= high and "95 % bootstrap interval" in tables
    for png in ("figure.png", "sft_curve.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_onpolicy_arm_trains_round_by_round_on_its_own_captions_and_resumes_at_the_unfinished_round(
    smoke, tmp_path
):
    """Issue #26's study arm: each round builds from the previous round's model, the rounds share one off-policy
    arm's budget of rows and steps, and a killed run picks up at the round that did not finish."""
    import shutil

    from realign_data.building.output import load_built

    out, _ = smoke
    data = json.loads((out / "results.json").read_text())
    sizes, record = data["sizes"], data["seeds"][0]
    arm = record["arms"]["rdpo_onpolicy"]
    rounds = arm["rounds"]
    assert [r["round"] for r in rounds] == list(range(1, sizes["onpolicy_rounds"] + 1))
    assert sum(r["steps"] for r in rounds) == sizes["pref_steps"] == arm["global_step"]
    assert 0 < arm["rows"] <= sizes["pref_rows"] and all(r["rows"] <= r["build"]["pairs"] for r in rounds)
    seed_dir = out / "seed-0"
    policy = str(seed_dir / "sft_verdict" / "model")
    for r in rounds:
        built = load_built(seed_dir / "arms" / "rdpo_onpolicy_rounds" / f"round-{r['round']}" / "data")
        assert set(built["round"]) == {r["round"]}
        assert {json.loads(p)["model"] for p in built["policy"]} == {policy}  # the previous round's model
        assert all(json.loads(c) for c in built["changed_spans"])  # every pair corrects the policy's own caption
        assert r["build"]["onpolicy"]["answers_checked"] > 0 and math.isfinite(r["eval"]["flat"]["chair_i"])
        policy = str(seed_dir / "arms" / "rdpo_onpolicy_rounds" / f"round-{r['round']}" / "model")
    assert arm["model"] == policy
    assert "The on-policy arm, round by round" in (out / "tables.md").read_text()

    # kill after round 1: round 1 is cached, round 2 and the arm run again
    copy = tmp_path / "resume"
    shutil.copytree(out, copy, symlinks=True)
    last = sizes["onpolicy_rounds"]
    for path in (f"arms/rdpo_onpolicy_rounds/round-{last}", "arms/rdpo_onpolicy", "eval/rdpo_onpolicy"):
        shutil.rmtree(copy / "seed-0" / path)
    again = _run(copy, "--arms", "rdpo_onpolicy")
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"seed 0 arm rdpo_onpolicy round {last - 1}/{last}: cached" in again.stderr
    assert f"seed 0 arm rdpo_onpolicy round {last}/{last}: running" in again.stderr


def test_heldout_images_never_reach_training_data(smoke):
    """Checked here from the files, independently of the run's own invariant check."""
    out, _ = smoke
    record = json.loads((out / "results.json").read_text())["seeds"][0]
    annotations = out / "seed-0" / "world" / "all" / "annotations"
    held = json.loads((annotations / "instances_val2014.json").read_text())["images"]
    train = json.loads((annotations / "instances_train2014.json").read_text())["images"]
    held_ids, held_files = {im["id"] for im in held}, {im["file_name"] for im in held}
    assert held_ids and not held_ids & {im["id"] for im in train}
    assert set(record["sft"]["image_ids"]) <= {im["id"] for im in train}
    for arm in ARMS[1:]:
        used = {Path(v).name for v in record["arms"][arm]["image_id"] + record["arms"][arm]["rejected_image_id"] if v}
        assert used and not used & held_files


def test_invariant_check_catches_a_leak(smoke):
    sys.path.insert(0, str(STUDY))
    from study_report import check_invariants
    from study_sizes import SMOKE

    out, _ = smoke
    record = json.loads((out / "results.json").read_text())["seeds"][0]
    held = json.loads((out / "seed-0/world/all/annotations/instances_val2014.json").read_text())["images"]
    leaked = copy.deepcopy(record)
    leaked["sft"]["image_ids"].append(held[0]["id"])
    leaked["arms"]["rdpo"]["global_step"] = 0
    leaked["eval"]["dpo"]["flat"]["chair_i"] = float("nan")
    failures = check_invariants(out / "seed-0", leaked, SMOKE)["failures"]
    assert any("SFT" in f for f in failures) and any("rdpo" in f for f in failures)
    assert any("dpo" in f and "non-finite" in f for f in failures)


def test_second_run_resumes_from_cached_stages(smoke):
    out, _ = smoke
    before = (out / "seed-0" / "sft" / "done.json").stat().st_mtime_ns
    again = _run(out)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "cached" in again.stderr
    assert (out / "seed-0" / "sft" / "done.json").stat().st_mtime_ns == before


def test_report_only_writes_partial_tables_from_finished_stages(smoke, tmp_path):
    import shutil

    out, _ = smoke
    partial = tmp_path / "partial"
    shutil.copytree(out, partial, symlinks=True)
    shutil.rmtree(partial / "seed-0" / "eval" / "rdpo_anchor")
    result = subprocess.run(
        [sys.executable, str(STUDY / "run.py"), "--smoke", "--out", str(partial), "--report-only"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    tables = (partial / "tables.md").read_text()
    assert "**Partial results**" in tables and "eval rdpo_anchor" in tables
    anchor_row = next(
        line for line in tables.splitlines() if line.startswith("| (d) rDPO + mDPO anchor") and "F1" not in line
    )
    assert "–" in anchor_row and "(c) rDPO |" in tables


def test_a_lever_sweep_reuses_every_stage_before_the_arms(smoke, tmp_path):
    out, _ = smoke
    lever = _run(tmp_path / "beta", "--reuse", str(out), "--set", "beta=0.5", "--arms", "rdpo")
    assert lever.returncode == 0, lever.stderr[-2000:]
    for name in ("world", "encoder + knowledge base", "SFT", "eval sft", "preference builds"):
        assert f"seed 0 {name}: cached" in lever.stderr
    assert "seed 0 arm rdpo: running" in lever.stderr and "arm dpo" not in lever.stderr  # --arms: rdpo only
    record = json.loads((tmp_path / "beta" / "results.json").read_text())
    assert record["sizes"]["beta"] == 0.5 and record["seeds"][0]["invariants"]["ok"]
    assert set(record["seeds"][0]["arms"]) == {"rdpo"} and set(record["seeds"][0]["eval"]) == {"sft", "rdpo"}
    assert (tmp_path / "beta" / "seed-0" / "sft").resolve() == (out / "seed-0" / "sft").resolve()
    # a stage whose own sizes changed is redone, with everything after it; the stages before it are still reused
    verdict = _run(tmp_path / "verdict", "--reuse", str(out), "--set", "verdict_steps=3", "--arms", "rdpo")
    assert verdict.returncode == 0, verdict.stderr[-2000:]
    for name in ("world", "encoder + knowledge base", "SFT", "preference builds"):
        assert f"seed 0 {name}: cached" in verdict.stderr
    assert "redoing sft_verdict: its sizes differ" in verdict.stderr and "(verdict_steps)" in verdict.stderr
    for name in ("SFT verdict phase", "eval sft", "SFT on its training questions"):
        assert f"seed 0 {name}: running" in verdict.stderr
    # a different world shares nothing: refused rather than silently training from scratch
    refused = _run(tmp_path / "world", "--reuse", str(out), "--set", "cooccurrence=0.5")
    assert refused.returncode == 2 and "its world differs (cooccurrence)" in refused.stderr
    assert _run(tmp_path / "none", "--reuse", str(tmp_path / "nowhere")).returncode == 2
    wrong_arm = _run(tmp_path / "arm", "--arms", "rdpo,ppo")
    assert wrong_arm.returncode == 2 and "--arms takes names from" in wrong_arm.stderr


def test_sft_steps_0_leaves_the_whole_base_model_training_to_the_verdict_phase(smoke, tmp_path):
    """The balanced loss from the first step (EVIDENCE.md, part 1): no TRL SFT, the verdict phase starts from the
    base model; the encoder and the preference builds are still reused."""
    out, _ = smoke
    run = _run(tmp_path / "balanced", "--reuse", str(out), "--set", "sft_steps=0", "--arms", "dpo")
    assert run.returncode == 0, run.stderr[-2000:]
    assert "seed 0 encoder + knowledge base: cached" in run.stderr and "seed 0 SFT: running" in run.stderr
    record = json.loads((tmp_path / "balanced" / "results.json").read_text())["seeds"][0]
    assert record["sft"]["steps"] == 0 and record["sft"]["curve"] == [] and record["sft_verdict"]["curve"]
    assert record["invariants"]["ok"] and record["sft"]["image_ids"]


def test_align_steps_align_the_image_tokens_before_sft_and_a_run_older_than_a_size_is_reused_at_its_default(
    smoke, tmp_path
):
    """The stand-in for LLaVA's first stage (study_align.py) runs before TRL's SFT and is recorded; a run recorded
    before a size existed ran at that size's default, so --reuse still links its stages."""
    import shutil

    out, _ = smoke
    old = tmp_path / "old"
    shutil.copytree(out, old, symlinks=True)
    sizes = json.loads((old / "sizes.json").read_text())
    for name in ("align_steps", "align_weight"):
        del sizes[name]
    (old / "sizes.json").write_text(json.dumps(sizes))
    again = _run(tmp_path / "again", "--reuse", str(old), "--arms", "dpo")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "seed 0 SFT verdict phase: cached" in again.stderr

    run = _run(tmp_path / "aligned", "--reuse", str(out), "--set", "align_steps=4", "--set", "align_weight=1")
    assert run.returncode == 0, run.stderr[-2000:]
    assert "seed 0 encoder + knowledge base: cached" in run.stderr and "seed 0 SFT: running" in run.stderr
    record = json.loads((tmp_path / "aligned" / "results.json").read_text())["seeds"][0]
    align = record["sft"]["align"]
    assert align["steps"] == 4 and [p["step"] for p in align["curve"]][-1] == 4
    assert 0.0 <= align["heldout_accuracy"] <= 1.0 and record["invariants"]["ok"]


def test_the_alignment_loss_pulls_image_tokens_towards_the_words_of_what_they_show(smoke):
    """The loss is what it claims: minimising it on a few images makes the thresholded logits name their objects."""
    import random

    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    sys.path.insert(0, str(STUDY))
    from study_align import align_logits, align_loss, object_word_ids, present_targets
    from study_sft import sft_rows
    from study_sizes import SMOKE
    from study_verdict import YES_NO

    out, _ = smoke
    model_dir = out / "seed-0" / "sft" / "model"
    processor = AutoProcessor.from_pretrained(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(model_dir)
    rows = [r for r in sft_rows(out / "seed-0" / "world" / "train", SMOKE, 0) if r["answer"] not in YES_NO]
    rows = random.Random(0).sample(rows, 8)
    ids, images = object_word_ids(processor), {}
    embeddings = model.get_input_embeddings().weight.detach().clone()
    optim = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = align_loss(model, processor, rows, images, ids).item()
    for _ in range(60):
        loss = align_loss(model, processor, rows, images, ids)
        loss.backward()
        optim.step()
        optim.zero_grad()
    assert loss.item() < first / 3
    said = align_logits(model, processor, rows, images, ids) > 0
    assert (said == present_targets(rows).bool()).float().mean() > 0.9
    # the words are the fixed target: only the vision side moves
    assert torch.equal(model.get_input_embeddings().weight, embeddings)


def test_every_size_is_read_by_the_arms_or_by_a_stage_that_reuse_compares():
    """A size no stage declares would let --reuse link a stage that was trained with another value of it."""
    sys.path.insert(0, str(STUDY))
    from study_sizes import ARM_FIELDS, FULL, STAGE_FIELDS

    declared = set(ARM_FIELDS).union(*STAGE_FIELDS.values())
    assert declared == set(FULL.to_dict())


def test_the_base_model_keeps_its_embeddings_tied_through_sft_and_preference_training(smoke):
    """The study's yes/no fix (EVIDENCE.md, POPE) is the tie: it must survive TRL's save and the arms' training."""
    from transformers import AutoModelForImageTextToText

    out, _ = smoke
    for path in (out / "seed-0" / "sft" / "model", out / "seed-0" / "arms" / "rdpo" / "model"):
        model = AutoModelForImageTextToText.from_pretrained(path)
        assert model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr(), path


def test_set_reads_booleans_and_names_a_bad_value():
    sys.path.insert(0, str(STUDY))
    from study_sizes import FULL, with_overrides

    assert with_overrides(FULL, {"tie_embeddings": "false"}).tie_embeddings is False
    assert with_overrides(FULL, {"tie_embeddings": "True"}).tie_embeddings is True
    with pytest.raises(ValueError, match="tie_embeddings takes true or false, not 'maybe'"):
        with_overrides(FULL, {"tie_embeddings": "maybe"})
    with pytest.raises(ValueError, match=r"sft_steps takes a number \(int\), not 'many'"):
        with_overrides(FULL, {"sft_steps": "many"})
    assert with_overrides(FULL, {"onpolicy_kinds": "object"}).onpolicy_kinds == "object"
    with pytest.raises(ValueError, match="onpolicy_kinds takes some of object, count, color, not 'relation'"):
        with_overrides(FULL, {"onpolicy_kinds": "object,relation"})


def _eval_records(seed_dir: Path, arm: str, hallucinating: set) -> None:
    """A ``chair.jsonl`` of 40 one-object captions whose image ids in ``hallucinating`` add an absent cat."""
    d = seed_dir / "eval" / arm
    d.mkdir(parents=True)
    with (d / "chair.jsonl").open("w") as f:
        for i in range(40):
            extra = [{"word": "cat", "object": "cat"}] if i in hallucinating else []
            mentions = [{"word": "dog", "object": "dog"}, *extra]
            record = {"image_id": i, "mentions": mentions, "hallucinated": extra, "ground_truth": ["dog"]}
            f.write(json.dumps({**record, "recalled": ["dog"], "chair_s": int(bool(extra))}) + "\n")
        f.write(json.dumps({"image_id": 99, "error": "timeout"}) + "\n")  # a failed request is never scored


def test_the_paired_bootstrap_interval_excludes_0_only_for_a_difference_beyond_image_noise(tmp_path):
    sys.path.insert(0, str(STUDY))
    from study_bootstrap import paired_interval

    seeds = [tmp_path / "seed-0", tmp_path / "seed-1"]
    for seed_dir in seeds:
        _eval_records(seed_dir, "sft", hallucinating=set(range(0, 40, 2)))  # every other caption
        _eval_records(seed_dir, "rdpo", hallucinating={0, 10})  # far fewer, on the same images
        _eval_records(seed_dir, "dpo", hallucinating=set(range(0, 40, 2)))  # the same captions as SFT
    low, high = paired_interval(seeds, "rdpo", "sft", "chair_i", pairs=())
    assert -0.4 < low <= high < 0  # CHAIR_i 2/42 against 20/60, on every draw
    assert paired_interval(seeds, "dpo", "sft", "chair_i", pairs=()) == (0.0, 0.0)  # identical: no spread
    assert paired_interval(seeds, "rdpo", "sft", "object_recall", pairs=()) == (0.0, 0.0)
    assert paired_interval(seeds, "rdpo", "missing_arm", "chair_i", pairs=()) is None
