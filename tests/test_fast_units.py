"""Fast tests of modules whose other tests are all slow (end-to-end runs), so that ``pytest -m "not slow"`` reaches
every module (tests/test_fast_coverage.py checks that): each asserts behaviour a user relies on, in milliseconds."""

from __future__ import annotations

import io
import json
import logging

import pytest


# ------------------------------------------------------------------ realign_data.runtime.logs: quiet by default, -v loud
@pytest.fixture
def routed(monkeypatch):
    """route_library_logs' changes for one test only: its handler, captured warnings, logger levels, variables."""
    from realign_data.runtime import logs

    for name in ("TRANSFORMERS_VERBOSITY", "DATASETS_VERBOSITY", logs.VERBOSE_ENV):
        monkeypatch.setenv(name, "")  # recorded, so that the test's own settings are undone (a leaked
        monkeypatch.delenv(name)  # REALIGN_VERBOSE=1 would make later CLI runs in this worker verbose)
    levels = {name: logging.getLogger(name).level for name in ("transformers", "datasets")}
    captured = logging._warnings_showwarning is not None
    yield logs
    logging.getLogger().removeHandler(logs._LIBRARY)
    logging.captureWarnings(captured)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def test_library_warnings_are_hidden_by_default_and_shown_once_with_verbose(routed, capsys, monkeypatch):
    routed.route_library_logs()
    logging.getLogger("open_clip").warning("No pretrained weights loaded (quiet)")
    assert capsys.readouterr().err == ""
    assert routed.verbose() is False

    routed.set_verbose(True)  # what -v does; inherited by the processes a command launches
    assert routed.verbose() is True
    routed.route_library_logs()
    for _ in range(3):
        logging.getLogger("open_clip").warning("No pretrained weights loaded (loud)")
    assert capsys.readouterr().err == "[open_clip] WARNING: No pretrained weights loaded (loud)\n"
    monkeypatch.setenv(routed.VERBOSE_ENV, "0")
    assert routed.verbose() is False


def test_quiet_routing_turns_down_transformers_and_keeps_a_users_choice(routed, monkeypatch):
    import os

    monkeypatch.setenv("DATASETS_VERBOSITY", "info")
    routed.route_library_logs(loud=False)
    assert os.environ["TRANSFORMERS_VERBOSITY"] == "error" and os.environ["DATASETS_VERBOSITY"] == "info"


def test_package_records_are_plain_lines(capsys):
    from realign_data.runtime.logs import show_package_logs

    show_package_logs("realign_data.test_fast_units")
    log = logging.getLogger("realign_data.test_fast_units")
    log.info("[1/4] Generating")
    log.warning("the gate fell back to lexical")
    assert capsys.readouterr().err == "[1/4] Generating\nWarning: the gate fell back to lexical\n"


# ------------------------------------------------------------------ realign_data.publish.exports.images
def test_image_store_writes_each_content_once_under_its_hash(tmp_path):
    from PIL import Image

    from realign_data.publish.exports.images import ImageStore, image_extension

    png = io.BytesIO()
    Image.new("RGB", (4, 3), "red").save(png, format="PNG")
    jpeg = io.BytesIO()
    Image.new("RGB", (4, 3), "blue").save(jpeg, format="JPEG")
    assert (image_extension(png.getvalue()), image_extension(jpeg.getvalue()), image_extension(b"text")) == (
        "png",
        "jpg",
        None,
    )
    (tmp_path / "red.png").write_bytes(png.getvalue())

    store = ImageStore(tmp_path / "out")
    first, _ = store.add({"bytes": png.getvalue(), "path": None})
    again, _ = store.add(str(tmp_path / "red.png"))  # same content from a path: stored once
    other, _ = store.add({"bytes": jpeg.getvalue(), "path": None})
    assert first == again and first.startswith("images/") and first.endswith(".png") and other.endswith(".jpg")
    assert len(store) == 2 and sorted(p.name for p in (tmp_path / "out" / "images").iterdir()) == sorted(
        [first.split("/")[1], other.split("/")[1]]
    )
    with pytest.raises(ValueError, match="rejected image has no bytes and its path '/no/such.png'"):
        store.add({"bytes": None, "path": "/no/such.png"}, what="rejected image")
    with pytest.raises(ValueError, match="not an image Pillow can read"):
        store.add({"bytes": b"not an image", "path": None})


