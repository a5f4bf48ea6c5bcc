"""Easy-to-hard curriculum training (MFPO's schedule) with the stock ``trl.DPOTrainer``.

:func:`train_curriculum` trains on the ``easy``, then ``medium``, then ``hard`` split of a dataset. Each stage
is one ordinary ``DPOTrainer`` (so any ``loss_type`` works, ``rdpo`` included) built on the *same model
object*, so a stage starts from the weights the previous stage ended with. :func:`curriculum_splits` finds
the splits: those of a ``realign-data build --curriculum easy-to-hard`` ``DatasetDict`` as they are, or the
terciles of a ``difficulty`` column.

Reference model (``reference=``, ``RDPOConfig.curriculum_reference``):

* ``"fixed"`` (default): every stage is scored against the *initial* policy. An explicit ``ref_model`` is
  kept for all stages; without one and without PEFT, the reference TRL builds for stage 1 (a frozen copy of
  the initial model) is reused; with PEFT and a fresh adapter, the base model (adapters disabled) is the
  reference, which is the initial policy by construction.
* ``"refresh"``: at the start of every stage the reference becomes a frozen copy of the current policy. The
  first stage uses what ``"fixed"`` would. Full fine-tuning: a deep copy of the policy (one extra model in
  memory, as with any DPO reference). PEFT: TRL's own ``"ref"`` adapter, a copy of the current adapter, so no
  second model is needed.

Each stage gets its own optimizer and learning-rate schedule (warm-up and decay restart per stage);
``max_steps`` and ``num_train_epochs`` apply per stage.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path
from typing import Any, Sequence

from realign_data.building.difficulty import SPLITS, tercile_splits
from realign_data.runtime.atomic import atomic_write_json
from realign_trl.config import CURRICULA, REFERENCE_POLICIES

__all__ = [
    "CURRICULA",
    "REFERENCE_POLICIES",
    "CurriculumResult",
    "curriculum_splits",
    "train_curriculum",
    "check_curriculum_args",
    "format_curriculum_table",
]

METRICS_FILE = "curriculum_metrics.json"
BUILD_HINT = "`realign-data build ... --curriculum easy-to-hard`"
#: Metrics shown by :func:`format_curriculum_table` when a stage logged them (stage means).
SUMMARY_METRICS = (
    "loss",
    "rewards/margins",
    "rewards/accuracies",
    "rewards/visual_margins",
    "rewards/visual_accuracies",
)


def _columns(dataset: Any) -> list[str] | None:
    columns = getattr(dataset, "column_names", None)
    return list(columns) if isinstance(columns, (list, tuple)) else None


def curriculum_splits(
    dataset: Any, difficulty_column: str = "difficulty", *, train_split: str = "train", stages: Sequence[str] = SPLITS
) -> dict[str, Any]:
    """The curriculum splits of ``dataset``, easiest first: ``{"easy": ds, "medium": ds, "hard": ds}``.

    * A ``DatasetDict`` (or dict) holding every split named in ``stages`` (as ``realign-data build
      --curriculum easy-to-hard`` writes) is used as is.
    * Otherwise the rows of ``dataset`` (a ``Dataset``, or the ``train_split`` of a ``DatasetDict``) are cut
      into easy / medium / hard terciles of ``difficulty_column`` (higher = harder; ties broken by the ``id``
      column when there is one, else by row order), with :func:`realign_data.building.difficulty.tercile_splits`.
      Within a split the rows keep increasing difficulty.

    Raises ``ValueError`` naming the column and the build command when neither is available.
    """
    stages = tuple(stages)
    if isinstance(dataset, dict):  # DatasetDict is a dict
        if stages and all(s in dataset for s in stages):
            return {s: dataset[s] for s in stages}
        if train_split not in dataset:
            raise ValueError(
                f"The dataset has neither the curriculum splits {', '.join(stages)} nor a {train_split!r} split with "
                f"a '{difficulty_column}' column (splits: {', '.join(map(str, dataset))}). Build one with "
                f"{BUILD_HINT}."
            )
        source, label = dataset[train_split], f"its {train_split!r} split"
    else:
        source, label = dataset, "it"
    columns = _columns(source)
    if columns is None:
        raise ValueError(
            f"Cannot compute difficulty terciles of a streaming/iterable dataset; pass a DatasetDict with "
            f"{', '.join(stages)} splits (as written by {BUILD_HINT}) or a map-style Dataset."
        )
    if difficulty_column not in columns:
        raise ValueError(
            f"A curriculum needs the splits {', '.join(stages)} or a '{difficulty_column}' column to rank rows by, but "
            f"the dataset has no such splits and {label} has only the columns {columns}. Build one with {BUILD_HINT} "
            f"(every realign-data build has 'difficulty'), or set difficulty_column to a per-row score (higher = "
            "harder)."
        )
    difficulties = [float(d) for d in source[difficulty_column]]
    bad = [i for i, d in enumerate(difficulties) if math.isnan(d)]
    if bad:
        raise ValueError(f"Column '{difficulty_column}' has NaN in rows {bad[:5]}; every row needs a difficulty.")
    width = len(str(len(difficulties)))
    ids = [str(v) for v in source["id"]] if "id" in columns else [f"{i:0{width}d}" for i in range(len(source))]
    index = tercile_splits(difficulties, ids)
    unknown = [s for s in stages if s not in index]
    if unknown:
        raise ValueError(f"Unknown curriculum stage(s) {unknown}; difficulty terciles are {', '.join(SPLITS)}.")
    return {s: source.select(index[s]) for s in stages}


@dataclasses.dataclass
class CurriculumResult:
    """What :func:`train_curriculum` returns.

    Attributes:
        stages: one dict per stage, in training order (the content of ``curriculum_metrics.json``'s
            ``stages``): ``stage`` (1-based), ``name``, ``rows``, ``output_dir``, ``global_step``,
            ``reference`` (what the stage was scored against), ``train`` (``trainer.train()``'s metrics),
            ``mean`` and ``last`` (mean and last value of every logged training metric) and ``log_history``.
        trainer: the last stage's ``DPOTrainer``; ``trainer.model`` is the final policy (save it with
            ``trainer.save_model()``).
    """

    stages: list[dict]
    trainer: Any

    @property
    def model(self):
        return self.trainer.model


def _stage_summary(log_history: list[dict]) -> tuple[dict, dict]:
    train_logs = [h for h in log_history if "loss" in h and "train_runtime" not in h]
    mean, last = {}, {}
    for key in dict.fromkeys(k for h in train_logs for k in h):
        values = [h[key] for h in train_logs if isinstance(h.get(key), (int, float)) and not isinstance(h[key], bool)]
        if values and key not in ("step", "epoch"):
            mean[key] = sum(values) / len(values)
    if train_logs:
        last = {k: v for k, v in train_logs[-1].items() if isinstance(v, (int, float))}
    return mean, last


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _frozen_copy(model):
    """A frozen, eval-mode deep copy of ``model`` to serve as a reference."""
    ref = copy.deepcopy(model)
    # TRL's fused LM head patches ``forward`` on the instance; its closure still points at the source model, so
    # drop it (TRL patches the reference again when the next trainer is built).
    ref.__dict__.pop("forward", None)
    ref.eval()
    ref.requires_grad_(False)
    return ref


def _free_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _ref_adapter_state(model) -> dict | None:
    if "ref" not in getattr(model, "peft_config", {}):
        return None
    return {n: p.detach().clone() for n, p in model.named_parameters() if ".ref." in n}


def check_curriculum_args(args: Any, *, script: bool = False) -> None:
    """Reject training options a curriculum does not support, with the reason and the fix."""
    if getattr(args, "precompute_ref_log_probs", False):
        raise ValueError(
            "precompute_ref_log_probs=True is not supported with a curriculum: the reference log-probs "
            "would have to be recomputed per stage. Set precompute_ref_log_probs=False."
        )
    if getattr(args, "sync_ref_model", False):
        raise ValueError(
            "sync_ref_model=True is not supported with a curriculum, which manages the reference "
            "itself (curriculum_reference='fixed' or 'refresh'). Set sync_ref_model=False."
        )
    if getattr(args, "push_to_hub", False):
        raise ValueError(
            "push_to_hub=True is not supported with a curriculum (every stage would push under its stage "
            "directory's name); upload the final model afterwards, e.g. `hf upload REPO OUTPUT_DIR`."
        )
    if script and getattr(args, "resume_from_checkpoint", None):
        raise ValueError(
            "resume_from_checkpoint is not supported with a curriculum; each stage keeps its own "
            "checkpoints in <output_dir>/stage-<i>-<name>."
        )


def train_curriculum(
    model: Any,
    args: Any,
    dataset: Any,
    processing_class: Any = None,
    *,
    ref_model: Any = None,
    peft_config: Any = None,
    stages: Sequence[str] = SPLITS,
    reference: str | None = None,
    difficulty_column: str = "difficulty",
    train_split: str = "train",
    eval_dataset: Any = None,
    callbacks: list | None = None,
    quantization_config: Any = None,
    trainer_cls: Any = None,
    **trainer_kwargs: Any,
) -> CurriculumResult:
    """Train ``model`` on the curriculum splits of ``dataset`` in order, one ``DPOTrainer`` per stage.

    Args:
        model: a model id/path (loaded once, by the first stage's trainer) or a model instance; every stage trains
            the same object, so stage ``i + 1`` starts from stage ``i``'s final weights.
        args: a ``DPOConfig``/``RDPOConfig``; each stage uses a copy with ``output_dir`` set to
            ``<output_dir>/stage-<i>-<name>``. ``max_steps``/``num_train_epochs`` and the learning-rate schedule
            (warm-up included) apply per stage; the optimizer is rebuilt per stage.
        dataset: anything :func:`curriculum_splits` accepts (``DatasetDict`` with easy/medium/hard splits, or rows
            with a ``difficulty`` column).
        processing_class, ref_model, peft_config, quantization_config, eval_dataset, callbacks, **trainer_kwargs:
            as for ``DPOTrainer``; ``eval_dataset`` is the same for every stage.
        stages: split names in training order (default easy, medium, hard).
        reference: ``"fixed"`` (reference = initial policy throughout) or ``"refresh"`` (reference = frozen copy of
            the policy at the start of each stage); default ``args.curriculum_reference`` or ``"fixed"``.
        trainer_cls: the trainer class (default ``trl.DPOTrainer``, which builds an ``RDPOTrainer`` for rdpo).

    Per-stage metrics are returned and written (atomically, after every stage) to
    ``<output_dir>/curriculum_metrics.json``.
    """
    import realign_trl

    realign_trl.register()
    from accelerate.utils import is_peft_model
    from trl import DPOTrainer

    trainer_cls = trainer_cls or DPOTrainer
    reference = reference or getattr(args, "curriculum_reference", None) or "fixed"
    if reference not in REFERENCE_POLICIES:
        raise ValueError(
            f"reference={reference!r} is not a curriculum reference policy; use one of {', '.join(REFERENCE_POLICIES)}."
        )
    stages = tuple(stages)
    if not stages:
        raise ValueError("A curriculum needs at least one stage (e.g. stages=('easy', 'medium', 'hard')).")
    check_curriculum_args(args)
    splits = curriculum_splits(dataset, difficulty_column, train_split=train_split, stages=stages)

    root = Path(args.output_dir)
    results: list[dict] = []
    trainer = None
    fixed_ref = ref_model  # non-PEFT "fixed" reference, once known
    fixed_ref_adapter: dict | None = None  # PEFT "fixed" reference held in a "ref" adapter, if any
    for i, name in enumerate(stages, start=1):
        stage_args = copy.copy(args)
        stage_args.output_dir = str(root / f"stage-{i}-{name}")
        kwargs: dict[str, Any] = dict(
            args=stage_args,
            train_dataset=splits[name],
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            callbacks=callbacks,
            **trainer_kwargs,
        )
        if trainer is None:  # stage 1: exactly what a single DPOTrainer run would do
            kwargs.update(
                model=model, ref_model=ref_model, peft_config=peft_config, quantization_config=quantization_config
            )
        else:
            policy = trainer.model
            stage_args.model_init_kwargs = None  # the model is an instance from here on
            kwargs.update(model=policy, processing_class=trainer.processing_class)
            if is_peft_model(policy):
                # TRL gives a PeftModel without ref_model a "ref" adapter copied from the current adapter; drop the
                # previous stage's first, so that it can (refresh) or so that we can restore the fixed one.
                if "ref" in policy.peft_config:
                    policy.delete_adapter("ref")
                kwargs["ref_model"] = ref_model if (reference == "fixed" and ref_model is not None) else None
            elif reference == "fixed":
                kwargs["ref_model"] = fixed_ref
            else:
                trainer.ref_model = None  # release the previous stage's reference before copying
                kwargs["ref_model"] = _frozen_copy(trainer.accelerator.unwrap_model(policy))
            del policy
            trainer = None  # the previous stage's optimizer state (and refreshed reference) can go
            _free_memory()
        trainer = trainer_cls(**kwargs)
        model_is_peft = is_peft_model(trainer.model)
        if i == 1:
            if model_is_peft:
                fixed_ref_adapter = _ref_adapter_state(trainer.model) if ref_model is None else None
            elif fixed_ref is None and trainer.ref_model is not None:
                fixed_ref = trainer.accelerator.unwrap_model(trainer.ref_model)
        elif model_is_peft and reference == "fixed" and ref_model is None:
            if fixed_ref_adapter is None:  # reference = adapters disabled (base model), as in stage 1
                if "ref" in trainer.model.peft_config:
                    trainer.model.delete_adapter("ref")
            else:  # reference = stage 1's "ref" adapter (a pretrained adapter's initial weights)
                params = dict(trainer.model.named_parameters())
                for n, value in fixed_ref_adapter.items():
                    params[n].data.copy_(value)
        ref_desc = _describe_reference(trainer, i, reference, ref_model is not None)

        output = trainer.train()
        mean, last = _stage_summary(trainer.state.log_history)
        results.append(
            {
                "stage": i,
                "name": name,
                "rows": len(splits[name]),
                "output_dir": stage_args.output_dir,
                "global_step": trainer.state.global_step,
                "reference": ref_desc,
                "train": dict(output.metrics),
                "mean": mean,
                "last": last,
                "log_history": list(trainer.state.log_history),
            }
        )
        if trainer.is_world_process_zero():
            root.mkdir(parents=True, exist_ok=True)
            atomic_write_json(
                root / METRICS_FILE,
                _json_safe(
                    {
                        "curriculum": [*stages],
                        "reference": reference,
                        "loss_type": getattr(args, "loss_type", None),
                        "stages": results,
                    }
                ),
            )
    return CurriculumResult(stages=results, trainer=trainer)


def _describe_reference(trainer, stage: int, reference: str, explicit: bool) -> str:
    from accelerate.utils import is_peft_model

    if stage == 1 or reference == "fixed":
        if explicit:
            return "explicit ref_model"
        if is_peft_model(trainer.model):
            if "ref" in trainer.model.peft_config:
                return "initial adapter ('ref' adapter)"
            return "initial policy (adapters disabled)"
        return "initial policy (frozen copy)"
    if is_peft_model(trainer.model):
        return f"policy after stage {stage - 1} ('ref' adapter)"
    return f"policy after stage {stage - 1} (frozen copy)"


def format_curriculum_table(stages: list[dict], metrics: Sequence[str] = SUMMARY_METRICS) -> str:
    """A plain-text table of per-stage results: rows, steps and the stage mean of each metric logged."""
    shown = [m for m in metrics if any(m in s.get("mean", {}) for s in stages)]
    header = ["stage", "rows", "steps", *shown]
    rows = []
    for s in stages:
        cells = [f"{s['stage']} {s['name']}", str(s["rows"]), str(s["global_step"])]
        for m in shown:
            v = s.get("mean", {}).get(m)
            cells.append("-" if v is None else f"{v:.4f}")
        rows.append(cells)
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])
