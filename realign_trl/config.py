"""``RDPOConfig``: TRL's ``DPOConfig`` plus the few knobs rDPO adds.

A subclass rather than new fields on ``DPOConfig`` so that TRL's own ``TrlParser`` turns the knobs into
command-line flags and YAML keys with no extra code, and so that a plain ``DPOConfig`` stays untouched (with
it, ``loss_type="rdpo"`` uses the defaults below).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import DPOConfig

__all__ = ["RDPOConfig", "RDPO_DEFAULTS"]

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
