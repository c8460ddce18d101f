"""The shipped attribution scores of Gemma 3 270M (``scripts/attribution_gemma.py``): they belong to
the model and to the shipped statistics' training lines, and a fresh pass reproduces them."""

from __future__ import annotations

import pytest
import torch

import lensneurons as ln
from lensneurons.detect.attribution_sets import next_token_items
from lensneurons.subjects import real_stats

pytestmark = pytest.mark.real

FOLDER = real_stats.data_dir("gemma-3-270m") / "attribution"
REPRODUCED = "zh"  # the shortest prompts: about a minute on two CPU cores


@pytest.fixture(scope="module")
def shipped(gemma, gemma_stats):
    """The scores of every language, loaded with the model (which checks its fingerprint)."""
    return {g: ln.AttributionScores.load(FOLDER / g, model=gemma) for g in gemma_stats.groups}


def test_every_language_is_scored_on_the_statistics_training_lines(shipped, gemma_view,
                                                                   gemma_stats):
    n_items = {s.n_items for s in shipped.values()}
    assert len(n_items) == 1, n_items
    for group, scores in shipped.items():
        assert scores.sites == ["mlp"]
        assert tuple(scores["mlp"].shape) == (gemma_view.n_layers, gemma_view.d_mlp)
        assert scores.meta["group"] == group and scores.meta["objective"] == "logprob"
        assert scores.meta["train_digest"] == gemma_stats.meta["train_digest"]
        assert torch.isfinite(scores["mlp"]).all()


def test_a_fresh_pass_reproduces_the_shipped_scores(gemma, shipped):
    saved = shipped[REPRODUCED]
    meta = saved.meta
    train, _ = real_stats.texts()
    items = next_token_items(gemma, train[REPRODUCED], saved.n_items,
                             min_prompt=meta["min_prompt"], max_prompt=meta["max_prompt"],
                             seed=meta["seed"])
    fresh = ln.attribution(gemma, items, sites=("mlp",), objective=meta["objective"],
                           batch_size=meta["batch_size"], progress=False)
    scale = float(saved["mlp"].abs().max())
    torch.testing.assert_close(fresh["mlp"], saved["mlp"], rtol=1e-3, atol=1e-4 * scale)
