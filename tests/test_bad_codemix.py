"""Bad inputs to the code-mixing lexicon, the mixer and the specialisation IoU (_catalog.py)."""

from __future__ import annotations

import math
from dataclasses import replace

import _catalog
import pandas as pd
import pytest
import torch
from _catalog import Case

from lensneurons.corpora import Lexicon, build_lexicon, code_mix, coverage
from lensneurons.detect import active_sets, plot_specialisation, specialisation_iou
from lensneurons.errors import (
    EmptyGroupError,
    InvalidTextError,
    ModelMismatchError,
    ParameterError,
    ShapeMismatchError,
    UnknownLanguageError,
)
from lensneurons.stats.activation_stats import ActivationStats

LEX = Lexicon("fr", "en", {"chat": "cat", "dort": "sleeps"})
TEXTS = ["Le chat dort.", "Le chien dort aussi."]
TABLE = pd.DataFrame({"mixed": ["fr+en@0", "fr+en@1"], "pure": ["fr", "fr"], "layer": [0, 0],
                      "iou": [1.0, 0.5]})


def unchanged_and_zero(result, c):
    assert result.texts == ["", "42."] and result.rates == [0.0, 0.0] and result.rate == 0.0


def all_nan(table, c):
    """Identical one-group statistics: every unit is shared, so no set is left to compare."""
    assert table["iou"].isna().all()


def two_layers(c):
    return ActivationStats(groups=["fr"], n_tokens=c.stats.n_tokens[:1],
                           active=c.stats.active[:1, :2])


def other_model(c):
    return replace(c.stats, meta={**c.stats.meta, "fingerprint": {"other": "model"}})


def in_bf16(c):
    """The statistics as if collected on the same model in bf16: its fingerprint rounded."""
    fp = c.stats.meta["fingerprint"]
    rounded = torch.tensor(fp["embedding_slice"]).bfloat16().float().tolist()
    assert rounded != fp["embedding_slice"]
    return replace(c.stats, meta={**c.stats.meta, "fingerprint": {**fp,
                                                                  "embedding_slice": rounded}})


def other_weights(c):
    """Statistics of a model of the same shape with other weights."""
    fp = c.stats.meta["fingerprint"]
    moved = (torch.tensor(fp["embedding_slice"]) + 0.5).tolist()
    return replace(c.stats, meta={**c.stats.meta, "fingerprint": {**fp, "embedding_slice": moved}})


def same_as_fp32(table, c):
    pd.testing.assert_frame_equal(table, specialisation_iou(c.stats, c.stats))


