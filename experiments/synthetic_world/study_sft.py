"""Stage 3, the base model: a tiny LLaVA from the project's factory, fine-tuned with TRL's ``SFTTrainer`` on the
training images only, to describe an image (the complete caption, with the CHAIR instruction) and to answer
POPE-style yes/no questions about it. The learning curve is the trainer's logged loss."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

from realign_data.evalsets.pope_sampling import question_for
from realign_trl.eval.suite import CHAIR_PROMPT


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]


def _assistant(text: str) -> list[dict]:
    return [{"role": "assistant", "content": [{"type": "text", "text": text}]}]


def sft_rows(train_root: Path, sizes, seed: int) -> list[dict]:
    """(image, instruction, answer) rows: each training image's complete caption, plus ``yes_no_per_image``
    questions about it, alternating a present object (Yes.) and an absent category drawn at random (No.)."""
    from realign_data.kb.corpus import CocoAnnotations
    from realign_data.testing.sample import CATEGORIES

    ann = CocoAnnotations(train_root)
    rng = random.Random(seed)
    names = [c.name for c in CATEGORIES]
    rows = []
    for image_id in sorted(ann.image_ids()):
        path = str(train_root / "train2014" / f"COCO_train2014_{image_id:012d}.jpg")
        present = sorted({i["category"] for i in ann.instances(image_id)})
        rows.append(
            {
                "image": path,
                "image_id": image_id,
                "prompt": CHAIR_PROMPT,
                "answer": ann.captions(image_id)[0],
                "present": present,
            }
        )
        for k in range(sizes.yes_no_per_image):
            if k % 2 == 0:
                obj, answer = rng.choice(present), "Yes."
            else:
                obj, answer = rng.choice([n for n in names if n not in present]), "No."
            rows.append(
                {
                    "image": path,
                    "image_id": image_id,
                    "prompt": question_for(obj),
                    "answer": answer,
                    "object": obj,
                    "present": present,
                }
            )
    return rows


def build_base_model(out: Path, train_root: Path, sizes, seed: int, clip_dir: Path | None = None) -> Path:
    """The tiny LLaVA before SFT, its tokenizer trained with the world's caption words. With ``clip_dir`` (and
    ``sizes.vision_init == "encoder"``) its vision tower is the retrieval encoder's trained one, as a real LLaVA's
    is a pretrained CLIP's; otherwise random. With ``sizes.tie_embeddings`` its input and output embeddings are
    one matrix."""
    from realign_data.kb.corpus import CocoAnnotations
    from realign_data.testing.tiny_models import build_tiny_llava

    ann = CocoAnnotations(train_root)
    words = sorted({w.strip(".,").lower() for i in ann.image_ids() for c in ann.captions(i) for w in c.split()})
    build_tiny_llava(
        out,
        image_size=sizes.image_size,
        hidden_size=sizes.hidden_size,
        num_layers=sizes.num_layers,
        seed=seed,
        vision_hidden_size=sizes.vision_hidden_size,
        vision_layers=sizes.vision_layers,
        extra_text=[" ".join(words)] * 4,
    )
    from_clip = clip_dir is not None and sizes.vision_init == "encoder"
    if from_clip or sizes.tie_embeddings:
        from transformers import AutoModelForImageTextToText

        model = AutoModelForImageTextToText.from_pretrained(out)
        if from_clip:
            vision_tower_from_clip(model, clip_dir)
        if sizes.tie_embeddings:
            tie_embeddings(model)
        model.save_pretrained(out)
    return out


def tie_embeddings(model) -> None:
    """Make the language model's output layer the input embedding matrix (as GPT-2 and Gemma do), recorded in the
    config so that save and load keep the tie (and TRL's reference copy has it too)."""
    model.config.tie_word_embeddings = True
    model.config.text_config.tie_word_embeddings = True
    model.tie_weights()
    if model.lm_head.weight.data_ptr() != model.get_input_embeddings().weight.data_ptr():
        raise RuntimeError("transformers did not tie the embeddings of this model")


def vision_tower_from_clip(model, clip_dir: Path) -> None:
    """Replace a LLaVA's vision tower by the study encoder's trained open_clip ViT, converted to transformers'
    ``CLIPVisionModel`` (same maths: exact GELU, q/k/v split from open_clip's packed projection). The projector
    stays random: SFT learns it, as LLaVA's first stage does."""
    import torch
    from safetensors.torch import load_file
    from study_clip import CONFIG_NAME, WEIGHTS
    from transformers import CLIPVisionConfig, CLIPVisionModel

    vision = json.loads((clip_dir / f"{CONFIG_NAME}.json").read_text())["vision_cfg"]
    width = vision["width"]
    if width != model.config.vision_config.hidden_size:
        raise ValueError(
            f"the encoder's width {width} is not the base model's vision width {model.config.vision_config.hidden_size}"
        )
    config = CLIPVisionConfig(
        hidden_size=width,
        intermediate_size=4 * width,
        num_hidden_layers=vision["layers"],
        num_attention_heads=width // vision["head_width"],
        image_size=vision["image_size"],
        patch_size=vision["patch_size"],
        hidden_act="gelu",
        layer_norm_eps=1e-5,
    )
    src = {
        k.removeprefix("visual."): v for k, v in load_file(str(clip_dir / WEIGHTS)).items() if k.startswith("visual.")
    }
    dst = {
        "embeddings.class_embedding": src["class_embedding"],
        "embeddings.patch_embedding.weight": src["conv1.weight"],
        "embeddings.position_embedding.weight": src["positional_embedding"],
        "pre_layrnorm.weight": src["ln_pre.weight"],
        "pre_layrnorm.bias": src["ln_pre.bias"],
        "post_layernorm.weight": src["ln_post.weight"],
        "post_layernorm.bias": src["ln_post.bias"],
    }
    for i in range(vision["layers"]):
        a, b = f"transformer.resblocks.{i}.", f"encoder.layers.{i}."
        for part, w, bias in zip("qkv", src[a + "attn.in_proj_weight"].chunk(3), src[a + "attn.in_proj_bias"].chunk(3)):
            dst[f"{b}self_attn.{part}_proj.weight"], dst[f"{b}self_attn.{part}_proj.bias"] = w, bias
        for theirs, ours in (
            ("attn.out_proj", "self_attn.out_proj"),
            ("ln_1", "layer_norm1"),
            ("ln_2", "layer_norm2"),
            ("mlp.c_fc", "mlp.fc1"),
            ("mlp.c_proj", "mlp.fc2"),
        ):
            for kind in ("weight", "bias"):
                dst[f"{b}{ours}.{kind}"] = src[f"{a}{theirs}.{kind}"]
    tower = CLIPVisionModel(config)
    tower.load_state_dict({k: v.to(torch.float32) for k, v in dst.items()}, strict=True)
    model.model.vision_tower = tower
    model.config.vision_config = config


def train_sft(out: Path, train_root: Path, sizes, seed: int, clip_dir: Path | None = None) -> dict:
    """Fine-tune the base model (its vision tower from ``clip_dir``'s encoder, see ``build_base_model``; its image
    tokens first aligned with its words for ``sizes.align_steps``, see ``study_align.py``) with TRL's
    SFT for ``sizes.sft_steps`` steps (0: not at all); save it (with its processor) to ``out/model``; return the
    learning curve."""
    from datasets import Dataset, Image
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl import SFTConfig, SFTTrainer

    base = build_base_model(out / "base", train_root, sizes, seed, clip_dir)
    aligned = None
    if sizes.align_steps:  # LLaVA's first stage, in the study's terms: image tokens near the words (study_align.py)
        from study_align import align_base

        aligned = align_base(out / "aligned", base, train_root, sizes, seed)
        shutil.rmtree(base)
        (out / "aligned").rename(base)
    rows = sft_rows(train_root, sizes, seed)
    if not sizes.sft_steps:  # no token-mean SFT: the verdict phase trains the base model from its first step
        shutil.move(str(base), str(out / "model"))
        ids = sorted({r["image_id"] for r in rows})
        return {
            "model": str(out / "model"),
            "rows": len(rows),
            "image_ids": ids,
            "curve": [],
            "steps": 0,
            "align": aligned,
        }
    ds = Dataset.from_dict(
        {
            "images": [[r["image"]] for r in rows],
            "prompt": [_user(r["prompt"]) for r in rows],
            "completion": [_assistant(r["answer"]) for r in rows],
        }
    )
    from datasets import Sequence

    ds = ds.cast_column("images", Sequence(Image()))
    model = AutoModelForImageTextToText.from_pretrained(base)
    processor = AutoProcessor.from_pretrained(base)
    args = SFTConfig(
        output_dir=str(out / "trainer"),
        max_steps=sizes.sft_steps,
        per_device_train_batch_size=sizes.sft_batch,
        learning_rate=sizes.sft_lr,
        lr_scheduler_type="linear",
        warmup_steps=min(100, sizes.sft_steps // 10),
        logging_steps=max(1, min(10, sizes.sft_steps // 4)),
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=seed,
        data_seed=seed,
        dataloader_num_workers=0,
        max_length=None,
        gradient_checkpointing=False,
        bf16=False,
        completion_only_loss=True,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=processor)
    trainer.train()
    trainer.save_model(str(out / "model"))
    processor.save_pretrained(str(out / "model"))
    curve = [{"step": h["step"], "loss": h["loss"]} for h in trainer.state.log_history if "loss" in h]
    shutil.rmtree(out / "base")
    return {
        "model": str(out / "model"),
        "rows": len(rows),
        "image_ids": sorted({r["image_id"] for r in rows}),
        "curve": curve,
        "steps": sizes.sft_steps,
        "align": aligned,
    }
