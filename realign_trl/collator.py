"""Three-way vision preference batches for rDPO.

TRL's ``DataCollatorForVisionPreference`` stacks ``[chosen; rejected]`` (2B rows) so one forward serves both
answers. rDPO needs a third score, the chosen answer under the *rejected image*, so this collator stacks
``[chosen | image; rejected | image; chosen | rejected_image]`` (3B rows). The trainer then runs ONE policy and
ONE reference forward over all 3B rows; the chosen-with-original-image row is shared by the text pair and the
visual pair and is never computed twice.

With ``prefix_sharing=True`` (set by the trainer where it is exact, see :mod:`realign_trl.prefix_sharing`) it
emits 2B rows instead: B packed rows ``[image + prompt | chosen | rejected]`` and B visual rows
``[rejected image + prompt | chosen]``, each row's layout described by ``position_ids``, ``rdpo_segments`` and
``rdpo_targets``. Truncation keeps exactly the tokens the 3B-row layout keeps.

Why TRL's ``DataCollatorForVisionPreference.torch_call`` is not called for the 3B rows: it builds exactly two rows
per example that share one image list (TRL 1.16 ``trl/trainer/dpo_trainer.py`` lines 306 and 317,
``images = [example["images"] ...] * 2`` and ``prompts = [...] * 2``; line 349, ``pad([chosen_ids,
rejected_ids])``), while the third row needs a *different* image. Calling it twice (once more with the rejected
images) would process B extra images and sequences and leave model-specific ``pixel_values`` (patch counts per
image for Qwen-VL, tiles for LLaVA-NeXT) to be sliced apart again. So the tokenisation below repeats those lines
with a third block: left-padded prompts, right-padded completions, ``flush_left``, truncation, Gemma
``token_type_ids`` and Qwen ``mm_token_type_ids``, through TRL's own helpers (``pad``, ``flush_left``,
``prepare_multimodal_messages``, ``apply_chat_template``). ``tests/test_trl_seam.py`` checks that the first 2B
rows are exactly what TRL's collator builds, so a TRL change to its collator fails there.
:class:`DataCollatorForVisionPreferenceWithRef` does call TRL's collator (it only adds columns).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from trl.data_utils import apply_chat_template, is_conversational, prepare_multimodal_messages
from trl.trainer.dpo_trainer import DataCollatorForVisionPreference
from trl.trainer.utils import flush_left, pad

from .prefix_sharing import pack_rows

__all__ = ["DataCollatorForVisionRDPO", "DataCollatorForVisionPreferenceWithRef"]


def _as_image_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


@dataclass
class DataCollatorForVisionRDPO(DataCollatorForVisionPreference):
    """Collate ``images``/``prompt``/``chosen``/``rejected`` plus ``rejected_images`` into 3B sequences.

    Args:
        rejected_images_column: name of the column holding the rejected (retrieved) images, parallel to
            ``images``: one rejected image per original image, substituted in the same prompt positions.
        prefix_sharing: emit the 2B-row packed layout (the trainer sets it where it is exact).
    """

    rejected_images_column: str = "rejected_images"
    prefix_sharing: bool = False
    ref_logps_columns: tuple[str, ...] = ()

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        return attach_ref_logps(self._collate(examples), examples, self.ref_logps_columns)

    def _collate(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        if self.pad_to_multiple_of is not None:
            raise NotImplementedError(
                "Padding to a multiple of a value is not yet implemented for vision-language modeling and "
                "prompt-completion data."
            )
        column = self.rejected_images_column
        originals, retrieved = [], []
        for i, example in enumerate(examples):
            if column not in example:
                raise KeyError(
                    f"Example {i} has no '{column}' column, which loss_type='rdpo' needs (the retrieved image of "
                    "each record). Build it with `realign-data build --index coco ...`."
                )
            images = _as_image_list(example["images"] if "images" in example else example.get("image"))
            rejected = _as_image_list(example[column])
            if len(images) != len(rejected):
                raise ValueError(
                    f"Example {i} has {len(images)} image(s) in 'images' but {len(rejected)} in '{column}'; "
                    "rDPO substitutes each original image by its rejected counterpart, so the counts must match."
                )
            originals.append(images)
            retrieved.append(rejected)

        texts = []
        for example, imgs in zip(examples, originals):
            example = {
                "prompt": example["prompt"],
                "chosen": example["chosen"],
                "rejected": example["rejected"],
                **{k: example[k] for k in ("tools", "chat_template_kwargs") if k in example},
            }
            if is_conversational(example):
                # The chat template only needs image *placeholders*; which pixels fill them is decided by
                # `images` above, so the same rendered prompt serves the original and the rejected image.
                example["prompt"] = prepare_multimodal_messages(example["prompt"], images=imgs)
                example["chosen"] = prepare_multimodal_messages(example["chosen"])
                example["rejected"] = prepare_multimodal_messages(example["rejected"])
                example = apply_chat_template(example, self.processor)
            texts.append(example)
        if self.prefix_sharing:
            return self._packed_call(texts, originals, retrieved)

        # [chosen | image ; rejected | image ; chosen | rejected image]
        images = originals * 2 + retrieved
        if all(img_list == [] for img_list in images):
            images = None
        prompts = [t["prompt"] for t in texts] * 3
        chosens = [t["chosen"] for t in texts]
        rejecteds = [t["rejected"] for t in texts]

        processed_prompts = self.processor(
            images=images,
            text=prompts,
            padding=True,
            padding_side="left",
            return_tensors=self.return_tensors,
            add_special_tokens=False,
        )
        processed_chosens = self.processor(
            text=chosens,
            padding=True,
            padding_side="right",
            return_tensors=self.return_tensors,
            add_special_tokens=False,
        )
        processed_rejecteds = self.processor(
            text=rejecteds,
            padding=True,
            padding_side="right",
            return_tensors=self.return_tensors,
            add_special_tokens=False,
        )

        prompt_ids, prompt_mask = processed_prompts["input_ids"], processed_prompts["attention_mask"]
        chosen_ids, chosen_mask = processed_chosens["input_ids"], processed_chosens["attention_mask"]
        rejected_ids, rejected_mask = processed_rejecteds["input_ids"], processed_rejecteds["attention_mask"]
        pad_token_id = self.processor.tokenizer.pad_token_id or self.processor.tokenizer.eos_token_id
        completion_ids = torch.cat(tuple(pad([chosen_ids, rejected_ids, chosen_ids], padding_value=pad_token_id)))
        completion_mask = torch.cat(tuple(pad([chosen_mask, rejected_mask, chosen_mask], padding_value=0)))
        input_ids = torch.cat((prompt_ids, completion_ids), dim=1)
        attention_mask = torch.cat((prompt_mask, completion_mask), dim=1)
        completion_mask = torch.cat((torch.zeros_like(prompt_mask), completion_mask), dim=1)
        extra = []  # token-type tensors that must follow flush_left and truncation
        if "token_type_ids" in processed_prompts:  # Gemma
            c_tt, r_tt = processed_chosens["token_type_ids"], processed_rejecteds["token_type_ids"]
            completion_tt = torch.cat(tuple(pad([c_tt, r_tt, c_tt], padding_value=0)))
            extra.append(("token_type_ids", torch.cat((processed_prompts["token_type_ids"], completion_tt), dim=1)))
        if "mm_token_type_ids" in processed_prompts:  # Qwen2.5-VL and later
            mm = torch.cat((processed_prompts["mm_token_type_ids"], torch.zeros_like(completion_ids)), dim=1)
            extra.append(("mm_token_type_ids", mm))

        attention_mask, input_ids, completion_mask, *extra_tensors = flush_left(
            attention_mask, input_ids, completion_mask, *[t for _, t in extra]
        )
        if self.max_length is not None:
            input_ids = input_ids[:, : self.max_length]
            attention_mask = attention_mask[:, : self.max_length]
            completion_mask = align_truncated_chosen(completion_mask[:, : self.max_length])
            extra_tensors = [t[:, : self.max_length] for t in extra_tensors]

        output = processed_prompts  # holds pixel_values and the per-image grids
        output["input_ids"] = input_ids
        output["attention_mask"] = attention_mask
        output["completion_mask"] = completion_mask
        for (name, _), tensor in zip(extra, extra_tensors):
            output[name] = tensor
        return output

    def _packed_call(self, texts: list[dict], originals: list, retrieved: list) -> dict[str, Any]:
        """[image + prompt | chosen | rejected] x B, then [rejected image + prompt | chosen] x B."""
        images = originals + retrieved
        if all(img_list == [] for img_list in images):
            images = None
        processed = self.processor(
            images=images,
            text=[t["prompt"] for t in texts] * 2,
            padding=True,
            padding_side="left",
            return_tensors=self.return_tensors,
            add_special_tokens=False,
        )
        prompts = _unpad(processed["input_ids"], processed["attention_mask"])
        # Gemma's token_type_ids, or Qwen-VL's mm_token_type_ids (its multimodal RoPE positions are derived from
        # them by prefix_sharing.model_position_ids)
        type_key = next((k for k in ("token_type_ids", "mm_token_type_ids") if k in processed), "token_type_ids")
        types = _unpad(processed[type_key], processed["attention_mask"]) if type_key in processed else None
        chosen, rejected = (
            _unpad(
                **{
                    k: v
                    for k, v in self.processor(
                        text=[t[key] for t in texts],
                        padding=True,
                        padding_side="right",
                        return_tensors=self.return_tensors,
                        add_special_tokens=False,
                    ).items()
                    if k in ("input_ids", "attention_mask")
                }
            )
            for key in ("chosen", "rejected")
        )
        b = len(texts)
        if self.max_length is not None:  # what the 3B-row layout keeps, align_truncated_chosen included
            room = [max(0, self.max_length - p.numel()) for p in prompts]
            chosen = [c[: min(room[i], room[b + i])] for i, c in enumerate(chosen)]
            rejected = [r[: room[i]] for i, r in enumerate(rejected)]
            prompts = [p[: self.max_length] for p in prompts]
            types = None if types is None else [t[: self.max_length] for t in types]
        packed = pack_rows(prompts[:b], chosen, rejected, None if types is None else types[:b], type_key)
        visual = pack_rows(prompts[b:], chosen, None, None if types is None else types[b:], type_key)
        pad_token_id = self.processor.tokenizer.pad_token_id or self.processor.tokenizer.eos_token_id
        fill = {"input_ids": pad_token_id, "position_ids": 0, "rdpo_segments": 0, "rdpo_targets": -100, type_key: 0}
        output = processed  # holds pixel_values and the per-image grids
        for key, rows in packed.items():
            output[key] = pad(rows + visual[key], padding_value=fill[key], padding_side="right")
        output["attention_mask"] = (output["rdpo_segments"] != 0).long()
        return output


@dataclass
class DataCollatorForVisionPreferenceWithRef(DataCollatorForVisionPreference):
    """TRL's vision collator plus the precomputed ``ref_chosen_logps``/``ref_rejected_logps`` columns, which TRL's
    vision collator drops (its text collator passes them on): what ``precompute_ref_log_probs=True`` needs for
    TRL's own losses on image datasets."""

    ref_logps_columns: tuple[str, ...] = ()

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        return attach_ref_logps(super().torch_call(examples), examples, self.ref_logps_columns)


