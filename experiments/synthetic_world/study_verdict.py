"""Stage 3b, the verdict phase of SFT: a few hundred steps in which a yes/no batch's verdict and a caption batch weigh
the same, after TRL's SFT.

Why: TRL's SFT loss is the mean over every completion token of a batch. A caption is about 30 tokens, a yes/no
answer 4 (``Y``/``N``, ``es``/``o``, ``.``, ``</s>``) of which only the first decides, so with four questions per
caption the verdict carries under a tenth of the loss, and after 4,000 steps the tied model answers its own training
questions at 0.60-0.70 (EVIDENCE.md, "POPE"). Here each step's loss is the verdict's cross-entropy (yes/no rows, on
the decision token alone) plus the mean caption-token loss of a quarter batch of captions, so that captions keep
being trained and the verdict weighs as much as they do.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Callable, Optional

YES_NO = ("Yes.", "No.")


def prompt_text(prompt: str) -> str:
    """The study's chat template for one image-first user turn, as TRL's SFT and the eval build it."""
    return f"USER: <image>\n{prompt}ASSISTANT: "


def verdict_tokens(processor) -> tuple[int, int]:
    """The token ids of the verdict: the first token of ``Yes.`` and of ``No.``."""
    tok = processor.tokenizer
    return tok.convert_tokens_to_ids("Y"), tok.convert_tokens_to_ids("N")


def pictures(rows: list[dict], images: dict) -> list:
    """Each row's image as RGB, decoded once per training run: ``images`` caches them by path (a ``setdefault``
    with ``Image.open`` as its default would decode the file on every call, cached or not)."""
    from PIL import Image

    for r in rows:
        if r["image"] not in images:
            images[r["image"]] = Image.open(r["image"]).convert("RGB")
    return [images[r["image"]] for r in rows]


def verdict_batch(processor, rows: list[dict], images: dict):
    """(inputs, targets) for yes/no ``rows``: the prompt left-padded, the target the verdict token."""
    import torch

    yes, no = verdict_tokens(processor)
    pics = pictures(rows, images)
    texts = [prompt_text(r["prompt"]) for r in rows]
    inputs = processor(images=pics, text=texts, return_tensors="pt", padding=True, padding_side="left")
    return inputs, torch.tensor([yes if r["answer"] == "Yes." else no for r in rows])


def caption_loss(model, processor, rows: list[dict], images: dict):
    """Mean next-token loss over the caption tokens of ``rows`` (prompt and padding masked), image first."""
    import torch

    prompts = [prompt_text(r["prompt"]) for r in rows]
    texts = [p + r["answer"] + "</s>" for p, r in zip(prompts, rows)]
    pics = pictures(rows, images)
    inputs = processor(images=pics, text=texts, return_tensors="pt", padding=True, padding_side="right")
    prompt_lengths = [len(x) for x in processor(images=pics, text=prompts)["input_ids"]]
    labels = inputs["input_ids"].clone()
    labels[inputs["attention_mask"] == 0] = -100
    for k, n in enumerate(prompt_lengths):
        labels[k, :n] = -100
    logits = model(**inputs).logits[:, :-1]
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1))


def train_balanced(
    model,
    processor,
    verdict_rows: list[dict],
    caption_rows: list[dict],
    *,
    steps: int,
    batch: int,
    lr: float,
    batch_of: Optional[Callable] = None,
    every: int = 0,
    report: Optional[Callable[[int, float], None]] = None,
    align: float = 0.0,
) -> list[dict]:
    """``steps`` AdamW steps (warm-up 100, linear decay) of verdict loss on ``batch`` yes/no rows plus, when
    ``caption_rows``, caption loss on ``batch // 4`` of them; ``report(step, loss)`` every ``every`` steps. Returns
    the loss curve. ``batch_of(rows) -> (inputs, targets)`` builds the yes/no batch (default: :func:`verdict_batch`).
    ``align`` weighs :func:`align_loss` on the yes/no batch's images (0: off)."""
    import torch
    from study_align import align_loss, object_word_ids

    images: dict = {}
    word_ids = object_word_ids(processor) if align else []
    batch_of = batch_of or (lambda rs: verdict_batch(processor, rs, images))
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: min(1.0, (s + 1) / 100) * max(0.0, 1 - s / steps))
    model.train()
    curve = []
    for step in range(1, steps + 1):
        picked = random.Random(step).sample(verdict_rows, batch)
        inputs, target = batch_of(picked)
        loss = torch.nn.functional.cross_entropy(model(**inputs).logits[:, -1], target)
        if align:
            loss = loss + align * align_loss(model, processor, picked, images, word_ids)
        if caption_rows:
            picked = random.Random(-step).sample(caption_rows, max(1, batch // 4))
            loss = loss + caption_loss(model, processor, picked, images)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        sched.step()
        optim.zero_grad()
        if every and (step % every == 0 or step == steps):
            curve.append({"step": step, "loss": round(loss.item(), 4)})
            if report is not None:
                report(step, loss.item())
    return curve


def train_verdict(out: Path, sft_model: str, train_root: Path, sizes, seed: int) -> dict:
    """Continue ``sft_model`` for ``sizes.verdict_steps`` balanced steps on its own SFT rows; save it (with its
    processor) to ``out/model``; return the loss curve."""
    import torch
    from study_sft import sft_rows
    from transformers import AutoModelForImageTextToText, AutoProcessor

    torch.manual_seed(seed)
    rows = sft_rows(train_root, sizes, seed)
    processor = AutoProcessor.from_pretrained(sft_model)
    model = AutoModelForImageTextToText.from_pretrained(sft_model)
    started = time.time()
    verdicts = [r for r in rows if r["answer"] in YES_NO]
    answers = [r for r in rows if r["answer"] not in YES_NO]
    if not sizes.sft_steps:
        # after TRL's SFT the model already finishes "Yes." and "No."; from the base model it must also learn that,
        # or greedy decoding writes a caption after the verdict token. As many whole yes/no answers as captions join
        # the answer rows: all of the rows would leave one caption in five, too few for the captions to be learned
        answers += random.Random(seed).sample(verdicts, min(len(answers), len(verdicts)))
    curve = train_balanced(
        model,
        processor,
        verdicts,
        answers,
        steps=sizes.verdict_steps,
        batch=sizes.sft_batch,
        lr=sizes.verdict_lr,
        every=max(1, min(50, sizes.verdict_steps // 4)),
        align=sizes.align_weight,
    )
    model.save_pretrained(out / "model")
    processor.save_pretrained(out / "model")
    return {
        "model": str(out / "model"),
        "steps": sizes.verdict_steps,
        "curve": curve,
        "train_seconds": round(time.time() - started, 1),
    }
