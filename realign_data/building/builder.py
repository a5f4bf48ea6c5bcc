"""Build a Re-Align dual-preference dataset: seeds -> mask -> retrieve -> fill -> gate -> TRL-format rows.

    from realign_data import BuildConfig, build
    result = build(BuildConfig(index="coco", coco_root="data/coco", out="out/realign"))
    result.pairs_written, result.report_path

A build is a :class:`realign_data.runtime.jobs.Job` whose units are **chunks** of ``chunk_size`` consecutive seeds: the
:class:`~realign_data.building.pipeline.Pipeline` turns a chunk into rows, written as a Parquet file plus a marker under
``OUT/.realign-build/chunks/``. A re-run of the same command skips finished chunks, so a build killed at any point
(even ``kill -9``) resumes and ends with exactly the rows of an uninterrupted build. Every random choice is seeded
from ``seed`` and the seed id, and a chunk's composition never depends on where a run stopped, so the same inputs
give a byte-identical dataset. The finalisation (:func:`realign_data.building.output.write_dataset`) streams the chunk rows
into the dataset once and writes the report; images never outlive their chunk, so memory does not grow with the
number of seeds.

Several processes: chunk ``c`` belongs to process ``c % N``. Launched together (``torchrun``, ``accelerate
launch``: the launcher's rank and world size), every process writes its chunks under the one ``OUT``, waits for
the others (:meth:`realign_data.runtime.jobs.Job.barrier`), and rank 0 writes the dataset, the report and the card inputs
once while the others wait for them; the result is byte-identical to a single process's. With ``--num-shards N
--shard-index I`` (array jobs, which need not run at the same time) a process only writes its chunks; once every
shard has finished, the same command without ``--num-shards/--shard-index`` writes the dataset from them (or
:func:`realign_data.building.merge.merge`, for shards built into separate directories).
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

from realign_data.building.config import BuildConfig, BuildError
from realign_data.building.output import (
    CONFIG_FILE,
    PROVENANCE_FILE,
    REPORT_FILE,
    TRANSIENT_DROPS,
    WORK_DIR,
    read_chunks,
    write_chunk,
    write_dataset,
)
from realign_data.building.report import (
    BuildReport,
    Launch,
    Throughput,
    aggregate,
    curriculum_summary,
    format_summary,
    negative_summary,
    write_report,
)
from realign_data.building.separability import of_built as blind_separability_of_build
from realign_data.kb.splits import knowledge_base_evaluation_counts, seed_evaluation_counts, split_warning
from realign_data.runtime.atomic import atomic_write_json, file_sha256
from realign_data.runtime.devices import DeviceError, resolve_device
from realign_data.runtime.jobs import (
    Job,
    JobDirNotEmpty,
    JobMismatch,
    WaitTimeout,
    chunked,
    distributed,
    library_versions,
    process_group_backend,
)
from realign_data.runtime.locks import LockHeld, OutputError, output_lock

logger = logging.getLogger(__name__)

HEARTBEAT_FILE = "finalising"  # touched by rank 0 while it writes the dataset (the others wait for it)
KB_WAIT_TIMEOUT = 24 * 3600.0  # processes wait this long (without progress) for rank 0 to index the knowledge base
VERSIONED = ("realign", "datasets", "torch", "transformers", "sentence-transformers", "open_clip_torch", "faiss-cpu")
METHOD = "Re-Align (arXiv 2502.13146) dual-preference construction"


@dataclass
class BuildResult:
    out: str
    pairs_written: int
    seeds_read: int
    drops: dict[str, int]
    report_path: str
    report: BuildReport = field(default_factory=dict)  # build_report.json
    complete: bool = True  # False: a --shard-index process finished its chunks; the dataset is written later
    rank: int = 0  # this process's rank (or shard index); rank 0 reports, pushes and prints for a launched build

    @classmethod
    def of(cls, out: Path, report: BuildReport, rank: int = 0) -> BuildResult:
        return cls(str(out), report["pairs_written"], report["seeds_read"], report["drops"], str(out / REPORT_FILE),
                   report, rank=rank)


def shard_of(config: BuildConfig) -> tuple[int, int]:
    """``(num_shards, shard_index)``: the config's, else the launcher's world size and rank, else ``(1, 0)``."""
    num_shards, shard_index = config.num_shards, config.shard_index
    if num_shards is None:
        here = distributed()
        num_shards = here.world
        shard_index = here.rank if shard_index is None else shard_index
    shard_index = 0 if shard_index is None else shard_index
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise BuildError(f"shard index must be in [0, {num_shards}) and num shards >= 1; got {shard_index} of "
                         f"{num_shards}")
    return num_shards, shard_index


def build(config: BuildConfig) -> BuildResult:
    """Build (or resume) the dataset described by ``config``; see the module docstring. Raises
    :class:`~realign_data.runtime.locks.LockHeld` while another process builds into the same ``out``."""
    config.validate()
    t0 = time.time()
    _refuse_offline_knowledge_base(config)
    try:
        resolve_device(config.device)  # a device that is not there is the user's mistake: say so before any work
    except DeviceError as e:
        raise BuildError(str(e)) from None
    num_shards, shard_index = shard_of(config)
    out = Path(config.out).expanduser().resolve()
    try:  # one writer per share of --out (ranks and --shard-index processes of one build each lock theirs)
        with output_lock(out, "realign-data build", part=f"rank-{shard_index}" if shard_index else None):
            return _build(config, out, num_shards, shard_index, t0)
    except OutputError as e:
        raise BuildError(str(e)) from None


def _build(config: BuildConfig, out: Path, num_shards: int, shard_index: int, t0: float) -> BuildResult:
    from realign_data.building.pipeline import Pipeline

    together = config.num_shards is None and num_shards > 1  # launched together: wait, rank 0 finalises
    chatty = config.progress and not (together and shard_index)  # one voice per launched build
    kb = ensure_knowledge_base(config, chatty=chatty)
    annotations = _coco_annotations(config, kb)
    unannotated = annotations is None or kb.manifest.get("source", {}).get("type") != "coco"
    if config.filler == "annotation" and unannotated and (config.seeds or annotations is not None):  # else: no seeds
        raise BuildError(f"the annotation filler describes a retrieved image from its COCO instances and captions, "
                         f"and the images of knowledge base {config.index!r} have none: use --filler transformers or "
                         "--filler openai (with --model)")
    pipe = Pipeline(config, kb, annotations)
    try:
        resolved = {"gate": pipe.gate.describe()["gate"], "kb_manifest_sha256": file_sha256(kb.path / "manifest.json")}
        job = _open_job(out, config, resolved, num_shards, shard_index)
        report = complete_report(out)
        if report is not None and not (config.retry_failed and report.get("drops_transient")):
            if chatty:
                logger.info("%s is already complete (%d pairs); nothing to do", out, report["pairs_written"])
            return BuildResult.of(out, report, shard_index)
        if report is not None and chatty:
            logger.info("%s: retrying the %d seeds that failed for a transient reason", out, report["drops_transient"])
        seeds = _open_seeds(config, kb, annotations)
        if config.max_samples:
            seeds = itertools.islice(seeds, config.max_samples)
        bar = None
        if chatty:
            from tqdm.auto import tqdm

            bar = tqdm(total=config.max_samples, unit="seed", dynamic_ncols=True,
                       desc=f"building (rank 0 of {num_shards})" if together else "building")
        rows_now = 0

        def advance(n: int, mine: bool = False) -> None:  # a launched rank 0 counts only its own seeds
            if bar is not None and (mine or not together):
                bar.update(n)

        def retry_reason(meta: dict) -> Optional[str]:  # a finished chunk is done again for its transient drops
            n = sum(meta.get("drops", {}).get(k, 0) for k in TRANSIENT_DROPS)
            return f"retrying its {n} seeds that failed for a transient reason" if n and config.retry_failed else None

        def do_chunk(c: int, batch: list) -> tuple[dict, list[Path]]:
            nonlocal rows_now
            res = pipe.run(batch)
            write_chunk(job.path(c, ".parquet"), res.rows)
            rows_now += len(res.rows)
            advance(len(batch), mine=True)
            meta = {"chunk": c, "seeds": len(batch), "rows": len(res.rows), "drops": res.drops,
                    "failures": res.failures, "fills": res.fills, "fills_rejected": res.fills_rejected,
                    "first_seed": batch[0].id,
                    "evaluation_seeds": seed_evaluation_counts(batch, config.seed_split if config.seeds else None)}
            return meta, [job.path(c, ".parquet")]

        try:
            run = job.run(chunked(seeds, config.chunk_size), do_chunk, advance=advance, redo=retry_reason)
        finally:
            if bar is not None:
                bar.close()
        job.record_num_units(run.num_units)
        provenance = _provenance(config, kb, pipe)
        atomic_write_json(job.config_file.parent / PROVENANCE_FILE, provenance)
    finally:
        pipe.close()  # free the models (and their GPU memory) before waiting for the other processes
    work = run.seconds_working
    throughput: Throughput = {"seconds_total": round(time.time() - t0, 3), "seconds_building": round(work, 3),
                              "seeds_built_now": run.items_now, "pairs_built_now": rows_now,
                              "resumed_chunks": run.resumed, "redone_chunks": run.redone,
                              "pairs_per_second": round(rows_now / work, 3) if work else None,
                              "seeds_per_second": round(run.items_now / work, 3) if work else None}
    if num_shards > 1 and not together:
        return _shard_result(out, job, run.units, run.num_units, num_shards, shard_index, config.progress)

    def finalise() -> BuildReport:
        units = [(job.marker(c), job.path(c, ".parquet")) for c in range(run.num_units)]
        report = finalise_dataset(out, job.config_file.parent, config, units, provenance, launch(num_shards))
        report["throughput"] = {**throughput, "seconds_total": round(time.time() - t0, 3)}
        write_report(out, report)
        for c in range(run.num_units):  # the chunk rows are in the dataset now; the markers stay (re-run: no-op)
            if not report["drops_transient"]:  # else kept: a re-run redoes only the chunks with transient drops
                job.path(c, ".parquet").unlink(missing_ok=True)
        (job.config_file.parent / HEARTBEAT_FILE).unlink(missing_ok=True)
        return report

    if together:
        job.barrier(run.num_units, timeout=config.wait_timeout)
        report = job.finish(finalise, lambda: complete_report(out), timeout=config.wait_timeout,
                            heartbeat=job.config_file.parent / HEARTBEAT_FILE)
    else:
        report = finalise()
    if chatty:
        logger.info("%s", format_summary(report))
    return BuildResult.of(out, report, shard_index)


def build_dataset(**options: Any) -> BuildResult:
    """Keyword form of :func:`build`: ``build_dataset(index="coco", out="out", top_k=8, ...)``."""
    return build(BuildConfig.from_dict(options))


# ----------------------------------------------------------------------------------------- inputs
def _refuse_offline_knowledge_base(config: BuildConfig) -> None:
    """Offline with a knowledge base still to build from uncached weights: one sentence before any other work."""
    if not config.coco_root:
        return
    from realign_data.kb.encoder import DEFAULT_MODEL, DEFAULT_PRETRAINED, EncoderError, refuse_offline_download
    from realign_data.kb.knowledge_base import resolve_index

    try:
        if (resolve_index(config.index, must_exist=False) / "manifest.json").is_file():
            return
        refuse_offline_download(config.kb_model or DEFAULT_MODEL, config.kb_pretrained or DEFAULT_PRETRAINED)
    except EncoderError as e:
        raise BuildError(f"could not build knowledge base {config.index!r}: {e.advice('--kb-pretrained')}") from None
    except Exception:  # noqa: BLE001 - a bad --index etc.: said where the knowledge base is opened
        return


def ensure_knowledge_base(config: BuildConfig, *, chatty: Optional[bool] = None):
    """Open ``config.index``; build it from ``config.coco_root`` first when it does not exist yet.

    Under a multi-process launch every process embeds its share of the corpus and waits while rank 0 writes the
    index (:func:`~realign_data.kb.knowledge_base_build.build_knowledge_base`), so every process returns it."""
    from realign_data.kb.knowledge_base import (
        KnowledgeBase,
        KnowledgeBaseCorrupt,
        KnowledgeBaseError,
        is_index_name,
        resolve_index,
    )

    try:
        return KnowledgeBase.load(config.index)
    except KnowledgeBaseCorrupt as e:  # there is one, damaged: building "it now" is not the fix
        raise BuildError(str(e)) from None
    except KnowledgeBaseError as e:
        if not config.coco_root:
            raise BuildError(f"{e}; or pass --coco-root DIR to build it now") from None
    from realign_data.kb.corpus import CorpusError, open_source
    from realign_data.kb.encoder import DEFAULT_MODEL, DEFAULT_PRETRAINED
    from realign_data.kb.knowledge_base_build import build_knowledge_base
    from realign_data.kb.knowledge_base_check import remove_failed_stub

    path, existed = None, True
    try:
        path = resolve_index(config.index, must_exist=False)
        existed = path.exists()
        where = f"--name {config.index}" if is_index_name(config.index) and not Path(config.index).is_dir() \
            else f"--out {path}"
        from realign_data.kb.encoder import refuse_offline_download

        refuse_offline_download(config.kb_model or DEFAULT_MODEL, config.kb_pretrained or DEFAULT_PRETRAINED)
        if config.progress if chatty is None else chatty:
            logger.info("Knowledge base %r not found: building it from %s (same as 'realign-data index build "
                        "--source coco --root %s %s')", config.index, config.coco_root, config.coco_root, where)
        build_knowledge_base(open_source("coco", config.coco_root, split=config.coco_split), path,
                             model=config.kb_model or DEFAULT_MODEL,
                             pretrained=config.kb_pretrained or DEFAULT_PRETRAINED, device=config.device,
                             progress=config.progress, wait_timeout=max(config.wait_timeout, KB_WAIT_TIMEOUT))
        return KnowledgeBase.load(path)
    except (WaitTimeout, LockHeld):  # runtime failures (the others stopped making progress; another writer)
        raise
    except Exception as e:  # noqa: BLE001 - encoder weights unavailable etc.
        if path is not None and distributed().world == 1:
            remove_failed_stub(path, existed)  # a retry with other options must not find a stub in the way
        if isinstance(e, (KnowledgeBaseError, CorpusError)):
            raise BuildError(str(e)) from None
        from realign_data.kb.encoder import EncoderError

        advice = e.advice("--kb-pretrained") if isinstance(e, EncoderError) else str(e)
        raise BuildError(f"could not build knowledge base {config.index!r}: {advice}") from None


def _coco_annotations(config: BuildConfig, kb):
    from realign_data.kb.corpus import CocoAnnotations

    root = config.coco_root
    src = kb.manifest.get("source", {})
    if root is None and src.get("type") == "coco":
        root = src.get("root")
    if root is None or not Path(root).is_dir():
        return None
    from realign_data.kb.corpus import CorpusError

    try:
        ann = CocoAnnotations(root)
    except CorpusError as e:  # malformed or wrongly shaped annotation files
        raise BuildError(str(e)) from None
    return ann if len(ann) else None


def _open_seeds(config: BuildConfig, kb, annotations) -> Iterator:
    from realign_data.building.seeds import DESCRIPTION_PROMPTS, SeedError, coco_caption_seeds, dataset_seeds
    from realign_data.kb.splits import SplitError, SplitView, seed_splits

    try:
        if config.seeds:
            it = dataset_seeds(config.seeds, image_column=config.image_column,
                               instruction_column=config.instruction_column, chosen_column=config.chosen_column,
                               id_column=config.id_column, image_root=config.image_root, split=config.seed_split,
                               require_chosen=not config.chosen_from, kb_lookup=kb.id_for_path,
                               encoding=config.seeds_encoding, allow_outside_root=config.allow_outside_root)
        else:
            if annotations is None and config.coco_root:
                raise BuildError(f"the COCO root {config.coco_root!r} has no annotations/captions_*.json, so there "
                                 "are no caption seeds; add its captions, or give --seeds PATH (a dataset of image, "
                                 "instruction, chosen)")
            if annotations is None:
                raise BuildError(f"the knowledge base {config.index!r} is not a COCO corpus with captions; "
                                 "give --seeds PATH (a dataset of image, instruction, chosen)")
            try:
                chosen = seed_splits(annotations.splits, config.coco_split)
            except SplitError as e:
                raise BuildError(str(e)) from None
            it = coco_caption_seeds(annotations.root, prompts=config.prompts or DESCRIPTION_PROMPTS,
                                    caption=config.caption, seed=config.seed,
                                    annotations=SplitView(annotations, chosen),
                                    kb_id_for=kb.id_for_coco_image_id)
        first = next(it, None)  # surface column errors now, not mid-build
    except SeedError as e:
        raise BuildError(str(e)) from None
    if first is None:
        return iter(())
    return itertools.chain([first], it)


def _open_job(out: Path, config: BuildConfig, resolved: dict, num_shards: int, shard_index: int) -> Job:
    """The build's job in ``OUT/.realign-build``; refuses to mix different builds in one directory."""
    work = out / WORK_DIR
    job = Job(out, work / "chunks", "chunk", config_file=work / "config.json", rank=shard_index, world=num_shards,
              owned=lambda p: p.name == WORK_DIR)

    def upgrade(have: dict) -> dict:  # options added after a build started take their default values
        defaults = BuildConfig().semantic()
        resolved = {k: v for k, v in have.get("resolved", {}).items() if k != "num_shards"}  # no longer a factor
        return {**have, "config": {**{k: v for k, v in defaults.items() if k not in have.get("config", {})},
                                   **have.get("config", {})}, "resolved": resolved}

    try:
        job.open({"config": config.semantic(), "resolved": resolved}, upgrade=upgrade)
    except JobMismatch as e:
        names = [d.split(".", 1)[1] + (" (resolved)" if d.startswith("resolved.") else "") for d in e.differences]
        raise BuildError(f"{out} holds a build made with other arguments (differs in: {', '.join(names)}); "
                         "use a new --out directory or the same arguments to resume") from None
    except JobDirNotEmpty:
        raise BuildError(f"output directory {out} exists and is not a realign build; choose an empty or new "
                         "--out") from None
    return job


