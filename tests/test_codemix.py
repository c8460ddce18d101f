"""Code-mixing: lexicons from parallel text, word-level mixing, active sets and their IoU."""

from __future__ import annotations

import math
import struct

import pandas as pd
import pytest
import torch

import lensneurons as ln
from lensneurons.corpora import (
    WORD,
    Lexicon,
    build_lexicon,
    code_mix,
    coverage,
    load_sample,
    mixed_group,
    words,
)
from lensneurons.detect import active_sets, plot_specialisation, specialisation_iou


@pytest.fixture(scope="module")
def fr_en():
    return build_lexicon("fr", "en", sources=("sample",))


@pytest.fixture(scope="module")
def fr_texts():
    return load_sample(["fr"])["fr"]


def write_mo(path, messages):
    """A compiled gettext catalog (GNU .mo, little-endian, no hash table) of ``messages``."""
    entries = {"": "Content-Type: text/plain; charset=UTF-8\n", **messages}
    keys = sorted(entries)
    ids = [k.encode() for k in keys]
    strs = [entries[k].encode() for k in keys]
    start = 7 * 4 + 16 * len(keys)
    blob, id_table, str_table = b"", [], []
    for table, items in ((id_table, ids), (str_table, strs)):
        for item in items:
            table.append((len(item), start + len(blob)))
            blob += item + b"\0"
    header = struct.pack("<7I", 0x950412DE, 0, len(keys), 28, 28 + 8 * len(keys), 0, start)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + b"".join(struct.pack("<2I", *e) for e in id_table + str_table)
                     + blob)


@pytest.fixture(scope="module")
def locale_dir(tmp_path_factory):
    """Two small catalogs per language, and a name list that must be ignored."""
    root = tmp_path_factory.mktemp("locale")
    fr = {"Window": "Fenêtre", "New window": "Nouvelle fenêtre", "Close window":
          "Fermer fenêtre", "Open": "Ouvrir", "Open file": "Ouvrir fichier",
          "File": "Fichier", "Save the file now": "Enregistrer le fichier maintenant",
          "Untranslated": "Untranslated", "Save as": "Enregistrer sous le nom"}
    de = {"Window": "Fenster", "New window": "Neues Fenster", "Close window":
          "Fenster schließen", "Open": "Öffnen", "Open file": "Datei öffnen", "File": "Datei",
          "The window is closed now": "Das Fenster ist jetzt zu"}
    write_mo(root / "fr" / "LC_MESSAGES" / "app.mo", fr)
    write_mo(root / "de" / "LC_MESSAGES" / "app.mo", de)
    for lang, name in (("fr", "Côte"), ("de", "Küste")):
        write_mo(root / lang / "LC_MESSAGES" / "iso_3166-2.mo", {"Window": name, "Open": name})
    return root


# --- lexicon --------------------------------------------------------------------------------

def test_words_keep_inner_apostrophes_and_drop_digits():
    assert words("L'eau, 3 fois: don't!") == ["l'eau", "fois", "don't"]


def test_sample_lexicon_known_pairs(fr_en):
    assert fr_en["nous"] == "we" and fr_en["et"] == "and"
    assert fr_en["le"] == fr_en["la"] == "the"  # several base words may share a replacement
    assert fr_en["maison"] == "house" and fr_en["matin"] == "morning"
    assert {fr_en.source(w) for w in fr_en} == {"sample"}
    assert all(w == w.lower() and WORD.fullmatch(w) for w in fr_en)
    assert all(fr_en[w].lower() != w for w in fr_en)


def test_replacements_keep_their_written_form():
    en_de = build_lexicon("en", "de", sources=("sample",))
    assert en_de["house"] == "Haus" and en_de["weather"] == "Wetter"  # German nouns
    assert build_lexicon("de", "en", sources=("sample",))["ich"] == "I"


def test_held_out_split_trains_on_fewer_pairs(fr_en):
    train = build_lexicon("fr", "en", sources=("sample",), split="train")
    assert 0 < len(train) < len(fr_en)