CASES = [
    # --- build_lexicon, Lexicon ---------------------------------------------------------------
    Case("codemix-lexicon-same-language", "build_lexicon('fr', 'fr')",
         lambda c: build_lexicon("fr", "fr"), ParameterError, "mix in another language"),
    Case("codemix-lexicon-unknown-language", "build_lexicon('fr', 'xx', sources=('sample',))",
         lambda c: build_lexicon("fr", "xx", sources=("sample",)), UnknownLanguageError,
         r"No source .* holds both 'fr' and 'xx'.*Lexicon\(base, mixed, entries\)"),
    Case("codemix-lexicon-code-pattern", "build_lexicon('f*', 'en')",
         lambda c: build_lexicon("f*", "en"), ParameterError, "language code such as 'fr'"),
    Case("codemix-lexicon-sources-string", "build_lexicon('fr', 'en', sources='sample')",
         lambda c: build_lexicon("fr", "en", sources="sample"), ParameterError,
         r"sources must be a non-empty list"),
    Case("codemix-lexicon-sources-unknown", "build_lexicon('fr', 'en', sources=('wiki',))",
         lambda c: build_lexicon("fr", "en", sources=("wiki",)), ParameterError,
         r"\('sample', 'gettext'\)"),
    Case("codemix-lexicon-min-links-zero", "build_lexicon('fr', 'en', min_links=0)",
         lambda c: build_lexicon("fr", "en", min_links=0), ParameterError,
         "min_links must be an integer >= 1"),
    Case("codemix-lexicon-min-share-zero", "build_lexicon('fr', 'en', min_share=0)",
         lambda c: build_lexicon("fr", "en", min_share=0), ParameterError,
         r"min_share must be a number in \(0, 1\]"),
    Case("codemix-lexicon-min-dice-one", "build_lexicon('fr', 'en', min_dice=1)",
         lambda c: build_lexicon("fr", "en", min_dice=1), ParameterError,
         r"min_dice must be a percentile in \[0, 1\)"),
    Case("codemix-lexicon-split-unknown", "build_lexicon('fr', 'en', split='test')",
         lambda c: build_lexicon("fr", "en", sources=("sample",), split="test"),
         ParameterError, "split must be 'train', 'heldout' or 'all'"),
    Case("codemix-lexicon-no-catalogs", "build_lexicon('fr', 'en', sources=('gettext',), "
         "locale_dir=empty)",
         lambda c: build_lexicon("fr", "en", sources=("gettext",), locale_dir=c.tmp_path),
         UnknownLanguageError, "gettext needs catalogs of both"),
    Case("codemix-lexicon-phrase-key", "Lexicon('fr', 'en', {'pomme de terre': 'potato'})",
         lambda c: Lexicon("fr", "en", {"pomme de terre": "potato"}), ParameterError,
         "keys must be single words"),
    Case("codemix-lexicon-blank-value", "Lexicon('fr', 'en', {'chat': ' '})",
         lambda c: Lexicon("fr", "en", {"chat": " "}), ParameterError, "non-blank string"),
    Case("codemix-lexicon-case-clash", "Lexicon('fr', 'en', {'Chat': 'cat', 'chat': 'kitty'})",
         lambda c: Lexicon("fr", "en", {"Chat": "cat", "chat": "kitty"}), ParameterError,
         "same word up to case"),
    Case("codemix-lexicon-list", "Lexicon('fr', 'en', ['chat'])",
         lambda c: Lexicon("fr", "en", ["chat"]), ParameterError, "entries must be a dict"),
    Case("codemix-lexicon-no-language", "Lexicon('', 'en', {'chat': 'cat'})",
         lambda c: Lexicon("", "en", {"chat": "cat"}), ParameterError, "language code"),
    # --- code_mix, coverage -------------------------------------------------------------------
    Case("codemix-mix-one-string", "code_mix('Le chat dort.', lex, 0.5)",
         lambda c: code_mix("Le chat dort.", LEX, 0.5), InvalidTextError,
         r"wrap one text in a list"),
    Case("codemix-mix-no-texts", "code_mix([], lex, 0.5)",
         lambda c: code_mix([], LEX, 0.5), EmptyGroupError, "at least one text"),
    Case("codemix-mix-none-text", "code_mix(['Le chat.', None], lex, 0.5)",
         lambda c: code_mix(["Le chat.", None], LEX, 0.5), InvalidTextError,
         "Text 1 is NoneType"),
    Case("codemix-mix-rate-above-one", "code_mix(texts, lex, 1.5)",
         lambda c: code_mix(TEXTS, LEX, 1.5), ParameterError, r"rate must be a number in \[0, 1\]"),
    Case("codemix-mix-rate-negative", "code_mix(texts, lex, -0.1)",
         lambda c: code_mix(TEXTS, LEX, -0.1), ParameterError, "share of all words"),
    Case("codemix-mix-rate-nan", "code_mix(texts, lex, float('nan'))",
         lambda c: code_mix(TEXTS, LEX, math.nan), ParameterError, "rate must be a number"),
    Case("codemix-mix-rate-bool", "code_mix(texts, lex, True)",
         lambda c: code_mix(TEXTS, LEX, True), ParameterError, "rate must be a number"),
    Case("codemix-mix-rate-percent", "code_mix(texts, lex, 25)",
         lambda c: code_mix(TEXTS, LEX, 25), ParameterError, r"\[0, 1\]"),
    Case("codemix-mix-dict-lexicon", "code_mix(texts, {'chat': 'cat'}, 0.5)",
         lambda c: code_mix(TEXTS, {"chat": "cat"}, 0.5), ParameterError,
         r"Lexicon\(base, mixed, \{word: replacement\}\)"),
    Case("codemix-mix-seed-negative", "code_mix(texts, lex, 0.5, seed=-1)",
         lambda c: code_mix(TEXTS, LEX, 0.5, seed=-1), ParameterError,
         "seed must be an integer >= 0"),
    Case("codemix-mix-seed-float", "code_mix(texts, lex, 0.5, seed=0.5)",
         lambda c: code_mix(TEXTS, LEX, 0.5, seed=0.5), ParameterError,
         "seed must be an integer"),
    Case("codemix-mix-no-words", "code_mix(['', '42.'], lex, 1.0)",
         lambda c: code_mix(["", "42."], LEX, 1.0), check=unchanged_and_zero),
    Case("codemix-coverage-no-words", "coverage(['42 !'], lex)",
         lambda c: coverage(["42 !"], LEX), InvalidTextError, "no word"),
    Case("codemix-coverage-bytes", "coverage([b'Le chat'], lex)",
         lambda c: coverage([b"Le chat"], LEX), InvalidTextError, "not a string"),
    # --- active_sets, specialisation_iou, plot ------------------------------------------------
    Case("codemix-sets-share-zero", "active_sets(stats, share=0)",
         lambda c: active_sets(c.stats, share=0), ParameterError,
         r"share must be a number in \(0, 1\]"),
    Case("codemix-sets-share-percent", "active_sets(stats, share=90)",
         lambda c: active_sets(c.stats, share=90), ParameterError, "share"),
    Case("codemix-sets-rule-unknown", "active_sets(stats, rule='cumulative')",
         lambda c: active_sets(c.stats, rule="cumulative"), ParameterError,
         "rule must be 'coverage' or 'top_k'"),
    Case("codemix-sets-top-k-without-k", "active_sets(stats, rule='top_k')",
         lambda c: active_sets(c.stats, rule="top_k"), ParameterError, "needs k"),
    Case("codemix-sets-k-without-top-k", "active_sets(stats, k=100)",
         lambda c: active_sets(c.stats, k=100), ParameterError, "rule='top_k'"),
    Case("codemix-sets-k-too-large", "active_sets(stats, rule='top_k', k=10**6)",
         lambda c: active_sets(c.stats, rule="top_k", k=10**6), ParameterError,
         "exceeds the 2048 units"),
    Case("codemix-sets-of-neuron-sets", "active_sets(lape(stats))",
         lambda c: active_sets(c.sets), ParameterError, r"ln\.collect\(model, corpus\)"),
    Case("codemix-iou-other-shape", "specialisation_iou(stats, stats of 2 layers)",
         lambda c: specialisation_iou(c.stats, two_layers(c)),
         ShapeMismatchError, "same model and site"),
    Case("codemix-iou-other-model", "specialisation_iou(stats, stats of another model)",
         lambda c: specialisation_iou(c.stats, other_model(c)), ModelMismatchError,
         "different models"),
    Case("codemix-iou-bf16-and-fp32", "specialisation_iou(stats on the model in bf16, "
         "stats on it in fp32)",
         lambda c: specialisation_iou(in_bf16(c), c.stats), check=same_as_fp32),
    Case("codemix-iou-other-weights", "specialisation_iou(stats, stats of a model of the same "
         "shape, other weights)",
         lambda c: specialisation_iou(c.stats, other_weights(c)), ModelMismatchError,
         "different models"),
    Case("codemix-iou-remove-shared-string", "specialisation_iou(s, s, remove_shared='yes')",
         lambda c: specialisation_iou(c.stats, c.stats, remove_shared="yes"), ParameterError,
         "remove_shared must be True or False"),
    Case("codemix-iou-all-shared", "specialisation_iou(one, one, remove_shared=True)",
         lambda c: specialisation_iou(c.stats.select(["fr"]), c.stats.select(["fr"]),
                                      remove_shared=True), check=all_nan),
    Case("codemix-plot-unnamed-groups", "plot_specialisation(table with mixed='fr')",
         lambda c: plot_specialisation(TABLE.assign(mixed="fr")), ParameterError,
         r"mixed_group\(base, mixed, rate\)"),
    Case("codemix-plot-not-a-table", "plot_specialisation({'iou': [1.0]})",
         lambda c: plot_specialisation({"iou": [1.0]}), ParameterError,
         r"specialisation_iou\(\.\.\.\)"),
    Case("codemix-plot-too-many-bands", "plot_specialisation(one-layer table, bands=3)",
         lambda c: plot_specialisation(TABLE, bands=3), ParameterError, "exceeds the 1 layers"),
    Case("codemix-plot-rates-list", "plot_specialisation(table, rates=[0.5])",
         lambda c: plot_specialisation(TABLE, rates=[0.5]), ParameterError,
         r"rates must be a dict \{mixed group: rate\}"),
    Case("codemix-plot-rates-nan", "plot_specialisation(table, rates={'fr+en@1': nan})",
         lambda c: plot_specialisation(TABLE, rates={"fr+en@1": math.nan}), ParameterError,
         "must be a finite number"),
    Case("codemix-plot-zero-bands", "plot_specialisation(table, bands=0)",
         lambda c: plot_specialisation(TABLE, bands=0), ParameterError,
         "bands must be an integer >= 1"),
]


@pytest.mark.parametrize("case", _catalog.params(CASES))
def test_case(case, bad):
    _catalog.run_case(case, bad, _catalog.area_of(__name__))
