"""What every filler shares: the request and result types, the fill prompt, and the VLM backend base class."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from realign_data.building.masking import MASK_TOKENS, MaskResult

FILL_PROMPT = (
    "Some words of the answer below were replaced by slots ({slots}). Look at the image and rewrite the "
    "answer so that it describes THIS image: replace every slot with what the image shows and keep all "
    "other words unchanged. Reply with the completed answer only.\n\n"
    "Question: {instruction}\nAnswer with slots: {masked}"
)


class FillerError(RuntimeError):
    """A filler cannot be set up as asked (bad model path, missing endpoint...)."""


@dataclass
class FillRequest:
    """One fill: the masked chosen answer, the instruction, and the retrieved image to describe.

    ``load_image`` returns the retrieved image as a ``PIL.Image``; ``image_bytes`` (optional) returns its
    encoded file bytes (sent as-is by HTTP backends). ``annotations`` holds the retrieved image's COCO
    ``instances`` and ``captions`` (annotation filler); ``original_categories`` the seed image's.
    ``rng_seed`` makes any random choice of the filler reproducible.
    """

    instruction: str
    chosen: str
    masked: MaskResult
    load_image: Optional[Callable[[], Any]] = None
    image_bytes: Optional[Callable[[], bytes]] = None
    annotations: Optional[dict] = None
    original_categories: tuple[str, ...] = ()
    rng_seed: int = 0


@dataclass
class FillResult:
    text: Optional[str]
    error: Optional[str] = None
    attempts: int = 1
    meta: dict = field(default_factory=dict)
    transient: bool = False  # the failure was the service's (network, 5xx, timeout): a later run may succeed

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.text and self.text.strip())


def unfilled_slots(text: Optional[str]) -> list[str]:
    """The slot tokens (``[OBJECT]``, ``[COLOR]``...) still present in ``text``, in order of kind."""
    upper = (text or "").upper()
    return [token for token in MASK_TOKENS.values() if token in upper]


def fill_prompt(req: FillRequest) -> str:
    kinds = [MASK_TOKENS[k] for k in MASK_TOKENS if MASK_TOKENS[k] in req.masked.masked]
    return FILL_PROMPT.format(slots=", ".join(kinds) or "none", instruction=req.instruction, masked=req.masked.masked)


_PREFIX = re.compile(r"^\s*(?:assistant\s*:|answer\s*:|completed answer\s*:)\s*", re.IGNORECASE)


def clean_generation(text: str) -> str:
    """Strip role prefixes, surrounding quotes and whitespace from a model's answer."""
    text = _PREFIX.sub("", text.strip())
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1]
    return text.strip()


class VLMBackend:
    """Base of model backends: ``generate([(prompt, load_image, image_bytes)]) -> [FillResult]``."""

    name = "vlm"

    def generate(self, items: list[tuple[str, Any, Any]]) -> list[FillResult]:  # pragma: no cover
        raise NotImplementedError

    def fill(self, requests: list[FillRequest]) -> list[FillResult]:
        """Generate the fills; a fill that still contains slot tokens (a model echoing the template) fails.

        Such a fill would differ from the chosen answer by its ``[OBJECT]`` tokens alone: a shortcut for the
        policy, not a hallucination to learn from. It is recorded as a failed fill and the next image is tried.
        """
        results = self.generate([(fill_prompt(r), r.load_image, r.image_bytes) for r in requests])
        for i, res in enumerate(results):
            left = unfilled_slots(res.text) if res.ok else []
            if left:
                results[i] = FillResult(
                    None, error=f"fill left slots unfilled: {' '.join(left)}", attempts=res.attempts, meta=res.meta
                )
        return results

    def complete_text(self, prompts: list[str]) -> list[str]:
        """Text-only completions (e.g. for :class:`realign_data.building.masking.ModelMasker`); '' on failure."""
        return [r.text or "" for r in self.generate([(p, None, None) for p in prompts])]

    def describe(self) -> dict:  # pragma: no cover
        return {"filler": self.name}

    def close(self) -> None:
        pass
