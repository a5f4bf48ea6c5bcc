"""End-to-end rDPO training with the stock ``trl.DPOTrainer`` on tiny VLMs (CPU, seconds each)."""

from __future__ import annotations

import math

import pytest
import torch

from trl_models import RDPO_METRICS, make_dataset, make_trainer


def _snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def _assert_trained(trainer, before, steps=3):
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == steps
    for log in logs:
        assert math.isfinite(log["loss"])
        for key in RDPO_METRICS:
            assert key in log, key
            assert math.isfinite(log[key]), (key, log[key])
    after = _snapshot(trainer.model)
    assert any(not torch.equal(before[n], after[n]) for n in before), "no parameter changed"


@pytest.mark.parametrize("family", ["tiny_llava", "tiny_qwen2_vl"])
def test_rdpo_trains_three_steps(family, request, tmp_path):
    trainer = make_trainer(request.getfixturevalue(family), tmp_path)
    before = _snapshot(trainer.model)
    trainer.train()
    _assert_trained(trainer, before)
    # the visual pair was really built from a different image
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert any(h["logps/visual_rejected"] != h["logps/chosen"] for h in logs)


def _loss_and_grads(trainer, inputs, visual_weight):
    trainer.args.rdpo_visual_weight = visual_weight
    trainer.model.zero_grad()
    loss = trainer.compute_loss(trainer.model, inputs)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    return loss.detach(), grads


@pytest.mark.parametrize("sharing,rows", [("off", 12), ("on", 8)])
@pytest.mark.parametrize("same_images", [True, False])
def test_visual_term_uses_rejected_images(tiny_llava, tmp_path, same_images, sharing, rows):
    """At step 0 (policy == reference) the visual term is log 2 either way; its gradient vanishes only when
    the rejected image IS the original image, which proves the third sequence is fed ``rejected_images``
    (3B rows, or 2B with the text pair packed)."""
    dataset = make_dataset(4, same_images=same_images)
    trainer = make_trainer(tiny_llava, tmp_path, dataset=dataset, rdpo_prefix_sharing=sharing)
    trainer.model.train()
    batch = trainer.data_collator([dataset[i] for i in range(4)])
    assert batch["input_ids"].size(0) == rows
    inputs = trainer._prepare_inputs(batch)
    full_loss, full_grads = _loss_and_grads(trainer, inputs, 1.0)
    text_loss, text_grads = _loss_and_grads(trainer, inputs, 0.0)
    visual_term = (full_loss - text_loss).item()
    # Same image: chosen and visual rows are the same sequence in the same forward, so the term is log 2 to
    # float precision. Different images: policy and reference agree only up to float noise between the grad
    # and no-grad forwards, so log 2 holds more loosely.
    assert visual_term == pytest.approx(math.log(2), abs=1e-6 if same_images else 1e-3)
    visual_grad = max((full_grads[n] - text_grads[n]).abs().max().item() for n in full_grads)
    text_grad = max(g.abs().max().item() for g in text_grads.values())
    assert text_grad > 1e-4
    metrics = trainer._metrics["train"]
    chosen, visual = metrics["logps/chosen"][-1], metrics["logps/visual_rejected"][-1]
    if same_images:
        assert visual_grad < 1e-6 * max(1.0, text_grad)
        assert visual == pytest.approx(chosen, abs=1e-4)
    else:
        assert visual_grad > 1e-4
        assert visual != pytest.approx(chosen, abs=1e-4)


def test_lora_without_ref_model(tiny_llava, tmp_path):
    from peft import LoraConfig

    peft_config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    trainer = make_trainer(tiny_llava, tmp_path, ref=False, peft_config=peft_config)
    assert trainer.ref_model is None
    before = _snapshot(trainer.model)
    assert all("lora" in n for n in before)
    trainer.train()
    _assert_trained(trainer, before)
    # LoRA B starts at zero, so at step 1 policy == reference (adapters disabled): rewards exactly 0
    first = trainer.state.log_history[0]
    assert first["rewards/chosen"] == 0.0 and first["loss"] == pytest.approx(2 * math.log(2), abs=1e-6)


def test_gradient_accumulation_matches_full_batch(tiny_llava, tmp_path):
    """One SGD step on a batch of 2 == one step accumulated over two micro-batches of 1."""
    updates = {}
    for name, bs, ga in [("full", 2, 1), ("accum", 1, 2)]:
        trainer = make_trainer(
            tiny_llava,
            tmp_path / name,
            dataset=make_dataset(2),
            max_steps=1,
            optim="sgd",
            per_device_train_batch_size=bs,
            gradient_accumulation_steps=ga,
            learning_rate=1.0,
            lr_scheduler_type="constant",
        )
        before = _snapshot(trainer.model)
        trainer.train()
        after = _snapshot(trainer.model)
        updates[name] = torch.cat([(after[n] - before[n]).flatten() for n in sorted(before)])
        assert math.isfinite(trainer.state.log_history[0]["loss"])
    full, accum = updates["full"], updates["accum"]
    assert full.norm() > 0
    # Equal up to float32 noise (the visual gradient is a difference of two nearly equal sequence gradients,
    # so its relative noise is ~1e-3); a missing 1/GA, a double count or a dropped example would be ~100%.
    assert (full - accum).norm() / full.norm() < 1e-2


def test_evaluation_logs_rdpo_metrics(tiny_qwen2_vl, tmp_path):
    from trl import DPOTrainer

    import realign_trl  # noqa: F401
    from trl_models import load, tiny_args

    model, processor = load(tiny_qwen2_vl)
    trainer = DPOTrainer(
        model=model,
        ref_model=load(tiny_qwen2_vl)[0],
        args=tiny_args(tmp_path, eval_strategy="steps", eval_steps=2, max_steps=2),
        train_dataset=make_dataset(4),
        eval_dataset=make_dataset(4, seed=1),
        processing_class=processor,
    )
    trainer.train()
    evals = [h for h in trainer.state.log_history if "eval_loss" in h]
    assert evals
    for key in RDPO_METRICS:
        assert math.isfinite(evals[-1][f"eval_{key}"]), key
    metrics = trainer.evaluate()
    assert math.isfinite(metrics["eval_loss"]) and "eval_rewards/visual_margins" in metrics
