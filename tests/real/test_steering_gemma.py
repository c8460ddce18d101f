"""Steering on Gemma 3 270M: LAPE sets force English prompts into French, and LSS sees it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import lensneurons as ln
from lensneurons import real_stats
from lensneurons.steering import STOP, forcing_prompts, shift_items

pytestmark = pytest.mark.real

SHIPPED = Path(__file__).parents[2] / "docs" / "data" / "steering" / "sweep_additive.csv"
#: The protocol of scripts/steering_gemma.py (greedy, so the rates must repeat exactly).
PROTOCOL = dict(max_new_tokens=32, languages=list(real_stats.LANGUAGES), stop=STOP)


@pytest.fixture(scope="module")
def sets(gemma_stats):
    return ln.lape(gemma_stats)


def test_additive_steering_forces_french_and_repeats_the_shipped_rate(gemma, gemma_stats, sets):
    """Without hooks Gemma answers in English; with French units boosted, mostly in French."""
    prompts = forcing_prompts("en")
    plain = ln.forcing_rate(gemma, prompts, [], "fr", **PROTOCOL)
    steered = ln.forcing_rate(gemma, prompts, ln.steer(sets, gemma_stats, None, "fr", alpha=2.0),
                              "fr", **PROTOCOL)
    assert plain.rate == 0.0 and plain.distribution().idxmax() == "en"
    assert steered.low > plain.high  # the 95% intervals do not overlap
    shipped = pd.read_csv(SHIPPED).set_index(["target", "value"])
    assert steered.rate == pytest.approx(shipped.loc[("fr", 2.0), "forcing_rate"], abs=1e-4)


def test_lss_moves_answers_toward_the_steered_language(gemma, gemma_stats, sets):
    """French hooks raise French answers over English ones far more than German answers."""
    hooks = ln.steer(sets, gemma_stats, None, "fr", alpha=2.0)
    french = ln.steering_shift(gemma, shift_items("en", "fr"), hooks)
    german = ln.steering_shift(gemma, shift_items("en", "de"), hooks)
    assert french.score >= 0.8 and french.mean_shift > 1.0
    assert french.mean_shift > german.mean_shift + 1.0
