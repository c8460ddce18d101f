"""Bad inputs to perplexity, perplexity_matrix and the changes computed from it (_catalog.py)."""

from __future__ import annotations

import math

import _catalog
import pandas as pd
import pytest
import torch
from _catalog import Case

import lensneurons as ln
from lensneurons.errors import (
    ContextLengthError,
    EmptyTokenizationError,
    ParameterError,
    ShapeMismatchError,
    UnknownGroupError,
)
from lensneurons.evaluate.nll import PerplexityMatrix

TEXTS = {"en": ["The cat sleeps on the mat.", "A dog barks at night."],
         "fr": ["Le chat dort sur le tapis.", "Un chien aboie la nuit."]}
MATRIX = pd.DataFrame({"en": [3.0, 3.1, 3.0], "fr": [4.0, 4.6, 4.1]},
                      index=["none", "fr", "random:fr"])


def with_attrs():
    """A DataFrame carrying per-sequence data in attrs, as perplexity_matrix once returned."""
    frame = MATRIX.copy()
    frame.attrs = {"per_sequence": {row: ln.evaluate.SequenceNLL(("en",), ["en"], [3.0], [1])
                                    for row in frame.index}}
    return frame


def corpus(**options):
    return ln.Corpus.from_texts(TEXTS, **options)


def full_layer(c):
    """NeuronSets whose 'fr' set is the whole of block 0's MLP."""
    mask = torch.zeros(c.model.cfg.n_layers, c.model.cfg.d_mlp, dtype=torch.bool)
    mask[0] = True
    return ln.NeuronSets({"fr": ln.NeuronSet.from_mask(mask, gated=True)})


def hurts_without_baseline(matrix, c):
    assert list(matrix.table().index) == ["none", "fr"]
    assert (ln.nll_delta(matrix).loc["fr"] > 0.1).all()  # a whole MLP off hurts every group


def counts_predicted_tokens(result, c):
    """One text per group and window: every token but the first is predicted and counted."""
    table = result.table()
    expected = [sum(len(c.model.to_tokens(t)[0]) - 1 for t in TEXTS[g]) for g in TEXTS]
    assert table["n_tokens"].tolist() == expected
    assert (table["ppl"] > 1.5).all()


def no_ratio_without_others(result):
    """With no other group to compare with, the ratio is NaN (it once read inf)."""
    assert result.index.tolist() == ["fr"] and math.isnan(result["fr"])


