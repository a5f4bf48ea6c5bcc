"""realign_data: build Re-Align dual-preference (text + image) datasets for VLM preference training.

    from realign_data import BuildConfig, build
    result = build(BuildConfig(index="coco", coco_root="data/coco", out="out/realign"))

The public names below are imported lazily, so ``import realign_data`` stays light (no torch, faiss or
transformers until they are used).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from realign_data import _moved

__version__ = "0.1.0"

_EXPORTS = {
    "BuildConfig": "realign_data.building.config",
    "BuildError": "realign_data.building.config",
    "BuildResult": "realign_data.building.builder",
    "build": "realign_data.building.builder",
    "build_dataset": "realign_data.building.builder",
    "merge": "realign_data.building.merge",
    "run_demo": "realign_data.testing.demo",
    "load_built": "realign_data.building.output",
    "mask_response": "realign_data.building.masking",
    "LexiconMasker": "realign_data.building.masking",
    "MaskResult": "realign_data.building.masking",
    "Span": "realign_data.building.masking",
    "load_filler": "realign_data.building.fillers",
    "FillRequest": "realign_data.building.fillers",
    "FillResult": "realign_data.building.fillers",
    "load_gate": "realign_data.building.gate",
    "LexicalGate": "realign_data.building.gate",
    "SentenceGate": "realign_data.building.gate",
    "Seed": "realign_data.building.seeds",
    "coco_caption_seeds": "realign_data.building.seeds",
    "dataset_seeds": "realign_data.building.seeds",
    "write_inspect_html": "realign_data.publish.inspect_page",
    "push_to_hub": "realign_data.publish.hub",
    "load_build_config": "realign_data.publish.hub",
    "KnowledgeBase": "realign_data.kb.knowledge_base",
    "build_knowledge_base": "realign_data.kb.knowledge_base_build",
    "resolve_index": "realign_data.kb.knowledge_base",
    "Encoder": "realign_data.kb.encoder",
    "CocoAnnotations": "realign_data.kb.corpus",
    "open_source": "realign_data.kb.corpus",
    "make_sample_corpus": "realign_data.testing.sample",
    "build_pope": "realign_data.evalsets.pope",
    "load_pope": "realign_data.evalsets.pope",
    "export": "realign_data.publish.exports",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from realign_data.building.builder import BuildResult, build, build_dataset  # noqa: F401
    from realign_data.building.config import BuildConfig, BuildError  # noqa: F401
    from realign_data.building.fillers import FillRequest, FillResult, load_filler  # noqa: F401
    from realign_data.building.gate import LexicalGate, SentenceGate, load_gate  # noqa: F401
    from realign_data.building.masking import LexiconMasker, MaskResult, Span, mask_response  # noqa: F401
    from realign_data.building.merge import merge  # noqa: F401
    from realign_data.building.output import load_built  # noqa: F401
    from realign_data.building.seeds import Seed, coco_caption_seeds, dataset_seeds  # noqa: F401
    from realign_data.evalsets.pope import build_pope, load_pope  # noqa: F401
    from realign_data.kb.corpus import CocoAnnotations, open_source  # noqa: F401
    from realign_data.kb.encoder import Encoder  # noqa: F401
    from realign_data.kb.knowledge_base import KnowledgeBase, resolve_index  # noqa: F401
    from realign_data.kb.knowledge_base_build import build_knowledge_base  # noqa: F401
    from realign_data.publish.exports import export  # noqa: F401
    from realign_data.publish.hub import load_build_config, push_to_hub  # noqa: F401
    from realign_data.publish.inspect_page import write_inspect_html  # noqa: F401
    from realign_data.testing.demo import run_demo  # noqa: F401
    from realign_data.testing.sample import make_sample_corpus  # noqa: F401


_moved.install()  # old module paths (realign_data.corpus, ...) still import, with a DeprecationWarning


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'realign_data' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
