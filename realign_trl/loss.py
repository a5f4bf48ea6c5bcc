"""The rDPO loss family as pure tensor functions.

Kept free of TRL (and of anything but torch) so the loss can be unit-tested, reused in other trainers and
read in one screen. The trainer integration in :mod:`realign_trl.trainer` only gathers log-probabilities and
calls :func:`rdpo_loss`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["rdpo_loss"]


def rdpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    policy_visual_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    ref_visual_rejected_logps: torch.Tensor,
    beta: float,
    visual_weight: float = 1.0,
    anchor_weight: float = 0.0,
    anchor_margin: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-example rDPO loss (Re-Align, arXiv 2502.13146) and its detached metrics.

    With the implicit reward ``r(.) = beta * (logp - ref_logp)``::

        loss = -logsigmoid(r_chosen - r_rejected)                         # text pair, same image
             + visual_weight * -logsigmoid(r_chosen - r_visual_rejected)  # visual pair, same answer
             + anchor_weight * -logsigmoid(r_chosen - anchor_margin)      # anchor

    The defaults are Re-Align's rDPO (1:1, no anchor). ``anchor_weight=1`` gives mDPO's anchored loss and
    ``anchor_weight=1, anchor_margin=eta`` MFPO's margin term: the three methods differ only in which
    rejected image the data carries and in these two knobs, so one function serves all of them.

    All log-probability arguments are 1-D tensors of shape ``(batch,)`` holding sequence log-probs (sums
    over completion tokens). "visual_rejected" is the chosen answer scored with the rejected image.

    Returns:
        ``(per_example_losses, metrics)``: the loss of shape ``(batch,)`` (the caller takes the mean), and a
        dict of detached per-example tensors: ``rewards/chosen``, ``rewards/rejected``,
        ``rewards/visual_rejected``, ``rewards/margins``, ``rewards/visual_margins``, ``rewards/accuracies``,
        ``rewards/visual_accuracies``, ``loss/text``, ``loss/visual`` and ``loss/anchor``.
    """
    import torch.nn.functional as F

    chosen_rewards = beta * (policy_chosen_logps - ref_chosen_logps)
    rejected_rewards = beta * (policy_rejected_logps - ref_rejected_logps)
    visual_rewards = beta * (policy_visual_rejected_logps - ref_visual_rejected_logps)

    text_loss = -F.logsigmoid(chosen_rewards - rejected_rewards)
    visual_loss = -F.logsigmoid(chosen_rewards - visual_rewards)
    anchor_loss = -F.logsigmoid(chosen_rewards - anchor_margin)

    losses = text_loss
    # Zero weights skip their term entirely, so the plain-DPO setting is bit-identical to sigmoid DPO.
    if visual_weight != 0:
        losses = losses + visual_weight * visual_loss
    if anchor_weight != 0:
        losses = losses + anchor_weight * anchor_loss

    c, r, v = chosen_rewards.detach(), rejected_rewards.detach(), visual_rewards.detach()
    metrics = {
        "rewards/chosen": c,
        "rewards/rejected": r,
        "rewards/visual_rejected": v,
        "rewards/margins": c - r,
        "rewards/visual_margins": c - v,
        "rewards/accuracies": (c > r).float(),
        "rewards/visual_accuracies": (c > v).float(),
        "loss/text": text_loss.detach(),
        "loss/visual": visual_loss.detach(),
        "loss/anchor": anchor_loss.detach(),
    }
    return losses, metrics
