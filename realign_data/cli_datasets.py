"""``realign-data push`` and ``realign-data pope``: publish a built dataset, build a POPE question set.

Registered on the ``realign-data`` app by ``cli.py``; they share its error and logging helpers (``cli_common``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from realign_data.cli_common import fail
from realign_data.cli_common import setup_logging as _setup_logging


def push(
    directory: Path = typer.Argument(..., help="Build output directory (or its save_to_disk dataset)."),
    repo_id: str = typer.Argument(..., help="Hub dataset repo: namespace/name (a bare name goes to your user)."),
    private: bool = typer.Option(False, "--private", help="Create the repo private (ignored if it exists)."),
    revision: Optional[str] = typer.Option(None, "--revision", help="Branch to push to (created from main)."),
    config_name: str = typer.Option("default", "--config-name", help="Hub config (subset); others are kept."),
    split: Optional[str] = typer.Option(None, "--split", help="Split name (default: train, or every split)."),
    token: Optional[str] = typer.Option(None, "--token", help="Write token (default: HF_TOKEN / hf auth login)."),
    max_shard_size: Optional[str] = typer.Option(None, "--max-shard-size", help="Parquet shard size, e.g. 500MB."),
    commit_message: Optional[str] = typer.Option(None, "--commit-message", help="Message of the data commit."),
    license: Optional[str] = typer.Option(
        None, "--license", help="Card licence id (default: corpus licence, else other)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    timeout: float = typer.Option(
        60.0,
        "--timeout",
        min=0.001,
        help="Seconds each Hub request may wait for the connection or the next bytes of its answer.",
    ),
) -> None:
    """Publish a built dataset to the Hugging Face Hub with its build config, report and a dataset card.

    Uploads Parquet shards (images embedded), realign_build.json / build_report.json / index_manifest.json next to
    the data, and merges the dataset card with the one already on the Hub. The local directory is only read.
    """
    from realign_data.publish.hub import HubPushError, HubUsageError, push_to_hub

    _setup_logging(quiet)
    try:
        res = push_to_hub(
            directory,
            repo_id,
            private=private,
            revision=revision,
            config_name=config_name,
            split=split,
            token=token,
            max_shard_size=max_shard_size,
            commit_message=commit_message,
            license=license,
            progress=not quiet,
            timeout=timeout,
        )
    except HubUsageError as e:
        fail(str(e), 2)
    except HubPushError as e:
        fail(str(e), 1)
    rows = ", ".join(f"{s}: {n} pairs" for s, n in res.splits.items())
    typer.echo(f"Pushed {rows} to {res.repo_id} (config {res.config_name}, branch {res.revision}): {res.url}")


def pope(
    coco_root: Path = typer.Option(
        ..., "--coco-root", help="COCO-layout corpus with instance annotations (MS-COCO, or `realign-data sample`)."
    ),
    out: Path = typer.Option(..., "--out", help="Directory for the question set (replaced if it holds one)."),
    split: Optional[str] = typer.Option(
        None, "--split", help="Annotated split, e.g. val2014 (default: the only one with instances)."
    ),
    num_images: int = typer.Option(500, "--num-images", help="Images to ask about (POPE: 500)."),
    objects_per_image: int = typer.Option(
        3, "--objects-per-image", help="Objects asked about per image, and as many absent ones (POPE: 3)."
    ),
    min_objects: int = typer.Option(
        3, "--min-objects", help="Only images with at least this many annotated categories (POPE: 3)."
    ),
    samplings: str = typer.Option(
        "random,popular,adversarial", "--samplings", help="Negative samplings, one split each."
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed = same question set, byte for byte)."),
    exclude_dataset: Optional[str] = typer.Option(
        None,
        "--exclude-dataset",
        help="Training dataset (build directory or Hub id): its images are skipped, with a warning, so the question set holds none of them.",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
) -> None:
    """Build a POPE question set: 'Is there a {object} in the image?' about annotated and absent objects.

    Absent objects follow POPE's three negative samplings (random, popular = most frequent categories of the corpus, adversarial = most co-occurring with the asked object); see docs/evaluation.md.

    Writes a `datasets` DatasetDict with one split per sampling (images embedded), pushable with `realign-data push`.
    """
    from realign_data.evalsets.pope import PopeError, build_pope
    from realign_data.runtime.locks import OutputError, output_lock

    try:
        with output_lock(out, "realign-data pope"):
            built = build_pope(
                coco_root,
                out,
                split=split,
                num_images=num_images,
                seed=seed,
                objects_per_image=objects_per_image,
                min_objects=min_objects,
                samplings=[s.strip() for s in samplings.split(",") if s.strip()],
                exclude_dataset=exclude_dataset,
                progress=not quiet,
            )
    except (PopeError, OutputError) as e:
        fail(str(e))
    if not quiet:
        rep = built.report
        counts = ", ".join(f"{s}: {n}" for s, n in rep.questions.items())
        typer.echo(
            f"POPE question set: {rep.images} images of split {built.config.split} ({counts} questions) in {out}"
        )
        if rep.images < num_images:
            typer.echo(
                f"  only {rep.eligible_images} images have at least {min_objects} annotated categories"
                + (f" ({len(rep.skipped)} unreadable, skipped)" if rep.skipped else "")
            )
        elif rep.skipped:
            typer.echo(f"  {len(rep.skipped)} unreadable images skipped (listed in build_report.json)")
