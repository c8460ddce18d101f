"""Culture and programming-language groupings: each recipe recovers exactly the planted units."""

from __future__ import annotations

import torch

import lensneurons as ln

N_LAYERS, WIDTH, N_TOKENS = 3, 40, 1000
LANGS = ["en", "de", "fa"]
CULTURE_OF = {"en": "english", "de": "german", "fa": "persian"}
# Planted units, (layer, unit):
COMPOUND = {"en": [(0, 1), (1, 2)], "de": [(0, 5)], "fa": [(2, 7), (2, 8)]}  # language + culture
LANG_ONLY = {"en": [(0, 10)], "de": [(1, 11), (1, 12)], "fa": [(0, 13)]}  # language corpus only
CULT_ONLY = {"english": [(2, 20)], "german": [(2, 21), (1, 22)], "persian": [(2, 23)]}


def background(seed):
    """A probability per unit, equal for every group (maximal entropy), in [0.2, 0.5]."""
    return 0.2 + 0.3 * torch.rand(N_LAYERS, WIDTH, generator=torch.Generator().manual_seed(seed))


def stats_from(specific, seed=0):
    """``specific[group]`` units fire on 90% of the group's tokens and 1% of the others'."""
    base = background(seed)
    planted = [unit for units in specific.values() for unit in units]
    counts = {}
    for group, units in specific.items():
        probs = base.clone()
        for layer, unit in planted:
            probs[layer, unit] = 0.9 if (layer, unit) in units else 0.01
        counts[group] = (probs * N_TOKENS).round().long()
    return ln.ActivationStats.from_counts(counts, {g: N_TOKENS for g in specific})


def mask(units):
    out = torch.zeros(N_LAYERS, WIDTH, dtype=torch.bool)
    for layer, unit in units:
        out[layer, unit] = True
    return ln.NeuronSet.from_mask(out)


def detect(specific):
    """LAPE selecting as many units as were planted, with the bar above every background value."""
    n_planted = sum(map(len, specific.values()))
    return ln.lape(stats_from(specific), top_rate=n_planted / (N_LAYERS * WIDTH),
                   filter_rate=0.9, bar_ratio=0.9)


def language_and_culture_sets():
    """Language corpora: compound and language-only units are language-specific. Culture corpora
    (text written in the culture's language): compound and culture-only units are
    culture-specific; the language-only units fire alike on every culture corpus."""
    langs = detect({g: COMPOUND[g] + LANG_ONLY[g] for g in LANGS})
    cults = detect({CULTURE_OF[g]: COMPOUND[g] + CULT_ONLY[CULTURE_OF[g]] for g in LANGS})
    return langs, cults


def test_lape_recovers_each_grouping():
    langs, cults = language_and_culture_sets()
    for g in LANGS:
        assert langs[g] == mask(COMPOUND[g] + LANG_ONLY[g])
        assert cults[CULTURE_OF[g]] == mask(COMPOUND[g] + CULT_ONLY[CULTURE_OF[g]])


def test_compound_is_language_and_culture():
    langs, cults = language_and_culture_sets()
    comp = ln.detect.compound(langs, cults, CULTURE_OF)
    assert comp.groups == LANGS
    for g in LANGS:
        assert comp[g] == mask(COMPOUND[g])
    assert comp.meta["culture_of"] == CULTURE_OF


def test_compound_pairs_same_names_by_default():
    langs, cults = language_and_culture_sets()
    renamed = ln.NeuronSets({g: cults[CULTURE_OF[g]] for g in LANGS})
    assert dict(ln.detect.compound(langs, renamed)) == dict(
        ln.detect.compound(langs, cults, CULTURE_OF))


def test_pure_culture_removes_every_language_unit():
    langs, cults = language_and_culture_sets()
    pure = ln.detect.pure_culture(cults, langs)
    for c, units in CULT_ONLY.items():
        assert pure[c] == mask(units)
        assert len(pure[c] & langs.union()) == 0


def test_pure_culture_own_scope_keeps_other_languages_units():
    """A unit of German culture that is also a Persian-language unit stays under scope='own'."""
    langs, cults = language_and_culture_sets()
    shared = mask([LANG_ONLY["fa"][0]])
    cults = ln.NeuronSets({c: (s | shared) if c == "german" else s for c, s in cults.items()})
    own = ln.detect.pure_culture(cults, langs, CULTURE_OF, scope="own")
    every = ln.detect.pure_culture(cults, langs, CULTURE_OF)
    assert own["german"] == mask(CULT_ONLY["german"]) | shared
    assert every["german"] == mask(CULT_ONLY["german"])
    # brute force: scope="own" subtracts exactly the culture's own language
    for lang, cult in CULTURE_OF.items():
        assert own[cult] == cults[cult] - langs[lang]


