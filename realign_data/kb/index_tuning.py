"""Build FAISS indexes for cosine similarity and tune their search parameters against exact search.

Vectors are L2-normalised, so cosine similarity is the inner product (``METRIC_INNER_PRODUCT``).
:func:`tune_index` tries search parameters (``nprobe``, ``efSearch``, and the re-ranking depth ``k_factor`` of
indexes that re-score candidates exactly) and keeps the fastest setting whose recall@k is reached with
confidence: the lower end of the 95% Wilson interval of the measured recall must reach the target, so a lucky
sample of queries does not pass. Which index family to build is measured in :mod:`realign_data.kb.index_auto`.
"""

from __future__ import annotations

import math
import os
import re
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np


class IndexConfigError(ValueError):
    """A bad index type, factory string or memory budget (one clear sentence)."""


_UNITS = {
    "": 1,
    "b": 1,
    "k": 1e3,
    "kb": 1e3,
    "m": 1e6,
    "mb": 1e6,
    "g": 1e9,
    "gb": 1e9,
    "t": 1e12,
    "tb": 1e12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def parse_memory(budget: str | int | float | None) -> int:
    """Parse ``"4GB"``, ``"512MiB"``, ``"2e9"`` or bytes; ``None``/``"auto"`` = half the machine's RAM."""
    if budget is None or str(budget).lower() == "auto":
        try:
            return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2)
        except (ValueError, OSError, AttributeError):
            return 8 * 2**30
    if isinstance(budget, (int, float)):
        return int(budget)
    m = re.fullmatch(r"\s*([0-9.eE+]+)\s*([A-Za-z]*)\s*", str(budget))
    if not m or m.group(2).lower() not in _UNITS:
        raise IndexConfigError(f"cannot read memory budget {budget!r}; write e.g. 4GB, 512MiB or a byte count")
    try:
        value = float(m.group(1)) * _UNITS[m.group(2).lower()]
    except ValueError:
        raise IndexConfigError(
            f"cannot read memory budget {budget!r}; write e.g. 4GB, 512MiB or a byte count"
        ) from None
    if value <= 0:
        raise IndexConfigError(f"memory budget must be positive, got {budget!r}")
    return int(value)


def nlist_for(n: int) -> int:
    """IVF list count: a power of two near 4*sqrt(n), at least ~39 training points per list."""
    target = 4 * math.sqrt(n)
    nlist = 2 ** max(0, round(math.log2(max(target, 1))))
    while nlist > 1 and n / nlist < 39:
        nlist //= 2
    return max(1, nlist)


def make_index(factory: str, dim: int):
    import faiss

    try:
        return faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except Exception as e:
        raise IndexConfigError(
            f"{factory!r} is not a valid FAISS factory string for dimension {dim} "
            f"(e.g. Flat, HNSW32,Flat, IVF1024,Flat, IVF1024,PQ128x4fs,RFlat)"
        ) from e


def _refine(index):
    """The ``IndexRefine`` (FAISS ``...,RFlat``) or :class:`ShardReranker` wrapping an index, else None."""
    import faiss

    if hasattr(index, "k_factor") and hasattr(index, "vectors"):  # ShardReranker
        return index
    down = faiss.downcast_index(index)
    return down if isinstance(down, faiss.IndexRefine) else None


def _base(index):
    refine = _refine(index)
    if refine is None:
        return index
    return refine.index if hasattr(refine, "vectors") else refine.base_index


def search_parameters(index) -> list[str]:
    """The tunable search parameters: ``["nprobe"]``, ``["efSearch"]``, plus ``"k_factor"`` for re-ranking indexes."""
    import faiss

    base = _base(index)
    names = []
    try:
        faiss.extract_index_ivf(base)
        names.append("nprobe")
    except Exception:  # noqa: BLE001 - not an IVF index
        try:
            faiss.ParameterSpace().set_index_parameter(base, "efSearch", 16)
            names.append("efSearch")
        except Exception:  # noqa: BLE001 - an exact index
            pass
    return names + (["k_factor"] if _refine(index) is not None else [])


