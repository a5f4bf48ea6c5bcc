"""Build a knowledge base: embed a corpus shard by shard with open_clip, then index it with FAISS.

    from realign_data.kb.corpus import open_source
    from realign_data.kb.knowledge_base_build import build_knowledge_base

    report = build_knowledge_base(open_source("coco", "data/coco"), "kb/coco")

The embedding is a :class:`realign_data.runtime.jobs.Job`: a unit is a shard of ``shard_size`` corpus items (in corpus
order), its files are ``embeddings/shard-NNNNN.{npy,parquet}`` and its marker ``shard-NNNNN.json``; a finished
shard is never redone, so an interrupted build (even ``kill -9``) resumes where it stopped and ends with the same
files as an uninterrupted one. Under ``torchrun`` / ``accelerate launch`` rank r embeds shards r, r+W, r+2W, ...
(on its own GPU: ``cuda:LOCAL_RANK``); every rank waits until all shards are done, rank 0 builds the index once
(the finalisation) and the others wait for it, so every process returns with the index in place (a build that
needs the index next, like ``realign-data build`` creating it on the fly, can use it at once). See
:mod:`realign_data.kb.knowledge_base` for the files and for querying.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import numpy as np

from realign_data.kb.corpus import CorpusItem, CorpusSource
from realign_data.kb.encoder import DEFAULT_MIN_SIDE, DEFAULT_MODEL, DEFAULT_PRETRAINED, describe_pretrained
from realign_data.kb.knowledge_base import FORMAT, FORMAT_VERSION, KnowledgeBaseError
from realign_data.kb.knowledge_base_check import file_records
from realign_data.runtime.atomic import atomic_path, atomic_write_json
from realign_data.runtime.devices import DeviceError, check_device_name, normalize_dtype
from realign_data.runtime.jobs import Job, JobDirNotEmpty, JobMismatch, chunked, distributed, library_versions
from realign_data.runtime.locks import locked_output

logger = logging.getLogger(__name__)

DEFAULT_SHARD_SIZE = 10_000
VERSIONED = ("realign", "faiss-cpu", "faiss-gpu", "open_clip_torch", "torch", "numpy", "pyarrow", "datasets")


@dataclass
class KnowledgeBaseReport:
    """What a build did. ``skipped`` lists (id, reason) for every image left out, across all runs."""

    path: str
    count: int = 0
    embedded_now: int = 0
    resumed_shards: int = 0
    num_shards: int = 0
    skipped: list = field(default_factory=list)
    factory: str = ""
    search_params: dict = field(default_factory=dict)
    recall_at_10: Optional[float] = None
    target_recall: Optional[float] = None
    target_reached: bool = True
    size_bytes: int = 0
    seconds: float = 0.0
    rank: int = 0
    world_size: int = 1
    index_built: bool = False


def _meta_schema():
    import pyarrow as pa

    return pa.schema(
        [
            ("id", pa.string()),
            ("path", pa.string()),
            ("width", pa.int32()),
            ("height", pa.int32()),
            ("coco_image_id", pa.int64()),
            ("categories", pa.list_(pa.string())),
            ("split", pa.string()),
            ("row", pa.int64()),
        ]
    )


def _row(item: CorpusItem, size: tuple[int, int]) -> dict:
    m = item.meta
    return {
        "id": item.id,
        "path": m.get("path", item.id),
        "width": size[0],
        "height": size[1],
        "coco_image_id": m.get("coco_image_id"),
        "categories": list(m.get("categories") or []),
        "split": m.get("split"),
        "row": m.get("row"),
    }


def _dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


@locked_output("realign-data index build")
def build_knowledge_base(
    source: CorpusSource,
    out: str | os.PathLike,
    *,
    model: str = DEFAULT_MODEL,
    pretrained: Optional[str] = DEFAULT_PRETRAINED,
    device: str = "auto",
    precision: str = "auto",
    batch_size: int = 64,
    num_workers: Optional[int] = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    min_side: int = DEFAULT_MIN_SIDE,
    index_type: str = "auto",
    target_recall: float = 0.95,
    memory_budget: str | int | None = "auto",
    progress: bool = True,
    rank: Optional[int] = None,
    world_size: Optional[int] = None,
    wait_timeout: float = 24 * 3600,
) -> KnowledgeBaseReport:
    """Embed ``source`` into ``out`` shard by shard (resuming finished shards), then index it.

    Args:
        source: a corpus (:func:`realign_data.kb.corpus.open_source`).
        out: the knowledge-base directory (see :func:`realign_data.kb.knowledge_base.resolve_index` for names).
        model, pretrained, device, precision: the :class:`~realign_data.kb.encoder.Encoder`.
        batch_size, num_workers: images per forward pass; DataLoader decoding workers (``None`` = one per CPU
            core, at most 4).
        shard_size: corpus items per shard (the unit of resumption and of multi-process work).
        min_side: images whose shorter side is below this (pixels) are skipped as too small.
        index_type: ``"auto"`` or any FAISS factory string (``"Flat"``, ``"HNSW32,Flat"``, ``"IVF1024,Flat"``...).
        target_recall: recall@10 the search parameter is tuned to reach (approximate indexes).
        memory_budget: RAM the index build may use, peak included (``"4GB"``; ``"auto"`` = half the machine's
            RAM); see :mod:`realign_data.kb.index_auto`.
        rank, world_size: this process's share; default from the launcher (:func:`realign_data.runtime.jobs.distributed`).
        wait_timeout: seconds a process waits without progress for the others' shards or for rank 0's index.

    Embedding inputs (source, encoder, shard_size, min_side) are fixed per directory: a re-run with other
    values raises :class:`KnowledgeBaseError`. Index options may change: the index is rebuilt from the shards.
    """
    from realign_data.kb.index_tuning import IndexConfigError, make_index, parse_memory

    t0 = time.time()
    out = Path(out).expanduser()
    if num_workers is None:
        num_workers = min(4, os.cpu_count() or 1)
    if shard_size < 1 or batch_size < 1 or num_workers < 0:
        raise KnowledgeBaseError("shard_size and batch_size must be >= 1 and num_workers >= 0")
    if not 0 < target_recall <= 1:
        raise KnowledgeBaseError(f"target recall must be in (0, 1], got {target_recall}")
    try:
        check_device_name(device)
        normalize_dtype(precision)
    except DeviceError as e:
        raise KnowledgeBaseError(str(e).replace("dtype", "precision (--dtype)")) from None
    try:
        parse_memory(memory_budget)
        if index_type != "auto":
            make_index(index_type, 6720)  # any real dim fails the same way; 6720 = 2^6*3*5*7 divides PQ sizes
    except IndexConfigError as e:
        if index_type == "auto" or "factory string" not in str(e):
            raise KnowledgeBaseError(str(e)) from e
        raise KnowledgeBaseError(
            f"--index-type {index_type!r} is not a valid FAISS factory string (e.g. Flat, "
            "HNSW32,Flat, IVF1024,Flat, IVF1024,PQ128x4fs,RFlat; or auto)"
        ) from None
    pretrained_desc, sha = describe_pretrained(pretrained)
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "source": source.describe(),
        "model": model,
        "pretrained": pretrained_desc,
        "checkpoint_sha256": sha,
        "shard_size": shard_size,
        "min_side": min_side,
    }
    here = distributed()
    job = Job(
        out,
        out / "embeddings",
        "shard",
        width=5,
        config_file=out / "build_config.json",
        rank=here.rank if rank is None else rank,
        world=here.world if world_size is None else world_size,
    )
    try:
        job.open(config)
    except JobMismatch as e:
        raise KnowledgeBaseError(
            f"{out} already holds a knowledge base built with different {', '.join(e.differences)} "
            f"(was {', '.join(f'{k}={e.previous.get(k)!r}' for k in e.differences)}); use another --name/--out "
            "or delete it"
        ) from None
    except JobDirNotEmpty:
        raise KnowledgeBaseError(
            f"{out} exists and is not a knowledge base directory; choose an empty or new path"
        ) from None
    report = KnowledgeBaseReport(path=str(out), rank=job.rank, world_size=job.world, target_recall=target_recall)
    index_args = {"index_type": index_type, "target_recall": target_recall, "memory_budget": str(memory_budget)}

    manifest_path = out / "manifest.json"
    manifest = _current_manifest(manifest_path, index_args)
    if manifest is not None:
        _fill_report(report, manifest, out, t0)
        report.resumed_shards = report.num_shards  # nothing left to do: everything was resumed
        return report

    bar = None
    if progress and job.rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=None if source.streaming else len(source),
            unit="img",
            dynamic_ncols=True,
            desc=f"embedding{f' (rank 0 of {job.world})' if job.world > 1 else ''}",
        )
    advance = bar.update if bar is not None else (lambda n: None)
    encoder = None

    def embed_shard(i: int, items: list) -> tuple[dict, list[Path]]:
        nonlocal encoder
        if encoder is None:
            from realign_data.kb.encoder import Encoder

            encoder = Encoder(model, pretrained, device=device, precision=precision)  # auto: cuda:LOCAL_RANK
        embs, rows, skipped = [], [], []
        for b in encoder.iter_embed(items, batch_size=batch_size, num_workers=num_workers, min_side=min_side):
            embs.append(b.embeddings)
            rows += [_row(items[j], size) for j, size in zip(b.indices, b.sizes)]
            skipped += [[items[j].id, reason] for j, reason in b.skipped]
            if bar is not None:
                bar.update(len(b.indices) + len(b.skipped))
                if skipped:
                    bar.set_postfix(skipped=len(skipped), refresh=False)
        emb = np.concatenate(embs) if embs else np.zeros((0, encoder.dim), np.float32)
        report.embedded_now += len(rows)
        return {"shard": i, "items": len(items), "count": len(rows), "skipped": skipped}, _write_shard(
            job, i, emb, rows
        )

    try:
        run = job.run(chunked(source, shard_size), embed_shard, advance=advance)
    finally:
        if bar is not None:
            bar.close()
    if run.num_units == 0:
        raise KnowledgeBaseError(f"the corpus at {source.describe().get('root')} has no images")
    # ---- every shard done (all ranks), then rank 0 indexes once while the others wait for the manifest
    job.barrier(run.num_units, timeout=wait_timeout)  # WaitTimeout: a runtime failure, not a usage error
    manifest = job.finish(
        lambda: _build_index(out, job, config, run.num_units, index_args, progress=progress),
        lambda: _current_manifest(manifest_path, index_args),
        timeout=wait_timeout,
    )
    _fill_report(report, manifest or json.loads(manifest_path.read_text()), out, t0)
    report.resumed_shards = run.resumed
    report.index_built = job.rank == 0
    return report


def _current_manifest(path: Path, index_args: dict) -> Optional[dict]:
    """The manifest at ``path`` when it describes an index built with ``index_args``, else None."""
    try:
        manifest = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return manifest if manifest.get("index_args") == index_args else None


def _write_shard(job: Job, i: int, emb: np.ndarray, rows: list[dict]) -> list[Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    npy, parquet = job.path(i, ".npy"), job.path(i, ".parquet")
    with atomic_path(npy) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, emb.astype(np.float16), allow_pickle=False)
    with atomic_path(parquet) as tmp:
        pq.write_table(pa.Table.from_pylist(rows, schema=_meta_schema()), tmp)
    return [npy, parquet]


def _load_shards(out: Path, job: Job, num_shards: int):
    """Shard vectors (left on disk), their metadata rows, skipped images and the manifest's shard list."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from realign_data.kb.vector_shards import ShardedVectors

    paths, tables, skipped, shards = [], [], [], []
    for i in range(num_shards):
        npy = job.path(i, ".npy")
        t = pq.read_table(job.path(i, ".parquet"), schema=_meta_schema())
        count = int(np.load(npy, mmap_mode="r", allow_pickle=False).shape[0])  # the header only
        if count != len(t):
            raise KnowledgeBaseError(f"shard {i} of {out} is inconsistent ({count} vectors, {len(t)} rows)")
        if count:
            paths.append(npy)
        tables.append(t)
        skipped += job.marker(i)["skipped"]
        shards.append({"file": npy.name, "count": count})
    return ShardedVectors(paths), pa.concat_tables(tables), skipped, shards


