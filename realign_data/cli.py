"""``realign-data``: build Re-Align dual-preference datasets from the command line.

A thin layer over the Python API. Heavy libraries (torch, faiss, open_clip, transformers) are imported
inside the commands so that ``realign-data --help`` answers instantly.
"""

from __future__ import annotations

import inspect as pyinspect
from pathlib import Path
from typing import Optional

import typer

from realign_data.building.config import SECTIONS, BuildConfig
from realign_data.cli_audit import audit
from realign_data.cli_common import Commands, config_options, fail, with_options
from realign_data.cli_common import setup_logging as _setup_logging
from realign_data.cli_datasets import pope, push
from realign_data.cli_exports import export
from realign_data.cli_hub import hub_app
from realign_data.testing.sample_options import SampleConfig

app = typer.Typer(
    cls=Commands,
    name="realign-data",
    help="Build Re-Align dual-preference (text + image) datasets for VLM preference training.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print the realign version and exit.", is_eager=True),
    verbose: bool = typer.Option(
        False,
        "--verbose",
        "-v",
        help="Also show the libraries' warnings (open_clip, transformers, Python warnings), once each.",
    ),
) -> None:
    """Re-Align dual-preference datasets: sample corpus, image knowledge base, builder, inspection."""
    from realign_data.runtime.logs import set_verbose

    set_verbose(verbose)
    if version:
        from importlib.metadata import version as _v

        typer.echo(_v("realign"))
        raise typer.Exit()


def sample(**values) -> None:
    """Generate a small synthetic COCO-format corpus (images + instances + captions).

    Scenes of coloured shapes standing for COCO categories, with polygon segmentations and template
    captions naming objects, colours, counts and spatial relations. Serves demos, tests and benchmarks.
    The world options make a world where a model can hallucinate (docs/synthetic_world.md).
    """
    from realign_data.testing.sample import SampleCorpusError, make_sample_corpus

    config = SampleConfig(**values)
    try:
        root = make_sample_corpus(
            config.out,
            num_images=config.num_images,
            seed=config.seed,
            progress=not config.quiet,
            overwrite=config.overwrite,
            **config.world(),
        )
    except SampleCorpusError as e:
        fail(str(e))
    typer.echo(f"Wrote {config.num_images} images with instances and captions to {root}")


app.command()(with_options(sample, config_options(SampleConfig)))  # --out ... and the world options (--width, ...)


# ---------------------------------------------------------------- build / demo / inspect / merge
def _build_errors():
    from realign_data.building.config import BuildError
    from realign_data.building.fillers import FillerError
    from realign_data.building.gate import GateError
    from realign_data.building.seeds import SeedError
    from realign_data.testing.sample import SampleCorpusError

    return BuildError, FillerError, GateError, SeedError, SampleCorpusError


def _build(ctx: typer.Context, **values) -> None:
    """Build a Re-Align dual-preference dataset (mask → retrieve → fill → gate) in TRL's vision format."""
    from realign_data.building import builder
    from realign_data.building.config import BuildConfig

    push_repo, config_file = values.pop("push_to_hub"), values.pop("config_file")
    quiet = not values["progress"]
    _setup_logging(quiet)
    values = {k: (list(v) or None) if isinstance(v, (list, tuple)) else v for k, v in values.items()}
    if config_file:
        from realign_data.publish.hub import HubPushError, HubUsageError, load_build_config

        try:
            saved = load_build_config(config_file)
        except (HubPushError, HubUsageError) as e:
            fail(str(e), 1 if isinstance(e, HubPushError) else 2)
        typed = {k for k in values if getattr(ctx.get_parameter_source(k), "name", None) == "COMMANDLINE"}
        values = {**saved, **{k: v for k, v in values.items() if k in typed}}
    elif values["out"] is None:
        fail("--out is required (or give --config realign_build.json).")
    try:
        config = BuildConfig.from_dict(values)
    except (TypeError, *_build_errors()) as e:  # TypeError: a value of the wrong type in a --config file
        fail(f"{config_file}: {e}" if config_file else str(e))
    from realign_data.runtime.jobs import WaitTimeout

    try:
        result = builder.build(config)
    except _build_errors() as e:
        fail(str(e))
    except WaitTimeout as e:  # the other processes of a launched build stopped making progress
        fail(str(e), 1)
    if not result.complete or result.rank != 0:  # a --shard-index process (it logged what comes next), or rank > 0
        if push_repo and not result.complete:
            typer.echo(f"Not pushing to {push_repo}: this shard's chunks are done, the dataset is not written yet")
        return
    if result.pairs_written == 0:  # nothing to train on is a failed build, whatever the reason
        drops = ", ".join(f"{k} {v}" for k, v in result.drops.items()) or "no seeds were read"
        again = (
            " some seeds failed for a transient reason (the filler service): run the same command again once it answers"
            if result.report.get("drops_transient")
            else f" see {result.report_path}"
        )
        fail(f"the build wrote 0 pairs (dropped: {drops});{again}", 1)
    if not quiet:
        typer.echo(f"Dataset: {result.out} ({result.pairs_written} pairs); report: {result.report_path}")
    if push_repo:
        from realign_data.publish.hub import HubPushError, HubUsageError, push_to_hub

        try:
            res = push_to_hub(result.out, push_repo, progress=not quiet)
        except (HubPushError, HubUsageError) as e:
            fail(str(e), 1 if isinstance(e, HubPushError) else 2)
        if not quiet:
            typer.echo(f"Pushed to {getattr(res, 'url', push_repo)}")


