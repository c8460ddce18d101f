"""CULNIG selection on planted scores, the shipped cultural questions, and the method end to end."""

from __future__ import annotations

import torch

import lensneurons as ln
from lensneurons.detect.attribution import AttributionScores

L, D, W = 2, 100, 20  # layers, MLP units, q/k/v units per layer
CULTURES = ("jp", "mx", "fr")


def zeros() -> dict[str, torch.Tensor]:
    return {"mlp": torch.zeros(L, D), **{s: torch.zeros(L, W) for s in ("attn.q", "attn.k",
                                                                      "attn.v")}}


def scores(tensors) -> AttributionScores:
    return AttributionScores(tensors, n_items=4)


def planted():
    """Questions, control and country-name scores with known general and specific units.

    Noise is the same tensor for every culture, so only planted differences give a non-zero
    spread across cultures (z = 0 elsewhere).
    """
    gen = torch.Generator().manual_seed(0)
    noise = {s: torch.rand(t.shape, generator=gen) * 0.09 + 0.01 for s, t in zeros().items()}
    control = {s: t.clone() for s, t in noise.items()}
    questions = {c: {s: t.clone() for s, t in noise.items()} for c in CULTURES}
    crc = {c: {s: t.clone() for s, t in noise.items()} for c in CULTURES}
    for c in CULTURES:
        q = questions[c]
        q["mlp"][0, 5] += 10  # general
        q["mlp"][1, 7] += 10  # general
        q["mlp"][1, 11] += 10  # general, but fires for country names
        q["attn.q"][1, 3] += 10  # general (attention pool)
        q["mlp"][0, 9] += 10  # also high on the control items: task format, not culture
        control["mlp"][0, 9] = q["mlp"][0, 9]
        q["mlp"][0, 40] += 6  # high in every culture: not specific
        for s, layer, unit in (("mlp", 1, 11), ("attn.q", 0, 0)):
            crc[c][s][layer, unit] = 5.0
    questions["jp"]["mlp"][0, 20] += 8  # jp only
    questions["jp"]["mlp"][0, 30] += 7  # jp and mx
    questions["mx"]["mlp"][0, 30] += 7
    questions["mx"]["attn.v"][0, 4] += 8  # mx only
    questions["jp"]["mlp"][1, 50] += 9  # jp only, but a country-name unit for jp
    crc["jp"]["mlp"][1, 50] = 5.0
    for c in CULTURES:  # planted units never fire for country names unless said above
        for s, layer, unit in (("mlp", 0, 20), ("mlp", 0, 30), ("attn.v", 0, 4), ("mlp", 0, 5),
                               ("mlp", 1, 7), ("attn.q", 1, 3), ("mlp", 0, 40)):
            crc[c][s][layer, unit] = 0.0
    return ({c: scores(questions[c]) for c in CULTURES}, scores(control),
            {c: scores(crc[c]) for c in CULTURES})


def units(ns) -> set[tuple[int, int]]:
    return {(int(a), int(b)) for a, b in ns.mask.nonzero()}


def test_planted_general_and_specific():
    questions, control, crc = planted()
    out = ln.culture_neurons(questions, control, crc, general_mlp_top_rate=3 / 200,
                             general_attn_top_rate=1 / 120, specific_top_rate=8 / 320,
                             exclude_top_rate=0.01)
    assert units(out.general["mlp"]) == {(0, 5), (1, 7)}
    assert units(out.general["attn.q"]) == {(1, 3)}
    assert not units(out.general["attn.k"]) and not units(out.general["attn.v"])
    assert units(out.specific["mlp"]["jp"]) == {(0, 20), (0, 30)}
    assert units(out.specific["mlp"]["mx"]) == {(0, 30)}
    assert units(out.specific["attn.v"]["mx"]) == {(0, 4)}
    assert sum(len(out.specific[s]["fr"]) for s in out.specific) == 0
    assert out.table().loc["jp", "mlp"] == 2 and out.specific["mlp"]["jp"].site == "mlp"
    # Without the country-name step, the excluded units come back.
    kept = ln.culture_neurons(questions, control, None, general_mlp_top_rate=3 / 200,
                              general_attn_top_rate=1 / 120, specific_top_rate=8 / 320)
    assert (1, 11) in units(kept.general["mlp"]) and (1, 50) in units(kept.specific["mlp"]["jp"])
    # A stricter z rule drops the unit shared by jp and mx (z = 0.71) but keeps jp's own (1.41).
    strict = ln.culture_neurons(questions, control, crc, general_mlp_top_rate=3 / 200,
                                general_attn_top_rate=1 / 120, specific_top_rate=8 / 320,
                                z_threshold=1)
    assert units(strict.specific["mlp"]["jp"]) == {(0, 20)}


