"""Stage 3a, the alignment of the base model's image tokens with its words, before SFT (``align_steps``), and the
same loss beside the verdict phase's (``align_weight``).

Why: a real LLaVA's projected image tokens land near the input embeddings of the words for what they show, because
its projector is pretrained on captions against a pretrained language model. The study's language model starts
random, so nothing puts a "dog" image token near the word " dog", and a question's word has nothing to find among
the image tokens: the model captions well and answers its own yes/no training questions near chance (EVIDENCE.md,
"POPE"; with the image's objects given as *words*, the same questions are learned in a few hundred steps). This
loss is the stand-in for that pretraining: for each category, the best cosine between one of the image's tokens
and the category word's embedding is read as a present/absent logit. The word embeddings are detached, so only the
vision tower and the projector move; the language model keeps learning its words from the text alone.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

# cosine 0.5 is the decision boundary; the scale makes a cosine of 0.8 or 0.2 a confident logit (+-3)
ALIGN_SCALE = 10.0


def object_word_ids(processor) -> list[int]:
    """The token id of each category's name as a question writes it (" dog"), in ``CATEGORIES`` order."""
    from realign_data.testing.sample import CATEGORIES

    ids = []
    for c in CATEGORIES:
        pieces = processor.tokenizer(f" {c.name}", add_special_tokens=False)["input_ids"]
        if len(pieces) != 1:
            raise ValueError(f"the category {c.name!r} is {len(pieces)} tokens; the alignment loss needs one")
        ids.append(pieces[0])
    return ids


def align_logits(model, processor, rows: list[dict], images: dict, word_ids: list[int]):
    """(rows, categories) logits: the best cosine between one of a row image's projected tokens and each category
    word's detached input embedding, scaled around 0.5."""
    import torch
    from study_verdict import pictures

    pixel_values = processor.image_processor(pictures(rows, images), return_tensors="pt")["pixel_values"]
    tokens = torch.stack(list(model.model.get_image_features(pixel_values=pixel_values).pooler_output))
    words = model.get_input_embeddings().weight[word_ids].detach()
    cos = torch.nn.functional.normalize(tokens, dim=-1) @ torch.nn.functional.normalize(words, dim=-1).T
    return ALIGN_SCALE * (cos.amax(1) - 0.5)


def present_targets(rows: list[dict]):
    """(rows, categories) 0/1: which categories each row's image shows (its ``present`` list)."""
    import torch

    from realign_data.testing.sample import CATEGORIES

    return torch.tensor([[c.name in r["present"] for c in CATEGORIES] for r in rows], dtype=torch.float32)


def align_loss(model, processor, rows: list[dict], images: dict, word_ids: list[int]):
    """Binary cross-entropy of :func:`align_logits` against the categories each row's image shows."""
    import torch

    logits = align_logits(model, processor, rows, images, word_ids)
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, present_targets(rows).to(logits.dtype))


def align_base(out: Path, base: Path, train_root: Path, sizes, seed: int) -> dict:
    """``sizes.align_steps`` AdamW steps (lr ``sizes.sft_lr``, batch ``sizes.sft_batch``) of :func:`align_loss`
    on the training images, from the base model at ``base``; saved to ``out``. Returns the curve and, on 200
    training images kept out of it, how often the thresholded logits say rightly whether a category is present."""
    import torch
    from study_sft import sft_rows
    from study_verdict import YES_NO
    from transformers import AutoModelForImageTextToText, AutoProcessor

    torch.manual_seed(seed)
    processor = AutoProcessor.from_pretrained(base)
    model = AutoModelForImageTextToText.from_pretrained(base)
    rows = [r for r in sft_rows(train_root, sizes, seed) if r["answer"] not in YES_NO]  # one per image
    random.Random(seed).shuffle(rows)
    kept_out = min(200, len(rows) // 5)
    held, rows = rows[:kept_out], rows[kept_out:]
    word_ids, images = object_word_ids(processor), {}
    optim = torch.optim.AdamW(model.parameters(), lr=sizes.sft_lr, weight_decay=0.0)
    started, curve = time.time(), []
    model.train()
    every = max(1, min(50, sizes.align_steps // 4))
    for step in range(1, sizes.align_steps + 1):
        loss = align_loss(
            model, processor, random.Random(step).sample(rows, min(sizes.sft_batch, len(rows))), images, word_ids
        )
        loss.backward()
        optim.step()
        optim.zero_grad()
        if step % every == 0 or step == sizes.align_steps:
            curve.append({"step": step, "loss": round(loss.item(), 4)})
    model.eval()
    with torch.no_grad():
        said = align_logits(model, processor, held, images, word_ids) > 0
    accuracy = (said == present_targets(held).bool()).float().mean().item()
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return {
        "steps": sizes.align_steps,
        "curve": curve,
        "heldout_accuracy": round(accuracy, 4),
        "train_seconds": round(time.time() - started, 1),
    }
