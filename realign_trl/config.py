"""``RDPOConfig``: TRL's ``DPOConfig`` plus the few knobs rDPO adds.

A subclass rather than new fields on ``DPOConfig`` so that TRL's own ``TrlParser`` turns the knobs into
command-line flags and YAML keys with no extra code, and so that a plain ``DPOConfig`` stays untouched (with
it, ``loss_type="rdpo"`` uses the defaults below).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from trl import DPOConfig

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
        hallucination_eval (`str` or `None`, *optional*, defaults to `None`):
            ``"pope,chair"``, ``"pope"`` or ``"chair"``: ``realign-trl dpo`` adds
            :class:`realign_trl.eval.HallucinationEvalCallback`, which evaluates POPE/CHAIR on a fixed held-out subset
            every ``hallucination_eval_steps`` steps and at the end and logs ``eval/pope_<split>_f1``,
            ``eval/chair_s``... (see ``docs/evaluation.md``). ``None``: no hallucination evaluation.
        hallucination_eval_steps (`int`, *optional*, defaults to `200`):
            Evaluate every this many optimizer steps (``0``: only at the end of training).
        hallucination_eval_coco_root (`str` or `None`, *optional*, defaults to `None`):
            COCO-layout corpus of the held-out images (POPE questions drawn from its instances, CHAIR ground truth
            from its instances and captions). Required unless ``hallucination_eval_pope`` alone suffices.
        hallucination_eval_split (`str` or `None`, *optional*, defaults to `None`):
            Annotated split of that corpus (default: the only one with instances).
        hallucination_eval_pope (`str` or `None`, *optional*, defaults to `None`):
            A ``realign-data pope`` question set (directory or Hub id) to use instead of drawing one.
        hallucination_eval_num_images (`int`, *optional*, defaults to `100`):
            Held-out images evaluated (the same ones every time).
        hallucination_eval_min_objects (`int`, *optional*, defaults to `3`):
            Only images with at least this many annotated categories (POPE's rule).
        hallucination_eval_batch_size (`int`, *optional*, defaults to `8`):
            Prompts per ``generate`` call during the evaluation.
        hallucination_eval_max_new_tokens (`int`, *optional*, defaults to `256`):
            Length bound of the CHAIR descriptions (POPE answers are bounded at 32 tokens).
    """

    rdpo_visual_weight: float = field(
        default=RDPO_DEFAULTS["rdpo_visual_weight"],
        metadata={"help": "rDPO: weight of the visual preference term (chosen answer on original vs rejected "
                          "image). Re-Align uses 1.0."},
    )
    rdpo_anchor_weight: float = field(
        default=RDPO_DEFAULTS["rdpo_anchor_weight"],
        metadata={"help": "rDPO: weight of the anchor term -logsigmoid(r_chosen - rdpo_anchor_margin). 1.0 gives "
                          "mDPO (margin 0) or MFPO's margin term."},
    )
    rdpo_anchor_margin: float = field(
        default=RDPO_DEFAULTS["rdpo_anchor_margin"],
        metadata={"help": "rDPO: margin eta of the anchor term (MFPO)."},
    )
    rdpo_sft_weight: float = field(
        default=RDPO_DEFAULTS["rdpo_sft_weight"],
        metadata={"help": "rDPO: weight of the SFT term (mean token NLL of the chosen answer on the original image), "
                          "logged as loss/sft. Re-Align's sft_weight; default 0 (off)."},
    )
    rdpo_prefix_sharing: str = field(
        default=RDPO_DEFAULTS["rdpo_prefix_sharing"],
        metadata={"help": "rDPO: compute the image+prompt prefix once for the chosen and rejected answers (one packed "
                          "row). 'auto': where exact (LLaVA, LLaVA-NeXT, Gemma 3; sdpa/eager), 'on': required, "
                          "'off': three separate rows.",
                  "choices": list(PREFIX_SHARING_MODES)},
    )
    rejected_images_column: str = field(
        default=RDPO_DEFAULTS["rejected_images_column"],
        metadata={"help": "rDPO: dataset column with the rejected (retrieved) images, parallel to `images`."},
    )
    ref_logps_cache_dir: str | None = field(
        default=None,
        metadata={"help": "precompute_ref_log_probs on image datasets: directory of the stored reference log-probs "
                          "(default $REALIGN_HOME/ref_logps), reused by later runs with the same reference and data."},
    )
    curriculum: str | None = field(
        default=None,
        metadata={"help": "Curriculum: 'easy-to-hard' trains on the easy, then medium, then hard split (or "
                          "difficulty terciles), each stage starting from the previous one's weights. Default: none."},
    )
    curriculum_reference: str = field(
        default="fixed",
        metadata={"help": "Curriculum reference model: 'fixed' (the initial policy for every stage) or 'refresh' "
                          "(a frozen copy of the policy at the start of each stage).",
                  "choices": ["fixed", "refresh"]},
    )

    hallucination_eval: str | None = field(
        default=None,
        metadata={"help": "Hallucination evaluation during training: 'pope,chair', 'pope' or 'chair' on a fixed held-out "
                          "subset every hallucination_eval_steps, logged as eval/pope_<split>_f1, eval/chair_s, ... "
                          "Default: none."},
    )
    hallucination_eval_steps: int = field(
        default=200, metadata={"help": "Hallucination evaluation every N optimizer steps (0: only at the end)."},
    )
    hallucination_eval_coco_root: str | None = field(
        default=None,
        metadata={"help": "Hallucination evaluation: COCO-layout corpus of the held-out images (instances, captions)."},
    )
    hallucination_eval_split: str | None = field(
        default=None,
        metadata={"help": "Hallucination evaluation: annotated split, e.g. val2014 (default: the only one)."},
    )
    hallucination_eval_pope: str | None = field(
        default=None,
        metadata={"help": "Hallucination evaluation: a `realign-data pope` question set (directory or Hub id) instead "
                          "of drawing one from the corpus."},
    )
    hallucination_eval_num_images: int = field(
        default=100, metadata={"help": "Hallucination evaluation: held-out images (the same at every evaluation)."},
    )
    hallucination_eval_min_objects: int = field(
        default=3, metadata={"help": "Hallucination evaluation: only images with at least this many annotated "
                                     "categories (POPE: 3)."},
    )
    hallucination_eval_batch_size: int = field(
        default=8, metadata={"help": "Hallucination evaluation: prompts per generate call."},
    )
    hallucination_eval_max_new_tokens: int = field(
        default=256, metadata={"help": "Hallucination evaluation: length bound of the CHAIR descriptions."},
    )

    def __post_init__(self):
        if isinstance(self.curriculum, str) and self.curriculum.strip().lower() in ("", "none"):
            self.curriculum = None
        if self.curriculum is not None and self.curriculum not in CURRICULA:
            raise ValueError(f"curriculum={self.curriculum!r} is not a known curriculum; use "
                             f"{', '.join(CURRICULA)} (or none).")
        if self.curriculum_reference not in REFERENCE_POLICIES:
            raise ValueError(f"curriculum_reference={self.curriculum_reference!r} is not a reference policy; use "
                             f"{' or '.join(REFERENCE_POLICIES)}.")
        if self.rdpo_prefix_sharing not in PREFIX_SHARING_MODES:
            raise ValueError(f"rdpo_prefix_sharing={self.rdpo_prefix_sharing!r} is not a mode; use "
                             f"{', '.join(PREFIX_SHARING_MODES)}.")
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
        for name in ("hallucination_eval_steps", "hallucination_eval_num_images", "hallucination_eval_min_objects",
                     "hallucination_eval_batch_size", "hallucination_eval_max_new_tokens"):
            low = 0 if name == "hallucination_eval_steps" else 1
            if getattr(self, name) < low:
                raise ValueError(f"{name}={getattr(self, name)} must be at least {low}.")
        root = self.hallucination_eval_coco_root
        if root is None and ("chair" in benches or self.hallucination_eval_pope is None):
            raise ValueError("hallucination_eval needs hallucination_eval_coco_root: the COCO-layout corpus of the "
                             "held-out images (POPE questions and CHAIR ground truth come from its annotations).")
        if root is not None and not os.path.isdir(os.path.expanduser(root)):
            raise ValueError(f"hallucination_eval_coco_root {root!r} does not exist or is not a directory.")
