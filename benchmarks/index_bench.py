"""Auto FAISS index vs exact search (IndexFlatIP) on clustered synthetic unit vectors.

    python benchmarks/index_bench.py --n 1000000 --dim 512 --json bench_index.json

Data: a Gaussian mixture (``--clusters`` centres on the unit sphere, isotropic noise), L2-normalised, like
CLIP embeddings of a photo corpus. The auto index is chosen and tuned exactly as ``index build`` does
(``choose_factory`` + ``tune_index`` to the target recall on a sample of stored vectors); recall@10 is then
measured on *fresh* held-out queries drawn from the same mixture, against exact search. Both indexes
search the same queries with the same FAISS thread count; ratios are auto over flat.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np


def mixture(n, dim, clusters, spread, seed, chunk=100_000):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((n, dim), np.float32)
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        x = centres[rng.integers(0, clusters, m)] + (spread / np.sqrt(dim)) * rng.normal(size=(m, dim)).astype(
            np.float32)
        out[s:s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def index_bytes(index) -> int:
    import faiss

    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "i.faiss")
        faiss.write_index(index, p)
        return os.path.getsize(p)


def timed_search(index, q, k, repeats=1):
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        _, ids = index.search(q, k)
        best = min(best, time.perf_counter() - t)
    return ids, len(q) / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--clusters", type=int, default=0,
                    help="mixture components (0: n/2500, so each spans several IVF lists and neighbours are split)")
    ap.add_argument("--spread", type=float, default=1.0, help="noise norm relative to the unit centre")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--target-recall", type=float, default=0.95)
    ap.add_argument("--memory-budget", default="auto")
    ap.add_argument("--index-type", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="FAISS threads (0: all cores)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", dest="json_path")
    args = ap.parse_args()

    import faiss

    from realign_data.index_auto import build_index
    from realign_data.index_tuning import recall_at_k

    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    threads = faiss.omp_get_max_threads()
    args.clusters = args.clusters or max(10, args.n // 2500)
    t = time.perf_counter()
    allx = mixture(args.n + args.queries, args.dim, args.clusters, args.spread, args.seed)
    x, q = allx[: args.n], np.ascontiguousarray(allx[args.n:])
    gen_s = time.perf_counter() - t

    t = time.perf_counter()
    flat = faiss.IndexFlatIP(args.dim)
    flat.add(x)
    flat_build = time.perf_counter() - t

    t = time.perf_counter()
    built = build_index(x, index_type=args.index_type, target_recall=args.target_recall,
                        memory_budget=args.memory_budget)
    auto, factory = built.searcher, built.info["factory"]
    auto_build, tune_s = time.perf_counter() - t, 0.0
    tuned = type("T", (), {"params": built.info["search_params"], "recall": built.info["recall_at_10"],
                           "trace": built.info["candidates"]})
    truth, flat_qps = timed_search(flat, q, 10)
    found, auto_qps = timed_search(auto, q, 10, repeats=3)
    recall = recall_at_k(found, truth, 10)
    flat_mem, auto_mem = args.n * args.dim * 4, index_bytes(built.index)
    res = {
        "n": args.n, "dim": args.dim, "clusters": args.clusters, "spread": args.spread, "queries": args.queries,
        "faiss_threads": threads, "factory": factory, "search_params": tuned.params,
        "tuning_recall_at_10": round(tuned.recall, 4), "tuning_trace": tuned.trace,
        "recall_at_10": round(float(recall), 4),
        "flat": {"build_s": round(flat_build, 2), "bytes": flat_mem, "qps": round(flat_qps, 1), "recall_at_10": 1.0},
        "auto": {"build_s": round(auto_build, 2), "tune_s": round(tune_s, 2), "bytes": auto_mem,
                 "qps": round(auto_qps, 1), "recall_at_10": round(float(recall), 4)},
        "qps_ratio": round(auto_qps / flat_qps, 2), "memory_ratio": round(auto_mem / flat_mem, 3),
        "build_ratio": round((auto_build + tune_s) / max(flat_build, 1e-9), 1), "generate_s": round(gen_s, 1),
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
    }
    print(f"{'index':<22}{'build s':>10}{'MiB':>10}{'queries/s':>12}{'recall@10':>11}")
    print(f"{'Flat (exact)':<22}{flat_build:>10.1f}{flat_mem / 2**20:>10.0f}{flat_qps:>12.0f}{1.0:>11.3f}")
    print(f"{factory + ' ' + str(tuned.params):<22}{auto_build + tune_s:>10.1f}{auto_mem / 2**20:>10.0f}"
          f"{auto_qps:>12.0f}{recall:>11.3f}")
    print(f"qps ratio {res['qps_ratio']}x, memory ratio {res['memory_ratio']}, faiss threads {threads}")
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
