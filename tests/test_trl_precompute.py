"""``precompute_ref_log_probs=True`` on image datasets (TRL 1.16 refuses it; ``realign_trl.ref_logps`` does it).

The reference is scored once before training; the loss then reads the stored log-probs. These tests check that
losses and gradients equal those with a live reference (fp32, LLaVA / Gemma 3 / Qwen2-VL, prefix sharing on and
off, rdpo and sigmoid, full fine-tuning and LoRA), that the side file is reused by a second trainer (no reference
forward at all) and invalidated by another reference, and that training runs with no reference model.
"""

from __future__ import annotations

import math

import pytest
import torch

from trl_models import load, make_dataset, make_trainer, tiny_args

ATOL = 1e-5


def _perturb(model, seed=1, scale=0.05):
    """Move the policy away from the reference (the same way in both trainers), so the margins are not zero."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _name, p in sorted(model.named_parameters()):
            if p.requires_grad and p.is_floating_point():
                p.add_(torch.randn(p.shape, generator=g) * scale)


def _loss_and_grads(trainer, examples):
    trainer.model.train()
    trainer.model.zero_grad()
    inputs = trainer._prepare_inputs(trainer.data_collator(examples))
    loss = trainer.compute_loss(trainer.model, inputs)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    return loss.detach(), grads, inputs


def _pair(model_path, tmp_path, peft_config=None, **overrides):
    """(live, precomputed) trainers on the same data; precompute in batches of 3 (rows 0-2, then 3), while the
    loss below sees all 4 rows in one batch: other padding, same values."""
    overrides.setdefault("bf16", False)
    live = make_trainer(model_path, tmp_path / "live", ref=peft_config is None, peft_config=peft_config, **overrides)
    pre = make_trainer(
        model_path,
        tmp_path / "pre",
        ref=False,
        peft_config=peft_config,
        precompute_ref_log_probs=True,
        precompute_ref_batch_size=3,
        ref_logps_cache_dir=str(tmp_path / "cache"),
        **overrides,
    )
    return live, pre


def _assert_same(live, pre, dataset_rows=4):
    examples_live = [live.train_dataset[i] for i in range(dataset_rows)]
    examples_pre = [pre.train_dataset[i] for i in range(dataset_rows)]
    loss_live, grads_live, _ = _loss_and_grads(live, examples_live)
    loss_pre, grads_pre, inputs = _loss_and_grads(pre, examples_pre)
    assert "ref_chosen_logps" in inputs and pre.ref_model is None
    assert abs(loss_live.item() - math.log(2) * (2 if pre.loss_types == ["rdpo"] else 1)) > 1e-3  # margins not 0
    torch.testing.assert_close(loss_pre, loss_live, rtol=0, atol=ATOL)
    assert grads_live.keys() == grads_pre.keys() and grads_live
    for name in grads_live:
        torch.testing.assert_close(grads_pre[name], grads_live[name], rtol=0, atol=ATOL, msg=name)


@pytest.mark.parametrize(
    "family,sharing,loss_type",
    [
        ("tiny_llava", "on", "rdpo"),
        ("tiny_llava", "off", "rdpo"),
        ("tiny_llava", "auto", "sigmoid"),
        ("tiny_gemma3", "on", "rdpo"),
        ("tiny_gemma3", "off", "rdpo"),
        ("tiny_gemma3", "auto", "sigmoid"),
        ("tiny_qwen2_vl", "auto", "rdpo"),
        ("tiny_qwen2_vl", "off", "rdpo"),
        ("tiny_qwen2_vl", "auto", "sigmoid"),
    ],
)
def test_precomputed_equals_live_reference(family, sharing, loss_type, request, tmp_path):
    model_path = request.getfixturevalue(family)
    live, pre = _pair(model_path, tmp_path, loss_type=loss_type, rdpo_prefix_sharing=sharing)
    if loss_type == "rdpo" and sharing == "on":
        assert "rdpo_segments" in pre.data_collator([pre.train_dataset[0]])  # the packed layout was scored
    columns = ["ref_chosen_logps", "ref_rejected_logps"] + (["ref_visual_logps"] if loss_type == "rdpo" else [])
    assert [c for c in pre.train_dataset.column_names if c.startswith("ref_")] == columns
    _perturb(live.model)
    _perturb(pre.model)
    _assert_same(live, pre)


def test_lora_reference_is_the_adapter_disabled_model(tiny_llava, tmp_path):
    from peft import LoraConfig

    def lora():
        return LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")

    live = make_trainer(tiny_llava, tmp_path / "live", ref=False, peft_config=lora(), bf16=False)
    pre = make_trainer(
        tiny_llava,
        tmp_path / "pre",
        ref=False,
        peft_config=lora(),
        bf16=False,
        precompute_ref_log_probs=True,
        ref_logps_cache_dir=str(tmp_path / "cache"),
    )
    assert live.ref_model is None and pre.ref_model is None
    _perturb(live.model)  # only the LoRA weights are trainable: the adapter now changes the policy
    _perturb(pre.model)
    _assert_same(live, pre)
    # the key ignores the (randomly initialised) adapter: a second LoRA run with another seed reuses the file
    again = _counting(
        lambda: make_trainer(
            tiny_llava,
            tmp_path / "again",
            ref=False,
            peft_config=lora(),
            seed=7,
            precompute_ref_log_probs=True,
            ref_logps_cache_dir=str(tmp_path / "cache"),
            bf16=False,
        )
    )
    assert again[1] == 0
    assert list(again[0].train_dataset["ref_chosen_logps"]) == list(pre.train_dataset["ref_chosen_logps"])


def _counting(build):
    """Build a trainer while counting the examples the reference pass scores."""
    from realign_trl import ref_logps

    rows = [0]
    original = ref_logps._score

    def counted(trainer, subset, *args, **kwargs):
        rows[0] += len(subset)
        return original(trainer, subset, *args, **kwargs)

    ref_logps._score = counted
    try:
        trainer = build()
    finally:
        ref_logps._score = original
    return trainer, rows[0]


def test_second_run_reuses_the_side_file_and_trains_without_reference(tiny_llava, tmp_path):
    cache = tmp_path / "cache"
    kwargs = dict(ref=False, precompute_ref_log_probs=True, ref_logps_cache_dir=str(cache), max_steps=2)
    first, rows = _counting(lambda: make_trainer(tiny_llava, tmp_path / "a", **kwargs))
    assert rows == 4
    files = list(cache.iterdir())
    assert len(files) == 1 and files[0].suffix == ".safetensors"
    from safetensors import safe_open

    with safe_open(str(files[0]), "pt") as f:
        assert f.get_tensor("logps").shape == (4, 3) and f.get_tensor("row_keys").shape == (4, 32)
        assert '"reference"' in f.metadata()["realign_ref_logps"]

    second, rows = _counting(lambda: make_trainer(tiny_llava, tmp_path / "b", **kwargs))
    assert rows == 0  # nothing scored: every row found in the side file
    for column in ("ref_chosen_logps", "ref_rejected_logps", "ref_visual_logps"):
        assert list(second.train_dataset[column]) == list(first.train_dataset[column])
    # a changed row is the only one scored again
    data = make_dataset(4).map(
        lambda r, i: (
            {"chosen": [{"role": "assistant", "content": [{"type": "text", "text": "a different answer"}]}]}
            if i == 2
            else {}
        ),
        with_indices=True,
    )
    third, rows = _counting(lambda: make_trainer(tiny_llava, tmp_path / "c", dataset=data, **kwargs))
    assert rows == 1
    assert list(third.train_dataset["ref_rejected_logps"][:2]) == list(first.train_dataset["ref_rejected_logps"][:2])
    # and training runs without any reference model: the stored values are all it reads
    assert second.ref_model is None
    second.train()
    logs = [h for h in second.state.log_history if "loss" in h]
    assert len(logs) == 2 and logs[0]["loss"] == pytest.approx(2 * math.log(2), abs=1e-5)


def test_another_reference_is_another_key(tiny_llava, tmp_path):
    cache = tmp_path / "cache"
    _, rows = _counting(
        lambda: make_trainer(
            tiny_llava,
            tmp_path / "a",
            ref=False,
            precompute_ref_log_probs=True,
            ref_logps_cache_dir=str(cache),
            loss_type="sigmoid",
        )
    )
    assert rows == 4

    def with_other_reference():
        from trl import DPOTrainer

        import realign_trl  # noqa: F401

        model, processor = load(tiny_llava)
        ref, _ = load(tiny_llava)
        _perturb(ref)
        return DPOTrainer(
            model=model,
            ref_model=ref,
            processing_class=processor,
            train_dataset=make_dataset(4),
            args=tiny_args(
                tmp_path / "b", precompute_ref_log_probs=True, loss_type="sigmoid", ref_logps_cache_dir=str(cache)
            ),
        )

    trainer, rows = _counting(with_other_reference)
    assert rows == 4 and len(list(cache.iterdir())) == 2
    assert trainer.ref_model is None  # the explicit reference is dropped once scored


def test_eval_dataset_is_precomputed(tiny_llava, tmp_path):
    from trl import DPOTrainer

    import realign_trl  # noqa: F401

    model, processor = load(tiny_llava)
    trainer = DPOTrainer(
        model=model,
        processing_class=processor,
        train_dataset=make_dataset(4),
        eval_dataset={"a": make_dataset(2, seed=3), "b": make_dataset(2, seed=4)},
        args=tiny_args(
            tmp_path,
            precompute_ref_log_probs=True,
            max_steps=1,
            bf16=False,
            ref_logps_cache_dir=str(tmp_path / "cache"),
        ),
    )
    for split in ("a", "b"):
        assert "ref_visual_logps" in trainer.eval_dataset[split].column_names
    metrics = trainer.evaluate()  # before training the policy is the reference: rewards 0
    assert metrics["eval_a_loss"] == pytest.approx(2 * math.log(2)) == metrics["eval_b_loss"]
    assert metrics["eval_rewards/chosen"] == 0.0
    with pytest.raises(ValueError, match="no precomputed 'ref_chosen_logps' column"):
        trainer.evaluate(make_dataset(2, seed=5))


@pytest.mark.parametrize(
    "overrides,match",
    [
        ({"sync_ref_model": True}, "sync_ref_model=True"),
    ],
)
def test_unsupported_combinations_fail_clearly(tiny_llava, tmp_path, overrides, match):
    with pytest.raises(ValueError, match=match):
        make_trainer(tiny_llava, tmp_path, ref=False, precompute_ref_log_probs=True, **overrides)


def test_iterable_dataset_fails_clearly(tiny_llava, tmp_path):
    dataset = make_dataset(4).to_iterable_dataset()
    with pytest.raises(ValueError, match="map-style dataset"):
        make_trainer(tiny_llava, tmp_path, ref=False, dataset=dataset, precompute_ref_log_probs=True)


def test_full_fine_tuning_reuses_the_lora_runs_file(tiny_llava, tmp_path):
    """The reference of a LoRA run (adapters disabled) IS the base model: a full run from it shares the key."""
    from peft import LoraConfig

    cache = str(tmp_path / "cache")
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    peft_run, rows = _counting(
        lambda: make_trainer(
            tiny_llava,
            tmp_path / "lora",
            ref=False,
            peft_config=lora,
            precompute_ref_log_probs=True,
            ref_logps_cache_dir=cache,
        )
    )
    assert rows == 4
    full, rows = _counting(
        lambda: make_trainer(
            tiny_llava, tmp_path / "full", ref=False, precompute_ref_log_probs=True, ref_logps_cache_dir=cache
        )
    )
    assert rows == 0
    assert list(full.train_dataset["ref_visual_logps"]) == list(peft_run.train_dataset["ref_visual_logps"])


def test_remove_unused_columns_keeps_the_reference_columns(tiny_llava, tmp_path):
    trainer = make_trainer(
        tiny_llava,
        tmp_path,
        ref=False,
        precompute_ref_log_probs=True,
        remove_unused_columns=True,
        ref_logps_cache_dir=str(tmp_path / "cache"),
        max_steps=1,
    )
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["ref_visual_logps"].shape == (2,)
    trainer.train()


SUPPORT_DIR = __import__("pathlib").Path(__file__).parent / "support"


def _env():
    import os

    # this checkout first (not another install of realign in the environment), then the test helpers
    return dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TQDM_DISABLE="1",
        PYTHONPATH=os.pathsep.join([str(SUPPORT_DIR.parent.parent), str(SUPPORT_DIR)]),
    )


def test_realign_trl_dpo_cli_precomputes_and_reuses(tiny_llava, tmp_path):
    """`realign-trl dpo --precompute_ref_log_probs true` (the tiny YAML trains LoRA): the first run writes the side
    file, a second run (as a resume would) finds every row in it."""
    import subprocess
    import sys

    from trl_models import tiny_yaml_config

    tiny_yaml_config(tiny_llava, tmp_path)
    cache = tmp_path / "cache"
    cmd = [
        sys.executable,
        "-c",
        "from realign_trl.cli import main; main()",
        "dpo",
        "--config",
        str(tmp_path / "tiny.yaml"),
        "--precompute_ref_log_probs",
        "true",
        "--ref_logps_cache_dir",
        str(cache),
    ]
    env = dict(_env(), TQDM_DISABLE="")  # the progress bar of the reference pass is part of the contract
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert first.returncode == 0, first.stderr[-4000:]
    assert "Training completed" in first.stdout and "Reference log-probs (train)" in first.stderr
    files = list(cache.glob("ref-logps-*.safetensors"))
    assert len(files) == 1
    written = files[0].stat().st_mtime_ns
    second = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert second.returncode == 0, second.stderr[-4000:]
    assert "Reference log-probs (train)" not in second.stderr  # no reference pass: every row was stored
    assert files[0].stat().st_mtime_ns == written


DIST_SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
import realign_trl
from realign_trl import ref_logps
from trl import DPOTrainer
from trl_models import load, make_dataset, tiny_args
from pathlib import Path
scored = []
original = ref_logps._score
ref_logps._score = lambda trainer, subset, *a, **k: scored.append(len(subset)) or original(trainer, subset, *a, **k)
model, processor = load({model!r})
args = tiny_args(Path({out!r}), max_steps=1, per_device_train_batch_size=1, precompute_ref_log_probs=True,
                 ref_logps_cache_dir={cache!r}, bf16=False)
trainer = DPOTrainer(model=model, args=args, train_dataset=make_dataset(5), processing_class=processor)
rank = trainer.accelerator.process_index
Path({result!r} + f".{{rank}}").write_text(json.dumps({{"scored": sum(scored),
    "columns": {{c: list(trainer.train_dataset[c]) for c in ref_logps.RDPO_COLUMNS}}}}))
trainer.train()
trainer.end()
"""


