"""Builds launched the way users launch them on several GPUs: ``torchrun`` starting real processes that share one
``--out`` (with the file barrier, and with a ``torch.distributed`` gloo process group), the knowledge base built on
the fly while the other rank waits, and a ``kill -9`` of one rank followed by a relaunch. Each ends with the files
a single process writes, byte for byte."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from realign_data import BuildConfig, build

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "support"))
from test_build_cli import data_hashes

from realign_cli import command

pytestmark = pytest.mark.slow
OPTIONS = dict(gate="lexical", top_k=3, chunk_size=4)  # 40 seeds: 10 chunks, 5 per rank
ARGS = ["--gate", "lexical", "--top-k", "3", "--chunk-size", "4", "--quiet"]


def torchrun(*args, pause=None, process_group=None, env=None, nproc=2) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        str(nproc),
        *command(*args, pause=pause, process_group=process_group)[1:],
    ]
    return subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
    )


def finish(p: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    _, err = p.communicate(timeout=timeout)
    return p.returncode, err


def test_torchrun_build_with_the_index_built_on_the_fly(sample_corpus, tiny_open_clip, tmp_path):
    """The knowledge base does not exist yet: rank 0 builds it while rank 1 waits, then both build chunks."""
    name, ckpt = tiny_open_clip
    kb = tmp_path / "kb"
    rc, err = finish(
        torchrun(
            "build",
            "--index",
            kb,
            "--coco-root",
            sample_corpus,
            "--kb-model",
            name,
            "--kb-pretrained",
            ckpt,
            *ARGS,
            "--out",
            tmp_path / "dist",
        )
    )
    assert rc == 0, err[-3000:]
    report = json.loads((tmp_path / "dist" / "build_report.json").read_text())
    assert report["launch"] == {"processes": 2, "process_group": None} and report["seeds_read"] == 40
    assert json.loads((kb / "manifest.json").read_text())["count"] == 40
    single = build(
        BuildConfig(
            index=str(kb),
            coco_root=str(sample_corpus),
            kb_model=name,
            kb_pretrained=str(ckpt),
            out=str(tmp_path / "single"),
            progress=False,
            **OPTIONS,
        )
    )  # the same command
    assert single.pairs_written == report["pairs_written"] > 0
    assert data_hashes(tmp_path / "dist") == data_hashes(tmp_path / "single")


@pytest.fixture(scope="module")
def single(tiny_kb, tmp_path_factory) -> Path:
    """What one process writes with the options the launched builds use."""
    out = tmp_path_factory.mktemp("single") / "out"
    build(BuildConfig(index=str(tiny_kb), out=str(out), progress=False, **OPTIONS))
    return out


@pytest.mark.parametrize("process_group", [None, "gloo"])
def test_torchrun_build_resumes_after_kill_9_of_one_rank(tiny_kb, single, tmp_path, process_group):
    out, pids = tmp_path / "dist", tmp_path / "pids"
    pids.mkdir()
    args = ["build", "--index", tiny_kb, *ARGS, "--out", out]
    p = torchrun(*args, pause=0.5, process_group=process_group, env={"REALIGN_TEST_PID_DIR": str(pids)})
    markers = out / ".realign-build" / "chunks"
    deadline = time.time() + 240
    while time.time() < deadline and (
        len(list(markers.glob("chunk-*.json"))) < 3 or not (pids / "rank-1.pid").exists()
    ):
        time.sleep(0.05)
    os.kill(int((pids / "rank-1.pid").read_text()), signal.SIGKILL)
    rc, err = finish(p)  # torchrun stops rank 0 too and fails: nothing hangs
    assert rc != 0
    done = len(list(markers.glob("chunk-*.json")))
    assert 3 <= done < 10 and not (out / "build_report.json").exists()

    rc, err = finish(torchrun(*args, process_group=process_group))
    assert rc == 0, err[-3000:]
    report = json.loads((out / "build_report.json").read_text())
    assert report["launch"] == {"processes": 2, "process_group": process_group}
    assert data_hashes(out) == data_hashes(single)
    assert not list(markers.glob("*.parquet")), "the chunk files are consumed once the dataset is written"


def test_a_rank_that_never_comes_is_named_after_the_wait_timeout(tiny_kb, tmp_path):
    """One process of two started by hand (or an --out the other node cannot see): rank 0 builds its chunks, waits,
    and stops with one sentence naming what is missing (a runtime failure: exit status 1)."""
    env = {**os.environ, "RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        command("build", "--index", tiny_kb, *ARGS, "--out", tmp_path / "out", "--wait-timeout", "2"),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 1, r.stderr[-3000:]
    assert "waited 2 s without progress for 5 chunk(s) of rank(s) 1 (chunks 1, 3, 5, 7, 9)" in r.stderr
    assert "a filesystem shared by every node" in r.stderr and "Traceback" not in r.stderr
