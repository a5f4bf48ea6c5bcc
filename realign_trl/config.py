"""``RDPOConfig``: TRL's ``DPOConfig`` plus the few knobs rDPO adds.

A subclass rather than new fields on ``DPOConfig`` so that TRL's own ``TrlParser`` turns the knobs into
command-line flags and YAML keys with no extra code, and so that a plain ``DPOConfig`` stays untouched (with
it, ``loss_type="rdpo"`` uses the defaults below).
"""

from __future__ import annotations

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
    "rejected_images_column": "rejected_images",
}


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
        rejected_images_column (`str`, *optional*, defaults to `"rejected_images"`):
            Dataset column holding the rejected (retrieved) images, parallel to ``images``.
        curriculum (`str` or `None`, *optional*, defaults to `None`):
            ``"easy-to-hard"`` trains on the ``easy``, ``medium`` and ``hard`` splits in turn, each stage starting
            from the previous stage's weights (``realign-trl dpo`` and :func:`realign_trl.train_curriculum`; see
            ``docs/training.md``). Works with any ``loss_type``. ``None`` trains on the train split at once.
        curriculum_reference (`str`, *optional*, defaults to `"fixed"`):
            Reference model of a curriculum: ``"fixed"`` (the initial policy for every stage) or ``"refresh"``
            (a frozen copy of the policy at the start of each stage).
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
    rejected_images_column: str = field(
        default=RDPO_DEFAULTS["rejected_images_column"],
        metadata={"help": "rDPO: dataset column with the rejected (retrieved) images, parallel to `images`."},
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

    def __post_init__(self):
        if isinstance(self.curriculum, str) and self.curriculum.strip().lower() in ("", "none"):
            self.curriculum = None
        if self.curriculum is not None and self.curriculum not in CURRICULA:
            raise ValueError(f"curriculum={self.curriculum!r} is not a known curriculum; use "
                             f"{', '.join(CURRICULA)} (or none).")
        if self.curriculum_reference not in REFERENCE_POLICIES:
            raise ValueError(f"curriculum_reference={self.curriculum_reference!r} is not a reference policy; use "
                             f"{' or '.join(REFERENCE_POLICIES)}.")
        super().__post_init__()
