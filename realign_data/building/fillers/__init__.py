"""Fillers: complete a masked answer as if describing ONE retrieved image (Re-Align's hallucination step).

Every backend takes a list of :class:`FillRequest` and returns one :class:`FillResult` per request, in
order. A failed request never raises: its result carries ``error`` and the builder records it per seed.

========================  ============================================================================
``annotation`` (default)  model-free; fills slots from the retrieved image's COCO instances and captions
``transformers``          a local VLM (``AutoModelForImageTextToText`` + processor chat template)
``openai``                any OpenAI-compatible ``/chat/completions`` endpoint (vLLM, TGI, hosted APIs)
========================  ============================================================================

VLM backends (``transformers``, ``openai``) also answer plain ``(instruction, image)`` prompts with
:meth:`VLMBackend.generate`; the builder uses that to write the chosen answer for seeds that have none
(``--chosen-from``).
"""

from __future__ import annotations

from typing import Any

from realign_data.building.fillers.base import (
    FillerError,
    FillRequest,
    FillResult,
    VLMBackend,
    clean_generation,
    fill_prompt,
    unfilled_slots,
)

FILLERS = ("annotation", "transformers", "openai")


def load_filler(kind: str, **options) -> Any:
    """Build a filler by name: ``annotation``, ``transformers`` (``model=...``) or ``openai`` (``model=...``).

    ``options`` are the backend's own constructor arguments; one it does not take is a :class:`FillerError`
    naming it and the ones it takes (:meth:`BuildConfig.filler_options` gives each backend its own)."""
    if kind == "annotation":
        from realign_data.building.fillers.annotation import AnnotationFiller as cls
    elif kind == "transformers":
        from realign_data.building.fillers.hf import TransformersFiller as cls
    elif kind == "openai":
        from realign_data.building.fillers.openai_compat import OpenAIFiller as cls
    else:
        raise FillerError(f"unknown filler {kind!r}; valid: {', '.join(FILLERS)}")
    import inspect

    takes = [name for name in inspect.signature(cls).parameters if name != "self"]
    unknown = sorted(set(options) - set(takes))
    if unknown:
        raise FillerError(
            f"the {kind} filler takes no option {', '.join(map(repr, unknown))}; its options: "
            f"{', '.join(takes) or 'none'}"
        )
    return cls(**options)


__all__ = [
    "FILLERS",
    "FillRequest",
    "FillResult",
    "FillerError",
    "VLMBackend",
    "clean_generation",
    "fill_prompt",
    "load_filler",
    "unfilled_slots",
]
