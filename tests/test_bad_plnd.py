"""Bad inputs to PLND (detect/plnd.py) and its result (see tests/_catalog.py)."""

from __future__ import annotations

import _catalog
import _models
import pytest
import torch
from _catalog import Case

import lensneurons as ln
from lensneurons.errors import (
    ModelMismatchError,
    ParameterError,
    ResultNotFoundError,
    ShortDocumentError,
    TooFewGroupsError,
    UnknownSiteError,
    UnsupportedModelError,
)

TEXTS = {"en": ["The cat sleeps on the mat.", "A dog runs in the park."],
         "fr": ["Le chat dort sur le tapis.", "Un chien court dans le parc."]}


def corpus(texts=None):
    return ln.Corpus.from_texts(texts or TEXTS)


def run(c, data=None, **kwargs):
    kwargs.setdefault("sites", ("mlp", "attn.v"))
    return ln.plnd(c.model, corpus(data), progress=False, **kwargs)


def result(c):
    """One small PLND result of the organism, computed once per session."""
    if "plnd" not in c.extra:
        c.extra["plnd"] = run(c)
    return c.extra["plnd"]


def biased_scores(c):
    """Attention scores that are not a scaled q k^T (as with soft caps or ALiBi)."""
    def bias(scores, hook):
        return scores + torch.linspace(0, 1, scores.shape[-1])

    with c.model.hooks(fwd_hooks=[(f"blocks.{layer}.attn.hook_attn_scores", bias)
                                  for layer in range(c.model.cfg.n_layers)]):
        return run(c, sites=("attn.q",))


def saved_then_loaded(c, model):
    folder = c.tmp_path / "plnd-saved"
    if not folder.exists():
        result(c).save(folder)
    return ln.PLNDResult.load(folder, model=model)


def response_only(c):
    examples = {"en": [("Q: the cat? A:", " The cat sleeps on the mat.")] * 2,
                "fr": [("Q: le chat ? R :", " Le chat dort sur le tapis.")] * 2}
    return ln.plnd(c.model, ln.Corpus.from_examples(examples), sites=("mlp",), progress=False)


def two_documents_each(res, c):
    assert res.n_docs.tolist() == [2, 2]


def small_model():
    return _models.build(_models.ARCHS[0])


CASES = [
    Case("plnd-short-document", "plnd(model, corpus with the text '.')",
         lambda c: run(c, {"en": ["."] + TEXTS["en"], "fr": TEXTS["fr"]}),
         ShortDocumentError, "at least 2"),
    Case("plnd-token-cap-1", "plnd(model, corpus, max_tokens_per_group=1)",
         lambda c: run(c, max_tokens_per_group=1), ShortDocumentError, "Drop or merge"),
    Case("plnd-one-group", "plnd(model, a corpus with one group)",
         lambda c: run(c, {"en": TEXTS["en"]}), TooFewGroupsError, "at least two groups"),
    Case("plnd-top-rate-0", "plnd(..., top_rate=0)",
         lambda c: run(c, top_rate=0), ParameterError, r"\(0, 1\]"),
    Case("plnd-top-rate-1.5", "plnd(..., top_rate=1.5)",
         lambda c: run(c, top_rate=1.5), ParameterError, r"\(0, 1\]"),
    Case("plnd-top-rate-nan", "plnd(..., top_rate=float('nan'))",
         lambda c: run(c, top_rate=float("nan")), ParameterError, r"\(0, 1\]"),
    Case("plnd-top-rate-no-unit", "plnd(..., top_rate=1e-6)",
         lambda c: run(c, top_rate=1e-6), ParameterError, "activates no unit"),
    Case("plnd-top-rate-missing-site", "plnd(..., top_rate={'mlp': 0.1})",
         lambda c: run(c, top_rate={"mlp": 0.1}), ParameterError, "one per site"),
    Case("plnd-doc-frequency-0", "plnd(..., doc_frequency=0)",
         lambda c: run(c, doc_frequency=0), ParameterError, "doc_frequency"),
    Case("plnd-doc-frequency-bool", "plnd(..., doc_frequency=True)",
         lambda c: run(c, doc_frequency=True), ParameterError, "doc_frequency"),
    Case("plnd-unknown-site", "plnd(..., sites=('attn.o',))",
         lambda c: run(c, sites=("attn.o",)), UnknownSiteError, "known sites"),
    Case("plnd-sites-string", "plnd(..., sites='mlp')",
         lambda c: run(c, sites="mlp"), ParameterError, "list of site names"),
    Case("plnd-sites-empty", "plnd(..., sites=())",
         lambda c: run(c, sites=()), ParameterError, "non-empty"),
    Case("plnd-sites-twice", "plnd(..., sites=('mlp', 'mlp'))",
         lambda c: run(c, sites=("mlp", "mlp")), ParameterError, "twice"),
    Case("plnd-variant", "plnd(..., variant='released')",
         lambda c: run(c, variant="released"), ParameterError, "reference-code"),
    Case("plnd-batch-size-0", "plnd(..., batch_size=0)",
         lambda c: run(c, batch_size=0), ParameterError, "batch_size"),
    Case("plnd-biased-scores", "plnd(..., sites=('attn.q',)) on scores that are not c q k^T",
         biased_scores, UnsupportedModelError, "sites=\\('mlp', 'attn.v'\\)"),
    Case("plnd-response-only", "plnd(model, Corpus.from_examples(...))",
         response_only, check=two_documents_each),
    Case("plnd-sets-unscored-site", "result.neuron_sets('attn.q') after sites=('mlp', 'attn.v')",
         lambda c: result(c).neuron_sets("attn.q"), UnknownSiteError, "sites="),
    Case("plnd-sets-doc-frequency-2", "result.neuron_sets('mlp', doc_frequency=2)",
         lambda c: result(c).neuron_sets("mlp", 2), ParameterError, r"\(0, 1\]"),
    Case("plnd-sets-exclude", "result.neuron_sets('mlp', exclude='none')",
         lambda c: result(c).neuron_sets("mlp", exclude="none"), ParameterError, "'any'"),
    Case("plnd-load-missing", "PLNDResult.load('nothing-here')",
         lambda c: ln.PLNDResult.load(c.tmp_path / "nothing-here"), ResultNotFoundError,
         "holds no saved plnd"),
    Case("plnd-load-other-model", "PLNDResult.load(path, model=another model)",
         lambda c: saved_then_loaded(c, small_model()), ModelMismatchError, "Load it against"),
    Case("plnd-load-same-model", "PLNDResult.load(path, model=model)",
         lambda c: saved_then_loaded(c, c.model),
         check=lambda res, c: torch.equal(res.counts["mlp"], result(c).counts["mlp"])
         or pytest.fail()),
]


@pytest.mark.parametrize("case", _catalog.params(CASES))
def test_case(case, bad):
    _catalog.run_case(case, bad, _catalog.area_of(__name__))
