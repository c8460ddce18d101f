"""Steering on Gemma 3 270M: LAPE sets force English prompts into French, and LSS sees it."""

from __future__ import annotations

import pytest

import lensneurons as ln
from lensneurons.steering import shift_items

pytestmark = pytest.mark.real

PROMPTS = ["Q: How are you today?\nA:", "Q: What is your favourite food?\nA:",
           "Q: Where do you live?\nA:", "Q: What is the weather like today?\nA:",
           "Q: What is your job?\nA:", "Q: How do you get to work?\nA:"]


@pytest.fixture(scope="module")
def sets(gemma_stats):
    return ln.lape(gemma_stats)


def test_additive_steering_forces_french(gemma, gemma_stats, sets):
    """Without hooks Gemma answers in English; adding French units' mean answers in French."""
    plain = ln.forcing_rate(gemma, PROMPTS, [], "fr", max_new_tokens=16)
    steered = ln.forcing_rate(gemma, PROMPTS, ln.steer(sets, gemma_stats, None, "fr", alpha=2.0),
                              "fr", max_new_tokens=16)
    assert plain.rate == 0.0 and plain.distribution().idxmax() == "en"
    assert steered.rate >= 0.8, steered.table()
    assert steered.low > plain.high  # the intervals do not overlap


def test_lss_rises_for_the_steered_language_only(gemma, gemma_stats, sets):
    """Steering to French raises French answers over English ones; German answers gain less."""
    hooks = ln.steer(sets, gemma_stats, None, "fr", alpha=2.0)
    french = ln.steering_shift(gemma, shift_items("en", "fr"), hooks)
    german = ln.steering_shift(gemma, shift_items("en", "de"), hooks)
    assert french.score >= 0.8 and french.mean_shift > 1.0
    assert french.mean_shift > german.mean_shift + 1.0
