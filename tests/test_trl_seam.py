"""The one seam into TRL (``realign_trl/trl_seam.py``): the internals realign_trl touches, listed and checked.

Bumping TRL's pin runs these first: ``check_trl_shape`` names what changed in one sentence, and the static
check below fails when code starts using a private name the table does not list.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import realign_trl
from realign_trl import trl_seam

PACKAGE = Path(realign_trl.__file__).parent
SEAM = Path(trl_seam.__file__)


def _sources() -> dict[Path, ast.Module]:
    return {p: ast.parse(p.read_text()) for p in sorted(PACKAGE.rglob("*.py")) if p != SEAM}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _our_names(trees) -> set[str]:
    """Private names realign_trl defines itself: functions, classes, module and class constants, attributes its own
    classes set on ``self`` (not those set inside subclasses of TRL's trainer), and the ``_realign_`` prefix."""
    ours = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                ours.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                ours.update(t.id for t in targets if isinstance(t, ast.Name))
            elif isinstance(node, ast.alias):
                ours.add(node.asname or node.name.split(".")[0])
        for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
            if any(ast.unparse(base).endswith("Trainer") for base in cls.bases):
                continue  # attributes a trainer subclass assigns may be TRL's own (self._signature_columns)
            for node in ast.walk(cls):
                if (
                    isinstance(node, ast.Attribute)
                    and isinstance(node.ctx, ast.Store)
                    and isinstance(node.value, ast.Name)
                    and node.value.id == "self"
                ):
                    ours.add(node.attr)
    return ours


def _private_uses(tree) -> set[str]:
    """``x._name`` attribute accesses and ``getattr``/``hasattr``/``setattr(x, "_name")`` on anything."""
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            used.add(node.attr)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "hasattr", "setattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _private(node.args[1].value)
        ):
            used.add(node.args[1].value)
    return used


def _trl_imports(tree) -> set[str]:
    """Dotted names imported from TRL's submodules (``from trl.trainer.utils import pad`` -> trl.trainer.utils.pad)."""
    return {
        f"{node.module}.{alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.startswith("trl.")
        for alias in node.names
    }


def test_the_table_lists_every_private_name_and_trl_helper_the_code_touches():
    import trl

    trees = _sources()
    listed = {item.attr for item in trl_seam.INTERNALS}
    ours = _our_names(trees.values())
    unlisted = {}
    for path, tree in trees.items():
        private = {n for n in _private_uses(tree) if n not in ours and not n.startswith("_realign_")}
        # a name trl exports at the top level (trl.DPOTrainer, trl.apply_chat_template) is public API
        helpers = {n for n in _trl_imports(tree) if not hasattr(trl, n.rsplit(".", 1)[1])}
        missing = {n for n in private if n not in listed} | (helpers - {i.name for i in trl_seam.INTERNALS})
        if missing:
            unlisted[str(path.relative_to(PACKAGE))] = sorted(missing)
    assert not unlisted, f"TRL internals used outside realign_trl/trl_seam.py's INTERNALS: {unlisted}"


def test_every_listed_internal_is_used():
    code = "\n".join(p.read_text() for p in PACKAGE.rglob("*.py") if p != SEAM)
    seam = SEAM.read_text()
    seam_code = seam[: seam.index("INTERNALS: tuple")] + seam[seam.index("def _resolve") :]
    stale = [i.name for i in trl_seam.INTERNALS if (i.used_as or i.attr) not in code + seam_code]
    assert not stale, f"listed but no longer used: {stale}"


def test_only_the_seam_changes_trl_at_run_time():
    """No assignment to an attribute of a TRL or datasets module or class outside the seam."""
    offenders = []
    for path, tree in _sources().items():
        modules = {
            alias.asname or alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
            if alias.name.split(".")[0] in ("trl", "datasets")
        }
        modules |= {
            alias.asname or alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("trl", "datasets")
            for alias in node.names
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.ctx, ast.Store)
                and isinstance(node.value, ast.Name)
                and node.value.id in modules
            ):
                offenders.append(f"{path.name}:{node.lineno} {ast.unparse(node)}")
    assert not offenders, offenders
    hooks = [
        p.name
        for p in PACKAGE.rglob("*.py")
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, ast.Attribute) and node.attr in ("meta_path", "path_hooks")
    ]
    assert not hooks, f"import hooks in {hooks}"


def test_the_pinned_trl_has_the_shape_the_table_describes():
    trl_seam.check_trl_shape()
    assert trl_seam.installed()
    assert {i.kind for i in trl_seam.INTERNALS} <= {"callable", "fields", "attribute", "read", "global"}
    assert all(i.why and i.version for i in trl_seam.INTERNALS)


def _one_sentence(message: str) -> None:
    assert "\n" not in message and message.endswith(".")
    assert message.startswith(f"realign_trl was written against TRL {trl_seam.PINNED_TRL}")


def test_a_missing_method_fails_with_one_sentence_naming_it(monkeypatch):
    from trl.trainer.dpo_trainer import DPOTrainer

    monkeypatch.delattr(DPOTrainer, "_compute_loss")
    with pytest.raises(trl_seam.TRLShapeError) as err:
        trl_seam.check_trl_shape()
    message = str(err.value)
    _one_sentence(message)
    assert "trl.trainer.dpo_trainer.DPOTrainer._compute_loss is missing" in message
    assert "install 'trl>=1.16,<1.17'" in message


