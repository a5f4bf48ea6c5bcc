"""One way to declare a command: ``build``, ``sample`` and ``eval`` take their options from a config dataclass
(``BuildConfig``, ``SampleConfig``, ``EvalConfig``) through one generator (``realign_data.cli_common.config_options``),
and ``EvalConfig`` is also the one list of the training evaluation's settings (``RDPOConfig``'s
``hallucination_eval_*`` fields and the callback)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import typer.main

from realign_data.cli_common import config_options
from realign_trl.eval.config import EvalConfig, training_name

RECORDED = json.loads((Path(__file__).parent / "data" / "command_options.json").read_text())


def _params(command: str) -> list[list]:
    if command == "eval":
        from realign_trl.cli import app
    else:
        from realign_data.cli import app
    click_command = typer.main.get_command(app).commands[command]
    return [[p.name, list(p.opts) + list(p.secondary_opts), p.default, p.required] for p in click_command.params]


@pytest.mark.parametrize("command", ["build", "sample", "eval"])
def test_generated_options_are_the_recorded_ones(command):
    """Every option keeps its name, flags, default and whether it is required, in the same order, as recorded from
    the hand-written declarations the generator replaced (tests/data/command_options.json)."""
    assert _params(command) == RECORDED[command]


def test_the_generator_reads_the_metadata():
    @dataclasses.dataclass
    class Config:
        path: str = dataclasses.field(metadata={"help": "Where."})
        mode: str = dataclasses.field(default="a", metadata={"help": "How.", "choices": ("a", "b"), "section": "S"})
        hidden: int = dataclasses.field(default=1, metadata={"help": "Not a flag.", "cli": False})
        quiet: bool = dataclasses.field(default=False, metadata={"help": "Hush.", "flag": ("--quiet", "-q")})

    params = {p.name: p for p in config_options(Config)}
    assert list(params) == ["path", "mode", "quiet"]
    assert params["path"].default.default is ...  # no default: a required option
    mode = params["mode"].default
    assert (mode.default, mode.param_decls, mode.help, mode.rich_help_panel) == (
        "a",
        ("--mode",),
        "How. One of: a, b.",
        "S",
    )
    assert params["quiet"].default.param_decls == ("--quiet", "-q")


def test_eval_config_is_the_one_list_of_the_cli_and_training():
    """Each EvalConfig field is a `realign-trl eval` option with its default (or, with cli=False, not one), and the
    fields training takes are exactly RDPOConfig's hallucination_eval_* fields, with their training defaults."""
    from realign_trl import RDPOConfig

    options = {row[0]: row for row in _params("eval")}
    for f in dataclasses.fields(EvalConfig):
        if f.metadata.get("cli", True):
            assert options[f.name][2] == (str(f.default) if isinstance(f.default, Path) else f.default), f.name
        else:
            assert f.name not in options
    trained = {training_name(f): f for f in dataclasses.fields(EvalConfig) if "training" in f.metadata}
    rdpo = {f.name: f for f in dataclasses.fields(RDPOConfig) if f.name.startswith("hallucination_eval")}
    assert (
        list(rdpo)
        == list(trained)
        == [
            "hallucination_eval",
            "hallucination_eval_steps",
            "hallucination_eval_coco_root",
            "hallucination_eval_split",
            "hallucination_eval_pope",
            "hallucination_eval_num_images",
            "hallucination_eval_min_objects",
            "hallucination_eval_batch_size",
            "hallucination_eval_max_new_tokens",
        ]
    )
    for name, f in trained.items():
        assert rdpo[name].default == f.metadata["training"].get("default", f.default), name
        assert rdpo[name].metadata["help"] == f.metadata["training"].get("help", f.metadata["help"]), name
        assert f"{name} (`" in RDPOConfig.__doc__  # documented from the same list


def test_rdpo_config_gives_the_callback_its_eval_config(tmp_path, sample_corpus):
    """RDPOConfig's fields become an EvalConfig, and the callback takes its schedule, batch and bounds from it."""
    from realign_trl import RDPOConfig
    from realign_trl.eval import HallucinationEvalCallback

    args = RDPOConfig(
        output_dir=str(tmp_path),
        use_cpu=True,
        seed=7,
        hallucination_eval="chair",
        hallucination_eval_coco_root=str(sample_corpus),
        hallucination_eval_steps=5,
        hallucination_eval_num_images=2,
        hallucination_eval_min_objects=1,
        hallucination_eval_batch_size=3,
        hallucination_eval_max_new_tokens=9,
    )
    config = args.eval_config()
    assert (
        config.bench,
        config.coco_root,
        config.steps,
        config.num_images,
        config.min_objects,
        config.batch_size,
        config.chair_max_new_tokens,
        config.seed,
    ) == ("chair", str(sample_corpus), 5, 2, 1, 3, 9, 7)
    callback = HallucinationEvalCallback.from_config(object(), config)
    assert (callback.eval_steps, callback.batch_size, callback.bounds) == (
        5,
        3,
        {"pope_max_new_tokens": EvalConfig.pope_max_new_tokens, "chair_max_new_tokens": 9},
    )
    assert len(callback.suite.images) == 2 and callback.suite.benches == ("chair",)
    assert RDPOConfig(output_dir=str(tmp_path), use_cpu=True).eval_config() is None


def test_callback_defaults_are_eval_config_defaults():
    import inspect

    from realign_trl.eval import HallucinationEvalCallback

    params = inspect.signature(HallucinationEvalCallback).parameters
    assert (
        params["eval_steps"].default,
        params["batch_size"].default,
        params["pope_max_new_tokens"].default,
        params["chair_max_new_tokens"].default,
    ) == (EvalConfig.steps, EvalConfig.batch_size, EvalConfig.pope_max_new_tokens, EvalConfig.chair_max_new_tokens)
