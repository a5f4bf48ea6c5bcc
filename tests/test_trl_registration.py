"""Registration into the stock ``trl.DPOTrainer``: opt-in, isolation of other losses, errors, import order."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from trl_models import make_dataset, make_trainer

SUPPORT_DIR = Path(__file__).parent / "support"  # shared helpers: trl_models, openai_server...

SIGMOID_SCRIPT = textwrap.dedent("""
    import json, os, sys
    sys.path.insert(0, {tests!r})
    if os.environ["WITH_PLUGIN"] == "1":
        import realign_trl
        realign_trl.register()
    from trl import DPOConfig, DPOTrainer
    from trl_models import load, make_dataset
    assert ("__new__" in DPOTrainer.__dict__) == (os.environ["WITH_PLUGIN"] == "1")
    model, processor = load({model!r})
    args = DPOConfig(output_dir={out!r}, use_cpu=True, report_to="none", save_strategy="no", max_steps=2,
                     per_device_train_batch_size=2, learning_rate=1e-2, logging_steps=1, max_length=None,
                     seed=0, loss_type="sigmoid")
    trainer = DPOTrainer(model=model, ref_model=load({model!r})[0], args=args, train_dataset=make_dataset(4),
                         processing_class=processor)
    assert type(trainer) is DPOTrainer  # another loss type: TRL's own class, no rdpo override on the way
    trainer.train()
    print("LOGS=" + json.dumps([h for h in trainer.state.log_history if "loss" in h]))
""")


def _env(**extra):
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        PYTHONPATH=os.pathsep.join([str(SUPPORT_DIR), str(SUPPORT_DIR.parent.parent)]),
        **extra,
    )
    return env


def test_sigmoid_is_identical_with_and_without_plugin(tiny_llava, tmp_path):
    script = tmp_path / "sigmoid.py"
    script.write_text(SIGMOID_SCRIPT.format(tests=str(SUPPORT_DIR), model=str(tiny_llava), out=str(tmp_path / "o")))
    procs = {
        flag: subprocess.Popen(
            [sys.executable, str(script)],
            env=_env(WITH_PLUGIN=flag),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for flag in ("0", "1")
    }
    logs = {}
    for flag, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        line = next(line for line in out.splitlines() if line.startswith("LOGS="))
        logs[flag] = [{k: v for k, v in h.items() if k != "train_runtime"} for h in json.loads(line[5:])]
    assert len(logs["1"]) == 2
    assert logs["0"] == logs["1"]  # every loss and metric, bit for bit
    assert "rewards/visual_margins" not in logs["1"][0]


def test_plain_dpoconfig_accepts_rdpo_with_default_knobs(tiny_llava, tmp_path):
    from trl import DPOConfig, DPOTrainer

    import realign_trl
    from trl_models import load

    model, processor = load(tiny_llava)
    args = DPOConfig(
        output_dir=str(tmp_path),
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        max_steps=1,
        per_device_train_batch_size=2,
        logging_steps=1,
        max_length=None,
        loss_type="rdpo",
    )
    trainer = DPOTrainer(
        model=model, ref_model=load(tiny_llava)[0], args=args, train_dataset=make_dataset(4), processing_class=processor
    )
    assert isinstance(trainer, realign_trl.RDPOTrainer) and isinstance(trainer, DPOTrainer)
    trainer.train()
    log = trainer.state.log_history[0]
    assert log["loss"] == pytest.approx(log["loss/text"] + log["loss/visual"], rel=1e-5)


def test_rdpo_loss_with_zero_visual_weight_equals_sigmoid(tiny_llava, tmp_path):
    """Same model, same batch: rdpo(visual_weight=0) and TRL's sigmoid give the same loss and metrics."""
    dataset = make_dataset(4)
    examples = [dataset[i] for i in range(2)]
    results = {}
    for loss_type, kw in [("sigmoid", {}), ("rdpo", {"rdpo_visual_weight": 0.0})]:
        trainer = make_trainer(
            tiny_llava, tmp_path / loss_type, dataset=dataset, loss_type=loss_type, learning_rate=0.0, **kw
        )
        # perturb the policy so rewards are non-zero
        import torch

        with torch.no_grad():
            for p in trainer.model.parameters():
                p.add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
        trainer.model.train()
        inputs = trainer._prepare_inputs(trainer.data_collator([dict(e) for e in examples]))
        loss = trainer.compute_loss(trainer.model, inputs).item()
        m = trainer._metrics["train"]
        results[loss_type] = (loss, m["rewards/chosen"][-1], m["rewards/margins"][-1], m["logps/chosen"][-1])
    assert results["rdpo"][1] != 0.0
    assert results["rdpo"] == pytest.approx(results["sigmoid"], rel=1e-4, abs=1e-5)