def test_a_changed_signature_and_a_dropped_attribute_are_both_named(monkeypatch):
    from trl.trainer import utils
    from trl.trainer.dpo_trainer import DPOTrainer

    def compute_ref_log_probs(self, batch):  # a renamed parameter
        return batch

    monkeypatch.setattr(DPOTrainer, "compute_ref_log_probs", compute_ref_log_probs)
    monkeypatch.delattr(utils, "flush_left")
    # an instance attribute TRL's __init__ no longer sets (as if TRL renamed _tp_size)
    gone = trl_seam.Internal(
        "trl.trainer.dpo_trainer.DPOTrainer._tp_size_renamed",
        "attribute",
        "test",
        set_in="trl.trainer.dpo_trainer.DPOTrainer.__init__",
    )
    with pytest.raises(trl_seam.TRLShapeError) as err:
        trl_seam.check_trl_shape(trl_seam.INTERNALS + (gone,))
    message = str(err.value)
    _one_sentence(message)
    assert "DPOTrainer.compute_ref_log_probs takes (self, batch) instead of (self, model, inputs, ...)" in message
    assert "DPOTrainer.__init__ no longer sets self._tp_size_renamed" in message
    assert "trl.trainer.utils.flush_left is missing" in message


def test_install_refuses_a_trl_that_defines_its_own_new(monkeypatch):
    from trl.trainer.dpo_trainer import DPOTrainer

    monkeypatch.setattr(DPOTrainer, "__new__", staticmethod(lambda cls, *a, **k: object.__new__(cls)))
    with pytest.raises(trl_seam.TRLShapeError, match="defines DPOTrainer.__new__"):
        trl_seam.install(lambda cls, args, kwargs: cls)


def test_stock_dpo_trainer_builds_the_class_the_config_asks_for():
    from trl import DPOConfig, DPOTrainer

    from realign_trl.trainer import RDPOTrainer, trainer_class_for
    from trl_models import make_dataset

    def config(**kw):
        return DPOConfig(output_dir="x", use_cpu=True, report_to="none", **kw)

    rdpo, sigmoid = config(loss_type="rdpo"), config(loss_type="sigmoid")
    assert trainer_class_for(DPOTrainer, ("m",), {"args": rdpo}) is RDPOTrainer
    assert trainer_class_for(DPOTrainer, ("m",), {"args": sigmoid}) is DPOTrainer
    assert trainer_class_for(DPOTrainer, (), {}) is DPOTrainer  # not a constructor call (copy, unpickling)
    # TRL refuses precomputed reference log-probs on images: the subclass does it, for TRL's losses too
    precompute = config(loss_type="sigmoid", precompute_ref_log_probs=True)
    assert trainer_class_for(DPOTrainer, ("m",), {"args": precompute, "train_dataset": make_dataset(2)}) is RDPOTrainer

    class Mine(DPOTrainer):
        pass

    mixed = trainer_class_for(Mine, ("m",), {"args": rdpo})
    assert mixed.__mro__[1:3] == (Mine, RDPOTrainer) and mixed is trainer_class_for(Mine, ("m",), {"args": rdpo})


@pytest.mark.parametrize("fixture", ["tiny_llava", "tiny_qwen2_5_vl"])
def test_rdpo_collator_rows_are_trls_collator_rows(fixture, request):
    """The 3B-row collator repeats TRL's tokenisation (it cannot call it: see realign_trl/collator.py): its first
    2B rows must stay exactly what TRL's ``DataCollatorForVisionPreference`` builds."""
    from trl.trainer.dpo_trainer import DataCollatorForVisionPreference

    from realign_trl.collator import DataCollatorForVisionRDPO
    from trl_models import load, make_dataset

    _, processor = load(request.getfixturevalue(fixture))
    dataset = make_dataset(3)
    examples = [dataset[i] for i in range(3)]
    ours = DataCollatorForVisionRDPO(processor=processor)([dict(e) for e in examples])
    stock = DataCollatorForVisionPreference(processor=processor)(
        [{k: v for k, v in e.items() if k != "rejected_images"} for e in examples]
    )
    assert ours["input_ids"].size(0) == 9
    assert set(stock) <= set(ours)
    for key, value in stock.items():
        if key in ("input_ids", "attention_mask", "completion_mask", "token_type_ids", "mm_token_type_ids"):
            width = value.size(1)
            assert torch.equal(ours[key][:6, :width], value), key
            assert not ours[key][:6, width:].any(), key  # only padding beyond TRL's width
        elif key in ("pixel_values", "image_grid_thw", "image_sizes"):
            assert torch.equal(ours[key][: value.size(0)], value), key


def test_the_dpo_script_loads_save_to_disk_folders_itself(tmp_path):
    """``realign-trl dpo``'s own ``main`` reads ``realign-data build`` output without patching ``datasets``."""
    import datasets
    from trl import DatasetMixtureConfig, ScriptArguments

    from realign_trl.scripts.dpo import _load_dataset

    rows = datasets.Dataset.from_dict({"prompt": ["p"], "chosen": ["c"], "rejected": ["r"]})
    rows.save_to_disk(str(tmp_path / "one"))
    datasets.DatasetDict({"train": rows, "test": rows}).save_to_disk(str(tmp_path / "two"))
    load_dataset = datasets.load_dataset
    one = _load_dataset(ScriptArguments(dataset_name=str(tmp_path / "one")), DatasetMixtureConfig())
    two = _load_dataset(ScriptArguments(dataset_name=str(tmp_path / "two")), DatasetMixtureConfig())
    assert list(one) == ["train"] and one["train"]["chosen"] == ["c"]
    assert sorted(two) == ["test", "train"]
    assert datasets.load_dataset is load_dataset
