"""SAE-LAPE's selection (Andrylie et al.): each rule on planted units, and a loop reference."""

import math

import pytest
import torch

import lensneurons as ln
from lensneurons.detect.sae_lape import sae_lape

#: Units of one layer (columns) for groups a, b, c: 100 tokens and 50 documents each. With the
#: defaults a unit needs >= int(0.98 * 50) = 49 documents in one group and > int(0.1 * 100) = 10
#: tokens in one group.
PLANTED = {
    #                 a    b   c      a   b   c
    "a only":        ((60, 5, 5),    (50, 3, 3)),
    "docs 48":       ((60, 5, 5),    (48, 3, 3)),    # one document short in every group
    "docs 49":       ((60, 5, 5),    (49, 3, 3)),    # exactly at the document threshold
    "tokens 10":     ((10, 1, 1),    (49, 1, 1)),    # not more than 10% of a's tokens
    "tokens 11":     ((11, 1, 1),    (49, 1, 1)),
    "split rules":   ((4, 40, 2),    (49, 30, 1)),   # documents in a, tokens in b: kept, for b
    "a and b":       ((60, 40, 5),   (50, 40, 3)),   # b at 2/3 of a: both pass ratio 0.5
    "ratio edge":    ((60, 30, 5),   (50, 30, 3)),   # b at exactly 0.5 of a: both (>=)
    "under ratio":   ((60, 29, 5),   (50, 30, 3)),
    "c only":        ((1, 2, 90),    (1, 2, 50)),
    "silent":        ((0, 0, 0),     (0, 0, 0)),
}
NAMES = list(PLANTED)


def planted(n_tokens=100, n_docs=50):
    counts = {g: torch.tensor([[PLANTED[u][0][k] for u in NAMES]]) for k, g in enumerate("abc")}
    docs = {g: torch.tensor([[PLANTED[u][1][k] for u in NAMES]]) for k, g in enumerate("abc")}
    return ln.ActivationStats.from_counts(counts, dict.fromkeys("abc", n_tokens),
                                          doc_counts=docs, n_docs=dict.fromkeys("abc", n_docs))


def members(sets):
    return {g: sorted(NAMES[i] for i in s.indices[0].tolist()) for g, s in sets.items()}


def test_each_rule_on_planted_units():
    got = members(sae_lape(planted(), lang_specific=False))
    assert got == {"a": ["a and b", "a only", "docs 49", "ratio edge", "tokens 11",
                         "under ratio"],
                   "b": ["a and b", "ratio edge", "split rules"],
                   "c": ["c only"]}
    specific = sae_lape(planted())
    assert members(specific) == {"a": ["a only", "docs 49", "tokens 11", "under ratio"],
                                 "b": ["split rules"], "c": ["c only"]}
    assert specific.meta["kept"] == 8 and specific.meta["groups_per_unit"] == [6, 2, 0]
    assert specific["a"].site == "mlp"


def test_ratio_top_and_rates():
    stricter = members(sae_lape(planted(), ratio=0.8))  # the command line's default
    assert "a and b" in stricter["a"] and "ratio edge" in stricter["a"]
    # per_group_budget keeps the lowest-entropy members of each group: "docs 49"/"a only" tie,
    # index wins
    assert members(sae_lape(planted(), per_group_budget=1)) == {
        "a": ["a only"], "b": ["split rules"], "c": ["c only"]}
    loose = members(sae_lape(planted(), example_rate=0.9))  # int(0.9 * 50) = 45 documents
    assert "docs 48" in loose["a"]
    none = sae_lape(planted(), token_rate=0.9)  # more than 90 tokens: no unit
    assert all(len(s) == 0 for s in none.values()) and none.meta["kept"] == 0


def reference(active, docs, n_tokens, n_docs, example_rate, token_rate, ratio, lang_specific,
              per_group_budget):
    """The paper's rule, one unit at a time (the released code's int() thresholds)."""
    groups, layers, units = active.shape
    chosen = {k: [] for k in range(groups)}
    for layer in range(layers):
        for unit in range(units):
            a, d = active[:, layer, unit].tolist(), docs[:, layer, unit].tolist()
            if not any(d[k] >= int(example_rate * n_docs[k]) for k in range(groups)):
                continue
            if not any(a[k] > int(token_rate * n_tokens[k]) for k in range(groups)):
                continue
            p = [a[k] / n_tokens[k] for k in range(groups)]
            norm = [x / sum(p) for x in p]
            h = -sum(x * math.log(x) for x in norm if x > 0)
            joined = [k for k in range(groups) if p[k] >= ratio * max(p)]
            if lang_specific and len(joined) > 1:
                continue
            for k in joined:
                chosen[k].append((h, layer * units + unit))
    out = {}
    for k, found in chosen.items():
        found.sort()
        out[k] = sorted(i for _, i in (found if per_group_budget is None
                                       else found[:per_group_budget]))
    return out


@pytest.mark.parametrize("seed, settings", [
    (0, {}),
    (1, dict(ratio=0.8, lang_specific=False)),
    (2, dict(example_rate=0.5, token_rate=0.3, per_group_budget=3)),
    (3, dict(example_rate=0.7, ratio=0.3, per_group_budget=2, lang_specific=False)),
])
def test_equals_a_unit_by_unit_reference(seed, settings):
    gen = torch.Generator().manual_seed(seed)
    groups, layers, units = 4, 3, 40
    n_tokens = torch.randint(50, 200, (groups,), generator=gen)
    n_docs = torch.randint(5, 30, (groups,), generator=gen)
    # per group and unit a firing rate, often high or low, so that every rule matters
    rate = torch.rand(groups, layers, units, generator=gen) ** 3
    active = torch.binomial(n_tokens[:, None, None].expand_as(rate).double(), rate.double(),
                            generator=gen).long()
    docs = torch.binomial(n_docs[:, None, None].expand_as(rate).double(),
                          (rate * 4).clamp(max=1).double(), generator=gen).long()
    stats = ln.ActivationStats(groups=list("abcd"), n_tokens=n_tokens, active=active,
                               active_docs=docs, n_docs=n_docs)
    full = dict(example_rate=0.98, token_rate=0.10, ratio=0.5, lang_specific=True,
                per_group_budget=None)
    full.update(settings)
    sets = sae_lape(stats, **settings)
    want = reference(active, docs, n_tokens.tolist(), n_docs.tolist(), **full)
    got = {k: sets[g].mask.flatten().nonzero().squeeze(1).tolist()
           for k, g in enumerate(stats.groups)}
    assert got == want
    assert sum(len(v) for v in want.values()) > 0


def test_neurons_of_the_organism(organism, corpus):
    stats = ln.collect(organism, corpus, document_stats=True, progress=False)
    sets = sae_lape(stats, per_group_budget=20)
    assert all(s.site == "mlp" and s.shape == (4, 2048) for s in sets.values())
    assert sum(len(s) for s in sets.values()) > 0
    probs = stats.probs()
    for k, group in enumerate(stats.groups):  # lang_specific: no other group reaches half
        for layer, unit in sets[group].mask.nonzero().tolist():
            others = torch.cat([probs[:k, layer, unit], probs[k + 1:, layer, unit]])
            assert (others < 0.5 * probs[k, layer, unit]).all()
    hooks = ln.deactivate(sets["el"])
    with organism.hooks(fwd_hooks=hooks):
        organism(organism.to_tokens("Καλημέρα."))
