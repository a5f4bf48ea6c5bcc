"""The one seam between ``realign_trl`` and TRL's internals.

TRL 1.16 has no plugin point for a DPO loss type (``DPOTrainer._compute_loss`` is one if/elif over loss names),
so rDPO is a subclass, :class:`realign_trl.trainer.RDPOTrainer`, that overrides the private methods TRL's loss
and column handling live in. Subclassing is what TRL documents for a custom loss; everything else realign_trl
reads from TRL (helpers that are not exported from ``trl``, attributes the trainer sets on itself, the fused
forward's output fields) is listed here, in :data:`INTERNALS`, and nowhere else.

This module is the only place that

* lists every TRL (and transformers/accelerate) internal realign_trl touches, with the TRL version it was read
  from and why it is needed (:data:`INTERNALS`; ``tests/test_trl_seam.py`` checks that the code touches no
  other private name);
* checks that they still have the shape we read (:func:`check_trl_shape`): one sentence naming what changed
  instead of a wrong loss or a traceback deep in the first step when TRL's pin is bumped;
* changes TRL at run time, explicitly, at ``import realign_trl`` (:func:`install`): the stock
  ``trl.DPOTrainer`` gets a ``__new__`` that builds an :class:`~realign_trl.trainer.RDPOTrainer` when the
  configuration asks for ``loss_type="rdpo"`` (or for precomputed reference log-probs on an image dataset,
  which TRL refuses). That is what keeps the user contract "``import realign_trl``, then the stock
  ``DPOConfig(loss_type="rdpo")`` and ``DPOTrainer``" working, with TRL's scripts and ``isinstance`` checks.
  Every other trainer is built by TRL exactly as without the plugin: no TRL method is wrapped;
* temporarily swaps TRL's model loader while the reference is skipped (:func:`reference_load_skipped`).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import re
from dataclasses import dataclass, fields, is_dataclass
from typing import Any

from ._compat import SUPPORTED_TRL, installed_trl_version

__all__ = [
    "INTERNALS",
    "Internal",
    "TRLShapeError",
    "check_trl_shape",
    "install",
    "installed",
    "reference_load_skipped",
    "PINNED_TRL",
]

#: The TRL release every entry of :data:`INTERNALS` was read from.
PINNED_TRL = "1.16.0"

_DPO = "trl.trainer.dpo_trainer"


class TRLShapeError(ImportError):
    """Raised when an internal realign_trl relies on is missing or has another shape in the installed TRL."""


@dataclass(frozen=True)
class Internal:
    """One internal of TRL (or of transformers/accelerate under it) that realign_trl touches.

    ``name`` is a dotted path: a module, then attributes (``trl.trainer.dpo_trainer.DPOTrainer._compute_loss``).
    ``kind`` says how it is checked: ``callable`` (exists, parameter names start with ``params``), ``fields``
    (a dataclass with at least ``params`` as fields), ``attribute`` (an instance attribute: the source of the
    callable ``set_in`` assigns ``self.<last part> =``), ``read`` (an attribute we set that the source of
    ``set_in`` reads), ``global`` (a module-level name that ``set_in``'s source calls, so replacing it in the
    module changes what ``set_in`` does).
    """

    name: str
    kind: str
    why: str
    params: tuple[str, ...] = ()
    set_in: str | None = None
    version: str = PINNED_TRL
    used_as: str = ""  # the text realign_trl's code uses it by, when not the last part of the name

    @property
    def attr(self) -> str:
        return self.name.rsplit(".", 1)[1]


INTERNALS: tuple[Internal, ...] = (
    # --- DPOTrainer methods RDPOTrainer overrides or calls ---
    Internal(
        f"{_DPO}.DPOTrainer.__init__",
        "callable",
        "RDPOTrainer and the stock-class __new__ bind the constructor's arguments by these names",
        ("self", "model", "ref_model", "args", "data_collator", "train_dataset", "eval_dataset", "processing_class"),
    ),
    Internal(
        f"{_DPO}.DPOTrainer._compute_loss",
        "callable",
        "the loss if/elif with no hook for a new loss type: RDPOTrainer overrides it for rdpo batches",
        ("self", "model", "inputs", "return_outputs"),
    ),
    Internal(
        f"{_DPO}.DPOTrainer._set_signature_columns_if_needed",
        "callable",
        "RDPOTrainer extends the kept columns with rejected_images (remove_unused_columns=True)",
        ("self",),
    ),
    Internal(
        f"{_DPO}.DPOTrainer.compute_ref_log_probs",
        "callable",
        "scores the reference once for TRL's own losses with precompute_ref_log_probs on image datasets",
        ("self", "model", "inputs"),
    ),
    Internal(
        "transformers.trainer.Trainer._prepare_inputs",
        "callable",
        "moves a precompute batch to the device exactly as a training step does (realign_trl.ref_logps)",
        ("self", "inputs"),
        version="transformers 5 under TRL 1.16",
    ),
    # --- attributes DPOTrainer.__init__ sets, read or updated by the rdpo loss ---
    Internal(
        f"{_DPO}.DPOTrainer._metrics",
        "attribute",
        "the rdpo loss logs TRL's metric set and its own",
        set_in=f"{_DPO}.DPOTrainer.__init__",
    ),
    Internal(
        f"{_DPO}.DPOTrainer._total_train_tokens",
        "attribute",
        "the num_tokens metric, as TRL counts it",
        set_in=f"{_DPO}.DPOTrainer.__init__",
    ),
    Internal(
        f"{_DPO}.DPOTrainer._tp_size",
        "attribute",
        "num_tokens is divided by the tensor-parallel size",
        set_in=f"{_DPO}.DPOTrainer.__init__",
    ),
    Internal(
        f"{_DPO}.DPOTrainer.loss_types",
        "attribute",
        "which trainers run the rdpo loss",
        set_in=f"{_DPO}.DPOTrainer.__init__",
    ),
    Internal(
        f"{_DPO}.DPOTrainer.precompute_ref_logps",
        "attribute",
        "the rdpo loss reads stored reference log-probs instead of running the reference",
        set_in=f"{_DPO}.DPOTrainer.__init__",
    ),
    Internal(
        f"{_DPO}.DPOTrainer.aux_loss_enabled",
        "attribute",
        "MoE router loss, added as TRL adds it",
        set_in=f"{_DPO}.DPOTrainer.__init__",
    ),
    Internal(
        f"{_DPO}.DPOTrainer._signature_columns",
        "attribute",
        "the column list extended for rejected_images",
        set_in=f"{_DPO}.DPOTrainer._set_signature_columns_if_needed",
    ),
    Internal(
        "accelerate.accelerator.Accelerator._models",
        "attribute",
        "a reference freed after precomputing is dropped from accelerate's list of prepared models",
        set_in="accelerate.accelerator.Accelerator.__init__",
        version="accelerate 1 under TRL 1.16",
    ),
    # --- module globals and helpers that trl does not export ---
    Internal(
        f"{_DPO}.create_model_from_path",
        "global",
        "skipped for the reference while TRL's __init__ runs when the reference is precomputed on images",
        set_in=f"{_DPO}.DPOTrainer.__init__",
    ),
    Internal(
        f"{_DPO}.DataCollatorForVisionPreference",
        "fields",
        "RDPO's collator subclasses it and copies its settings",
        ("processor", "max_length", "pad_to_multiple_of", "return_tensors"),
    ),
    Internal(
        f"{_DPO}.DataCollatorForVisionPreference.torch_call",
        "callable",
        "called for TRL's own losses when reference log-probs are attached",
        ("self", "examples"),
    ),
    Internal(
        "trl.trainer.utils.pad",
        "callable",
        "the rdpo collator pads as TRL's collator does",
        ("tensors", "padding_value", "padding_side"),
    ),
    Internal("trl.trainer.utils.flush_left", "callable", "the rdpo collator flushes left as TRL's does", ("mask",)),
    Internal(
        "trl.trainer.utils.use_adapter",
        "callable",
        "the reference forward of a PEFT model without a ref_model (TRL's 'ref' adapter)",
        ("model", "adapter_name"),
    ),
    Internal(
        "trl.trainer.utils.FusedCausalLMOutput",
        "fields",
        "the fused forward (fused_lm_head=True) gives per-token log-probs and TRL's metric inputs",
        ("log_probs", "entropy", "mean_logits", "is_top1", "aux_loss"),
        used_as="fused_lm_head=True",
    ),
    Internal(
        "trl.trainer.utils.add_fused_lm_head",
        "callable",
        "it sets forward on the model instance: the curriculum's frozen copy of the policy drops that forward",
        ("model",),
        used_as='__dict__.pop("forward"',
    ),
    Internal(
        "trl.models.utils.disable_gradient_checkpointing",
        "callable",
        "the reference forward runs without gradient checkpointing, as in TRL",
        ("model", "gradient_checkpointing_kwargs"),
    ),
    Internal(
        "trl.models.utils.unwrap_model_for_generation",
        "callable",
        "the hallucination-eval callback generates with the unwrapped policy",
        ("model", "accelerator"),
    ),
    Internal(
        "trl.cli.accelerate_config.resolve_accelerate_config_argument",
        "callable",
        "realign-trl dpo resolves --accelerate_config as trl dpo does",
        ("launch_args",),
    ),
    # --- under TRL: transformers config attributes without a public equivalent we can use ---
    Internal(
        "transformers.configuration_utils.PreTrainedConfig._attn_implementation",
        "attribute",
        "prefix sharing needs an attention implementation that takes a 4D mask (realign_trl.prefix_sharing)",
        set_in="transformers.configuration_utils.PreTrainedConfig",
        version="transformers 5 under TRL 1.16",
    ),
    Internal(
        "transformers.configuration_utils.PreTrainedConfig._name_or_path",
        "attribute",
        "the eval backend's default run name (the public name_or_path property would do: realign_trl/eval)",
        set_in="transformers.configuration_utils.PreTrainedConfig",
        version="transformers 5 under TRL 1.16",
    ),
    # --- outside TRL: what TRL's own dpo script does, repeated by realign_trl/scripts/dpo.py ---
    Internal(
        "torch.nn.parallel.DistributedDataParallel._ddp_params_and_buffers_to_ignore",
        "read",
        "--ignore_bias_buffers, as in TRL's script",
        set_in="torch.nn.parallel.DistributedDataParallel.__init__",
        version="torch 2 under TRL 1.16",
    ),
)


def _resolve(name: str) -> Any:
    """Import the longest importable module prefix of ``name``, then follow the attributes."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            obj = getattr(obj, part)
        return obj
    raise ImportError(name)


