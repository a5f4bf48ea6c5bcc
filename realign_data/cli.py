"""``realign-data``: build Re-Align dual-preference datasets from the command line.

A thin layer over the Python API. Heavy libraries (torch, faiss, open_clip, transformers) are imported
inside the commands so that ``realign-data --help`` answers instantly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(
    name="realign-data",
    help="Build Re-Align dual-preference (text + image) datasets for VLM preference training.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print the realign version and exit.", is_eager=True),
) -> None:
    """Re-Align dual-preference datasets: sample corpus, image knowledge base, builder, inspection."""
    if version:
        from importlib.metadata import version as _v

        typer.echo(_v("realign"))
        raise typer.Exit()


def fail(message: str, code: int = 2) -> None:
    """Print one clear sentence to stderr and exit (2 = bad usage/input, 1 = runtime failure)."""
    typer.secho(f"Error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


@app.command()
def sample(
    out: Path = typer.Option(..., "--out", help="Directory to write the corpus into (created if missing)."),
    num_images: int = typer.Option(200, "--num-images", help="Number of images to draw."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives byte-identical files."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Generate a small synthetic COCO-format corpus (images + instances + captions).

    Scenes of coloured shapes standing for COCO categories, with polygon segmentations and template
    captions naming objects, colours, counts and spatial relations. Serves demos, tests and benchmarks.
    """
    from realign_data.sample import SampleCorpusError, make_sample_corpus

    try:
        root = make_sample_corpus(out, num_images=num_images, seed=seed, progress=not quiet)
    except SampleCorpusError as e:
        fail(str(e))
    typer.echo(f"Wrote {num_images} images with instances and captions to {root}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
