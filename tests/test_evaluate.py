"""Perplexity and the deactivation matrix against a direct computation."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lensneurons as ln

TEXTS = {"en": ["The cat sleeps on the mat.", "A dog runs."],
         "fr": ["Le chat dort sur le tapis.", "Un chien court."]}


@torch.no_grad()
def direct_nll(model, corpus, group):
    total, count = 0.0, 0
    for seq in corpus.tokenize(model).sequences:
        if seq.group != corpus.groups.index(group):
            continue
        logits = model(seq.tokens[None])[0, :-1]
        nll = F.cross_entropy(logits, seq.tokens[1:], reduction="none")
        total += float(nll[seq.counted[1:]].sum())
        count += int(seq.counted[1:].sum())
    return total / count


def test_perplexity_matches_direct_computation(arch_model):
    corpus = ln.Corpus.from_texts(TEXTS)
    table = ln.perplexity(arch_model, corpus, batch_size=3, progress=False)
    for group in corpus.groups:
        assert table.loc[group, "mean_nll"] == pytest.approx(direct_nll(arch_model, corpus, group),
                                                             rel=1e-4)
    assert table["ppl"].tolist() == pytest.approx(np.exp(table["mean_nll"]).tolist())


def test_perplexity_under_hooks_changes(llama_model):
    corpus = ln.Corpus.from_texts(TEXTS)
    mask = torch.ones(2, 128, dtype=torch.bool)
    clean = ln.perplexity(llama_model, corpus, progress=False)
    broken = ln.perplexity(llama_model, corpus, progress=False,
                           fwd_hooks=ln.deactivate(ln.NeuronSet.from_mask(mask)))
    assert (broken["mean_nll"] != clean["mean_nll"]).all()


def test_matrix_rows_columns_and_helpers(llama_model):
    corpus = ln.Corpus.from_texts(TEXTS)
    stats = ln.collect(llama_model, corpus, progress=False)
    neurons = ln.lape(stats, top_rate=0.05, filter_rate=0.5, bar_ratio=0.5)
    matrix = ln.perplexity_matrix(llama_model, corpus, neurons, progress=False)
    assert list(matrix.index) == ["none", "en", "fr", "random:en", "random:fr"]
    assert list(matrix.columns) == ["en", "fr"]
    clean = ln.perplexity(llama_model, corpus, progress=False)["mean_nll"]
    assert matrix.loc["none"].tolist() == pytest.approx(clean.tolist())
    delta = ln.nll_delta(matrix)
    assert (delta.loc["none"] == 0).all()
    assert ln.ppl_ratio(matrix).loc["fr", "fr"] == pytest.approx(
        float(torch.tensor(delta.loc["fr", "fr"]).exp()))
    fig = ln.viz.plot_matrix(delta)
    assert fig.axes[0].get_ylabel() == "deactivated"