@functools.cache
def _source(name: str) -> str:
    return inspect.getsource(_resolve(name))


def _problem(item: Internal) -> str | None:
    """What is wrong with one internal in the installed TRL, or None."""
    if item.kind in ("attribute", "read"):
        owner = item.set_in
        try:
            source = _source(owner)
        except (AttributeError, ImportError, OSError, TypeError):
            return f"{owner} (where {item.name} is {'set' if item.kind == 'attribute' else 'read'}) is missing"
        if item.kind == "read":
            return None if item.attr in source else f"{owner} no longer reads {item.attr}"
        assigned = re.search(rf"self\.{item.attr}\s*[:=]", source)
        return None if assigned else f"{owner} no longer sets self.{item.attr}"
    try:
        obj = _resolve(item.name)
    except (AttributeError, ImportError):
        return f"{item.name} is missing"
    if item.kind == "global":
        try:
            source = _source(item.set_in)
        except (AttributeError, ImportError, OSError, TypeError):
            return f"{item.set_in} (which calls {item.name}) is missing"
        return None if f"{item.attr}(" in source else f"{item.set_in} no longer calls {item.attr}"
    if item.kind == "fields":
        names = {f.name for f in fields(obj)} if is_dataclass(obj) else set()
        missing = [p for p in item.params if p not in names]
        return f"{item.name} has no field {', '.join(missing)}" if missing else None
    params = tuple(inspect.signature(obj).parameters)
    if params[: len(item.params)] != item.params:
        return f"{item.name} takes ({', '.join(params)}) instead of ({', '.join(item.params)}, ...)"
    return None


