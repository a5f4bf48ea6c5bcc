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


# ---------------------------------------------------------------- build / demo / inspect / merge
def _build_errors():
    from realign_data.builder import BuildError
    from realign_data.fillers import FillerError
    from realign_data.gate import GateError
    from realign_data.seeds import SeedError

    from realign_data.sample import SampleCorpusError

    return BuildError, FillerError, GateError, SeedError, SampleCorpusError


def _config_from_file(ctx: typer.Context, config_file: str, cli_config):
    """``build --config``: the saved BuildConfig, overridden by the options typed on the command line."""
    from realign_data.builder import BuildConfig, BuildError
    from realign_data.hub import HubPushError, HubUsageError, load_build_config

    try:
        saved = load_build_config(config_file)
    except (HubPushError, HubUsageError) as e:
        fail(str(e), 1 if isinstance(e, HubPushError) else 2)
    rename = {"fmt": "format", "quiet": "progress", "config_file": None, "push_to_hub": None}
    typed = {rename.get(n, n) for n in ctx.params
             if getattr(ctx.get_parameter_source(n), "name", None) == "COMMANDLINE"} - {None}
    given = cli_config.to_dict()
    try:
        return BuildConfig.from_dict({**saved, **{k: v for k, v in given.items() if k in typed}})
    except (BuildError, TypeError) as e:
        fail(f"{config_file}: {e}")


