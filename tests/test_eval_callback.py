"""Hallucination evaluation during training: ``HallucinationEvalCallback`` and ``realign-trl dpo`` options."""

from __future__ import annotations

import ast
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trl_models import make_trainer, run_torchrun, tiny_yaml_config

SUPPORT_DIR = Path(__file__).parent / "support"  # shared helpers: trl_models, openai_server...
REPO = SUPPORT_DIR.parent.parent
EVAL_KEYS = [
    "eval/pope_random_f1",
    "eval/pope_random_accuracy",
    "eval/pope_popular_f1",
    "eval/pope_adversarial_f1",
    "eval/pope_yes_ratio",
    "eval/chair_s",
    "eval/chair_i",
    "eval/object_recall",
]


def test_callback_logs_eval_metrics_at_the_configured_steps(tiny_llava, sample_corpus, tmp_path):
    from realign_trl.eval import EvalSuite, HallucinationEvalCallback

    suite = EvalSuite.from_coco(sample_corpus, num_images=2, min_objects=1)
    trainer = make_trainer(tiny_llava, tmp_path, max_steps=3)
    callback = HallucinationEvalCallback(
        trainer, suite, eval_steps=2, batch_size=4, pope_max_new_tokens=4, chair_max_new_tokens=6
    )
    trainer.add_callback(callback)
    trainer.train()
    evals = [h for h in trainer.state.log_history if "eval/pope_random_f1" in h]
    assert [h["step"] for h in evals] == [2, 3]  # every 2 steps, and when training stops
    for h in evals:
        for key in EVAL_KEYS:
            assert 0.0 <= h[key] <= 1.0, key
    # the rDPO metrics of every step stay in the training log lines (none folded into the eval lines)
    train = [h for h in trainer.state.log_history if "loss" in h]
    assert len(train) == 3 and all(math.isfinite(h["rewards/chosen"]) for h in train)
    assert not any("rewards/chosen" in h for h in evals)
    saved = json.loads((tmp_path / "out" / "hallucination_eval" / "step-2" / "eval_results.json").read_text())
    assert saved["settings"]["step"] == 2 and "chair_s" in saved["flat"]
    assert [h["step"] for h in callback.history] == [2, 3]


def _env():
    path = os.pathsep.join(p for p in (str(SUPPORT_DIR), str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return dict(
        os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONPATH=path, TQDM_DISABLE="1", OMP_NUM_THREADS="1"
    )


def _cli():
    return [sys.executable, "-c", "from realign_trl.cli import main; main()"]


def test_realign_trl_dpo_hallucination_eval_options(tiny_llava, sample_corpus, tmp_path):
    config = tiny_yaml_config(tiny_llava, tmp_path)
    # -v: TRL's full per-step dicts (read below) instead of the one-line summaries
    proc = subprocess.run(
        [
            *_cli(),
            "dpo",
            "-v",
            "--config",
            str(config),
            "--max_steps",
            "2",
            "--hallucination_eval",
            "pope,chair",
            "--hallucination_eval_steps",
            "1",
            "--hallucination_eval_coco_root",
            str(sample_corpus),
            "--hallucination_eval_num_images",
            "2",
            "--hallucination_eval_min_objects",
            "1",
            "--hallucination_eval_max_new_tokens",
            "6",
        ],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    logged = [
        ast.literal_eval(line) for line in proc.stdout.splitlines() if line.startswith("{") and "eval/chair_s" in line
    ]
    assert len(logged) == 2  # steps 1 and 2 (max_steps 2)
    for log in logged:
        for key in EVAL_KEYS:
            assert key in log, key
    for step in (1, 2):
        assert (tmp_path / "out" / "hallucination_eval" / f"step-{step}" / "chair.jsonl").exists()


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(hallucination_eval="pope,chair"), "needs hallucination_eval_coco_root"),
        (dict(hallucination_eval="pope,halbench", hallucination_eval_coco_root="."), "unknown benchmark halbench"),
        (dict(hallucination_eval="pope", hallucination_eval_coco_root="/no/such/dir"), "'/no/such/dir' does not exist"),
        (
            dict(hallucination_eval="chair", hallucination_eval_coco_root=".", hallucination_eval_steps=-1),
            "hallucination_eval_steps=-1 must be at least 0",
        ),
    ],
)
def test_rdpo_config_validates_hallucination_eval(tmp_path, options, message):
    from realign_trl import RDPOConfig

    with pytest.raises(ValueError, match=message):
        RDPOConfig(output_dir=str(tmp_path), use_cpu=True, **options)
    assert RDPOConfig(output_dir=str(tmp_path), use_cpu=True, hallucination_eval="none").hallucination_eval is None


def test_bad_hallucination_eval_corpus_fails_before_loading(tiny_llava, sample_corpus, tmp_path):
    base = [
        "--model_name_or_path",
        str(tiny_llava),
        "--dataset_name",
        str(tmp_path),
        "--output_dir",
        str(tmp_path / "out"),
        "--use_cpu",
    ]
    args = [
        "--hallucination_eval",
        "chair",
        "--hallucination_eval_coco_root",
        str(sample_corpus),
        "--hallucination_eval_split",
        "val2014",
    ]
    proc = subprocess.run([*_cli(), "dpo", *base, *args], capture_output=True, text=True, env=_env(), timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "no instance annotations for split 'val2014'" in proc.stderr and "Traceback" not in proc.stderr


DIST_SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
import realign_trl
from pathlib import Path
from trl import DPOTrainer
from trl_models import load, make_dataset, tiny_args
from realign_trl.eval import EvalSuite, HallucinationEvalCallback
suite = EvalSuite.from_coco({corpus!r}, num_images=3, min_objects=1)
model, processor = load({model!r})
trainer = DPOTrainer(model=model, ref_model=load({model!r})[0], args=tiny_args(Path({out!r}), max_steps=1),
                     train_dataset=make_dataset(4), processing_class=processor)
callback = HallucinationEvalCallback(trainer, suite, eval_steps=1, batch_size=2, pope_max_new_tokens=3,
                                     chair_max_new_tokens=4, save_records=False)
metrics = callback.evaluate(0)
rank = trainer.accelerator.process_index
Path({out!r}, f"rank{{rank}}.json").write_text(json.dumps({{"metrics": metrics,
                                                            "world": trainer.accelerator.num_processes}}))
trainer.end()
"""


def test_two_processes_share_the_images_and_log_the_same_metrics(tiny_llava, sample_corpus, tmp_path):
    script = tmp_path / "dist.py"
    script.write_text(
        DIST_SCRIPT.format(tests=str(SUPPORT_DIR), corpus=str(sample_corpus), model=str(tiny_llava), out=str(tmp_path))
    )
    proc = run_torchrun(script, _env())
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["world"] == 2 and ranks[0]["metrics"] == ranks[1]["metrics"]

    from realign_trl.eval import EvalSuite, evaluate
    from trl_models import load

    suite = EvalSuite.from_coco(sample_corpus, num_images=3, min_objects=1)
    single = evaluate(load(tiny_llava), suite, batch_size=2, pope_max_new_tokens=3, chair_max_new_tokens=4)
    assert ranks[0]["metrics"] == single.flat(prefix="eval/")
