"""A Hub that accepts the connection and never answers: ``push`` gives up at its deadline (``--timeout``, per
request) with one sentence, instead of hanging until it is killed."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "support"))
from test_hub import make_build_dir


def test_push_to_a_hub_that_never_answers_stops_at_its_deadline(tmp_path):
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:  # accept every connection, read nothing, answer nothing
        while True:
            try:
                held.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    out = make_build_dir(tmp_path / "b", n=2)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(
        HF_ENDPOINT=f"http://127.0.0.1:{listener.getsockname()[1]}",
        HF_TOKEN="hf_test",
        HF_HUB_OFFLINE="0",
        HF_DATASETS_OFFLINE="0",
        HF_HUB_DISABLE_XET="1",
        HF_HOME=str(tmp_path / "home"),
        NO_PROXY="*",
    )
    started = time.monotonic()
    try:
        r = subprocess.run(
            [sys.executable, "-m", "realign_data.cli", "push", str(out), "tester/silent", "--timeout", "1", "-q"],
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
        )
    finally:
        listener.close()
        for c in held:
            c.close()
    took = time.monotonic() - started
    assert r.returncode == 1, r.stderr[-3000:]
    assert "Traceback" not in r.stderr and "did not answer within 1 s (--timeout)" in r.stderr, r.stderr[-3000:]
    assert held and took < 45, took
