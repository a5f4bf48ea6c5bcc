"""Easy-to-hard curriculum training (``realign_trl.train_curriculum`` and ``realign-trl dpo --curriculum``)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trl_models import RDPO_METRICS, load, make_rows, tiny_args

REPO = Path(__file__).parent.parent
# row i has difficulty DIFFICULTY[i]: easy = rows 1, 4, 7; medium = 5, 0, 8; hard = 6, 3, 2 (easiest first)
DIFFICULTY = [0.5, 0.1, 0.9, 0.8, 0.2, 0.4, 0.7, 0.3, 0.6]


def _dataset(with_difficulty=True):
    from datasets import Dataset

    rows = make_rows(9, seed=0)
    rows["id"] = [f"r{i}" for i in range(9)]
    if with_difficulty:
        rows["difficulty"] = DIFFICULTY
    return Dataset.from_dict(rows)


# ---------------------------------------------------------------------------------------------- splits
def test_splits_partition_rows_by_difficulty():
    from realign_trl import curriculum_splits

    splits = curriculum_splits(_dataset())
    assert list(splits) == ["easy", "medium", "hard"]
    assert [list(s["id"]) for s in splits.values()] == [["r1", "r4", "r7"], ["r5", "r0", "r8"], ["r6", "r3", "r2"]]
    assert max(splits["easy"]["difficulty"]) < min(splits["medium"]["difficulty"])
    assert max(splits["medium"]["difficulty"]) < min(splits["hard"]["difficulty"])


def test_dataset_dict_splits_are_used_as_is():
    from datasets import DatasetDict

    from realign_trl import curriculum_splits

    parts = {
        name: _dataset(with_difficulty=False).select(range(i, i + 2))
        for i, name in enumerate(["easy", "medium", "hard"])
    }
    dd = DatasetDict({"train": _dataset(), **parts})
    splits = curriculum_splits(dd)
    assert all(splits[k] is dd[k] for k in parts)
    # without the curriculum splits, the train split's difficulty column is used
    assert [len(s) for s in curriculum_splits(DatasetDict({"train": _dataset()})).values()] == [3, 3, 3]


def test_missing_difficulty_column_is_a_clear_error():
    from realign_trl import curriculum_splits

    with pytest.raises(ValueError, match=r"'difficulty' column.*realign-data build \.\.\. --curriculum easy-to-hard"):
        curriculum_splits(_dataset(with_difficulty=False))


# ---------------------------------------------------------------------------------------------- training
def _run(tiny_llava, tmp_path, reference, peft=False, max_steps=1):
    """A 3-stage rdpo curriculum on tiny LLaVA; returns (result, stage trainers, parameters at stage begin/end)."""
    from transformers import TrainerCallback
    from trl import DPOTrainer

    import realign_trl

    realign_trl.register()
    trainers, begin, end = [], [], []

    def snap(model):
        return {n: p.detach().clone() for n, p in model.named_parameters()}

    class Capture(DPOTrainer):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            trainers.append(self)
            # the reference each stage is scored against (a refreshed one is released after its stage)
            self.ref_snapshot = None if self.ref_model is None else snap(self.ref_model)
            self.ref_frozen = self.ref_model is not None and not any(
                p.requires_grad for p in self.ref_model.parameters()
            )

    class Snapshots(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kw):
            begin.append(snap(model))

        def on_train_end(self, args, state, control, model=None, **kw):
            end.append(snap(model))

    model, processor = load(tiny_llava)
    peft_config = None
    if peft:
        from peft import LoraConfig

        peft_config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    result = realign_trl.train_curriculum(
        model,
        tiny_args(tmp_path, max_steps=max_steps),
        _dataset(),
        processor,
        peft_config=peft_config,
        reference=reference,
        callbacks=[Snapshots()],
        trainer_cls=Capture,
    )
    return result, trainers, begin, end


def _equal(a, b, names):
    return all(torch.equal(a[n], b[n]) for n in names)


def test_three_stage_rdpo_curriculum_fixed_reference(tiny_llava, tmp_path):
    result, trainers, begin, end = _run(tiny_llava, tmp_path, "fixed", max_steps=2)
    stages = result.stages
    assert [s["name"] for s in stages] == ["easy", "medium", "hard"]
    assert [s["rows"] for s in stages] == [3, 3, 3] and [s["global_step"] for s in stages] == [2, 2, 2]
    for s in stages:  # per-stage rdpo metrics
        logs = [h for h in s["log_history"] if "loss" in h]
        assert len(logs) == 2
        for key in RDPO_METRICS:
            assert math.isfinite(logs[-1][key]) and math.isfinite(s["mean"][key]), key
        assert Path(s["output_dir"]).name == f"stage-{s['stage']}-{s['name']}"
    saved = json.loads((tmp_path / "out" / "curriculum_metrics.json").read_text())
    assert saved["reference"] == "fixed" and [s["name"] for s in saved["stages"]] == ["easy", "medium", "hard"]
    assert "rewards/visual_margins" in saved["stages"][2]["mean"]

    # weights carry over: each stage starts where the previous one ended, and training moved them
    names = [n for n, p in trainers[0].model.named_parameters() if p.requires_grad]
    for i in (1, 2):
        assert _equal(begin[i], end[i - 1], names)
        assert not _equal(begin[i], end[i], names)
    assert result.model is trainers[2].model is trainers[0].model
    # fixed reference: ONE frozen copy of the initial policy, reused by every stage
    ref = trainers[0].ref_model
    assert all(t.ref_model is ref for t in trainers)
    ref_params = dict(ref.named_parameters())
    assert all(torch.equal(ref_params[n], begin[0][n]) for n in names)
    assert "initial policy" in stages[2]["reference"]
    # stage 2 starts against the initial policy, so its first rewards are already non-zero
    assert abs(stages[1]["log_history"][0]["rewards/chosen"]) > 1e-4


def test_refresh_reference_follows_the_policy(tiny_llava, tmp_path):
    result, trainers, begin, end = _run(tiny_llava, tmp_path, "refresh")
    names = [n for n, p in trainers[0].model.named_parameters() if p.requires_grad]
    for i in (1, 2):
        ref_params = trainers[i].ref_snapshot
        assert _equal(ref_params, begin[i], names)
        assert not _equal(ref_params, begin[0], names)
        assert trainers[i].ref_frozen
        # policy == reference at each stage start: first rewards are zero up to float noise
        assert result.stages[i]["log_history"][0]["rewards/chosen"] == pytest.approx(0.0, abs=1e-4)
    assert result.stages[1]["reference"] == "policy after stage 1 (frozen copy)"


@pytest.mark.parametrize("reference", ["fixed", "refresh"])
def test_lora_curriculum_reference(tiny_llava, tmp_path, reference):
    result, trainers, begin, end = _run(tiny_llava, tmp_path, reference, peft=True)
    model = result.model
    lora = [n for n in begin[0] if ".default." in n]
    assert lora and all(trainers[i].model is model for i in range(3))
    for i in (1, 2):
        assert _equal(begin[i], end[i - 1], lora)
    first = [s["log_history"][0] for s in result.stages]
    assert first[0]["rewards/chosen"] == 0.0  # fresh LoRA: policy == base at the very start
    if reference == "fixed":  # adapters disabled (= initial policy) stays the reference
        assert "ref" not in model.peft_config
        assert abs(first[2]["rewards/chosen"]) > 1e-4
    else:  # a "ref" adapter copied from the current adapter at each stage start
        assert "ref" in model.peft_config
        ref_now = {n.replace(".ref.", ".default."): p for n, p in model.named_parameters() if ".ref." in n}
        assert _equal(ref_now, begin[2], lora)
        assert not any(p.requires_grad for n, p in model.named_parameters() if ".ref." in n)
        assert first[2]["rewards/chosen"] == pytest.approx(0.0, abs=1e-5)


# ---------------------------------------------------------------------------------------------- CLI
def _env():
    import os

    return dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TQDM_DISABLE="1")


def _cli():
    return [sys.executable, "-c", "from realign_trl.cli import main; main()"]


def test_cli_curriculum_on_saved_dataset_dict(tiny_llava, tmp_path):
    from datasets import DatasetDict

    from realign_trl import curriculum_splits

    ds = _dataset()
    DatasetDict({"train": ds, **curriculum_splits(ds)}).save_to_disk(str(tmp_path / "data"))
    config = (REPO / "examples" / "rdpo_tiny.yaml").read_text()
    config = (
        config.replace("TINY_MODEL_PATH", str(tiny_llava))
        .replace("TINY_DATASET_PATH", str(tmp_path / "data"))
        .replace("TINY_OUTPUT_DIR", str(tmp_path / "out"))
    )
    (tmp_path / "tiny.yaml").write_text(config)
    proc = subprocess.run(
        [
            *_cli(),
            "dpo",
            "--config",
            str(tmp_path / "tiny.yaml"),
            "--max_steps",
            "1",
            "--curriculum",
            "easy-to-hard",
            "--curriculum-reference",
            "refresh",
        ],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Training completed" in proc.stdout
    assert "1 easy" in proc.stdout and "3 hard" in proc.stdout and "rewards/visual_margins" in proc.stdout
    out = tmp_path / "out"
    assert (out / "adapter_model.safetensors").exists()
    saved = json.loads((out / "curriculum_metrics.json").read_text())
    assert saved["reference"] == "refresh" and saved["loss_type"] in ("rdpo", ["rdpo"])
    assert [(s["name"], s["rows"], s["global_step"]) for s in saved["stages"]] == [
        ("easy", 3, 1),
        ("medium", 3, 1),
        ("hard", 3, 1),
    ]
    assert all(math.isfinite(s["last"]["loss/visual"]) for s in saved["stages"])
    assert all((out / f"stage-{i}-{n}").is_dir() for i, n in [(1, "easy"), (2, "medium"), (3, "hard")])


def test_cli_rejects_unknown_curriculum(tmp_path):
    proc = subprocess.run(
        [*_cli(), "dpo", "--output_dir", str(tmp_path), "--use_cpu", "true", "--curriculum", "hard-first"],
        capture_output=True,
        text=True,
        env=_env(),
    )
    assert proc.returncode == 2
    assert "hard-first" in proc.stderr and "easy-to-hard" in proc.stderr