def test_default_rates_select_the_paper_shares():
    gen = torch.Generator().manual_seed(1)
    big = {c: scores({"mlp": torch.randn(4, 500, generator=gen),
                      "attn.k": torch.randn(4, 100, generator=gen)}) for c in CULTURES}
    control = scores({"mlp": torch.zeros(4, 500), "attn.k": torch.zeros(4, 100)})
    out = ln.culture_neurons(big, {c: control for c in CULTURES}, None)
    assert len(out.general["mlp"]) == round(0.01 * 2000)
    assert len(out.general["attn.k"]) == 1  # round(0.002 * 400)
    for c in CULTURES:
        n = len(out.specific["mlp"][c]) + len(out.specific["attn.k"][c])
        assert 0 < n <= round(0.003 * 2400)


def test_shipped_questions_are_well_formed():
    from lensneurons.corpora import culture

    data = culture.culture_questions()
    assert tuple(data["cultures"]) == culture.CULTURES
    seen = set()
    for name, rows in data["cultures"].items():
        assert len(rows) >= 40
        assert {r["topic"] for r in rows} == set(culture.TOPICS)
        for r in rows:
            assert len(r["options"]) == 4 == len(set(r["options"]))
            assert r["answer"] in "ABCD" and r["question"] not in seen
            seen.add(r["question"])
        control = culture.culture_items([name], kind="control")[name]
        assert all("Question:" not in item.prompt for item in control)
    for name, rows in data["countries"].items():
        assert all(r["options"]["ABCD".index(r["answer"])] == name and name in r["passage"]
                   for r in rows)
    food = culture.culture_items(["India"], topics=["food"])["India"]
    assert len(food) == 7 and food[0].prompt.startswith("Question: ")


def test_end_to_end_on_the_organism(organism):
    """Questions, control and country items of three cultures -> attribution -> CULNIG sets."""
    from lensneurons.corpora import culture_items

    names = ["Japan", "Mexico", "France"]
    q = culture_items(names, topics=["food"])
    k = culture_items(names, kind="control", topics=["food"])
    r = culture_items(names, kind="countries")
    score = {kind: {c: ln.attribution(organism, items[c][:3], batch_size=3, progress=False,
                                      clamp_negative=kind == "control")
                    for c in names} for kind, items in (("q", q), ("k", k), ("r", r))}
    out = ln.culture_neurons(score["q"], score["k"], score["r"])
    n_mlp, n_attn = 4 * 2048, 3 * 4 * 128
    assert 0 < len(out.general["mlp"]) <= round(0.01 * n_mlp)
    # General MLP units = the top 1% by (questions - control), minus the top 1% by country names.
    s_mlp = sum(score["q"][c]["mlp"] - score["k"][c]["mlp"] for c in names)
    crc = sum(score["r"][c]["mlp"] for c in names)
    top = s_mlp.flatten().argsort(descending=True, stable=True)[:round(0.01 * n_mlp)]
    excluded = set(crc.flatten().argsort(descending=True, stable=True)[:round(0.01 * n_mlp)]
                   .tolist())
    expected = {int(i) for i in top if int(i) not in excluded}
    assert set(out.general["mlp"].mask.flatten().nonzero()[:, 0].tolist()) == expected
    attn = sum(len(out.general[s]) for s in ("attn.q", "attn.k", "attn.v"))
    assert attn <= round(0.002 * n_attn)
    for c in names:
        assert sum(len(out.specific[s][c]) for s in out.specific) <= round(
            0.003 * (n_mlp + n_attn))
    # The sets plug into the ordinary hooks.
    hooks = [h for s in out.general.values() if len(s) for h in ln.deactivate(s)]
    tokens = organism.to_tokens(q["Japan"][0].prompt)
    with organism.hooks(fwd_hooks=hooks):
        edited = organism(tokens)
    assert not torch.allclose(edited, organism(tokens))
