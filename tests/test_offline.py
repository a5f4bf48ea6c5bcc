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
    with pytest.raises(Exception):
        hf_hub_download("sentence-transformers/all-MiniLM-L6-v2", "config.json", cache_dir="/nonexistent-cache")
    assert time.monotonic() - start < 5


def test_loopback_is_allowed():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client = socket.create_connection(server.getsockname(), timeout=5)
    client.close()
    server.close()
