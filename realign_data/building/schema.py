"""The dataset the builder writes: TRL's conversational vision preference format + the visual pair + provenance.

=====================  ===========================================================================
column                 content
=====================  ===========================================================================
``images``             ``[original image]`` (``datasets.Image``, encoded bytes: self-contained)
``prompt``             ``[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q}]}]``
``chosen``             ``[{"role": "assistant", "content": [{"type": "text", "text": y_w}]}]``
``rejected``           same shape, the fill ``y_l`` (describes the retrieved image)
``rejected_images``    ``[visual negative]`` — the visual pair: ``y_w`` on it is the rejected side. The
                       retrieved image (``image_negative="retrieval"``) or the original perturbed by
                       ``region-noise`` / ``crop`` / ``noise`` (PNG bytes)
``id``                 seed id; ``image_id`` identifies the original image
``rejected_image_id``  corpus id of the retrieved rejected image; null for perturbation kinds (the
                       negative is derived from ``image_id``)
``retrieval_rank``     1-based rank of the retrieved image whose fill was kept (first one passing the gate)
``retrieval_score``    its cosine similarity to the original (knowledge-base encoder)
``text_similarity``    gate similarity between ``chosen`` and ``rejected`` (< the threshold)
``masked_chosen``      the chosen answer with its visual facts masked
``filler``             backend that wrote the fill (``annotation``, ``transformers:<model>``...)
``fill_image_id``      corpus id of the retrieved image the fill describes (every kind; for
                       ``retrieval`` it equals ``rejected_image_id``)
``image_negative``     kind of visual negative: ``retrieval``, ``region-noise``, ``crop`` or ``noise``
``negative_params``    JSON object of the perturbation's parameters (``{}`` for retrieval), e.g.
                       ``{"t": 500, "schedule": "sigmoid", "region_source": "segmentation", ...}``
``difficulty``         in [0, 1], how close the negatives are to the positives (1 = hardest); see
                       :mod:`realign_data.building.difficulty`
=====================  ===========================================================================

An on-policy build (``--responses-from``, :mod:`realign_data.building.onpolicy`) adds :data:`ONPOLICY_COLUMNS`:
``round`` (``--round``), ``policy`` (JSON: model, backend, temperature, num_responses, round), ``response_index``
(which draw of the seed's answers) and ``changed_spans`` (JSON list: ``start``/``end`` offsets in ``rejected``,
``text``, ``kind``, ``value``, ``truth``, ``replacement``); ``rejected`` is then the policy's own answer and
``chosen`` that answer corrected, and ``fill_image_id`` names the seed image the correction describes.

``trl.DPOTrainer`` reads ``images``/``prompt``/``chosen``/``rejected`` and ignores the rest. Every visual-negative
kind writes these same columns. A ``--curriculum easy-to-hard`` build writes them in four splits: ``train`` (all
rows, by increasing ``difficulty``) and its terciles ``easy``, ``medium``, ``hard``.
"""

from __future__ import annotations

import json

COLUMNS = (
    "images",
    "prompt",
    "chosen",
    "rejected",
    "rejected_images",
    "id",
    "image_id",
    "rejected_image_id",
    "retrieval_rank",
    "retrieval_score",
    "text_similarity",
    "masked_chosen",
    "filler",
    "fill_image_id",
    "image_negative",
    "negative_params",
    "difficulty",
)
ONPOLICY_COLUMNS = ("round", "policy", "response_index", "changed_spans")


def features(onpolicy: bool = False):
    """The ``datasets.Features`` of a built dataset (column order = :data:`COLUMNS`, then
    :data:`ONPOLICY_COLUMNS` for an on-policy build)."""
    from datasets import Features, Image, List, Value

    message = List({"role": Value("string"), "content": List({"type": Value("string"), "text": Value("string")})})
    return Features(
        {
            "images": List(Image()),
            "prompt": message,
            "chosen": message,
            "rejected": message,
            "rejected_images": List(Image()),
            "id": Value("string"),
            "image_id": Value("string"),
            "rejected_image_id": Value("string"),
            "retrieval_rank": Value("int32"),
            "retrieval_score": Value("float32"),
            "text_similarity": Value("float32"),
            "masked_chosen": Value("string"),
            "filler": Value("string"),
            "fill_image_id": Value("string"),
            "image_negative": Value("string"),
            "negative_params": Value("string"),
            "difficulty": Value("float32"),
            **(
                {
                    "round": Value("int32"),
                    "policy": Value("string"),
                    "response_index": Value("int32"),
                    "changed_spans": Value("string"),
                }
                if onpolicy
                else {}
            ),
        }
    )


def arrow_schema(onpolicy: bool = False):
    """Arrow schema with the Hugging Face features in its metadata (so readers recover ``Image``)."""
    return features(onpolicy).arrow_schema


def user_prompt(instruction: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image", "text": None}, {"type": "text", "text": instruction}]}]


def assistant(text: str) -> list[dict]:
    return [{"role": "assistant", "content": [{"type": "text", "text": text}]}]


def make_row(
    *,
    seed_id: str,
    image_id: str,
    image_bytes: bytes,
    image_name: str | None,
    instruction: str,
    chosen: str,
    rejected: str,
    rejected_image_id: str | None,
    rejected_bytes: bytes,
    rejected_name: str | None,
    rank: int,
    score: float,
    similarity: float,
    masked: str,
    filler: str,
    fill_image_id: str,
    image_negative: str = "retrieval",
    negative_params: dict | None = None,
    difficulty: float = 0.0,
) -> dict:
    return {
        "images": [{"bytes": image_bytes, "path": image_name}],
        "prompt": user_prompt(instruction),
        "chosen": assistant(chosen),
        "rejected": assistant(rejected),
        "rejected_images": [{"bytes": rejected_bytes, "path": rejected_name}],
        "id": seed_id,
        "image_id": image_id,
        "rejected_image_id": rejected_image_id,
        "retrieval_rank": int(rank),
        "retrieval_score": float(score),
        "text_similarity": float(similarity),
        "masked_chosen": masked,
        "filler": filler,
        "fill_image_id": fill_image_id,
        "image_negative": image_negative,
        "negative_params": json.dumps(negative_params or {}, sort_keys=True, separators=(",", ":")),
        "difficulty": float(difficulty),
    }


def message_text(messages) -> str:
    """Text of a chosen/rejected/prompt column value."""
    return " ".join(part.get("text") or "" for m in messages for part in m["content"] if part.get("type") == "text")
