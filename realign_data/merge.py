"""Join the outputs of a sharded build (``--num-shards N``) into the dataset one process would have written.

Shard ``i`` holds the chunks ``c`` with ``c % N == i``, in seed order; the merge interleaves them back by chunk
number and writes them with :func:`realign_data.output.write_dataset`, the same writer as a single build, so the
files are byte-identical to a single-process build (the curriculum, deferred by sharded builds, is applied here).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from realign_data.atomic import atomic_write_json
from realign_data.config import BuildConfig, BuildError
from realign_data.output import CONFIG_FILE, REPORT_FILE, WORK_DIR, load_built, write_dataset
from realign_data.report import aggregate, curriculum_summary, format_summary, negative_summary, write_report

logger = logging.getLogger(__name__)


def merge(shard_dirs: list[str | os.PathLike], out: str | os.PathLike, *, progress: bool = True) -> dict:
    """Join the outputs of ``--num-shards N`` builds into ``out``: the dataset one process would have built."""
    reports = []
    for d in shard_dirs:
        rp = Path(d) / REPORT_FILE
        if not rp.is_file():
            raise BuildError(f"{d} has no {REPORT_FILE}; is it a finished shard build?")
        reports.append(json.loads(rp.read_text()))
    first = BuildConfig.from_dict(reports[0]["config"]).semantic()
    nums = {r["shard"]["num_shards"] for r in reports}
    idx = sorted(r["shard"]["index"] for r in reports)
    for d, r in zip(shard_dirs, reports):
        if BuildConfig.from_dict(r["config"]).semantic() != first:
            raise BuildError(f"{d} was built with other arguments than {shard_dirs[0]}; only shards of one build merge")
    if len(nums) != 1 or idx != list(range(next(iter(nums)))):
        raise BuildError(f"shards {idx} of {sorted(nums)} do not make a complete build; need indices 0..N-1 once each")
    out = Path(out).expanduser().resolve()
    if out.exists() and any(out.iterdir()):
        raise BuildError(f"output directory {out} is not empty")
    work = out / WORK_DIR
    work.mkdir(parents=True)
    owner: list[tuple[int, int, int, int]] = []  # (chunk, shard position, offset, rows)
    for pos, r in enumerate(reports):
        off = 0
        for c, n in r["chunks"]:
            owner.append((c, pos, off, n))
            off += n
    owner.sort()
    tables_of = [load_built(d).data.table for d in shard_dirs]

    def tables():
        if len(reports) == 1 and reports[0].get("row_order", "seed") != "seed":
            yield tables_of[0]  # already in curriculum order, which re-sorting (stable) keeps
            return
        for c, pos, off, n in owner:
            yield tables_of[pos].slice(off, n)

    cfg = BuildConfig.from_dict({**reports[0]["config"], "num_shards": 1, "shard_index": 0, "out": str(out)})
    salt = json.dumps(cfg.semantic(), sort_keys=True)
    n, split_info, stats = write_dataset(out, work, tables(), cfg.format, salt, cfg.curriculum)
    metas = [{"seeds": r["seeds_read"], "rows": r["pairs_written"], "drops": r["drops"],
              "failures": r.get("failures", {}).get("examples", []), "fills": r.get("fills_tried", 0),
              "failure_count": r.get("failures", {}).get("count", 0)} for r in reports]
    report = aggregate(metas, stats)
    report.update({"complete": True, "format": cfg.format, "shard": {"index": 0, "num_shards": 1},
                   "merged_from": [str(Path(d).resolve()) for d in shard_dirs],
                   "chunks": [[c, n] for c, _, _, n in owner], "chunk_size": cfg.chunk_size,
                   "image_negative": negative_summary(cfg), "row_order": cfg.curriculum or "seed",
                   "curriculum": curriculum_summary(cfg, split_info),
                   "config": cfg.to_dict(), "provenance": reports[0].get("provenance", {})})
    atomic_write_json(work / "config.json", {"config": cfg.semantic(), "resolved": {"merged": True}})
    atomic_write_json(out / CONFIG_FILE, cfg.to_dict())
    if n != report["pairs_written"]:
        raise BuildError(f"the shard reports count {report['pairs_written']} rows but their datasets hold {n}")
    report = write_report(out, report)
    if progress:
        logger.info("%s", format_summary(report))
    return report
