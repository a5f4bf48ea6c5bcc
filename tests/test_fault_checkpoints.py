"""Checkpoints that verify themselves, and failures that are not final: a truncated chunk, an empty marker, a
swapped chunk (alone, or together with its marker) are found and redone on resume; a build during a filler outage exits 1 with its reasons, and once the
server is back the same command ends with the dataset of a build that never saw the outage."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from pathlib import Path

from typer.testing import CliRunner

from realign_data import BuildConfig, build
from realign_data.cli import app

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "support"))
from test_build_cli import data_hashes

from openai_server import OpenAIServer

OPTIONS = dict(gate="lexical", top_k=3, chunk_size=4, max_samples=32, progress=False)


def test_damaged_checkpoints_are_found_and_redone_byte_identically(tiny_kb, tmp_path, caplog):
    ref = build(BuildConfig(index=str(tiny_kb), out=str(tmp_path / "ref"), **OPTIONS))
    out = tmp_path / "out"

    def shard(i=None, n=None):
        return build(BuildConfig(index=str(tiny_kb), out=str(out), num_shards=n, shard_index=i, **OPTIONS))

    shard(0, 2)  # chunks 0, 2, 4, 6 written, the dataset not yet
    chunks = out / ".realign-build" / "chunks"
    data = (chunks / "chunk-000000.parquet").read_bytes()
    (chunks / "chunk-000000.parquet").write_bytes(data[: len(data) // 2])  # truncated
    shutil.copy(chunks / "chunk-000002.parquet", chunks / "chunk-000004.parquet")  # swapped for another chunk's
    (chunks / "chunk-000002.json").write_text("")  # an empty marker
    flipped = bytearray((chunks / "chunk-000006.parquet").read_bytes())
    flipped[100] ^= 0xFF
    (chunks / "chunk-000006.parquet").write_bytes(bytes(flipped))  # same size, other bytes
    with caplog.at_level(logging.WARNING, logger="realign_data"):
        shard(0, 2)
    said = caplog.text
    assert "chunk 0 " in said and "bytes where its marker recorded" in said
    assert "chunk 2 " in said and "empty or unreadable" in said
    assert "chunk 4 " in said and "chunk-000004.parquet has" in said
    assert "chunk 6 " in said and "sha256 differs" in said
    shard(1, 2)
    for suffix in (".parquet", ".json"):  # a chunk swapped together with its marker
        shutil.copy(chunks / f"chunk-000001{suffix}", chunks / f"chunk-000003{suffix}")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="realign_data"):
        res = shard()
    assert "chunk 3 " in caplog.text and "belongs to chunk 1" in caplog.text
    assert res.pairs_written == ref.pairs_written
    assert data_hashes(out) == data_hashes(Path(ref.out))


def test_an_outage_then_a_rerun_equals_a_build_that_never_saw_it(tiny_kb, tmp_path):
    runner = CliRunner()
    with OpenAIServer() as srv:
        args = [
            "build",
            "--index",
            str(tiny_kb),
            "--filler",
            "openai",
            "--model",
            "m",
            "--base-url",
            srv.base_url,
            "--gate",
            "lexical",
            "--top-k",
            "2",
            "--chunk-size",
            "4",
            "--max-samples",
            "12",
            "--max-retries",
            "0",
            "--quiet",
        ]
        clean = runner.invoke(app, [*args, "--out", str(tmp_path / "clean")])
        assert clean.exit_code == 0, clean.output
        srv.mode = "down"
        r = runner.invoke(app, [*args, "--out", str(tmp_path / "out")])
        assert r.exit_code == 1 and "0 pairs" in r.output and "request_failed 12" in r.output
        assert "run the same command again" in r.output and "Traceback" not in r.output
        report = json.loads((tmp_path / "out" / "build_report.json").read_text())
        assert report["drops_transient"] == 12 and report["drops_permanent"] == 0
        srv.mode = None
        r = runner.invoke(app, [*args, "--out", str(tmp_path / "out"), "--no-retry-failed"])
        assert r.exit_code == 1  # told not to retry: the 0-pair build stands
        r = runner.invoke(app, [*args, "--out", str(tmp_path / "out")])
        assert r.exit_code == 0, r.output
    assert data_hashes(tmp_path / "out") == data_hashes(tmp_path / "clean")
    report = json.loads((tmp_path / "out" / "build_report.json").read_text())
    assert report["drops_transient"] == 0 and report["pairs_written"] > 0


def test_a_partial_outage_retries_only_the_failed_chunks(tiny_kb, tmp_path):
    with OpenAIServer() as srv:
        opts = dict(OPTIONS, filler="openai", model="m", base_url=srv.base_url, max_retries=0, top_k=2)
        clean = build(BuildConfig(index=str(tiny_kb), out=str(tmp_path / "clean"), **opts))
        total = srv.requests
        srv.requests, srv.fail_after = 0, total // 2  # the server goes down halfway through the build
        first = build(BuildConfig(index=str(tiny_kb), out=str(tmp_path / "out"), **opts))
        assert 0 < first.pairs_written < clean.pairs_written and first.report["drops_transient"] > 0
        srv.requests, srv.fail_after = 0, None
        again = build(BuildConfig(index=str(tiny_kb), out=str(tmp_path / "out"), **opts))
    assert data_hashes(tmp_path / "out") == data_hashes(tmp_path / "clean")
    assert again.report["drops_transient"] == 0
    resumed, redone = again.report["throughput"]["resumed_chunks"], again.report["throughput"]["redone_chunks"]
    assert resumed > 0 and redone > 0 and resumed + redone == len(clean.report["chunks"])
    assert srv.requests < total  # only the chunks with failed seeds asked again
