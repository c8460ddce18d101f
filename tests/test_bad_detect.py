"""Bad inputs to the detectors and to ActivationStats.from_counts (see tests/_catalog.py)."""

from __future__ import annotations

import warnings

import _catalog
import numpy as np
import pytest
import torch
from _catalog import Case

import lensneurons as ln
from lensneurons.errors import (
    NegativeCountError,
    ParameterError,
    TooFewGroupsError,
)

NAN = float("nan")


def two(c, **counts):
    """Statistics of two groups of 100 tokens on a [1, 4] layer, from ``counts``."""
    return ln.ActivationStats.from_counts(counts, {g: 100 for g in counts})


def exceeds(c):
    with pytest.warns(UserWarning, match="exceed"):
        return ln.ActivationStats.from_counts({"en": torch.tensor([[150, 2]])}, {"en": 100})


def probs_above_one(stats, c):
    assert stats.probs()[0, 0].tolist() == [1.5, 0.02]


def is_counts(expected):
    def check(stats, c):
        assert stats.active.dtype == torch.int64
        assert stats.active.tolist() == expected

    return check


def all_above_tau(sets, c):
    """top_rate=1 selects every eligible unit: each group's set is exactly its units above tau."""
    probs = c.stats.probs()
    tau = sets.meta["tau"][0]
    for k, group in enumerate(c.stats.groups):
        assert torch.equal(sets[group].mask, probs[k] > tau)


def only_eligible(sets, c):
    """With a bar below the filter, no unit that fails the filter is selected."""
    probs = c.stats.probs()
    filter_tau = float(probs.flatten().kthvalue(round(0.99 * probs.numel())).values)
    union = sets.union().mask
    assert union.any()
    assert (probs > filter_tau).any(0)[union].all()


def same_as_fixture(sets, c):
    assert all(torch.equal(sets[g].mask, c.sets[g].mask) for g in c.stats.groups)


def lam_zero(result, c):
    n_units = c.stats.shape[0] * c.stats.shape[1]
    assert result.lam == 0.0 and sum(result.appear) == round(0.01 * n_units)


