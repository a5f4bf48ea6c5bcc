"""Join shard builds made in separate directories (``--num-shards N --shard-index I --out DIR_I``) into the dataset
one process would have written.

A shard build leaves its chunks (Parquet files and markers) under ``DIR_I/.realign-build/chunks``; the merge checks
that the shards are of one build and that together they hold every chunk, then writes the chunks in chunk order with
:func:`realign_data.building.finalise.finalise_dataset`, the writer of a single build, so the files are byte-identical to a
single-process build. The shard directories are only read. Shards built into one shared ``--out`` need no merge:
the same build command without ``--num-shards/--shard-index`` writes the dataset there.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from realign_data.building.config import BuildConfig, BuildError
from realign_data.building.finalise import complete_report, finalise_dataset
from realign_data.building.output import PROVENANCE_FILE, WORK_DIR
from realign_data.building.report import BuildReport, format_summary, write_report
from realign_data.runtime.atomic import atomic_write_json
from realign_data.runtime.jobs import Job
from realign_data.runtime.locks import OutputError, output_lock

logger = logging.getLogger(__name__)


def _shard_job(d: Path) -> Job:
    work = d / WORK_DIR
    return Job(d, work / "chunks", "chunk", config_file=work / "config.json", rank=0, world=1)


def merge(shard_dirs: list[str | os.PathLike], out: str | os.PathLike, *, progress: bool = True) -> BuildReport:
    """Join the chunks of ``--num-shards N`` builds made in ``shard_dirs`` into ``out``; returns the report.
    Raises :class:`~realign_data.runtime.locks.LockHeld` while another process writes ``out``."""
    try:
        with output_lock(out, "realign-data merge"):
            return _merge(shard_dirs, out, progress)
    except OutputError as e:
        raise BuildError(str(e)) from None


def _merge(shard_dirs: list[str | os.PathLike], out: str | os.PathLike, progress: bool) -> BuildReport:
    dirs = [Path(d).expanduser().resolve() for d in shard_dirs]
    jobs, fingerprints = [], []
    for d in dirs:
        if complete_report(d) is not None:
            raise BuildError(
                f"{d} is a finished build (its dataset is already written there); merge joins the "
                "directories of unfinished --shard-index builds"
            )
        job = _shard_job(d)
        if not job.config_file.is_file():
            raise BuildError(f"{d} is not a shard build (no {job.config_file.relative_to(d)})")
        if job.num_units() is None:
            raise BuildError(f"the shard build in {d} has not finished; run its command again to complete it")
        jobs.append(job)
        fingerprints.append(json.loads(job.config_file.read_text()))
    if not jobs:
        raise BuildError("give at least one shard directory")
    for d, fp, job in zip(dirs, fingerprints, jobs):
        if fp != fingerprints[0] or job.num_units() != jobs[0].num_units():
            raise BuildError(f"{d} was built with other arguments than {dirs[0]}; only shards of one build merge")
    num_units = jobs[0].num_units()
    units, missing = [], []
    for c in range(num_units):
        job = next((j for j in jobs if j.done(c)), None)
        if job is None:
            missing.append(c)
        else:
            units.append((job.marker(c), job.path(c, ".parquet")))
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise BuildError(
            f"{len(missing)} of {num_units} chunks ({shown}) are in none of the shard directories, so "
            "they do not make a complete build; run the shard builds that own them (chunk c belongs to "
            "shard c % N) and merge again"
        )
    out = Path(out).expanduser().resolve()
    if out.exists() and any(out.iterdir()):
        raise BuildError(f"output directory {out} is not empty")
    work = out / WORK_DIR
    work.mkdir(parents=True)
    provenance = json.loads((jobs[0].config_file.parent / PROVENANCE_FILE).read_text())
    fp = fingerprints[0]
    cfg = BuildConfig.from_dict({**BuildConfig().to_dict(), **fp["config"], "out": str(out)})
    report = finalise_dataset(out, work, cfg, units, provenance, {"processes": len(dirs), "process_group": None})
    report["merged_from"] = [str(d) for d in dirs]
    atomic_write_json(work / "config.json", fp)  # the same build: running it into `out` again is a no-op
    report = write_report(out, report)
    if progress:
        logger.info("%s", format_summary(report))
    return report
