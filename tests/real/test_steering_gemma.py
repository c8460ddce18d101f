"""Steering on Gemma 3 270M: LAPE sets force English questions into French, and LSS sees it.

The claims are the shipped curve's (``docs/data/steering/forcing_curve.csv``, made by
``scripts/steering_curve_gemma.py`` on 100 questions per point), checked here as intervals on the
first 48 questions: another machine may pick other tokens at a near-tie, so no rate is compared
for equality.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import lensneurons as ln
from lensneurons.corpora import STOP, forcing_prompts
from lensneurons.evaluate import shift_items
from lensneurons.subjects import real_stats

pytestmark = pytest.mark.real

CURVE = Path(__file__).parents[2] / "docs" / "data" / "steering" / "forcing_curve.csv"
PROTOCOL = dict(max_new_tokens=16, languages=list(real_stats.LANGUAGES), stop=STOP)


@pytest.fixture(scope="module")
def sets(gemma_stats):
    return ln.lape(gemma_stats)


def shipped(target, alpha):
    curve = pd.read_csv(CURVE)
    row = curve[(curve["target"] == target) & (curve["alpha"] == alpha)
                & (curve["decoding"] == "greedy")]
    assert len(row) == 1, (target, alpha)
    return row.iloc[0]


def test_additive_steering_forces_french_as_the_shipped_curve_says(gemma, gemma_stats, sets):
    """Without hooks Gemma answers in English; at alpha 2 mostly in French; both as shipped."""
    prompts = forcing_prompts("en", n=48)
    plain = ln.forcing_rate(gemma, prompts, [], "fr", **PROTOCOL)
    steered = ln.forcing_rate(gemma, prompts, ln.steer(sets, gemma_stats, None, "fr", alpha=2.0),
                              "fr", **PROTOCOL)
    assert plain.distribution().idxmax() == "en" and plain.high < 0.2
    assert steered.low > plain.high  # the 95% intervals do not overlap
    for result, alpha in ((plain, 0.0), (steered, 2.0)):
        row = shipped("fr", alpha)
        assert result.low <= row["high"] and row["low"] <= result.high, (alpha, result, row)


def test_lss_moves_answers_toward_the_steered_language(gemma, gemma_stats, sets):
    """French hooks raise French answers over English ones far more than German answers."""
    hooks = ln.steer(sets, gemma_stats, None, "fr", alpha=2.0)
    french = ln.steering_shift(gemma, shift_items("en", "fr"), hooks)
    german = ln.steering_shift(gemma, shift_items("en", "de"), hooks)
    assert french.score >= 0.8 and french.mean_shift > 1.0
    assert french.mean_shift > german.mean_shift + 1.0
