"""Steering evaluation: generation under hooks, forcing rate, LSS, sweeps, fallback, amplifying."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lensneurons as ln
from lensneurons.corpora import langid
from lensneurons.errors import SweepInterrupted
from lensneurons.evaluate import (
    ShiftItem,
    SweepResult,
    answer_differences,
    generate,
    language_steps,
    layer_steps,
    quantile_steps,
    shift_items,
    wilson_interval,
)
from lensneurons.intervene import amplify_to

PROMPTS = ["The weather is", "My sister works in", "Le chat dort sur", "Der Hund"]


@pytest.fixture(scope="module")
def stats(organism):
    texts = {g: lines[:16] for g, lines in ln.organism.texts("heldout").items()}
    return ln.collect(organism, ln.Corpus.from_texts(texts), sequence_stats=True,
                      progress=False)


@pytest.fixture(scope="module")
def sets(stats):
    return ln.lape(stats, top_rate=0.05)


def test_batched_generation_equals_one_by_one(organism, sets, stats):
    hooks = ln.steer(sets, stats, None, "fr", alpha=4.0)
    for fwd in ([], hooks):
        together = generate(organism, PROMPTS, fwd, max_new_tokens=6, batch_size=4)
        alone = [generate(organism, [p], fwd, max_new_tokens=6)[0] for p in PROMPTS]
        assert together == alone
    plain = generate(organism, PROMPTS, [], max_new_tokens=6)
    assert plain != generate(organism, PROMPTS, hooks, max_new_tokens=6)  # the hooks act


def test_stop_strings_cut_continuations(organism):
    full = generate(organism, PROMPTS, [], max_new_tokens=12)
    stops = [" ", "e"]
    cut = generate(organism, PROMPTS, [], max_new_tokens=12, stop=stops)
    for (whole,), (short,) in zip(full, cut, strict=True):
        ends = [whole.find(s) for s in stops if s in whole]
        assert short == (whole[:min(ends)] if ends else whole)
        assert whole.startswith(short)


def test_sampling_is_seeded_and_per_sample(organism):
    first = generate(organism, PROMPTS[:2], [], max_new_tokens=8, do_sample=True, n_samples=3,
                     seed=7)
    again = generate(organism, PROMPTS[:2], [], max_new_tokens=8, do_sample=True, n_samples=3,
                     seed=7)
    assert first == again and [len(r) for r in first] == [3, 3]
    assert len({s for row in first for s in row}) > 2  # samples differ


def test_wilson_interval_matches_known_values():
    low, high = wilson_interval(8, 10)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)
    low, high = wilson_interval(0, 20)
    assert low == 0.0 and round(high, 4) == 0.1611
    low, high = wilson_interval(20, 20)
    assert round(low, 4) == 0.8389 and high == 1.0


def test_forcing_rate_counts_identified_generations(organism):
    result = ln.forcing_rate(organism, PROMPTS, [], "fr", max_new_tokens=12)
    assert result.n == len(PROMPTS) == len(result.generations)
    expected = langid.identify(result.generations)
    assert result.languages == expected
    assert result.rate == sum(lang == "fr" for lang in expected) / len(expected)
    assert (result.low, result.high) == wilson_interval(round(result.rate * result.n), result.n)
    table = result.table()
    assert list(table["on_target"]) == [lang == "fr" for lang in expected]
    assert result.seconds["generate"] > 0 and result.seconds["identify"] >= 0


def test_forcing_target_is_normalised(organism):
    result = ln.forcing_rate(organism, PROMPTS[:1], [], "fr_FR", max_new_tokens=4)
    assert result.target == "fr"


def _brute_logprob(model, premise: str, answer: str) -> float:
    """log P(answer | premise), one sequence, no batching or padding."""
    ids = model.to_tokens(premise)[0]
    cont = model.to_tokens(answer, prepend_bos=False)[0]
    full = torch.cat([ids, cont])[None]
    with torch.inference_mode():
        logp = torch.log_softmax(model(full)[0].float(), -1)
    return float(sum(logp[len(ids) + i - 1, t] for i, t in enumerate(cont)))


def test_answer_differences_equal_brute_force(organism, sets):
    items = shift_items("en", "fr")[:5] + shift_items("de", "ru")[-3:]
    hooks = ln.amplify(sets["fr"], 3.0)
    batched = answer_differences(organism, items, hooks, batch_size=3)
    with organism.hooks(fwd_hooks=hooks):
        brute = [_brute_logprob(organism, i.premise, i.separator + i.target)
                 - _brute_logprob(organism, i.premise, i.separator + i.base) for i in items]
    np.testing.assert_allclose(batched, brute, atol=1e-4)


def test_steering_shift_is_share_of_grown_differences(organism, sets, stats):
    items = shift_items("en", "fr")
    none = ln.steering_shift(organism, items, [])
    assert none.score == 0.0 and none.mean_shift == 0.0
    result = ln.steering_shift(organism, items, ln.steer(sets, stats, None, "fr", alpha=4.0))
    assert result.score == float(np.mean(result.d1 - result.d0 > 1e-6))
    assert result.low <= result.score <= result.high
    np.testing.assert_allclose(result.d0, none.d0)


def test_shift_items_drop_identical_answers():
    items = shift_items("es", "it")
    assert all(i.base != i.target for i in items)
    assert len(items) < 34  # "verde" is the same word in both
    assert shift_items("zh", "en")[0] == ShiftItem("星期一的后一天是", "星期二", "Tuesday", "")


def test_sweep_measures_each_value_and_selects_by_lss(organism, sets, stats, tmp_path):
    items = shift_items("en", "fr")[:10]
    result = ln.sweep(organism, lambda a: ln.steer(sets, stats, None, "fr", alpha=a),
                      [0.0, 2.0, 8.0], prompts=PROMPTS[:2], target="fr", lss_items=items,
                      nll_corpus=ln.Corpus.from_texts({"fr": ["Le chat dort sur le tapis."]}),
                      max_new_tokens=6, out=tmp_path / "sweep", progress=False)
    table = result.table()
    assert list(table.index) == [0.0, 2.0, 8.0]
    assert table.loc[0.0, "lss"] == 0.0  # alpha 0 adds nothing
    assert table.loc[0.0, "nll:fr"] == pytest.approx(result.baseline["nll:fr"], abs=1e-5)
    top = table[table["lss"] == table["lss"].max()]
    top = top[top["mean_shift"] == top["mean_shift"].max()]
    assert result.best() == min(top.index)
    for threshold in (0.25, 0.5, 1.0):
        reached = [v for v in table.index if table.loc[v, "forcing_rate"] >= threshold]
        assert result.smallest_reaching(threshold) == (min(reached) if reached else None)
    loaded = SweepResult.load(tmp_path / "sweep")
    assert loaded.table().equals(table) and loaded.generations == result.generations
    assert loaded.baseline == result.baseline and loaded.target == "fr"


def test_interrupted_sweep_keeps_finished_values(organism, sets, tmp_path):
    def hooks(value):
        if value == 3.0:
            raise KeyboardInterrupt
        return ln.amplify(sets["fr"], value)

    items = shift_items("en", "fr")[:4]
    with pytest.raises(SweepInterrupted) as info:
        ln.sweep(organism, hooks, [1.0, 2.0, 3.0, 4.0], lss_items=items,
                 out=tmp_path / "partial", progress=False)
    stop = info.value
    assert stop.stopped_at == 3.0 and list(stop.partial.table().index) == [1.0, 2.0]
    assert "2 of 4 values finished" in str(stop)
    assert list(SweepResult.load(tmp_path / "partial").table().index) == [1.0, 2.0]


def test_layer_steps_are_cumulative_from_the_last_layers():
    mask = torch.zeros(4, 6, dtype=torch.bool)
    mask[0, 0] = mask[2, :2] = mask[3, :3] = True
    steps = layer_steps(ln.NeuronSet.from_mask(mask), n_groups=4)
    assert list(steps) == ["layers 3-3", "layers 2-3", "layers 1-3", "layers 0-3"]
    assert [len(s) for s in steps.values()] == [3, 5, 5, 6]
    first = layer_steps(ln.NeuronSet.from_mask(mask), n_groups=2, start="first")
    assert [len(s) for s in first.values()] == [1, 6]


def test_quantile_steps_take_highest_scores_first():
    mask = torch.zeros(2, 4, dtype=torch.bool)
    mask[0, :2] = mask[1, :2] = True
    scores = torch.tensor([[4.0, 1.0, 9.0, 9.0], [3.0, 2.0, 0.0, 0.0]])
    steps = quantile_steps(ln.NeuronSet.from_mask(mask), scores, (0.5, 1.0))
    half = steps["top 50%"].mask
    assert half[0, 0] and half[1, 0] and half.sum() == 2  # 4.0 and 3.0, never non-members
    assert steps["top 100%"].mask.equal(mask)


def test_language_steps_are_unions_in_order(sets):
    steps = language_steps(sets, ["en", "fr", "de"])
    assert list(steps) == ["en", "en+fr", "en+fr+de"]
    assert steps["en+fr+de"] == sets["en"] | sets["fr"] | sets["de"]


def test_fallback_tabulates_languages_per_step(organism, sets):
    steps = layer_steps(sets["fr"], n_groups=2)
    result = ln.fallback(organism, PROMPTS[2:3], steps, max_new_tokens=8, progress=False)
    assert list(result.shares.index) == ["none", *steps]
    np.testing.assert_allclose(result.shares.sum(axis=1), 1.0)
    assert result.n_units.tolist() == [0] + [len(s) for s in steps.values()]
    plain = ln.forcing_rate(organism, PROMPTS[2:3], [], "fr", max_new_tokens=8)
    assert result.generations["none"] == plain.generations


def test_amplification_acts_on_every_batch_row(organism, sets, stats):
    hooks = amplify_to(sets, stats, "fr", "p_max", model=organism)
    tokens = organism.to_tokens(["Le chat dort", "Le chat dort"])
    with torch.inference_mode():
        plain = organism(tokens)
        with organism.hooks(fwd_hooks=hooks):
            edited = organism(tokens)
    assert not torch.allclose(plain[1], edited[1])  # row 1 too (the original code: row 0)
    torch.testing.assert_close(edited[0], edited[1])
    values = ln.intervene.amplification_values(stats, "fr", "p_median")
    assert torch.all(values <= stats.seq_mean_max_of("fr") + 1e-6)
