"""``RDPOConfig``: TRL's ``DPOConfig`` plus the few knobs rDPO adds.

A subclass rather than new fields on ``DPOConfig`` so that TRL's own ``TrlParser`` turns the knobs into
command-line flags and YAML keys with no extra code, and so that a plain ``DPOConfig`` stays untouched (with
it, ``loss_type="rdpo"`` uses the defaults below).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from trl import DPOConfig

from realign_trl.eval.config import EvalConfig, too_small, training_fields

__all__ = ["RDPOConfig", "RDPO_DEFAULTS"]

#: Values of ``RDPOConfig.curriculum`` and ``curriculum_reference`` (mirrored in ``realign_trl.curriculum``,
#: which imports ``realign_data``; kept here so the config stays import-light).
CURRICULA = ("easy-to-hard",)
REFERENCE_POLICIES = ("fixed", "refresh")

#: Values used when ``loss_type="rdpo"`` is given through a plain ``DPOConfig``.
RDPO_DEFAULTS = {
    "rdpo_visual_weight": 1.0,
    "rdpo_anchor_weight": 0.0,
    "rdpo_anchor_margin": 0.0,
    "rdpo_sft_weight": 0.0,
    "rdpo_prefix_sharing": "auto",
    "rejected_images_column": "rejected_images",
}

#: Values of ``RDPOConfig.rdpo_prefix_sharing`` (mirrors ``realign_trl.prefix_sharing.MODES``, which imports torch).
PREFIX_SHARING_MODES = ("auto", "on", "off")


@dataclass
@training_fields  # hallucination_eval, hallucination_eval_steps, ... from EvalConfig (one list)
class RDPOConfig(DPOConfig):
    r"""Configuration for rDPO training with the stock ``trl.DPOTrainer`` (after ``import realign_trl``).

    Set ``loss_type="rdpo"``; every other ``DPOConfig`` argument keeps its meaning. With another loss type
    these fields are ignored.

    Parameters:
        rdpo_visual_weight (`float`, *optional*, defaults to `1.0`):
            Weight of the visual preference term ``-logsigmoid(r(y_w|x,m) - r(y_w|x,m_r))``. Re-Align uses 1.0;
            0.0 reduces rDPO to sigmoid DPO (while still paying for the third sequence).
        rdpo_anchor_weight (`float`, *optional*, defaults to `0.0`):
            Weight of the anchor ``-logsigmoid(r(y_w|x,m) - rdpo_anchor_margin)``. 1.0 gives mDPO, and MFPO
            together with ``rdpo_anchor_margin``.
        rdpo_anchor_margin (`float`, *optional*, defaults to `0.0`):
            Margin ``eta`` of the anchor (MFPO's margin term; mDPO uses 0).
        rdpo_sft_weight (`float`, *optional*, defaults to `0.0`):
            Weight of an SFT term, the mean token NLL of the chosen answer on the original image over the batch,
            added to the rDPO loss and logged as ``loss/sft`` (Re-Align's ``sft_weight``; 0 leaves the loss
            untouched).
        rdpo_prefix_sharing (`str`, *optional*, defaults to `"auto"`):
            ``"auto"`` scores the chosen and rejected answers in one packed row that computes the image and prompt
            once, where that is exact (LLaVA, LLaVA-NeXT, Gemma 3 with sdpa or eager attention), and uses three
            separate rows elsewhere; ``"on"`` requires the packed layout, ``"off"`` never uses it.
        rejected_images_column (`str`, *optional*, defaults to `"rejected_images"`):
            Dataset column holding the rejected (retrieved) images, parallel to ``images``.
        ref_logps_cache_dir (`str` or `None`, *optional*, defaults to `None`):
            With ``precompute_ref_log_probs=True`` on an image dataset: directory of the side files that keep the
            precomputed reference log-probs for reuse by later runs, resumes and other processes (default
            ``$REALIGN_HOME/ref_logps``, i.e. ``~/.cache/realign/ref_logps``; see ``docs/training.md``).
        curriculum (`str` or `None`, *optional*, defaults to `None`):
            ``"easy-to-hard"`` trains on the ``easy``, ``medium`` and ``hard`` splits in turn, each stage starting
            from the previous stage's weights (``realign-trl dpo`` and :func:`realign_trl.train_curriculum`; see
            ``docs/training.md``). Works with any ``loss_type``. ``None`` trains on the train split at once.
        curriculum_reference (`str`, *optional*, defaults to `"fixed"`):
            Reference model of a curriculum: ``"fixed"`` (the initial policy for every stage) or ``"refresh"``
            (a frozen copy of the policy at the start of each stage).
        hallucination_eval... : the training evaluation's settings, one field per :class:`~realign_trl.eval.EvalConfig`
            setting that training takes (listed below, generated from that class by
            :func:`realign_trl.eval.config.training_fields`); :meth:`eval_config` returns them as an ``EvalConfig``.
    """

    rdpo_visual_weight: float = field(
        default=RDPO_DEFAULTS["rdpo_visual_weight"],
        metadata={
            "help": "rDPO: weight of the visual preference term (chosen answer on original vs rejected "
            "image). Re-Align uses 1.0."
        },
    )
    rdpo_anchor_weight: float = field(
        default=RDPO_DEFAULTS["rdpo_anchor_weight"],
        metadata={
            "help": "rDPO: weight of the anchor term -logsigmoid(r_chosen - rdpo_anchor_margin). 1.0 gives "
            "mDPO (margin 0) or MFPO's margin term."
        },
    )
    rdpo_anchor_margin: float = field(
        default=RDPO_DEFAULTS["rdpo_anchor_margin"],
        metadata={"help": "rDPO: margin eta of the anchor term (MFPO)."},
    )
    rdpo_sft_weight: float = field(
        default=RDPO_DEFAULTS["rdpo_sft_weight"],
        metadata={
            "help": "rDPO: weight of the SFT term (mean token NLL of the chosen answer on the original image), "
            "logged as loss/sft. Re-Align's sft_weight; default 0 (off)."
        },
    )
    rdpo_prefix_sharing: str = field(
        default=RDPO_DEFAULTS["rdpo_prefix_sharing"],
        metadata={
            "help": "rDPO: compute the image+prompt prefix once for the chosen and rejected answers (one packed "
            "row). 'auto': where exact (LLaVA, LLaVA-NeXT, Gemma 3; sdpa/eager), 'on': required, "
            "'off': three separate rows.",
            "choices": list(PREFIX_SHARING_MODES),
        },
    )
    rejected_images_column: str = field(
        default=RDPO_DEFAULTS["rejected_images_column"],
        metadata={"help": "rDPO: dataset column with the rejected (retrieved) images, parallel to `images`."},
    )
    ref_logps_cache_dir: str | None = field(
        default=None,
        metadata={
            "help": "precompute_ref_log_probs on image datasets: directory of the stored reference log-probs "
            "(default $REALIGN_HOME/ref_logps), reused by later runs with the same reference and data."
        },
    )
    curriculum: str | None = field(
        default=None,
        metadata={
            "help": "Curriculum: 'easy-to-hard' trains on the easy, then medium, then hard split (or "
            "difficulty terciles), each stage starting from the previous one's weights. Default: none."
        },
    )
    curriculum_reference: str = field(
        default="fixed",
        metadata={
            "help": "Curriculum reference model: 'fixed' (the initial policy for every stage) or 'refresh' "
            "(a frozen copy of the policy at the start of each stage).",
            "choices": ["fixed", "refresh"],
        },
    )

    def __post_init__(self):
        if isinstance(self.curriculum, str) and self.curriculum.strip().lower() in ("", "none"):
            self.curriculum = None
        if self.curriculum is not None and self.curriculum not in CURRICULA:
            raise ValueError(
                f"curriculum={self.curriculum!r} is not a known curriculum; use {', '.join(CURRICULA)} (or none)."
            )
        if self.curriculum_reference not in REFERENCE_POLICIES:
            raise ValueError(
                f"curriculum_reference={self.curriculum_reference!r} is not a reference policy; use "
                f"{' or '.join(REFERENCE_POLICIES)}."
            )
        if self.rdpo_prefix_sharing not in PREFIX_SHARING_MODES:
            raise ValueError(
                f"rdpo_prefix_sharing={self.rdpo_prefix_sharing!r} is not a mode; use "
                f"{', '.join(PREFIX_SHARING_MODES)}."
            )
        self._check_hallucination_eval()
        if self.bf16 is None and not self.fp16 and not self.use_cpu:
            # TRL defaults to bf16, which transformers refuses on a machine without a bf16 GPU unless use_cpu (where
            # TRL's own default, CPU autocast in bf16, stays as it is, so RDPOConfig trains as DPOConfig does)
            from transformers.utils import is_torch_bf16_gpu_available, is_torch_xla_available

            self.bf16 = True if is_torch_bf16_gpu_available() or is_torch_xla_available() else False
        super().__post_init__()

    def _check_hallucination_eval(self) -> None:
        if isinstance(self.hallucination_eval, str) and self.hallucination_eval.strip().lower() in ("", "none"):
            self.hallucination_eval = None
        if self.hallucination_eval is None:
            return
        from realign_trl.eval.suite import EvalError, parse_benches  # standard library only: stays import-light

        try:
            benches = parse_benches(self.hallucination_eval)
        except EvalError as e:
            raise ValueError(f"hallucination_eval: {e}") from None
        self.hallucination_eval = ",".join(benches)
        for name, value, low in too_small(self, training=True):
            raise ValueError(f"{name}={value} must be at least {low}.")
        root = self.hallucination_eval_coco_root
        if root is None and ("chair" in benches or self.hallucination_eval_pope is None):
            raise ValueError(
                "hallucination_eval needs hallucination_eval_coco_root: the COCO-layout corpus of the "
                "held-out images (POPE questions and CHAIR ground truth come from its annotations)."
            )
        if root is not None and not os.path.isdir(os.path.expanduser(root)):
            raise ValueError(f"hallucination_eval_coco_root {root!r} does not exist or is not a directory.")

    def eval_config(self) -> EvalConfig | None:
        """The hallucination evaluation these fields ask for during training (``None`` when it is off)."""
        return EvalConfig.from_training_args(self)
