"""Embeddings that stay on disk: ``.npy`` shards read one at a time, so an index build's memory stays bounded.

    vectors = ShardedVectors([out / "embeddings/shard-00000.npy", ...])   # float16 or float32 [n_i, dim]
    for start, block in vectors.blocks():        # float32, L2-normalised, one shard (or less) in memory
        index.add(block)
    sample = vectors.take(np.arange(0, len(vectors), 97))     # sorted rows, gathered shard by shard
    truth = exact_knn(vectors, queries, 10)                    # exact top-k, one shard at a time

A shard is read with a plain file read, never kept mapped: pages of a long-lived memory map count in the
process's resident memory (RSS) as they are touched, so streaming a 20 GB file through one map would make the
build's peak RSS the size of the corpus. :class:`ArrayVectors` gives an in-memory array the same interface.
:class:`ShardReranker` re-scores an approximate index's candidates exactly from the shards, for indexes whose
full-precision copy does not fit the memory budget.
"""

from __future__ import annotations

import os
import resource
import sys
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

BLOCK = 65_536  # rows converted to float32 at a time (256 MiB at dim 1024)


def peak_rss_bytes() -> int:
    """This process's peak resident memory so far.

    Linux: ``VmHWM`` of ``/proc/self/status`` (``getrusage``'s ``ru_maxrss`` would also count the parent's
    resident memory at fork, which a child started by ``subprocess`` or ``multiprocessing`` inherits).
    Elsewhere: ``getrusage`` (kilobytes, bytes on macOS).
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _normalized(block: np.ndarray) -> np.ndarray:
    import faiss

    out = np.array(block, dtype=np.float32, order="C")  # a copy: the caller's data is never modified
    faiss.normalize_L2(out)
    return out


class ArrayVectors:
    """An in-memory ``[n, dim]`` array behind the :class:`ShardedVectors` interface."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = x
        self.dim = int(x.shape[1])

    def __len__(self) -> int:
        return len(self.x)

    @property
    def block_bytes(self) -> int:
        """Most bytes :meth:`blocks` holds in memory at once (a float32 copy of a block)."""
        return min(len(self.x), BLOCK) * self.dim * 4

    def blocks(self, size: int = BLOCK) -> Iterator[tuple[int, np.ndarray]]:
        for s in range(0, len(self.x), size):
            yield s, _normalized(self.x[s : s + size])

    def take(self, rows: np.ndarray) -> np.ndarray:
        return _normalized(self.x[np.asarray(rows, dtype=np.int64)])


class ShardedVectors:
    """Row-concatenation of ``.npy`` shard files (row ``i`` of the whole = row ``i - offset`` of its shard)."""

    def __init__(self, paths: Sequence[str | os.PathLike]) -> None:
        self.paths = [Path(p) for p in paths]
        heads = [np.load(p, mmap_mode="r", allow_pickle=False) for p in self.paths]  # headers only
        shapes = [h.shape for h in heads]
        self.dim = int(shapes[0][1]) if shapes else 0
        self.itemsize = max((h.dtype.itemsize for h in heads), default=4)
        del heads
        if any(len(s) != 2 or s[1] != self.dim for s in shapes):
            raise ValueError(f"shards under {self.paths[0].parent} do not all hold [n, {self.dim}] vectors")
        self.offsets = np.cumsum([0] + [s[0] for s in shapes])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def block_bytes(self) -> int:
        """Most bytes :meth:`blocks` holds in memory at once: a whole shard as stored, and a float32 block of it."""
        rows = int(max(np.diff(self.offsets), default=0))
        return rows * self.dim * self.itemsize + min(rows, BLOCK) * self.dim * 4

    def blocks(self, size: int = BLOCK) -> Iterator[tuple[int, np.ndarray]]:
        """``(first row, float32 normalised block)`` in row order; at most one shard is in memory at a time."""
        for i, p in enumerate(self.paths):
            shard = np.load(p, allow_pickle=False)
            for s in range(0, len(shard), size):
                yield int(self.offsets[i]) + s, _normalized(shard[s : s + size])
            del shard

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Rows (any order) as float32 normalised vectors, each shard opened only while its rows are read."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), self.dim), np.float32)
        order = np.argsort(rows, kind="stable")  # read each shard in row order
        ordered = rows[order]
        bounds = np.searchsorted(ordered, self.offsets)
        for s in range(len(self.paths)):
            a, b = bounds[s], bounds[s + 1]
            if a == b:
                continue
            shard = np.load(self.paths[s], mmap_mode="r", allow_pickle=False)
            out[order[a:b]] = shard[ordered[a:b] - self.offsets[s]]
            del shard  # unmapped: touched pages leave this process's RSS
        import faiss

        faiss.normalize_L2(out)
        return out


