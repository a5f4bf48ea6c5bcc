"""``rdpo_sft_weight``: Re-Align's SFT term, the mean token NLL of the chosen answer on the original image."""

from __future__ import annotations

import pytest
import torch

from trl_models import make_dataset, make_trainer


def _chosen_nll_by_hand(model, batch, b):
    """Mean NLL over the chosen tokens of the batch, from the model's plain logits (no fused head)."""
    rows = {k: batch[k][:b] for k in ("input_ids", "attention_mask")}
    logits = model(**rows, pixel_values=batch["pixel_values"][:b]).logits[:, :-1]
    targets = batch["input_ids"][:b, 1:]
    mask = batch["completion_mask"][:b, 1:].bool()
    token_logps = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets[..., None])[..., 0]
    return -token_logps[mask].mean()


@pytest.mark.parametrize("sharing", ["off", "on"])
def test_sft_weight_adds_exactly_the_chosen_nll(tiny_llava, tmp_path, sharing):
    dataset = make_dataset(3)
    trainer = make_trainer(tiny_llava, tmp_path, dataset=dataset, rdpo_prefix_sharing=sharing, bf16=False)
    examples = [dataset[i] for i in range(3)]
    inputs = trainer._prepare_inputs(trainer.data_collator(examples))
    trainer.model.train()
    losses = {}
    for weight in (0.0, 0.7):
        trainer.args.rdpo_sft_weight = weight
        with torch.no_grad():
            losses[weight] = trainer.compute_loss(trainer.model, inputs)
    trainer.data_collator.prefix_sharing = False  # the hand computation reads the plain [prompt | chosen] rows
    with torch.no_grad():
        nll = _chosen_nll_by_hand(trainer.model, trainer.data_collator(examples), 3)
    assert nll > 1.0  # a random tiny model: about log(vocab) per token
    assert (losses[0.7] - losses[0.0]).item() == pytest.approx(0.7 * nll.item(), abs=1e-5)
    assert trainer._metrics["train"]["loss/sft"][-1] == pytest.approx(nll.item(), abs=1e-5)


def test_zero_weight_is_todays_loss_and_logs_nothing(tiny_llava, tmp_path):
    """Default 0: the same losses, bit for bit, as a plain DPOConfig (which has no sft knob); no loss/sft metric."""
    from trl import DPOConfig, DPOTrainer

    from trl_models import load

    common = dict(
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        per_device_train_batch_size=2,
        max_steps=2,
        learning_rate=1e-2,
        logging_steps=1,
        loss_type="rdpo",
        max_length=None,
        seed=0,
        dataloader_num_workers=0,
        gradient_checkpointing=False,
    )
    rdpo = make_trainer(tiny_llava, tmp_path / "rdpo", max_steps=2)
    model, processor = load(tiny_llava)
    plain = DPOTrainer(
        model=model,
        ref_model=load(tiny_llava)[0],
        processing_class=processor,
        args=DPOConfig(output_dir=str(tmp_path / "plain"), **common),
        train_dataset=make_dataset(4),
    )
    runs = {}
    for name, trainer in (("rdpo", rdpo), ("plain", plain)):
        trainer.train()
        runs[name] = [h for h in trainer.state.log_history if "loss" in h]
    assert [h["loss"] for h in runs["rdpo"]] == [h["loss"] for h in runs["plain"]]
    assert all("loss/sft" not in h for h in runs["rdpo"])


def test_sft_weight_trains_and_is_logged(tiny_llava, tmp_path):
    trainer = make_trainer(tiny_llava, tmp_path, rdpo_sft_weight=1.0, max_steps=3)
    trainer.train()
    sft = [h["loss/sft"] for h in trainer.state.log_history if "loss" in h]
    assert len(sft) == 3 and sft[-1] < sft[0]  # the chosen answers get likelier
