"""The image knowledge base: embed a corpus with open_clip, index it with FAISS, retrieve similar images.

Build (resumable, shardable over processes)::

    from realign_data.corpus import open_source
    from realign_data.knowledge_base import build_knowledge_base, KnowledgeBase, resolve_index

    report = build_knowledge_base(open_source("coco", "data/coco"), resolve_index("coco", must_exist=False))
    kb = KnowledgeBase.load("coco")                      # a name under $REALIGN_HOME/indexes, or a path
    hits = kb.search(["train2014/COCO_train2014_000000000009.jpg"], k=5, kind="id")[0]

On disk (every file written to a temporary name, then renamed; no pickle anywhere)::

    DIR/build_config.json          what the embeddings depend on (a re-run must match it)
    DIR/embeddings/shard-00000.npy float16 [n, dim] L2-normalised embeddings of shard 0
    DIR/embeddings/shard-00000.parquet  metadata rows of the embedded images of shard 0
    DIR/embeddings/shard-00000.json     completion marker: counts and skipped images (with reasons)
    DIR/index.faiss                FAISS index over all shards, row i = metadata row i
    DIR/metadata.parquet           id, path, width, height, coco_image_id, categories, split, row
    DIR/manifest.json              encoder, dim, metric, count, factory, search params, recall, versions...

A build embeds the corpus shard by shard (``shard_size`` items in corpus order); a shard whose marker
exists is never redone, so an interrupted build (even ``kill -9``) resumes where it stopped and ends with
the same files as an uninterrupted one. Under ``torchrun``/``accelerate launch`` (``RANK``/``WORLD_SIZE``
set) rank r embeds shards r, r+W, r+2W, ...; rank 0 waits for every shard marker, then builds the index.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from realign_data.atomic import atomic_path, atomic_write_json
from realign_data.corpus import IMAGE_EXTENSIONS, CorpusItem, CorpusSource
from realign_data.encoder import DEFAULT_MIN_SIDE, DEFAULT_MODEL, DEFAULT_PRETRAINED, describe_pretrained

FORMAT = "realign-knowledge-base"
FORMAT_VERSION = 1
DEFAULT_SHARD_SIZE = 10_000
DEFAULT_MAX_SIMILARITY = 0.95
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class KnowledgeBaseError(ValueError):
    """A knowledge base cannot be built, found or queried as asked (one clear sentence)."""


# ------------------------------------------------------------------------------------- named indexes

def realign_home() -> Path:
    """Cache root: ``$REALIGN_HOME`` or ``~/.cache/realign``."""
    return Path(os.environ.get("REALIGN_HOME") or Path.home() / ".cache" / "realign").expanduser()


def indexes_root() -> Path:
    return realign_home() / "indexes"


def index_dir_for_name(name: str) -> Path:
    """``$REALIGN_HOME/indexes/<name>`` (whether it exists or not)."""
    if not _NAME.match(name):
        raise KnowledgeBaseError(f"index name {name!r} is not valid (letters, digits, '_', '-', '.')")
    return indexes_root() / name


def list_indexes() -> list[dict]:
    """Named indexes under ``$REALIGN_HOME/indexes``: name, path, complete?, count, encoder, factory."""
    out = []
    root = indexes_root()
    if not root.is_dir():
        return out
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        entry = {"name": d.name, "path": str(d), "complete": (d / "manifest.json").is_file()}
        if entry["complete"]:
            try:
                m = json.loads((d / "manifest.json").read_text())
                entry.update(count=m.get("count"), model=m["encoder"]["model"], factory=m["index"]["factory"],
                             source=m["source"].get("type"), recall=m["index"].get("recall_at_10"))
            except (ValueError, KeyError, OSError):
                entry["complete"] = False
        out.append(entry)
    return out


def resolve_index(name_or_path: str | os.PathLike, *, must_exist: bool = True) -> Path:
    """Turn ``--index`` into a directory.

    A bare name (``coco``) means ``$REALIGN_HOME/indexes/coco`` even when the current directory happens to hold a
    folder of that name (often the COCO data itself, which must never be mistaken for an index), unless that
    folder is a finished knowledge base. Anything that looks like a path (``./kb``, ``/data/kb``, ``~/kb``, or
    not a valid name) is used as is. With ``must_exist`` the directory must hold a finished build.
    """
    text = os.fspath(name_or_path)
    p = Path(text).expanduser()
    looks_like_path = (not isinstance(name_or_path, str) or os.sep in text or text.startswith((".", "~"))
                       or not _NAME.match(text))
    d = p if looks_like_path or (p / "manifest.json").is_file() else index_dir_for_name(text)
    if must_exist and not (d / "manifest.json").is_file():
        names = [e["name"] for e in list_indexes() if e["complete"]]
        hint = f"available: {', '.join(names)}" if names else "build one with 'realign-data index build'"
        raise KnowledgeBaseError(f"no finished knowledge base at {str(name_or_path)!r} ({d}); {hint}")
    return d


# ---------------------------------------------------------------------------------------------- build

@dataclass
class BuildReport:
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


_META_FIELDS = ("id", "path", "width", "height", "coco_image_id", "categories", "split", "row")


def _meta_schema():
    import pyarrow as pa

    return pa.schema([("id", pa.string()), ("path", pa.string()), ("width", pa.int32()), ("height", pa.int32()),
                      ("coco_image_id", pa.int64()), ("categories", pa.list_(pa.string())),
                      ("split", pa.string()), ("row", pa.int64())])


def _shard_paths(out: Path, i: int) -> tuple[Path, Path, Path]:
    base = out / "embeddings" / f"shard-{i:05d}"
    return base.with_suffix(".npy"), base.with_suffix(".parquet"), base.with_suffix(".json")


def _dist_env() -> tuple[int, int, int]:
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    return rank, world, local


def _dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _versions() -> dict:
    import importlib.metadata as md

    out = {"python": sys.version.split()[0]}
    for pkg in ("realign", "faiss-cpu", "faiss-gpu", "open_clip_torch", "torch", "numpy", "pyarrow", "datasets"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def _check_config(out: Path, config: dict) -> None:
    """Write ``build_config.json`` or verify an existing one matches (else one clear error)."""
    path = out / "build_config.json"
    if not path.is_file() and out.exists() and any(p for p in out.iterdir() if not p.name.startswith(".")):
        time.sleep(0.5)  # another rank may be renaming its build_config.json into place right now
    if path.is_file():
        old = json.loads(path.read_text())
        if old != config:
            diffs = [k for k in sorted(set(old) | set(config)) if old.get(k) != config.get(k)]
            raise KnowledgeBaseError(
                f"{out} already holds a knowledge base built with different {', '.join(diffs)} "
                f"(was {', '.join(f'{k}={old.get(k)!r}' for k in diffs)}); use another --name/--out or delete it")
        return
    if out.exists() and any(p for p in out.iterdir() if not p.name.startswith(".")):
        raise KnowledgeBaseError(f"{out} exists and is not a knowledge base directory; choose an empty or new path")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, config)


def _write_shard(out: Path, i: int, emb: np.ndarray, rows: list[dict], skipped: list, n_items: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    npy, parquet, marker = _shard_paths(out, i)
    with atomic_path(npy) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, emb.astype(np.float16), allow_pickle=False)
    table = pa.Table.from_pylist(rows, schema=_meta_schema())
    with atomic_path(parquet) as tmp:
        pq.write_table(table, tmp)
    atomic_write_json(marker, {"shard": i, "items": n_items, "count": len(rows), "skipped": skipped}, indent=None)


def _row(item: CorpusItem, size: tuple[int, int]) -> dict:
    m = item.meta
    return {"id": item.id, "path": m.get("path", item.id), "width": size[0], "height": size[1],
            "coco_image_id": m.get("coco_image_id"), "categories": list(m.get("categories") or []),
            "split": m.get("split"), "row": m.get("row")}


def _shard_chunks(source: CorpusSource, shard_size: int):
    """Yield (shard index, items) in corpus order; a streaming source is read exactly once."""
    chunk, i = [], 0
    for item in source:
        chunk.append(item)
        if len(chunk) == shard_size:
            yield i, chunk
            chunk, i = [], i + 1
    if chunk:
        yield i, chunk


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
) -> BuildReport:
    """Embed ``source`` into ``out`` shard by shard (resuming finished shards), then index it.

    Args:
        source: a corpus (:func:`realign_data.corpus.open_source`).
        out: the knowledge-base directory (see :func:`resolve_index` for names).
        model, pretrained, device, precision: the :class:`~realign_data.encoder.Encoder`.
        batch_size, num_workers: images per forward pass; DataLoader decoding workers (``None`` = one per CPU
            core, at most 4).
        shard_size: corpus items per shard (the unit of resumption and of multi-process work).
        min_side: images whose shorter side is below this (pixels) are skipped as too small.
        index_type: ``"auto"`` or any FAISS factory string (``"Flat"``, ``"HNSW32,Flat"``, ``"IVF1024,Flat"``...).
        target_recall: recall@10 the search parameter is tuned to reach (approximate indexes).
        memory_budget: RAM the index may use (``"4GB"``; ``"auto"`` = half the machine's RAM).
        rank, world_size: this process's share; default from ``RANK``/``WORLD_SIZE`` (torchrun, accelerate).

    Embedding inputs (source, encoder, shard_size, min_side) are fixed per directory: a re-run with other
    values raises :class:`KnowledgeBaseError`. Index options may change: the index is rebuilt from the shards.
    """
    from realign_data.index_tuning import IndexConfigError, parse_memory

    t0 = time.time()
    env_rank, env_world, local_rank = _dist_env()
    rank = env_rank if rank is None else rank
    world_size = env_world if world_size is None else world_size
    out = Path(out).expanduser()
    if num_workers is None:
        num_workers = min(4, os.cpu_count() or 1)
    if shard_size < 1 or batch_size < 1 or num_workers < 0:
        raise KnowledgeBaseError("shard_size and batch_size must be >= 1 and num_workers >= 0")
    if not 0 < target_recall <= 1:
        raise KnowledgeBaseError(f"target recall must be in (0, 1], got {target_recall}")
    try:
        parse_memory(memory_budget)
        if index_type != "auto":
            from realign_data.index_tuning import make_index

            make_index(index_type, 6720)  # any real dim fails the same way; 6720 = 2^6*3*5*7 divides PQ sizes
    except IndexConfigError as e:
        raise KnowledgeBaseError(str(e)) from e
    pretrained_desc, sha = describe_pretrained(pretrained)
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, "source": source.describe(),
              "model": model, "pretrained": pretrained_desc, "checkpoint_sha256": sha,
              "shard_size": shard_size, "min_side": min_side}
    _check_config(out, config)
    (out / "embeddings").mkdir(exist_ok=True)
    report = BuildReport(path=str(out), rank=rank, world_size=world_size, target_recall=target_recall)
    index_args = {"index_type": index_type, "target_recall": target_recall, "memory_budget": str(memory_budget)}

    manifest_path = out / "manifest.json"
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("index_args") == index_args:
            if rank == 0:
                _fill_report(report, manifest, out, t0)
                report.resumed_shards = report.num_shards  # nothing left to do: everything was resumed
            return report

    # ---- embed the shards this rank owns and that are not finished yet
    encoder = None
    sleep = float(os.environ.get("REALIGN_KB_SHARD_SLEEP", "0") or 0)  # test hook: widen the kill window
    total = None if source.streaming else len(source)
    bar = None
    if progress and rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, unit="img", desc=f"embedding{f' (rank 0 of {world_size})' if world_size > 1 else ''}",
                   dynamic_ncols=True)
    num_shards = 0
    try:
        for i, items in _shard_chunks(source, shard_size):
            num_shards = i + 1
            if i % world_size != rank:
                continue
            if _shard_paths(out, i)[2].is_file():
                report.resumed_shards += 1
                if bar is not None:
                    bar.update(len(items))
                continue
            if encoder is None:
                from realign_data.encoder import Encoder

                dev = device
                if world_size > 1 and device == "auto":
                    import torch

                    dev = f"cuda:{local_rank % max(1, torch.cuda.device_count())}" if torch.cuda.is_available() \
                        else "cpu"
                encoder = Encoder(model, pretrained, device=dev, precision=precision)
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
            _write_shard(out, i, emb, rows, skipped, len(items))
            report.embedded_now += len(rows)
            if sleep:
                time.sleep(sleep)
    finally:
        if bar is not None:
            bar.close()
    if num_shards == 0:
        raise KnowledgeBaseError(f"the corpus at {source.describe().get('root')} has no images")
    report.num_shards = num_shards
    if rank != 0:
        report.seconds = time.time() - t0
        return report

    # ---- rank 0: wait for every shard, then index
    deadline = time.time() + wait_timeout
    while not all(_shard_paths(out, i)[2].is_file() for i in range(num_shards)):
        if time.time() > deadline:
            missing = [i for i in range(num_shards) if not _shard_paths(out, i)[2].is_file()]
            raise KnowledgeBaseError(f"timed out waiting for shards {missing} from the other ranks")
        time.sleep(0.2)
    _build_index(out, config, num_shards, index_args, progress=progress)
    _fill_report(report, json.loads(manifest_path.read_text()), out, t0)
    report.index_built = True
    return report


def _load_shards(out: Path, num_shards: int):
    import pyarrow as pa
    import pyarrow.parquet as pq

    vecs, tables, skipped, shards = [], [], [], []
    for i in range(num_shards):
        npy, parquet, marker = _shard_paths(out, i)
        v = np.load(npy, allow_pickle=False)
        t = pq.read_table(parquet, schema=_meta_schema())
        if len(v) != len(t):
            raise KnowledgeBaseError(f"shard {i} of {out} is inconsistent ({len(v)} vectors, {len(t)} rows)")
        vecs.append(v)
        tables.append(t)
        m = json.loads(marker.read_text())
        skipped += m["skipped"]
        shards.append({"file": npy.name, "count": int(len(v))})
    return vecs, pa.concat_tables(tables), skipped, shards


def _build_index(out: Path, config: dict, num_shards: int, index_args: dict, *, progress: bool) -> None:
    import faiss
    import pyarrow.parquet as pq

    from realign_data.index_tuning import choose_factory, make_index, train_and_add, tune_index

    vecs, table, skipped, shards = _load_shards(out, num_shards)
    dim = int(vecs[0].shape[1]) if vecs else 0
    vectors = np.concatenate(vecs).astype(np.float32) if vecs else np.zeros((0, dim), np.float32)
    if len(vectors) == 0:
        raise KnowledgeBaseError(f"no image of the corpus could be embedded ({len(skipped)} skipped)")
    ids = table.column("id").to_pylist()
    if len(set(ids)) != len(ids):
        raise KnowledgeBaseError("the corpus yields duplicate ids; each image needs a unique id")
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    n = len(vectors)
    requested = index_args["index_type"]
    factory = choose_factory(n, dim, index_args["memory_budget"]) if requested == "auto" else requested
    if progress:
        print(f"indexing {n} vectors with {factory}", file=sys.stderr)
    index = make_index(factory, dim)
    train_and_add(index, vectors)
    tuned = tune_index(index, vectors, target_recall=index_args["target_recall"], k=10)
    with atomic_path(out / "index.faiss") as tmp:
        faiss.write_index(index, str(tmp))
    with atomic_path(out / "metadata.parquet") as tmp:
        pq.write_table(table, tmp)
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "encoder": {"model": config["model"], "pretrained": config["pretrained"],
                    "checkpoint_sha256": config["checkpoint_sha256"], "dim": dim},
        "dim": dim, "metric": "cosine (inner product on L2-normalised vectors)", "count": n,
        "index": {"factory": factory, "requested": requested, "search_params": tuned.params,
                  "recall_at_10": round(tuned.recall, 4), "target_recall": index_args["target_recall"],
                  "target_reached": tuned.target_reached, "recall_queries": tuned.num_queries,
                  "memory_budget": index_args["memory_budget"], "bytes": int((out / "index.faiss").stat().st_size)},
        "source": config["source"],
        "shard_size": config["shard_size"], "min_side": config["min_side"], "shards": shards,
        "skipped": skipped, "num_skipped": len(skipped),
        "index_args": index_args,
        "versions": _versions(),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write_json(out / "manifest.json", manifest)


def _fill_report(report: BuildReport, manifest: dict, out: Path, t0: float) -> None:
    report.count = manifest["count"]
    report.skipped = [tuple(s) for s in manifest["skipped"]]
    report.factory = manifest["index"]["factory"]
    report.search_params = manifest["index"]["search_params"]
    report.recall_at_10 = manifest["index"]["recall_at_10"]
    report.target_reached = manifest["index"]["target_reached"]
    report.num_shards = len(manifest["shards"])
    report.size_bytes = _dir_size(out)
    report.seconds = time.time() - t0


# ---------------------------------------------------------------------------------------------- query

@dataclass(frozen=True)
class Hit:
    """One retrieved image: corpus ``id``, cosine ``score`` and ``rank`` (1 = most similar kept)."""

    id: str
    score: float
    rank: int


class KnowledgeBase:
    """A built knowledge base, ready to search. Use :meth:`load`."""

    def __init__(self, path: Path, manifest: dict, index, table, encoder=None):
        self.path = path
        self.manifest = manifest
        self.index = index
        self._table = table
        self.ids: list[str] = table.column("id").to_pylist()
        self._row = {i: r for r, i in enumerate(self.ids)}
        self.dim = int(manifest["dim"])
        self._encoder = encoder
        self._emb = None
        self._by_coco: Optional[dict] = None
        self._by_path: Optional[dict] = None
        self._hf = None
        if encoder is not None:
            self.check_encoder(encoder)

    # ------------------------------------------------------------------------------------------ load
    @classmethod
    def load(cls, name_or_path: str | os.PathLike, *, encoder=None, mmap: bool = False) -> "KnowledgeBase":
        """Open a finished knowledge base by directory or name (``$REALIGN_HOME/indexes/<name>``).

        ``encoder`` (optional) is the :class:`~realign_data.encoder.Encoder` used for image/text queries; it
        must be the one the index was built with (else :class:`KnowledgeBaseError`). Without it, one is
        created from the manifest on the first image/text query.
        """
        import faiss
        import pyarrow.parquet as pq

        from realign_data.index_tuning import apply_search_params

        path = resolve_index(name_or_path)
        try:
            manifest = json.loads((path / "manifest.json").read_text())
        except ValueError as e:
            raise KnowledgeBaseError(f"{path}/manifest.json is not valid JSON ({e})") from e
        if manifest.get("format") != FORMAT or manifest.get("format_version", 0) > FORMAT_VERSION:
            raise KnowledgeBaseError(f"{path} is not a {FORMAT} (version <= {FORMAT_VERSION}) directory")
        flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
        index = faiss.read_index(str(path / "index.faiss"), flags)
        apply_search_params(index, manifest["index"].get("search_params", {}))
        table = pq.read_table(path / "metadata.parquet")
        if index.ntotal != len(table) or index.d != manifest["dim"]:
            raise KnowledgeBaseError(f"{path} is inconsistent: index has {index.ntotal} vectors of dim {index.d}, "
                                     f"metadata {len(table)} rows, manifest dim {manifest['dim']}")
        return cls(path, manifest, index, table, encoder)

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, id_: str) -> bool:
        return id_ in self._row

    def __repr__(self) -> str:
        return (f"KnowledgeBase({str(self.path)!r}, count={len(self)}, model={self.manifest['encoder']['model']!r}, "
                f"factory={self.manifest['index']['factory']!r})")

    # --------------------------------------------------------------------------------------- encoder
    def check_encoder(self, encoder) -> None:
        """Raise :class:`KnowledgeBaseError` unless ``encoder`` is the one this index was built with."""
        want = self.manifest["encoder"]
        got = encoder.identity
        if got["dim"] != want["dim"]:
            raise KnowledgeBaseError(f"encoder {got['model']!r} makes {got['dim']}-d embeddings but the knowledge base "
                                     f"at {self.path} holds {want['dim']}-d ones from {want['model']!r}")
        same_weights = (got["checkpoint_sha256"] == want["checkpoint_sha256"] if want["checkpoint_sha256"]
                        else got["pretrained"] == want["pretrained"])
        if got["model"] != want["model"] or not same_weights:
            raise KnowledgeBaseError(
                f"the knowledge base at {self.path} was built with {want['model']!r} / {want['pretrained']!r}, "
                f"not {got['model']!r} / {got['pretrained']!r}; query it with the same encoder or rebuild it")

    @property
    def encoder(self):
        """The query encoder (created from the manifest on first use)."""
        if self._encoder is None:
            from realign_data.encoder import Encoder

            e = self.manifest["encoder"]
            pretrained = e["pretrained"]
            if e["checkpoint_sha256"] and not Path(pretrained).is_file():
                raise KnowledgeBaseError(f"the checkpoint this knowledge base was built with, {pretrained}, is gone; "
                                         f"pass encoder=Encoder(...) with the same weights")
            self._encoder = Encoder(e["model"], pretrained)
            self.check_encoder(self._encoder)
        return self._encoder

    # -------------------------------------------------------------------------------------- metadata
    def record(self, id_: str) -> dict:
        """The metadata row of an id: ``id, path, width, height, coco_image_id, categories, split, row``."""
        r = self._row_of(id_)
        rec = self._table.slice(r, 1).to_pylist()[0]
        rec["index_row"] = r
        return rec

    def _row_of(self, id_: str) -> int:
        try:
            return self._row[id_]
        except KeyError:
            raise KeyError(f"{id_!r} is not in the knowledge base at {self.path}") from None

    def id_for_coco_image_id(self, image_id: int) -> Optional[str]:
        """The corpus id of a COCO ``image_id`` (``None`` when it is not indexed)."""
        if self._by_coco is None:
            col = self._table.column("coco_image_id").to_pylist()
            self._by_coco = {c: i for c, i in zip(col, self.ids) if c is not None}
        return self._by_coco.get(int(image_id))

    def image_path(self, id_: str) -> Optional[Path]:
        """Absolute file of an image for ``coco``/``folder`` sources (``None`` for datasets)."""
        src = self.manifest["source"]
        if src["type"] in ("coco", "folder"):
            return Path(src["root"]) / self.record(id_)["path"]
        return None

    def id_for_path(self, path: str | os.PathLike) -> Optional[str]:
        """The corpus id of an image file, if that file is part of the corpus."""
        src = self.manifest["source"]
        if src["type"] not in ("coco", "folder"):
            return None
        if self._by_path is None:
            root = Path(src["root"])
            self._by_path = {str((root / p).resolve()): i for p, i in zip(self._table.column("path").to_pylist(),
                                                                         self.ids)}
        return self._by_path.get(str(Path(path).expanduser().resolve()))

    def load_image(self, id_: str):
        """Decode a corpus image (``PIL.Image``, RGB)."""
        from realign_data.corpus import HFSource, open_image_file

        src = self.manifest["source"]
        if src["type"] in ("coco", "folder"):
            return open_image_file(str(self.image_path(id_)))
        if self._hf is None:
            self._hf = HFSource(src["root"], split=src.get("split"), image_column=src.get("image_column"),
                                streaming=not src.get("local", True))
        return self._hf.load_row(int(self.record(id_)["row"]))

    def embeddings_for(self, ids: Sequence[str]) -> np.ndarray:
        """Stored embeddings (float32, L2-normalised) of corpus ids, in the order given."""
        if self._emb is None:
            shards = [np.load(self.path / "embeddings" / s["file"], mmap_mode="r", allow_pickle=False)
                      for s in self.manifest["shards"]]
            offsets = np.cumsum([0] + [len(s) for s in shards])
            self._emb = (shards, offsets)
        shards, offsets = self._emb
        out = np.zeros((len(ids), self.dim), np.float32)
        for j, id_ in enumerate(ids):
            r = self._row_of(id_)
            s = int(np.searchsorted(offsets, r, side="right") - 1)
            out[j] = shards[s][r - offsets[s]]
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out

    # ---------------------------------------------------------------------------------------- search
    def embed_queries(self, queries, kind: str = "auto") -> tuple[np.ndarray, list[Optional[str]]]:
        """Turn queries into embeddings; also return the corpus id of each query when it has one.

        ``kind``: ``"embedding"`` (array ``[n, dim]`` or ``[dim]``), ``"id"`` (corpus ids: stored embeddings,
        no re-embedding), ``"image"`` (PIL images or file paths), ``"text"``, or ``"auto"``: arrays are
        embeddings, PIL images and paths of existing image files are images, other strings are texts.
        """
        if kind == "auto" and isinstance(queries, np.ndarray):
            kind = "embedding"
        if kind == "embedding":
            q = np.asarray(queries, dtype=np.float32)
            q = q[None, :] if q.ndim == 1 else q
            if q.ndim != 2 or q.shape[1] != self.dim:
                raise KnowledgeBaseError(f"query embeddings have shape {tuple(np.shape(queries))}, but the knowledge "
                                         f"base at {self.path} holds {self.dim}-d embeddings")
            q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
            return np.ascontiguousarray(q), [None] * len(q)
        queries = list(queries)
        if kind == "id":
            return self.embeddings_for(queries), list(queries)
        kinds = []
        for q in queries:
            if kind != "auto":
                kinds.append(kind)
            elif hasattr(q, "convert") and hasattr(q, "size"):
                kinds.append("image")
            elif isinstance(q, Path) or (isinstance(q, str) and Path(q).suffix.lower() in IMAGE_EXTENSIONS
                                         and Path(q).is_file()):
                kinds.append("image")
            elif isinstance(q, str):
                kinds.append("text")
            else:
                raise KnowledgeBaseError(f"cannot tell what kind of query {type(q).__name__} is; pass kind=")
        out = np.zeros((len(queries), self.dim), np.float32)
        qids: list[Optional[str]] = [None] * len(queries)
        img = [j for j, k in enumerate(kinds) if k == "image"]
        txt = [j for j, k in enumerate(kinds) if k == "text"]
        if img:
            imgs = [queries[j] for j in img]
            for j in img:
                if isinstance(queries[j], (str, Path)):
                    qids[j] = self.id_for_path(queries[j])
            out[img] = self.encoder.embed_images(imgs)
        if txt:
            out[txt] = self.encoder.embed_texts([queries[j] for j in txt])
        return out, qids

    def search(self, queries, k: int = 10, *, kind: str = "auto", exclude_ids: Optional[Iterable[str]] = None,
               query_ids: Optional[Sequence[Optional[str]]] = None,
               max_similarity: Optional[float] = DEFAULT_MAX_SIMILARITY,
               batch_size: int = 1024) -> list[list[Hit]]:
        """The ``k`` most similar corpus images per query, most similar first: *similar but different*.

        Args:
            queries: images (PIL or paths), texts, corpus ids (``kind="id"``) or embeddings — see
                :meth:`embed_queries`.
            k: hits per query (fewer only when the corpus runs out).
            exclude_ids: ids never returned (for any query).
            query_ids: per-query corpus id excluded from that query's hits; found automatically for ids and
                for image paths inside the corpus.
            max_similarity: hits scoring above this (near-duplicates, the query itself) are skipped;
                ``None`` keeps everything.
            batch_size: queries per FAISS call.
        """
        q, auto_ids = self.embed_queries(queries, kind)
        if query_ids is not None:
            if len(query_ids) != len(q):
                raise KnowledgeBaseError(f"query_ids has {len(query_ids)} entries for {len(q)} queries")
            auto_ids = [a if a is not None else b for a, b in zip(query_ids, auto_ids)]
        return self.search_embeddings(q, k, exclude_ids=exclude_ids, query_ids=auto_ids,
                                      max_similarity=max_similarity, batch_size=batch_size)

    def search_embeddings(self, q: np.ndarray, k: int = 10, *, exclude_ids: Optional[Iterable[str]] = None,
                          query_ids: Optional[Sequence[Optional[str]]] = None,
                          max_similarity: Optional[float] = DEFAULT_MAX_SIMILARITY,
                          batch_size: int = 1024) -> list[list[Hit]]:
        """:meth:`search` on normalised query embeddings ``[n, dim]`` (batched FAISS calls)."""
        if k < 1:
            raise KnowledgeBaseError(f"k must be >= 1, got {k}")
        excl_rows = {self._row[i] for i in (exclude_ids or ()) if i in self._row}
        self_rows = [self._row.get(i, -1) if i is not None else -1 for i in (query_ids or [None] * len(q))]
        n = self.index.ntotal
        results: list[Optional[list[Hit]]] = [None] * len(q)
        fetch = min(n, 2 * k + len(excl_rows) + 2)
        pending = list(range(len(q)))
        while pending:
            retry = []
            for s in range(0, len(pending), batch_size):
                chunk = pending[s:s + batch_size]
                scores, rows = self.index.search(np.ascontiguousarray(q[chunk]), fetch)
                for j, sc, rw in zip(chunk, scores, rows):
                    hits = []
                    for score, row in zip(sc.tolist(), rw.tolist()):
                        if row < 0 or row in excl_rows or row == self_rows[j]:
                            continue
                        if max_similarity is not None and score > max_similarity:
                            continue
                        hits.append(Hit(self.ids[row], float(score), len(hits) + 1))
                        if len(hits) == k:
                            break
                    if len(hits) < k and fetch < n and int((rw >= 0).sum()) == fetch:
                        retry.append(j)
                    else:
                        results[j] = hits
            pending = retry
            fetch = min(n, fetch * 4)
        return results  # type: ignore[return-value]
