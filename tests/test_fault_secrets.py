"""Secrets never reach a file: a key pasted as the ``--api-key-env`` value is refused without being repeated, and
credentials in ``--base-url`` are redacted in everything a build writes (which ``push`` would upload); the report
says which variable held the key and whether it was set."""

from __future__ import annotations

import json
import os
import sys

from typer.testing import CliRunner

from realign_data.cli import app

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "support"))
from openai_server import OpenAIServer

KEY = "sk-test-9f8e7d6c5b4a39281706f5e4d3c2b1a0"
PASSWORD = "hunter2-secret-pass"


def test_a_key_given_as_the_variable_name_is_refused(tiny_kb, tmp_path):
    r = CliRunner().invoke(
        app,
        [
            "build",
            "--index",
            str(tiny_kb),
            "--out",
            str(tmp_path / "o"),
            "--filler",
            "openai",
            "--model",
            "m",
            "--api-key-env",
            KEY,
        ],
    )
    assert r.exit_code == 2 and "pass the variable's name, not the key" in r.output
    assert KEY not in r.output and not (tmp_path / "o").exists()


def test_url_credentials_and_the_key_are_in_no_written_file(tiny_kb, tmp_path, monkeypatch):
    monkeypatch.setenv("MY_FILLER_KEY", KEY)
    out = tmp_path / "out"
    with OpenAIServer() as srv:
        url = srv.base_url.replace("http://", f"http://user:{PASSWORD}@")
        r = CliRunner().invoke(
            app,
            [
                "build",
                "--index",
                str(tiny_kb),
                "--out",
                str(out),
                "--filler",
                "openai",
                "--model",
                "m",
                "--base-url",
                url,
                "--api-key-env",
                "MY_FILLER_KEY",
                "--gate",
                "lexical",
                "--top-k",
                "2",
                "--max-samples",
                "4",
                "--quiet",
            ],
        )
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


QUERY_KEY = "qk-2b1a0c9d8e7f6a5b4c3d2e1f"
FRAGMENT_KEY = "fk-77aa66bb55cc44dd33ee22ff"


def _planted_url(srv) -> str:
    """The server's URL carrying a secret in every place a URL can: userinfo, query (next to a harmless
    ``api-version``) and fragment."""
    return (
        srv.base_url.replace("http://", f"http://user:{PASSWORD}@")
        + f"?api-key={QUERY_KEY}&api-version=2024-02-01"
        + f"#token={FRAGMENT_KEY}"
    )


def _leaks(root) -> list[str]:
    found = []
    for p in sorted(root.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            found += [f"{p}: {s}" for s in (PASSWORD, KEY, QUERY_KEY, FRAGMENT_KEY) if s.encode() in data]
    return found


def test_a_key_planted_everywhere_reaches_no_file_of_build_push_or_eval(tiny_kb, sample_corpus, tmp_path, monkeypatch):
    """build, push (to the local Hub server) and eval (against the local OpenAI server) with a key in the URL's
    userinfo, query and fragment and in the variable --api-key-env names: every file any of them wrote is free of
    it, and the query reached the server (the endpoint works with it)."""
    import subprocess

    from hub_server import HubServer
    from realign_trl.cli import app as trl_app

    monkeypatch.setenv("MY_FILLER_KEY", KEY)
    out, ev = tmp_path / "out", tmp_path / "eval"
    with OpenAIServer() as srv:
        url = _planted_url(srv)
        r = CliRunner().invoke(
            app,
            [
                "build",
                "--index",
                str(tiny_kb),
                "--out",
                str(out),
                "--filler",
                "openai",
                "--model",
                "m",
                "--base-url",
                url,
                "--api-key-env",
                "MY_FILLER_KEY",
                "--gate",
                "lexical",
                "--top-k",
                "2",
                "--max-samples",
                "4",
                "--quiet",
            ],
        )
        assert r.exit_code == 0, r.output
        r = CliRunner().invoke(
            trl_app,
            [
                "eval",
                "--model",
                "served",
                "--base-url",
                url,
                "--api-key-env",
                "MY_FILLER_KEY",
                "--coco-root",
                str(sample_corpus),
                "--num-images",
                "2",
                "--min-objects",
                "1",
                "--pope-max-new-tokens",
                "4",
                "--chair-max-new-tokens",
                "6",
                "--out",
                str(ev),
                "-q",
            ],
        )
        assert r.exit_code in (0, 1) and (ev / "answers_settings.json").exists(), r.output
        assert srv.auth_headers
    report = json.loads((out / "build_report.json").read_text())
    assert report["provenance"]["filler"]["base_url"].endswith("?api-key=***&api-version=2024-02-01#***")
    with HubServer(tmp_path / "hub", token="hf_test") as hub:
        env = hub.client_env(tmp_path / "hf_home")
        p = subprocess.run(
            [sys.executable, "-m", "realign_data.cli", "push", str(out), "tester/secret", "-q"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert p.returncode == 0, p.stderr[-2000:]
        assert (tmp_path / "hub" / "datasets").exists()
    assert not _leaks(tmp_path), _leaks(tmp_path)


def test_redact_url_masks_every_place_a_url_carries_a_secret():
    from realign_data.runtime.redact import redact_text, redact_url

    assert (
        redact_url(f"https://u:{PASSWORD}@h:8/v1?key={KEY}&api-version=2024-02-01&{QUERY_KEY}#t={FRAGMENT_KEY}")
        == "https://***@h:8/v1?key=***&api-version=2024-02-01&***#***"
    )
    assert redact_url("http://h/v1?api-version=sk-abcdefabcdef") == "http://h/v1?api-version=***"  # a key, any name
    assert redact_url("https://example.org/docs#usage") == "https://example.org/docs#usage"  # a plain anchor stays
    assert (
        redact_text(f"Server error for url 'http://h/v1/chat?token={KEY}' (500)")
        == "Server error for url 'http://h/v1/chat?token=***' (500)"
    )
