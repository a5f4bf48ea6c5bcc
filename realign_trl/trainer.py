"""The ``loss_type="rdpo"`` extension of TRL's ``DPOTrainer``: :class:`RDPOTrainer`.

TRL has no plugin hook for loss types (``DPOTrainer._compute_loss`` is one if/elif over loss names), so rDPO is a
subclass that overrides ``__init__``, ``_set_signature_columns_if_needed`` and ``_compute_loss``, as TRL suggests
for custom losses. Each override first asks "is this trainer using rdpo?" and otherwise runs TRL's method, so any
other loss type keeps TRL's exact behaviour.

``__init__`` also makes ``precompute_ref_log_probs=True`` work on image datasets, which TRL refuses (for rdpo and
TRL's own losses): it hides the flag from TRL's check and skips TRL's reference load, then scores the reference
once (:mod:`realign_trl.ref_logps`) and hands the stored log-probs to the loss through the collator.

Every TRL internal used here is listed and checked in :mod:`realign_trl.trl_seam`, which also makes the stock
``trl.DPOTrainer`` build this class for an rdpo configuration (:func:`trainer_class_for`).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
from typing import Any

import torch
from trl.models.utils import disable_gradient_checkpointing
from trl.trainer.dpo_trainer import DataCollatorForVisionPreference, DPOTrainer
from trl.trainer.utils import use_adapter

from . import prefix_sharing, ref_logps
from .batch_layouts import PackedLayout, ThreeRowLayout
from .collator import DataCollatorForVisionPreferenceWithRef, DataCollatorForVisionRDPO
from .config import RDPO_DEFAULTS
from .loss import rdpo_loss
from .trl_seam import reference_load_skipped

__all__ = ["RDPOTrainer", "RDPO_LOSS_TYPE", "trainer_class_for"]

RDPO_LOSS_TYPE = "rdpo"
BUILD_HINT = "`realign-data build --index coco ...`"
logger = logging.getLogger(__name__)


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
    if "sft" in loss_types and loss_types != [RDPO_LOSS_TYPE]:
        raise ValueError(
            f"loss_type='rdpo' cannot be combined with other loss types (got loss_type={loss_types}); for an SFT "
            "term on the chosen answer use loss_type='rdpo' with rdpo_sft_weight (Re-Align's sft_weight)."
        )
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


def _is_vision(dataset: Any) -> bool:
    if dataset is None or isinstance(dataset, str):
        return False
    try:
        columns = _columns(dataset)
    except (StopIteration, TypeError):
        return False
    return "images" in columns or "image" in columns


def trainer_class_for(cls: type, args: tuple, kwargs: dict) -> type:
    """The class a ``DPOTrainer(*args, **kwargs)`` call builds once :func:`realign_trl.trl_seam.install` ran.

    ``cls`` itself, unless the configuration needs :class:`RDPOTrainer` (``loss_type="rdpo"``, or
    ``precompute_ref_log_probs=True`` on an image dataset) and ``cls`` is not one: then ``RDPOTrainer`` for the
    stock class, and for a user's subclass of it a class deriving from both (the user's overrides first).
    """
    if issubclass(cls, RDPOTrainer):
        return cls
    try:
        bound = _INIT_SIGNATURE.bind(None, *args, **kwargs)
    except TypeError:  # not a constructor call (copy, unpickling): no swap
        return cls
    if not _needs_rdpo_trainer(bound.arguments.get("args"), bound.arguments.get("train_dataset")):
        return cls
    if cls is DPOTrainer:
        return RDPOTrainer
    if cls not in _MIXED:
        _MIXED[cls] = type(
            cls.__name__, (cls, RDPOTrainer), {"__module__": cls.__module__, "__qualname__": cls.__qualname__}
        )
    return _MIXED[cls]


_MIXED: dict[type, type] = {}


def _needs_rdpo_trainer(config: Any, train_dataset: Any) -> bool:
    if config is None:
        return False
    return RDPO_LOSS_TYPE in _loss_types(config) or bool(
        getattr(config, "precompute_ref_log_probs", False) and _is_vision(train_dataset)
    )


class RDPOTrainer(DPOTrainer):
    """TRL's ``DPOTrainer`` with ``loss_type="rdpo"``.

    Overrides three methods (the TRL internals are listed in :mod:`realign_trl.trl_seam`):

    * ``__init__``: validates an rdpo configuration and dataset up front, then swaps TRL's default vision
      collator for :class:`~realign_trl.collator.DataCollatorForVisionRDPO` (packed prefix-sharing layout where
      exact); with ``precompute_ref_log_probs=True`` on images, scores the reference once (TRL refuses that).
    * ``_set_signature_columns_if_needed``: keeps the rejected-images column through ``remove_unused_columns``.
    * ``_compute_loss``: runs the rdpo loss; any other loss type is TRL's own method.

    After ``import realign_trl`` the stock ``trl.DPOTrainer`` builds this class by itself when the config asks for
    rdpo, so ``DPOTrainer(args=DPOConfig(loss_type="rdpo"), ...)`` and ``RDPOTrainer(...)`` are the same.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        bound = _INIT_SIGNATURE.bind(self, *args, **kwargs)
        config = bound.arguments.get("args")
        rdpo = config is not None and RDPO_LOSS_TYPE in _loss_types(config)
        column = _knob(config, "rejected_images_column") if rdpo else None
        if rdpo:
            validate_rdpo_args(config)
            validate_rdpo_dataset(bound.arguments.get("train_dataset"), column, "train")
            validate_rdpo_dataset(bound.arguments.get("eval_dataset"), column, "eval")
        # TRL refuses precompute_ref_log_probs on image datasets; realign_trl.ref_logps does it instead (after init)
        precompute = (
            config is not None
            and getattr(config, "precompute_ref_log_probs", False)
            and _is_vision(bound.arguments.get("train_dataset"))
        )
        if precompute:
            ref_logps.validate(config, bound.arguments.get("train_dataset"), bound.arguments.get("eval_dataset"))
            config.precompute_ref_log_probs = False
            try:
                with reference_load_skipped(self):
                    super().__init__(*args, **kwargs)
            finally:
                config.precompute_ref_log_probs = True
        else:
            super().__init__(*args, **kwargs)
        custom_collator = bound.arguments.get("data_collator") is not None
        if rdpo and not custom_collator and type(self.data_collator) is DataCollatorForVisionPreference:
            collator = self.data_collator
            self.data_collator = DataCollatorForVisionRDPO(
                processor=collator.processor,
                max_length=collator.max_length,
                pad_to_multiple_of=collator.pad_to_multiple_of,
                rejected_images_column=column,
            )
        if (
            rdpo
            and isinstance(self.data_collator, DataCollatorForVisionPreference)
            and hasattr(self.data_collator, "prefix_sharing")
        ):
            share, why = prefix_sharing.decide(self.model.config, _knob(config, "rdpo_prefix_sharing"))
            self.data_collator.prefix_sharing = share
            logger.info(
                "rDPO: %s (%s).",
                "prefix sharing on, 2B rows per batch" if share else "prefix sharing off, 3B rows per batch",
                why,
            )
        if rdpo:
            self.model.add_model_tags(["rdpo", "re-align"])
        if precompute:
            _precompute_reference(self, rdpo, custom_collator)

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        extra = list(getattr(self, "_realign_ref_columns", ()))
        if _is_rdpo(self):
            extra.append(_knob(self.args, "rejected_images_column"))
        missing = [c for c in extra if c not in self._signature_columns]
        if missing:
            self._signature_columns = [*self._signature_columns, *missing]

    def _compute_loss(self, model, inputs, return_outputs):
        if not _is_rdpo(self):
            return super()._compute_loss(model, inputs, return_outputs)
        return _rdpo_compute_loss(self, model, inputs, return_outputs)


