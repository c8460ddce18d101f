"""Bad inputs to gradient attribution and the CULNIG selection (see tests/_catalog.py)."""

from __future__ import annotations

import _catalog
import _models
import pytest
import torch
from _catalog import Case

import lensneurons as ln
from lensneurons.errors import (
    ContextLengthError,
    EmptyGroupError,
    EmptyTokenizationError,
    GradientUnavailableError,
    InvalidTextError,
    ParameterError,
    ResultNotFoundError,
    ShapeMismatchError,
    TooFewGroupsError,
    UnknownGroupError,
    UnknownSiteError,
    VocabularyError,
)

ITEMS = [("Le chat dort", " sur"), ("The cat", " sleeps")]


def run(c, items=ITEMS, **kw):
    return ln.attribution(c.model, items, **{"sites": ("mlp",), "progress": False, **kw})


def same_as_plain(result, c):
    torch.testing.assert_close(result["mlp"], run(c)["mlp"])


def frozen(c):
    flags = [p.requires_grad for p in c.model.parameters()]
    try:
        for p in c.model.parameters():
            p.requires_grad_(False)
        return run(c)
    finally:
        for p, flag in zip(c.model.parameters(), flags):
            p.requires_grad_(flag)


def under(context):
    def go(c):
        with context():
            return run(c)
    return go


def inference_weights(c):
    with torch.inference_mode():
        model = _models.build(_models.ARCHS[0], seed=4242)
    return ln.attribution(model, ITEMS, progress=False)


def scores(shape=(2, 8), sites=("mlp",)):
    gen = torch.Generator().manual_seed(len(sites))
    return ln.AttributionScores({s: torch.rand(shape, generator=gen) for s in sites}, n_items=1)


def select(**kw):
    q = {"jp": scores(), "mx": scores()}
    return ln.culture_neurons(q, scores(), None, **{"general_mlp_rate": 0.25,
                                                    "specific_rate": 0.25, **kw})


CASES = [
    Case("empty-answer", "attribution(model, [('Le chat', '')])",
         lambda c: run(c, [("Le chat", "")]), EmptyTokenizationError, "tokenizes to nothing"),
    Case("no-items", "attribution(model, [])", lambda c: run(c, []), EmptyGroupError,
         "at least one"),
    Case("items-a-string", "attribution(model, 'Le chat')", lambda c: run(c, "Le chat"),
         InvalidTextError, "list of AttributionItem"),
    Case("answer-none", "attribution(model, [('Le chat', None)])",
         lambda c: run(c, [("Le chat", None)]), InvalidTextError, "answer text or its token id"),
    Case("answer-id-outside-vocab", "attribution(model, [('Le chat', 10**9)])",
         lambda c: run(c, [("Le chat", 10**9)]), VocabularyError, "outside the vocabulary"),
    Case("prompt-too-long", "attribution(model, [('mot ' * 5000, ' x')])",
         lambda c: run(c, [("mot " * 5000, " x")]), ContextLengthError, "Shorten"),
    Case("unknown-target", "attribution(model, items, target='nll')",
         lambda c: run(c, target="nll"), ParameterError, "prob"),
    Case("unknown-site", "attribution(model, items, sites=('mlp.out',))",
         lambda c: run(c, sites=("mlp.out",)), UnknownSiteError, "known sites"),
    Case("zero-batch", "attribution(model, items, batch_size=0)",
         lambda c: run(c, batch_size=0), ParameterError, "batch_size"),
    Case("frozen-weights", "attribution(model whose parameters do not require grad, items)",
         frozen, check=same_as_plain),
    Case("under-no-grad", "with torch.no_grad(): attribution(model, items)",
         under(torch.no_grad), check=same_as_plain),
    Case("under-inference-mode", "with torch.inference_mode(): attribution(model, items)",
         under(torch.inference_mode), check=same_as_plain),
    Case("inference-tensor-weights", "attribution(a model loaded inside inference_mode, items)",
         inference_weights, GradientUnavailableError, "outside inference_mode"),
    Case("top-zero", "scores.top(0)", lambda c: scores().top(0), ParameterError, r"\(0, 1\]"),
    Case("top-tiny", "scores.top(0.001) on 16 units", lambda c: scores().top(0.001),
         ParameterError, "at least one unit"),
    Case("top-unscored-site", "scores.top(0.1, site='attn.q') on MLP scores",
         lambda c: scores().top(0.1, site="attn.q"), UnknownSiteError, "scored sites"),
    Case("load-missing", "AttributionScores.load(empty folder)",
         lambda c: ln.AttributionScores.load(c.tmp_path / "no-scores"), ResultNotFoundError),
    Case("culture-rate-zero", "culture_neurons(..., general_mlp_rate=0)",
         lambda c: select(general_mlp_rate=0), ParameterError, r"\(0, 1\]"),
    Case("culture-rate-above-one", "culture_neurons(..., exclude_rate=1.5)",
         lambda c: select(exclude_rate=1.5), ParameterError, "exclude_rate"),
    Case("culture-z-nan", "culture_neurons(..., z_threshold=nan)",
         lambda c: select(z_threshold=float("nan")), ParameterError, "finite"),
    Case("culture-rate-selects-nothing", "culture_neurons(..., specific_rate=0.01) on 16 units",
         lambda c: select(specific_rate=0.01), ParameterError, "at least one unit"),
    Case("culture-one", "culture_neurons({'jp': s}, control, None)",
         lambda c: ln.culture_neurons({"jp": scores()}, scores(), None), TooFewGroupsError,
         "two cultures"),
    Case("culture-control-missing", "culture_neurons({'jp', 'mx'}, {'jp': control}, None)",
         lambda c: ln.culture_neurons({"jp": scores(), "mx": scores()}, {"jp": scores()}, None),
         UnknownGroupError, "one per culture"),
    Case("culture-shapes-differ", "culture_neurons with a [2, 8] and a [3, 8] score",
         lambda c: ln.culture_neurons({"jp": scores(), "mx": scores((3, 8))}, scores(), None),
         ShapeMismatchError, "same sites"),
]


@pytest.mark.parametrize("case", _catalog.params(CASES))
def test_case(case, bad):
    _catalog.run_case(case, bad, _catalog.area_of(__name__))
