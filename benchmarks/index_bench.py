"""The auto FAISS index vs exact search, on easy (clustered) and hard (continuous low-rank) unit vectors.

    python benchmarks/index_bench.py --n 1000000 --dim 512 --shape lowrank --json lowrank_1m.json
    python benchmarks/index_bench.py --n 10000000 --dim 512 --memory-budget 4GB --data-dir /big/disk --json 10m.json

Shapes (both L2-normalised; ``--shape`` is the headline, ``--compare-shape`` runs in the same process after it):
  clustered  a Gaussian mixture (n/2500 centres on the sphere, isotropic noise): any IVF index looks perfect.
  lowrank    a Gaussian with a decaying spectrum (sd of axis i ~ (i+1)^-0.5) in a random ``--rank``-dimensional
             subspace plus small isotropic noise: continuous, no clusters, like real CLIP image embeddings.

The vectors are generated straight to disk in float16 ``.npy`` shards (the knowledge base's own format) and
never held whole by the build. The index is built exactly as ``realign-data index build`` builds it
(:func:`realign_data.kb.index_auto.build_index`: candidates measured on a sample, the winner built and tuned at
full size), in a child process whose peak RSS is the build's ``peak_rss_bytes`` (``baseline_rss_bytes``: that
process's RSS before the build, libraries loaded). Then ``--queries`` fresh vectors of the same shape (never
stored) are searched by the auto index and by exact search (``IndexFlatIP`` in RAM when the vectors fit the
budget, else exact search streamed over the shards), with the same FAISS threads; recall@10 is against the exact
result and ``qps_ratio`` is auto over exact.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


class Shape:
    """A seeded generator of unit vectors of one shape; ``draw(m)`` continues the same stream."""

    def __init__(self, kind: str, dim: int, n: int, seed: int, rank: int, noise: float, spread: float):
        g = np.random.default_rng(seed)  # the shape itself (centres / subspace) depends on the seed only
        self.kind, self.dim, self.noise, self.spread = kind, dim, noise, spread
        if kind == "clustered":
            self.centres = g.normal(size=(max(10, n // 2500), dim)).astype(np.float32)
            self.centres /= np.linalg.norm(self.centres, axis=1, keepdims=True)
        else:
            self.basis = np.linalg.qr(g.normal(size=(dim, rank)))[0].astype(np.float32)
            self.sd = ((np.arange(rank) + 1.0) ** -0.5).astype(np.float32)

    def draw(self, m: int, rng: np.random.Generator) -> np.ndarray:
        if self.kind == "clustered":
            x = self.centres[rng.integers(0, len(self.centres), m)] + (self.spread / np.sqrt(self.dim)) * rng.normal(
                size=(m, self.dim)
            ).astype(np.float32)
        else:
            z = rng.normal(size=(m, len(self.sd))).astype(np.float32) * self.sd
            x = z @ self.basis.T + (self.noise * float(np.linalg.norm(self.sd)) / np.sqrt(self.dim)) * rng.normal(
                size=(m, self.dim)
            ).astype(np.float32)
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def write_shards(shape: Shape, n: int, folder: Path, rows: int, seed: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng, paths = np.random.default_rng(seed), []
    for i, s in enumerate(range(0, n, rows)):
        paths.append(folder / f"shard-{i:05d}.npy")
        np.save(paths[-1], shape.draw(min(rows, n - s), rng).astype(np.float16))
    return paths


def build_child(paths, index_type, target, budget, index_path, threads, conn) -> None:
    """In a fresh process: build the index over the shards, report its info and this process's peak RSS."""
    import faiss

    from realign_data.kb.index_auto import build_index
    from realign_data.kb.vector_shards import ShardedVectors, peak_rss_bytes

    if threads:
        faiss.omp_set_num_threads(threads)
    v = ShardedVectors(paths)
    faiss.knn(np.ones((2, v.dim), np.float32), np.ones((4, v.dim), np.float32), 1)  # libraries loaded and warm
    baseline = peak_rss_bytes()
    t = time.perf_counter()
    built = build_index(v, index_type=index_type, target_recall=target, memory_budget=budget)
    seconds = time.perf_counter() - t
    faiss.write_index(built.index, str(index_path))
    conn.send(
        {
            "info": built.info,
            "build_s": round(seconds, 1),
            "peak_rss_bytes": peak_rss_bytes(),
            "baseline_rss_bytes": baseline,
        }
    )
    conn.close()