def _precompute_reference(self, rdpo: bool, custom_collator: bool) -> None:
    """One pass of the reference over the train/eval datasets; afterwards no reference is kept or run."""
    if self.is_deepspeed_enabled or self.is_fsdp_enabled:
        raise ValueError(
            "precompute_ref_log_probs=True on an image dataset is not supported with DeepSpeed or FSDP "
            "(the reference is scored before the model is sharded); use DDP (torchrun) or set "
            "precompute_ref_log_probs=False."
        )
    collator = self.data_collator
    if not rdpo and type(collator) is DataCollatorForVisionPreference and not custom_collator:
        collator = self.data_collator = DataCollatorForVisionPreferenceWithRef(
            processor=collator.processor, max_length=collator.max_length, pad_to_multiple_of=collator.pad_to_multiple_of
        )
    if not hasattr(collator, "ref_logps_columns"):
        raise ValueError(
            f"precompute_ref_log_probs=True on an image dataset needs the default data collator (got "
            f"{type(collator).__name__}); leave data_collator unset or set precompute_ref_log_probs=False."
        )
    self.precompute_ref_logps = True
    unwrapped = self.accelerator.unwrap_model(self.ref_model if self.ref_model is not None else self.model)
    score = _score_rdpo if rdpo else _score_pair
    args = self.args

    def run(dataset, name, batch_size):
        return ref_logps.precompute(
            self,
            dataset,
            name,
            args.precompute_ref_batch_size or batch_size,
            rdpo,
            unwrapped,
            functools.partial(score, self),
        )

    self.train_dataset = run(self.train_dataset, "train", args.per_device_train_batch_size)
    if isinstance(self.eval_dataset, dict):
        self.eval_dataset = {k: run(v, k, args.per_device_eval_batch_size) for k, v in self.eval_dataset.items()}
    elif self.eval_dataset is not None:
        self.eval_dataset = run(self.eval_dataset, "eval", args.per_device_eval_batch_size)
    collator.ref_logps_columns = ref_logps.ref_columns(rdpo)
    self._realign_ref_columns = collator.ref_logps_columns
    if self.ref_model is not None:  # an explicit reference is no longer needed: free it (accelerate keeps a list)
        prepared = getattr(self.accelerator, "_models", [])
        prepared[:] = [m for m in prepared if m is not self.ref_model]
        self.ref_model = None