def test_torchrun_scores_shard_wise_and_gathers(tiny_llava, tmp_path):
    import json

    from trl_models import run_torchrun

    result = str(tmp_path / "result")
    script = tmp_path / "dist.py"
    script.write_text(
        DIST_SCRIPT.format(
            tests=str(SUPPORT_DIR),
            model=str(tiny_llava),
            out=str(tmp_path / "o"),
            cache=str(tmp_path / "cache"),
            result=result,
        )
    )
    proc = run_torchrun(script, _env(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [json.loads(open(f"{result}.{r}").read()) for r in (0, 1)]
    assert sorted(r["scored"] for r in ranks) == [2, 3]  # 5 rows: each rank its share, none twice
    assert ranks[0]["columns"] == ranks[1]["columns"]  # gathered: every rank holds every row's values
    single = make_trainer(
        tiny_llava,
        tmp_path / "single",
        ref=False,
        precompute_ref_log_probs=True,
        bf16=False,
        dataset=make_dataset(5),
        ref_logps_cache_dir=str(tmp_path / "single_cache"),
    )
    for column, values in ranks[0]["columns"].items():
        assert values == pytest.approx(list(single.train_dataset[column]), abs=1e-5), column
    # the file the ranks wrote serves a single process: nothing left to score
    _, rows = _counting(
        lambda: make_trainer(
            tiny_llava,
            tmp_path / "again",
            ref=False,
            precompute_ref_log_probs=True,
            bf16=False,
            dataset=make_dataset(5),
            ref_logps_cache_dir=str(tmp_path / "cache"),
        )
    )
    assert rows == 0


def test_an_explicit_reference_is_released(tiny_llava, tmp_path):
    import gc
    import weakref

    from trl import DPOTrainer

    import realign_trl  # noqa: F401

    model, processor = load(tiny_llava)
    ref, _ = load(tiny_llava)
    alive = weakref.ref(ref)
    trainer = DPOTrainer(
        model=model,
        ref_model=ref,
        processing_class=processor,
        train_dataset=make_dataset(4),
        args=tiny_args(tmp_path, precompute_ref_log_probs=True, ref_logps_cache_dir=str(tmp_path / "cache")),
    )
    del ref
    gc.collect()
    assert trainer.ref_model is None and alive() is None  # nothing holds the reference model any more


def test_a_damaged_side_file_is_recomputed_not_trusted(tiny_llava, tmp_path):
    cache = tmp_path / "cache"
    kwargs = dict(ref=False, precompute_ref_log_probs=True, ref_logps_cache_dir=str(cache))
    first = make_trainer(tiny_llava, tmp_path / "a", **kwargs)
    (path,) = cache.iterdir()
    path.write_bytes(path.read_bytes()[:100])  # torn by hand (the writer itself renames complete files only)
    second, rows = _counting(lambda: make_trainer(tiny_llava, tmp_path / "b", **kwargs))
    assert rows == 4
    assert list(second.train_dataset["ref_chosen_logps"]) == list(first.train_dataset["ref_chosen_logps"])
    assert len(path.read_bytes()) > 100  # rewritten whole
