"""Language sets from attribution: next-token items from text, the mean-of-the-others control."""

from __future__ import annotations

import pytest
import torch

import lensneurons as ln
from lensneurons.detect.attribution_sets import next_token_items, others_mean
from lensneurons.errors import (
    EmptyGroupError,
)


def ids(model, text: str) -> list[int]:
    return list(model.tokenizer(text, add_special_tokens=False)["input_ids"])


@pytest.mark.parametrize("group", ["en", "ru", "el"])
def test_items_are_a_prefix_and_the_next_word_token_of_their_line(organism, group):
    lines = ln.organism.texts("train")[group]
    items = next_token_items(organism, lines, 20, min_prompt=3, max_prompt=9, seed=1)
    assert len(items) == 20
    for item, line in zip(items, lines):  # one item per line, in order (every line is usable)
        prompt = ids(organism, item.prompt)
        assert 3 <= len(prompt) <= 9
        assert ids(organism, line)[:len(prompt) + 1] == [*prompt, item.answer]
        assert any(ch.isalpha() for ch in organism.tokenizer.decode([item.answer]))


def test_items_are_seeded(organism):
    lines = ln.organism.texts("train")["fr"]
    first = next_token_items(organism, lines, 30, seed=0)
    assert first == next_token_items(organism, lines, 30, seed=0)
    assert first != next_token_items(organism, lines, 30, seed=1)


def test_lines_without_a_cut_give_no_item(organism):
    short = ["Hi.", "A b", "1, 2, 3, 4, 5, 6, 7, 8"]  # too short, or no word token to predict
    lines = [*short, "The weather is beautiful today, so we are going to the park."]
    items = next_token_items(organism, lines, 1)
    assert lines[3].startswith(items[0].prompt)
    with pytest.raises(EmptyGroupError, match="give 1 items, fewer than n_items=2"):
        next_token_items(organism, lines, 2)


def scores(mlp: list[list[float]], n_items: int = 2, **meta) -> ln.AttributionScores:
    return ln.AttributionScores({"mlp": torch.tensor(mlp)}, n_items=n_items, meta=meta)


def test_control_is_the_mean_of_the_other_groups():
    gen = torch.Generator().manual_seed(0)
    q = {g: scores(torch.rand(3, 5, generator=gen).tolist(), n_items=i + 1, fingerprint="m")
         for i, g in enumerate(["en", "de", "fr", "ru"])}
    control = others_mean(q)
    for g in q:
        rest = [h for h in q if h != g]
        torch.testing.assert_close(control[g]["mlp"], sum(q[h]["mlp"] for h in rest) / 3)
        assert control[g].n_items == sum(q[h].n_items for h in rest)
        assert control[g].meta == {"fingerprint": "m", "control": rest}


def test_contrast_selects_the_units_one_language_needs_more():
    """A unit high in one language only is that language's; one high in all is nobody's."""
    base = torch.full((2, 10), 0.1)
    q = {g: base.clone() for g in ("en", "de", "fr", "ru")}
    for t in q.values():
        t[1, 9] = 5.0  # needed by every language
    q["de"][0, 3] = 2.0
    q["fr"][1, 4] = 2.0
    q["ru"][0, 6], q["ru"][1, 6] = 3.0, 2.5
    q["en"][0, 2] = 0.4  # a weaker English unit: still above what the others need
    attributed = {g: ln.AttributionScores({"mlp": t}, n_items=4) for g, t in q.items()}
    out = ln.culture_neurons(attributed, others_mean(attributed), None,
                             general_mlp_top_rate=0.05, specific_top_rate=0.1)
    sets = out.specific["mlp"]
    found = {g: {tuple(u) for u in sets[g].mask.nonzero().tolist()} for g in sets.groups}
    assert found == {"en": {(0, 2)}, "de": {(0, 3)}, "fr": {(1, 4)}, "ru": {(0, 6), (1, 6)}}


def test_shipped_gemma_scores_give_language_sets():
    """The scores of scripts/attribution_gemma.py: one per language, and sets the z rule keeps."""
    from lensneurons.subjects import real_stats

    folder = real_stats.data_dir("gemma-3-270m") / "attribution"
    groups = list(real_stats.LANGUAGES)
    shipped = {g: ln.AttributionScores.load(folder / g) for g in groups}
    assert {(tuple(s["mlp"].shape), s.n_items, s.meta["objective"]) for s in shipped.values()} == {
        ((18, 2048), 256, "logprob")}
    sets = ln.culture_neurons(shipped, others_mean(shipped), None,
                              specific_top_rate=50 / (18 * 2048)).specific["mlp"]
    assert sets.groups == groups
    assert all(0 < len(sets[g]) <= 50 for g in groups)
