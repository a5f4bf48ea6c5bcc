"""Quality floor of a fill: checks a candidate rejected answer must pass besides the gate's upper bound.

The gate (< 0.95) only says a fill is *different enough*. RLAIF-V's data pipeline also filters on length,
identity and similarity, because a fill can differ for the wrong reason: a model that rewrites the whole answer,
drops half of it or runs on is not making the targeted hallucination Re-Align wants (the same answer with its
visual facts swapped). Each check has its own drop reason (:data:`realign_data.building.output.DROP_REASONS`):

* ``fill_changed_unmasked`` — the words of the chosen answer outside the masked spans must appear in the fill,
  in order (other words may be added). Articles (a/an/the) and the copula (is/are/was/were) are exempt: fillers
  correct them to agree with the new words ("a apple" -> "an orange", "two dogs are" -> "one cat is").
* ``fill_length`` — the fill's word count must be within a factor ``max_length_ratio`` (default 2) of the
  chosen answer's, both ways.
* ``fill_duplicate`` — a fill identical (case and spacing aside) to the rejected answer already kept for another
  seed of the same image in the same chunk: the pair would be a duplicate.
* ``fill_below_min_similarity`` — with ``--min-similarity S``, a fill whose gate similarity is below ``S`` is too
  far from the chosen answer (off by default).

A fill that fails a check is not kept and the next retrieved image is tried, as for the gate; a seed none of
whose fills passes is dropped with the reason that rejected most of its fills.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Optional

from realign_data.building.gate import words

QUALITY_REASONS = ("fill_changed_unmasked", "fill_length", "fill_duplicate", "fill_below_min_similarity")
DEFAULT_MAX_LENGTH_RATIO = 2.0
EXEMPT_WORDS = frozenset({"a", "an", "the", "is", "are", "was", "were"})
_SLOT = re.compile(r"\[[A-Z]+\]")


def unmasked_words(masked: str) -> list[str]:
    """The words of a masked answer outside its slots, minus the exempt articles and copulas."""
    return [w for w in words(_SLOT.sub(" ", masked)) if w not in EXEMPT_WORDS]


def keeps_unmasked_words(masked: str, fill: str) -> bool:
    """Whether the unmasked words of ``masked`` occur in ``fill`` in the same order (a subsequence)."""
    remaining = iter(words(fill))
    return all(any(w == f for f in remaining) for w in unmasked_words(masked))


def length_ratio(chosen: str, fill: str) -> float:
    """``max(a, b) / min(a, b)`` of the two word counts (inf when one is empty)."""
    a, b = len(words(chosen)), len(words(fill))
    return max(a, b) / min(a, b) if min(a, b) else float("inf")


@dataclass(frozen=True)
class QualityFilters:
    """The checks of the module docstring; ``enabled=False`` turns off all but ``min_similarity``."""

    enabled: bool = True
    max_length_ratio: float = DEFAULT_MAX_LENGTH_RATIO
    min_similarity: Optional[float] = None

    @classmethod
    def of(cls, config: Any) -> QualityFilters:
        return cls(config.quality_filters, config.max_length_ratio, config.min_similarity)

    def check(self, masked: str, chosen: str, fill: str, similarity: float) -> Optional[str]:
        """The reason ``fill`` fails, or None (the duplicate check needs other seeds: see the pipeline)."""
        if self.enabled and not keeps_unmasked_words(masked, fill):
            return "fill_changed_unmasked"
        if self.enabled and length_ratio(chosen, fill) > self.max_length_ratio:
            return "fill_length"
        if self.min_similarity is not None and similarity < self.min_similarity:
            return "fill_below_min_similarity"
        return None

    def describe(self) -> dict:
        return {
            "enabled": self.enabled,
            "checks": list(QUALITY_REASONS[:3]) if self.enabled else [],
            "max_length_ratio": self.max_length_ratio,
            "min_similarity": self.min_similarity,
        }
