"""Bad inputs to residual directions and to steering with them (_catalog.py)."""

from __future__ import annotations

from dataclasses import replace

import _catalog
import pytest
import torch
from _catalog import Case

import lensneurons as ln
from lensneurons.errors import (
    LayerIndexError,
    MissingStatisticError,
    ModelMismatchError,
    ParameterError,
    ShapeMismatchError,
    TooFewGroupsError,
    UnknownGroupError,
    UnknownSiteError,
)


def resid(c, **options):
    """Residual statistics of the catalog's corpus (computed once per option set)."""
    key = ("resid", tuple(sorted(options.items())))
    if key not in c.extra:
        texts = {lang: lines[:8] for lang, lines in ln.organism.texts("heldout").items()}
        c.extra[key] = ln.collect(c.model, ln.Corpus.from_texts(texts), site="resid",
                                  progress=False, **options)
    return c.extra[key]


def direction(c, target="fr"):
    return ln.diffmean_directions(resid(c), target)


def with_vectors(c, change):
    d = direction(c)
    vectors = d.vectors.clone()
    change(vectors)
    return replace(d, vectors=vectors)


def nan_vectors(vectors):
    vectors[0, 0] = float("nan")


def small_corpus():
    return ln.Corpus.from_texts({"en": ["The cat sleeps on the mat."],
                                 "fr": ["Le chat dort.", "Il pleut."]})


CASES = [
    Case("directions-mlp-stats", "diffmean_directions(mlp_stats, 'fr')",
         lambda c: ln.diffmean_directions(c.stats, "fr"), UnknownSiteError, r"site='resid'"),
    Case("directions-no-sums", "diffmean_directions(collect(..., site='resid', "
         "value_stats=False), 'fr')",
         lambda c: ln.diffmean_directions(resid(c, value_stats=False), "fr"),
         MissingStatisticError, r"value_stats=True"),
    Case("directions-unknown-target", "diffmean_directions(stats, 'xx')",
         lambda c: ln.diffmean_directions(resid(c), "xx"), UnknownGroupError, r"No group"),
    Case("directions-unknown-against", "diffmean_directions(stats, 'fr', against='xx')",
         lambda c: ln.diffmean_directions(resid(c), "fr", against="xx"), UnknownGroupError,
         r"No group"),
    Case("directions-against-target", "diffmean_directions(stats, 'fr', against=['fr'])",
         lambda c: ln.diffmean_directions(resid(c), "fr", against=["fr"]), ParameterError,
         r"must not hold the target"),
    Case("directions-one-group", "diffmean_directions(stats.select(['fr']), 'fr')",
         lambda c: ln.diffmean_directions(resid(c).select(["fr"]), "fr"), TooFewGroupsError,
         r"Collect at least two groups"),
    Case("directions-not-stats", "diffmean_directions({'fr': ...}, 'fr')",
         lambda c: ln.diffmean_directions({"fr": torch.zeros(3)}, "fr"), ParameterError,
         r"reads ActivationStats"),
    Case("directions-pca-one-sequence", "pca_directions(model, corpus_with_one_en_text, 'fr')",
         lambda c: ln.pca_directions(c.model, small_corpus(), "fr", progress=False),
         ParameterError, r"at least two sequences per group"),
    Case("directions-pca-components-zero", "pca_directions(model, corpus, 'fr', n_components=0)",
         lambda c: ln.pca_directions(c.model, small_corpus(), "fr", n_components=0,
                                     progress=False), ParameterError, r"n_components"),
    Case("directions-nan", "Directions(vectors with a NaN, ...)",
         lambda c: with_vectors(c, nan_vectors), ParameterError, r"NaN or inf in vectors"),
    Case("directions-wrong-shape", "Directions(vectors=[layer, d], gap=[layer + 1], ...)",
         lambda c: replace(direction(c), gap=torch.ones(9)), ParameterError,
         r"one gap and residual norm per layer"),
    Case("direction-layer-out-of-range", "add_direction(d, 1.0, layer=4)",
         lambda c: ln.add_direction(direction(c), 1.0, layer=4, model=c.model), LayerIndexError,
         r"not one of the directions' 4 layers"),
    Case("direction-layer-float", "add_direction(d, 1.0, layer=1.0)",
         lambda c: ln.add_direction(direction(c), 1.0, layer=1.0), LayerIndexError,
         r"layer=1.0"),
    Case("direction-strength-nan", "add_direction(d, nan, layer=1)",
         lambda c: ln.add_direction(direction(c), float("nan"), layer=1), ParameterError,
         r"strength must be a finite number"),
    Case("direction-not-directions", "add_direction(neuron_set, 1.0, layer=1)",
         lambda c: ln.add_direction(c.sets["fr"], 1.0, layer=1), ParameterError,
         r"needs Directions"),
    Case("direction-other-width", "add_direction(directions_of_a_wider_model, 1.0, layer=1, "
         "model=model)",
         lambda c: ln.add_direction(replace(direction(c), vectors=torch.ones(4, 256)
                                            / 16), 1.0, layer=1, model=c.model),
         ShapeMismatchError, r"Make the directions on this model"),
    Case("direction-other-weights", "add_direction(d, 1.0, layer=1, model=same_shape_other)",
         lambda c: ln.add_direction(direction(c), 1.0, layer=1,
                                    model=_catalog.same_shape_model()),
         ModelMismatchError, r"other weights"),
    Case("direction-other-width-unchecked", "model.run_with_hooks(x, fwd_hooks="
         "add_direction(wider, 1.0, layer=1))",
         lambda c: c.model.run_with_hooks(
             "Hello", fwd_hooks=ln.add_direction(replace(direction(c), vectors=torch.ones(
                 4, 256) / 16), 1.0, layer=1)), ShapeMismatchError, r"residual stream of width"),
    Case("direction-more-layers-unchecked", "model.run_with_hooks(x, fwd_hooks="
         "add_direction(eight_layer_directions, 1.0, layer=7))",
         lambda c: c.model.run_with_hooks(
             "Hello", fwd_hooks=ln.add_direction(replace(
                 direction(c), vectors=torch.ones(8, c.model.cfg.d_model) / 8,
                 gap=torch.ones(8), resid_norm=torch.ones(8)), 1.0, layer=7)),
         ShapeMismatchError, r"blocks"),
    Case("direction-positions-empty", "add_direction(d, 1.0, layer=1, positions=[])",
         lambda c: ln.add_direction(direction(c), 1.0, layer=1, positions=[]), ParameterError,
         r"selects no position"),
]


@pytest.mark.parametrize("case", _catalog.params(CASES))
def test_case(case, bad):
    _catalog.run_case(case, bad, _catalog.area_of(__name__))