def as_vectors(x) -> ArrayVectors | ShardedVectors:
    return x if isinstance(x, (ArrayVectors, ShardedVectors)) else ArrayVectors(np.asarray(x))


def exact_knn(vectors, queries: np.ndarray, k: int, *, exclude: np.ndarray | None = None) -> np.ndarray:
    """Exact top-``k`` rows by inner product, streaming over ``vectors`` with a running merge of partial results.

    ``exclude[j]`` (a row, or -1) is left out of query ``j``'s result (a stored vector's own row). Missing
    results are -1. Memory: the queries, ``k`` results each, and one block of vectors.
    """
    import faiss

    vectors = as_vectors(vectors)
    q = np.ascontiguousarray(queries, dtype=np.float32)
    extra = 0 if exclude is None else 1
    heap = faiss.ResultHeap(len(q), k + extra, keep_max=True)
    for start, block in vectors.blocks():
        d, i = faiss.knn(q, block, min(k + extra, len(block)), metric=faiss.METRIC_INNER_PRODUCT)
        if d.shape[1] < k + extra:
            pad = k + extra - d.shape[1]
            d = np.hstack([d, np.full((len(q), pad), -np.inf, np.float32)])
            i = np.hstack([i, np.full((len(q), pad), -1 - start, np.int64)])
        heap.add_result(d, i + start)
    heap.finalize()
    ids = heap.I
    if exclude is None:
        return ids[:, :k]
    return drop_rows(ids, exclude, k)


def drop_rows(ids: np.ndarray, exclude: np.ndarray, k: int) -> np.ndarray:
    """Each row of ``ids`` without its ``exclude`` entry (and without -1), cut to ``k`` (padded with -1)."""
    out = np.full((len(ids), k), -1, dtype=np.int64)
    for r, (row, me) in enumerate(zip(ids.tolist(), np.asarray(exclude).tolist())):
        rest = [i for i in row if i != me and i >= 0][:k]
        out[r, : len(rest)] = rest
    return out


class ShardReranker:
    """An approximate index whose top ``k * k_factor`` candidates are re-scored exactly from on-disk shards.

    It answers ``search(q, k) -> (scores, rows)`` like a FAISS index, with the full-precision vectors read from
    disk instead of held in RAM (FAISS' ``IndexRefineFlat`` keeps them in RAM).
    """

    def __init__(self, index, vectors: ShardedVectors, k_factor: int = 8) -> None:
        self.index, self.vectors, self.k_factor = index, vectors, int(k_factor)
        self.ntotal, self.d = index.ntotal, index.d

    def search(self, q: np.ndarray, k: int, batch_bytes: int = 8 * 2**20) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(q, dtype=np.float32)
        kc = min(self.ntotal, k * self.k_factor)
        scores = np.full((len(q), k), -np.inf, np.float32)
        rows = np.full((len(q), k), -1, np.int64)
        batch = max(1, batch_bytes // (max(kc, 1) * self.d * 4))  # candidate vectors read at once: ~8 MiB
        for s in range(0, len(q), batch):
            qb = q[s : s + batch]
            _, cand = self.index.search(qb, kc)
            valid = cand >= 0
            vecs = self.vectors.take(np.where(valid, cand, 0).ravel()).reshape(len(qb), kc, -1)
            exact = np.where(valid, np.einsum("qd,qcd->qc", qb, vecs), -np.inf)
            order = np.argsort(-exact, axis=1, kind="stable")[:, :k]
            m = order.shape[1]
            top = np.take_along_axis(exact, order, 1)
            scores[s : s + len(qb), :m] = top
            rows[s : s + len(qb), :m] = np.where(np.isfinite(top), np.take_along_axis(cand, order, 1), -1)
        return scores, rows
