"""Stage 3, the base model: a tiny LLaVA from the project's factory, fine-tuned with TRL's ``SFTTrainer`` on the
training images only, to describe an image (the complete caption, with the CHAIR instruction) and to answer
POPE-style yes/no questions about it. The learning curve is the trainer's logged loss."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

from realign_data.evalsets.pope import question_for
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
        rows.append({"image": path, "image_id": image_id, "prompt": CHAIR_PROMPT, "answer": ann.captions(image_id)[0]})
        for k in range(sizes.yes_no_per_image):
            if k % 2 == 0:
                obj, answer = rng.choice(present), "Yes."
            else:
                obj, answer = rng.choice([n for n in names if n not in present]), "No."
            rows.append({"image": path, "image_id": image_id, "prompt": question_for(obj), "answer": answer})
    return rows


def build_base_model(out: Path, train_root: Path, sizes, seed: int) -> Path:
    """The untrained tiny LLaVA, its tokenizer trained with the world's caption words."""
    from realign_data.kb.corpus import CocoAnnotations
    from realign_data.testing.tiny_models import build_tiny_llava

    ann = CocoAnnotations(train_root)
    words = sorted({w.strip(".,").lower() for i in ann.image_ids() for c in ann.captions(i) for w in c.split()})
    return build_tiny_llava(out, image_size=sizes.image_size, hidden_size=sizes.hidden_size,
                            num_layers=sizes.num_layers, seed=seed, vision_hidden_size=sizes.vision_hidden_size,
                            vision_layers=sizes.vision_layers, extra_text=[" ".join(words)] * 4)


def train_sft(out: Path, train_root: Path, sizes, seed: int) -> dict:
    """Fine-tune the base model; save it (with its processor) to ``out/model``; return the learning curve."""
    from datasets import Dataset, Image
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl import SFTConfig, SFTTrainer

    base = build_base_model(out / "base", train_root, sizes, seed)
    rows = sft_rows(train_root, sizes, seed)
    ds = Dataset.from_dict({"images": [[r["image"]] for r in rows], "prompt": [_user(r["prompt"]) for r in rows],
                            "completion": [_assistant(r["answer"]) for r in rows]})
    from datasets import Sequence

    ds = ds.cast_column("images", Sequence(Image()))
    model = AutoModelForImageTextToText.from_pretrained(base)
    processor = AutoProcessor.from_pretrained(base)
    args = SFTConfig(output_dir=str(out / "trainer"), max_steps=sizes.sft_steps,
                     per_device_train_batch_size=sizes.sft_batch, learning_rate=sizes.sft_lr,
                     lr_scheduler_type="linear", warmup_steps=min(100, sizes.sft_steps // 10), logging_steps=max(1, min(10, sizes.sft_steps // 4)),
                     save_strategy="no", report_to="none", use_cpu=True, seed=seed, data_seed=seed,
                     dataloader_num_workers=0, max_length=None, gradient_checkpointing=False, bf16=False,
                     completion_only_loss=True)
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=processor)
    trainer.train()
    trainer.save_model(str(out / "model"))
    processor.save_pretrained(str(out / "model"))
    curve = [{"step": h["step"], "loss": h["loss"]} for h in trainer.state.log_history if "loss" in h]
    shutil.rmtree(out / "base")
    return {"model": str(out / "model"), "rows": len(rows), "image_ids": sorted({r["image_id"] for r in rows}),
            "curve": curve, "steps": sizes.sft_steps}