def search_parameter(index) -> Optional[str]:
    """The main search parameter (``"nprobe"``, ``"efSearch"``) or ``None`` for an exact index."""
    names = [n for n in search_parameters(index) if n != "k_factor"]
    return names[0] if names else None


def parameter_range(index, name: Optional[str]) -> list[int]:
    import faiss

    if name == "nprobe":
        nlist = faiss.extract_index_ivf(_base(index)).nlist
        vals, v = [], 1
        while v < nlist:
            vals.append(v)
            v *= 2
        return vals + [nlist]
    if name == "efSearch":
        return [16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 2048]
    if name == "k_factor":
        return [1, 2, 4, 8, 16, 32, 64, 128, 256]
    return []


def apply_search_params(index, params: dict) -> None:
    """Set search parameters; ``nprobe`` also widens an HNSW coarse quantizer's ``efSearch`` to cover it."""
    import faiss

    ps = faiss.ParameterSpace()
    base = _base(index)
    for k, v in (params or {}).items():
        if k == "k_factor":
            _refine(index).k_factor = int(v)
            continue
        ps.set_index_parameter(base, k, v)
        if k == "nprobe":
            quantizer = faiss.downcast_index(faiss.extract_index_ivf(base).quantizer)
            if isinstance(quantizer, faiss.IndexHNSW):
                quantizer.hnsw.efSearch = max(64, 2 * int(v))


def train_and_add(index, vectors, *, seed: int = 1234, max_train: int = 131_072) -> None:
    """Train on a seeded sample (at most ``max_train`` vectors, 40 per IVF list) and add all vectors block by block.

    ``vectors``: an array or :class:`~realign_data.kb.vector_shards.ShardedVectors` (never loaded whole).
    """
    import faiss

    from realign_data.kb.vector_shards import as_vectors

    vectors = as_vectors(vectors)
    if not index.is_trained:
        try:  # 10 k-means iterations (FAISS default 25): ~same recall after tuning, 2.5x faster training
            ivf = faiss.extract_index_ivf(_base(index))
            ivf.cp.niter = 10
            max_train = max(max_train, 39 * ivf.nlist)  # FAISS wants >= 39 training points per list
        except Exception:  # noqa: BLE001 - not an IVF index
            pass
        n = len(vectors)
        rows = (
            np.sort(np.random.default_rng(seed).choice(n, max_train, replace=False)) if n > max_train else np.arange(n)
        )
        index.train(vectors.take(rows))
    for _, block in vectors.blocks():
        index.add(block)


