"""The offline substrate: every tiny stand-in loads through the public API a real checkpoint uses."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image


def _image(seed: int = 0, size=(48, 64)) -> Image.Image:
    return Image.fromarray(np.random.RandomState(seed).randint(0, 255, (*size, 3), dtype=np.uint8))


PROMPT = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe this image."}]}]


@pytest.mark.parametrize(
    "fixture, cls_name",
    [
        ("tiny_llava", "LlavaForConditionalGeneration"),
        ("tiny_qwen2_vl", "Qwen2VLForConditionalGeneration"),
        ("tiny_qwen2_5_vl", "Qwen2_5_VLForConditionalGeneration"),
        ("tiny_qwen3_vl", "Qwen3VLForConditionalGeneration"),
        ("tiny_gemma3", "Gemma3ForConditionalGeneration"),
    ],
)
def test_tiny_vlm_loads_with_auto_classes_and_runs(request, fixture, cls_name):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = request.getfixturevalue(fixture)
    model = AutoModelForImageTextToText.from_pretrained(path)
    processor = AutoProcessor.from_pretrained(path)
    assert type(model).__name__ == cls_name
    text = processor.apply_chat_template(PROMPT, add_generation_prompt=True)
    inputs = processor(images=[_image()], text=[text], return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape[:2] == inputs["input_ids"].shape and torch.isfinite(logits).all()
    generated = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert generated.shape[1] == inputs["input_ids"].shape[1] + 4


def test_tiny_sentence_transformer(tiny_sentence_transformer):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(tiny_sentence_transformer), device="cpu")
    emb = model.encode(["a red apple on the table", "two blue cars"], normalize_embeddings=True)
    assert emb.shape == (2, 32)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(emb[0], emb[1])


def test_tiny_open_clip_by_name_and_checkpoint(tiny_open_clip):
    import open_clip

    name, checkpoint = tiny_open_clip
    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=str(checkpoint))
    tokenizer = open_clip.get_tokenizer(name)
    with torch.no_grad():
        image = model.encode_image(preprocess(_image()).unsqueeze(0))
        text = model.encode_text(tokenizer(["a red apple"]))
    assert image.shape == text.shape == (1, 32)
    # the saved weights are the ones loaded back (not a fresh random init)
    again, _, _ = open_clip.create_model_and_transforms(name, pretrained=str(checkpoint))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_stock_trl_dpo_trains_two_steps_on_tiny_llava(tiny_llava, tmp_path):
    """Proves the substrate carries TRL's vision DPO: the foundation for the rDPO plugin."""
    from datasets import Dataset
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl import DPOConfig, DPOTrainer

    rows = [
        {
            "images": [_image(i)],
            "prompt": PROMPT,
            "chosen": [{"role": "assistant", "content": [{"type": "text", "text": "A red apple next to a cup."}]}],
            "rejected": [{"role": "assistant", "content": [{"type": "text", "text": "Two blue cars on a road."}]}],
        }
        for i in range(4)
    ]
    model = AutoModelForImageTextToText.from_pretrained(tiny_llava)
    before = {k: v.clone() for k, v in model.named_parameters()}
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
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=AutoProcessor.from_pretrained(tiny_llava),
    )
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 2
    assert logs[0]["loss"] == pytest.approx(np.log(2), abs=1e-4)  # policy == reference at step 0
    assert all(np.isfinite(h["loss"]) for h in logs)
    assert any(not torch.equal(before[k], v) for k, v in model.named_parameters())