with_options(
    _build,
    config_options(BuildConfig, sections=SECTIONS)
    + [
        pyinspect.Parameter(
            "push_to_hub",
            pyinspect.Parameter.KEYWORD_ONLY,
            annotation=Optional[str],
            default=typer.Option(
                None, "--push-to-hub", rich_help_panel="Run", help="Publish the result to this Hub dataset repo."
            ),
        ),
        pyinspect.Parameter(
            "config_file",
            pyinspect.Parameter.KEYWORD_ONLY,
            annotation=Optional[str],
            default=typer.Option(
                None,
                "--config",
                rich_help_panel="Run",
                help="Rebuild from a realign_build.json: a local file, or a Hub dataset "
                "id (namespace/name[:config]); options given on the command line "
                "override it.",
            ),
        ),
    ],
)
app.command("build")(_build)


@app.command()
def demo(
    out: Path = typer.Option(Path("realign-demo"), "--out", help="Directory for the corpus, index and dataset."),
    num_images: int = typer.Option(200, "--num-images", help="Images in the synthetic corpus."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the final summary."),
) -> None:
    """Run the main job end to end on a synthetic COCO corpus: corpus → index → dataset → HTML report."""
    import json

    from realign_data.building.report import format_summary
    from realign_data.testing.demo import run_demo

    _setup_logging(quiet)
    try:
        res = run_demo(out, num_images=num_images, seed=seed, progress=not quiet)
    except _build_errors() as e:
        fail(str(e))
    if quiet:  # otherwise the build logged it
        typer.echo(format_summary(json.loads(Path(res["report"]).read_text())))
    typer.echo(f"Dataset: {res['dataset']} ({res['pairs']} pairs)\nReport: {res['html']}")


@app.command()
def inspect(
    directory: Path = typer.Argument(..., help="A built dataset directory."),
    html: Optional[Path] = typer.Option(None, "--html", help="HTML file to write (default DIR/inspect.html)."),
    num: int = typer.Option(20, "-n", "--num", min=1, help="Pairs to show."),
    split: str = typer.Option("train", "--split", help="Split to show (curriculum builds: train, easy, medium, hard)."),
) -> None:
    """Write a self-contained HTML page showing pairs side by side (images inlined, changed words highlighted).

    Perturbation negatives (region-noise, crop, noise) show the original and the negative side by side with
    the kind and its parameters; region-noise outlines the perturbed region.
    """
    from realign_data.publish.inspect_page import write_inspect_html

    try:
        path = write_inspect_html(directory, html, num=num, split=split)
    except _build_errors() as e:
        fail(str(e))
    typer.echo(f"Wrote {path}")


@app.command()
def merge(
    shards: list[Path] = typer.Argument(..., help="Output directories of the shard builds (--num-shards N)."),
    out: Path = typer.Option(..., "--out", help="Directory for the merged dataset (new or empty)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No summary."),
) -> None:
    """Join shard builds made in separate directories (--num-shards N --shard-index I) into the dataset a single
    process would have written. Shards built into one shared --out need no merge: run the build command there
    again without --num-shards/--shard-index."""
    from realign_data.building.merge import merge as run_merge

    _setup_logging(quiet)
    try:
        report = run_merge([str(s) for s in shards], out, progress=not quiet)
    except _build_errors() as e:
        fail(str(e))
    if not quiet:
        typer.echo(f"Merged {len(shards)} shards into {out} ({report['pairs_written']} pairs)")


# ---------------------------------------------------------------- index: the image knowledge base
index_app = typer.Typer(
    cls=Commands, help="Build, inspect and query image knowledge bases (open_clip + FAISS).", no_args_is_help=True
)
app.add_typer(index_app, name="index")
app.add_typer(hub_app, name="hub")


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


@index_app.command("build")
def index_build(
    source: str = typer.Option(..., "--source", help="Corpus type: coco (also the sample corpus), folder or hf."),
    root: str = typer.Option(..., "--root", help="Corpus root directory, or a dataset dir/Hub id for --source hf."),
    name: Optional[str] = typer.Option(None, "--name", help="Store under $REALIGN_HOME/indexes/NAME."),
    out: Optional[Path] = typer.Option(None, "--out", help="Store in this directory instead of a named index."),
    model: str = typer.Option("ViT-B-32", "--model", help="open_clip model name, or an open_clip model-config JSON."),
    pretrained: str = typer.Option(
        "laion2b_s34b_b79k", "--pretrained", help="open_clip pretrained tag, local checkpoint path, or 'none' (random)."
    ),
    device: str = typer.Option(
        "auto", "--device", help="auto (cuda:LOCAL_RANK when CUDA is available, else cpu), cpu, cuda, cuda:N or mps."
    ),
    dtype: str = typer.Option(
        "auto", "--dtype", help="Encoder precision: auto (fp16 on CUDA, fp32 on the CPU), bf16, fp16 or fp32."
    ),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Images per forward pass."),
    num_workers: Optional[int] = typer.Option(
        None, "--num-workers", help="DataLoader workers decoding images (default: CPU cores, max 4)."
    ),
    shard_size: int = typer.Option(
        10_000, "--shard-size", min=1, help="Images per shard (unit of resume and of ranks)."
    ),
    index_type: str = typer.Option("auto", "--index-type", help="auto, or a FAISS factory string (e.g. IVF1024,Flat)."),
    target_recall: float = typer.Option(0.95, "--target-recall", help="recall@10 the search parameter is tuned to."),
    memory_budget: str = typer.Option("auto", "--memory-budget", help="Build RAM budget, e.g. 4GB (auto: half RAM)."),
    image_column: Optional[str] = typer.Option(None, "--image-column", help="Image column (--source hf)."),
    split: Optional[str] = typer.Option(None, "--split", help="Split: train2014 for coco; dataset split for hf."),
    streaming: bool = typer.Option(False, "--streaming", help="Stream the dataset (--source hf)."),
    min_side: int = typer.Option(2, "--min-side", min=1, help="Skip images whose shorter side is below this (pixels)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
) -> None:
    """Embed a corpus with open_clip and index it with FAISS (resumable; torchrun-aware)."""
    import time

    from realign_data.kb.corpus import CorpusError, open_source
    from realign_data.kb.encoder import EncoderError
    from realign_data.kb.knowledge_base import KnowledgeBaseError, index_dir_for_name
    from realign_data.kb.knowledge_base_build import build_knowledge_base
    from realign_data.kb.knowledge_base_check import remove_failed_stub
    from realign_data.runtime.jobs import WaitTimeout
    from realign_data.runtime.locks import OutputError

    _setup_logging(quiet)
    t0 = time.time()
    if (name is None) == (out is None):
        fail("give exactly one of --name (a named index under $REALIGN_HOME) or --out (a directory)")
    dest = None
    try:
        dest = index_dir_for_name(name) if name else out
        existed = Path(dest).exists()
        corpus = open_source(source, root, split=split, image_column=image_column, streaming=streaming)
        report = build_knowledge_base(
            corpus,
            dest,
            model=model,
            pretrained=pretrained,
            device=device,
            precision=dtype,
            batch_size=batch_size,
            num_workers=num_workers,
            shard_size=shard_size,
            min_side=min_side,
            index_type=index_type,
            target_recall=target_recall,
            memory_budget=memory_budget,
            progress=not quiet,
        )
    except (CorpusError, EncoderError, KnowledgeBaseError, OutputError) as e:
        if dest is not None and not isinstance(e, OutputError):  # no stub left to refuse the retry
            remove_failed_stub(Path(dest), existed)
        fail(e.advice() if isinstance(e, EncoderError) else str(e))
    except WaitTimeout as e:  # the other processes of a launched build stopped making progress
        fail(str(e), 1)
    if quiet or report.rank != 0:
        return
    typer.echo(f"Knowledge base: {report.path}")
    typer.echo(
        f"  images embedded: {report.count} ({report.embedded_now} this run, "
        f"{report.resumed_shards} of {report.num_shards} shards resumed)"
    )
    typer.echo(f"  skipped: {len(report.skipped)}")
    for id_, reason in report.skipped:
        typer.echo(f"    {id_}: {reason}")
    recall = f"{report.recall_at_10:.3f}" if report.recall_at_10 is not None else "n/a"
    params = ", ".join(f"{k}={v}" for k, v in report.search_params.items()) or "exact"
    typer.echo(
        f"  index: {report.factory} ({params}); recall@10 {recall} (target {report.target_recall})"
        + ("" if report.target_reached else "  [target NOT reached]")
    )
    typer.echo(f"  size on disk: {_human_bytes(report.size_bytes)}; time: {time.time() - t0:.1f} s")


@index_app.command("info")
def index_info(
    index: str = typer.Argument(None, help="Index name or directory (or use --name)."),
    name: Optional[str] = typer.Option(None, "--name", help="Index name or directory."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole manifest as JSON."),
) -> None:
    """Print an index's size, encoder, chosen FAISS index and the candidates auto measured (or the manifest with
    --json), after checking the files against it (sizes, checksums, row count): a damaged index exits 1 with what
    is wrong and how to rebuild it."""
    import json

    from realign_data.kb.index_auto import describe
    from realign_data.kb.knowledge_base import KnowledgeBaseError, resolve_index
    from realign_data.kb.knowledge_base_check import KnowledgeBaseDamaged, check_files, check_manifest

    target = name or index
    if not target:
        fail("give an index name or directory")
    try:
        path = resolve_index(target)
        manifest = check_manifest(path)
        check_files(path, manifest, verify=True)  # embedding shards too: a build reads them
    except KnowledgeBaseError as e:
        fail(str(e))
    except KnowledgeBaseDamaged as e:
        fail(str(e), 1)
    manifest["path"] = str(path)
    typer.echo(
        json.dumps(manifest, indent=2)
        if as_json
        else f"{path}: {manifest['count']} images, "
        f"{manifest['encoder']['model']} ({manifest['dim']}-d)\n{describe(manifest['index'])}"
    )


@index_app.command("search")
def index_search(
    name: str = typer.Option(..., "--name", "--index", help="Index name or directory."),
    image: Optional[Path] = typer.Option(None, "--image", help="Query image file."),
    text: Optional[str] = typer.Option(None, "--text", help="Query text."),
    id_: Optional[str] = typer.Option(None, "--id", help="Query by corpus id (uses the stored embedding)."),
    k: int = typer.Option(5, "-k", "--k", min=1, help="Number of hits."),
    max_similarity: float = typer.Option(
        0.95, "--max-similarity", min=0.0, max=1.0, help="Skip near-duplicates scoring above this (1 keeps all)."
    ),
    model: Optional[str] = typer.Option(None, "--model", help="Query encoder (default: the index's own)."),
    pretrained: Optional[str] = typer.Option(None, "--pretrained", help="Query encoder weights."),
) -> None:
    """Print the K most similar (but not near-identical) corpus images to an image, a text or an id."""
    from realign_data.kb.encoder import EncoderError
    from realign_data.kb.knowledge_base import KnowledgeBase, KnowledgeBaseCorrupt, KnowledgeBaseError

    if sum(x is not None for x in (image, text, id_)) != 1:
        fail("give exactly one of --image, --text or --id")
    if image is not None and not image.is_file():
        fail(f"query image {str(image)!r} does not exist")
    if image is not None:
        from realign_data.kb.corpus import open_image_file

        try:
            open_image_file(str(image))
        except Exception as e:  # noqa: BLE001 - PIL raises many types for what is not an image
            fail(
                f"query image {str(image)!r} is not an image PIL can read ({type(e).__name__}); give a JPEG, PNG, "
                "GIF, TIFF, WebP... file"
            )
    try:
        encoder = None
        if model or pretrained:
            from realign_data.kb.encoder import Encoder

            kb0 = KnowledgeBase.load(name)
            encoder = Encoder(
                model or kb0.manifest["encoder"]["model"], pretrained or kb0.manifest["encoder"]["pretrained"]
            )
        kb = KnowledgeBase.load(name, encoder=encoder)
        if id_ is not None:
            if id_ not in kb:
                fail(f"id {id_!r} is not in the index {name!r}")
            hits = kb.search([id_], k, kind="id", max_similarity=max_similarity)[0]
        elif image is not None:
            hits = kb.search([image], k, kind="image", max_similarity=max_similarity)[0]
        else:
            hits = kb.search([text], k, kind="text", max_similarity=max_similarity)[0]
    except (EncoderError, KnowledgeBaseError) as e:
        fail(str(e), 1 if isinstance(e, KnowledgeBaseCorrupt) else 2)
    for h in hits:
        path = kb.image_path(h.id)
        typer.echo(f"{h.rank:>3}  {h.score:.4f}  {h.id}" + (f"  {path}" if path and str(path) != h.id else ""))


@index_app.command("list")
def index_list() -> None:
    """List the named indexes under $REALIGN_HOME/indexes."""
    from realign_data.kb.knowledge_base import indexes_root, list_indexes

    entries = list_indexes()
    if not entries:
        typer.echo(f"No indexes under {indexes_root()}")
        return
    for e in entries:
        if e["complete"]:
            typer.echo(
                f"{e['name']:<20} {e.get('count', '?'):>9} images  {e.get('model')}  {e.get('factory')}  "
                f"recall@10 {e.get('recall')}  {e['path']}"
            )
        else:
            typer.echo(f"{e['name']:<20} (incomplete build)  {e['path']}")


app.command()(push)
app.command()(pope)
app.command()(audit)
app.command()(export)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
