"""The ``auto`` index: measure candidate FAISS index families on a sample, keep the fastest that is good enough.

    built = build_index(ShardedVectors(paths), index_type="auto", target_recall=0.95, memory_budget="4GB")
    faiss.write_index(built.index, "index.faiss"); built.info["candidates"]      # what was measured, and why

Recall of an approximate index depends on the data: on well-separated clusters any IVF index is near-perfect
with a few lists probed, on continuous low-rank data (real CLIP embeddings) neighbours spread over many lists.
So ``auto`` assumes nothing. Each candidate family whose full-size build fits ``memory_budget`` is built on a
seeded sample of up to 50,000 stored vectors, its search parameters are tuned (:func:`tune_index`) on 500
held-out stored vectors against exact search, and its query speed at that setting is timed. The fastest one
whose recall lower bound (95% Wilson) reaches the target wins; ``Flat`` (exact) is always a candidate, so the
choice is never slower than exact search on the sample. The winner is then built on all vectors and tuned again
at full size, against exact ground truth streamed over the shards, so the recall in the manifest is the
recall of the index that was written. At most 10,000 vectors get ``Flat`` without measuring (an exact scan of
them takes about a millisecond).

Families: ``Flat``; ``HNSW32,Flat`` (graph, ``efSearch``); ``IVF{nlist},Flat`` (``nprobe``); and
``IVF{nlist},PQ{dim/4}x4fs`` — 4-bit fast-scan product codes, 4 bits per 4 dimensions — whose
``k * k_factor`` best candidates are re-scored exactly, from a float copy in RAM (FAISS ``RFlat``) when it fits
the budget, else from the on-disk shards (:class:`~realign_data.kb.vector_shards.ShardReranker`). ``nlist`` is a
power of two near ``4 * sqrt(n)`` (fewer when the budget cannot hold 40 training vectors per list); from 16,384
lists on, the coarse quantizer is an HNSW graph (``IVF{nlist}_HNSW32``), because scanning every centroid would
then cost more than the lists probed.

Memory: vectors stay in their shards (read one at a time); a candidate counts only if its estimated full-size
index plus the build's working set (the training sample, one shard and a float32 block of it, search buffers)
fits the budget.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Optional

import numpy as np

from realign_data.kb.index_tuning import (
    IndexConfigError,
    make_index,
    nlist_for,
    parse_memory,
    train_and_add,
    tune_index,
)
from realign_data.kb.vector_shards import BLOCK, ShardedVectors, ShardReranker, as_vectors, exact_knn

logger = logging.getLogger(__name__)

EXACT_MAX = 10_000
SAMPLE_MAX = 50_000
SAMPLE_QUERIES = 500
HNSW_M = 32
HNSW_QUANTIZER_MIN = 16_384
MAX_TRAIN = 131_072
SEARCH_BYTES = 48 * 2**20  # tuning's search buffers (results, re-ranking batches) and allocator slack


@dataclass
class Candidate:
    """One index family, with what was measured on the sample (``status`` says why it was or was not used)."""

    family: str
    factory: str  # at full size
    rerank: Optional[str] = None  # "ram" (FAISS RFlat) or "disk" (from the shards)
    bytes: int = 0  # estimated RAM of the full-size index
    build_bytes: int = 0  # estimated peak RAM of the full-size build (index + working set)
    status: str = "not measured"
    sample_factory: str = ""
    params: dict = field(default_factory=dict)
    recall: Optional[float] = None
    recall_lower: Optional[float] = None
    qps: Optional[float] = None
    build_s: Optional[float] = None


@dataclass
class BuiltIndex:
    index: object  # the FAISS index to write
    searcher: object  # what answers queries: the index, or a ShardReranker around it
    info: dict  # the manifest's "index" section (without the file size)


def _pq_m(dim: int) -> int:
    """Sub-quantizers of the fast-scan PQ: 4 dimensions each (dim/4 of them), even, at least 2."""
    m = dim // 4 if dim % 4 == 0 else dim // 2 if dim % 2 == 0 else dim
    return max(2, m + (m % 2))


def ivf_lists(n: int, dim: int, budget: int = 2**62) -> int:
    """IVF list count: a power of two near ``4 * sqrt(n)``, halved until a training sample of 40 vectors per list
    (held twice while training) takes at most half the budget."""
    nl = nlist_for(n)
    while nl > 1 and 2 * 40 * nl * dim * 4 > budget // 2:
        nl //= 2
    return nl


def _template(family: str, n: int, dim: int, budget: int = 2**62) -> str:
    nl = ivf_lists(n, dim, budget)
    ivf = f"IVF{nl}" + ("_HNSW32" if nl >= HNSW_QUANTIZER_MIN else "")
    return {
        "Flat": "Flat",
        "HNSW": f"HNSW{HNSW_M},Flat",
        "IVF-Flat": f"{ivf},Flat",
        "IVF-PQfs+refine": f"{ivf},PQ{_pq_m(dim)}x4fs",
    }[family]


def train_rows(n: int, dim: int, budget: int) -> int:
    """Training sample of an IVF index: 40 vectors per list (FAISS wants 39), else up to 131,072 as the budget
    allows (training holds the sample twice: the vectors and their residuals)."""
    return min(n, max(40 * ivf_lists(n, dim, budget), min(MAX_TRAIN, budget // (4 * dim * 4))))


def estimate_bytes(
    family: str,
    n: int,
    dim: int,
    rerank: Optional[str] = None,
    *,
    budget: int = 2**62,
    block_bytes: Optional[int] = None,
) -> tuple[int, int]:
    """(RAM of the index, peak RAM of its build) for ``n`` vectors, rough but on the safe side."""
    nl = ivf_lists(n, dim, budget)
    centroids = nl * dim * 4 + (nl * (HNSW_M * 2 * 4 * 1.1 + 16) if nl >= HNSW_QUANTIZER_MIN else 0)
    raw = n * dim * 4
    index = {
        "Flat": raw,
        "HNSW": n * (dim * 4 + HNSW_M * 2 * 4 * 1.1 + 16),
        "IVF-Flat": raw + n * 8 + centroids,
        "IVF-PQfs+refine": n * (_pq_m(dim) / 2 + 8) + centroids + (raw if rerank == "ram" else 0),
    }[family]
    train = 2 * train_rows(n, dim, budget) * dim * 4 if family.startswith("IVF") else 0
    block = block_bytes if block_bytes is not None else 2 * min(n, BLOCK) * dim * 4  # a shard read, a float32 block
    return int(index), int(max(train + centroids * 2, index + block + SEARCH_BYTES))


def candidates(n: int, dim: int, budget: int, *, on_disk: bool, block_bytes: Optional[int] = None) -> list[Candidate]:
    """The families ``auto`` considers for ``n`` vectors, each marked ``over memory budget`` when it does not fit."""
    out = []
    for family, rerank in (
        ("Flat", None),
        ("HNSW", None),
        ("IVF-Flat", None),
        ("IVF-PQfs+refine", "ram"),
        ("IVF-PQfs+refine", "disk"),
    ):
        index_b, build_b = estimate_bytes(family, n, dim, rerank, budget=budget, block_bytes=block_bytes)
        factory = _template(family, n, dim, budget) + (",RFlat" if rerank == "ram" else "")
        c = Candidate(family, factory, rerank, index_b, build_b)
        if rerank == "disk" and (not on_disk or out[-1].build_bytes <= budget):
            continue  # re-ranking from disk only when the in-RAM copy does not fit (and there are shards)
        if build_b > budget:
            c.status = "over memory budget"
        out.append(c)
    return out


def _measure(c: Candidate, sample, queries: np.ndarray, truth: np.ndarray, target: float, k: int) -> None:
    """Build ``c`` on the sample, tune it on the held-out queries, time it; fill its measurements."""
    import faiss

    s, dim = len(sample), sample.shape[1]
    c.sample_factory = _template(c.family, s, dim) + (",RFlat" if c.rerank else "")  # disk re-rank ~ RFlat here
    t = time.perf_counter()
    index = faiss.IndexFlatIP(dim) if c.family == "Flat" else make_index(c.sample_factory, dim)
    train_and_add(index, sample)
    c.build_s = round(time.perf_counter() - t, 2)
    tuned = tune_index(index, sample, target_recall=target, k=k, queries=queries, truth=truth)
    c.params, c.recall, c.recall_lower = tuned.params, round(tuned.recall, 4), round(tuned.recall_lower, 4)
    c.qps = round(tuned.qps, 1)
    c.status = "measured" if tuned.target_reached else "recall target not reached"


def choose(
    vectors,
    *,
    target_recall: float,
    budget: int,
    k: int = 10,
    seed: int = 0,
    exact_max: int = EXACT_MAX,
    sample_max: int = SAMPLE_MAX,
) -> tuple[Candidate, list[Candidate], int]:
    """Measure the candidates on a sample; return (winner, all candidates, sample size)."""
    n, dim = len(vectors), vectors.dim
    cands = candidates(n, dim, budget, on_disk=isinstance(vectors, ShardedVectors), block_bytes=vectors.block_bytes)
    if n <= exact_max:
        cands = [c for c in cands if c.family == "Flat"]
        cands[0].status = f"chosen: exact, at most {exact_max:,} vectors"
        cands[0].recall = cands[0].recall_lower = 1.0
        return cands[0], cands, 0
    nq = min(SAMPLE_QUERIES, max(1, n // 10))
    s = int(min(sample_max, n - nq, max(1_000, budget // (dim * 4 * 6))))  # sample, index, training copy
    rng = np.random.default_rng(seed)
    rows = rng.permutation(n)[: s + nq]
    sample, queries = vectors.take(np.sort(rows[:s])), vectors.take(np.sort(rows[s:]))
    truth = exact_knn(sample, queries, min(k, s))
    for c in cands:
        if c.status == "not measured":
            logger.info("measuring %s on %d sampled vectors", c.factory, s)
            _measure(c, sample, queries, truth, target_recall, k)
    good = [c for c in cands if c.status == "measured"]
    if not good:  # nothing reaches the target within the budget: the most accurate that fits
        good = sorted((c for c in cands if c.recall is not None), key=lambda c: -(c.recall_lower or 0))[:1]
        if not good:
            raise IndexConfigError(
                f"a memory budget of {budget} bytes cannot hold the build of {n} vectors of "
                f"dimension {dim}, even compressed; raise --memory-budget"
            )
    best = max(good, key=lambda c: c.qps or 0)
    for c in good:
        if c is not best and c.status == "measured":
            c.status = f"slower ({c.qps:.0f} vs {best.qps:.0f} queries/s)"
    best.status = "chosen" if best.status == "measured" else "chosen (target not reached by any candidate)"
    return best, cands, s


def build_index(
    vectors,
    *,
    index_type: str = "auto",
    target_recall: float = 0.95,
    memory_budget: str | int | None = "auto",
    k: int = 10,
    seed: int = 0,
    exact_max: int = EXACT_MAX,
    sample_max: int = SAMPLE_MAX,
) -> BuiltIndex:
    """Choose (for ``"auto"``), build and tune an index over ``vectors`` (array or on-disk shards)."""
    vectors = as_vectors(vectors)
    n, dim = len(vectors), vectors.dim
    budget = parse_memory(memory_budget)
    t0 = time.perf_counter()
    cands, sample_size, rerank = [], 0, None
    if index_type == "auto":
        best, cands, sample_size = choose(
            vectors,
            target_recall=target_recall,
            budget=budget,
            k=k,
            seed=seed,
            exact_max=exact_max,
            sample_max=sample_max,
        )
        factory, rerank = best.factory, best.rerank
    else:
        factory = index_type
    choose_s = time.perf_counter() - t0
    logger.info("building %s over %d vectors%s", factory, n, " (re-ranking from disk)" if rerank == "disk" else "")
    index = make_index(factory, dim)
    train_and_add(index, vectors, max_train=train_rows(n, dim, budget))
    searcher = ShardReranker(index, vectors) if rerank == "disk" else index
    tuned = tune_index(searcher, vectors, target_recall=target_recall, k=k, seed=seed)
    info = {
        "factory": factory,
        "requested": index_type,
        "rerank": rerank,
        "search_params": tuned.params,
        "recall_at_10": round(tuned.recall, 4),
        "recall_lower_bound": round(tuned.recall_lower, 4),
        "target_recall": target_recall,
        "target_reached": tuned.target_reached,
        "recall_queries": tuned.num_queries,
        "memory_budget_bytes": budget,
        "sample_size": sample_size,
        "candidates": [asdict(c) for c in cands],
        "choose_seconds": round(choose_s, 1),
        "build_seconds": round(time.perf_counter() - t0, 1),
    }
    return BuiltIndex(index, searcher, info)


def _num(value, spec: str) -> str:
    return format(value, spec) if value is not None else "-"


def describe(index_info: dict) -> str:
    """Human-readable lines: the chosen index, and the candidates measured with their results."""
    params = ", ".join(f"{k}={v}" for k, v in index_info.get("search_params", {}).items()) or "exact"
    lines = [
        f"index: {index_info['factory']} ({params})"
        + (", re-ranked from the on-disk shards" if index_info.get("rerank") == "disk" else ""),
        f"recall@10: {index_info.get('recall_at_10')} (95% lower bound {index_info.get('recall_lower_bound')}, "
        f"target {index_info.get('target_recall')}, {index_info.get('recall_queries')} queries)",
    ]
    if index_info.get("peak_rss_bytes"):
        lines.append(
            f"index build: {index_info.get('build_seconds')} s; peak RSS of the building process "
            f"{index_info['peak_rss_bytes'] / 2**30:.2f} GiB (index budget "
            f"{index_info.get('memory_budget_bytes', 0) / 2**30:.2f} GiB)"
        )
    cands = index_info.get("candidates") or []
    if cands:
        size = index_info.get("sample_size")
        lines.append(f"candidates (measured on {size:,} sampled vectors):" if size else "candidates:")
        lines.append(f"  {'factory':<34}{'params':<24}{'recall':>8}{'lower':>8}{'queries/s':>11}{'GiB':>7}  status")
        for c in cands:
            p = ", ".join(f"{k}={v}" for k, v in (c.get("params") or {}).items())
            lines.append(
                f"  {c['factory'] + (' (disk re-rank)' if c.get('rerank') == 'disk' else ''):<34}{p:<24}"
                f"{_num(c.get('recall'), '.3f'):>8}{_num(c.get('recall_lower'), '.3f'):>8}"
                f"{_num(c.get('qps'), '.0f'):>11}{c['bytes'] / 2**30:>7.2f}  {c['status']}"
            )
    return "\n".join(lines)
