"""Evaluate any checkpoint in one seed's world of a study run, as the study evaluates its arms: its own training
questions (the SFT data's first 400 yes/no rows) and POPE + CHAIR + the partner diagnostic on the held-out images.

    python experiments/synthetic_world/eval_model.py MODEL RUN/seed-1 [--out DIR]

For probes (e.g. ``yes_no_probe.py --start ... --save MODEL``); the study itself needs no call to this.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import typer


def main(
    model: Path = typer.Argument(..., help="A saved model with its processor."),
    seed_dir: Path = typer.Argument(..., help="A study run's seed-N folder (its world and sizes are used)."),
    out: Path = typer.Option(None, help="Where the evaluation's records go [default: MODEL/eval]."),
) -> None:
    from study_eval import evaluate_model, heldout_suite, training_questions
    from study_sizes import Sizes
    from study_world import corpus_roots

    sizes = Sizes(**json.loads((seed_dir.parent / "sizes.json").read_text()))
    seed = int(seed_dir.name.removeprefix("seed-"))
    train_root, all_root = corpus_roots(seed_dir / "world")
    fit = training_questions(str(model), train_root, sizes, seed)
    result = evaluate_model(out or model / "eval", str(model), heldout_suite(all_root, sizes, seed), sizes)
    flat = result["flat"]
    keep = ("pope_random_accuracy", "pope_popular_accuracy", "pope_adversarial_accuracy", "pope_random_f1")
    summary = {
        "training_questions": fit,
        **{k: round(flat[k], 4) for k in keep},
        **{k: round(flat[k], 4) for k in ("chair_s", "chair_i", "object_recall")},
        "missing_partner_named": result["partner"]["missing_partner_named"],
    }
    typer.echo(json.dumps(summary, indent=1))


if __name__ == "__main__":
    typer.run(main)