_CHECKED: list[bool] = []


def check_trl_shape(internals: tuple[Internal, ...] = INTERNALS) -> None:
    """Raise :class:`TRLShapeError`, one sentence naming every internal that changed, if any did."""
    problems = [p for p in map(_problem, internals) if p]
    _source.cache_clear()  # the sources are only needed once
    if not problems and internals is INTERNALS:
        _CHECKED[:] = [True]
    if problems:
        raise TRLShapeError(
            f"realign_trl was written against TRL {PINNED_TRL} ({SUPPORTED_TRL}), but in the installed TRL "
            f"{installed_trl_version()} {'; '.join(problems)}: install 'trl{SUPPORTED_TRL}' or update "
            "realign_trl/trl_seam.py and the code that uses these internals."
        )


_CHOOSE: list = []  # the class chooser given to install() (realign_trl.trainer.trainer_class_for)


def _dpo_trainer_new(cls, *args: Any, **kwargs: Any):
    """``DPOTrainer.__new__`` after :func:`install`: an rdpo configuration builds an ``RDPOTrainer``."""
    return object.__new__(_CHOOSE[0](cls, args, kwargs))


_NEW = staticmethod(_dpo_trainer_new)


def installed() -> bool:
    """Whether :func:`install` has run in this process."""
    from trl.trainer.dpo_trainer import DPOTrainer

    return DPOTrainer.__dict__.get("__new__") is _NEW


