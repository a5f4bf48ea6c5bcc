"""Difficulty of a dual-preference row and the easy-to-hard curriculum split (MFPO's training order).

A pair is *hard* when its negatives are close to the positives: a rejected image that looks almost like
the original and a rejected answer that reads almost like the chosen one. The score is

    difficulty = image_weight * image_closeness + (1 - image_weight) * clip(text_similarity, 0, 1)

where ``image_closeness`` is :func:`realign_data.building.negatives.image_closeness` (retrieval cosine, or how
much signal a perturbation keeps) and ``text_similarity`` is the gate's chosen-vs-rejected similarity.
Both inputs are in [0, 1], so is the score, and it is non-decreasing in each input.
"""

from __future__ import annotations

from typing import Sequence

SPLITS = ("easy", "medium", "hard")


def difficulty(image_closeness: float, text_similarity: float, image_weight: float = 0.5) -> float:
    if not 0.0 <= image_weight <= 1.0:
        raise ValueError(f"image_weight must be in [0, 1] (got {image_weight}).")
    clip = lambda v: min(1.0, max(0.0, float(v)))  # noqa: E731
    return image_weight * clip(image_closeness) + (1.0 - image_weight) * clip(text_similarity)


def curriculum_order(difficulties: Sequence[float], ids: Sequence[str]) -> list[int]:
    """Row indices from easiest to hardest; ties broken by id so the order is deterministic."""
    return sorted(range(len(difficulties)), key=lambda i: (difficulties[i], ids[i]))


def tercile_splits(difficulties: Sequence[float], ids: Sequence[str]) -> dict[str, list[int]]:
    """Partition rows into easy / medium / hard thirds (sizes differ by at most one)."""
    order = curriculum_order(difficulties, ids)
    n = len(order)
    a, b = round(n / 3), round(2 * n / 3)
    return {"easy": order[:a], "medium": order[a:b], "hard": order[b:]}