def quiet_lape(c, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return ln.lape(c.stats, **options)


def with_docs(n_en, n_fr):
    """Statistics of en, fr on a [1, 2] layer: unit 0 fires in every en document, unit 1 in
    every fr document, ``n_en`` and ``n_fr`` documents of 20 tokens."""
    return ln.ActivationStats.from_counts(
        {"en": torch.tensor([[10 * n_en, 0]]), "fr": torch.tensor([[0, 10 * n_fr]])},
        {"en": 20 * n_en, "fr": 20 * n_fr},
        doc_counts={"en": torch.tensor([[n_en, 0]]), "fr": torch.tensor([[0, n_fr]])},
        n_docs={"en": n_en, "fr": n_fr})


def planted_found(sets, c):
    assert sets["en"].indices[0].tolist() == [0] and sets["fr"].indices[0].tolist() == [1]


CASES = [
    # --- LAPE rates and options -------------------------------------------------------------
    Case("detect-lape-negative-top-rate", "lape(stats, top_rate=-0.1)",
         lambda c: ln.lape(c.stats, top_rate=-0.1), ParameterError, r"top_rate .* \(0, 1\]"),
    Case("detect-lape-top-rate-above-one", "lape(stats, top_rate=1.5)",
         lambda c: ln.lape(c.stats, top_rate=1.5), ParameterError, r"top_rate .* \(0, 1\]"),
    Case("detect-lape-top-rate-zero", "lape(stats, top_rate=0)",
         lambda c: ln.lape(c.stats, top_rate=0), ParameterError, r"top_rate .* \(0, 1\]"),
    Case("detect-lape-top-rate-nan", "lape(stats, top_rate=float('nan'))",
         lambda c: ln.lape(c.stats, top_rate=NAN), ParameterError, r"top_rate .* \(0, 1\]"),
    Case("detect-lape-top-rate-string", "lape(stats, top_rate='0.01')",
         lambda c: ln.lape(c.stats, top_rate="0.01"), ParameterError, "top_rate"),
    Case("detect-lape-top-rate-selects-nothing", "lape(stats, top_rate=1e-9)",
         lambda c: ln.lape(c.stats, top_rate=1e-9), ParameterError, r"= 0 of .* Use top_rate >="),
    Case("detect-lape-top-rate-one", "lape(stats, top_rate=1.0)",
         lambda c: quiet_lape(c, top_rate=1.0), check=all_above_tau),
    Case("detect-lape-top-rate-numpy", "lape(stats, top_rate=np.float64(0.05))",
         lambda c: ln.lape(c.stats, top_rate=np.float64(0.05)), check=same_as_fixture),
    Case("detect-lape-bar-below-filter", "lape(stats, top_rate=1, filter_rate=0.99, bar_ratio=0.5)",
         lambda c: ln.lape(c.stats, top_rate=1.0, filter_rate=0.99, bar_ratio=0.5),
         check=only_eligible),
    Case("detect-lape-budget-negative", "lape(stats, per_group_budget=-3)",
         lambda c: ln.lape(c.stats, per_group_budget=-3), ParameterError,
         "per_group_budget must be an integer >= 1"),
    Case("detect-lape-budget-zero", "lape(stats, per_group_budget=0)",
         lambda c: ln.lape(c.stats, per_group_budget=0), ParameterError, "per_group_budget"),
    Case("detect-lape-budget-float", "lape(stats, per_group_budget=2.5)",
         lambda c: ln.lape(c.stats, per_group_budget=2.5), ParameterError,
         "per_group_budget must be an integer"),
    Case("detect-lape-filter-rate-one", "lape(stats, filter_rate=1.0)",
         lambda c: ln.lape(c.stats, filter_rate=1.0), ParameterError, r"percentile in \[0, 1\)"),
    Case("detect-lape-filter-rate-nan", "lape(stats, filter_rate=float('nan'))",
         lambda c: ln.lape(c.stats, filter_rate=NAN), ParameterError, "filter_rate"),
    Case("detect-lape-bar-ratio-negative", "lape(stats, bar_ratio=-0.5)",
         lambda c: ln.lape(c.stats, bar_ratio=-0.5), ParameterError, "bar_ratio"),
    Case("detect-lape-tau-scope-unknown", "lape(stats, tau_scope='layer')",
         lambda c: ln.lape(c.stats, tau_scope="layer"), ParameterError, "'global' or 'per_group'"),
    Case("detect-lape-exclusive-string", "lape(stats, exclusive='no')",
         lambda c: ln.lape(c.stats, exclusive="no"), ParameterError, "True or False"),
    Case("detect-lape-not-stats", "lape({'en': counts, 'fr': counts})",
         lambda c: ln.lape({"en": c.stats.active[0], "fr": c.stats.active[1]}),
         ParameterError, "from_counts"),
    Case("detect-lape-one-group", "lape(stats.select(['fr']))",
         lambda c: ln.lape(c.stats.select(["fr"])), TooFewGroupsError, "at least two groups"),
    # --- SAE-LAPE's document rule needs documents ---------------------------------------------
    Case("detect-sae-lape-one-document", "sae_lape(stats)  # one document per group",
         lambda c: ln.sae_lape(with_docs(1, 1)), ln.errors.EmptyGroupError,
         r"Group 'en' has 1 document\(s\) \('fr' too\).*= 0 of them.*at least 3 documents"),
    Case("detect-sae-lape-two-documents", "sae_lape(stats)  # fr has 2 documents, en 40",
         lambda c: ln.sae_lape(with_docs(40, 2)), ln.errors.EmptyGroupError,
         r"Group 'fr' has 2 document\(s\).*= 1 of them.*Collect at least 3"),
    Case("detect-sae-lape-low-rate-few-documents",
         "sae_lape(stats, example_rate=0.5)  # 3 documents per group",
         lambda c: ln.sae_lape(with_docs(3, 3), example_rate=0.5), ln.errors.EmptyGroupError,
         "at least 4 documents"),
    Case("detect-sae-lape-three-documents", "sae_lape(stats)  # 3 documents per group",
         lambda c: ln.sae_lape(with_docs(3, 3)), check=planted_found),
    # --- ternary ----------------------------------------------------------------------------
    Case("detect-ternary-top-rate-two", "ternary(stats, top_rate=2)",
         lambda c: ln.ternary(c.stats, top_rate=2), ParameterError, r"top_rate .* \(0, 1\]"),
    Case("detect-ternary-lam-nan", "ternary(stats, lam=float('nan'))",
         lambda c: ln.ternary(c.stats, lam=NAN), ParameterError, "finite"),
    Case("detect-ternary-lam-negative", "ternary(stats, lam=-5)",
         lambda c: ln.ternary(c.stats, lam=-5), ParameterError, "lam must be a finite number >= 0"),
    Case("detect-ternary-lam-string", "ternary(stats, lam='fast')",
         lambda c: ln.ternary(c.stats, lam="fast"), ParameterError, "'auto'"),
    Case("detect-ternary-lam-zero", "ternary(stats, lam=0)",
         lambda c: ln.ternary(c.stats, lam=0), check=lam_zero),
    Case("detect-ternary-range-reversed", "ternary(stats, lam_range=(0.2, 0.1))",
         lambda c: ln.ternary(c.stats, lam_range=(0.2, 0.1)), ParameterError,
         "0 <= low < high"),
    Case("detect-ternary-range-negative", "ternary(stats, lam_range=(-0.1, 0.2))",
         lambda c: ln.ternary(c.stats, lam_range=(-0.1, 0.2)), ParameterError, "lam_range"),
    Case("detect-ternary-range-infinite", "ternary(stats, lam_range=(0, inf))",
         lambda c: ln.ternary(c.stats, lam_range=(0, float("inf"))), ParameterError, "finite"),
    Case("detect-ternary-range-string", "ternary(stats, lam_range='0-0.2')",
         lambda c: ln.ternary(c.stats, lam_range="0-0.2"), ParameterError, "lam_range"),
    Case("detect-ternary-bar-ratio-one", "ternary(stats, bar_ratio=1)",
         lambda c: ln.ternary(c.stats, bar_ratio=1), ParameterError, "bar_ratio"),
    # --- ActivationStats.from_counts ----------------------------------------------------------
    Case("detect-from-counts-probabilities", "from_counts({'en': probs}, {'en': 100})",
         lambda c: ln.ActivationStats.from_counts({"en": torch.tensor([[0.5, 0.2]])},
                                                  {"en": 100}),
         ParameterError, "not probabilities.*multiply them by"),
    Case("detect-from-counts-negative", "from_counts({'en': tensor([[-1, 0]])}, {'en': 4})",
         lambda c: ln.ActivationStats.from_counts({"en": torch.tensor([[-1, 0]])}, {"en": 4}),
         NegativeCountError, "negative"),
    Case("detect-from-counts-negative-fraction", "from_counts({'en': tensor([[-0.5]])}, ...)",
         lambda c: ln.ActivationStats.from_counts({"en": torch.tensor([[-0.5]])}, {"en": 4}),
         NegativeCountError, "negative"),
    Case("detect-from-counts-nan", "from_counts({'en': tensor([[nan]])}, {'en': 4})",
         lambda c: ln.ActivationStats.from_counts({"en": torch.tensor([[NAN]])}, {"en": 4}),
         ParameterError, "NaN"),
    Case("detect-from-counts-mask", "from_counts({'en': bool_mask}, {'en': 4})",
         lambda c: ln.ActivationStats.from_counts({"en": torch.ones(1, 2, dtype=torch.bool)},
                                                  {"en": 4}),
         ParameterError, "not a mask"),
    Case("detect-from-counts-fractional-total", "from_counts({'en': counts}, {'en': 2.5})",
         lambda c: ln.ActivationStats.from_counts({"en": torch.tensor([[1, 0]])}, {"en": 2.5}),
         ParameterError, r"n_tokens\['en'\] holds fractions"),
    Case("detect-from-counts-above-total", "from_counts({'en': tensor([[150, 2]])}, {'en': 100})",
         exceeds, check=probs_above_one),
    Case("detect-from-counts-integral-floats", "from_counts({'en': tensor([[3.0, 0.0]])}, ...)",
         lambda c: ln.ActivationStats.from_counts({"en": torch.tensor([[3.0, 0.0]])}, {"en": 4}),
         check=is_counts([[[3, 0]]])),
    Case("detect-from-counts-lists", "from_counts({'en': [[3, 1]]}, {'en': np.int64(4)})",
         lambda c: ln.ActivationStats.from_counts({"en": [[3, 1]]}, {"en": np.int64(4)}),
         check=is_counts([[[3, 1]]])),
    Case("detect-from-counts-not-dict", "from_counts([counts], [4])",
         lambda c: ln.ActivationStats.from_counts([torch.tensor([[1]])], [4]),
         ParameterError, "must be a dict"),
]


@pytest.mark.parametrize("case", _catalog.params(CASES))
def test_case(case, bad):
    _catalog.run_case(case, bad, _catalog.area_of(__name__))
