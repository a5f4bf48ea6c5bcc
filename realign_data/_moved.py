"""Old module paths (before the stage folders of 0.2) keep importing for one release, with a DeprecationWarning.

``import realign_data.corpus`` (or ``from realign_data.hub import push_to_hub``) finds no file at the old place;
:class:`MovedFinder`, put first on ``sys.meta_path`` by ``realign_data/__init__.py``, answers for the names in
:data:`MOVED`, warns once per import, and hands back the module at its new path: the same module object, so
``realign_data.corpus.CocoAnnotations is realign_data.kb.corpus.CocoAnnotations``. Submodules of a moved
package follow it (``realign_data.fillers.base`` -> ``realign_data.building.fillers.base``). CHANGELOG.md lists
every move. ``realign_data.merge`` has no alias: that name is the public ``merge`` function
(``from realign_data import merge``). Project code imports the new paths only (tests/test_architecture.py).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED = {
    "atomic": "runtime.atomic",
    "locks": "runtime.locks",
    "jobs": "runtime.jobs",
    "devices": "runtime.devices",
    "redact": "runtime.redact",
    "logs": "runtime.logs",
    "hub_deadline": "runtime.hub_deadline",
    "english": "objects.english",
    "vocabulary": "objects.vocabulary",
    "corpus": "kb.corpus",
    "splits": "kb.splits",
    "encoder": "kb.encoder",
    "vector_shards": "kb.vector_shards",
    "index_auto": "kb.index_auto",
    "index_tuning": "kb.index_tuning",
    "knowledge_base": "kb.knowledge_base",
    "knowledge_base_build": "kb.knowledge_base_build",
    "knowledge_base_check": "kb.knowledge_base_check",
    "config": "building.config",
    "seeds": "building.seeds",
    "masking": "building.masking",
    "open_nouns": "building.open_nouns",
    "fillers": "building.fillers",
    "gate": "building.gate",
    "quality": "building.quality",
    "negatives": "building.negatives",
    "difficulty": "building.difficulty",
    "schema": "building.schema",
    "output": "building.output",
    "report": "building.report",
    "separability": "building.separability",
    "pipeline": "building.pipeline",
    "builder": "building.builder",
    "pope": "evalsets.pope",
    "overlap": "evalsets.overlap",
    "provenance": "publish.provenance",
    "dataset_card": "publish.dataset_card",
    "inspect_page": "publish.inspect_page",
    "hub": "publish.hub",
    "hub_server": "publish.hub_server",
    "hub_server_http": "publish.hub_server_http",
    "exports": "publish.exports",
    "sample": "testing.sample",
    "sample_options": "testing.sample_options",
    "tiny_models": "testing.tiny_models",
    "demo": "testing.demo",
    "exports.cli": "cli_exports",
}


def new_name(fullname: str) -> str | None:
    """The new dotted path for an old ``realign_data.`` module path, or ``None`` if it did not move."""
    if not fullname.startswith("realign_data."):
        return None
    rest = fullname[len("realign_data.") :]
    if rest in MOVED:
        return "realign_data." + MOVED[rest]
    head, _, tail = rest.partition(".")
    if tail and head in MOVED and rest not in MOVED.values():
        return f"realign_data.{MOVED[head]}.{tail}"
    return None


class MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves a moved module's old path to the module at its new path."""

    def find_spec(self, fullname, path=None, target=None):
        target_name = new_name(fullname)
        return None if target_name is None else importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        return None

    def exec_module(self, module) -> None:
        target_name = new_name(module.__name__)
        warnings.warn(
            f"{module.__name__} moved to {target_name}; the old path stops working in the next release (CHANGELOG.md)",
            DeprecationWarning,
            stacklevel=2,
        )
        # the import system returns whatever sys.modules holds under the old name once this returns
        sys.modules[module.__name__] = importlib.import_module(target_name)


def install() -> None:
    if not any(isinstance(f, MovedFinder) for f in sys.meta_path):
        # first, so that a stale file left at an old path (an upgrade over an old install) cannot shadow the move
        sys.meta_path.insert(0, MovedFinder())
