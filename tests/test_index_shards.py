"""Memory-bounded index builds: vectors stay in on-disk shards, ground truth streams, the budget bounds peak RSS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import faiss
import numpy as np
import pytest

from realign_data.kb.index_auto import build_index
from realign_data.kb.index_tuning import IndexConfigError, recall_at_k
from realign_data.kb.vector_shards import ShardedVectors, ShardReranker, exact_knn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "support"))
from test_index_auto import lowrank

ROOT = Path(__file__).resolve().parent.parent


def write_shards(folder: Path, x: np.ndarray, rows: int, dtype=np.float16) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, s in enumerate(range(0, len(x), rows)):
        paths.append(folder / f"shard-{i:05d}.npy")
        np.save(paths[-1], x[s : s + rows].astype(dtype))
    return paths


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    x = lowrank(30_000, seed=4)
    paths = write_shards(tmp_path_factory.mktemp("shards"), x, 7_000)  # uneven: the last shard is short
    return x, paths


def test_shards_read_like_one_array_and_ground_truth_streams(shards):
    x, paths = shards
    v = ShardedVectors(paths)
    assert len(v) == 30_000 and v.dim == 64 and v.block_bytes == 7_000 * 64 * (2 + 4)  # a float16 shard + float32
    full = x.astype(np.float16).astype(np.float32)
    faiss.normalize_L2(full)
    rows = np.array([29_999, 3, 7_000, 6_999, 14_123])
    np.testing.assert_array_equal(v.take(rows), full[rows])
    np.testing.assert_array_equal(np.vstack([b for _, b in v.blocks(size=4_096)]), full)
    flat = faiss.IndexFlatIP(64)
    flat.add(full)
    q = lowrank(50, seed=5)
    _, truth = flat.search(q, 10)
    assert recall_at_k(exact_knn(v, q, 10), truth, 10) == 1.0
    # a stored vector's own row is left out of its result
    _, own = flat.search(full[rows], 11)
    got = exact_knn(v, full[rows], 10, exclude=rows)
    assert not (got == rows[:, None]).any() and recall_at_k(got, own[:, 1:], 10) >= 0.98  # ties may swap


def test_reranking_from_disk_rescores_exactly(shards):
    x, paths = shards
    v = ShardedVectors(paths)
    base = faiss.index_factory(64, "IVF64,PQ16x4fs", faiss.METRIC_INNER_PRODUCT)
    base.train(v.take(np.arange(0, 30_000, 5)))
    for _, b in v.blocks():
        base.add(b)
    faiss.extract_index_ivf(base).nprobe = 64  # every list: only the codes' error remains
    q = lowrank(200, seed=6)
    truth = exact_knn(v, q, 10)
    coarse = recall_at_k(base.search(q, 10)[1], truth, 10)
    scores, rows = ShardReranker(base, v, k_factor=64).search(q, 10)
    assert recall_at_k(rows, truth, 10) >= 0.99 > coarse
    np.testing.assert_allclose(
        scores[:, 0], (v.take(rows[:, 0]) * q / np.linalg.norm(q, axis=1, keepdims=True)).sum(1), rtol=1e-4
    )


def test_a_tight_budget_keeps_floats_on_disk_and_reranks_from_there(shards):
    x, paths = shards
    v = ShardedVectors(paths)
    # 7.7 MB of float32 vectors plus the build's working set (a shard, its float32 copy, search buffers: 55 MB)
    # exceed 60 MB; the 4-bit codes (0.5 MB) do not
    b = build_index(v, target_recall=0.9, memory_budget=60_000_000, exact_max=0)
    status = {(c["family"], c["rerank"]): c["status"] for c in b.info["candidates"]}
    assert status[("Flat", None)] == status[("HNSW", None)] == status[("IVF-Flat", None)] == "over memory budget"
    assert status[("IVF-PQfs+refine", "ram")] == "over memory budget"
    assert status[("IVF-PQfs+refine", "disk")] == "chosen" and b.info["rerank"] == "disk"
    assert isinstance(b.searcher, ShardReranker) and b.info["target_reached"]
    assert "k_factor" in b.info["search_params"] and not b.info["factory"].endswith("RFlat")
    q = lowrank(300, seed=7)
    assert recall_at_k(b.searcher.search(q, 10)[1], exact_knn(v, q, 10), 10) >= 0.88


def test_a_budget_too_small_for_any_index_is_one_sentence(shards):
    with pytest.raises(IndexConfigError, match="cannot hold the build of 30000 vectors .* raise --memory-budget"):
        build_index(ShardedVectors(shards[1]), memory_budget="20MB", exact_max=0)


PEAK_SCRIPT = """
import json, sys
import numpy as np
import faiss
from realign_data.kb.index_auto import build_index
from realign_data.kb.vector_shards import ShardedVectors, peak_rss_bytes

v = ShardedVectors(sys.argv[2:])
faiss.knn(np.ones((2, v.dim), np.float32), np.ones((4, v.dim), np.float32), 1)  # libraries loaded and warm
before = peak_rss_bytes()
b = build_index(v, target_recall=0.9, memory_budget=int(sys.argv[1]), exact_max=0)
print(json.dumps({"before": before, "after": peak_rss_bytes(), "info": b.info}))
"""


@pytest.mark.slow
def test_build_peak_rss_stays_within_the_budget(tmp_path):
    n, dim, budget = 300_000, 64, 64_000_000  # 77 MB of float32 vectors against a 64 MB budget
    rng = np.random.default_rng(8)
    basis, _ = np.linalg.qr(rng.normal(size=(dim, 16)))
    paths = []
    for i in range(30):  # written shard by shard: this process never holds the corpus either
        z = (rng.normal(size=(10_000, 16)) * (np.arange(16) + 1.0) ** -0.5) @ basis.T
        paths += write_shards(tmp_path / f"s{i}", (z + 0.05 * rng.normal(size=z.shape)).astype(np.float32), 10_000)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    r = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT, str(budget), *map(str, paths)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    info = out["info"]
    assert n * dim * 4 > budget and info["rerank"] == "disk" and info["target_reached"], json.dumps(info)
    assert out["after"] - out["before"] <= budget, (out["after"] - out["before"]) / 1e6  # MB over the baseline
