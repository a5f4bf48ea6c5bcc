"""POVID's sigmoid noise schedule is the default of the perturbation negatives (issue #14, item 1)."""

from __future__ import annotations

import math

import pytest

from realign_data import BuildConfig
from realign_data.building.negatives import alpha_bar

# sqrt(alpha_bar_t) of POVID's add_diffusion_noise (copied into Re-Align's train_rdpo.py), see METHOD.md
PUBLISHED = {100: 0.998, 250: 0.989, 500: 0.863, 750: 0.527, 999: 0.285}


@pytest.mark.parametrize("t", sorted(PUBLISHED))
def test_sigmoid_schedule_matches_the_published_constants(t):
    assert round(math.sqrt(alpha_bar(t, "sigmoid")), 3) == PUBLISHED[t]


def test_sigmoid_is_the_default_and_about_three_times_gentler_than_linear_at_500():
    assert BuildConfig(index="x").noise_schedule == "sigmoid" and alpha_bar(500) == alpha_bar(500, "sigmoid")
    assert round(math.sqrt(alpha_bar(500, "linear")), 3) == 0.279
    assert 2.9 < math.sqrt(alpha_bar(500, "sigmoid")) / math.sqrt(alpha_bar(500, "linear")) < 3.2
