"""LAPE and the ternary split on synthetic counts with planted neurons."""

import warnings

import pytest
import torch

import lensneurons as ln
from lensneurons.errors import SearchBoundWarning

N_LAYERS, WIDTH, N_TOKENS = 4, 50, 1000
GROUPS = ["en", "fr", "de", "zh"]
PLANTED = {"fr": [(0, 3), (2, 7)], "de": [(1, 11), (3, 5)], "zh": [(3, 40)]}
SHARED = [(2, 20)]  # planted for fr and de together


def planted_stats(seed=0):
    """Background probabilities in [0.2, 0.5]; planted units fire 95% for their group only."""
    gen = torch.Generator().manual_seed(seed)
    base = 0.2 + 0.3 * torch.rand(N_LAYERS, WIDTH, generator=gen)
    counts = {}
    for group in GROUPS:
        probs = (base + 0.02 * torch.rand(N_LAYERS, WIDTH, generator=gen)).clone()
        for layer, unit in PLANTED.get(group, []):
            probs[layer, unit] = 0.95
        if group in ("fr", "de"):
            for layer, unit in SHARED:
                probs[layer, unit] = 0.9
        for layer, unit in (p for g, ps in PLANTED.items() if g != group for p in ps):
            probs[layer, unit] = 0.01
        counts[group] = (probs * N_TOKENS).round().long()
    return ln.ActivationStats.from_counts(counts, {g: N_TOKENS for g in GROUPS})


def test_lape_recovers_planted_units():
    n_planted = sum(map(len, PLANTED.values())) + len(SHARED)
    top_rate = n_planted / (N_LAYERS * WIDTH)
    sets = ln.lape(planted_stats(), top_rate=top_rate, filter_rate=0.99, bar_ratio=0.99)
    for group, units in PLANTED.items():
        found = {(layer, int(i)) for layer, idx in enumerate(sets[group].indices) for i in idx}
        assert set(units) <= found
    assert (2, 20) in {(2, int(i)) for i in sets["fr"].indices[2]}
    assert (2, 20) in {(2, int(i)) for i in sets["de"].indices[2]}  # multi-label
    assert len(sets["en"]) == 0
    assert sets.groups == GROUPS  # an empty group keeps its place


def test_lape_union_is_exactly_top_rate():
    stats = planted_stats()
    sets = ln.lape(stats, top_rate=0.05, filter_rate=0.5, bar_ratio=0.5)
    assert len(sets.union()) == round(0.05 * N_LAYERS * WIDTH)
    assert sets.meta["tau"][0] == pytest.approx(
        float(stats.probs().flatten().kthvalue(round(0.5 * stats.probs().numel())).values))


def test_lape_last_group_empty_stays_aligned():
    stats = planted_stats().select(["fr", "de", "zh", "en"])
    sets = ln.lape(stats, top_rate=0.03, filter_rate=0.99, bar_ratio=0.99)
    assert list(sets) == ["fr", "de", "zh", "en"]
    assert len(sets["en"]) == 0 and len(sets["zh"]) >= 1


def test_lape_dead_units_are_never_selected():
    stats = planted_stats()
    stats.active[:, 0, :10] = 0  # dead in every group: entropy 0, removed by the filter
    sets = ln.lape(stats, top_rate=0.1, filter_rate=0.9, bar_ratio=0.9)
    assert not sets.union().mask[0, :10].any()


def test_lape_is_deterministic_under_ties():
    counts = {g: torch.full((2, 10), 100) for g in ("a", "b")}
    counts["a"][:, :6] = 900
    stats = ln.ActivationStats.from_counts(counts, {"a": 1000, "b": 1000})
    first = ln.lape(stats, top_rate=0.1, filter_rate=0.5, bar_ratio=0.5)
    assert first["a"].indices[0].tolist() == [0, 1]  # 2 of 12 tied units: lowest indices win
    assert ln.lape(stats, top_rate=0.1, filter_rate=0.5, bar_ratio=0.5)["a"] == first["a"]


