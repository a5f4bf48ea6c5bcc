"""``benchmarks/gpu_check.sh``: refuses at once without CUDA; its CPU rehearsal (--dry-run) runs every step tiny."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_check.sh"


def _run(*args, timeout=600):
    return subprocess.run(
        ["bash", str(SCRIPT), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )


def test_without_cuda_it_fails_fast_with_one_sentence(tmp_path):
    proc = _run("--wheels", tmp_path / "no-wheels", "--out", tmp_path / "x.json", timeout=120)
    assert proc.returncode == 2
    assert "gpu_check: no CUDA device is visible to PyTorch" in proc.stderr and "--dry-run" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "x.json").exists()


@pytest.mark.slow
def test_dry_run_measures_every_arm_and_the_eval_tiny_on_cpu(tmp_path):
    out = tmp_path / "dry.json"
    proc = _run("--dry-run", "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["device"] == "cpu" and data["shape"] == "tiny"
    arms = {(a["arm"], a["attn"]): a for a in data["arms"]}
    for arm in ("sigmoid", "rdpo", "rdpo_precomputed"):
        a = arms[(arm, "sdpa")]
        assert "error" not in a, a.get("error")
        assert a["step_time_s"] > 0 and a["tokens_per_batch"] > 0
        assert 0 < a["trainable_params"] < a["params"]  # LoRA: only the adapters train
    assert "rdpo/sdpa" in data["ratios_vs_sigmoid"]
    assert data["eval"]["generations"] > 0 and data["eval"]["generations_per_s"] > 0
