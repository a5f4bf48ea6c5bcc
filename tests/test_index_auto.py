"""The measured ``auto`` index: candidates built on a sample, recall checked, the fastest good one kept."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from realign_data.kb.index_auto import build_index, describe
from realign_data.kb.index_tuning import make_index, recall_at_k, train_and_add, tune_index, wilson_lower


def lowrank(n, dim=64, rank=16, noise=0.05, seed=0):
    """Continuous unit vectors near a low-dimensional subspace (no clusters): neighbours spread over IVF lists."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(np.random.default_rng(99).normal(size=(dim, rank)))
    x = (rng.normal(size=(n, rank)) * (np.arange(rank) + 1.0) ** -0.5) @ basis.T + noise * rng.normal(size=(n, dim))
    x = x.astype(np.float32)
    faiss.normalize_L2(x)
    return x


@pytest.fixture(scope="module")
def data():
    return lowrank(20_000), lowrank(300, seed=1)


@pytest.fixture(scope="module")
def built(data):
    x, _ = data
    return build_index(x, target_recall=0.9, exact_max=0, sample_max=8_000)


def test_auto_measures_every_family_and_keeps_the_fastest_that_reaches_the_target(built):
    info = built.info
    cands = {c["family"] + (f"/{c['rerank']}" if c["rerank"] else ""): c for c in info["candidates"]}
    assert set(cands) == {"Flat", "HNSW", "IVF-Flat", "IVF-PQfs+refine/ram"}
    assert info["sample_size"] == 8_000
    for c in cands.values():  # every family was built and timed on the sample, with its tuned parameters
        assert c["qps"] > 0 and c["build_s"] is not None and 0 < c["recall"] <= 1
        assert c["recall_lower"] <= c["recall"]
    assert cands["Flat"]["recall"] == 1.0 and cands["Flat"]["params"] == {}
    assert "k_factor" in cands["IVF-PQfs+refine/ram"]["params"]
    chosen = [c for c in info["candidates"] if c["status"].startswith("chosen")]
    assert len(chosen) == 1 and chosen[0]["factory"] == info["factory"]
    reaching = [c for c in info["candidates"] if c["recall_lower"] >= 0.9]
    assert chosen[0]["qps"] == max(c["qps"] for c in reaching)
    assert all(c["status"].startswith("slower") for c in reaching if c is not chosen[0])
    # the written index was tuned again at full size, on stored vectors with a confident recall
    assert info["target_reached"] and info["recall_lower_bound"] >= 0.9 and info["recall_queries"] == 500
    assert built.index.ntotal == 20_000


def test_chosen_index_holds_its_recall_on_held_out_queries(built, data):
    x, q = data
    flat = faiss.IndexFlatIP(x.shape[1])
    flat.add(x)
    _, truth = flat.search(q, 10)
    _, found = built.searcher.search(q, 10)
    assert recall_at_k(found, truth, 10) >= 0.88  # tuned to a 0.9 lower bound on other queries


def test_info_lists_the_candidates(built):
    text = describe(built.info)
    assert text.splitlines()[0].startswith(f"index: {built.info['factory']}")
    assert "candidates (measured on 8,000 sampled vectors)" in text
    assert "HNSW32,Flat" in text and "chosen" in text and "slower" in text


def test_small_corpora_are_exact_without_measuring(data):
    b = build_index(data[0][:500])
    assert b.info["factory"] == "Flat" and b.info["candidates"][0]["status"].startswith("chosen: exact")
    assert b.info["sample_size"] == 0 and b.info["recall_at_10"] == 1.0


def test_recall_must_hold_with_confidence():
    assert wilson_lower(0.95, 5000) < 0.95 < wilson_lower(0.96, 5000)
    assert wilson_lower(1.0, 100) < 1.0 and wilson_lower(0.5, 0) == 0.0
    x = lowrank(6_000, dim=32, rank=8, seed=3)
    index = make_index("IVF64,PQ8x4fs,RFlat", 32)
    train_and_add(index, x)
    res = tune_index(index, x, target_recall=0.95, num_queries=300)
    assert res.target_reached and res.recall_lower >= 0.95 and res.recall >= res.recall_lower
    assert set(res.params) == {"nprobe", "k_factor"}
    passing = [p for p, r, _ in res.trace if wilson_lower(r, 3000) >= 0.95]
    assert res.params in passing  # kept: the fastest of the passing settings measured
    # at its nprobe no shallower re-ranking passed, and no smaller nprobe passed even at the deepest re-ranking
    assert not [p for p in passing if p["nprobe"] == res.params["nprobe"] and p["k_factor"] < res.params["k_factor"]]
    first = min(p["nprobe"] for p in passing)
    assert all(wilson_lower(r, 3000) < 0.95 for p, r, _ in res.trace if p["nprobe"] < first)
    assert any(p["nprobe"] == first // 2 and p["k_factor"] == 256 for p, _, _ in res.trace)