def attach_ref_logps(output: dict, examples: list[dict[str, Any]], columns: tuple[str, ...]) -> dict:
    """Add the precomputed reference log-prob columns as float32 ``(B,)`` tensors (the loss reads them)."""
    for column in columns:
        if column not in examples[0]:
            raise ValueError(
                f"This dataset has no precomputed '{column}' column: with precompute_ref_log_probs=True the reference "
                "log-probs are computed for the train and eval datasets given to the trainer; pass this dataset as "
                "eval_dataset when building the trainer."
            )
        output[column] = torch.tensor([float(example[column]) for example in examples], dtype=torch.float32)
    return output


def _unpad(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
    return [ids[mask.bool()] for ids, mask in zip(input_ids, attention_mask)]


def align_truncated_chosen(completion_mask: torch.Tensor) -> torch.Tensor:
    """Score the same chosen tokens on both images after truncation.

    The visual pair compares ``logp(chosen | m)`` with ``logp(chosen | m_r)``. When the two prompts differ in
    length (processors whose image-token count depends on the image size: Qwen2-VL, LLaVA-NeXT anyres) a
    ``max_length`` cut keeps a different number of chosen tokens in the two rows, and the margin would compare
    sums over different tokens. Both chosen rows are therefore limited to the chosen tokens kept in both.
    """
    b = completion_mask.size(0) // 3
    kept = completion_mask.sum(dim=1)
    shared = torch.minimum(kept[:b], kept[2 * b :])
    limit = torch.cat([shared, kept[b : 2 * b], shared])
    return completion_mask * (completion_mask.cumsum(dim=1) <= limit[:, None]).to(completion_mask.dtype)