# ------------------------------------------------------------------------------------------ outputs
def _provenance(config: BuildConfig, kb, pipe) -> dict:
    enc = dict(kb.manifest.get("encoder", {}))
    stages = pipe.describe()
    fallback = getattr(pipe.gate, "fallback_reason", None)
    kb_eval = knowledge_base_evaluation_counts(kb.path)
    kb_warning = split_warning("the knowledge base's images (retrieved images, rejected_images)", kb_eval,
                               "rebuild it from train2014 only (--coco-split train2014)")
    return {
        "method": METHOD,
        "knowledge_base": {"path": str(kb.path), "count": len(kb), "source": kb.manifest.get("source"),
                           "encoder": enc, "random_encoder": enc.get("pretrained") in ("none", None),
                           "evaluation_splits": kb_eval},
        "seeds": config.seeds or "coco-captions",
        **stages,
        "warnings": [w for w in (fallback, kb_warning) if w],
        "versions": library_versions(VERSIONED),
    }


def complete_report(out: Path) -> Optional[BuildReport]:
    """The report of the finished build in ``out``, or None while the dataset is not (fully) written."""
    try:
        report = json.loads((out / REPORT_FILE).read_text())
    except (FileNotFoundError, ValueError):  # absent, or (another node's view of) a file being replaced
        return None
    return report if report.get("complete") else None


