"""The rDPO loss as a pure function: values, reduction to sigmoid DPO, gradients, import weight."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from realign_trl import rdpo_loss


def _inputs(dtype=torch.float64, requires_grad=False):
    t = lambda *v: torch.tensor(v, dtype=dtype, requires_grad=requires_grad)  # noqa: E731
    return dict(
        policy_chosen_logps=t(-10.0, -20.0, -5.0),
        policy_rejected_logps=t(-12.0, -18.0, -9.0),
        policy_visual_rejected_logps=t(-11.0, -21.0, -4.0),
        ref_chosen_logps=t(-11.0, -19.0, -6.0),
        ref_rejected_logps=t(-11.0, -19.0, -8.0),
        ref_visual_rejected_logps=t(-10.5, -20.0, -5.0),
    )


def _logsig(x):
    return -math.log1p(math.exp(-x))


def test_hand_computed_value():
    beta = 0.1
    losses, metrics = rdpo_loss(**_inputs(), beta=beta, visual_weight=1.0, anchor_weight=0.5, anchor_margin=0.2)
    # Example 0: r_c = 0.1*(-10+11)=0.1, r_r = 0.1*(-12+11)=-0.1, r_v = 0.1*(-11+10.5)=-0.05
    expected0 = -_logsig(0.1 - -0.1) - _logsig(0.1 - -0.05) - 0.5 * _logsig(0.1 - 0.2)
    assert losses[0].item() == pytest.approx(expected0, abs=1e-12)
    assert metrics["rewards/chosen"][0].item() == pytest.approx(0.1)
    assert metrics["rewards/rejected"][0].item() == pytest.approx(-0.1)
    assert metrics["rewards/visual_rejected"][0].item() == pytest.approx(-0.05)
    assert metrics["rewards/margins"][0].item() == pytest.approx(0.2)
    assert metrics["rewards/visual_margins"][0].item() == pytest.approx(0.15)
    assert metrics["loss/text"][0].item() == pytest.approx(-_logsig(0.2))
    assert metrics["loss/visual"][0].item() == pytest.approx(-_logsig(0.15))
    # Example 1: r_c=-0.1, r_r=0.1, r_v=-0.1 -> text accuracy 0, visual accuracy 0 (tie is not a win)
    assert metrics["rewards/accuracies"].tolist() == [1.0, 0.0, 1.0]
    assert metrics["rewards/visual_accuracies"].tolist() == [1.0, 0.0, 0.0]
    for value in metrics.values():
        assert not value.requires_grad


def test_defaults_are_rdpo_and_anchor_variants():
    x = _inputs()
    beta = 0.1
    rc = beta * (x["policy_chosen_logps"] - x["ref_chosen_logps"])
    rr = beta * (x["policy_rejected_logps"] - x["ref_rejected_logps"])
    rv = beta * (x["policy_visual_rejected_logps"] - x["ref_visual_rejected_logps"])
    rdpo, _ = rdpo_loss(**x, beta=beta)
    torch.testing.assert_close(rdpo, -F.logsigmoid(rc - rr) - F.logsigmoid(rc - rv))
    mdpo, _ = rdpo_loss(**x, beta=beta, anchor_weight=1.0)
    torch.testing.assert_close(mdpo, rdpo - F.logsigmoid(rc))
    mfpo, _ = rdpo_loss(**x, beta=beta, anchor_weight=1.0, anchor_margin=0.3)
    torch.testing.assert_close(mfpo, rdpo - F.logsigmoid(rc - 0.3))


def test_zero_weights_equal_trl_sigmoid_loss():
    x = _inputs(torch.float32)
    beta = 0.25
    losses, _ = rdpo_loss(**x, beta=beta, visual_weight=0.0, anchor_weight=0.0)
    # TRL's sigmoid branch: delta_score = chosen_logratios - rejected_logratios; -logsigmoid(beta * delta_score)
    chosen_logratios = x["policy_chosen_logps"] - x["ref_chosen_logps"]
    rejected_logratios = x["policy_rejected_logps"] - x["ref_rejected_logps"]
    trl_sigmoid = -F.logsigmoid(beta * (chosen_logratios - rejected_logratios))
    torch.testing.assert_close(losses, trl_sigmoid, rtol=0, atol=1e-7)


@pytest.mark.parametrize("visual_weight,anchor_weight,margin", [(1.0, 0.0, 0.0), (0.7, 1.0, 0.5)])
def test_gradient_matches_closed_form(visual_weight, anchor_weight, margin):
    beta = 0.1
    x = _inputs(requires_grad=True)
    losses, _ = rdpo_loss(
        **x, beta=beta, visual_weight=visual_weight, anchor_weight=anchor_weight, anchor_margin=margin
    )
    losses.sum().backward()
    with torch.no_grad():
        rc = beta * (x["policy_chosen_logps"] - x["ref_chosen_logps"])
        rr = beta * (x["policy_rejected_logps"] - x["ref_rejected_logps"])
        rv = beta * (x["policy_visual_rejected_logps"] - x["ref_visual_rejected_logps"])
        s_t, s_v, s_a = torch.sigmoid(-(rc - rr)), torch.sigmoid(-(rc - rv)), torch.sigmoid(-(rc - margin))
        d_chosen = -beta * (s_t + visual_weight * s_v + anchor_weight * s_a)
        d_rejected = beta * s_t
        d_visual = beta * visual_weight * s_v
    torch.testing.assert_close(x["policy_chosen_logps"].grad, d_chosen)
    torch.testing.assert_close(x["policy_rejected_logps"].grad, d_rejected)
    torch.testing.assert_close(x["policy_visual_rejected_logps"].grad, d_visual)
    # and autograd agrees with finite differences
    policy = [
        x[k].detach().clone().requires_grad_()
        for k in ("policy_chosen_logps", "policy_rejected_logps", "policy_visual_rejected_logps")
    ]
    refs = [x[k].detach() for k in ("ref_chosen_logps", "ref_rejected_logps", "ref_visual_rejected_logps")]
    assert torch.autograd.gradcheck(
        lambda c, r, v: rdpo_loss(
            c, r, v, *refs, beta=beta, visual_weight=visual_weight, anchor_weight=anchor_weight, anchor_margin=margin
        )[0],
        tuple(policy),
    )


def test_loss_module_imports_only_torch():
    """docs/training.md: the loss is usable without TRL (``realign_trl/loss.py`` imports only torch)."""
    import ast

    import realign_trl.loss

    tree = ast.parse(Path(realign_trl.loss.__file__).read_text())
    imported = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    imported |= {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
    }
    assert imported <= {"__future__", "torch", "typing", "math"}, imported


def test_truncation_keeps_the_same_chosen_tokens_on_both_images():
    from realign_trl.collator import align_truncated_chosen

    # rows: chosen|m, rejected|m, chosen|m_r; the m_r prompt was 2 tokens longer, so the cut kept 2 fewer
    mask = torch.tensor([[0, 1, 1, 1, 1], [0, 0, 1, 1, 1], [0, 0, 0, 1, 1]])
    aligned = align_truncated_chosen(mask)
    assert aligned.tolist() == [[0, 1, 1, 0, 0], [0, 0, 1, 1, 1], [0, 0, 0, 1, 1]]
    untouched = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 1, 0]])
    assert torch.equal(align_truncated_chosen(untouched), untouched)
