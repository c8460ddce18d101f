"""Bad inputs to gradient attribution and the CULNIG selection (see tests/_catalog.py)."""

from __future__ import annotations

import _catalog
import _models
import numpy as np
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
    ModelMismatchError,
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
    return ln.culture_neurons(q, scores(), None, **{"general_mlp_top_rate": 0.25,
                                                    "specific_top_rate": 0.25, **kw})


def answer_id(c, answer=" sur"):
    return int(c.model.to_tokens(answer, prepend_bos=False)[0, 0])


def same_as_int_id(result, c):
    torch.testing.assert_close(result["mlp"], run(c, [("Le chat dort", answer_id(c))])["mlp"])


def fingerprint(c, dtype=None, shift=0.0):
    """The organism's fingerprint; its embedding slice rounded through ``dtype``, or moved."""
    fp = ln.ModelView(c.model).fingerprint()
    values = torch.tensor(fp["embedding_slice"])
    values = values if dtype is None else values.to(dtype).float()
    return {**fp, "embedding_slice": (values + shift).tolist()}


def scored(c, meta=None, shape=(2, 8), fill=None):
    s = scores(shape)
    if fill is not None:
        s.scores["mlp"][1, 3] = fill
    s.meta.update(meta or {})
    return s


def bf16_and_fp32(c):
    """Questions scored on the organism in fp32, controls on the same weights in bf16."""
    q = {"jp": scored(c, {"fingerprint": fingerprint(c)}),
         "mx": scored(c, {"fingerprint": fingerprint(c)})}
    return ln.culture_neurons(q, scored(c, {"fingerprint": fingerprint(c, torch.bfloat16)}),
                              None, general_mlp_top_rate=0.25, specific_top_rate=0.25)


def same_as_unfingerprinted(result, c):
    plain = select()
    assert torch.equal(result.general["mlp"].mask, plain.general["mlp"].mask)
    assert all(torch.equal(result.specific["mlp"][g].mask, plain.specific["mlp"][g].mask)
               for g in ("jp", "mx"))


def other_weights(c):
    q = {"jp": scored(c, {"fingerprint": fingerprint(c)}),
         "mx": scored(c, {"fingerprint": fingerprint(c, shift=0.5)})}
    return ln.culture_neurons(q, scores(), None)


def objectives(q_objective, control_objective):
    q = {"jp": scores(), "mx": scores()}
    for s in q.values():
        s.meta["objective"] = q_objective
    control = scores()
    control.meta["objective"] = control_objective
    return ln.culture_neurons(q, control, None, general_mlp_top_rate=0.25,
                              specific_top_rate=0.25)


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
    Case("unknown-objective", "attribution(model, items, objective='nll')",
         lambda c: run(c, objective="nll"), ParameterError, "prob"),
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
    Case("top-rate-zero", "scores.neuron_sets(top_rate=0)",
         lambda c: scores().neuron_sets(top_rate=0), ParameterError, r"\(0, 1\]"),
    Case("top-rate-tiny", "scores.neuron_sets(top_rate=0.001) on 16 units",
         lambda c: scores().neuron_sets(top_rate=0.001), ParameterError, "at least one unit"),
    Case("top-rate-unscored-site", "scores.neuron_sets(top_rate=0.1, site='attn.q') on MLP scores",
         lambda c: scores().neuron_sets(top_rate=0.1, site="attn.q"), UnknownSiteError,
         "scored sites"),
    Case("load-missing", "AttributionScores.load(empty folder)",
         lambda c: ln.AttributionScores.load(c.tmp_path / "no-scores"), ResultNotFoundError),
    Case("culture-rate-zero", "culture_neurons(..., general_mlp_top_rate=0)",
         lambda c: select(general_mlp_top_rate=0), ParameterError, r"\(0, 1\]"),
    Case("culture-rate-above-one", "culture_neurons(..., exclude_top_rate=1.5)",
         lambda c: select(exclude_top_rate=1.5), ParameterError, "exclude_top_rate"),
    Case("culture-z-nan", "culture_neurons(..., z_threshold=nan)",
         lambda c: select(z_threshold=float("nan")), ParameterError, "finite"),
    Case("culture-rate-selects-nothing",
         "culture_neurons(..., specific_top_rate=0.01) on 16 units",
         lambda c: select(specific_top_rate=0.01), ParameterError, "at least one unit"),
    Case("culture-one", "culture_neurons({'jp': s}, control, None)",
         lambda c: ln.culture_neurons({"jp": scores()}, scores(), None), TooFewGroupsError,
         "two cultures"),
    Case("culture-control-missing", "culture_neurons({'jp', 'mx'}, {'jp': control}, None)",
         lambda c: ln.culture_neurons({"jp": scores(), "mx": scores()}, {"jp": scores()}, None),
         UnknownGroupError, "one per culture"),
    Case("culture-shapes-differ", "culture_neurons with a [2, 8] and a [3, 8] score",
         lambda c: ln.culture_neurons({"jp": scores(), "mx": scores((3, 8))}, scores(), None),
         ShapeMismatchError, "same sites"),
    Case("culture-objectives-mixed",
         "culture_neurons(q scored with objective='prob', control with objective='logprob', "
         "None)",
         lambda c: objectives("prob", "logprob"), ParameterError,
         r"control_scores with objective='logprob'.*not comparable.*same objective"),
    Case("culture-nan-scores", "culture_neurons({'jp': scores with a NaN, 'mx': s}, control, "
         "None)",
         lambda c: ln.culture_neurons({"jp": scored(c, fill=float("nan")), "mx": scores()},
                                      scores(), None),
         ParameterError, r"scores_by_culture\['jp'\] has NaN scores at site 'mlp'"),
    Case("culture-inf-country-scores",
         "culture_neurons(q, control, {'jp': r, 'mx': r with an inf})",
         lambda c: ln.culture_neurons({"jp": scores(), "mx": scores()}, scores(),
                                      {"jp": scores(), "mx": scored(c, fill=float("inf"))}),
         ParameterError, r"country_scores\['mx'\] has infinite scores .* Compute them again"),
    Case("culture-bf16-and-fp32",
         "culture_neurons(q on the model in fp32, control on it in bf16, None)",
         bf16_and_fp32, check=same_as_unfingerprinted),
    Case("culture-other-model", "culture_neurons(q on one model, q on another, ...)",
         other_weights, ModelMismatchError, "different models"),
    Case("answer-id-numpy", "attribution(model, [('Le chat dort', np.int64(token_id))])",
         lambda c: run(c, [("Le chat dort", np.int64(answer_id(c)))]), check=same_as_int_id),
    Case("answer-id-torch", "attribution(model, [AttributionItem('Le chat dort', "
         "torch.tensor(token_id))])",
         lambda c: run(c, [ln.detect.AttributionItem("Le chat dort", torch.tensor(answer_id(c)))]),
         check=same_as_int_id),
    Case("answer-id-float", "attribution(model, [('Le chat dort', 5.0)])",
         lambda c: run(c, [("Le chat dort", 5.0)]), InvalidTextError,
         "answer text or its token id"),
]


@pytest.mark.parametrize("case", _catalog.params(CASES))
def test_case(case, bad):
    _catalog.run_case(case, bad, _catalog.area_of(__name__))