def _score_pair(self, model, batch):
    return torch.stack(self.compute_ref_log_probs(model, batch), dim=1)


def _score_rdpo(self, model, batch):
    layout = PackedLayout(batch) if "rdpo_segments" in batch else ThreeRowLayout(batch)
    model_kwargs = layout.model_kwargs(model)
    model_kwargs["use_cache"] = False
    return torch.stack(_reference_logps(self, layout, model_kwargs), dim=1)


def _rdpo_compute_loss(self, model, inputs, return_outputs):
    """TRL's ``_compute_loss`` for rdpo batches: 3B rows ``[chosen; rejected; chosen on rejected image]``, or
    the 2B-row prefix-sharing layout (``rdpo_segments`` present)."""
    mode = "train" if self.model.training else "eval"
    args = self.args
    layout = PackedLayout(inputs) if "rdpo_segments" in inputs else ThreeRowLayout(inputs)

    # DDP/FSDP wrappers hide the config: the layout reads it from the unwrapped model.
    model_kwargs = layout.model_kwargs(self.accelerator.unwrap_model(model))
    model_kwargs["use_cache"] = False
    if self.aux_loss_enabled:
        model_kwargs["output_router_logits"] = True

    # One policy forward over all rows.
    outputs = model(**model_kwargs, **layout.label_kwargs, fused_lm_head=True)
    chosen_logps, rejected_logps, visual_logps = layout.sequence_logps(outputs.log_probs)

    if self.precompute_ref_logps:  # computed once before training (realign_trl.ref_logps)
        missing = [c for c in ref_logps.RDPO_COLUMNS if c not in inputs]
        if missing:
            raise ValueError(
                f"precompute_ref_log_probs=True, but the batch has no {missing}: a custom data_collator "
                "must pass the precomputed reference log-prob columns on."
            )
        ref_chosen_logps, ref_rejected_logps, ref_visual_logps = (inputs[c] for c in ref_logps.RDPO_COLUMNS)
    else:
        ref_chosen_logps, ref_rejected_logps, ref_visual_logps = _reference_logps(self, layout, model_kwargs)

    anchor_weight = _knob(args, "rdpo_anchor_weight")
    losses, metrics = rdpo_loss(
        chosen_logps,
        rejected_logps,
        visual_logps,
        ref_chosen_logps,
        ref_rejected_logps,
        ref_visual_logps,
        beta=self.beta,
        visual_weight=_knob(args, "rdpo_visual_weight"),
        anchor_weight=anchor_weight,
        anchor_margin=_knob(args, "rdpo_anchor_margin"),
    )
    loss = losses.mean() * self.loss_weights[0]

    sft_weight = _knob(args, "rdpo_sft_weight")
    if sft_weight != 0:  # Re-Align's sft_weight: mean token NLL of the chosen answer on the original image
        chosen_tokens = layout.chosen_mask
        sft_loss = -(outputs.log_probs[layout.chosen_rows] * chosen_tokens).sum() / chosen_tokens.sum().clamp(min=1)
        loss = loss + sft_weight * sft_loss
        self._metrics[mode]["loss/sft"].append(self.accelerator.gather_for_metrics(sft_loss.detach()).mean().item())

    if self.aux_loss_enabled:
        aux_loss = outputs.aux_loss
        loss = loss + self.router_aux_loss_coef * aux_loss
        self._metrics[mode]["aux_loss"].append(self.accelerator.gather_for_metrics(aux_loss).mean().item())

    _log_metrics(self, mode, layout, outputs, metrics, (chosen_logps, rejected_logps, visual_logps), anchor_weight != 0)

    if return_outputs:  # same (deprecated) contract as TRL: logits recomputed without the fused head
        with torch.no_grad():
            outputs = model(**model_kwargs)
    return (loss, outputs) if return_outputs else loss