def timed_search(index, q, k, repeats=1):
    best, ids = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        _, ids = index.search(q, k)
        best = min(best, time.perf_counter() - t)
    return ids, len(q) / best


def run_shape(kind: str, args, folder: Path) -> dict:
    import faiss

    from realign_data.kb.index_tuning import apply_search_params, parse_memory, recall_at_k
    from realign_data.kb.vector_shards import ShardedVectors, ShardReranker, exact_knn

    shape = Shape(kind, args.dim, args.n, args.seed, args.rank, args.noise, args.spread)
    t = time.perf_counter()
    paths = write_shards(shape, args.n, folder / kind, args.shard_size, args.seed + 1)
    q = shape.draw(args.queries, np.random.default_rng(args.seed + 2))  # fresh: never stored
    gen_s = time.perf_counter() - t
    budget = parse_memory(args.memory_budget)

    ctx = mp.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    child = ctx.Process(
        target=build_child,
        args=(
            paths,
            args.index_type,
            args.target_recall,
            args.memory_budget,
            folder / f"{kind}.faiss",
            args.threads,
            send,
        ),
    )
    child.start()
    send.close()  # the child holds the only writing end: a failed build ends recv() with EOFError
    try:
        built = recv.recv()
    except EOFError:
        child.join()
        raise SystemExit(f"the {kind} index build failed (exit code {child.exitcode}); see its error above") from None
    child.join()
    info = built["info"]

    vectors = ShardedVectors(paths)
    index = faiss.read_index(str(folder / f"{kind}.faiss"))
    auto = ShardReranker(index, vectors) if info["rerank"] == "disk" else index
    apply_search_params(auto, info["search_params"])
    found, auto_qps = timed_search(auto, q, 10, repeats=3)
    del index, auto
    t = time.perf_counter()
    if args.n * args.dim * 4 <= budget:
        flat = faiss.IndexFlatIP(args.dim)
        for _, block in vectors.blocks():
            flat.add(block)
        flat_build = time.perf_counter() - t
        truth, flat_qps = timed_search(flat, q, 10)
        exact_kind = "IndexFlatIP in RAM"
        del flat
    else:
        flat_build = 0.0
        t = time.perf_counter()
        truth = exact_knn(vectors, q, 10)
        flat_qps = len(q) / (time.perf_counter() - t)
        exact_kind = "exact search streamed over the shards"
    recall = recall_at_k(found, truth, 10)
    flat_mem, auto_mem = args.n * args.dim * 4, os.path.getsize(folder / f"{kind}.faiss")
    return {
        "shape": kind,
        "n": args.n,
        "dim": args.dim,
        "queries": args.queries,
        "factory": info["factory"],
        "rerank": info["rerank"],
        "search_params": info["search_params"],
        "recall_at_10": round(float(recall), 4),
        "qps_ratio": round(auto_qps / flat_qps, 2),
        "peak_rss_bytes": built["peak_rss_bytes"],
        "baseline_rss_bytes": built["baseline_rss_bytes"],
        "memory_budget_bytes": budget,
        "tuning_recall_at_10": info["recall_at_10"],
        "tuning_recall_lower_bound": info["recall_lower_bound"],
        "candidates": info["candidates"],
        "sample_size": info["sample_size"],
        "exact": exact_kind,
        "flat": {"build_s": round(flat_build, 1), "bytes": flat_mem, "qps": round(flat_qps, 1)},
        "auto": {
            "build_s": built["build_s"],
            "choose_s": info["choose_seconds"],
            "bytes": auto_mem,
            "qps": round(auto_qps, 1),
        },
        "memory_ratio": round(auto_mem / flat_mem, 3),
        "generate_s": round(gen_s, 1),
        "shape_params": {"rank": args.rank, "noise": args.noise}
        if kind == "lowrank"
        else {"clusters": len(shape.centres), "spread": args.spread},
    }