# ------------------------------------------------------------------ realign_data.building.fillers.hf
def test_transformers_filler_errors_name_the_model_or_the_missing_option(tmp_path):
    from realign_data.building.fillers.base import FillerError
    from realign_data.building.fillers.hf import TransformersFiller

    with pytest.raises(FillerError, match="the transformers filler needs --model"):
        TransformersFiller(None, device="cpu")
    with pytest.raises(FillerError, match=f"cannot load VLM '{tmp_path}'"):
        TransformersFiller(str(tmp_path), device="cpu")  # an empty folder is no checkpoint


# ------------------------------------------------------------------ realign_trl.eval.compare
def test_compare_reads_runs_labels_them_and_names_a_bad_path(tmp_path):
    from realign_trl.eval.compare import compare_table, load_results, run_labels
    from realign_trl.eval.suite import EvalError

    for run, chair in (("a/base", 0.5), ("b/base", 0.25)):
        (tmp_path / run).mkdir(parents=True)
        (tmp_path / run / "eval_results.json").write_text(json.dumps({"model": "m", "flat": {"chair_s": chair}}))
    results = load_results([tmp_path / "a" / "base", tmp_path / "b" / "base" / "eval_results.json"])
    labels = run_labels(results)  # the same folder name twice: the paths tell them apart
    assert labels == [str(tmp_path / "a" / "base"), str(tmp_path / "b" / "base")]
    rows = compare_table(results, ["base", "dpo"]).splitlines()
    assert rows[0].split() == ["run", "CHAIR_s"] and rows[1].split() == ["base", "0.5000"]
    assert rows[2].split() == ["dpo", "0.2500"]
    with pytest.raises(EvalError, match="'/no/run' is not an eval_results.json file"):
        load_results(["/no/run"])
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(EvalError, match="no 'flat' metrics"):
        load_results([tmp_path / "bad.json"])


# ------------------------------------------------------------------ realign_trl.trainer: checks before loading
def test_rdpo_dataset_and_option_checks_name_the_fix():
    from datasets import Dataset

    from realign_trl.trainer import validate_rdpo_args, validate_rdpo_dataset

    text_only = Dataset.from_dict({"prompt": ["p"], "chosen": ["c"], "rejected": ["r"]})
    with pytest.raises(ValueError, match="the train dataset has no 'images' or 'image' column"):
        validate_rdpo_dataset(text_only, "rejected_images")
    no_rejected = Dataset.from_dict({"images": [[]], "prompt": ["p"], "chosen": ["c"], "rejected": ["r"]})
    with pytest.raises(ValueError, match="needs a 'rejected_images' column in the eval\\['val'\\] dataset"):
        validate_rdpo_dataset({"val": no_rejected}, "rejected_images", name="eval")
    validate_rdpo_dataset(no_rejected, "images")  # a column that is there passes

    class Args:
        loss_type, ld_alpha, f_divergence_type, use_weighting = ["rdpo", "sigmoid"], None, "reverse_kl", False

    with pytest.raises(ValueError, match="cannot be combined with other loss types"):
        validate_rdpo_args(Args())
    Args.loss_type, Args.use_weighting = ["rdpo"], True
    with pytest.raises(ValueError, match="use_weighting=True \\(WPO\\) is not supported"):
        validate_rdpo_args(Args())


# ------------------------------------------------------------------ realign_trl.eval.callback: when it evaluates
def test_hallucination_callback_evaluates_every_n_steps_and_once_at_the_end():
    from transformers import TrainerControl, TrainerState

    from realign_trl.eval.callback import HallucinationEvalCallback

    with pytest.raises(ValueError, match="eval_steps must be >= 0 \\(got -1\\)"):
        HallucinationEvalCallback(None, None, eval_steps=-1)

    class Recording(HallucinationEvalCallback):  # the schedule only: evaluate() itself needs a trainer and model
        def evaluate(self, step):
            self._last_step = step
            self.history.append({"step": step})
            return {}

    callback, state, control = Recording(None, None, eval_steps=2), TrainerState(), TrainerControl()
    for step in range(1, 6):
        state.global_step = step
        control.should_training_stop = step == 5
        control.should_log = True
        callback.on_step_end(None, state, control)
        assert control.should_log  # the step's own training log line is kept
    callback.on_train_end(None, state, control)  # step 5 already evaluated: not twice
    assert [h["step"] for h in callback.history] == [2, 4, 5]
    only_end = Recording(None, None, eval_steps=0)
    state.global_step = 3
    only_end.on_train_end(None, state, TrainerControl())
    assert [h["step"] for h in only_end.history] == [3]
