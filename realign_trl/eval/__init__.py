"""Hallucination evaluation: POPE and CHAIR on any TRL vision model, from Python, the CLI and during training.

    from realign_trl.eval import EvalSuite, evaluate

    suite = EvalSuite.from_coco("data/coco", split="val2014", num_images=500)   # build once
    result = evaluate("llava-hf/llava-1.5-7b-hf", suite, batch_size=16, out="eval-llava")
    result.flat()   # {"pope_random_f1": ..., "pope_yes_ratio": ..., "chair_s": ..., "chair_i": ..., ...}

Modules: ``config`` (``EvalConfig``: every setting, shared by the CLI, ``RDPOConfig`` and the callback), ``suite``
(images, questions, ground truth), ``scoring`` (pure POPE/CHAIR scoring), ``amber`` (AMBER from
its release: ``evaluate(model, amber_suite("AMBER"))``), ``backends``
(transformers / OpenAI-compatible generation), ``runner`` (``evaluate``), ``callback`` (training), ``compare``
(several runs side by side, plots). Names are imported lazily: ``import realign_trl.eval`` loads no torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "EvalConfig": "config",
    "EvalSuite": "suite",
    "EvalError": "suite",
    "BENCHES": "suite",
    "parse_benches": "suite",
    "parse_pope_answer": "scoring",
    "pope_metrics": "scoring",
    "ChairScorer": "scoring",
    "chair_metrics": "scoring",
    "amber_suite": "amber",
    "AmberData": "amber",
    "score_amber": "amber",
    "TransformersBackend": "backends",
    "OpenAIBackend": "backends",
    "EvalRuntimeError": "backends",
    "load_model": "backends",
    "evaluate": "runner",
    "EvalResult": "runner",
    "score": "runner",
    "generate_answers": "runner",
    "HallucinationEvalCallback": "callback",
    "load_results": "compare",
    "compare_table": "compare",
    "plot_comparison": "compare",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'realign_trl.eval' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