def test_generic_is_the_intersection_of_pure_sets():
    langs, cults = language_and_culture_sets()
    everywhere = mask([(1, 30), (2, 31)])
    cults = ln.NeuronSets({c: s | everywhere for c, s in cults.items()})
    assert ln.detect.generic(ln.detect.pure_culture(cults, langs)) == everywhere


# --- programming languages (Kargaran et al.) ----------------------------------------------------

CODE = ["python", "c", "javascript"]


def code_stats():
    """``python`` units fire strongly (0.95 vs 0.01); ``c`` and ``javascript`` units weakly
    (0.6 vs 0.3); unit (1, 0) fires for c and javascript together."""
    base = background(1)
    strong = {"python": [(0, 0), (0, 1), (0, 2), (2, 3)], "c": [(1, 4), (1, 5), (2, 6)],
              "javascript": [(2, 7), (2, 8), (0, 9)]}
    counts = {}
    for group in CODE:
        probs = base.clone()
        for owner, units in strong.items():
            for layer, unit in units:
                hi, lo = (0.95, 0.01) if owner == "python" else (0.6 - 0.05 * unit / 10, 0.3)
                probs[layer, unit] = hi if owner == group else lo
        probs[1, 0] = 0.55 if group != "python" else 0.3
        counts[group] = (probs * N_TOKENS).round().long()
    return ln.ActivationStats.from_counts(counts, {g: N_TOKENS for g in CODE}), strong


def test_per_group_budget_balances_groups():
    stats, strong = code_stats()
    # A global budget of 4 units goes entirely to the strongly specific language.
    globally = ln.lape(stats, top_rate=4 / (N_LAYERS * WIDTH), filter_rate=0.95, bar_ratio=0.95)
    assert len(globally["python"]) == 4 and len(globally["c"]) == len(globally["javascript"]) == 0
    # A budget per group gives each its own lowest-entropy units above the bar.
    sets = ln.lape(stats, per_group_budget=2, filter_rate=0.95, bar_ratio=0.95)
    probs = stats.probs()
    for k, group in enumerate(CODE):
        assert len(sets[group]) == 2
        entropy = ln.detect._common.entropy(probs.permute(1, 2, 0))
        above = probs[k] > sets.meta["tau"][k]
        chosen = sets[group].mask
        # brute force: every unchosen unit above the bar has entropy >= every chosen one
        assert entropy[chosen].max() <= entropy[above & ~chosen].min()
    assert sets["c"] == mask(strong["c"][:2])
    assert sets["javascript"] == mask(strong["javascript"][:2])


def test_exclusive_sets_drop_units_of_several_groups():
    stats, strong = code_stats()
    sets = ln.lape(stats, per_group_budget=4, filter_rate=0.95, bar_ratio=0.95)
    assert (1, 0) in {(int(layer), int(unit)) for layer, unit in sets["c"].mask.nonzero()}
    exclusive = sets.exclusive()
    assert dict(exclusive) == dict(ln.lape(stats, per_group_budget=4, filter_rate=0.95,
                                           bar_ratio=0.95, exclusive=True))
    for group in CODE:
        assert exclusive[group] == mask(strong[group])
    others = {g: ln.NeuronSets({h: sets[h] for h in CODE if h != g}).union() for g in CODE}
    for group in CODE:
        assert exclusive[group] == sets[group] - others[group]


def test_shipped_gemma_code_sets_match_the_documented_numbers():
    """docs/methods/groupings.md reports these counts from the shipped statistics."""
    stats = ln.ActivationStats.load(ln.real_stats.data_dir("gemma-3-270m") / "code_stats")
    assert stats.groups == ["python", "c", "cpp", "javascript", "html", "shell", "perl"]
    assert stats.n_tokens.tolist() == [3000] * 7
    sets = ln.lape(stats, per_group_budget=400)
    assert [len(s) for s in sets.values()] == [400] * 7
    assert len(sets.union()) == 1402
    exclusive = {g: len(s) for g, s in sets.exclusive().items()}
    assert exclusive == {"python": 40, "c": 215, "cpp": 56, "javascript": 54, "html": 120,
                         "shell": 70, "perl": 100}
    assert sets["c"].per_layer()[-1] == 73
