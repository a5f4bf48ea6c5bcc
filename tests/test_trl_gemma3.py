"""rDPO on a third VLM family, tiny Gemma 3, whose processor emits ``token_type_ids`` (1 on image tokens).

Gemma 3 attends bidirectionally inside each image block, read off ``token_type_ids``; a misaligned or dropped
tensor would silently change the attention pattern. The collator's Gemma branch is checked here against TRL's own
vision collator, then stock DPO and rDPO train on the model.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_trl_training import _assert_trained, _loss_and_grads, _snapshot

from trl_models import load, make_dataset, make_trainer


def test_collator_token_type_ids_follow_image_tokens(tiny_gemma3, tmp_path):
    from trl.trainer.dpo_trainer import DataCollatorForVisionPreference

    trainer = make_trainer(tiny_gemma3, tmp_path, ref=False, rdpo_prefix_sharing="off")  # the 3B-row layout
    examples = [trainer.train_dataset[i] for i in range(3)]
    batch = trainer.data_collator(examples)
    ids, tt = batch["input_ids"], batch["token_type_ids"]
    assert ids.shape == tt.shape == batch["attention_mask"].shape and ids.size(0) == 9
    image_token_id = trainer.model.config.image_token_id
    assert torch.equal(tt == 1, ids == image_token_id)  # aligned through padding and flush_left
    assert (tt.sum(1) == trainer.model.config.mm_tokens_per_image).all()
    # the visual rows (chosen | rejected image) carry the same tokens as the chosen rows, other pixels
    assert torch.equal(ids[6:], ids[:3]) and torch.equal(tt[6:], tt[:3])
    assert not torch.equal(batch["pixel_values"][6:], batch["pixel_values"][:3])
    # the first 2B rows are exactly what TRL's own vision collator builds
    stock = DataCollatorForVisionPreference(processor=trainer.processing_class)(examples)
    for key in ("input_ids", "attention_mask", "completion_mask", "token_type_ids", "pixel_values"):
        assert torch.equal(batch[key][:6], stock[key]), key


def test_stock_dpo_sigmoid_trains_two_steps(tiny_gemma3, tmp_path):
    from trl import DPOConfig, DPOTrainer

    model, processor = load(tiny_gemma3)
    before = _snapshot(model)
    args = DPOConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=2,
        max_steps=2,
        learning_rate=1e-3,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        use_cpu=True,
        loss_type="sigmoid",
    )
    trainer = DPOTrainer(
        model=model, args=args, train_dataset=make_dataset(4, rejected_column=False), processing_class=processor
    )
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 2 and all(math.isfinite(h["loss"]) for h in logs)
    assert logs[0]["loss"] == pytest.approx(np.log(2), abs=1e-4)  # policy == reference at step 0
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters() if n in before)


def test_rdpo_trains_three_steps(tiny_gemma3, tmp_path):
    trainer = make_trainer(tiny_gemma3, tmp_path)
    before = _snapshot(trainer.model)
    trainer.train()
    _assert_trained(trainer, before)  # finite loss, every rdpo metric logged and finite, parameters moved
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert any(h["logps/visual_rejected"] != h["logps/chosen"] for h in logs)


def test_same_rejected_image_gives_log2_visual_term_without_gradient(tiny_gemma3, tmp_path):
    """Retrieved image == original image: at step 0 the visual term is exactly log 2 and contributes no gradient."""
    dataset = make_dataset(4, same_images=True)
    trainer = make_trainer(tiny_gemma3, tmp_path, dataset=dataset)
    trainer.model.train()
    inputs = trainer._prepare_inputs(trainer.data_collator([dataset[i] for i in range(4)]))
    full_loss, full_grads = _loss_and_grads(trainer, inputs, 1.0)
    text_loss, text_grads = _loss_and_grads(trainer, inputs, 0.0)
    assert (full_loss - text_loss).item() == pytest.approx(math.log(2), abs=1e-6)
    text_grad = max(g.abs().max().item() for g in text_grads.values())
    visual_grad = max((full_grads[n] - text_grads[n]).abs().max().item() for n in full_grads)
    assert text_grad > 1e-4 and visual_grad < 1e-6 * max(1.0, text_grad)
    metrics = trainer._metrics["train"]
    assert metrics["logps/visual_rejected"][-1] == pytest.approx(metrics["logps/chosen"][-1], abs=1e-4)