@app.command()
def build(
    ctx: typer.Context,
    index: str = typer.Option("coco", "--index", help="Knowledge base name (under $REALIGN_HOME/indexes) or directory."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output directory (resumes when it holds the same build); required unless --config gives it."),
    coco_root: Optional[str] = typer.Option(None, "--coco-root", help="COCO root; builds --index from it when missing."),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="Seed dataset: .jsonl/.json/.parquet/.csv, save_to_disk dir or Hub id (default: COCO captions)."),
    seed_split: Optional[str] = typer.Option(None, "--seed-split", help="Split of the seed dataset."),
    image_column: Optional[str] = typer.Option(None, "--image-column", help="Seed image column (path or Image)."),
    instruction_column: Optional[str] = typer.Option(None, "--instruction-column", help="Seed instruction column."),
    chosen_column: Optional[str] = typer.Option(None, "--chosen-column", help="Seed chosen-answer column."),
    id_column: Optional[str] = typer.Option(None, "--id-column", help="Seed id column (default: row number)."),
    image_root: Optional[str] = typer.Option(None, "--image-root", help="Directory seed image paths are relative to."),
    caption: str = typer.Option("longest", "--caption", help="COCO seeds: chosen caption = longest, random or all."),
    chosen_from: Optional[str] = typer.Option(None, "--chosen-from", help="VLM that writes missing chosen answers."),
    filler: str = typer.Option("annotation", "--filler", help="annotation (model-free), transformers or openai."),
    masker: str = typer.Option("lexicon", "--masker", help="lexicon (model-free), or model: the filler's model marks the visual facts (lexicon as fallback)."),
    model: Optional[str] = typer.Option(None, "--model", help="Filler model: checkpoint / Hub id, or served model name."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1."),
    api_key_env: str = typer.Option("OPENAI_API_KEY", "--api-key-env", help="Environment variable holding the API key."),
    concurrency: int = typer.Option(16, "--concurrency", help="OpenAI filler: requests in flight."),
    max_retries: int = typer.Option(5, "--max-retries", help="OpenAI filler: retries on 429/5xx/timeouts."),
    max_new_tokens: int = typer.Option(128, "--max-new-tokens", help="VLM fillers: generation bound."),
    batch_size: int = typer.Option(8, "--batch-size", help="Transformers filler: prompts per generate call."),
    device: str = typer.Option("cpu", "--device", help="Transformers filler device."),
    top_k: int = typer.Option(8, "--top-k", help="Retrieved images tried per seed, most similar first."),
    gate: str = typer.Option("auto", "--gate", help="auto (sentence model, else lexical), sentence or lexical."),
    gate_model: str = typer.Option("sentence-transformers/all-MiniLM-L6-v2", "--gate-model", help="SentenceTransformer of the gate."),
    sim_threshold: float = typer.Option(0.95, "--sim-threshold", help="Accept a fill when its similarity is below this."),
    image_negative: str = typer.Option("retrieval", "--image-negative", help="Rejected image: retrieval (Re-Align), region-noise (MFPO), crop (mDPO) or noise (POVID)."),
    noise_step: int = typer.Option(500, "--noise-step", help="region-noise/noise: forward-diffusion step t of 1000."),
    noise_schedule: str = typer.Option("linear", "--noise-schedule", help="region-noise/noise: beta schedule, linear (DDPM) or cosine."),
    crop_min_area: float = typer.Option(0.01, "--crop-min-area", help="crop: smallest area fraction kept."),
    crop_max_area: float = typer.Option(0.2, "--crop-max-area", help="crop: largest area fraction kept."),
    difficulty_image_weight: float = typer.Option(0.5, "--difficulty-image-weight", help="Weight of image closeness in the difficulty score."),
    curriculum: Optional[str] = typer.Option(None, "--curriculum", help="easy-to-hard: order rows by difficulty and also write easy/medium/hard splits."),
    max_samples: Optional[int] = typer.Option(None, "--max-samples", help="Use only the first N seeds."),
    seed: int = typer.Option(0, "--seed", help="Seed of every random choice (same seed = same bytes)."),
    num_shards: Optional[int] = typer.Option(None, "--num-shards", help="Split seeds over N processes (default: WORLD_SIZE)."),
    shard_index: Optional[int] = typer.Option(None, "--shard-index", help="This process's shard (default: RANK)."),
    chunk_size: int = typer.Option(64, "--chunk-size", help="Seeds per checkpoint."),
    fmt: str = typer.Option("arrow", "--format", help="arrow (save_to_disk) or parquet (data/*.parquet shards)."),
    push_to_hub: Optional[str] = typer.Option(None, "--push-to-hub", help="Publish the result to this Hub dataset repo."),
    config_file: Optional[str] = typer.Option(None, "--config", help="Rebuild from a realign_build.json: a local file, or a Hub dataset id (namespace/name[:config]); options given on the command line override it."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
) -> None:
    """Build a Re-Align dual-preference dataset (mask → retrieve → fill → gate) in TRL's vision format."""
    from realign_data.builder import BuildConfig
    from realign_data.builder import build as run_build

    hub_push = None
    if push_to_hub:
        from realign_data.hub import push_to_hub as hub_push
    config = BuildConfig(
        index=index, out=str(out), coco_root=coco_root, seeds=seeds, seed_split=seed_split, image_column=image_column,
        instruction_column=instruction_column, chosen_column=chosen_column, id_column=id_column,
        image_root=image_root, caption=caption, chosen_from=chosen_from, filler=filler, masker=masker, model=model,
        base_url=base_url, api_key_env=api_key_env, concurrency=concurrency, max_retries=max_retries,
        max_new_tokens=max_new_tokens, batch_size=batch_size, device=device, top_k=top_k, gate=gate,
        gate_model=gate_model, sim_threshold=sim_threshold, image_negative=image_negative, noise_step=noise_step,
        noise_schedule=noise_schedule, crop_min_area=crop_min_area, crop_max_area=crop_max_area,
        difficulty_image_weight=difficulty_image_weight,
        curriculum=None if (curriculum or "none").lower() == "none" else curriculum, max_samples=max_samples, seed=seed,
        num_shards=num_shards, shard_index=shard_index, chunk_size=chunk_size, format=fmt, progress=not quiet)
    if config_file:
        config = _config_from_file(ctx, config_file, config)
    elif out is None:
        fail("--out is required (or give --config realign_build.json).")
    try:
        result = run_build(config)
    except _build_errors() as e:
        fail(str(e))
    if not quiet:
        typer.echo(f"Dataset: {result.out} ({result.pairs_written} pairs); report: {result.report_path}")
    if hub_push is not None:
        from realign_data.hub import HubPushError, HubUsageError

        try:
            res = hub_push(result.out, push_to_hub, progress=not quiet)
        except (HubPushError, HubUsageError) as e:
            fail(str(e), 1 if isinstance(e, HubPushError) else 2)
        if not quiet:
            typer.echo(f"Pushed to {getattr(res, 'url', push_to_hub)}")


@app.command()
def demo(
    out: Path = typer.Option(Path("realign-demo"), "--out", help="Directory for the corpus, index and dataset."),
    num_images: int = typer.Option(200, "--num-images", help="Images in the synthetic corpus."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the final summary."),
) -> None:
    """Run the main job end to end on a synthetic COCO corpus: corpus → index → dataset → HTML report."""
    from realign_data.builder import run_demo

    try:
        res = run_demo(out, num_images=num_images, seed=seed, progress=not quiet)
    except _build_errors() as e:
        fail(str(e))
    typer.echo(f"Dataset: {res['dataset']} ({res['pairs']} pairs)\nReport: {res['html']}")


@app.command()
def inspect(
    directory: Path = typer.Argument(..., help="A built dataset directory."),
    html: Optional[Path] = typer.Option(None, "--html", help="HTML file to write (default DIR/inspect.html)."),
    num: int = typer.Option(20, "-n", "--num", help="Pairs to show."),
    split: str = typer.Option("train", "--split", help="Split to show (curriculum builds: train, easy, medium, hard)."),
) -> None:
    """Write a self-contained HTML page showing pairs side by side (images inlined, changed words highlighted).

    Perturbation negatives (region-noise, crop, noise) show the original and the negative side by side with
    the kind and its parameters; region-noise outlines the perturbed region.
    """
    from realign_data.report import write_inspect_html

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
    """Join the outputs of a sharded build into the dataset a single process would have written."""
    from realign_data.builder import merge as run_merge

    try:
        report = run_merge([str(s) for s in shards], out, progress=not quiet)
    except _build_errors() as e:
        fail(str(e))
    if not quiet:
        typer.echo(f"Merged {len(shards)} shards into {out} ({report['pairs_written']} pairs)")


# ---------------------------------------------------------------- index: the image knowledge base
index_app = typer.Typer(help="Build, inspect and query image knowledge bases (open_clip + FAISS).",
                        no_args_is_help=True)
app.add_typer(index_app, name="index")


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
    model: str = typer.Option("ViT-B-32", "--model", help="open_clip model name, realign-tiny-clip, or config JSON."),
    pretrained: str = typer.Option("laion2b_s34b_b79k", "--pretrained",
                                   help="open_clip pretrained tag, local checkpoint path, or 'none' (random)."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when available), cpu, cuda, cuda:1 ..."),
    batch_size: int = typer.Option(64, "--batch-size", help="Images per forward pass."),
    num_workers: Optional[int] = typer.Option(None, "--num-workers",
                                              help="DataLoader workers decoding images (default: CPU cores, max 4)."),
    shard_size: int = typer.Option(10_000, "--shard-size", help="Images per shard (unit of resume and of ranks)."),
    index_type: str = typer.Option("auto", "--index-type", help="auto, or a FAISS factory string (e.g. IVF1024,Flat)."),
    target_recall: float = typer.Option(0.95, "--target-recall", help="recall@10 the search parameter is tuned to."),
    memory_budget: str = typer.Option("auto", "--memory-budget", help="Index RAM budget, e.g. 4GB (auto: half RAM)."),
    image_column: Optional[str] = typer.Option(None, "--image-column", help="Image column (--source hf)."),
    split: Optional[str] = typer.Option(None, "--split", help="Split: train2014 for coco; dataset split for hf."),
    streaming: bool = typer.Option(False, "--streaming", help="Stream the dataset (--source hf)."),
    min_side: int = typer.Option(2, "--min-side", help="Skip images whose shorter side is below this (pixels)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
) -> None:
    """Embed a corpus with open_clip and index it with FAISS (resumable; torchrun-aware)."""
    import time

    from realign_data.corpus import CorpusError, open_source
    from realign_data.encoder import EncoderError
    from realign_data.knowledge_base import KnowledgeBaseError, build_knowledge_base, index_dir_for_name

    t0 = time.time()
    if (name is None) == (out is None):
        fail("give exactly one of --name (a named index under $REALIGN_HOME) or --out (a directory)")
    try:
        dest = index_dir_for_name(name) if name else out
        corpus = open_source(source, root, split=split, image_column=image_column, streaming=streaming)
        report = build_knowledge_base(
            corpus, dest, model=model, pretrained=pretrained, device=device, batch_size=batch_size,
            num_workers=num_workers, shard_size=shard_size, min_side=min_side, index_type=index_type,
            target_recall=target_recall, memory_budget=memory_budget, progress=not quiet)
    except (CorpusError, EncoderError, KnowledgeBaseError) as e:
        fail(str(e))
    if quiet or report.rank != 0:
        return
    typer.echo(f"Knowledge base: {report.path}")
    typer.echo(f"  images embedded: {report.count} ({report.embedded_now} this run, "
               f"{report.resumed_shards} of {report.num_shards} shards resumed)")
    typer.echo(f"  skipped: {len(report.skipped)}")
    for id_, reason in report.skipped:
        typer.echo(f"    {id_}: {reason}")
    recall = f"{report.recall_at_10:.3f}" if report.recall_at_10 is not None else "n/a"
    params = ", ".join(f"{k}={v}" for k, v in report.search_params.items()) or "exact"
    typer.echo(f"  index: {report.factory} ({params}); recall@10 {recall} (target {report.target_recall})"
               + ("" if report.target_reached else "  [target NOT reached]"))
    typer.echo(f"  size on disk: {_human_bytes(report.size_bytes)}; time: {time.time() - t0:.1f} s")


@index_app.command("info")
def index_info(
    index: str = typer.Argument(None, help="Index name or directory (or use --name)."),
    name: Optional[str] = typer.Option(None, "--name", help="Index name or directory."),
) -> None:
    """Print an index's manifest (JSON)."""
    import json

    from realign_data.knowledge_base import KnowledgeBaseError, resolve_index

    target = name or index
    if not target:
        fail("give an index name or directory")
    try:
        path = resolve_index(target)
    except KnowledgeBaseError as e:
        fail(str(e))
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["path"] = str(path)
    typer.echo(json.dumps(manifest, indent=2))


@index_app.command("search")
def index_search(
    name: str = typer.Option(..., "--name", "--index", help="Index name or directory."),
    image: Optional[Path] = typer.Option(None, "--image", help="Query image file."),
    text: Optional[str] = typer.Option(None, "--text", help="Query text."),
    id_: Optional[str] = typer.Option(None, "--id", help="Query by corpus id (uses the stored embedding)."),
    k: int = typer.Option(5, "-k", "--k", help="Number of hits."),
    max_similarity: float = typer.Option(0.95, "--max-similarity",
                                         help="Skip near-duplicates scoring above this (1 keeps all)."),
    model: Optional[str] = typer.Option(None, "--model", help="Query encoder (default: the index's own)."),
    pretrained: Optional[str] = typer.Option(None, "--pretrained", help="Query encoder weights."),
) -> None:
    """Print the K most similar (but not near-identical) corpus images to an image, a text or an id."""
    from realign_data.encoder import EncoderError
    from realign_data.knowledge_base import KnowledgeBase, KnowledgeBaseError

    if sum(x is not None for x in (image, text, id_)) != 1:
        fail("give exactly one of --image, --text or --id")
    if image is not None and not image.is_file():
        fail(f"query image {str(image)!r} does not exist")
    try:
        encoder = None
        if model or pretrained:
            from realign_data.encoder import Encoder

            kb0 = KnowledgeBase.load(name)
            encoder = Encoder(model or kb0.manifest["encoder"]["model"],
                              pretrained or kb0.manifest["encoder"]["pretrained"])
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
        fail(str(e))
    for h in hits:
        path = kb.image_path(h.id)
        typer.echo(f"{h.rank:>3}  {h.score:.4f}  {h.id}" + (f"  {path}" if path and str(path) != h.id else ""))


@index_app.command("list")
def index_list() -> None:
    """List the named indexes under $REALIGN_HOME/indexes."""
    from realign_data.knowledge_base import indexes_root, list_indexes

    entries = list_indexes()
    if not entries:
        typer.echo(f"No indexes under {indexes_root()}")
        return
    for e in entries:
        if e["complete"]:
            typer.echo(f"{e['name']:<20} {e.get('count', '?'):>9} images  {e.get('model')}  {e.get('factory')}  "
                       f"recall@10 {e.get('recall')}  {e['path']}")
        else:
            typer.echo(f"{e['name']:<20} (incomplete build)  {e['path']}")


@app.command()
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
    license: Optional[str] = typer.Option(None, "--license", help="Card licence id (default: corpus licence, else other)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Publish a built dataset to the Hugging Face Hub with its build config, report and a dataset card.

    Uploads Parquet shards (images embedded), realign_build.json / build_report.json / index_manifest.json next to
    the data, and merges the dataset card with the one already on the Hub. The local directory is only read.
    """
    from realign_data.hub import HubPushError, HubUsageError, push_to_hub

    try:
        res = push_to_hub(directory, repo_id, private=private, revision=revision, config_name=config_name,
                          split=split, token=token, max_shard_size=max_shard_size, commit_message=commit_message,
                          license=license, progress=not quiet)
    except HubUsageError as e:
        fail(str(e), 2)
    except HubPushError as e:
        fail(str(e), 1)
    rows = ", ".join(f"{s}: {n} pairs" for s, n in res.splits.items())
    typer.echo(f"Pushed {rows} to {res.repo_id} (config {res.config_name}, branch {res.revision}): {res.url}")


@app.command()
def pope(
    coco_root: Path = typer.Option(..., "--coco-root", help="COCO-layout corpus with instance annotations (MS-COCO, or `realign-data sample`)."),
    out: Path = typer.Option(..., "--out", help="Directory for the question set (replaced if it holds one)."),
    split: Optional[str] = typer.Option(None, "--split", help="Annotated split, e.g. val2014 (default: the only one with instances)."),
    num_images: int = typer.Option(500, "--num-images", help="Images to ask about (POPE: 500)."),
    objects_per_image: int = typer.Option(3, "--objects-per-image", help="Objects asked about per image, and as many absent ones (POPE: 3)."),
    min_objects: int = typer.Option(3, "--min-objects", help="Only images with at least this many annotated categories (POPE: 3)."),
    samplings: str = typer.Option("random,popular,adversarial", "--samplings", help="Negative samplings, one split each."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed = same question set, byte for byte)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
) -> None:
    """Build a POPE question set: 'Is there a {object} in the image?' about annotated and absent objects.

    Absent objects follow POPE's three negative samplings (random, popular = most frequent categories of the corpus, adversarial = most co-occurring with the asked object); see docs/evaluation.md.

    Writes a `datasets` DatasetDict with one split per sampling (images embedded), pushable with `realign-data push`.
    """
    from realign_data.pope import PopeError, build_pope

    try:
        built = build_pope(coco_root, out, split=split, num_images=num_images, seed=seed,
                           objects_per_image=objects_per_image, min_objects=min_objects,
                           samplings=[s.strip() for s in samplings.split(",") if s.strip()], progress=not quiet)
    except PopeError as e:
        fail(str(e))
    if not quiet:
        rep = built.report
        counts = ", ".join(f"{s}: {n}" for s, n in rep.questions.items())
        typer.echo(f"POPE question set: {rep.images} images of split {built.config.split} ({counts} questions) "
                   f"in {out}")
        if rep.images < num_images:
            typer.echo(f"  only {rep.eligible_images} images have at least {min_objects} annotated categories"
                       + (f" ({len(rep.skipped)} unreadable, skipped)" if rep.skipped else ""))
        elif rep.skipped:
            typer.echo(f"  {len(rep.skipped)} unreadable images skipped (listed in build_report.json)")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
