"""realign_data: build Re-Align dual-preference (text + image) datasets for VLM preference training.

    from realign_data import BuildConfig, build
    result = build(BuildConfig(index="coco", coco_root="data/coco", out="out/realign"))

The public names below are imported lazily, so ``import realign_data`` stays light (no torch, faiss or
transformers until they are used).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "BuildConfig": "realign_data.config",
    "BuildError": "realign_data.config",
    "BuildResult": "realign_data.builder",
    "build": "realign_data.builder",
    "build_dataset": "realign_data.builder",
    "merge": "realign_data.merge",
    "run_demo": "realign_data.demo",
    "load_built": "realign_data.output",
    "mask_response": "realign_data.masking",
    "LexiconMasker": "realign_data.masking",
    "MaskResult": "realign_data.masking",
    "Span": "realign_data.masking",
    "load_filler": "realign_data.fillers",
    "FillRequest": "realign_data.fillers",
    "FillResult": "realign_data.fillers",
    "load_gate": "realign_data.gate",
    "LexicalGate": "realign_data.gate",
    "SentenceGate": "realign_data.gate",
    "Seed": "realign_data.seeds",
    "coco_caption_seeds": "realign_data.seeds",
    "dataset_seeds": "realign_data.seeds",
    "write_inspect_html": "realign_data.inspect_page",
    "push_to_hub": "realign_data.hub",
    "load_build_config": "realign_data.hub",
    "KnowledgeBase": "realign_data.knowledge_base",
    "build_knowledge_base": "realign_data.knowledge_base_build",
    "resolve_index": "realign_data.knowledge_base",
    "Encoder": "realign_data.encoder",
    "CocoAnnotations": "realign_data.corpus",
    "open_source": "realign_data.corpus",
    "make_sample_corpus": "realign_data.sample",
    "build_pope": "realign_data.pope",
    "load_pope": "realign_data.pope",
    "export": "realign_data.exports",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from realign_data.builder import BuildResult, build, build_dataset  # noqa: F401
    from realign_data.config import BuildConfig, BuildError  # noqa: F401
    from realign_data.demo import run_demo  # noqa: F401
    from realign_data.merge import merge  # noqa: F401
    from realign_data.output import load_built  # noqa: F401
    from realign_data.fillers import FillRequest, FillResult, load_filler  # noqa: F401
    from realign_data.gate import LexicalGate, SentenceGate, load_gate  # noqa: F401
    from realign_data.masking import LexiconMasker, MaskResult, Span, mask_response  # noqa: F401
    from realign_data.corpus import CocoAnnotations, open_source  # noqa: F401
    from realign_data.encoder import Encoder  # noqa: F401
    from realign_data.hub import load_build_config, push_to_hub  # noqa: F401
    from realign_data.inspect_page import write_inspect_html  # noqa: F401
    from realign_data.knowledge_base import KnowledgeBase, resolve_index  # noqa: F401
    from realign_data.knowledge_base_build import build_knowledge_base  # noqa: F401
    from realign_data.sample import make_sample_corpus  # noqa: F401
    from realign_data.pope import build_pope, load_pope  # noqa: F401
    from realign_data.exports import export  # noqa: F401
    from realign_data.seeds import Seed, coco_caption_seeds, dataset_seeds  # noqa: F401


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'realign_data' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
