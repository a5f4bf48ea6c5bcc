"""Knowledge base: build, on-disk format, query API, auto index choice, recall tuning, scale-out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from realign_data.kb.corpus import FolderSource, HFSource, open_source
from realign_data.kb.encoder import Encoder
from realign_data.kb.index_auto import candidates
from realign_data.kb.index_tuning import IndexConfigError, make_index, parse_memory, train_and_add, tune_index
from realign_data.kb.knowledge_base import KnowledgeBase, KnowledgeBaseError, list_indexes, resolve_index
from realign_data.kb.knowledge_base_build import build_knowledge_base


@pytest.fixture(scope="module")
def kb_dir(tmp_path_factory, sample_corpus, tiny_open_clip):
    name, ckpt = tiny_open_clip
    out = tmp_path_factory.mktemp("kb") / "sample"
    report = build_knowledge_base(
        open_source("coco", sample_corpus),
        out,
        model=name,
        pretrained=str(ckpt),
        shard_size=16,
        num_workers=0,
        batch_size=8,
        progress=False,
    )
    assert report.count == 40 and report.num_shards == 3 and report.index_built and not report.skipped
    return out


@pytest.fixture(scope="module")
def kb(kb_dir):
    return KnowledgeBase.load(kb_dir)


def test_on_disk_format(kb_dir):
    import pyarrow.parquet as pq

    names = {p.name for p in kb_dir.iterdir()}
    assert {"index.faiss", "metadata.parquet", "manifest.json", "embeddings", "build_config.json"} <= names
    assert not [p for p in kb_dir.rglob("*") if ".tmp" in p.name]
    m = json.loads((kb_dir / "manifest.json").read_text())
    assert m["encoder"]["model"] == "realign-tiny-clip" and m["encoder"]["checkpoint_sha256"]
    assert m["dim"] == 32 and m["count"] == 40 and m["index"]["factory"] == "Flat"
    assert m["source"]["type"] == "coco" and m["versions"]["faiss-cpu"] and m["created_at"]
    shard = np.load(kb_dir / "embeddings" / "shard-00000.npy", allow_pickle=False)
    assert shard.dtype == np.float16 and shard.shape == (16, 32)
    meta = pq.read_table(kb_dir / "metadata.parquet").to_pylist()
    assert len(meta) == 40 and meta[0]["coco_image_id"] and meta[0]["categories"] and meta[0]["width"] > 0


def test_search_by_id_excludes_self_and_is_sorted(kb):
    qid = kb.ids[5]
    hits = kb.search([qid], k=5, kind="id", max_similarity=None)[0]
    assert len(hits) == 5 and qid not in [h.id for h in hits]
    assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))
    # exclude_ids, batched search equals one-by-one
    more = kb.search([qid], k=5, kind="id", max_similarity=None, exclude_ids=[hits[0].id])[0]
    assert hits[0].id not in [h.id for h in more] and more[0].id == hits[1].id
    many = kb.search(kb.ids[:12], k=3, kind="id", batch_size=5)
    assert many[5] == kb.search([qid], k=3, kind="id")[0]


def test_search_by_image_path_excludes_query_and_near_duplicates(kb, sample_corpus):
    path = kb.image_path(kb.ids[0])
    assert kb.id_for_path(path) == kb.ids[0]
    everything = kb.search([path], k=39, max_similarity=None)[0]
    assert kb.ids[0] not in [h.id for h in everything] and len(everything) == 39
    threshold = everything[2].score - 1e-6  # everything above it counts as a near-duplicate
    hits = kb.search([path], k=5, max_similarity=threshold)[0]
    assert all(h.score <= threshold for h in hits) and hits[0].id == everything[3].id
    # a PIL image of a corpus file is caught by the similarity cap (self-similarity ~ 1)
    from PIL import Image

    pil_hits = kb.search([Image.open(path)], k=5)[0]
    assert kb.ids[0] not in [h.id for h in pil_hits] and all(h.score <= 0.95 for h in pil_hits)


def test_text_and_embedding_queries(kb):
    hits = kb.search(["a red apple on a table", "two blue cars"], k=4, max_similarity=None)
    assert [len(h) for h in hits] == [4, 4]
    emb = kb.embeddings_for(kb.ids[:2])
    assert emb.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    h2 = kb.search(emb, k=3, query_ids=kb.ids[:2])
    assert h2 == kb.search(kb.ids[:2], k=3, kind="id")
    with pytest.raises(KnowledgeBaseError, match="32-d"):
        kb.search(np.zeros((1, 16), np.float32))


def test_records_images_and_coco_lookup(kb):
    rec = kb.record(kb.ids[3])
    assert rec["id"] == kb.ids[3] and rec["coco_image_id"] and rec["categories"]
    assert kb.id_for_coco_image_id(rec["coco_image_id"]) == kb.ids[3]
    img = kb.load_image(kb.ids[3])
    assert img.size == (rec["width"], rec["height"])
    # the stored vector equals the image's own embedding (float16 storage)
    np.testing.assert_allclose(kb.embeddings_for([kb.ids[3]]), kb.encoder.embed_images([img]), atol=3e-3)
    with pytest.raises(KeyError):
        kb.record("nope.jpg")


def test_encoder_mismatch_is_a_clear_error(kb_dir, tiny_open_clip, tmp_path):
    name, _ = tiny_open_clip
    with pytest.raises(KnowledgeBaseError, match="built with 'realign-tiny-clip'"):
        KnowledgeBase.load(kb_dir, encoder=Encoder(name, "none"))
    from realign_data.testing.tiny_models import _TINY_OPEN_CLIP_CONFIG

    cfg = json.loads(json.dumps(_TINY_OPEN_CLIP_CONFIG))
    cfg["embed_dim"] = 16
    (tmp_path / "tiny16.json").write_text(json.dumps(cfg))
    with pytest.raises(KnowledgeBaseError, match="16-d embeddings"):
        KnowledgeBase.load(kb_dir, encoder=Encoder(str(tmp_path / "tiny16.json"), "none"))


def test_an_index_reranked_from_disk_answers_like_exact_search(kb_dir, kb, tmp_path):
    """What a build under a tight --memory-budget writes: 4-bit codes in the index, floats left in the shards."""
    import shutil

    import faiss

    from realign_data.kb.knowledge_base_check import file_records
    from realign_data.kb.vector_shards import ShardedVectors

    d = tmp_path / "disk"
    shutil.copytree(kb_dir, d)
    m = json.loads((d / "manifest.json").read_text())
    codes = make_index("IVF2,PQ8x4fs", 32)
    train_and_add(codes, ShardedVectors([d / "embeddings" / s["file"] for s in m["shards"]]))
    faiss.write_index(codes, str(d / "index.faiss"))
    m["index"].update(factory="IVF2,PQ8x4fs", rerank="disk", search_params={"nprobe": 2, "k_factor": 8})
    m["files"] = file_records(d)  # the manifest vouches for the files it describes
    (d / "manifest.json").write_text(json.dumps(m))
    disk = KnowledgeBase.load(d)
    assert disk.index.k_factor == 8 and faiss.extract_index_ivf(disk.index.index).nprobe == 2
    got, want = disk.search(kb.ids[:6], k=4, kind="id"), kb.search(kb.ids[:6], k=4, kind="id")  # all re-scored
    assert [[h.id for h in hits] for hits in got] == [[h.id for h in hits] for hits in want]
    np.testing.assert_allclose(
        [[h.score for h in hits] for hits in got], [[h.score for h in hits] for hits in want], rtol=1e-5
    )


def test_named_indexes(kb_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("REALIGN_HOME", str(tmp_path))
    assert resolve_index(str(kb_dir)) == kb_dir
    with pytest.raises(KnowledgeBaseError, match="no finished knowledge base"):
        resolve_index("coco")
    (tmp_path / "indexes").mkdir()
    os.symlink(kb_dir, tmp_path / "indexes" / "coco")
    assert resolve_index("coco") == tmp_path / "indexes" / "coco"
    assert [e["name"] for e in list_indexes()] == ["coco"] and list_indexes()[0]["count"] == 40
    assert len(KnowledgeBase.load("coco")) == 40


def test_bad_files_are_skipped_and_listed(tmp_path, tiny_open_clip):
    from test_encoder import make_bad_folder

    name, ckpt = tiny_open_clip
    src = FolderSource(make_bad_folder(tmp_path / "imgs"))
    rep = build_knowledge_base(
        src, tmp_path / "kb", model=name, pretrained=str(ckpt), num_workers=0, shard_size=4, progress=False
    )
    assert rep.count == 6
    assert sorted(i for i, _ in rep.skipped) == ["empty.jpg", "pixel.png", "text.jpg", "truncated.jpg"]
    m = json.loads((tmp_path / "kb" / "manifest.json").read_text())
    assert m["num_skipped"] == 4
    # different embedding arguments into the same directory: one clear error, nothing mixed
    with pytest.raises(KnowledgeBaseError, match="different min_side"):
        build_knowledge_base(
            src, tmp_path / "kb", model=name, pretrained=str(ckpt), shard_size=4, min_side=1, progress=False
        )
    with pytest.raises(KnowledgeBaseError, match="different"):
        build_knowledge_base(src, tmp_path / "kb", model=name, pretrained="none", shard_size=4, progress=False)
    # changed index options rebuild the index from the shards, no re-embedding
    rep2 = build_knowledge_base(
        src, tmp_path / "kb", model=name, pretrained=str(ckpt), shard_size=4, index_type="HNSW8,Flat", progress=False
    )
    assert rep2.embedded_now == 0 and rep2.factory == "HNSW8,Flat" and rep2.count == 6


def test_hf_streaming_source_builds(tmp_path, tiny_open_clip):
    import datasets
    from PIL import Image

    name, ckpt = tiny_open_clip
    ds = datasets.Dataset.from_dict(
        {"image": [Image.new("RGB", (20, 20), (i * 20, 50, 90)) for i in range(12)]},
        features=datasets.Features({"image": datasets.Image()}),
    )
    ds.save_to_disk(str(tmp_path / "ds"))
    rep = build_knowledge_base(
        HFSource(str(tmp_path / "ds"), streaming=True),
        tmp_path / "kb",
        model=name,
        pretrained=str(ckpt),
        shard_size=5,
        num_workers=0,
        progress=False,
    )
    assert rep.count == 12 and rep.num_shards == 3
    kb = KnowledgeBase.load(tmp_path / "kb")
    assert kb.ids[0] == "train/0" and kb.load_image("train/7").getpixel((0, 0))[0] in range(135, 146)
    assert len(kb.search(["train/7"], k=3, kind="id", max_similarity=None)[0]) == 3


def test_bad_index_options(tmp_path, sample_corpus):
    with pytest.raises(KnowledgeBaseError, match="not a valid FAISS factory"):
        build_knowledge_base(open_source("coco", sample_corpus), tmp_path / "x", index_type="IVFbogus", progress=False)
    with pytest.raises(KnowledgeBaseError, match="memory budget"):
        build_knowledge_base(open_source("coco", sample_corpus), tmp_path / "x", memory_budget="lots", progress=False)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file.txt").write_text("x")
    with pytest.raises(KnowledgeBaseError, match="not a knowledge base directory"):
        build_knowledge_base(
            open_source("coco", sample_corpus),
            tmp_path / "busy",
            pretrained="none",
            model="realign-tiny-clip",
            progress=False,
        )


# ------------------------------------------------------------------------------ index choice & tuning


def test_auto_index_candidates_by_size_and_memory():
    fams = lambda cs: [(c.family, c.rerank, c.status) for c in cs]  # noqa: E731
    cs = candidates(1_000_000, 512, parse_memory("8GB"), on_disk=True)
    assert [c.factory for c in cs] == ["Flat", "HNSW32,Flat", "IVF4096,Flat", "IVF4096,PQ128x4fs,RFlat"]
    assert all(c.status == "not measured" for c in cs)  # all fit: measured, none assumed
    big = candidates(10_000_000, 512, parse_memory("4GB"), on_disk=True)
    assert fams(big)[-1] == ("IVF-PQfs+refine", "disk", "not measured")  # codes in RAM, floats stay on disk
    # fewer lists than 4*sqrt(n) = 16384, so that 40 training vectors per list fit the budget
    assert big[-1].factory == "IVF8192,PQ128x4fs" and big[-1].build_bytes <= parse_memory("4GB")
    roomy = candidates(10_000_000, 512, parse_memory("8GB"), on_disk=True)  # HNSW coarse quantizer from 16384 lists
    assert roomy[-1].factory == "IVF16384_HNSW32,PQ128x4fs" and roomy[-1].rerank == "disk"
    assert all(c.status == "over memory budget" for c in big[:-1])
    assert "disk" not in [c.rerank for c in candidates(10_000_000, 512, parse_memory("4GB"), on_disk=False)]
    assert parse_memory("512MiB") == 512 * 2**20 and parse_memory(1000) == 1000
    with pytest.raises(IndexConfigError):
        make_index("NotAFactory", 32)


def clustered(n, dim, centers=200, seed=0, spread=0.35):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centers, dim)).astype(np.float32)
    x = c[rng.integers(0, centers, n)] + spread * rng.normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_recall_tuning_reaches_target_on_clustered_data():
    allx = clustered(20_300, 64)
    x, q = allx[:20_000], allx[20_000:]  # held-out queries from the same mixture
    index = make_index("IVF256,Flat", 64)
    train_and_add(index, x)
    res = tune_index(index, x, target_recall=0.95, k=10, num_queries=300)
    assert res.target_reached and res.recall >= 0.95
    assert 1 <= res.params["nprobe"] < 256  # approximate: fewer lists than an exhaustive scan
    if len(res.trace) > 1:
        assert res.trace[-2][1] < 0.95  # the smallest value reaching the target was kept
    # held-out queries, independent measurement with the tuned index
    import faiss

    flat = faiss.IndexFlatIP(64)
    flat.add(x)
    _, truth = flat.search(q, 10)
    _, found = index.search(q, 10)
    rec = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)])
    assert rec >= 0.9
    res_q = tune_index(index, x, target_recall=0.95, queries=q)  # explicit held-out queries
    assert res_q.target_reached and res_q.num_queries == 300
    h = make_index("HNSW16,Flat", 64)
    train_and_add(h, x[:5000])
    hres = tune_index(h, x[:5000], target_recall=0.95)
    assert hres.target_reached and "efSearch" in hres.params


# ------------------------------------------------------------------------------------------- scale-out


@pytest.mark.slow
def test_two_process_torchrun_build_equals_single(tmp_path, sample_corpus, tiny_open_clip, kb_dir):
    name, ckpt = tiny_open_clip
    out = tmp_path / "kb2"
    env = dict(os.environ, OMP_NUM_THREADS="1", REALIGN_HOME=str(tmp_path))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(Path(__file__).parent / "support" / "realign_cli.py"),
        "index",
        "build",
        "--source",
        "coco",
        "--root",
        str(sample_corpus),
        "--out",
        str(out),
        "--model",
        name,
        "--pretrained",
        str(ckpt),
        "--shard-size",
        "16",
        "--num-workers",
        "0",
        "--batch-size",
        "8",
        "--quiet",
    ]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = KnowledgeBase.load(out), KnowledgeBase.load(kb_dir)
    assert a.ids == b.ids and a.manifest["count"] == 40 and len(a.manifest["shards"]) == 3
    np.testing.assert_array_equal(a.embeddings_for(a.ids), b.embeddings_for(b.ids))


def test_a_bare_name_is_never_a_stray_folder_of_the_same_name(tmp_path, monkeypatch):
    """`--index coco` next to the COCO data folder `coco/` means the named index, not the data folder."""
    monkeypatch.setenv("REALIGN_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "coco" / "train2014").mkdir(parents=True)
    assert resolve_index("coco", must_exist=False) == tmp_path / "home" / "indexes" / "coco"
    assert resolve_index("./coco", must_exist=False) == Path("./coco")
    (tmp_path / "coco" / "manifest.json").write_text("{}")  # a finished knowledge base in the cwd is used
    assert resolve_index("coco") == Path("coco")
