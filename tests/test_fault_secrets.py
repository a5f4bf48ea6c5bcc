"""Secrets never reach a file: a key pasted as the ``--api-key-env`` value is refused without being repeated, and
credentials in ``--base-url`` are redacted in everything a build writes (which ``push`` would upload); the report
says which variable held the key and whether it was set."""

from __future__ import annotations

import json
import os
import sys

from typer.testing import CliRunner

from realign_data.cli import app

sys.path.insert(0, os.path.dirname(__file__))
from openai_server import OpenAIServer  # noqa: E402

KEY = "sk-test-9f8e7d6c5b4a39281706f5e4d3c2b1a0"
PASSWORD = "hunter2-secret-pass"


def test_a_key_given_as_the_variable_name_is_refused(tiny_kb, tmp_path):
    r = CliRunner().invoke(app, ["build", "--index", str(tiny_kb), "--out", str(tmp_path / "o"), "--filler", "openai",
                                 "--model", "m", "--api-key-env", KEY])
    assert r.exit_code == 2 and "pass the variable's name, not the key" in r.output
    assert KEY not in r.output and not (tmp_path / "o").exists()


def test_url_credentials_and_the_key_are_in_no_written_file(tiny_kb, tmp_path, monkeypatch):
    monkeypatch.setenv("MY_FILLER_KEY", KEY)
    out = tmp_path / "out"
    with OpenAIServer() as srv:
        url = srv.base_url.replace("http://", f"http://user:{PASSWORD}@")
        r = CliRunner().invoke(app, ["build", "--index", str(tiny_kb), "--out", str(out), "--filler", "openai",
                                     "--model", "m", "--base-url", url, "--api-key-env", "MY_FILLER_KEY",
                                     "--gate", "lexical", "--top-k", "2", "--max-samples", "4", "--quiet"])
        assert r.exit_code == 0, r.output
        assert srv.auth_headers  # the credentials were sent (httpx prefers the URL's userinfo to the key)
    written = [p for p in out.rglob("*") if p.is_file()]
    assert written
    for p in written:
        data = p.read_bytes()
        assert PASSWORD.encode() not in data and KEY.encode() not in data, p
    report = json.loads((out / "build_report.json").read_text())
    filler = report["provenance"]["filler"]
    assert filler["api_key_env"] == "MY_FILLER_KEY" and filler["api_key_set"] is True
    assert filler["base_url"].startswith("http://***@127.0.0.1:")
    assert json.loads((out / "realign_build.json").read_text())["base_url"] == filler["base_url"]
