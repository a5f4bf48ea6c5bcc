"""Quiet by default: `realign-data demo` prints no raw library warning and says each fallback once."""

import os
import subprocess
import sys

from realign_trl.step_logs import step_line

RAW = ("WARNING:root", "No pretrained weights loaded", "FutureWarning", "UserWarning", "DeprecationWarning")


def test_demo_prints_no_library_warning_and_each_fallback_once(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    env.pop("REALIGN_VERBOSE", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from realign_data.cli import main; main()",
            "demo",
            "--out",
            str(tmp_path / "demo"),
            "--num-images",
            "12",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    for raw in RAW:
        assert raw not in out, raw
    assert out.count("the sentence-model weights are unavailable") <= 1  # a Note, not also a Warning
    assert "Warning: cannot load sentence model" not in out
    # offline here: the random encoder is said, once in the run and once as the summary's note
    assert out.count("randomly initialised encoder") <= 2


def test_step_line_is_short_and_keeps_the_losses_and_margins():
    logs = {
        "loss": 1.3862,
        "grad_norm": 0.23,
        "learning_rate": 0.001,
        "rewards/chosen": 0.1,
        "rewards/margins": 0.0125,
        "loss/text": 0.69,
        "loss/visual": 0.69,
        "logps/chosen": -54.3,
        "epoch": 0.5,
    }
    assert step_line(logs, 1, 2) == (
        "step 1/2: loss 1.386, loss/text 0.69, loss/visual 0.69, rewards/margins 0.0125, lr 0.001"
    )
    assert step_line({"train_runtime": 1.5, "train_loss": 1.2}, 2, 2) == "trained 2 steps in 1.5 s, mean loss 1.2"
