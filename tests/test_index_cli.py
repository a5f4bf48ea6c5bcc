"""``realign-data index build|info|search|list`` end to end, and kill -9 resumption."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from realign_data.cli import app
from realign_data.kb.knowledge_base import KnowledgeBase

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "support"))
from realign_cli import command

runner = CliRunner()


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("REALIGN_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def build_args(corpus, ckpt, *extra):
    return [
        "index",
        "build",
        "--source",
        "coco",
        "--root",
        str(corpus),
        "--model",
        "realign-tiny-clip",
        "--pretrained",
        str(ckpt),
        "--num-workers",
        "0",
        "--batch-size",
        "8",
        *extra,
    ]


def test_build_info_search_list(home, sample_corpus, tiny_open_clip):
    _, ckpt = tiny_open_clip
    r = runner.invoke(app, build_args(sample_corpus, ckpt, "--name", "sample", "--shard-size", "16"))
    assert r.exit_code == 0, r.output
    assert "images embedded: 40" in r.output and "skipped: 0" in r.output and "index: Flat" in r.output
    assert "recall@10" in r.output and "size on disk" in r.output
    assert (home / "indexes" / "sample" / "manifest.json").is_file()

    r = runner.invoke(app, ["index", "info", "sample", "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["count"] == 40
    r = runner.invoke(app, ["index", "info", "sample"])
    assert r.exit_code == 0 and "40 images" in r.output and "index: Flat (exact)" in r.output
    assert "chosen: exact, at most 10,000 vectors" in r.output

    query = sorted((sample_corpus / "train2014").iterdir())[7]
    r = runner.invoke(app, ["index", "search", "--name", "sample", "--image", str(query), "-k", "5"])
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 5 and all(query.name not in line for line in lines)
    scores = [float(line.split()[1]) for line in lines]
    assert scores == sorted(scores, reverse=True) and max(scores) <= 0.95

    r = runner.invoke(app, ["index", "search", "--name", "sample", "--text", "two red apples", "-k", "3"])
    assert r.exit_code == 0 and len(r.output.strip().splitlines()) == 3

    r = runner.invoke(app, ["index", "list"])
    assert r.exit_code == 0 and "sample" in r.output and "40 images" in r.output

    # re-running the same build is a no-op that reports the finished index
    r = runner.invoke(app, build_args(sample_corpus, ckpt, "--name", "sample", "--shard-size", "16"))
    assert r.exit_code == 0 and "(0 this run, 3 of 3 shards resumed)" in r.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["index", "build", "--source", "coco", "--root", "/nonexistent", "--name", "x"], "does not exist"),
        (["index", "build", "--source", "tar", "--root", ".", "--name", "x"], "unknown corpus source"),
        (["index", "build", "--source", "coco", "--root", "."], "exactly one of --name"),
        (["index", "search", "--name", "missing", "--text", "a"], "no finished knowledge base"),
        (["index", "info", "missing"], "no finished knowledge base"),
        (["index", "search", "--name", "missing"], "exactly one of --image"),
    ],
)
def test_bad_input_is_one_sentence_and_exit_2(home, args, message):
    r = runner.invoke(app, args)
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output


def test_bad_factory_and_mismatched_args(home, sample_corpus, tiny_open_clip, tmp_path):
    _, ckpt = tiny_open_clip
    r = runner.invoke(app, build_args(sample_corpus, ckpt, "--out", str(tmp_path / "o"), "--index-type", "IVFx"))
    assert r.exit_code == 2 and "not a valid FAISS factory string" in r.output
    r = runner.invoke(app, build_args(sample_corpus, ckpt, "--out", str(tmp_path / "o"), "--shard-size", "20"))
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, build_args(sample_corpus, ckpt, "--out", str(tmp_path / "o"), "--shard-size", "10"))
    assert r.exit_code == 2 and "different shard_size" in r.output


@pytest.mark.slow
def test_kill_9_then_resume_equals_uninterrupted(tmp_path, sample_corpus, tiny_open_clip):
    _, ckpt = tiny_open_clip
    out = tmp_path / "kb"
    args = build_args(sample_corpus, ckpt, "--out", str(out), "--shard-size", "8", "--quiet")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(command(*args, pause=1.5), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    marker = out / "embeddings" / "shard-00000.json"
    deadline = time.time() + 120
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.time() < deadline
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = sorted(p.name for p in (out / "embeddings").glob("*.json"))
    assert 1 <= len(done) < 5 and not (out / "manifest.json").exists()

    # resume (in-process) and compare with an uninterrupted build
    r = runner.invoke(app, build_args(sample_corpus, ckpt, "--out", str(out), "--shard-size", "8"))
    assert r.exit_code == 0, r.output
    assert f"{len(done)} of 5 shards resumed" in r.output and "images embedded: 40" in r.output
    ref = tmp_path / "ref"
    r = runner.invoke(app, build_args(sample_corpus, ckpt, "--out", str(ref), "--shard-size", "8", "--quiet"))
    assert r.exit_code == 0, r.output
    a, b = KnowledgeBase.load(out), KnowledgeBase.load(ref)
    assert a.ids == b.ids
    assert a._table.equals(b._table)
    np.testing.assert_array_equal(a.index.reconstruct_n(0, 40), b.index.reconstruct_n(0, 40))
    for p in (out / "embeddings").glob("*.npy"):
        assert p.read_bytes() == (ref / "embeddings" / p.name).read_bytes()
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]


def test_help_is_fast():
    t = time.time()
    r = subprocess.run([sys.executable, "-m", "realign_data.cli", "index", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "build" in r.stdout
    assert time.time() - t < 5  # generous on a loaded CI box; typically ~0.3 s
