"""Prefix sharing: score the chosen and rejected answers of rDPO's text pair in ONE packed row.

Two of rDPO's three sequences start with the same image and prompt; in real VLMs that prefix is most of the
sequence (LLaVA-1.5: 576 image tokens against ~100 answer tokens). The packed layout computes it once::

    packed row  [ prefix | chosen | d rejected ]       d = a copy of the prefix's last token
    visual row  [ retrieved image + prompt | chosen ]  (a normal row)

so a batch holds 2B rows instead of 3B, and the vision tower encodes 2B images instead of 3B.

Exactness: a 4D attention mask lets the rejected segment see the prefix and itself, never the chosen tokens,
and its position ids restart at the prefix's end. The copy ``d`` sits at the prefix's last position and sees
exactly what that token sees, so its hidden state is the prefix's last hidden state: it predicts the first
rejected token, which the prefix's own last token cannot (that one predicts the first chosen token). Each
answer's log-probs are then those of a separate row, up to float summation order.

The Qwen-VL family (Qwen2-VL, Qwen2.5-VL, Qwen3-VL) numbers positions in three axes (multimodal RoPE: time,
height, width over the image grid, one shared index over text). :func:`model_position_ids` takes them from the
model's own ``get_rope_index`` over ``[prefix | chosen]`` with the image grid kept, and restarts the rejected
segment where the chosen one starts: after the prompt's last (text) token every axis advances by one per token,
so the rejected answer gets exactly the positions a ``[prefix | rejected]`` row would.

The collator describes a packed batch with ``rdpo_segments`` (0 padding, 1 prefix, 2 chosen, 3 rejected),
``position_ids`` and ``rdpo_targets`` (the next token each position predicts, -100 if none: TRL's pre-shifted
``shift_labels``); :func:`attention_masks` turns them into what the model takes. The decision where this is
exact (:func:`decide`) is kept here so one place names the supported families.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from .config import PREFIX_SHARING_MODES as MODES

__all__ = [
    "MODES",
    "decide",
    "pack_rows",
    "attention_masks",
    "model_position_ids",
    "target_segments",
    "segment_logps",
    "PAD",
    "PREFIX",
    "CHOSEN",
    "REJECTED",
]

logger = logging.getLogger(__name__)

PAD, PREFIX, CHOSEN, REJECTED = 0, 1, 2, 3

#: Model families (``config.model_type``) whose language model takes a prepared 4D mask and packed position ids
#: as is, with the text backbones checked exact by the tests.
_FAMILIES = {
    "llava": ("llama", "mistral"),
    "llava_next": ("llama", "mistral"),
    "gemma3": ("gemma3_text",),
    "qwen2_vl": ("qwen2_vl_text",),
    "qwen2_5_vl": ("qwen2_5_vl_text",),
    "qwen3_vl": ("qwen3_vl_text",),
}
#: Families with multimodal RoPE: positions come from the model's ``get_rope_index`` (:func:`model_position_ids`).
_ROPE_INDEX = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")
_ATTENTION = ("sdpa", "eager")


def decide(config: Any, mode: str) -> tuple[bool, str]:
    """Whether to pack the text pair for a model of ``config`` under ``mode`` (auto/on/off), and why, in a few words.

    ``on`` for a model where packing is not exact raises ``ValueError`` instead of training on wrong log-probs.
    """
    if mode not in MODES:
        raise ValueError(f"rdpo_prefix_sharing={mode!r} is not a mode; use {', '.join(MODES)}.")
    if mode == "off":
        return False, "rdpo_prefix_sharing=off"
    family = getattr(config, "model_type", None)
    text = config.get_text_config()
    backbone = getattr(text, "model_type", None)
    attention = getattr(text, "_attn_implementation", None) or getattr(config, "_attn_implementation", None)
    problem = None
    if family not in _FAMILIES:
        problem = (
            f"model type {family!r} is not one where the packed layout is checked exact "
            f"({', '.join(sorted(_FAMILIES))})"
        )
    elif backbone not in _FAMILIES[family]:
        problem = f"{family} with a {backbone!r} language model is not checked exact"
    elif attention not in _ATTENTION:
        problem = f"attention implementation {attention!r} ignores a prepared 4D mask (use sdpa or eager)"
    if problem is None:
        return True, f"{family} with {attention} attention takes a packed 4D mask exactly"
    if mode == "on":
        raise ValueError(f"rdpo_prefix_sharing=on, but {problem}; use rdpo_prefix_sharing=auto or off.")
    return False, problem


def pack_rows(
    prompt: list[torch.Tensor],
    chosen: list[torch.Tensor],
    rejected: list[torch.Tensor] | None,
    extra: list[torch.Tensor] | None = None,
    extra_key: str = "token_type_ids",
) -> dict[str, list[torch.Tensor]]:
    """Lay out one row per example: ``[prompt | chosen]`` or, with ``rejected``, ``[prompt | chosen | d rejected]``.

    Inputs are unpadded 1-D token tensors (already truncated); ``extra`` holds per-prompt token-type ids
    (Gemma's ``token_type_ids``, Qwen-VL's ``mm_token_type_ids``: ``extra_key``), extended with zeros over the
    answers. Returns unpadded per-row lists of ``input_ids``, ``position_ids``, ``rdpo_segments``,
    ``rdpo_targets`` and (with ``extra``) ``extra_key``.
    """
    rows: dict[str, list[torch.Tensor]] = {
        k: [] for k in ("input_ids", "position_ids", "rdpo_segments", "rdpo_targets")
    }
    if extra is not None:
        rows[extra_key] = []
    for i, (p, c) in enumerate(zip(prompt, chosen)):
        n_p, n_c = p.numel(), c.numel()
        none = torch.full((1,), -100, dtype=p.dtype)
        ids = [p, c]
        pos = [torch.arange(n_p + n_c)]
        seg = [torch.full((n_p,), PREFIX), torch.full((n_c,), CHOSEN)]
        # position t predicts token t+1 of its own segment; the prefix's last token predicts chosen[0]
        tgt = [
            torch.full((max(n_p - 1, 0),), -100, dtype=p.dtype),
            c[:1] if n_c else none[: min(n_p, 1)],
            c[1:],
            none[: min(n_c, 1)],
        ]
        if rejected is not None:
            r = rejected[i]
            ids += [p[-1:], r]
            pos.append(torch.arange(n_p - 1, n_p + r.numel()))
            seg.append(torch.full((r.numel() + 1,), REJECTED))
            tgt += [r, none]
        row = {
            "input_ids": torch.cat(ids),
            "position_ids": torch.cat(pos),
            "rdpo_segments": torch.cat(seg),
            "rdpo_targets": torch.cat(tgt),
        }
        if extra is not None:
            row[extra_key] = torch.cat([extra[i], extra[i].new_zeros(row["input_ids"].numel() - n_p)])
        for key, value in row.items():
            rows[key].append(value)
    return rows


def attention_masks(
    segments: torch.Tensor,
    position_ids: torch.Tensor,
    dtype: torch.dtype,
    config: Any,
    token_type_ids: torch.Tensor | None = None,
) -> torch.Tensor | dict[str, torch.Tensor]:
    """The additive 4D mask(s) ``(rows, 1, L, L)`` for a packed batch, in the form ``config``'s model takes.

    A query sees earlier keys of its own segment and of the prefix (the rejected segment: the prefix but its
    last token, which the segment's first token copies); padding keys are hidden. Gemma 3 also lets
    image tokens of one image see each other both ways (``token_type_ids``) and bounds its sliding layers by
    position distance; it takes a dict keyed by layer type, other models a single tensor.
    """
    n = segments.size(1)
    index = torch.arange(n, device=segments.device)
    seg_q, seg_k = segments[:, :, None], segments[:, None, :]
    # the rejected segment starts with its own copy of the prefix's last token, so it sees the prefix before it
    never = position_ids.max() + 1
    rejected_start = torch.where(segments == REJECTED, position_ids, never).min(dim=1).values
    limit = torch.where(seg_q == REJECTED, rejected_start[:, None, None], never)
    sees_prefix = (seg_k == PREFIX) & (position_ids[:, None, :] < limit)
    allowed = (index[None, :, None] >= index[None, None, :]) & ((seg_k == seg_q) | sees_prefix)
    if token_type_ids is not None:
        blocks = _image_blocks(token_type_ids)
        allowed |= (blocks[:, :, None] == blocks[:, None, :]) & (blocks[:, :, None] >= 0)
    allowed &= seg_k != PAD
    allowed |= torch.eye(n, dtype=torch.bool, device=segments.device)  # padding queries: no empty rows
    text = config.get_text_config()
    window = getattr(text, "sliding_window", None)
    layer_types = set(getattr(text, "layer_types", None) or ())
    distance = position_ids[:, :, None] - position_ids[:, None, :]

    def additive(mask: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
        return out.masked_fill_(~mask, torch.finfo(dtype).min)[:, None]

    if getattr(config, "model_type", None) == "gemma3":
        masks = {"full_attention": additive(allowed)}
        if "sliding_attention" in layer_types:
            masks["sliding_attention"] = additive(allowed & (distance < window))
        return masks
    if window is not None:
        allowed &= (distance < window) | torch.eye(n, dtype=torch.bool, device=segments.device)
    return additive(allowed)


def model_position_ids(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The position ids ``model`` takes for a packed batch: the collator's 1-D ones, or, for the Qwen-VL family,
    3-axis multimodal RoPE positions ``(3, rows, L)`` from the model's own ``get_rope_index``.

    Those are computed over each row's ``[prefix | chosen]`` tokens (the image grids of the batch in order, as the
    model computes them for a row of its own); the rejected segment then continues from the prefix's last token
    as a ``[prefix | rejected]`` row would: ``position + delta`` on every axis, ``delta`` being that text token's
    3-axis position less its 1-D one. A prompt ending in an image token has no such offset: ``ValueError``.
    """
    positions = batch["position_ids"]
    config = model.config
    if getattr(config, "model_type", None) not in _ROPE_INDEX:
        return positions
    owner = next((m for m in model.modules() if callable(getattr(m, "get_rope_index", None))), None)
    if owner is None:
        raise ValueError(f"{config.model_type} model without get_rope_index: cannot derive its multimodal positions.")
    segments, types = batch["rdpo_segments"], batch["mm_token_type_ids"]
    grids = {k: batch[k] for k in ("image_grid_thw", "video_grid_thw", "second_per_grid_ts") if k in batch}
    rows = torch.arange(segments.size(0), device=segments.device)
    last = torch.where(segments == PREFIX, torch.arange(segments.size(1), device=segments.device), -1).max(dim=1).values
    if (types[rows, last] != 0).any():
        raise ValueError(
            "prefix sharing needs prompts that end in a text token (the chat template's generation "
            "prompt); a prompt ends in an image or video token: set rdpo_prefix_sharing=off."
        )
    kept = ((segments == PREFIX) | (segments == CHOSEN)).long()
    rope, _ = owner.get_rope_index(batch["input_ids"], mm_token_type_ids=types, attention_mask=kept, **grids)
    delta = rope[:, rows, last] - positions[rows, last]  # (3, rows); equal on the three axes after text
    return torch.where(segments[None] == REJECTED, positions[None] + delta[:, :, None], rope)


def _image_blocks(token_type_ids: torch.Tensor) -> torch.Tensor:
    """Id of the image block each token belongs to (-1 for text), as Gemma 3 numbers them."""
    is_image = token_type_ids == 1
    previous = torch.nn.functional.pad(is_image, (1, 0), value=False)[:, :-1]
    group = torch.cumsum((is_image & ~previous).int(), dim=1) - 1
    return torch.where(is_image, group, -1)


def target_segments(segments: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The segment of the token each position predicts (that of the next position), PAD where it predicts none."""
    following = torch.nn.functional.pad(segments[:, 1:], (0, 1), value=PAD)
    return following.masked_fill(targets == -100, PAD)


def segment_logps(per_token_logps: torch.Tensor, of_targets: torch.Tensor, segment: int) -> torch.Tensor:
    """Sum of the per-token log-probs whose target belongs to ``segment`` (see :func:`target_segments`), per row."""
    return (per_token_logps * (of_targets == segment)).sum(dim=1)
