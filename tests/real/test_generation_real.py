"""Generation on the real models says what their forward pass says, with and without hooks."""

from __future__ import annotations

import _greedy
import pytest
import torch

import lensneurons as ln
from lensneurons.corpora import forcing_prompts

pytestmark = pytest.mark.real

PROMPTS = ["The capital of France is", *forcing_prompts("en", n=2), "Le chat dort sur"]


def test_gemma_greedy_generation_equals_the_forward_argmax(gemma, gemma_stats):
    _greedy.assert_same_as_forward(gemma, PROMPTS, 12)
    steering = ln.steer(ln.lape(gemma_stats), gemma_stats, None, "fr", alpha=2.0)
    _greedy.assert_same_as_forward(gemma, PROMPTS, 12, steering)


def test_smollm_greedy_generation_equals_the_forward_argmax(smollm):
    mask = torch.rand(smollm.cfg.n_layers, smollm.cfg.d_mlp,
                      generator=torch.Generator().manual_seed(0)) < 0.01
    hooks = ln.amplify(ln.NeuronSet.from_mask(mask, gated=True), 3.0)
    _greedy.assert_same_as_forward(smollm, PROMPTS, 12)
    _greedy.assert_same_as_forward(smollm, PROMPTS, 12, hooks)


def test_gemma_generation_under_a_residual_direction_equals_the_forward_argmax(gemma, gemma_stats):
    """A residual direction pushed after the last block, as the steering comparison uses it."""
    texts = {g: lines[:8] for g, lines in ln.real_stats.texts()[0].items() if g in ("en", "fr")}
    resid = ln.collect(gemma, ln.Corpus.from_texts(texts), site="resid", progress=False)
    towards_fr = ln.diffmean_directions(resid, "fr")
    hooks = ln.add_direction(towards_fr, 0.3, layer=-1, model=gemma)
    _greedy.assert_same_as_forward(gemma, PROMPTS, 12, hooks)
