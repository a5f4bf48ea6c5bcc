"""Knowledge-base integrity: each way a finished base can be damaged (truncated, garbled or missing index and
metadata, a manifest that is a list or counts other rows, a deleted or truncated embedding shard) is reported in one sentence
with the fix, by ``index info``, ``index search`` and ``build``; following the fix restores the same base. A failed
``index build`` leaves no stub that refuses the retry."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from realign_data.cli import app

runner = CliRunner()


def _truncate(p):
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _garble(p):
    p.write_bytes(bytes(b ^ 0x5A for b in p.read_bytes()))


def _manifest(kb, change):
    m = json.loads((kb / "manifest.json").read_text())
    (kb / "manifest.json").write_text(json.dumps(change(m)))


DAMAGES = {
    "truncated index": (lambda kb: _truncate(kb / "index.faiss"), "index.faiss has"),
    "garbled index": (lambda kb: _garble(kb / "index.faiss"), "index.faiss is not"),
    "missing index": (lambda kb: (kb / "index.faiss").unlink(), "index.faiss is missing"),
    "truncated metadata": (lambda kb: _truncate(kb / "metadata.parquet"), "metadata.parquet has"),
    "garbled metadata": (lambda kb: _garble(kb / "metadata.parquet"), "metadata.parquet is not"),
    "missing metadata": (lambda kb: (kb / "metadata.parquet").unlink(), "metadata.parquet is missing"),
    "manifest is a list": (lambda kb: _manifest(kb, lambda m: [m]), "holds a JSON list"),
    "manifest counts other rows": (
        lambda kb: _manifest(kb, lambda m: {**m, "count": m["count"] + 3}),
        "the manifest counts",
    ),
    # a build reads the stored embeddings: a shard it cannot read is damage, not a warning that "searches work"
    "missing embedding shard": (
        lambda kb: (kb / "embeddings" / "shard-00000.npy").unlink(),
        "embedding shard shard-00000.npy is missing",
    ),
    "truncated embedding shard": (
        lambda kb: _truncate(kb / "embeddings" / "shard-00000.npy"),
        "embedding shard shard-00000.npy has",
    ),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_knowledge_base_is_one_sentence_with_its_fix(damage, tiny_kb, tmp_path):
    kb = tmp_path / "kb"
    shutil.copytree(tiny_kb, kb)
    do, said = DAMAGES[damage]
    do(kb)
    for args, code in (
        (["index", "info", str(kb)], 1),
        (["index", "search", "--index", str(kb), "--text", "a dog"], 1),
        (["build", "--index", str(kb), "--out", str(tmp_path / "out"), "--quiet"], 2),
    ):
        r = runner.invoke(app, args)
        assert r.exit_code == code, (args, r.output)
        assert "is damaged" in r.output and said in r.output and "remove" in r.output, r.output
        assert r.exception is None or isinstance(r.exception, SystemExit), r.exception


def test_following_the_fix_restores_the_same_base(tiny_kb, tmp_path, sample_corpus, tiny_open_clip):
    from realign_data.kb.corpus import open_source
    from realign_data.kb.knowledge_base import KnowledgeBase
    from realign_data.kb.knowledge_base_build import build_knowledge_base

    kb = tmp_path / "kb"
    shutil.copytree(tiny_kb, kb)
    before = KnowledgeBase.load(kb).search(["a red car"], 5, kind="text")[0]
    _garble(kb / "index.faiss")
    shard = kb / "embeddings" / "shard-00000.npy"
    shard.unlink()  # a deleted embedding shard: re-embedded by the rebuild
    (kb / "manifest.json").unlink()  # the advised fix
    name, ckpt = tiny_open_clip
    build_knowledge_base(
        open_source("coco", sample_corpus),
        kb,
        model=name,
        pretrained=str(ckpt),
        num_workers=0,
        batch_size=16,
        progress=False,
    )
    assert KnowledgeBase.load(kb).search(["a red car"], 5, kind="text")[0] == before
    assert (kb / "index.faiss").read_bytes() == (tiny_kb / "index.faiss").read_bytes()


def test_a_failed_index_build_leaves_no_stub(sample_corpus, tiny_open_clip, tmp_path):
    name, ckpt = tiny_open_clip
    out = tmp_path / "kb"
    args = [
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
        "--num-workers",
        "0",
        "--quiet",
    ]
    r = runner.invoke(app, [*args, "--pretrained", str(tmp_path / "no-such-weights.safetensors")])
    assert r.exit_code == 2 and not out.exists(), r.output
    r = runner.invoke(app, [*args, "--pretrained", str(ckpt)])
    assert r.exit_code == 0, r.output
