"""Tang et al.'s effect on a real model: LAPE at the paper's defaults (top 1%) on the shipped
Gemma 3 270M statistics, then the held-out perplexity matrix with random same-size baselines.

Deactivating a language's set must raise that language's NLL far more than the others'. The
thresholds are the ones the project committed to before measuring (median ratio >= 3 over
non-English languages, every ratio >= 1.5, every own rise above its random set's)."""

from __future__ import annotations

import warnings

import pandas as pd
import pytest

import lensneurons as ln
from lensneurons.subjects import real_stats

pytestmark = pytest.mark.real

# 10 languages in 5 scripts: Latin, Cyrillic, Greek, Han/Kana, Hangul.
LANGUAGES = ["en", "de", "fr", "ru", "el", "tr", "vi", "ja", "ko", "zh"]
N_LINES = 25  # held-out lines per language: 21 matrix rows x ~3,000 tokens in ~6 min on 2 cores


@pytest.fixture(scope="module")
def tang(gemma, gemma_stats):
    """LAPE sets, the Δ NLL matrix, its paired intervals and the own / others ratios."""
    neurons = ln.lape(gemma_stats.select(LANGUAGES))  # top_rate=0.01, p95 filter, p95 bar
    heldout = real_stats.heldout(gemma_stats, LANGUAGES, n_lines=N_LINES)
    matrix = ln.perplexity_matrix(gemma, heldout, neurons, batch_size=16, progress=False)
    delta = ln.nll_delta(matrix)
    ratios = ln.specificity(delta)
    intervals = ln.nll_delta(matrix, interval=0.95)
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(f"\nLAPE units per layer:\n{neurons.table().to_string()}")
        print(f"\nΔ mean NLL (rows deactivated, columns evaluated):\n"
              f"{delta.to_string(float_format=lambda v: f'{v:+.3f}')}")
        print(f"\nown / others:\n{ratios.to_string(float_format=lambda v: f'{v:.1f}')}")
        own = intervals.loc[[(g, g) for g in LANGUAGES]]
        print(f"\nown ΔNLL with paired 95% bootstrap intervals:\n{own.to_string()}")
    return neurons, delta, ratios, intervals


def test_each_non_english_set_raises_its_own_language_most(tang):
    _, delta, ratios, _ = tang
    non_english = ratios.drop("en")
    assert non_english.median() >= 3, ratios
    assert (non_english >= 1.5).all(), ratios
    for g in LANGUAGES[1:]:
        assert delta.loc[g, g] > delta.loc[f"random:{g}", g], g


def test_english_gets_the_fewest_units(tang):
    """The papers' English finding: the fewest language-specific units of all languages."""
    neurons, *_ = tang
    totals = neurons.table()["total"]
    assert totals.idxmin() == "en", totals


@pytest.mark.xfail(strict=True, reason=(
    "Measured on Gemma 3 270M: switching off English's LAPE set (16 units at top 1%) LOWERS "
    "English held-out NLL (about -0.04 nats, paired 95% interval below zero) and raises "
    "French; the papers likewise find English's set has almost no effect on English. Strict: "
    "if English's set ever passes the bar, this test fails and the finding must be revisited."))
def test_english_set_raises_english_most(tang):
    _, delta, ratios, _ = tang
    assert ratios["en"] >= 1.5 and delta.loc["en", "en"] > delta.loc["random:en", "en"]


def test_ternary_search_says_when_it_stops_at_its_bound(gemma_stats):
    stats = gemma_stats.select(LANGUAGES)
    with pytest.warns(ln.errors.SearchBoundWarning, match=r"lam_range=\(0, 0.5\)"):
        at_bound = ln.ternary(stats)  # the default range [0, 0.2] is too narrow on Gemma
    assert at_bound.lam_at_bound and at_bound.lam > 0.199
    with warnings.catch_warnings():
        warnings.simplefilter("error", ln.errors.SearchBoundWarning)
        wider = ln.ternary(stats, lam_range=(0.0, 1.0))
    print(f"\nternary lambda: {at_bound.lam:.4f} at the bound of [0, 0.2]; "
          f"{wider.lam:.4f} inside [0, 1]; {wider.table().sum().to_dict()}")
    assert not wider.lam_at_bound and 0.2 < wider.lam < 0.99
