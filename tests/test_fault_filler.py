"""The OpenAI-compatible filler against a real local server that misbehaves: odd ``Retry-After`` values, garbage
answers, dropped connections and a body trickled one byte at a time. Nothing hangs past its deadline, nothing
crashes, and a build over such a server ends with the failures counted as transient."""

from __future__ import annotations

import email.utils
import json
import os
import sys
import time

import pytest
from typer.testing import CliRunner

from realign_data.building.fillers.openai_compat import OpenAIFiller, retry_after_seconds
from realign_data.cli import app

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "support"))
from openai_server import OpenAIServer


def test_retry_after_is_read_defensively():
    now = time.time()
    assert retry_after_seconds("-1") == 0.0
    assert retry_after_seconds("2.5") == 2.5
    assert retry_after_seconds("1e999") is None and retry_after_seconds("nan") is None
    assert retry_after_seconds("soon") is None and retry_after_seconds("") is None
    assert retry_after_seconds(email.utils.formatdate(now + 30, usegmt=True), now) == pytest.approx(30, abs=1)
    assert retry_after_seconds(email.utils.formatdate(now - 30, usegmt=True), now) == 0.0


@pytest.mark.parametrize("header", ["-1", "1e9", "Wed, 21 Oct 2099 07:28:00 GMT", "garbage"])
def test_odd_retry_after_values_are_retried_within_bounds(header):
    with OpenAIServer(fail_first=1, fail_status=429, retry_after=header) as srv:
        filler = OpenAIFiller("m", base_url=srv.base_url, max_retries=2, backoff=0.05, max_backoff=0.3)
        t0 = time.monotonic()
        [res] = filler.generate([("Describe the image.", None, None)])
        filler.close()
    assert res.ok and res.attempts == 2, res
    assert time.monotonic() - t0 < 2


@pytest.mark.parametrize(
    "mode, error", [("garbage", "bad response"), ("drop", "connection error"), ("down", "HTTP 429")]
)
def test_a_broken_server_is_a_transient_failure_not_a_crash(mode, error):
    with OpenAIServer(mode=mode) as srv:
        filler = OpenAIFiller("m", base_url=srv.base_url, max_retries=1, backoff=0.01, max_backoff=0.05)
        [res] = filler.generate([("Describe the image.", None, None)])
        filler.close()
    assert not res.ok and res.transient and error in res.error and res.attempts == 2


def test_a_trickling_server_is_cut_off_at_the_deadline():
    with OpenAIServer(mode="trickle", trickle_interval=0.2) as srv:
        filler = OpenAIFiller("m", base_url=srv.base_url, timeout=0.6, max_retries=1, backoff=0.01, max_backoff=0.02)
        t0 = time.monotonic()
        [res] = filler.generate([("Describe the image.", None, None)])
        took = time.monotonic() - t0
        filler.close()
    assert not res.ok and res.transient and "no complete answer within 0.6 s" in res.error
    assert took < 2 * 0.6 + 1  # (retries + 1) x timeout, plus the waits


def test_a_build_over_a_trickling_server_ends_in_time_with_exit_1(tiny_kb, tmp_path):
    from realign_data.objects.english import pluralize

    pluralize("cat")  # inflect loads before the clock starts (it takes seconds)

    with OpenAIServer(mode="trickle", trickle_interval=0.2) as srv:
        t0 = time.monotonic()
        r = CliRunner().invoke(
            app,
            [
                "build",
                "--index",
                str(tiny_kb),
                "--out",
                str(tmp_path / "out"),
                "--filler",
                "openai",
                "--model",
                "m",
                "--base-url",
                srv.base_url,
                "--request-timeout",
                "1",
                "--max-retries",
                "1",
                "--top-k",
                "1",
                "--max-samples",
                "4",
                "--gate",
                "lexical",
                "--quiet",
            ],
        )
        took = time.monotonic() - t0
    assert r.exit_code == 1 and "request_failed 4" in r.output and "Traceback" not in r.output, r.output
    assert took < 2 * 1 + 1 + 5  # 2 attempts of 1 s, a backoff of <= 1 s, the build's own work


@pytest.mark.parametrize("mode", ["null", "empty"])
def test_an_empty_answer_is_a_transient_failure_retried(mode):
    with OpenAIServer(mode=mode) as srv:
        filler = OpenAIFiller("m", base_url=srv.base_url, max_retries=1, backoff=0.01, max_backoff=0.05)
        [res] = filler.generate([("Describe the image.", None, None)])
        filler.close()
    assert not res.ok and res.transient and "empty answer" in res.error and res.attempts == 2
    assert srv.requests == 2


def test_a_build_over_an_empty_answering_server_is_redone_once_it_answers(tiny_kb, tmp_path):
    """Issue #28: 200 with empty content made fill_failed drops that a re-run never retried (0 pairs)."""
    out = tmp_path / "out"
    args = [
        "build",
        "--index",
        str(tiny_kb),
        "--out",
        str(out),
        "--filler",
        "openai",
        "--model",
        "m",
        "--max-retries",
        "0",
        "--top-k",
        "1",
        "--max-samples",
        "4",
        "--gate",
        "lexical",
        "--quiet",
    ]
    with OpenAIServer(mode="empty") as srv:
        r = CliRunner().invoke(app, [*args, "--base-url", srv.base_url])
        assert r.exit_code == 1 and "request_failed 4" in r.output and "fill_failed" not in r.output, r.output
        srv.mode = None
        r = CliRunner().invoke(app, [*args, "--base-url", srv.base_url])
    assert r.exit_code == 0, r.output
    report = json.loads((out / "build_report.json").read_text())
    assert report["pairs_written"] == 4 and report["drops_transient"] == 0, report
