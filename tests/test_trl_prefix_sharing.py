"""Prefix sharing: the packed 2B-row layout scores exactly what the 3B-row layout scores.

The reference is TRL's own way of scoring a completion (labels = input ids outside the completion masked,
one row per sequence); the packed rows go through the public pieces of ``realign_trl.prefix_sharing``. Both run
the same real tiny model, so any difference in mask, positions, truncation or image order shows up.
"""

from __future__ import annotations

import logging
import math

import pytest
import torch

from realign_trl import prefix_sharing
from trl_models import load, make_dataset, make_rows, make_trainer, tiny_args

ATOL = 1e-4


@pytest.fixture(scope="module")
def tiny_llava_next(tiny_dir, tiny_llava):
    """A tiny ``LlavaNextForConditionalGeneration``: anyres tiling, so the image-token count follows the image size."""
    out = tiny_dir / "llava_next"
    if (out / "config.json").exists():
        return out
    from transformers import (
        AutoProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessor,
        LlavaNextProcessor,
    )

    from realign_data.testing.tiny_models import LLAVA_CHAT_TEMPLATE

    tokenizer = AutoProcessor.from_pretrained(tiny_llava).tokenizer
    pinpoints = [[16, 32], [32, 16], [32, 32]]
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=16,
        patch_size=8,
        projection_dim=32,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    config = LlavaNextConfig(
        vision_config=vision,
        text_config=text,
        image_grid_pinpoints=pinpoints,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    torch.manual_seed(0)
    model = LlavaNextForConditionalGeneration(config)
    with torch.no_grad():
        model.model.image_newline.normal_(0.0, 0.02)
    image_processor = LlavaNextImageProcessor(
        size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16}, image_grid_pinpoints=pinpoints
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=LLAVA_CHAT_TEMPLATE,
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def tiny_llava_mistral(tiny_dir, tiny_llava):
    """Tiny LLaVA on a Mistral language model whose sliding window (16) is shorter than the sequences."""
    out = tiny_dir / "llava_mistral"
    if (out / "config.json").exists():
        return out
    from transformers import AutoConfig, AutoProcessor, LlavaForConditionalGeneration, MistralConfig

    config = AutoConfig.from_pretrained(tiny_llava)
    text = config.text_config
    config.text_config = MistralConfig(
        vocab_size=text.vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
        sliding_window=16,
        bos_token_id=text.bos_token_id,
        eos_token_id=text.eos_token_id,
        pad_token_id=text.pad_token_id,
    )
    torch.manual_seed(0)
    LlavaForConditionalGeneration(config).save_pretrained(out)
    AutoProcessor.from_pretrained(tiny_llava).save_pretrained(out)
    return out


def _examples(family: str, n: int = 4):
    """Prompts and answers of different lengths (padding on both sides); LLaVA-NeXT's rejected images have another
    aspect ratio, so the two prompts of an example differ in length too."""
    rows = make_rows(n, size=(32, 16) if family == "tiny_llava_next" else (32, 32))
    if family == "tiny_llava_next":
        rows["rejected_images"] = make_rows(n, seed=1, size=(16, 32))["images"]
    return [{k: v[i] for k, v in rows.items()} for i in range(n)]


def _three_row_logps(model, batch):
    """TRL's scoring of [chosen; rejected; chosen on rejected image]: completion tokens, one row each."""
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    out = model(
        **{k: v for k, v in batch.items() if k != "completion_mask"}, labels=labels, fused_lm_head=True, use_cache=False
    )
    return torch.stack(out.log_probs.sum(dim=1).chunk(3))


def _packed_logps(model, batch):
    gemma = model.config.model_type == "gemma3"
    masks = prefix_sharing.attention_masks(
        batch["rdpo_segments"],
        batch["position_ids"],
        torch.float32,
        model.config,
        batch.get("token_type_ids") if gemma else None,
    )
    kwargs = {
        k: v for k, v in batch.items() if k not in ("rdpo_segments", "rdpo_targets", "attention_mask", "token_type_ids")
    }
    out = model(**kwargs, attention_mask=masks, shift_labels=batch["rdpo_targets"], fused_lm_head=True, use_cache=False)
    of = prefix_sharing.target_segments(batch["rdpo_segments"], batch["rdpo_targets"])
    b = batch["input_ids"].size(0) // 2
    return torch.stack(
        [
            prefix_sharing.segment_logps(out.log_probs[:b], of[:b], prefix_sharing.CHOSEN),
            prefix_sharing.segment_logps(out.log_probs[:b], of[:b], prefix_sharing.REJECTED),
            prefix_sharing.segment_logps(out.log_probs[b:], of[b:], prefix_sharing.CHOSEN),
        ]
    )


@pytest.mark.parametrize("family", ["tiny_llava", "tiny_llava_next", "tiny_llava_mistral", "tiny_gemma3"])
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packed_log_probs_and_gradients_equal_three_rows(family, attention, request, tmp_path):
    trainer = make_trainer(request.getfixturevalue(family), tmp_path, ref=False)
    assert trainer.data_collator.prefix_sharing  # auto: on for this family
    model = trainer.model
    model.set_attn_implementation(attention)
    if family == "tiny_gemma3":  # a window shorter than the rows, so the sliding layers are really bounded
        model.config.get_text_config().sliding_window = 16
    examples = _examples(family)
    collator = trainer.data_collator
    cut = None
    for truncate in (False, True):  # untruncated, then cut inside the answers at a different point per row
        results = {}
        for share in (False, True):
            collator.prefix_sharing, collator.max_length = share, cut if truncate else None
            batch = trainer._prepare_inputs(collator(examples))
            if not share and not truncate:
                prompt = batch["attention_mask"] - batch["completion_mask"]
                cut = int(prompt.sum(1).max()) + 3
                full_answers = batch["completion_mask"].sum()
                if family == "tiny_llava_next":  # anyres: the two images of an example give different prompts
                    assert not torch.equal(prompt.sum(1)[:4], prompt.sum(1)[8:])
            if not share and truncate:
                assert 0 < batch["completion_mask"].sum() < full_answers
            model.zero_grad()
            logps = (_packed_logps if share else _three_row_logps)(model, batch)
            (logps * torch.tensor([[1.0], [-0.5], [-0.5]])).sum().backward()
            grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
            results[share] = logps.detach(), grads, batch["input_ids"].size(0)
        (three, g3, rows3), (packed, g2, rows2) = results[False], results[True]
        assert (rows3, rows2) == (12, 8)  # 2B rows instead of 3B
        torch.testing.assert_close(packed, three, rtol=0, atol=ATOL)
        assert (three < 0).all()  # real answers were scored
        torch.testing.assert_close(g2, g3, rtol=0, atol=ATOL)
        assert g3.abs().max() > 1e-3


@pytest.fixture(scope="module")
def demo_dataset(tmp_path_factory, sample_corpus, tiny_kb):
    """A dual-preference dataset built the way ``realign-data demo`` builds one (synthetic COCO, annotation filler)."""
    import datasets

    from realign_data.building.builder import build
    from realign_data.building.config import BuildConfig

    out = tmp_path_factory.mktemp("demo") / "dataset"
    build(
        BuildConfig(
            index=str(tiny_kb),
            coco_root=str(sample_corpus),
            out=str(out),
            gate="lexical",
            top_k=3,
            max_samples=12,
            progress=False,
        )
    )
    return datasets.load_from_disk(str(out))


def test_same_loss_curve_with_and_without_sharing(tiny_llava, demo_dataset, tmp_path, caplog):
    """20 optimizer steps (batch 2, gradient accumulation 2, fp32) on the demo-like dataset: the same losses and
    log-probs either way, to float noise (bf16 autocast, TRL's CPU default, would add bf16 noise to both)."""
    curves = {}
    for mode in ("off", "on"):
        with caplog.at_level(logging.INFO, logger="realign_trl"):
            trainer = make_trainer(
                tiny_llava,
                tmp_path / mode,
                dataset=demo_dataset,
                rdpo_prefix_sharing=mode,
                max_steps=20,
                gradient_accumulation_steps=2,
                learning_rate=1e-3,
                bf16=False,
            )
        assert f"prefix sharing {mode}" in caplog.text
        trainer.train()
        logs = [h for h in trainer.state.log_history if "loss" in h]
        curves[mode] = [(h["loss"], h["logps/rejected"], h["logps/visual_rejected"]) for h in logs]
    assert len(curves["on"]) == 20
    assert curves["on"][-1][0] < curves["on"][0][0] - 0.05  # it trained
    for step, (off, on) in enumerate(zip(curves["off"], curves["on"])):
        assert on == pytest.approx(off, rel=1e-5, abs=1e-5), step


@pytest.fixture(scope="module")
def tiny_llava_qwen2(tiny_dir, tiny_llava):
    """Tiny LLaVA on a Qwen2 language model: a backbone the packed layout is not checked exact for."""
    out = tiny_dir / "llava_qwen2"
    if (out / "config.json").exists():
        return out
    from transformers import AutoConfig, AutoProcessor, LlavaForConditionalGeneration, Qwen2Config

    config = AutoConfig.from_pretrained(tiny_llava)
    text = config.text_config
    config.text_config = Qwen2Config(
        vocab_size=text.vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
        bos_token_id=text.bos_token_id,
        eos_token_id=text.eos_token_id,
        pad_token_id=text.pad_token_id,
    )
    torch.manual_seed(0)
    LlavaForConditionalGeneration(config).save_pretrained(out)
    AutoProcessor.from_pretrained(tiny_llava).save_pretrained(out)
    return out


def test_falls_back_where_packing_is_not_exact(tiny_llava_qwen2, tmp_path, caplog):
    """A model the packed layout is not checked exact for: auto keeps the 3B-row path and says why; on refuses."""
    with caplog.at_level(logging.INFO, logger="realign_trl"):
        trainer = make_trainer(tiny_llava_qwen2, tmp_path, ref=False, max_steps=1)
    line = next(r.getMessage() for r in caplog.records if "prefix sharing" in r.getMessage())
    assert line.startswith("rDPO: prefix sharing off, 3B rows per batch") and "'qwen2' language model" in line
    assert trainer.data_collator([trainer.train_dataset[i] for i in range(2)])["input_ids"].size(0) == 6
    trainer.train()
    assert math.isfinite(trainer.state.log_history[0]["loss"])
    with pytest.raises(ValueError, match=r"rdpo_prefix_sharing=on, but llava with a 'qwen2' language model"):
        make_trainer(tiny_llava_qwen2, tmp_path, ref=False, rdpo_prefix_sharing="on")


def test_qwen_vl_family_packs(tiny_qwen2_vl, tmp_path, caplog):
    """Qwen2-VL's multimodal RoPE: auto packs (exactness: tests/test_trl_qwen.py), and training runs packed."""
    with caplog.at_level(logging.INFO, logger="realign_trl"):
        trainer = make_trainer(tiny_qwen2_vl, tmp_path, ref=False, max_steps=1)
    assert "rDPO: prefix sharing on, 2B rows per batch (qwen2_vl with sdpa attention" in caplog.text
    assert trainer.data_collator([trainer.train_dataset[i] for i in range(2)])["input_ids"].size(0) == 4
    trainer.train()
    assert math.isfinite(trainer.state.log_history[0]["loss"])


def test_attention_without_4d_masks_falls_back(tiny_llava, tmp_path):
    config = load(tiny_llava)[0].config
    assert prefix_sharing.decide(config, "auto") == (True, "llava with sdpa attention takes a packed 4D mask exactly")
    config.get_text_config()._attn_implementation = "flash_attention_2"
    share, why = prefix_sharing.decide(config, "auto")
    assert not share and "flash_attention_2" in why
    assert prefix_sharing.decide(config, "off") == (False, "rdpo_prefix_sharing=off")
    with pytest.raises(ValueError, match="is not a mode"):
        tiny_args(tmp_path, rdpo_prefix_sharing="always")


def test_accumulated_loss_gradient_equals_unshared(tiny_llava, tmp_path):
    """One SGD step (lr 1) accumulated over two micro-batches of 2: the update IS the loss gradient; same either way."""
    updates = {}
    for mode in ("off", "on"):
        trainer = make_trainer(
            tiny_llava,
            tmp_path / mode,
            dataset=make_dataset(4),
            rdpo_prefix_sharing=mode,
            max_steps=1,
            optim="sgd",
            learning_rate=1.0,
            lr_scheduler_type="constant",
            gradient_accumulation_steps=2,
            rdpo_anchor_weight=0.5,
            bf16=False,
        )  # fp32
        before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
        trainer.train()
        updates[mode] = torch.cat([(p.detach() - before[n]).flatten() for n, p in trainer.model.named_parameters()])
    assert updates["on"].abs().max() > 1e-3
    torch.testing.assert_close(updates["on"], updates["off"], rtol=0, atol=ATOL)