def test_lape_variants():
    stats = planted_stats()
    budget = ln.lape(stats, per_group_budget=2, filter_rate=0.99, bar_ratio=0.99)
    assert all(len(budget[g]) <= 2 for g in GROUPS)
    assert {(0, 3), (2, 7)} | {(2, 20)} >= {
        (layer, int(i)) for layer, idx in enumerate(budget["fr"].indices) for i in idx}
    exclusive = ln.lape(stats, top_rate=0.03, filter_rate=0.99, bar_ratio=0.99, exclusive=True)
    assert not exclusive["fr"].mask[2, 20] and not exclusive["de"].mask[2, 20]
    per_group = ln.lape(stats, top_rate=0.03, tau_scope="per_group", filter_rate=0.99,
                        bar_ratio=0.99)
    assert len(per_group["en"]) > 0  # English's own percentile lets it in


def test_too_few_groups():
    stats = planted_stats().select(["fr"])
    with pytest.raises(ln.errors.TooFewGroupsError):
        ln.lape(stats)
    with pytest.raises(ln.errors.TooFewGroupsError):
        ln.ternary(stats)


def test_ternary_split():
    stats = planted_stats()
    everywhere = (1, 30)
    for g in GROUPS:
        stats.active[GROUPS.index(g), everywhere[0], everywhere[1]] = 990
    result = ln.ternary(stats, top_rate=0.04, lam=0.5, bar_ratio=0.98)
    assert result.specific["fr"].mask[0, 3] and result.specific["zh"].mask[3, 40]
    assert result.related["fr"].mask[2, 20] and result.related["de"].mask[2, 20]
    assert not result.specific["fr"].mask[2, 20]
    assert result.general.mask[everywhere]
    assert result.appear[len(GROUPS)] >= 1  # a large lam selects the general unit too
    auto = ln.ternary(stats, top_rate=0.04, bar_ratio=0.98)
    assert auto.appear[len(GROUPS)] == 0 and not auto.lam_at_bound
    # the largest such lam, to the search's resolution: just above it a general unit gets in
    above = ln.ternary(stats, top_rate=0.04, bar_ratio=0.98, lam=auto.lam + 1e-3)
    assert above.appear[len(GROUPS)] >= 1
    assert not any(s.mask[everywhere] for s in auto.neuron_sets().values())
    assert list(auto.table().columns) == ["specific", "related"]


def stats_with_general_unit():
    """Planted counts plus one unit active 99% of the time in every group (a general unit)."""
    stats = planted_stats()
    for g in GROUPS:
        stats.active[GROUPS.index(g), 1, 30] = 990
    return stats


def test_ternary_auto_lambda_inside_range_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = ln.ternary(stats_with_general_unit(), top_rate=0.04, bar_ratio=0.98)
    assert not result.lam_at_bound and not result.specific.meta["lam_at_bound"]
    assert result.lam < 0.2 - 1e-3


def test_ternary_auto_lambda_warns_at_its_bound_and_widening_fixes_it():
    stats = stats_with_general_unit()
    with pytest.warns(SearchBoundWarning, match=r"lam_range=\(0, 0\.5\)") as record:
        capped = ln.ternary(stats, top_rate=0.03, bar_ratio=0.98)
    assert "0.2" in str(record[0].message)
    assert capped.lam_at_bound and capped.specific.meta["lam_at_bound"]
    assert 0.2 - 1e-3 <= capped.lam < 0.2
    assert capped.appear[len(GROUPS)] == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        wide = ln.ternary(stats, top_rate=0.03, bar_ratio=0.98, lam_range=(0, 0.5))
    assert not wide.lam_at_bound
    assert 0.2 < wide.lam < 0.5 - 1e-3
    assert wide.appear[len(GROUPS)] == 0  # still no general unit selected at the found lam...
    above = ln.ternary(stats, top_rate=0.03, bar_ratio=0.98, lam=wide.lam + 1e-3)
    assert above.appear[len(GROUPS)] >= 1  # ...but one just above it: the transition was found


def test_ternary_lambda_range_is_checked():
    for bad in [(0.2, 0.1), (-0.1, 0.2), (0.0, float("inf"))]:
        with pytest.raises(ValueError, match="lam_range"):
            ln.ternary(planted_stats(), lam_range=bad)
