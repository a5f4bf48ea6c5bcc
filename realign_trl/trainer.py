"""The ``loss_type="rdpo"`` extension of TRL's ``DPOTrainer``.

TRL has no plugin hook for loss types: ``DPOTrainer._compute_loss`` is one if/elif over loss names. So
:func:`patch_dpo_trainer` wraps exactly three methods *on the stock class*:

* ``__init__``: validates an rdpo configuration and dataset up front (clear errors instead of a failure deep
  in the first step), then swaps TRL's default vision collator for :class:`DataCollatorForVisionRDPO`.
* ``_set_signature_columns_if_needed``: keeps the rejected-images column through ``remove_unused_columns``.
* ``_compute_loss``: runs the rdpo loss.

Each wrapper first asks "is this trainer using rdpo?" and otherwise calls TRL's original method with the
same arguments, so every other loss type keeps TRL's exact behaviour. Patching the class (instead of
rebinding the ``trl.DPOTrainer`` name to a subclass) means ``from trl import DPOTrainer`` done anywhere, before
or after the plugin loads, gets the same class, and ``isinstance`` checks and TRL's own scripts keep working.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import torch
from trl.models.utils import disable_gradient_checkpointing
from trl.trainer.dpo_trainer import DataCollatorForVisionPreference, DPOTrainer
from trl.trainer.utils import use_adapter

from .config import RDPO_DEFAULTS
from .loss import rdpo_loss

__all__ = ["patch_dpo_trainer", "RDPO_LOSS_TYPE"]

RDPO_LOSS_TYPE = "rdpo"
BUILD_HINT = "`realign-data build --index coco ...`"
_PATCH_FLAG = "_realign_rdpo_patched"
_ORIGINAL: dict[str, Any] = {}


def _knob(args: Any, name: str) -> Any:
    """A plain ``DPOConfig`` has no rdpo fields: fall back to the documented defaults."""
    return getattr(args, name, RDPO_DEFAULTS[name])


def _loss_types(args: Any) -> list[str]:
    loss_type = getattr(args, "loss_type", None) or []
    return [loss_type] if isinstance(loss_type, str) else list(loss_type)


def _is_rdpo(trainer: Any) -> bool:
    return RDPO_LOSS_TYPE in (getattr(trainer, "loss_types", None) or ())


def validate_rdpo_args(args: Any) -> None:
    """Reject option combinations the rdpo path does not implement, naming the option and the fix."""
    loss_types = _loss_types(args)
    if loss_types != [RDPO_LOSS_TYPE]:
        raise ValueError(
            f"loss_type='rdpo' cannot be combined with other loss types (got loss_type={loss_types}): rDPO batches "
            "hold three sequences per example, which TRL's other losses do not understand. Use loss_type='rdpo' "
            "alone (its anchor knobs give mDPO/MFPO)."
        )
    if getattr(args, "ld_alpha", None) is not None:
        raise ValueError(
            f"ld_alpha={args.ld_alpha} (LD-DPO length desensitisation) is not supported with loss_type='rdpo'. "
            "Set ld_alpha=None."
        )
    if getattr(args, "f_divergence_type", "reverse_kl") != "reverse_kl":
        raise ValueError(
            f"f_divergence_type='{args.f_divergence_type}' is not supported with loss_type='rdpo', whose visual and "
            "anchor terms are only defined for the reverse-KL (standard DPO) reward. Use "
            "f_divergence_type='reverse_kl'."
        )
    if getattr(args, "use_weighting", False):
        raise ValueError("use_weighting=True (WPO) is not supported with loss_type='rdpo'. Set use_weighting=False.")
    if getattr(args, "precompute_ref_log_probs", False):
        raise ValueError(
            "precompute_ref_log_probs=True is not supported with loss_type='rdpo': TRL processes images on the fly "
            "and does not precompute reference log-probs for vision datasets. Set precompute_ref_log_probs=False "
            "(the reference forward then runs alongside each step; with PEFT it needs no second model)."
        )


def _iter_named(dataset: Any, name: str):
    if dataset is None:
        return
    if isinstance(dataset, dict):  # DatasetDict / dict of eval splits
        for key, value in dataset.items():
            yield f"{name}[{key!r}]", value
    else:
        yield name, dataset


def _columns(dataset: Any) -> list[str]:
    columns = getattr(dataset, "column_names", None)
    if columns is None:  # IterableDataset without resolved features
        columns = list(next(iter(dataset)).keys())
    return list(columns)


def validate_rdpo_dataset(dataset: Any, column: str, name: str = "train") -> None:
    """Fail at construction, not at the first batch, when the visual pair cannot be built."""
    for label, ds in _iter_named(dataset, name):
        if isinstance(ds, str):  # a split name resolved later by Trainer
            continue
        columns = _columns(ds)
        if "images" not in columns and "image" not in columns:
            raise ValueError(
                f"loss_type='rdpo' needs a vision dataset, but the {label} dataset has no 'images' or 'image' "
                f"column (columns: {columns})."
            )
        if column not in columns:
            raise ValueError(
                f"loss_type='rdpo' needs a '{column}' column in the {label} dataset (the rejected, e.g. retrieved, "
                f"image for each record, parallel to 'images'), but it only has {columns}. Build a dual-preference "
                f"dataset with {BUILD_HINT}, or point `rejected_images_column` at the column that holds them."
            )


def _patched_init(self, *args: Any, **kwargs: Any) -> None:
    bound = _INIT_SIGNATURE.bind(self, *args, **kwargs)
    config = bound.arguments.get("args")
    rdpo = config is not None and RDPO_LOSS_TYPE in _loss_types(config)
    if rdpo:
        validate_rdpo_args(config)
        column = _knob(config, "rejected_images_column")
        validate_rdpo_dataset(bound.arguments.get("train_dataset"), column, "train")
        validate_rdpo_dataset(bound.arguments.get("eval_dataset"), column, "eval")
    _ORIGINAL["__init__"](self, *args, **kwargs)
    if rdpo and (
        bound.arguments.get("data_collator") is None
        and type(self.data_collator) is DataCollatorForVisionPreference
    ):
        # imported here: realign_trl.collator imports trl.trainer.dpo_trainer, whose first import is what
        # triggers this module (the registration hook), so a module-level import would be circular
        from .collator import DataCollatorForVisionRDPO

        collator = self.data_collator
        self.data_collator = DataCollatorForVisionRDPO(
            processor=collator.processor,
            max_length=collator.max_length,
            pad_to_multiple_of=collator.pad_to_multiple_of,
            rejected_images_column=column,
        )
    if rdpo:
        self.model.add_model_tags(["rdpo", "re-align"])


def _patched_set_signature_columns_if_needed(self) -> None:
    _ORIGINAL["_set_signature_columns_if_needed"](self)
    if _is_rdpo(self):
        column = _knob(self.args, "rejected_images_column")
        if column not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, column]


def _patched_compute_loss(self, model, inputs, return_outputs):
    if not _is_rdpo(self):
        return _ORIGINAL["_compute_loss"](self, model, inputs, return_outputs)
    return _rdpo_compute_loss(self, model, inputs, return_outputs)


def _rdpo_compute_loss(self, model, inputs, return_outputs):
    """TRL's ``_compute_loss`` specialised to 3B-row batches ``[chosen; rejected; chosen on rejected image]``."""
    mode = "train" if self.model.training else "eval"
    args = self.args
    if inputs["input_ids"].size(0) % 3 != 0:
        raise ValueError(
            "loss_type='rdpo' expects batches of 3B sequences from DataCollatorForVisionRDPO; got "
            f"{inputs['input_ids'].size(0)} rows. A custom data_collator must build [chosen; rejected; chosen on "
            "rejected image]."
        )

    model_kwargs = {k: v for k, v in inputs.items() if k != "completion_mask"}
    model_kwargs["use_cache"] = False
    if self.aux_loss_enabled:
        model_kwargs["output_router_logits"] = True
    completion_mask = inputs["completion_mask"]
    shift_completion_mask = completion_mask[..., 1:]
    labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)

    # One policy forward over all 3B rows.
    outputs = model(**model_kwargs, labels=labels, fused_lm_head=True)
    seq_len = shift_completion_mask.size(1)
    per_token_logps = outputs.log_probs[:, -seq_len:]
    chosen_logps, rejected_logps, visual_logps = per_token_logps.sum(dim=1).chunk(3, dim=0)

    # One reference forward over all 3B rows (adapters disabled for PEFT without an explicit ref model).
    ref_model_kwargs = {k: v for k, v in model_kwargs.items() if k != "output_router_logits"}
    with torch.no_grad(), disable_gradient_checkpointing(self.model, args.gradient_checkpointing_kwargs):
        if self.ref_model is None:  # TRL only leaves it unset for PEFT models here
            unwrapped = self.accelerator.unwrap_model(self.model)
            with use_adapter(unwrapped, adapter_name="ref" if "ref" in unwrapped.peft_config else None):
                ref_outputs = self.model(**ref_model_kwargs, labels=labels, fused_lm_head=True)
        else:
            ref_outputs = self.ref_model(**ref_model_kwargs, labels=labels, fused_lm_head=True)
    ref_chosen_logps, ref_rejected_logps, ref_visual_logps = (
        ref_outputs.log_probs[:, -seq_len:].sum(dim=1).chunk(3, dim=0)
    )

    anchor_weight = _knob(args, "rdpo_anchor_weight")
    losses, metrics = rdpo_loss(
        chosen_logps, rejected_logps, visual_logps,
        ref_chosen_logps, ref_rejected_logps, ref_visual_logps,
        beta=self.beta,
        visual_weight=_knob(args, "rdpo_visual_weight"),
        anchor_weight=anchor_weight,
        anchor_margin=_knob(args, "rdpo_anchor_margin"),
    )
    loss = losses.mean() * self.loss_weights[0]

    if self.aux_loss_enabled:
        aux_loss = outputs.aux_loss
        loss = loss + self.router_aux_loss_coef * aux_loss
        self._metrics[mode]["aux_loss"].append(self.accelerator.gather_for_metrics(aux_loss).mean().item())

    _log_metrics(self, mode, inputs, outputs, shift_completion_mask, seq_len, metrics,
                 (chosen_logps, rejected_logps, visual_logps), anchor_weight != 0)

    if return_outputs:  # same (deprecated) contract as TRL: logits recomputed without the fused head
        with torch.no_grad():
            outputs = model(**model_kwargs)
    return (loss, outputs) if return_outputs else loss