def launch(processes: int) -> Launch:
    """How a build ran, for its report: processes, and the ``torch.distributed`` backend when one synchronised them."""
    return {"processes": processes, "process_group": process_group_backend() if processes > 1 else None}


def finalise_dataset(out: Path, work: Path, config: BuildConfig, units: list[tuple[dict, Path]], provenance: dict,
                     launch: Optional[Launch] = None) -> BuildReport:
    """Write the dataset of every chunk (``(marker, parquet file)`` in chunk order, each read once) into ``out``
    and return its report (without throughput). Rank 0 of a build and :func:`realign_data.building.merge.merge` call it."""
    heartbeat = work / HEARTBEAT_FILE

    def tables():
        for table in read_chunks(path for _, path in units):
            heartbeat.touch()  # processes waiting for the dataset see rank 0 at work
            yield table

    salt = json.dumps(config.semantic(), sort_keys=True)
    n, split_info, stats = write_dataset(out, work, tables(), config.format, salt, config.curriculum)
    metas = [m for m, _ in units]
    report = BuildReport(**aggregate(metas, stats))
    report["blind_separability"] = blind_separability_of_build(out, config.seed)  # text-only classifier, held out
    seed_warning = split_warning("the seeds (images, chosen answers)", report["evaluation_seeds"],
                                 "build from train2014 seeds (--coco-split train2014) or other --seeds")
    if seed_warning:
        provenance = {**provenance, "warnings": [*provenance.get("warnings", []), seed_warning]}
    if report["pairs_written"] != n:
        raise BuildError(f"{out}: the chunk markers count {report['pairs_written']} rows but the chunk files hold "
                         f"{n}; delete {work} and build again")
    report.update({
        "complete": True, "format": config.format, "launch": launch or {"processes": 1, "process_group": None},
        "chunks": [[m["chunk"], m["rows"]] for m in metas], "chunk_size": config.chunk_size,
        "image_negative": negative_summary(config),
        "row_order": config.curriculum or "seed",
        "curriculum": curriculum_summary(config, split_info),
        "config": config.to_dict(), "provenance": provenance,
    })
    atomic_write_json(out / CONFIG_FILE, config.to_dict())
    return report


def _shard_result(out: Path, job: Job, units: list[int], num_units: int, num_shards: int, shard_index: int,
                  progress: bool) -> BuildResult:
    """What a ``--shard-index`` process did: its chunks are done; the dataset is written once all shards are."""
    report = BuildReport(**aggregate([job.marker(c) for c in units], {}))
    missing = job.missing(num_units)
    report.update({"complete": False, "shard": {"index": shard_index, "num_shards": num_shards},
                   "chunks": len(units), "chunks_missing": len(missing), "num_chunks": num_units})
    if progress:
        logger.info("Shard %d of %d: %d chunks done (%d pairs) under %s; %s.", shard_index, num_shards, len(units),
                    report["pairs_written"], out / WORK_DIR, shard_next_step(len(missing)))
    return BuildResult(str(out), report["pairs_written"], report["seeds_read"], report["drops"], "", report,
                       complete=False, rank=shard_index)


def shard_next_step(missing: int) -> str:
    """What to do after a ``--shard-index`` process (one sentence)."""
    what = (f"{missing} chunk(s) of other shards are still to be built" if missing
            else "every chunk of the build is done")
    return (f"{what}; once every shard has finished, run the same command without --num-shards/--shard-index to "
            "write the dataset")
