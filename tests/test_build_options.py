"""``realign-data build`` options are generated from ``BuildConfig``: every field has a flag, ``--help`` shows it
with its default, and each flag reaches its field."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from realign_data.building.config import BuildConfig
from realign_data.cli import app

FIELDS = dataclasses.fields(BuildConfig)


def flags(f) -> list[str]:
    decl = f.metadata.get("flag", f"--{f.name.replace('_', '-')}")
    decl = decl[0] if isinstance(decl, tuple) else decl
    return decl.split("/")


@pytest.fixture(scope="module")
def help_lines() -> list[str]:
    env = {**os.environ, "TERMINAL_WIDTH": "400"}  # one line per option
    out = subprocess.run(
        [sys.executable, "-m", "realign_data.cli", "build", "--help"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line.strip("│ ").strip() for line in out.splitlines()]


@pytest.mark.parametrize("field", FIELDS, ids=[f.name for f in FIELDS])
def test_every_field_has_a_flag_with_its_default_in_help(field, help_lines):
    line = next((ln for ln in help_lines if ln.split()[:1] == [flags(field)[0]]), None)
    assert line is not None, f"no {flags(field)[0]} option for BuildConfig.{field.name}"
    assert field.metadata["help"].split(".")[0] in line
    assert all(flag in line.split() for flag in flags(field))
    if field.name == "out":
        assert "Required unless --config gives it." in line
    elif field.default is None:
        assert f"[default: ({field.metadata['default_text']})]" in line
    elif isinstance(field.default, bool):  # the on flag, or the off flag for a default of False
        assert f"[default: {flags(field)[0 if field.default else 1].lstrip('-')}]" in line
    else:
        assert f"[default: {field.default}]" in line
    for choice in field.metadata.get("choices") or ():
        assert choice in line


def test_each_flag_reaches_its_field(monkeypatch, tmp_path):
    """The flags that had none before the options were generated, and the renamed or repeatable ones."""
    from realign_data.building import builder

    seen = []

    def fake_build(config):
        seen.append(config)
        raise builder.BuildError("stop here")

    monkeypatch.setattr(builder, "build", fake_build)
    args = [
        "build",
        "--out",
        str(tmp_path / "o"),
        "--kb-model",
        "RN50",
        "--kb-pretrained",
        "none",
        "--prompt",
        "Describe it.",
        "--prompt",
        "What is there?",
        "--chosen-backend",
        "openai",
        "--mask-kind",
        "object",
        "--mask-kind",
        "color",
        "--max-similarity",
        "0.9",
        "--request-timeout",
        "5",
        "--dtype",
        "bfloat16",
        "--format",
        "parquet",
        "--curriculum",
        "none",
        "-q",
    ]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2 and "stop here" in r.output
    got = seen[-1]
    assert (
        got.kb_model,
        got.kb_pretrained,
        got.prompts,
        got.chosen_backend,
        got.mask_kinds,
        got.max_similarity,
        got.request_timeout,
        got.dtype,
        got.format,
        got.curriculum,
        got.progress,
    ) == (
        "RN50",
        "none",
        ["Describe it.", "What is there?"],
        "openai",
        ["object", "color"],
        0.9,
        5.0,
        "bf16",
        "parquet",
        None,
        False,
    )
    assert {
        k: v
        for k, v in got.to_dict().items()
        if k
        not in {
            "out",
            "kb_model",
            "kb_pretrained",
            "prompts",
            "chosen_backend",
            "mask_kinds",
            "max_similarity",
            "request_timeout",
            "dtype",
            "format",
            "progress",
        }
    } == {
        k: v
        for k, v in BuildConfig().to_dict().items()
        if k
        not in {
            "out",
            "kb_model",
            "kb_pretrained",
            "prompts",
            "chosen_backend",
            "mask_kinds",
            "max_similarity",
            "request_timeout",
            "dtype",
            "format",
            "progress",
        }
    }, "untouched options keep their defaults"


def test_bad_choice_is_a_usage_error_naming_the_valid_values():
    r = CliRunner().invoke(app, ["build", "--out", "x", "--mask-kind", "shape"])
    assert r.exit_code == 2 and "unknown mask kinds ['shape']; valid: object, color, size" in r.output