def _log_metrics(self, mode, inputs, outputs, shift_completion_mask, seq_len, metrics, logps, log_anchor):
    """TRL's metric set (over the text pair) plus the visual ones, gathered across processes."""
    gather = self.accelerator.gather_for_metrics
    mask = shift_completion_mask
    chosen_mask, rejected_mask, _ = mask.chunk(3, dim=0)
    text_rows = chosen_mask.size(0) * 2  # TRL's entropy/logit/token metrics describe [chosen; rejected]
    text_mask = mask[:text_rows]

    # Token-level sums, one collective for all of them
    entropy = outputs.entropy[:text_rows, -seq_len:].detach()
    mean_logits = outputs.mean_logits[:, -seq_len:].detach()
    chosen_mean_logits, rejected_mean_logits, _ = mean_logits.chunk(3, dim=0)
    chosen_is_top1 = outputs.is_top1[:, -seq_len:].chunk(3, dim=0)[0]
    sums = torch.stack([
        (entropy * text_mask).sum().float(),
        text_mask.sum().float(),
        chosen_mean_logits[chosen_mask.bool()].sum().float(),
        chosen_mask.sum().float(),
        rejected_mean_logits[rejected_mask.bool()].sum().float(),
        rejected_mask.sum().float(),
        (chosen_is_top1 & chosen_mask.bool()).sum().float(),
        inputs["attention_mask"][:text_rows].sum().float(),
    ]).unsqueeze(0)
    (ent, n_tok, c_logit, n_c, r_logit, n_r, top1, attn) = gather(sums).sum(dim=0).tolist()
    m = self._metrics[mode]
    m["entropy"].append(ent / n_tok if n_tok > 0 else 0.0)
    if mode == "train":
        self._total_train_tokens += int(attn) // self._tp_size
    m["num_tokens"] = [self._total_train_tokens]
    m["logits/chosen"].append(c_logit / n_c if n_c > 0 else 0.0)
    m["logits/rejected"].append(r_logit / n_r if n_r > 0 else 0.0)
    m["mean_token_accuracy"].append(top1 / n_c if n_c > 0 else 0.0)

    # Per-example metrics, one collective for all of them
    per_example = dict(metrics)
    if not log_anchor:
        per_example.pop("loss/anchor")
    chosen_logps, rejected_logps, visual_logps = logps
    per_example["logps/chosen"] = chosen_logps.detach()
    per_example["logps/rejected"] = rejected_logps.detach()
    per_example["logps/visual_rejected"] = visual_logps.detach()
    names = list(per_example)
    stacked = torch.stack([per_example[k].float() for k in names], dim=1)  # (B, K)
    means = self.accelerator.gather(stacked).mean(dim=0).tolist()
    for name, value in zip(names, means):
        m[name].append(value)


_INIT_SIGNATURE = inspect.signature(DPOTrainer.__init__)
_WRAPPERS = {
    "__init__": _patched_init,
    "_set_signature_columns_if_needed": _patched_set_signature_columns_if_needed,
    "_compute_loss": _patched_compute_loss,
}


def patch_dpo_trainer() -> None:
    """Install the rdpo wrappers on ``trl.DPOTrainer`` (idempotent)."""
    if getattr(DPOTrainer, _PATCH_FLAG, False):
        return
    for name, wrapper in _WRAPPERS.items():
        original = DPOTrainer.__dict__[name]
        _ORIGINAL[name] = original
        functools.update_wrapper(wrapper, original, assigned=("__doc__", "__name__", "__qualname__"))
        wrapper.__wrapped__ = original
        setattr(DPOTrainer, name, wrapper)
    setattr(DPOTrainer, _PATCH_FLAG, True)
