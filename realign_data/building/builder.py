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
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from realign_data.building.build_inputs import (
    coco_annotations,
    ensure_knowledge_base,
    open_seeds,
    refuse_offline_knowledge_base,
)
from realign_data.building.config import BuildConfig, BuildError
from realign_data.building.finalise import HEARTBEAT_FILE, complete_report, finalise_dataset, launch, provenance_of
from realign_data.building.output import (
    PROVENANCE_FILE,
    REPORT_FILE,
    TRANSIENT_DROPS,
    WORK_DIR,
    write_chunk,
)
from realign_data.building.report import (
    BuildReport,
    Throughput,
    aggregate,
    format_summary,
    write_report,
)
from realign_data.kb.splits import seed_evaluation_counts
from realign_data.runtime.atomic import atomic_write_json, file_sha256
from realign_data.runtime.devices import DeviceError, resolve_device
from realign_data.runtime.jobs import (
    Job,
    JobDirNotEmpty,
    JobMismatch,
    chunked,
    distributed,
)
from realign_data.runtime.locks import OutputError, output_lock

logger = logging.getLogger(__name__)


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
        return cls(
            str(out),
            report["pairs_written"],
            report["seeds_read"],
            report["drops"],
            str(out / REPORT_FILE),
            report,
            rank=rank,
        )


def shard_of(config: BuildConfig) -> tuple[int, int]:
    """``(num_shards, shard_index)``: the config's, else the launcher's world size and rank, else ``(1, 0)``."""
    num_shards, shard_index = config.num_shards, config.shard_index
    if num_shards is None:
        here = distributed()
        num_shards = here.world
        shard_index = here.rank if shard_index is None else shard_index
    shard_index = 0 if shard_index is None else shard_index
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise BuildError(
            f"shard index must be in [0, {num_shards}) and num shards >= 1; got {shard_index} of {num_shards}"
        )
    return num_shards, shard_index


def build(config: BuildConfig) -> BuildResult:
    """Build (or resume) the dataset described by ``config``; see the module docstring. Raises
    :class:`~realign_data.runtime.locks.LockHeld` while another process builds into the same ``out``."""
    config.validate()
    t0 = time.time()
    refuse_offline_knowledge_base(config)
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
    annotations = coco_annotations(config, kb)
    unannotated = annotations is None or kb.manifest.get("source", {}).get("type") != "coco"
    if config.filler == "annotation" and unannotated and (config.seeds or annotations is not None):  # else: no seeds
        raise BuildError(
            f"the annotation filler describes a retrieved image from its COCO instances and captions, "
            f"and the images of knowledge base {config.index!r} have none: use --filler transformers or "
            "--filler openai (with --model)"
        )
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
        seeds = open_seeds(config, kb, annotations)
        if config.max_samples:
            seeds = itertools.islice(seeds, config.max_samples)
        bar = None
        if chatty:
            from tqdm.auto import tqdm

            bar = tqdm(
                total=config.max_samples,
                unit="seed",
                dynamic_ncols=True,
                desc=f"building (rank 0 of {num_shards})" if together else "building",
            )
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
            write_chunk(job.path(c, ".parquet"), res.rows, onpolicy=pipe.policy is not None)
            rows_now += len(res.rows)
            advance(len(batch), mine=True)
            meta = {
                "chunk": c,
                "seeds": len(batch),
                "rows": len(res.rows),
                "drops": res.drops,
                "failures": res.failures,
                "fills": res.fills,
                "fills_rejected": res.fills_rejected,
                "first_seed": batch[0].id,
                "evaluation_seeds": seed_evaluation_counts(batch, config.seed_split if config.seeds else None),
                **({"onpolicy": res.onpolicy} if res.onpolicy is not None else {}),
            }
            return meta, [job.path(c, ".parquet")]

        try:
            run = job.run(chunked(seeds, config.chunk_size), do_chunk, advance=advance, redo=retry_reason)
        finally:
            if bar is not None:
                bar.close()
        job.record_num_units(run.num_units)
        provenance = provenance_of(config, kb, pipe)
        atomic_write_json(job.config_file.parent / PROVENANCE_FILE, provenance)
    finally:
        pipe.close()  # free the models (and their GPU memory) before waiting for the other processes
    work = run.seconds_working
    throughput: Throughput = {
        "seconds_total": round(time.time() - t0, 3),
        "seconds_building": round(work, 3),
        "seeds_built_now": run.items_now,
        "pairs_built_now": rows_now,
        "resumed_chunks": run.resumed,
        "redone_chunks": run.redone,
        "pairs_per_second": round(rows_now / work, 3) if work else None,
        "seeds_per_second": round(run.items_now / work, 3) if work else None,
    }
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
        report = job.finish(
            finalise,
            lambda: complete_report(out),
            timeout=config.wait_timeout,
            heartbeat=job.config_file.parent / HEARTBEAT_FILE,
        )
    else:
        report = finalise()
    if chatty:
        logger.info("%s", format_summary(report))
    return BuildResult.of(out, report, shard_index)