def show(r: dict) -> None:
    from realign_data.kb.index_auto import describe

    print(f"\n== {r['shape']}: {r['n']:,} x {r['dim']}")
    print(
        describe(
            {
                "factory": r["factory"],
                "rerank": r["rerank"],
                "search_params": r["search_params"],
                "recall_at_10": r["tuning_recall_at_10"],
                "recall_lower_bound": r["tuning_recall_lower_bound"],
                "target_recall": None,
                "recall_queries": 500,
                "candidates": r["candidates"],
                "sample_size": r["sample_size"],
            }
        ).replace(", target None", "")
    )
    print(
        f"held-out queries: recall@10 {r['recall_at_10']:.4f}; {r['auto']['qps']:.0f} vs {r['flat']['qps']:.0f} "
        f"queries/s ({r['exact']}): qps ratio {r['qps_ratio']}x; index {r['auto']['bytes'] / 2**20:.0f} MiB; "
        f"build {r['auto']['build_s']} s, peak RSS {r['peak_rss_bytes'] / 2**30:.2f} GiB "
        f"(baseline {r['baseline_rss_bytes'] / 2**30:.2f} GiB, budget {r['memory_budget_bytes'] / 2**30:.2f} GiB)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="stored vectors")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument(
        "--shape",
        choices=("clustered", "lowrank"),
        default="lowrank",
        help="headline shape: its keys (recall_at_10, qps_ratio, peak_rss_bytes) are the JSON's top level",
    )
    ap.add_argument(
        "--compare-shape",
        choices=("clustered", "lowrank", "none"),
        default=None,
        help="second shape run in the same process (default: the other one)",
    )
    ap.add_argument("--rank", type=int, default=50, help="lowrank: dimension of the subspace")
    ap.add_argument("--noise", type=float, default=0.1, help="lowrank: isotropic noise norm relative to the signal")
    ap.add_argument("--spread", type=float, default=1.0, help="clustered: noise norm relative to the unit centre")
    ap.add_argument("--queries", type=int, default=1000, help="fresh held-out queries")
    ap.add_argument("--target-recall", type=float, default=0.95)
    ap.add_argument("--memory-budget", default="auto", help="bounds the build's RSS (auto: half the RAM)")
    ap.add_argument("--index-type", default="auto")
    ap.add_argument("--shard-size", type=int, default=100_000, help="vectors per on-disk shard")
    ap.add_argument("--data-dir", help="where the shards go (default: a temporary directory, deleted after)")
    ap.add_argument("--threads", type=int, default=0, help="FAISS threads (0: all cores)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", dest="json_path")
    args = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # each shape's table as soon as it is measured

    import faiss

    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    other = args.compare_shape or ("clustered" if args.shape == "lowrank" else "lowrank")
    shapes = [args.shape] + ([other] if other not in ("none", args.shape) else [])
    folder = Path(args.data_dir or tempfile.mkdtemp(prefix="index_bench_"))
    results = {}
    try:
        for kind in shapes:
            results[kind] = run_shape(kind, args, folder)
            show(results[kind])
            shutil.rmtree(folder / kind, ignore_errors=True)
    finally:
        if not args.data_dir:
            shutil.rmtree(folder, ignore_errors=True)
    res = {
        **results[args.shape],
        "shapes": results,
        "faiss_threads": faiss.omp_get_max_threads(),
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
    }
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