def recall_at_k(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Mean |found[:, :k] ∩ truth[:, :k]| / k over queries."""
    hits = 0
    for f, t in zip(found[:, :k], truth[:, :k]):
        hits += len(set(f.tolist()) & set(t.tolist()) - {-1})
    return hits / (k * len(truth)) if len(truth) else 1.0


def wilson_lower(recall: float, trials: int, z: float = 1.96) -> float:
    """Lower end of the 95% Wilson score interval of a recall measured over ``trials`` (queries x k) neighbours.

    Neighbours of one query are not independent, so this is an approximation; it still keeps a recall that
    only just passes on a few hundred queries from counting as reached.
    """
    if trials <= 0:
        return 0.0
    z2 = z * z
    centre = recall + z2 / (2 * trials)
    spread = z * math.sqrt(recall * (1 - recall) / trials + z2 / (4 * trials * trials))
    return max(0.0, (centre - spread) / (1 + z2 / trials))


@dataclass
class TuneResult:
    params: dict = field(default_factory=dict)
    recall: float = 1.0
    target_reached: bool = True
    k: int = 10
    num_queries: int = 0
    trace: list = field(default_factory=list)  # [(params, recall, seconds)] tried
    recall_lower: float = 1.0
    qps: float = 0.0  # queries per second of the kept setting, measured on the tuning queries


def timed_search(index, q: np.ndarray, k: int, repeats: int = 1, batch: int = 128) -> tuple[np.ndarray, float]:
    """Rows found and the best wall time (seconds) over ``repeats`` searches of all queries, ``batch`` at a time
    (FAISS' per-query buffers, ``k`` results and more for re-ranking, stay small)."""
    best, rows = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        rows = np.vstack([index.search(q[s : s + batch], k)[1] for s in range(0, len(q), batch)])
        best = min(best, time.perf_counter() - t)
    return rows, max(best, 1e-9)


def tune_index(
    index,
    vectors,
    *,
    target_recall: float = 0.95,
    k: int = 10,
    num_queries: int = 500,
    queries: Optional[np.ndarray] = None,
    truth: Optional[np.ndarray] = None,
    seed: int = 0,
) -> TuneResult:
    """Keep the fastest search setting whose recall@k against exact search reaches the target with confidence.

    Without explicit ``queries``, ``num_queries`` stored vectors are sampled (seeded) — the way the knowledge
    base is queried in practice — and each query's own vector is left out of both result lists, so the recall
    measured is that of its k nearest *other* vectors. The exact ground truth streams over ``vectors`` (an
    array or on-disk shards); ``truth`` may be given instead. ``nprobe``/``efSearch`` rise until the Wilson
    lower bound of recall reaches ``target_recall``; with a ``k_factor`` (re-ranking depth) each ``nprobe`` takes
    the smallest depth that reaches it, and the fastest measured pair wins. The index is left configured with
    the kept setting; if none reaches the target the most thorough one tried is kept and reported.
    """
    from realign_data.kb.vector_shards import as_vectors, drop_rows, exact_knn

    vectors = as_vectors(vectors)
    names = search_parameters(index)
    n = len(vectors)
    exclude = None
    if queries is None:
        exclude = np.sort(np.random.default_rng(seed).choice(n, min(num_queries, n), replace=False))
        queries = vectors.take(exclude)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    keff = min(k, n - (1 if exclude is not None else 0))
    if not names or n == 0 or keff <= 0:
        rows, secs = timed_search(index, queries, max(1, min(k, n))) if n else (None, 1.0)
        return TuneResult({}, 1.0, True, k, len(queries), [], 1.0, len(queries) / secs)
    if truth is None:
        truth = exact_knn(vectors, queries, keff, exclude=exclude)
    kk = min(keff + (1 if exclude is not None else 0), n)
    main = names[0] if names[0] != "k_factor" else None
    depths = parameter_range(index, "k_factor") if "k_factor" in names else [None]
    trace, ok, last = [], [], None

    def attempt(value, depth) -> bool:
        nonlocal last
        params = {p: v for p, v in ((main, value), ("k_factor", depth)) if v is not None}
        apply_search_params(index, params)
        found, secs = timed_search(index, queries, kk)
        rec = recall_at_k(drop_rows(found, exclude, keff) if exclude is not None else found, truth, keff)
        trace.append((params, round(rec, 4), round(secs, 4)))
        last = (params, rec, secs)
        return wilson_lower(rec, keff * len(queries)) >= target_recall

    for value in parameter_range(index, main) if main else [None]:
        if len(depths) > 1:  # recall grows with depth: when the deepest re-ranking falls short, so do the others
            if not attempt(value, depths[-1]):
                continue
            deepest = last
            lo, hi = 0, len(depths) - 1
            while lo < hi:  # bisect for the shallowest (cheapest) depth that reaches the target
                mid = (lo + hi) // 2
                if attempt(value, depths[mid]):
                    hi, deepest = mid, last
                else:
                    lo = mid + 1
            ok.append(deepest)
        elif attempt(value, None):
            ok.append(last)
        if ok and (ok[-1][0].get("k_factor") in (None, depths[0]) or ok[-1][2] > 2 * min(o[2] for o in ok)):
            break  # deeper scans only cost more from here
        if ok:  # a wider scan is only worth trying with a shallower re-ranking
            depths = [d for d in depths if d <= ok[-1][0]["k_factor"]]
    params, rec, secs = min(ok, key=lambda o: o[2]) if ok else last
    apply_search_params(index, params)
    _, secs = timed_search(index, queries, kk, repeats=2)
    lower = wilson_lower(rec, keff * len(queries))
    return TuneResult(params, float(rec), bool(ok), k, len(queries), trace, lower, len(queries) / secs)
