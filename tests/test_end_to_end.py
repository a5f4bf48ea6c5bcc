"""The whole user story from the command line: corpus → index → dataset → rDPO training with TRL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).parent.parent
sys.path.insert(0, str(Path(__file__).parent / "support"))
from realign_cli import command  # noqa: E402  (realign-data with the tiny open_clip model registered)


def _run(tool: str, *args: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    argv = (
        command(*args)
        if tool == "realign-data"
        else [sys.executable, "-c", "from realign_trl.cli import main; main()", *args]
    )
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=600)
    assert proc.returncode == 0, f"{tool} {' '.join(args)}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


def test_build_then_train_rdpo_from_the_command_line(tmp_path, sample_corpus, tiny_open_clip, tiny_llava):
    name, checkpoint = tiny_open_clip
    env = dict(
        os.environ, REALIGN_HOME=str(tmp_path / "home"), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TQDM_DISABLE="1"
    )
    _run(
        "realign-data",
        "index",
        "build",
        "--source",
        "coco",
        "--root",
        str(sample_corpus),
        "--name",
        "coco",
        "--model",
        name,
        "--pretrained",
        str(checkpoint),
        "--num-workers",
        "0",
        "--quiet",
        env=env,
        cwd=tmp_path,
    )
    _run(
        "realign-data",
        "build",
        "--index",
        "coco",
        "--out",
        str(tmp_path / "ds"),
        "--gate",
        "lexical",
        "--max-samples",
        "6",
        "--top-k",
        "3",
        "--quiet",
        env=env,
        cwd=tmp_path,
    )
    report = json.loads((tmp_path / "ds" / "build_report.json").read_text())
    assert report["pairs_written"] > 0

    config = (
        (REPO / "examples" / "rdpo_tiny.yaml")
        .read_text()
        .replace("TINY_MODEL_PATH", str(tiny_llava))
        .replace("TINY_DATASET_PATH", str(tmp_path / "ds"))
        .replace("TINY_OUTPUT_DIR", str(tmp_path / "model"))
    )
    (tmp_path / "tiny.yaml").write_text(config)
    proc = _run("realign-trl", "dpo", "--config", str(tmp_path / "tiny.yaml"), env=env, cwd=tmp_path)
    assert "Training completed" in proc.stdout
    steps = [line for line in proc.stdout.splitlines() if line.startswith("step ")]
    assert "rewards/visual_margins" in steps[0] and "loss/visual" in steps[0]
    # the example trains with a learning rate above 0 from step 1: the margins move by the last step
    assert "rewards/margins 0," not in steps[-1], steps
    assert (tmp_path / "model" / "adapter_model.safetensors").exists()