CASES = [
    # --- perplexity -------------------------------------------------------------------------
    Case("evaluate-zero-predicted-tokens",
         "perplexity(model, Corpus.from_texts(t, count_bos=True), max_tokens_per_group=1)",
         lambda c: ln.perplexity(c.model, corpus(count_bos=True), max_tokens_per_group=1,
                                 progress=False),
         EmptyTokenizationError, r"no token to predict.*perfect 1\.0"),
    Case("evaluate-batch-size-zero", "perplexity(model, corpus, batch_size=0)",
         lambda c: ln.perplexity(c.model, corpus(), batch_size=0, progress=False),
         ParameterError, "batch_size must be an integer >= 1"),
    Case("evaluate-batch-size-negative", "perplexity(model, corpus, batch_size=-2)",
         lambda c: ln.perplexity(c.model, corpus(), batch_size=-2, progress=False),
         ParameterError, "batch_size"),
    Case("evaluate-batch-size-float", "perplexity(model, corpus, batch_size=4.0)",
         lambda c: ln.perplexity(c.model, corpus(), batch_size=4.0, progress=False),
         ParameterError, "batch_size must be an integer"),
    Case("evaluate-max-tokens-zero", "perplexity(model, corpus, max_tokens_per_group=0)",
         lambda c: ln.perplexity(c.model, corpus(), max_tokens_per_group=0, progress=False),
         ParameterError, "max_tokens_per_group"),
    Case("evaluate-window-past-context", "perplexity(model, Corpus.from_texts(t, window=512))",
         lambda c: ln.perplexity(c.model, corpus(window=512), progress=False),
         ContextLengthError, "window <= 256"),
    Case("evaluate-corpus-dict", "perplexity(model, {'en': [...]})",
         lambda c: ln.perplexity(c.model, TEXTS, progress=False), ParameterError,
         r"ln\.Corpus\.from_texts"),
    Case("evaluate-hooks-neuron-set", "perplexity(model, corpus, fwd_hooks=sets['fr'])",
         lambda c: ln.perplexity(c.model, corpus(), fwd_hooks=c.sets["fr"], progress=False),
         ParameterError, r"ln\.deactivate\(neurons\['fr'\]\)"),
    Case("evaluate-hook-name-typo", "perplexity(model, corpus, fwd_hooks=[('blocks.99.x', f)])",
         lambda c: ln.perplexity(c.model, corpus(), fwd_hooks=[("blocks.99.x", lambda x, hook: x)],
                                 progress=False),
         ParameterError, "hook points this model does not have"),
    Case("evaluate-perplexity-batch-of-one", "perplexity(model, corpus, batch_size=1)",
         lambda c: ln.perplexity(c.model, corpus(), batch_size=1, progress=False),
         check=counts_predicted_tokens),
    # --- perplexity_matrix ------------------------------------------------------------------
    Case("evaluate-matrix-one-set", "perplexity_matrix(model, corpus, sets['fr'])",
         lambda c: ln.perplexity_matrix(c.model, corpus(), c.sets["fr"], progress=False),
         ParameterError, "neurons must be NeuronSets"),
    Case("evaluate-random-baseline-full-layer", "perplexity_matrix(model, corpus, full_layer)",
         lambda c: ln.perplexity_matrix(c.model, corpus(), full_layer(c), progress=False),
         ParameterError, r"No random baseline for group 'fr'.*random_baseline=False"),
    Case("evaluate-full-layer-no-baseline",
         "perplexity_matrix(model, corpus, full_layer, random_baseline=False)",
         lambda c: ln.perplexity_matrix(c.model, corpus(), full_layer(c), random_baseline=False,
                                        progress=False),
         check=hurts_without_baseline),
    Case("evaluate-matrix-seed-float", "perplexity_matrix(model, corpus, sets, seed=0.5)",
         lambda c: ln.perplexity_matrix(c.model, corpus(), c.sets, seed=0.5, progress=False),
         ParameterError, "seed must be an integer"),
    # --- nll_delta, specificity ---------------------------------------------------------------
    Case("evaluate-delta-no-none-row", "nll_delta(matrix.drop('none'))",
         lambda c: ln.nll_delta(MATRIX.drop("none")), ParameterError, "'none' row"),
    Case("evaluate-delta-not-a-frame", "nll_delta({'none': 1.0})",
         lambda c: ln.nll_delta({"none": 1.0}), ParameterError, "DataFrame"),
    Case("evaluate-delta-frame-with-attrs",
         "nll_delta(frame) where frame.attrs['per_sequence'] holds the former hidden channel",
         lambda c: ln.nll_delta(with_attrs()), ParameterError,
         "Pass the PerplexityMatrix that ln.perplexity_matrix returns"),
    Case("evaluate-specificity-frame-with-attrs",
         "specificity(delta) where delta.attrs['per_sequence'] is set",
         lambda c: ln.specificity(with_attrs() - with_attrs().loc["none"]), ParameterError,
         "Pass the PerplexityMatrix"),
    Case("evaluate-select-unknown-row", "matrix.select(['none', 'de'])",
         lambda c: PerplexityMatrix(MATRIX).select(["none", "de"]),
         UnknownGroupError, r"no row or column \['de'\]"),
    Case("evaluate-specificity-of-perplexity-matrix", "specificity(PerplexityMatrix(matrix))",
         lambda c: ln.specificity(PerplexityMatrix(MATRIX)),
         check=lambda result, c: no_ratio_without_others(result)),
    Case("evaluate-delta-interval-one", "nll_delta(matrix, interval=1)",
         lambda c: ln.nll_delta(MATRIX, interval=1), ParameterError, r"\(0, 1\)"),
    Case("evaluate-delta-interval-nan", "nll_delta(matrix, interval=float('nan'))",
         lambda c: ln.nll_delta(MATRIX, interval=math.nan), ParameterError, "interval"),
    Case("evaluate-delta-n-boot-float", "nll_delta(matrix, interval=0.9, n_boot=2.5)",
         lambda c: ln.nll_delta(MATRIX, interval=0.9, n_boot=2.5), ParameterError,
         "n_boot must be an integer"),
    Case("evaluate-delta-seed-negative", "nll_delta(matrix, interval=0.9, seed=-1)",
         lambda c: ln.nll_delta(MATRIX, interval=0.9, seed=-1), ParameterError,
         "seed must be an integer >= 0"),
    Case("evaluate-sequence-nll-lengths", "SequenceNLL(('en',), ['en'], [1.0, 2.0], [3, 4])",
         lambda c: ln.evaluate.SequenceNLL(("en",), ["en"], [1.0, 2.0], [3, 4]),
         ShapeMismatchError, "one entry per sequence"),
    Case("evaluate-specificity-of-matrix", "specificity(matrix)",
         lambda c: ln.specificity(MATRIX), ParameterError, r"Pass ln\.nll_delta\(matrix\)"),
    Case("evaluate-specificity-one-group", "specificity(nll_delta(matrix[['fr']]))",
         lambda c: ln.specificity(ln.nll_delta(MATRIX[["fr"]])),
         check=lambda result, c: no_ratio_without_others(result)),
]


@pytest.mark.parametrize("case", _catalog.params(CASES))
def test_case(case, bad):
    _catalog.run_case(case, bad, _catalog.area_of(__name__))
