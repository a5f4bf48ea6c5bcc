"""Command line (``realign-trl``) and 2-process data-parallel runs, as subprocesses."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from trl_models import RDPO_METRICS, make_dataset, run_torchrun, tiny_yaml_config

SUPPORT_DIR = Path(__file__).parent / "support"  # shared helpers: trl_models, openai_server...


def _env():
    return dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        PYTHONPATH=os.pathsep.join(
            p for p in (str(SUPPORT_DIR), str(SUPPORT_DIR.parent.parent), os.environ.get("PYTHONPATH")) if p
        ),
        TQDM_DISABLE="1",
    )


def _cli():
    return [sys.executable, "-c", "from realign_trl.cli import main; main()"]


def test_help_lists_the_commands():
    proc = subprocess.run([*_cli(), "--help"], capture_output=True, text=True, env=_env())
    assert proc.returncode == 0
    assert "dpo" in proc.stdout
    # `import realign_trl` registers loss_type="rdpo" eagerly (realign_trl/trl_seam.py, no import hook), so the
    # CLI's start-up imports TRL's trainer: the commands themselves import nothing more before they run


def test_realign_trl_dpo_with_tiny_yaml(tiny_llava, tmp_path):
    tiny_yaml_config(tiny_llava, tmp_path)
    # an extra TRL flag and an rdpo flag on the command line override the YAML
    proc = subprocess.run(
        [*_cli(), "dpo", "--config", str(tmp_path / "tiny.yaml"), "--beta", "0.2", "--rdpo_anchor_weight", "1.0"],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Training completed" in proc.stdout
    assert (tmp_path / "out" / "adapter_model.safetensors").exists()
    # quiet by default: one line per step instead of TRL's dicts, no raw library warning, the trainer's own line
    steps = [line for line in proc.stdout.splitlines() if line.startswith("step ")]
    assert steps[0].startswith("step 1/8: loss ") and "loss/visual" in steps[0] and "loss/anchor" in steps[0]
    # examples/rdpo_tiny.yaml: no warmup, so the step-1 update moves the rewards (issue 27)
    assert len(steps) == 8 and "rewards/margins 0," not in steps[-1], steps
    assert "{'loss'" not in proc.stdout and "rewards/chosen" not in proc.stdout
    for raw in ("FutureWarning", "UserWarning", "WARNING", "were not passed to `accelerate launch`"):
        assert raw not in proc.stdout + proc.stderr, raw
    assert "rDPO: prefix sharing on, 2B rows per batch" in proc.stderr


def test_realign_trl_dpo_usage_error_exit_code(tmp_path):
    proc = subprocess.run(
        [*_cli(), "dpo", "--config", str(tmp_path / "missing.yaml")], capture_output=True, text=True, env=_env()
    )
    assert proc.returncode == 2
    assert "missing.yaml" in proc.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model_name_or_path", "/no/such/model"], "model directory '/no/such/model' does not exist"),
        (["--loss_type", "bogus"], "unknown loss_type bogus; valid: sigmoid"),
    ],
)
def test_realign_trl_dpo_rejects_bad_arguments_before_loading_anything(tiny_llava, tmp_path, args, message):
    base = [
        "--model_name_or_path",
        str(tiny_llava),
        "--dataset_name",
        str(tmp_path),
        "--output_dir",
        str(tmp_path / "out"),
        "--use_cpu",
    ]
    proc = subprocess.run([*_cli(), "dpo", *base, *args], capture_output=True, text=True, env=_env(), timeout=120)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr


DIST_SCRIPT = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, {tests!r})
    import realign_trl
    from trl import DPOTrainer
    from trl_models import load, make_dataset, tiny_args
    from pathlib import Path
    model, processor = load({model!r})
    args = tiny_args(Path({out!r}), max_steps=2, per_device_train_batch_size=1, per_device_eval_batch_size=2)
    trainer = DPOTrainer(model=model, ref_model=load({model!r})[0], args=args, train_dataset=make_dataset(4),
                         eval_dataset=make_dataset(4, seed=1), processing_class=processor)
    metrics = trainer.evaluate()
    trainer.train()
    if trainer.accelerator.is_main_process:
        logs = [h for h in trainer.state.log_history if "loss" in h]
        Path({result!r}).write_text(json.dumps({{"eval": metrics, "train": logs,
                                                 "world": trainer.accelerator.num_processes}}))
    trainer.end()  # destroys the gloo process group; without it a rank can abort at interpreter exit
""")


def test_two_process_data_parallel(tiny_llava, tmp_path):
    result = tmp_path / "result.json"
    script = tmp_path / "dist.py"
    script.write_text(
        DIST_SCRIPT.format(tests=str(SUPPORT_DIR), model=str(tiny_llava), out=str(tmp_path / "o"), result=str(result))
    )
    proc = run_torchrun(script, _env(), timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(result.read_text())
    assert out["world"] == 2
    for log in out["train"]:
        for key in ["loss", *RDPO_METRICS]:
            assert math.isfinite(log[key]), key

    # Gathered, not rank-local: each rank evaluated 2 of the 4 eval rows, and the logged means must equal a
    # single process evaluating all 4 rows at once.
    from trl import DPOTrainer

    import realign_trl  # noqa: F401
    from trl_models import load, tiny_args

    model, processor = load(tiny_llava)
    single = DPOTrainer(
        model=model,
        ref_model=load(tiny_llava)[0],
        args=tiny_args(tmp_path / "single", per_device_eval_batch_size=4),
        train_dataset=make_dataset(4),
        eval_dataset=make_dataset(4, seed=1),
        processing_class=processor,
    ).evaluate()
    for key in ["logps/chosen", "logps/rejected", "logps/visual_rejected", "loss/visual"]:
        assert out["eval"][f"eval_{key}"] == pytest.approx(single[f"eval_{key}"], rel=1e-4), key