def build_dataset(**options: Any) -> BuildResult:
    """Keyword form of :func:`build`: ``build_dataset(index="coco", out="out", top_k=8, ...)``."""
    return build(BuildConfig.from_dict(options))


def _open_job(out: Path, config: BuildConfig, resolved: dict, num_shards: int, shard_index: int) -> Job:
    """The build's job in ``OUT/.realign-build``; refuses to mix different builds in one directory."""
    work = out / WORK_DIR
    job = Job(
        out,
        work / "chunks",
        "chunk",
        config_file=work / "config.json",
        rank=shard_index,
        world=num_shards,
        owned=lambda p: p.name == WORK_DIR,
    )

    def upgrade(have: dict) -> dict:  # options added after a build started take their default values
        defaults = BuildConfig().semantic()
        resolved = {k: v for k, v in have.get("resolved", {}).items() if k != "num_shards"}  # no longer a factor
        return {
            **have,
            "config": {
                **{k: v for k, v in defaults.items() if k not in have.get("config", {})},
                **have.get("config", {}),
            },
            "resolved": resolved,
        }

    try:
        job.open({"config": config.semantic(), "resolved": resolved}, upgrade=upgrade)
    except JobMismatch as e:
        names = [d.split(".", 1)[1] + (" (resolved)" if d.startswith("resolved.") else "") for d in e.differences]
        raise BuildError(
            f"{out} holds a build made with other arguments (differs in: {', '.join(names)}); "
            "use a new --out directory or the same arguments to resume"
        ) from None
    except JobDirNotEmpty:
        raise BuildError(
            f"output directory {out} exists and is not a realign build; choose an empty or new --out"
        ) from None
    return job


def _shard_result(
    out: Path, job: Job, units: list[int], num_units: int, num_shards: int, shard_index: int, progress: bool
) -> BuildResult:
    """What a ``--shard-index`` process did: its chunks are done; the dataset is written once all shards are."""
    report = BuildReport(**aggregate([job.marker(c) for c in units], {}))
    missing = job.missing(num_units)
    report.update(
        {
            "complete": False,
            "shard": {"index": shard_index, "num_shards": num_shards},
            "chunks": len(units),
            "chunks_missing": len(missing),
            "num_chunks": num_units,
        }
    )
    if progress:
        logger.info(
            "Shard %d of %d: %d chunks done (%d pairs) under %s; %s.",
            shard_index,
            num_shards,
            len(units),
            report["pairs_written"],
            out / WORK_DIR,
            shard_next_step(len(missing)),
        )
    return BuildResult(
        str(out),
        report["pairs_written"],
        report["seeds_read"],
        report["drops"],
        "",
        report,
        complete=False,
        rank=shard_index,
    )


def shard_next_step(missing: int) -> str:
    """What to do after a ``--shard-index`` process (one sentence)."""
    what = (
        f"{missing} chunk(s) of other shards are still to be built" if missing else "every chunk of the build is done"
    )
    return (
        f"{what}; once every shard has finished, run the same command without --num-shards/--shard-index to "
        "write the dataset"
    )