def test_gettext_pairs_direct_and_through_the_msgid(locale_dir):
    en_fr = build_lexicon("en", "fr", sources=("gettext",), locale_dir=locale_dir)
    assert en_fr["window"] == "fenêtre" and en_fr.source("window") == "gettext"
    assert en_fr["file"] == "fichier" and en_fr["open"] == "ouvrir"
    assert "untranslated" not in en_fr  # msgstr == msgid: not a translation
    fr_de = build_lexicon("fr", "de", sources=("gettext",), locale_dir=locale_dir)
    assert fr_de["fenêtre"] == "Fenster"  # usual form, from "Das Fenster ist jetzt zu"
    assert fr_de["fichier"] == "datei"  # only in short strings, which may be title case
    assert "côte" not in build_lexicon("fr", "de", sources=("gettext",), locale_dir=locale_dir,
                                       min_links=1).values()


def test_gettext_only_keeps_short_pairs_of_equal_length(locale_dir):
    en_fr = build_lexicon("en", "fr", sources=("gettext",), locale_dir=locale_dir, min_links=1)
    assert "save" not in en_fr  # in "Save as" (2 vs 4 words) and a 4-word entry only


def test_sources_merge_in_order_and_record_agreement(locale_dir):
    both = build_lexicon("en", "fr", sources=("gettext", "sample"), locale_dir=locale_dir)
    sample = build_lexicon("en", "fr", sources=("sample",))
    assert both["window"] == "fenêtre" and both.source("window") == "gettext"
    assert set(sample) <= set(both)
    assert all(both.source(w).startswith("sample") for w in set(sample) - {"window", "file"})


def test_lexicon_lowercases_keys_and_drops_identities():
    lex = Lexicon("fr", "en", {"Chat": "cat", "taxi": "Taxi"}, {"Chat": "manual"})
    assert dict(lex) == {"chat": "cat"} and lex.source("chat") == "manual"
    assert lex.table().to_dict("records") == [
        {"word": "chat", "replacement": "cat", "source": "manual"}]
    assert "fr->en, 1 entries" in repr(lex)


# --- mixing ---------------------------------------------------------------------------------

def skeleton(text):
    return WORD.sub("_", text)


def test_rate_zero_is_identity(fr_en, fr_texts):
    result = code_mix(fr_texts, fr_en, 0.0)
    assert result.texts == fr_texts and result.rate == 0 and set(result.n_mixed) == {0}


def test_rate_one_replaces_every_covered_word(fr_en, fr_texts):
    result = code_mix(fr_texts, fr_en, 1.0)
    for text, mixed, n in zip(fr_texts, result.texts, result.n_mixed):
        covered = [w for w in words(text) if w in fr_en]
        assert n == len(covered)
        changed = [a for a, b in zip(words(text), words(mixed)) if a != b.lower()]
        assert changed == covered
    assert result.rate == pytest.approx(coverage(fr_texts, fr_en).tokens)


def test_punctuation_and_word_count_are_kept(fr_en, fr_texts):
    result = code_mix(fr_texts, fr_en, 0.6, seed=3)
    assert [skeleton(t) for t in result.texts] == [skeleton(t) for t in fr_texts]


def test_achieved_rate_close_to_request_below_coverage(fr_en, fr_texts):
    ceiling = coverage(fr_texts, fr_en).tokens
    assert 0.4 < ceiling < 1
    for rate in (0.1, 0.25):
        assert code_mix(fr_texts, fr_en, rate).rate == pytest.approx(rate, abs=0.02)
    high = code_mix(fr_texts, fr_en, 0.75)
    assert high.rate <= ceiling + 1e-12
    for text, achieved in zip(fr_texts, high.rates):
        assert achieved <= coverage([text], fr_en).tokens + 1e-12


def test_deterministic_by_seed_and_nested_across_rates(fr_en, fr_texts):
    assert code_mix(fr_texts, fr_en, 0.3, seed=5) == code_mix(fr_texts, fr_en, 0.3, seed=5)
    assert code_mix(fr_texts, fr_en, 0.3, seed=5).texts != code_mix(fr_texts, fr_en, 0.3).texts

    def replaced(rate):
        mixed = code_mix(fr_texts, fr_en, rate, seed=5).texts
        return {(i, j) for i, (a, b) in enumerate(zip(fr_texts, mixed))
                for j, (x, y) in enumerate(zip(words(a), words(b))) if x != y.lower()}

    low, mid, high = replaced(0.2), replaced(0.4), replaced(0.8)
    assert low < mid < high


