"""The end of a build: its provenance, and the dataset written once from every chunk (by rank 0 of a build, or by
:func:`realign_data.building.merge.merge` for shards built into separate directories) with its report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from realign_data.building.config import BuildConfig, BuildError
from realign_data.building.output import CONFIG_FILE, REPORT_FILE, read_chunks, write_dataset
from realign_data.building.report import BuildReport, Launch, aggregate, curriculum_summary, negative_summary
from realign_data.building.separability import of_built as blind_separability_of_build
from realign_data.kb.splits import knowledge_base_evaluation_counts, split_warning
from realign_data.runtime.atomic import atomic_write_json
from realign_data.runtime.jobs import library_versions, process_group_backend

HEARTBEAT_FILE = "finalising"  # touched by rank 0 while it writes the dataset (the others wait for it)
VERSIONED = ("realign", "datasets", "torch", "transformers", "sentence-transformers", "open_clip_torch", "faiss-cpu")
METHOD = "Re-Align (arXiv 2502.13146) dual-preference construction"


def provenance_of(config: BuildConfig, kb, pipe) -> dict:
    enc = dict(kb.manifest.get("encoder", {}))
    stages = pipe.describe()
    fallback = getattr(pipe.gate, "fallback_reason", None)
    kb_eval = knowledge_base_evaluation_counts(kb.path)
    kb_warning = split_warning(
        "the knowledge base's images (retrieved images, rejected_images)",
        kb_eval,
        "rebuild it from train2014 only (--coco-split train2014)",
    )
    return {
        "method": METHOD,
        "knowledge_base": {
            "path": str(kb.path),
            "count": len(kb),
            "source": kb.manifest.get("source"),
            "encoder": enc,
            "random_encoder": enc.get("pretrained") in ("none", None),
            "evaluation_splits": kb_eval,
        },
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


def finalise_dataset(
    out: Path,
    work: Path,
    config: BuildConfig,
    units: list[tuple[dict, Path]],
    provenance: dict,
    launch: Optional[Launch] = None,
) -> BuildReport:
    """Write the dataset of every chunk (``(marker, parquet file)`` in chunk order, each read once) into ``out``
    and return its report (without throughput). Rank 0 of a build and :func:`realign_data.building.merge.merge` call it."""
    heartbeat = work / HEARTBEAT_FILE

    def tables():
        for table in read_chunks(path for _, path in units):
            heartbeat.touch()  # processes waiting for the dataset see rank 0 at work
            yield table

    salt = json.dumps(config.semantic(), sort_keys=True)
    n, split_info, stats = write_dataset(
        out, work, tables(), config.format, salt, config.curriculum, onpolicy=bool(config.responses_from)
    )
    metas = [m for m, _ in units]
    report = BuildReport(**aggregate(metas, stats))
    report["blind_separability"] = blind_separability_of_build(out, config.seed)  # text-only classifier, held out
    seed_warning = split_warning(
        "the seeds (images, chosen answers)",
        report["evaluation_seeds"],
        "build from train2014 seeds (--coco-split train2014) or other --seeds",
    )
    if seed_warning:
        provenance = {**provenance, "warnings": [*provenance.get("warnings", []), seed_warning]}
    if report["pairs_written"] != n:
        raise BuildError(
            f"{out}: the chunk markers count {report['pairs_written']} rows but the chunk files hold "
            f"{n}; delete {work} and build again"
        )
    report.update(
        {
            "complete": True,
            "format": config.format,
            "launch": launch or {"processes": 1, "process_group": None},
            "chunks": [[m["chunk"], m["rows"]] for m in metas],
            "chunk_size": config.chunk_size,
            "image_negative": negative_summary(config),
            "row_order": config.curriculum or "seed",
            "curriculum": curriculum_summary(config, split_info),
            "config": config.to_dict(),
            "provenance": provenance,
        }
    )
    atomic_write_json(out / CONFIG_FILE, config.to_dict())
    return report