def _build_index(out: Path, job: Job, config: dict, num_shards: int, index_args: dict, *, progress: bool) -> None:
    import faiss
    import pyarrow.parquet as pq

    from realign_data.kb.index_auto import build_index
    from realign_data.kb.index_tuning import IndexConfigError
    from realign_data.kb.vector_shards import peak_rss_bytes

    vectors, table, skipped, shards = _load_shards(out, job, num_shards)
    n, dim = len(vectors), vectors.dim
    if n == 0:
        raise KnowledgeBaseError(f"no image of the corpus could be embedded ({len(skipped)} skipped)")
    ids = table.column("id").to_pylist()
    if len(set(ids)) != len(ids):
        raise KnowledgeBaseError("the corpus yields duplicate ids; each image needs a unique id")
    if progress:
        logger.info("indexing %d vectors (%s)", n, index_args["index_type"])
    try:
        built = build_index(
            vectors,
            index_type=index_args["index_type"],
            target_recall=index_args["target_recall"],
            memory_budget=index_args["memory_budget"],
            k=10,
        )
    except IndexConfigError as e:  # e.g. a budget too small for any index of this corpus
        raise KnowledgeBaseError(str(e)) from None
    except RuntimeError as e:  # FAISS: a factory that does not fit these vectors (PQ/PCA sizes, too few points)
        reason = re.sub(
            r"^Error in .*? at \S+:\d+: (Error: )?", "", str(e).split("failed: ")[-1].strip().splitlines()[0]
        )
        raise KnowledgeBaseError(
            f"--index-type {index_args['index_type']} cannot be built on {n} vectors of "
            f"dimension {dim} ({reason}); use --index-type auto, or fewer clusters / sizes that "
            f"divide {dim}"
        ) from None
    with atomic_path(out / "index.faiss") as tmp:
        faiss.write_index(built.index, str(tmp))
    with atomic_path(out / "metadata.parquet") as tmp:
        pq.write_table(table, tmp)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "encoder": {
            "model": config["model"],
            "pretrained": config["pretrained"],
            "checkpoint_sha256": config["checkpoint_sha256"],
            "dim": dim,
        },
        "dim": dim,
        "metric": "cosine (inner product on L2-normalised vectors)",
        "count": n,
        "index": {
            **built.info,
            "memory_budget": index_args["memory_budget"],
            "bytes": int((out / "index.faiss").stat().st_size),
            "peak_rss_bytes": peak_rss_bytes(),
        },
        "source": config["source"],
        "shard_size": config["shard_size"],
        "min_side": config["min_side"],
        "shards": shards,
        "skipped": skipped,
        "num_skipped": len(skipped),
        "index_args": index_args,
        "files": file_records(out),  # sizes + sha256 that loads and `index info` check
        "versions": library_versions(VERSIONED, python=True),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write_json(out / "manifest.json", manifest)


def _fill_report(report: KnowledgeBaseReport, manifest: dict, out: Path, t0: float) -> None:
    report.count = manifest["count"]
    report.skipped = [tuple(s) for s in manifest["skipped"]]
    report.factory = manifest["index"]["factory"]
    report.search_params = manifest["index"]["search_params"]
    report.recall_at_10 = manifest["index"]["recall_at_10"]
    report.target_reached = manifest["index"]["target_reached"]
    report.num_shards = len(manifest["shards"])
    report.size_bytes = _dir_size(out)
    report.seconds = time.time() - t0