def test_capitals_follow_sentence_starts_and_all_caps():
    lex = Lexicon("fr", "de", {"le": "der", "chien": "Hund", "eau": "wasser"})
    result = code_mix(["Le chien boit. « Le chien » aime l'EAU et le chien."], lex, 1.0)
    assert result.texts == ["Der Hund boit. « Der Hund » aime l'EAU et der Hund."]
    # "l'EAU" is one word (inner apostrophe) and has no entry; a bare capital word does:
    assert code_mix(["EAU !"], lex, 1.0).texts == ["WASSER !"]


def test_texts_without_words_pass_through(fr_en):
    result = code_mix(["", "12 + 3 = 15."], fr_en, 1.0)
    assert result.texts == ["", "12 + 3 = 15."] and result.rates == [0.0, 0.0]
    assert result.rate == 0.0 and result.requested == 1.0


def test_coverage_counts_tokens_and_types(fr_en, fr_texts):
    cov = coverage(["Le chat et le chien."], Lexicon("fr", "en", {"le": "the", "et": "and"}))
    assert (cov.tokens, cov.types, cov.n_tokens, cov.n_types) == (0.6, 0.5, 5, 4)
    sample = coverage(fr_texts, fr_en)
    assert 0 < sample.types < sample.tokens <= 1  # frequent words are covered first


def test_mixed_group_names():
    assert mixed_group("fr", "en", 0.25) == "fr+en@0.25" and mixed_group("de", "es", 1) == (
        "de+es@1")


# --- active sets and IoU --------------------------------------------------------------------

def counts_stats(counts, n_tokens):
    return ln.ActivationStats.from_counts({g: torch.as_tensor(c) for g, c in counts.items()},
                                          n_tokens)


def test_coverage_rule_is_the_shortest_covering_prefix():
    gen = torch.Generator().manual_seed(0)
    counts = torch.randint(0, 50, (3, 40), generator=gen)
    stats = counts_stats({"g": counts}, {"g": 50})
    mask = active_sets(stats, share=0.8)["g"].mask
    for layer in range(3):
        c = counts[layer].double()
        inside, outside = c[mask[layer]], c[~mask[layer]]
        assert inside.sum() >= 0.8 * c.sum()
        assert inside.sum() - inside.min() < 0.8 * c.sum()  # no member can go
        assert outside.numel() == 0 or outside.max() <= inside.min()


def test_coverage_rule_ties_and_edges():
    stats = counts_stats({"g": [[2, 2, 2, 2], [0, 0, 0, 0], [4, 0, 0, 1]]}, {"g": 4})
    sets = active_sets(stats, share=0.5)["g"]
    assert [i.tolist() for i in sets.indices] == [[0, 1], [], [0]]
    full = active_sets(stats, share=1.0)["g"]
    assert [i.tolist() for i in full.indices] == [[0, 1, 2, 3], [], [0, 3]]


def test_top_k_rule_and_never_active_units():
    stats = counts_stats({"g": [[1, 5, 3, 0], [0, 0, 2, 0]]}, {"g": 5})
    sets = active_sets(stats, rule="top_k", k=2)["g"]
    assert [i.tolist() for i in sets.indices] == [[1, 2], [2]]


def test_planted_sets_give_known_iou():
    # top_k with k=4 over 8 units: the mixed set shares 3 units with "fr", 1 with "en".
    pure = counts_stats({"fr": [[9, 9, 9, 9, 0, 0, 0, 0]], "en": [[0, 0, 0, 9, 9, 9, 9, 0]]},
                        {"fr": 10, "en": 10})
    mixed = counts_stats({"fr+en@0.25": [[9, 9, 9, 0, 9, 0, 0, 0]]}, {"fr+en@0.25": 10})
    table = specialisation_iou(mixed, pure, rule="top_k", k=4)
    assert table.set_index("pure")["iou"].to_dict() == {"fr": 3 / 5, "en": 1 / 7}
    assert set(table["mixed_size"]) == {4} and set(table["pure_size"]) == {4}


