"""The dataset the builder writes: TRL's conversational vision preference format + the visual pair + provenance.

=====================  ===========================================================================
column                 content
=====================  ===========================================================================
``images``             ``[original image]`` (``datasets.Image``, encoded bytes: self-contained)
``prompt``             ``[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q}]}]``
``chosen``             ``[{"role": "assistant", "content": [{"type": "text", "text": y_w}]}]``
``rejected``           same shape, the fill ``y_l`` (describes the retrieved image)
``rejected_images``    ``[retrieved image]`` — the visual pair: ``y_w`` on it is the rejected side
``id``                 seed id; ``image_id`` / ``rejected_image_id`` identify both images
``retrieval_rank``     1-based rank of the retrieved image used (first one whose fill passed the gate)
``retrieval_score``    its cosine similarity to the original (knowledge-base encoder)
``text_similarity``    gate similarity between ``chosen`` and ``rejected`` (< the threshold)
``masked_chosen``      the chosen answer with its visual facts masked
``filler``             backend that wrote the fill (``annotation``, ``transformers:<model>``...)
=====================  ===========================================================================

``trl.DPOTrainer`` reads ``images``/``prompt``/``chosen``/``rejected`` and ignores the rest.
"""

from __future__ import annotations

COLUMNS = ("images", "prompt", "chosen", "rejected", "rejected_images", "id", "image_id", "rejected_image_id",
           "retrieval_rank", "retrieval_score", "text_similarity", "masked_chosen", "filler")


def features():
    """The ``datasets.Features`` of a built dataset (column order = :data:`COLUMNS`)."""
    from datasets import Features, Image, List, Value

    message = List({"role": Value("string"), "content": List({"type": Value("string"), "text": Value("string")})})
    return Features({
        "images": List(Image()), "prompt": message, "chosen": message, "rejected": message,
        "rejected_images": List(Image()), "id": Value("string"), "image_id": Value("string"),
        "rejected_image_id": Value("string"), "retrieval_rank": Value("int32"),
        "retrieval_score": Value("float32"), "text_similarity": Value("float32"),
        "masked_chosen": Value("string"), "filler": Value("string"),
    })


def arrow_schema():
    """Arrow schema with the Hugging Face features in its metadata (so readers recover ``Image``)."""
    return features().arrow_schema


def user_prompt(instruction: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image", "text": None}, {"type": "text", "text": instruction}]}]


def assistant(text: str) -> list[dict]:
    return [{"role": "assistant", "content": [{"type": "text", "text": text}]}]


def make_row(*, seed_id: str, image_id: str, image_bytes: bytes, image_name: str | None, instruction: str,
             chosen: str, rejected: str, rejected_image_id: str, rejected_bytes: bytes, rejected_name: str | None,
             rank: int, score: float, similarity: float, masked: str, filler: str) -> dict:
    return {
        "images": [{"bytes": image_bytes, "path": image_name}],
        "prompt": user_prompt(instruction),
        "chosen": assistant(chosen),
        "rejected": assistant(rejected),
        "rejected_images": [{"bytes": rejected_bytes, "path": rejected_name}],
        "id": seed_id, "image_id": image_id, "rejected_image_id": rejected_image_id,
        "retrieval_rank": int(rank), "retrieval_score": float(score), "text_similarity": float(similarity),
        "masked_chosen": masked, "filler": filler,
    }


def message_text(messages) -> str:
    """Text of a chosen/rejected/prompt column value."""
    return " ".join(part.get("text") or "" for m in messages for part in m["content"] if part.get("type") == "text")