def _reference_logps(self, layout, model_kwargs):
    """One reference forward over all rows (adapters disabled for PEFT without an explicit ref model; before
    training, with ``precompute_ref_log_probs`` and neither, the policy itself is the reference)."""
    ref_model_kwargs = {k: v for k, v in model_kwargs.items() if k != "output_router_logits"}
    with torch.no_grad(), disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs):
        if self.ref_model is None:
            unwrapped = self.accelerator.unwrap_model(self.model)
            peft = getattr(unwrapped, "peft_config", None)
            adapter = (
                use_adapter(unwrapped, adapter_name="ref" if "ref" in peft else None)
                if peft is not None
                else contextlib.nullcontext()
            )
            with adapter:
                ref_outputs = self.model(**ref_model_kwargs, **layout.label_kwargs, fused_lm_head=True)
        else:
            ref_model_kwargs.update(layout.model_kwargs(self.accelerator.unwrap_model(self.ref_model), masks_only=True))
            ref_outputs = self.ref_model(**ref_model_kwargs, **layout.label_kwargs, fused_lm_head=True)
    return layout.sequence_logps(ref_outputs.log_probs)


def _log_metrics(self, mode, layout, outputs, metrics, logps, log_anchor):
    """TRL's metric set (over the text pair) plus the visual ones, gathered across processes."""
    gather = self.accelerator.gather_for_metrics
    chosen_mask, rejected_mask = layout.chosen_mask, layout.rejected_mask
    width = chosen_mask.size(1)

    def rows(values, which):  # the per-token outputs of the chosen or rejected rows, aligned with the masks
        return values[which, -width:].detach()

    entropy_sum = (rows(outputs.entropy, layout.chosen_rows) * chosen_mask).sum() + (
        rows(outputs.entropy, layout.rejected_rows) * rejected_mask
    ).sum()
    sums = torch.stack(
        [
            entropy_sum.float(),
            (chosen_mask.sum() + rejected_mask.sum()).float(),
            rows(outputs.mean_logits, layout.chosen_rows)[chosen_mask.bool()].sum().float(),
            chosen_mask.sum().float(),
            rows(outputs.mean_logits, layout.rejected_rows)[rejected_mask.bool()].sum().float(),
            rejected_mask.sum().float(),
            (rows(outputs.is_top1, layout.chosen_rows) & chosen_mask.bool()).sum().float(),
            layout.text_tokens.float(),
        ]
    ).unsqueeze(0)
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
