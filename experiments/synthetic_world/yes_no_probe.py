"""Diagnostic for issue #22 part 1: can the study's tiny LLaVA learn POPE's "Is there a X in the image?" at all?

Trains on the yes/no rows of the study's SFT data only, with the loss on the Yes/No decision token alone, and
reports held-out accuracy on 256 training-world questions every 250 steps. Levers that separate the suspects:

    python experiments/synthetic_world/yes_no_probe.py --out /tmp/ynp                      # as the study asks
    python experiments/synthetic_world/yes_no_probe.py --out /tmp/ynp --order question-first # image after the question
    python experiments/synthetic_world/yes_no_probe.py --out /tmp/ynp --features oracle      # no vision tower
    python experiments/synthetic_world/yes_no_probe.py --out /tmp/ynp --features words       # objects as words
    python experiments/synthetic_world/yes_no_probe.py --out /tmp/ynp --captions [--tie]     # with the captions
    python experiments/synthetic_world/yes_no_probe.py --out /tmp/ynp --clip-dir RUN/seed-0/clip  # trained tower
    python experiments/synthetic_world/yes_no_probe.py --out /tmp/ynp --seed 1 --start RUN/seed-1/sft/model \
        --captions --save /tmp/more  # more verdict weight after the study's SFT (then: eval_model.py /tmp/more RUN/seed-1)

``--features words`` is the control: no image, the image's objects as words before the question; if that learns
and the image does not, the language model can look a word up among words but not among image tokens.
``--features oracle`` replaces the vision tower with each 8x8 patch's mean colour through a small MLP (in this world
a category is a colour, so the features certainly say what is where): if that does not learn either, the language
model's side is the bottleneck, not vision. ``--probe`` instead fits a linear probe (scikit-learn) on the vision
tower's pooled features for "category c is present", as the untrained tower sees them.
"""

from __future__ import annotations

import random
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import typer


def main(
    out: Path = typer.Option(..., help="Work folder (the world and the base model are drawn here once)."),
    order: str = typer.Option("image-first", help="image-first (as the eval asks) or question-first."),
    features: str = typer.Option(
        "vision",
        help="vision (the tiny CLIP tower), oracle (patch colours) or words "
        "(no image: the image's objects listed as words before the question).",
    ),
    steps: int = typer.Option(2000),
    batch: int = typer.Option(32),
    lr: float = typer.Option(1e-3),
    image_size: int = typer.Option(64),
    hidden_size: int = typer.Option(256),
    num_layers: int = typer.Option(4),
    vision_hidden_size: int = typer.Option(64),
    seed: int = typer.Option(0),
    captions: bool = typer.Option(
        False,
        help="Train on the captions too, as the study's SFT does (loss on every "
        "caption token; each batch 1/5 captions).",
    ),
    tie: bool = typer.Option(
        False,
        help="Tie the language model's input and output embeddings, so that what "
        "captions teach about an object word's output also shapes its input.",
    ),
    probe: bool = typer.Option(False, help="Only the linear probe of the untrained vision features."),
    clip_dir: Path = typer.Option(
        None,
        help="The study's trained encoder (a run's seed-N/clip, same seed and "
        "image size): the base model's vision tower starts from it, as in the study.",
    ),
    eval_every: int = typer.Option(250, help="Held-out accuracy every this many steps."),
    start: Path = typer.Option(
        None,
        help="Continue from a finished model (a run's seed-N/sft/model, same seed) instead of a fresh base: does "
        "more verdict weight finish what the study's SFT started? Its accuracy before training is printed first.",
    ),
    save: Path = typer.Option(None, help="Save the trained model (and processor) here, for the study's evaluation."),
    freeze_vision: bool = typer.Option(
        False, help="Keep the vision tower frozen, as LLaVA's training does (only the projector and LM learn)."
    ),
    align: float = typer.Option(
        0.0,
        help="Weight of the alignment loss (study_align.align_loss): image tokens pulled towards the embeddings "
        "of the words naming what the image shows, as a pretrained LLaVA's are. 0: off.",
    ),
) -> None:
    import torch
    from study_sft import build_base_model, sft_rows
    from study_sizes import FULL
    from study_verdict import YES_NO, pictures, train_balanced, verdict_batch, verdict_tokens
    from study_world import corpus_roots, make_world
    from transformers import AutoModelForImageTextToText, AutoProcessor

    torch.manual_seed(seed)
    sizes = replace(
        FULL,
        image_size=image_size,
        hidden_size=hidden_size,
        num_layers=num_layers,
        vision_hidden_size=vision_hidden_size,
    )
    world = out / f"world-{image_size}-{seed}"
    if not (world / "train").exists():
        make_world(world, sizes, seed)
    train, _ = corpus_roots(world)
    base = (
        out / f"base-{image_size}-{hidden_size}-{num_layers}-{vision_hidden_size}-{seed}{'-clip' if clip_dir else ''}"
    )
    if start is not None:
        base = start
    elif not (base / "config.json").exists():
        build_base_model(base, train, sizes, seed, clip_dir)
    processor = AutoProcessor.from_pretrained(base)
    model = AutoModelForImageTextToText.from_pretrained(base)
    if probe:
        return linear_probe(model, processor, train)
    every = sft_rows(train, sizes, seed)
    rows = [r for r in every if r["answer"] in YES_NO]
    random.Random(seed).shuffle(rows)
    held, rows = rows[:256], rows[256:]
    held_images = {r["image"] for r in held}
    caption_rows = [r for r in every if r["answer"] not in YES_NO and r["image"] not in held_images]
    if freeze_vision:
        model.model.vision_tower.requires_grad_(False)
    if tie:
        model.lm_head.weight = model.get_input_embeddings().weight
    if features == "oracle":
        use_oracle_features(model)
    tok = processor.tokenizer
    yes, no = verdict_tokens(processor)
    images: dict = {}

    listing = {}
    if features == "words":  # the control: the same questions, the image's objects given as words, no image
        from realign_data.kb.corpus import CocoAnnotations

        ann = CocoAnnotations(train)
        listing = {i: " ".join(sorted({x["category"] for x in ann.instances(i)})) for i in ann.image_ids()}

    def batch_of(rs):
        if listing:
            inputs = tok(
                [f"USER: {listing[r['image_id']]}\n{r['prompt']}ASSISTANT: " for r in rs],
                return_tensors="pt",
                padding=True,
                padding_side="left",
            )
            return inputs, torch.tensor([yes if r["answer"] == "Yes." else no for r in rs])
        if order == "image-first":  # the study's chat template, as the SFT and the eval build it
            return verdict_batch(processor, rs, images)
        texts = [f"USER: {r['prompt']}\n<image>\nASSISTANT: " for r in rs]
        pics = pictures(rs, images)
        inputs = processor(images=pics, text=texts, return_tensors="pt", padding=True, padding_side="left")
        return inputs, torch.tensor([yes if r["answer"] == "Yes." else no for r in rs])

    @torch.no_grad()
    def accuracy() -> float:
        model.eval()
        right = 0
        for i in range(0, len(held), 64):
            inputs, target = batch_of(held[i : i + 64])
            logits = model(**inputs).logits[:, -1]
            right += ((logits[:, yes] > logits[:, no]) == (target == yes)).sum().item()
        model.train()
        return right / len(held)

    if start is not None:
        print(f"step 0: held-out accuracy {accuracy():.3f}", flush=True)
    began = time.time()
    train_balanced(
        model,
        processor,
        rows,
        caption_rows if captions else [],
        steps=steps,
        batch=batch,
        lr=lr,
        batch_of=batch_of,
        every=eval_every,
        align=align,
        report=lambda step, loss: print(
            f"step {step}: loss {loss:.3f}, held-out accuracy {accuracy():.3f} ({time.time() - began:.0f} s)",
            flush=True,
        ),
    )
    if save is not None:
        model.save_pretrained(save)
        processor.save_pretrained(save)


