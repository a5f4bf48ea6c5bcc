"""The two shapes of an rdpo batch, one class each, so the loss reads chosen, rejected and visual log-probs the
same way from either: :class:`ThreeRowLayout` (3B rows from ``DataCollatorForVisionRDPO``, TRL's labels) and
:class:`PackedLayout` (prefix sharing: B packed ``[prefix | chosen | rejected]`` rows, then B visual rows)."""

from __future__ import annotations

import torch

from . import prefix_sharing, ref_logps


class ThreeRowLayout:
    """3B rows ``[chosen; rejected; chosen on rejected image]``: TRL's labels, sums over completion tokens."""

    def __init__(self, inputs):
        rows = inputs["input_ids"].size(0)
        if rows % 3 != 0:
            raise ValueError(
                "loss_type='rdpo' expects batches of 3B sequences from DataCollatorForVisionRDPO; got "
                f"{rows} rows. A custom data_collator must build [chosen; rejected; chosen on rejected image]."
            )
        self.inputs, self.b = inputs, rows // 3
        self.mask = inputs["completion_mask"][..., 1:]
        self.label_kwargs = {"labels": inputs["input_ids"].masked_fill(inputs["completion_mask"] == 0, -100)}
        self.chosen_rows, self.rejected_rows = slice(0, self.b), slice(self.b, 2 * self.b)
        self.chosen_mask, self.rejected_mask = self.mask[: self.b], self.mask[self.b : 2 * self.b]
        self.text_tokens = inputs["attention_mask"][: 2 * self.b].sum()

    def model_kwargs(self, model, masks_only=False):
        return (
            {}
            if masks_only
            else {k: v for k, v in self.inputs.items() if k != "completion_mask" and k not in ref_logps.RDPO_COLUMNS}
        )

    def sequence_logps(self, log_probs):
        return log_probs[:, -self.mask.size(1) :].sum(dim=1).chunk(3, dim=0)


class PackedLayout:
    """2B rows: B packed ``[prefix | chosen | rejected]`` rows, then B visual rows (see ``prefix_sharing``)."""

    _LAYOUT_KEYS = ("rdpo_segments", "rdpo_targets", "token_type_ids", "completion_mask")

    def __init__(self, inputs):
        rows = inputs["input_ids"].size(0)
        if rows % 2 != 0:
            raise ValueError(
                f"a prefix-sharing rdpo batch holds 2B rows (packed text pairs, then visual rows); got {rows}."
            )
        self.inputs, self.b = inputs, rows // 2
        targets = inputs["rdpo_targets"]
        self.label_kwargs = {"shift_labels": targets}
        self.of_targets = prefix_sharing.target_segments(inputs["rdpo_segments"], targets)
        self.chosen_rows = self.rejected_rows = slice(0, self.b)
        self.chosen_mask = self.of_targets[: self.b] == prefix_sharing.CHOSEN
        self.rejected_mask = self.of_targets[: self.b] == prefix_sharing.REJECTED
        self.text_tokens = inputs["attention_mask"][: self.b].sum()
        self._masks = {}

    def model_kwargs(self, model, masks_only=False):
        dtype = compute_dtype(model)
        if dtype not in self._masks:
            config = model.config
            self._masks[dtype] = prefix_sharing.attention_masks(
                self.inputs["rdpo_segments"],
                self.inputs["position_ids"],
                dtype,
                config,
                self.inputs.get("token_type_ids") if getattr(config, "model_type", None) == "gemma3" else None,
            )
        kwargs = {"attention_mask": self._masks[dtype]}
        if not masks_only:
            kwargs.update(
                {
                    k: v
                    for k, v in self.inputs.items()
                    if k not in self._LAYOUT_KEYS and k != "attention_mask" and k not in ref_logps.RDPO_COLUMNS
                }
            )
            kwargs["position_ids"] = prefix_sharing.model_position_ids(model, self.inputs)  # Qwen-VL: 3-axis RoPE
        return kwargs

    def sequence_logps(self, log_probs):
        packed, visual = log_probs[: self.b], log_probs[self.b :]
        of_packed, of_visual = self.of_targets[: self.b], self.of_targets[self.b :]
        return (
            prefix_sharing.segment_logps(packed, of_packed, prefix_sharing.CHOSEN),
            prefix_sharing.segment_logps(packed, of_packed, prefix_sharing.REJECTED),
            prefix_sharing.segment_logps(visual, of_visual, prefix_sharing.CHOSEN),
        )


def compute_dtype(model) -> torch.dtype:
    """The dtype the attention scores are computed in (wrappers such as DDP hide ``get_input_embeddings``)."""
    embeddings = getattr(model, "get_input_embeddings", lambda: None)()
    if embeddings is not None:
        return embeddings.weight.dtype
    return next(p.dtype for p in model.parameters() if p.is_floating_point())