def install(choose_class) -> None:
    """Check TRL's shape, then make the stock ``trl.DPOTrainer`` build an ``RDPOTrainer`` for rdpo (idempotent).

    The one change made to a TRL class: ``DPOTrainer.__new__`` (TRL defines none, so ``object.__new__`` ran
    before). It asks ``choose_class(cls, args, kwargs)`` (:func:`realign_trl.trainer.trainer_class_for`: the
    class from the constructor's ``args`` and ``train_dataset``); Python then runs that class's ``__init__``.
    """
    from trl.trainer.dpo_trainer import DPOTrainer

    if installed():
        return
    if not _CHECKED:
        check_trl_shape()
    if "__new__" in DPOTrainer.__dict__:
        raise TRLShapeError(
            f"TRL {installed_trl_version()} defines DPOTrainer.__new__, which realign_trl "
            f"{PINNED_TRL} replaces to register loss_type='rdpo': update realign_trl/trl_seam.py."
        )
    _CHOOSE[:] = [choose_class]
    DPOTrainer.__new__ = _NEW


@contextlib.contextmanager
def reference_load_skipped(trainer: Any):
    """While TRL's ``DPOTrainer.__init__`` runs, load the policy but not the reference.

    TRL loads the reference with the module-level ``create_model_from_path`` after ``Trainer.__init__``
    (which creates ``trainer.accelerator``); with the reference precomputed it is never used, so that call
    returns ``None`` instead of a second model.
    """
    module = importlib.import_module(_DPO)
    create = module.create_model_from_path

    def policy_only(path, **init_kwargs):
        return None if hasattr(trainer, "accelerator") else create(path, **init_kwargs)

    module.create_model_from_path = policy_only
    try:
        yield
    finally:
        module.create_model_from_path = create
