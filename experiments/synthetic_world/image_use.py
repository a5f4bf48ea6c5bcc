"""Diagnostic for issue #22 part 1: does a study model use the image, for captions and for yes/no questions?

For 96 training captions, the caption's mean token loss with its own image and with another training image; for
192 training yes/no questions, the verdict margin (logit of ``Y`` minus logit of ``N`` after ``ASSISTANT: ``) with
its own image and with another, and the accuracy of each. A model that reads the image for captions has a much
lower caption loss with the right image; one that reads it for yes/no has margins that move with the image.

    python experiments/synthetic_world/image_use.py RUN/seed-0/sft/model RUN/seed-0/world/train
"""

from __future__ import annotations

import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import typer


def main(
    model_dir: Path = typer.Argument(..., help="A study model (seed-N/sft/model or an arm's model)."),
    train: Path = typer.Argument(..., help="The seed's training world (seed-N/world/train)."),
    seed: int = typer.Option(0, help="The seed the SFT rows were drawn with."),
) -> None:
    import torch
    from PIL import Image
    from study_sft import sft_rows
    from study_sizes import FULL
    from study_verdict import YES_NO, verdict_tokens
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(model_dir).eval()
    rows = sft_rows(train, FULL, seed)
    captions = [r for r in rows if r["answer"] not in YES_NO][:96]
    questions = [r for r in rows if r["answer"] in YES_NO][:192]
    yes, no = verdict_tokens(processor)
    rng = random.Random(seed)

    def image(row, other: bool):
        return Image.open(rng.choice(captions)["image"] if other else row["image"]).convert("RGB")

    def prompt(row) -> str:
        return processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": row["prompt"]}]}],
            add_generation_prompt=True,
        )

    @torch.no_grad()
    def caption_loss(other: bool) -> float:
        total = count = 0
        for r in captions:
            pic = image(r, other)
            inputs = processor(images=[pic], text=[prompt(r) + r["answer"] + "</s>"], return_tensors="pt")
            labels = inputs["input_ids"].clone()
            labels[:, : len(processor(images=[pic], text=[prompt(r)])["input_ids"][0])] = -100
            n = int((labels != -100).sum()) - 1
            total += model(**inputs, labels=labels).loss.item() * n
            count += n
        return total / count

    @torch.no_grad()
    def margins(other: bool) -> list[float]:
        out = []
        for r in questions:
            logits = model(**processor(images=[image(r, other)], text=[prompt(r)], return_tensors="pt")).logits[0, -1]
            out.append((logits[yes] - logits[no]).item())
        return out

    def accuracy(ms: list[float]) -> float:
        return sum((m > 0) == (r["answer"] == "Yes.") for m, r in zip(ms, questions)) / len(questions)

    own, other = margins(False), margins(True)
    print(f"caption loss: own image {caption_loss(False):.3f}, another image {caption_loss(True):.3f}")
    print(
        f"yes/no accuracy: own image {accuracy(own):.3f}, another image {accuracy(other):.3f}; verdict margin "
        f"sd {statistics.pstdev(own):.3f}, mean |own - another| {statistics.mean(abs(a - b) for a, b in zip(own, other)):.3f}"
    )


if __name__ == "__main__":
    typer.run(main)