def test_remove_shared_and_empty_layers():
    pure = counts_stats({"fr": [[9, 9, 9, 0]], "en": [[9, 0, 9, 9]]}, {"fr": 10, "en": 10})
    mixed = counts_stats({"m": [[9, 9, 0, 9]]}, {"m": 10})
    kept = specialisation_iou(mixed, pure, rule="top_k", k=3, remove_shared=True)
    assert kept.set_index("pure")["iou"].to_dict() == {"fr": 1 / 3, "en": 1 / 3}  # unit 0 gone
    sets = active_sets(pure, rule="top_k", k=3, remove_shared=True)
    assert [sets[g].indices[0].tolist() for g in ("fr", "en")] == [[1], [3]]
    one = pure.select(["fr"])
    same = specialisation_iou(one, one, remove_shared=True)
    assert same["iou"].isna().all()  # every unit is shared: nothing left to compare


def test_identical_statistics_give_iou_one(bad):
    table = specialisation_iou(bad.stats, bad.stats)
    diagonal = table[table["mixed"] == table["pure"]]
    assert len(diagonal) == len(bad.stats.groups) * bad.stats.shape[0]
    assert (diagonal["iou"] == 1.0).all()
    assert (table[table["mixed"] != table["pure"]]["iou"] < 1).all()
    assert active_sets(bad.stats)["en"].gated is bad.stats.meta.get("gated")


def test_mixing_moves_the_organism_towards_the_mixed_in_language(organism):
    texts = load_sample(["fr", "en", "de"], split="heldout")
    lex = build_lexicon("fr", "en", split="train", sources=("sample",))
    mixed = {mixed_group("fr", "en", r): code_mix(texts["fr"], lex, r).texts
             for r in (0.0, 0.5, 1.0)}
    pure = ln.collect(organism, ln.Corpus.from_texts(texts), progress=False)
    mix = ln.collect(organism, ln.Corpus.from_texts(mixed), progress=False)
    table = specialisation_iou(mix, pure, rule="top_k", k=200)
    mean = table.groupby(["mixed", "pure"])["iou"].mean()
    assert mean["fr+en@0", "fr"] == 1.0  # rate 0: the same texts, the same counts
    en = [mean[mixed_group("fr", "en", r), "en"] for r in (0.0, 0.5, 1.0)]
    fr = [mean[mixed_group("fr", "en", r), "fr"] for r in (0.0, 0.5, 1.0)]
    assert en[0] < en[1] < en[2] and fr[0] > fr[1] > fr[2]
    assert mean["fr+en@1", "de"] < mean["fr+en@1", "en"]
    fig = plot_specialisation(table, bands=2)
    assert len(fig.axes) == 2 and {t.get_text() for t in fig.axes[0].get_legend().get_texts()} \
        == {"fr", "en", "de"}


def test_plot_panels_per_mix_and_band():
    rows = [(mixed_group(b, "en", r), p, layer, 1 - r / (layer + 2), 1, 1)
            for b in ("fr", "de") for r in (0, 0.5, 1) for p in ("en", b) for layer in range(4)]
    table = pd.DataFrame(rows, columns=["mixed", "pure", "layer", "iou", "mixed_size",
                                        "pure_size"])
    table.loc[len(table)] = ["unnamed", "en", 0, 0.5, 1, 1]  # left out: no rate in the name
    fig = plot_specialisation(table, bands=2)
    assert len(fig.axes) == 4
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0] == "fr + en, layers 0-1" and titles[3] == "de + en, layers 2-3"
    line = fig.axes[0].get_lines()[0]
    assert list(line.get_xdata()) == [0, 0.5, 1]
    assert all(math.isfinite(y) for y in line.get_ydata())
    achieved = plot_specialisation(table, bands=2, rates={"fr+en@1": 0.52, "de+en@1": 0.58})
    assert list(achieved.axes[0].get_lines()[0].get_xdata()) == [0, 0.5, 0.52]
    assert achieved.axes[0].get_xlabel() == "share of words replaced"
