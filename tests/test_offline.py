"""Test hygiene: the suite is offline, and reaching for the network fails fast instead of hanging."""

from __future__ import annotations

import os
import socket
import time

import pytest


def test_hub_offline_flags_are_set():
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert os.environ["HF_DATASETS_OFFLINE"] == "1"


def test_connecting_beyond_loopback_fails_fast():
    start = time.monotonic()
    with pytest.raises(ConnectionRefusedError, match="must not use the network"):
        socket.create_connection(("198.51.100.7", 443), timeout=30)
    assert time.monotonic() - start < 5


def test_hub_download_fails_fast_offline():
    from huggingface_hub import hf_hub_download

    start = time.monotonic()
    with pytest.raises(OSError):  # LocalEntryNotFoundError offline (the network guard's refusal is an OSError too)
        hf_hub_download("sentence-transformers/all-MiniLM-L6-v2", "config.json", cache_dir="/nonexistent-cache")
    assert time.monotonic() - start < 5


def test_loopback_is_allowed():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client = socket.create_connection(server.getsockname(), timeout=5)
    client.close()
    server.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("hub", ["HF_HUB_OFFLINE", "unreachable"])
def test_offline_build_without_kb_pretrained_none_fails_at_once_in_one_sentence(sample_corpus, tmp_path, hub):
    import subprocess
    import sys

    env = dict(os.environ, HF_HOME=str(tmp_path / "empty-hf-cache"))  # the weights are surely not cached
    if hub == "unreachable":  # not told offline: the short probe finds no Hub listening
        env.pop("HF_HUB_OFFLINE", None)
        env["HF_ENDPOINT"] = f"http://127.0.0.1:{_closed_port()}"
    start = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from realign_data.cli import main; main()",
            "build",
            "--index",
            str(tmp_path / "index"),
            "--coco-root",
            str(sample_corpus),
            "--out",
            str(tmp_path / "ds"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    elapsed = time.monotonic() - start
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert elapsed < 10, elapsed
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr[-2000:]  # no retry lines, no traceback
    assert "Hub cannot be reached" in lines[0] and "--kb-pretrained none" in lines[0]
    assert len(lines[0].replace(str(tmp_path / "index"), "INDEX")) < 300 and not (tmp_path / "index").exists()