def use_oracle_features(model) -> None:
    """Replace the vision tower's output by each 8x8 patch's mean colour (and the image's, as the CLS) through a
    small trainable MLP."""
    import torch
    from torch import nn
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    hidden = model.config.text_config.hidden_size
    model.oracle = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, hidden))

    def features(pixel_values, *args, **kwargs):
        patches = pixel_values.unfold(2, 8, 8).unfold(3, 8, 8).mean((-1, -2)).flatten(2).transpose(1, 2)
        tokens = torch.cat([patches.mean(1, keepdim=True), patches], 1)
        return BaseModelOutputWithPooling(pooler_output=list(model.oracle(tokens)))

    model.model.get_image_features = features


def linear_probe(model, processor, train: Path) -> None:
    """Held-out accuracy of a logistic regression on the vision tower's mean- and max-pooled features, per
    category, against the majority rate."""
    import numpy as np
    import torch
    from PIL import Image
    from sklearn.linear_model import LogisticRegression

    from realign_data.kb.corpus import CocoAnnotations
    from realign_data.testing.sample import CATEGORIES

    ann = CocoAnnotations(train)
    ids = sorted(ann.image_ids())[:1200]
    names = [c.name for c in CATEGORIES]
    present = np.array([[c in {i["category"] for i in ann.instances(x)} for c in names] for x in ids])
    feats = []
    with torch.no_grad():
        for i in range(0, len(ids), 64):
            pics = [
                Image.open(train / "train2014" / f"COCO_train2014_{x:012d}.jpg").convert("RGB") for x in ids[i : i + 64]
            ]
            pixel_values = processor.image_processor(pics, return_tensors="pt")["pixel_values"]
            f = torch.stack(list(model.model.get_image_features(pixel_values=pixel_values).pooler_output))
            feats.append(torch.cat([f.mean(1), f.amax(1)], -1))
    x = torch.cat(feats).numpy()
    n = 900
    for j, name in enumerate(names):
        clf = LogisticRegression(max_iter=2000).fit(x[:n], present[:n, j])
        majority = max(present[n:, j].mean(), 1 - present[n:, j].mean())
        print(f"{name:9s} probe {clf.score(x[n:], present[n:, j]):.3f}  majority {majority:.3f}")


if __name__ == "__main__":
    typer.run(main)