def test_missing_rejected_images_column_fails_at_construction(tiny_llava, tmp_path):
    with pytest.raises(ValueError, match=r"'rejected_images' column.*realign-data build --index coco"):
        make_trainer(tiny_llava, tmp_path, dataset=make_dataset(4, rejected_column=False), ref=False)


def test_custom_rejected_images_column_and_remove_unused_columns(tiny_llava, tmp_path):
    dataset = make_dataset(4).rename_column("rejected_images", "retrieved").add_column("junk", list(range(4)))
    trainer = make_trainer(
        tiny_llava,
        tmp_path,
        dataset=dataset,
        rejected_images_column="retrieved",
        remove_unused_columns=True,
        max_steps=1,
    )
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["input_ids"].size(0) == 2 * 2  # LLaVA: prefix sharing packs the text pair, 2B rows
    trainer.train()
    assert "loss/visual" in trainer.state.log_history[0]


@pytest.mark.parametrize(
    "overrides,match",
    [
        ({"loss_type": ["rdpo", "sft"]}, "cannot be combined.*rdpo_sft_weight"),
        ({"ld_alpha": 0.5}, "ld_alpha"),
        ({"f_divergence_type": "js_divergence"}, "f_divergence_type"),
        ({"use_weighting": True}, "use_weighting"),
    ],
)
def test_unsupported_combinations_fail_clearly(tiny_llava, tmp_path, overrides, match):
    with pytest.raises(ValueError, match=match):
        make_trainer(tiny_llava, tmp_path, ref=False, **overrides)


def test_register_is_idempotent():
    from trl import DPOTrainer

    import realign_trl

    new = DPOTrainer.__dict__["__new__"]
    realign_trl.register()
    realign_trl.register()
    assert DPOTrainer.__dict__["__new__"] is new
    # TRL's methods are TRL's: nothing is wrapped on the stock class
    assert DPOTrainer._compute_loss.__module__ == "trl.trainer.dpo_trainer"
    assert realign_trl.RDPOTrainer._compute_loss.__module__ == "realign_trl.trainer"


def test_version_guard_names_both_versions():
    from realign_trl._compat import SUPPORTED_TRL, UnsupportedTRLVersionError, check_trl_version

    with pytest.raises(UnsupportedTRLVersionError, match=r"TRL >=1\.16,<1\.17.*TRL 1\.17\.0 is installed"):
        check_trl_version("1.17.0")
    assert SUPPORTED_TRL == ">=1.16,<1.17"
    # the real import path, with the installed version faked before the package loads
    code = textwrap.dedent("""
        import importlib.metadata as md
        real = md.version
        md.version = lambda name: "1.15.2" if name == "trl" else real(name)
        try:
            import realign_trl
        except ImportError as err:
            print("ERR", type(err).__name__, err)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env()).stdout
    assert out.startswith("ERR UnsupportedTRLVersionError")
    assert "1.15.2" in out and ">=1.16,<1.17" in out


def test_import_before_trl_registers_without_an_import_hook():
    code = textwrap.dedent("""
        import sys
        import realign_trl
        ours = [h for h in sys.meta_path if type(h).__module__.startswith("realign_trl")]
        assert not ours, ours
        from trl import DPOConfig, DPOTrainer
        from trl.trainer.dpo_trainer import DPOTrainer as same
        assert same is DPOTrainer and DPOTrainer.__dict__["__new__"]
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env())
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "ok"


def test_import_after_trl_registers():
    code = "import trl.trainer.dpo_trainer as m; import realign_trl; print('__new__' in m.DPOTrainer.__dict__)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env())
    assert proc.stdout.strip() == "True", proc.stderr[-2000:]


@pytest.mark.parametrize(
    "first",
    [
        "from realign_trl.trainer import RDPOTrainer",
        "from realign_trl.collator import DataCollatorForVisionRDPO",
        "from realign_trl.config import RDPOConfig",
        "from realign_trl import RDPOTrainer",
    ],
)
def test_any_module_as_a_programs_first_import_is_not_circular(first):
    """The old lazy registration made `from realign_trl.trainer import ...` as a first import a circular ImportError."""
    code = (
        f"{first}; import trl, realign_trl; print(realign_trl.RDPOTrainer.__module__, realign_trl.trl_seam.installed())"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env())
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "realign_trl.trainer True"
