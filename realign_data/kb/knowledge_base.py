"""The image knowledge base: named indexes on disk, and retrieval of similar images from a built one.

Built by :mod:`realign_data.kb.knowledge_base_build` (resumable, shardable over processes)::

    from realign_data.kb.corpus import open_source
    from realign_data.kb.knowledge_base import KnowledgeBase, resolve_index
    from realign_data.kb.knowledge_base_build import build_knowledge_base

    report = build_knowledge_base(open_source("coco", "data/coco"), resolve_index("coco", must_exist=False))
    kb = KnowledgeBase.load("coco")                      # a name under $REALIGN_HOME/indexes, or a path
    hits = kb.search(["train2014/COCO_train2014_000000000009.jpg"], k=5, kind="id")[0]

On disk (every file written to a temporary name, then renamed; no pickle anywhere)::

    DIR/build_config.json          what the embeddings depend on (a re-run must match it)
    DIR/embeddings/shard-00000.npy float16 [n, dim] L2-normalised embeddings of shard 0
    DIR/embeddings/shard-00000.parquet  metadata rows of the embedded images of shard 0
    DIR/embeddings/shard-00000.json     completion marker: counts, skipped images (with reasons), file sha256
    DIR/index.faiss                FAISS index over all shards, row i = metadata row i
    DIR/metadata.parquet           id, path, width, height, coco_image_id, categories, split, row
    DIR/manifest.json              encoder, dim, metric, count, factory, search params, recall, the index
                                   candidates measured (realign_data.kb.index_auto), build peak RSS, versions...

"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from realign_data.kb.corpus import IMAGE_EXTENSIONS

FORMAT = "realign-knowledge-base"
FORMAT_VERSION = 1
DEFAULT_MAX_SIMILARITY = 0.95
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class KnowledgeBaseError(ValueError):
    """A knowledge base cannot be built, found or queried as asked (one clear sentence)."""


class KnowledgeBaseCorrupt(KnowledgeBaseError):
    """A finished knowledge base whose files do not match its manifest (the message says how to rebuild it)."""


# ------------------------------------------------------------------------------------- named indexes


def realign_home() -> Path:
    """Cache root: ``$REALIGN_HOME`` or ``~/.cache/realign``."""
    return Path(os.environ.get("REALIGN_HOME") or Path.home() / ".cache" / "realign").expanduser()


def indexes_root() -> Path:
    return realign_home() / "indexes"


def is_index_name(text: str) -> bool:
    """Whether ``text`` can name an index under ``$REALIGN_HOME/indexes`` (letters, digits, '_', '-', '.')."""
    return bool(_NAME.match(text))


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
                entry.update(
                    count=m.get("count"),
                    model=m["encoder"]["model"],
                    factory=m["index"]["factory"],
                    source=m["source"].get("type"),
                    recall=m["index"].get("recall_at_10"),
                )
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
    looks_like_path = (
        not isinstance(name_or_path, str) or os.sep in text or text.startswith((".", "~")) or not _NAME.match(text)
    )
    d = p if looks_like_path or (p / "manifest.json").is_file() else index_dir_for_name(text)
    if must_exist and not (d / "manifest.json").is_file():
        names = [e["name"] for e in list_indexes() if e["complete"]]
        hint = f"available: {', '.join(names)}" if names else "build one with 'realign-data index build'"
        raise KnowledgeBaseError(f"no finished knowledge base at {str(name_or_path)!r} ({d}); {hint}")
    return d


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
    def load(cls, name_or_path: str | os.PathLike, *, encoder=None, mmap: bool = False) -> KnowledgeBase:
        """Open a finished knowledge base by directory or name (``$REALIGN_HOME/indexes/<name>``).

        ``encoder`` (optional) is the :class:`~realign_data.kb.encoder.Encoder` used for image/text queries; it
        must be the one the index was built with (else :class:`KnowledgeBaseError`). Without it, one is
        created from the manifest on the first image/text query.
        """
        import faiss
        import pyarrow.parquet as pq

        from realign_data.kb.index_tuning import apply_search_params
        from realign_data.kb.knowledge_base_check import (
            KnowledgeBaseDamaged,
            check_files,
            check_index,
            check_manifest,
            damaged,
            read_index,
        )

        path = resolve_index(name_or_path)
        try:  # every file checked against the manifest first: a damaged base is one sentence with its fix
            manifest = check_manifest(path)
            if manifest.get("format") != FORMAT or manifest.get("format_version", 0) > FORMAT_VERSION:
                raise KnowledgeBaseError(f"{path} is not a {FORMAT} (version <= {FORMAT_VERSION}) directory")
            check_files(path, manifest)
            index = read_index(path, faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0)
            check_index(path, manifest, index)
            try:
                table = pq.read_table(path / "metadata.parquet")
            except Exception as e:  # noqa: BLE001 - Arrow raises several types for a garbled file
                raise damaged(path, f"metadata.parquet is not readable ({type(e).__name__})") from None
        except KnowledgeBaseDamaged as e:
            raise KnowledgeBaseCorrupt(str(e)) from None
        if manifest["index"].get("rerank") == "disk":  # candidates re-scored from the stored shards
            from realign_data.kb.vector_shards import ShardedVectors, ShardReranker

            index = ShardReranker(
                index, ShardedVectors([path / "embeddings" / s["file"] for s in manifest["shards"] if s["count"]])
            )
        apply_search_params(index, manifest["index"].get("search_params", {}))
        return cls(path, manifest, index, table, encoder)

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, id_: str) -> bool:
        return id_ in self._row

    def __repr__(self) -> str:
        return (
            f"KnowledgeBase({str(self.path)!r}, count={len(self)}, model={self.manifest['encoder']['model']!r}, "
            f"factory={self.manifest['index']['factory']!r})"
        )

    # --------------------------------------------------------------------------------------- encoder
    def check_encoder(self, encoder) -> None:
        """Raise :class:`KnowledgeBaseError` unless ``encoder`` is the one this index was built with."""
        want = self.manifest["encoder"]
        got = encoder.identity
        if got["dim"] != want["dim"]:
            raise KnowledgeBaseError(
                f"encoder {got['model']!r} makes {got['dim']}-d embeddings but the knowledge base "
                f"at {self.path} holds {want['dim']}-d ones from {want['model']!r}"
            )
        same_weights = (
            got["checkpoint_sha256"] == want["checkpoint_sha256"]
            if want["checkpoint_sha256"]
            else got["pretrained"] == want["pretrained"]
        )
        if got["model"] != want["model"] or not same_weights:
            raise KnowledgeBaseError(
                f"the knowledge base at {self.path} was built with {want['model']!r} / {want['pretrained']!r}, "
                f"not {got['model']!r} / {got['pretrained']!r}; query it with the same encoder or rebuild it"
            )

    @property
    def encoder(self):
        """The query encoder (created from the manifest on first use)."""
        if self._encoder is None:
            from realign_data.kb.encoder import Encoder

            e = self.manifest["encoder"]
            pretrained = e["pretrained"]
            if e["checkpoint_sha256"] and not Path(pretrained).is_file():
                raise KnowledgeBaseError(
                    f"the checkpoint this knowledge base was built with, {pretrained}, is gone; "
                    f"pass encoder=Encoder(...) with the same weights"
                )
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
            self._by_path = {
                str((root / p).resolve()): i for p, i in zip(self._table.column("path").to_pylist(), self.ids)
            }
        return self._by_path.get(str(Path(path).expanduser().resolve()))

    def load_image(self, id_: str):
        """Decode a corpus image (``PIL.Image``, RGB)."""
        from realign_data.kb.corpus import HFSource, open_image_file

        src = self.manifest["source"]
        if src["type"] in ("coco", "folder"):
            return open_image_file(str(self.image_path(id_)))
        if self._hf is None:
            self._hf = HFSource(
                src["root"],
                split=src.get("split"),
                image_column=src.get("image_column"),
                streaming=not src.get("local", True),
            )
        return self._hf.load_row(int(self.record(id_)["row"]))

    def embeddings_for(self, ids: Sequence[str]) -> np.ndarray:
        """Stored embeddings (float32, L2-normalised) of corpus ids, in the order given."""
        import faiss

        if self._emb is None:
            shards = [
                np.load(self.path / "embeddings" / s["file"], mmap_mode="r", allow_pickle=False)
                for s in self.manifest["shards"]
            ]
            offsets = np.cumsum([0] + [len(s) for s in shards])
            self._emb = (shards, offsets)
        shards, offsets = self._emb
        out = np.zeros((len(ids), self.dim), np.float32)
        for j, id_ in enumerate(ids):
            r = self._row_of(id_)
            s = int(np.searchsorted(offsets, r, side="right") - 1)
            out[j] = shards[s][r - offsets[s]]
        faiss.normalize_L2(out)
        return out

    # ---------------------------------------------------------------------------------------- search
    def embed_queries(self, queries, kind: str = "auto") -> tuple[np.ndarray, list[Optional[str]]]:
        """Turn queries into embeddings; also return the corpus id of each query when it has one.

        ``kind``: ``"embedding"`` (array ``[n, dim]`` or ``[dim]``), ``"id"`` (corpus ids: stored embeddings,
        no re-embedding), ``"image"`` (PIL images or file paths), ``"text"``, or ``"auto"``: arrays are
        embeddings, PIL images and paths of existing image files are images, other strings are texts.
        """
        import faiss

        if kind == "auto" and isinstance(queries, np.ndarray):
            kind = "embedding"
        if kind == "embedding":
            q = np.asarray(queries, dtype=np.float32)
            q = q[None, :] if q.ndim == 1 else q
            if q.ndim != 2 or q.shape[1] != self.dim:
                raise KnowledgeBaseError(
                    f"query embeddings have shape {tuple(np.shape(queries))}, but the knowledge "
                    f"base at {self.path} holds {self.dim}-d embeddings"
                )
            q = np.array(q, dtype=np.float32, order="C")  # a copy: normalised in place
            if not np.allclose(np.linalg.norm(q, axis=1), 1.0, rtol=0, atol=1e-6):  # unit vectors are used as given
                faiss.normalize_L2(q)
            return q, [None] * len(q)
        queries = list(queries)
        if kind == "id":
            return self.embeddings_for(queries), list(queries)
        kinds = []
        for q in queries:
            if kind != "auto":
                kinds.append(kind)
            elif hasattr(q, "convert") and hasattr(q, "size"):
                kinds.append("image")
            elif isinstance(q, Path) or (
                isinstance(q, str) and Path(q).suffix.lower() in IMAGE_EXTENSIONS and Path(q).is_file()
            ):
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

    def search(
        self,
        queries,
        k: int = 10,
        *,
        kind: str = "auto",
        exclude_ids: Optional[Iterable[str]] = None,
        query_ids: Optional[Sequence[Optional[str]]] = None,
        max_similarity: Optional[float] = DEFAULT_MAX_SIMILARITY,
        batch_size: int = 1024,
    ) -> list[list[Hit]]:
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
        return self.search_embeddings(
            q, k, exclude_ids=exclude_ids, query_ids=auto_ids, max_similarity=max_similarity, batch_size=batch_size
        )

    def search_embeddings(
        self,
        q: np.ndarray,
        k: int = 10,
        *,
        exclude_ids: Optional[Iterable[str]] = None,
        query_ids: Optional[Sequence[Optional[str]]] = None,
        max_similarity: Optional[float] = DEFAULT_MAX_SIMILARITY,
        batch_size: int = 1024,
    ) -> list[list[Hit]]:
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
                chunk = pending[s : s + batch_size]
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
