"""Stage 2, the retrieval encoder: a tiny open_clip model trained contrastively on the world's training images
and captions (open_clip's own model and ``ClipLoss``), saved in open_clip's format (model-config JSON + safetensors
weights), the knowledge base built with it, and its retrieval quality measured.

``realign_data.kb.encoder`` registers a model-config JSON under its file stem, so the build and the knowledge base
load the trained encoder by path: ``--kb-model CLIP_DIR/realign-study-clip.json --kb-pretrained
CLIP_DIR/open_clip_model.safetensors``.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

logger = logging.getLogger("synthetic_world")
CONFIG_NAME = "realign-study-clip"
WEIGHTS = "open_clip_model.safetensors"


def clip_config(sizes) -> dict:
    """A ViT of the base model's vision sizes (width ``vision_hidden_size``, ``vision_layers`` layers, patch 8), so
    that its trained tower can become the base model's (``study_sft.vision_tower_from_clip``), and a 2-layer text
    tower with room for the complete captions."""
    width = sizes.vision_hidden_size
    return {
        "embed_dim": 64,
        "vision_cfg": {
            "image_size": sizes.image_size,
            "layers": sizes.vision_layers,
            "width": width,
            "head_width": min(32, width),
            "patch_size": 8,
        },
        "text_cfg": {"context_length": 64, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
    }


def model_paths(clip_dir: Path) -> tuple[str, str]:
    """(model-config JSON, weights) of a trained encoder, as the build's ``kb_model``/``kb_pretrained``."""
    return str(clip_dir / f"{CONFIG_NAME}.json"), str(clip_dir / WEIGHTS)


def train_clip(out: Path, train_root: Path, sizes, seed: int) -> dict:
    """Train the encoder contrastively on (image, random caption of it) batches; save it in open_clip's format."""
    import open_clip
    import torch
    from PIL import Image
    from safetensors.torch import save_file

    from realign_data.kb.corpus import CocoAnnotations

    config_path = out / f"{CONFIG_NAME}.json"
    config_path.write_text(json.dumps(clip_config(sizes), indent=1))
    open_clip.add_model_config(config_path)  # registered under the file stem, as realign_data.kb.encoder does
    name = CONFIG_NAME
    torch.manual_seed(seed)
    model, preprocess, _ = open_clip.create_model_and_transforms(name, pretrained=None)
    tokenizer = open_clip.get_tokenizer(name)
    ann = CocoAnnotations(train_root)
    ids = sorted(ann.image_ids())
    files = {i: train_root / "train2014" / f"COCO_train2014_{i:012d}.jpg" for i in ids}
    pixels = {i: preprocess(Image.open(files[i]).convert("RGB")) for i in ids}
    rng = random.Random(seed)
    loss_fn = open_clip.ClipLoss()
    optim = torch.optim.AdamW(model.parameters(), lr=sizes.clip_lr, weight_decay=0.1)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        optim, max_lr=sizes.clip_lr, total_steps=sizes.clip_steps, pct_start=0.1
    )
    model.train()
    curve = []
    for step in range(sizes.clip_steps):
        batch = rng.sample(ids, min(sizes.clip_batch, len(ids)))
        images = torch.stack([pixels[i] for i in batch])
        texts = tokenizer([rng.choice(ann.captions(i)) for i in batch])
        image_features, text_features, logit_scale = model(images, texts)
        loss = loss_fn(image_features, text_features, logit_scale)
        optim.zero_grad()
        loss.backward()
        optim.step()
        sched.step()
        if step % 25 == 0 or step == sizes.clip_steps - 1:
            curve.append({"step": step, "loss": round(loss.item(), 4)})
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(out / WEIGHTS))
    return {
        "model": str(config_path),
        "weights": str(out / WEIGHTS),
        "curve": curve,
        "steps": sizes.clip_steps,
        "batch": sizes.clip_batch,
    }


def build_index(out: Path, train_root: Path, clip_dir: Path) -> dict:
    """The knowledge base of the training images, embedded with the trained encoder."""
    from realign_data.kb.corpus import open_source
    from realign_data.kb.knowledge_base_build import build_knowledge_base

    model, weights = model_paths(clip_dir)
    build_knowledge_base(
        open_source("coco", train_root),
        out / "index",
        model=model,
        pretrained=weights,
        device="cpu",
        num_workers=0,
        batch_size=64,
        progress=False,
    )
    return {"index": str(out / "index")}


def retrieval_quality(index: Path, seed: int, queries: int = 200) -> dict:
    """Category overlap (Jaccard) of each query image with its top-1 retrieved image vs with a random other image.

    "Similar but different" retrieval means a high overlap that is not identity: the build then swaps in objects
    that plausibly share the scene.
    """
    from realign_data.kb.knowledge_base import KnowledgeBase

    kb = KnowledgeBase.load(index)
    rng = random.Random(seed)
    ids = rng.sample(kb.ids, min(queries, len(kb.ids)))
    cats = {i: set(kb.record(i)["categories"]) for i in kb.ids}
    hits = kb.search(ids, k=1, kind="id")

    def jaccard(a, b):
        return len(a & b) / len(a | b) if a | b else 1.0

    top1 = [jaccard(cats[q], cats[h[0].id]) for q, h in zip(ids, hits) if h]
    rand = [jaccard(cats[q], cats[rng.choice([i for i in kb.ids if i != q])]) for q in ids]
    same = [cats[q] == cats[h[0].id] for q, h in zip(ids, hits) if h]
    return {
        "queries": len(ids),
        "top1_jaccard": round(sum(top1) / len(top1), 4),
        "random_jaccard": round(sum(rand) / len(rand), 4),
        "top1_same_categories": round(sum(same) / len(same), 4),
    }
