"""``realign-data audit``: the image-blind separability of any preference dataset (``separability.py``).

Registered on the ``realign-data`` app by ``cli.py``; it shares its error and logging helpers (``cli_common``).
"""

from __future__ import annotations

import json
from typing import Optional

import typer

from realign_data.cli_common import fail


def audit(
    dataset: str = typer.Argument(
        ...,
        help="A save_to_disk folder (or a realign build), a local .parquet/.jsonl/"
        ".json/.csv file, or a Hub dataset id, with 'chosen' and 'rejected' columns.",
    ),
    split: Optional[str] = typer.Option(None, "--split", help="Split to audit (default: train, or the only one)."),
    seed: int = typer.Option(
        0, "--seed", help="Seed of the folds and of the sample of a large dataset (same seed = same result)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object."),
) -> None:
    """How often a text-only classifier picks the chosen answer over the rejected one without seeing any image.

    Bag of words + bigrams, logistic regression, k-fold cross-validation: 0.5 means the rejected answers are as
    plausible as the chosen ones on their words alone (Re-Align's "plausible but wrong"); near 1.0 a preference
    loss can learn the words instead of the image. Prints the accuracy on held-out pairs, its 95 % interval, and
    the words and bigrams the classifier leans on. Strings and TRL conversational messages (the assistant text)
    are both read.
    """
    from realign_data.building.separability import AuditError
    from realign_data.building.separability import audit as measure

    try:
        result = measure(dataset, split=split, seed=seed)
    except AuditError as e:
        fail(str(e))
    if as_json:
        typer.echo(json.dumps(result, indent=1))
        return
    if "accuracy" not in result:
        typer.echo(f"{dataset}: {result['note']}")
        return
    sample = (
        f" (a seeded sample of {result['n_heldout']} of {result['n_pairs']} pairs)" if result.get("sampled") else ""
    )
    typer.echo(
        f"{dataset}{' [' + split + ']' if split else ''}: image-blind accuracy {result['accuracy']:.3f} "
        f"(95 % CI {result['ci_low']:.3f}-{result['ci_high']:.3f}) on {result['n_heldout']} held-out pairs"
        f"{sample}; 0.5 = rejected as plausible as chosen on words alone"
    )
    for side in ("chosen", "rejected"):
        cues = ", ".join(f'"{c["feature"]}" {c["weight"]:+.2f}' for c in result[f"{side}_cues"]) or "none"
        typer.echo(f"  leans on for {side}: {cues}")
    typer.echo(f"  method: {result['method']}")
