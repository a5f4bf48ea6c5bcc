"""``realign-data export``: a build in the layout of LLaMA-Factory, ms-swift, Re-Align's scripts or RLAIF-V.

Registered on the ``realign-data`` app by ``cli.py``; the work is :func:`realign_data.publish.exports.export`.
"""

from __future__ import annotations

from pathlib import Path

import typer

from realign_data.cli_common import fail, setup_logging


def export(
    dataset: Path = typer.Argument(
        ..., help="A realign build: the --out folder of `realign-data build`/`demo` (or its save_to_disk dataset)."
    ),
    to: str = typer.Option(..., "--to", help="Target layout: llamafactory, swift, realign-json or rlaif-v."),
    out: Path = typer.Option(..., "--out", help="Folder to write (new or empty; see --overwrite)."),
    split: str = typer.Option(
        "train", "--split", help="Split to export (curriculum builds: train, easy, medium, hard)."
    ),
    name: str = typer.Option("realign", "--name", help="Data file name and LLaMA-Factory dataset_info.json key."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace what --out holds (swapped in when complete)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary (notices still print)."),
) -> None:
    """Write a build in the data layout of another trainer: LLaMA-Factory (sharegpt ranking + dataset_info.json),
    ms-swift (JSONL: a text-pair row and an image-pair row per pair), Re-Align's train_rdpo.py (JSON + image folder)
    or RLAIF-V (parquet). Images are written once, named by their sha256; all paths are relative. See docs/export.md.
    """
    from realign_data.publish.exports import ExportError
    from realign_data.publish.exports import export as run_export

    setup_logging(quiet)
    try:
        res = run_export(dataset, to, out, split=split, name=name, overwrite=overwrite, progress=not quiet)
    except ExportError as e:
        fail(str(e))
    if not quiet:
        typer.echo(
            f"Exported {res.pairs} pairs as {res.rows} {to} rows with {res.images} distinct images to "
            f"{res.out} ({', '.join(res.files)})"
        )
