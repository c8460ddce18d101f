"""Bad inputs to next_token_items and others_mean (attribution language sets; _catalog.py)."""

from __future__ import annotations

import _catalog
import pytest
import torch
from _catalog import Case

import lensneurons as ln
from lensneurons.detect.attribution_sets import next_token_items, others_mean
from lensneurons.errors import (
    InvalidTextError,
    ModelMismatchError,
    ParameterError,
    ShapeMismatchError,
    TooFewGroupsError,
)


def items(c, **kwargs):
    arguments = {"lines": ln.organism.texts("train")["de"], "n_items": 2, **kwargs}
    return next_token_items(c.model, **arguments)


def scores(mlp, fingerprint=None):
    meta = {} if fingerprint is None else {"fingerprint": fingerprint}
    return ln.AttributionScores({"mlp": torch.tensor(mlp)}, n_items=2, meta=meta)


CASES = [
    Case("attrsets-lines-string", "next_token_items(model, 'one line', 2)",
         lambda c: items(c, lines="one line"), InvalidTextError, "list of strings"),
    Case("attrsets-line-number", "next_token_items(model, ['ok', 3], 2)",
         lambda c: items(c, lines=["ok", 3]), InvalidTextError, "list of strings"),
    Case("attrsets-n-items-zero", "next_token_items(model, lines, 0)",
         lambda c: items(c, n_items=0), ParameterError, "n_items"),
    Case("attrsets-min-prompt-zero", "next_token_items(model, lines, 2, min_prompt=0)",
         lambda c: items(c, min_prompt=0), ParameterError, "min_prompt"),
    Case("attrsets-prompt-range", "next_token_items(..., min_prompt=5, max_prompt=4)",
         lambda c: items(c, min_prompt=5, max_prompt=4), ParameterError, "max_prompt"),
    Case("attrsets-seed-float", "next_token_items(..., seed=0.5)",
         lambda c: items(c, seed=0.5), ParameterError, "seed"),
    Case("attrsets-control-one-group", "others_mean({'en': s})",
         lambda c: others_mean({"en": scores([[1.0]])}), TooFewGroupsError, "at least two"),
    Case("attrsets-control-tensor", "others_mean({'en': s, 'de': torch.ones(1, 1)})",
         lambda c: others_mean({"en": scores([[1.0]]), "de": torch.ones(1, 1)}),
         ParameterError, "from ln.attribution"),
    Case("attrsets-control-list", "others_mean([s, s])",
         lambda c: others_mean([scores([[1.0]]), scores([[1.0]])]), ParameterError,
         r"dict \{group: AttributionScores\}"),
    Case("attrsets-control-shapes", "others_mean({'en': [1, 1], 'de': [1, 2]})",
         lambda c: others_mean({"en": scores([[1.0]]), "de": scores([[1.0, 2.0]])}),
         ShapeMismatchError, "score every group with the same m"),
    Case("attrsets-control-models", "others_mean(scores of two models)",
         lambda c: others_mean({"en": scores([[1.0]], "a"), "de": scores([[1.0]], "b")}),
         ModelMismatchError, "different models"),
]


@pytest.mark.parametrize("case", _catalog.params(CASES))
def test_case(case, bad):
    _catalog.run_case(case, bad, _catalog.area_of(__name__))
