"""Bad inputs to the plots, token views and the written sample (tests/_catalog.py)."""

from __future__ import annotations

import _catalog
import pytest
from _catalog import Case

import lensneurons as ln
from lensneurons.corpora.sample import load_sample
from lensneurons.errors import InvalidTextError, ParameterError, UnknownGroupError

FRENCH = "Le chat dort sur le tapis."

CASES = [
    Case("save-html-number", 'viz.save_html(3, "page.html")',
         lambda c: ln.viz.save_html(3, c.tmp_path / "page.html"), ParameterError,
         "HTML string"),
    Case("token-activity-list", 'viz.token_activity_table(model, text, [sets["fr"]])',
         lambda c: ln.viz.token_activity_table(c.model, FRENCH, [c.sets["fr"]]),
         ParameterError, "NeuronSets"),
    Case("token-activity-bytes", 'viz.token_activity(model, b"Le chat", sets)',
         lambda c: ln.viz.token_activity(c.model, FRENCH.encode(), c.sets), InvalidTextError,
         "string"),
    Case("overlap-kind", 'sets.overlap(kind="jaccard")',
         lambda c: c.sets.overlap(kind="jaccard"), ParameterError, "'iou' or 'count'"),
    Case("sample-split", 'corpora.sample.load_sample(split="test")',
         lambda c: load_sample(split="test"), ParameterError, "'train', 'heldout' or 'all'"),
    Case("sample-language", 'corpora.sample.load_sample(["xx"])',
         lambda c: load_sample(["xx"]), UnknownGroupError, "not in the written sample"),
]


@pytest.mark.parametrize("case", _catalog.params(CASES))
def test_case(case, bad):
    _catalog.run_case(case, bad, _catalog.area_of(__name__))
