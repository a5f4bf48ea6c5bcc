"""Old module paths (before the stage folders) still import for one release, warn, and give the same objects."""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from realign_data._moved import MOVED, new_name

ROOT = Path(__file__).resolve().parent.parent
PLAUSIBLE = [
    "tiny_models",
    "knowledge_base",
    "corpus",
    "pope",
    "config",
    "hub",
    "output",
    "sample",
    "encoder",
    "fillers",
    "fillers.base",
    "exports",
    "masking",
    "seeds",
]


@pytest.mark.parametrize("old", PLAUSIBLE)
def test_old_path_imports_with_a_warning(old):
    new = importlib.import_module(new_name(f"realign_data.{old}"))
    sys.modules.pop(f"realign_data.{old}", None)
    with pytest.warns(DeprecationWarning, match=rf"realign_data\.{old} moved to {new.__name__}"):
        module = importlib.import_module(f"realign_data.{old}")
    assert module is new


def test_from_old_path_gives_the_same_object():
    from realign_data.kb.corpus import CocoAnnotations as new
    from realign_data.testing.tiny_models import build_tiny_qwen2_vl as new_builder

    sys.modules.pop("realign_data.corpus", None)
    sys.modules.pop("realign_data.tiny_models", None)
    with pytest.warns(DeprecationWarning, match="realign_data.corpus moved to realign_data.kb.corpus"):
        from realign_data.corpus import CocoAnnotations
    with pytest.warns(DeprecationWarning, match="tiny_models moved"):
        from realign_data.tiny_models import build_tiny_qwen2_vl
    assert CocoAnnotations is new and build_tiny_qwen2_vl is new_builder


def test_every_new_path_exists():
    missing = [
        f"{old} -> {new}" for old, new in MOVED.items() if importlib.util.find_spec(f"realign_data.{new}") is None
    ]
    assert not missing


def test_unmoved_and_unknown_paths_are_not_aliased():
    assert new_name("realign_data.objects") is None and new_name("realign_data.kb.corpus") is None
    assert new_name("realign_data.merge") is None  # the public merge function keeps that name
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("realign_data.no_such_module")


def test_public_api_is_unchanged_and_warns_nothing():
    """``from realign_data import build, merge, ...`` gives the functions, without a DeprecationWarning."""
    code = (
        "import warnings; warnings.simplefilter('error')\n"
        "import realign_data\n"
        "from realign_data import build, merge, export, BuildConfig, KnowledgeBase, load_pope, run_demo\n"
        "assert callable(build) and callable(merge) and callable(export), (build, merge, export)\n"
        "assert sorted(realign_data.__all__) == realign_data.__all__\n"
        "for name in realign_data.__all__: getattr(realign_data, name)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_a_warning_points_at_the_importer(tmp_path):
    (tmp_path / "user_code.py").write_text("import realign_data.pope\n")
    code = "import warnings; warnings.simplefilter('always'); import user_code"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"},
    )
    assert "user_code.py:1: DeprecationWarning: realign_data.pope moved to realign_data.evalsets.pope" in out.stderr


def test_warning_is_a_deprecation_warning_not_an_error():
    sys.modules.pop("realign_data.splits", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        importlib.import_module("realign_data.splits")
    assert [w.category for w in caught] == [DeprecationWarning]
