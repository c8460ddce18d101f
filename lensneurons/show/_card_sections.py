"""The model card's sections: each measures one thing, draws it and reads it in two lines.

:func:`lensneurons.report` calls them in page order; each returns a
:class:`~lensneurons.show.card.CardSection` whose reading is written from its own numbers.

Examples:
    >>> from lensneurons.show._card_sections import script_of
    >>> script_of(["Кошка спит на диване."]), script_of(["猫はソファで寝ています。"])
    ('Cyrillic', 'Kana')
"""

from __future__ import annotations

import dataclasses
import datetime
import time
import unicodedata
import warnings
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lensneurons.core.figures import figure_png, plot_matrix
from lensneurons.core.model import ModelView
from lensneurons.core.persistence import environment
from lensneurons.corpora.corpus import Corpus
from lensneurons.corpora.questions import STOP, forcing_prompts
from lensneurons.detect.ternary import ternary
from lensneurons.errors import SearchBoundWarning
from lensneurons.evaluate.deltas import nll_delta, specificity
from lensneurons.evaluate.forcing import forcing_rate, wilson_interval
from lensneurons.evaluate.perplexity import perplexity_matrix
from lensneurons.intervene.hooks import deactivate, steer
from lensneurons.lens.latent import LatentLanguageResult
from lensneurons.lens.mwork import mwork
from lensneurons.lens.plots import plot_latent
from lensneurons.neurons.neuron_set import random_like
from lensneurons.neurons.neuron_sets import NeuronSets
from lensneurons.show.card import CardSection
from lensneurons.show.token_views import token_activity_table
from lensneurons.stats import ActivationStats

if TYPE_CHECKING:
    from lensneurons.show.report import CardData

#: Strength of the additive steering for the forcing rates: where docs/steering.md found German
#: and French forced on Gemma 3 270M.
FORCING_ALPHA = 2.0
#: Languages of the mixed-language text, in order of preference (different scripts first).
MIXED = ("fr", "ru", "de", "ja", "el", "zh", "es", "pt")
_SCRIPTS = {"CJK": "Han", "HIRAGANA": "Kana", "KATAKANA": "Kana", "HANGUL": "Hangul"}


class Timer:
    """Seconds since the stage began, and since the last section of it was taken."""

    def __init__(self) -> None:
        self.last = time.monotonic()

    def lap(self) -> float:
        now = time.monotonic()
        taken, self.last = now - self.last, now
        return taken


def model_facts(model: Any, view: ModelView, seconds: float) -> dict[str, Any]:
    env = environment(model)
    n_params = sum(p.numel() for p in model.parameters())
    packages = env["packages"]
    return {
        "architecture": view.architecture, "n_layers": view.n_layers, "d_model": view.d_model,
        "d_mlp": view.d_mlp, "d_vocab": view.d_vocab,
        "parameters": f"{n_params / 1e6:.1f}M parameters",
        "dtype": env["model_dtype"], "device": env["model_device"] or "cpu",
        "cpu": env["cpu_capability"], "gpu": env["gpu"], "threads": env["torch_threads"],
        "lensneurons": packages.get("lensneurons"), "torch": packages.get("torch"),
        "transformer_lens": packages.get("transformer_lens") or packages.get("transformer-lens"),
        "transformers": packages.get("transformers"),
        "made": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "seconds": round(seconds, 1),
    }


def model_section(facts: dict[str, Any], sections: dict[str, CardSection]) -> CardSection:
    import matplotlib.pyplot as plt

    times = pd.Series({s.title: s.seconds for s in sections.values()})
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(times) + 1.0))
    times.iloc[::-1].plot.barh(ax=ax, color="#4a78b0")
    ax.set_xlabel("seconds")
    ax.set_title(f"Time per section ({facts['seconds']:.0f} s in all)")
    fig.tight_layout()
    slowest = max(sections.values(), key=lambda s: s.seconds).key
    reading = (f"{facts['architecture']}: {facts['n_layers']} layers, d_model {facts['d_model']}, "
               f"{facts['d_mlp']} MLP neurons per layer, {facts['parameters']}, "
               f"{facts['dtype']} on {facts['device']} ({facts['threads']} threads). "
               f"The card took {facts['seconds']:.0f} s; the slowest section, "
               f"{slowest}, {times.max():.0f} s.")
    table = pd.DataFrame({"value": pd.Series(facts).astype(str)}).rename_axis("fact")
    return CardSection("model", "The model", reading, table, figure_png(fig))


def script_of(lines: Sequence[str]) -> str:
    counts: Counter[str] = Counter()
    for line in lines[:50]:
        for ch in line:
            if ch.isalpha():
                word = unicodedata.name(ch, "UNKNOWN").split(" ")[0]
                counts[_SCRIPTS.get(word, word.title())] += 1
    if not counts:
        return "?"
    top = counts.most_common(2)
    if top[0][0] == "Han" and len(top) > 1 and top[1][0] == "Kana" and top[1][1] > 0.1 * top[0][1]:
        return "Kana"  # Japanese: Kanji and Kana, distinguished by the Kana
    return top[0][0]


def data_section(data: CardData, stats: ActivationStats, langs: list[str],
                  lines: int) -> CardSection:
    import matplotlib.pyplot as plt

    scripts = {g: script_of(data.heldout.get(g, [])) for g in langs}
    tokens = pd.Series({g: int(stats.n_tokens[stats.index(g)]) for g in langs})
    table = pd.DataFrame({"script": pd.Series(scripts), "tokens counted": tokens,
                          "held-out lines": pd.Series({g: len(data.heldout.get(g, []))
                                                       for g in langs}),
                          "scored": pd.Series({g: min(lines, len(data.heldout.get(g, [])))
                                               for g in langs})}).rename_axis("language")
    names = sorted(set(scripts.values()))
    palette = {script: plt.get_cmap("tab10")(i % 10) for i, script in enumerate(names)}
    fig, ax = plt.subplots(figsize=(max(6.0, 0.5 * len(langs)), 3.0))
    ax.bar(langs, tokens.to_numpy(), color=[palette[scripts[g]] for g in langs])
    for script, color in palette.items():
        ax.bar([], [], color=color, label=script)
    ax.legend(title="script", fontsize="small", ncols=min(4, len(palette)))
    ax.set_ylabel("tokens counted")
    ax.set_title("Statistics: tokens per language")
    fig.tight_layout()
    reading = (f"{len(langs)} languages in {len(palette)} scripts "
               f"({', '.join(sorted(palette))}), from {data.source}; "
               f"{tokens.min():,} to {tokens.max():,} tokens counted per language. "
               f"The ΔNLL matrix scores {table['scored'].min()} held-out lines per language "
               f"(of {table['held-out lines'].min()} or more, never counted); corpus digest "
               f"{data.digest}.")
    return CardSection("data", "The data", reading, table, figure_png(fig))


def lape_section(sets: NeuronSets, top_rate: float, timer: Timer) -> CardSection:
    table = sets.table()
    sizes = table["total"]
    layers = table.drop(columns="total")
    n_layers = layers.shape[1]
    quarter = max(1, n_layers // 4)
    late = layers.iloc[:, n_layers - quarter:].to_numpy().sum() / max(1, sizes.sum())
    early = layers.iloc[:, :quarter].to_numpy().sum() / max(1, sizes.sum())
    reading = (f"LAPE (top_rate {top_rate:g}) selects {len(sets.union())} neurons; "
               f"{early:.0%} of the memberships lie in the first quarter of the layers and "
               f"{late:.0%} in the last. Largest set {sizes.idxmax()} ({sizes.max()}), "
               f"smallest {sizes.idxmin()} ({sizes.min()}).")
    fig = sets.plot()
    return CardSection("lape", "Language neurons per layer (LAPE)", reading, table,
                       figure_png(fig), seconds=timer.lap())


def ternary_section(stats: ActivationStats, timer: Timer) -> CardSection:
    with warnings.catch_warnings():  # a search stopped at its bound is said in the reading
        warnings.simplefilter("ignore", SearchBoundWarning)
        result = ternary(stats)
    profile = pd.DataFrame({"specific": result.specific.union().per_layer(),
                            "related": result.related.union().per_layer(),
                            "general": result.general.per_layer()}).rename_axis("layer")
    table = profile
    peak = {kind: int(profile[kind].to_numpy().argmax()) for kind in profile}
    reading = (f"{int(profile['specific'].sum())} specific, {int(profile['related'].sum())} "
               f"related (shared by some languages) and {int(profile['general'].sum())} general "
               f"units (λ = {result.lam:.3g}"
               + (", the top of its search range: a larger λ might keep more specific units"
                  if result.lam_at_bound else "")
               + f"). Specific units peak at layer {peak['specific']}, "
               f"related at {peak['related']}, general at {peak['general']}.")
    return CardSection("ternary", "Specific, related, general (ternary split)", reading,
                       table, figure_png(result.plot()), seconds=timer.lap())


def overlap_section(sets: NeuronSets, timer: Timer) -> CardSection:
    iou = sets.overlap().rename_axis(index="language", columns="language")
    langs = list(iou.index)
    pairs = [(a, b) for i, a in enumerate(langs) for b in langs[i + 1:]]
    top = sorted(pairs, key=lambda p: -iou.loc[p])[:3]
    values = iou.to_numpy()
    mean = values[~np.eye(len(values), dtype=bool)].mean() if len(values) > 1 else float("nan")
    reading = ("Overlap (intersection over union) of the LAPE sets: highest "
               + ", ".join(f"{a}–{b} {iou.loc[a, b]:.2f}" for a, b in top)
               + f"; mean over all {len(pairs)} pairs {mean:.2f}. Related languages share "
               "neurons where these pairs are related.")
    fig = plot_matrix(iou, title="IoU of the LAPE sets (1 = identical)", fmt="{:.2f}",
                      cmap="Blues", centered=False)
    return CardSection("overlap", "Shared neurons (IoU)", reading, iou, figure_png(fig),
                       seconds=timer.lap())


def nll_section(model: Any, data: CardData, sets: NeuronSets, langs: list[str], lines: int,
                 timer: Timer) -> CardSection:
    heldout = Corpus.from_texts({g: data.heldout[g][:lines] for g in langs})
    # Batches of 8: held-out lines are short and of uneven length; larger batches pad more.
    matrix = perplexity_matrix(model, heldout, sets, random_baseline=True, batch_size=8,
                               progress=False)
    delta = nll_delta(matrix)
    ci = nll_delta(matrix, interval=0.95)
    ratio = specificity(delta.loc[["none", *langs], langs])
    rows = []
    for g in langs:
        own, rnd = ci.loc[(g, g)], ci.loc[(f"random:{g}", g)]
        rows.append({"language": g, "neurons": len(sets[g]), "own Δ": own["delta"],
                     "own low": own["low"], "own high": own["high"],
                     "others mean Δ": delta.loc[g, [h for h in langs if h != g]].mean(),
                     "random own Δ": rnd["delta"], "random low": rnd["low"],
                     "random high": rnd["high"], "above random": bool(own["low"] > rnd["high"]),
                     "specificity": ratio[g]})
    table = pd.DataFrame(rows).set_index("language")
    above = table.index[table["above random"]].tolist()
    reading = (f"Switching a language's neurons off raises its own held-out NLL by a median "
               f"{table['own Δ'].median():+.3f} nats/token, {ratio.median():.1f}× the mean rise "
               f"on the other languages; {len(above)} of {len(langs)} languages rise more than "
               f"their equal-size random set (95% paired bootstrap, {lines} lines each"
               + (f": {', '.join(above)})." if above else ")."))
    fig = plot_matrix(delta, title="Δ mean NLL (nats/token), held-out lines")
    return CardSection("nll", "Switching them off (ΔNLL matrix)", reading, table,
                       figure_png(fig), seconds=timer.lap())


def pivot(curve: LatentLanguageResult) -> dict[str, Any]:
    """Depths where P(en) clearly leads P(target) (95% bands apart), and the last layer."""
    target = curve.languages[-1]
    en, tgt = curve.mean("en"), curve.mean(target)
    en_low, _ = curve.interval("en")
    _, tgt_high = curve.interval(target)
    english_first = [curve.depths[i] for i in range(len(curve.depths) - 1)
                     if en_low[i] > tgt_high[i] and en[i] >= 0.01]
    peak = int(en[:-1].argmax()) if len(en) > 1 else 0
    return {"items": curve.n_items, "English-first depths": english_first,
            "P(en) peak": float(en[peak]), "at depth": curve.depths[peak],
            "last P(en)": float(en[-1]), "last P(target)": float(tgt[-1]),
            "pivot": bool(english_first) and bool(tgt[-1] > en[-1])}


def latent_section(curves: dict[tuple[str, str], LatentLanguageResult],
                    timer: Timer) -> CardSection:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.6), squeeze=False)
    for ax, ((src, tgt), curve) in zip(axes[0], curves.items(), strict=True):
        plot_latent([curve], ax=ax, title=f"{src}→{tgt}, logit lens, n = {curve.n_items}")
    fig.tight_layout()
    table = pd.DataFrame({f"{s}→{t}": pivot(c) for (s, t), c in curves.items()}).T
    verdicts = []
    for pair, row in table.iterrows():
        if row["pivot"]:
            verdicts.append(f"{pair}: English leads at depths {row['English-first depths']}, "
                            "then the target wins")
        elif row["English-first depths"]:
            verdicts.append(f"{pair}: English leads at depths {row['English-first depths']} "
                            "but does not give way to the target")
        else:
            verdicts.append(f"{pair}: no depth where English clearly leads")
    n_pivot = int(table["pivot"].sum())
    reading = (f"English pivot in {n_pivot} of {len(table)} pairs (P(en) above P(target) with "
               f"95% bands apart, then the target last). " + "; ".join(verdicts) + ".")
    return CardSection("latent", "Does it think in English? (latent language)", reading,
                       table, figure_png(fig), seconds=timer.lap())


def mwork_section(model: Any, curve: LatentLanguageResult, sets: NeuronSets,
                   timer: Timer) -> CardSection:
    target = curve.languages[-1]
    view = mwork(model, curve.items,
                 {f"{target} neurons off": deactivate(sets[target]),
                  "random set off": deactivate(random_like(sets[target], seed=0))},
                 neurons=sets[target], batch_size=8)
    rows = {name: pivot(c) for name, c in {"baseline": view.baseline, **view.intervened}.items()}
    table = pd.DataFrame(rows).T
    off, rnd = table.loc[f"{target} neurons off"], table.loc["random set off"]
    base = table.loc["baseline"]
    reading = (f"With the {len(sets[target])} {target} neurons off, the last layer's P({target}) "
               f"goes from {base['last P(target)']:.2f} to {off['last P(target)']:.2f} (an "
               f"equal-size random set: {rnd['last P(target)']:.2f}) and P(en) from "
               f"{base['last P(en)']:.2f} to {off['last P(en)']:.2f}; "
               + ("the pivot stays." if off["English-first depths"]
                  else "no English-first depth remains."))
    only = {f"{target} neurons off": view.intervened[f"{target} neurons off"]}
    fig = dataclasses.replace(view, intervened=only).plot()  # the random set: in the table
    return CardSection("mwork", f"The pivot with the {target} neurons off (MWork)", reading,
                       table, figure_png(fig), seconds=timer.lap())


def forcing_section(model: Any, sets: NeuronSets, stats: ActivationStats,
                     targets: list[str], n: int, timer: Timer) -> CardSection:
    import matplotlib.pyplot as plt

    questions = forcing_prompts("en", n=n)
    judged = list(stats.groups)
    def rate_of(hooks: Any, target: str) -> Any:
        return forcing_rate(model, questions, hooks, target, max_new_tokens=16,
                            languages=judged, stop=STOP)

    plain = rate_of([], targets[0])
    rows = []
    for target in targets:
        hits = sum(lang == target for lang in plain.languages)
        low, high = wilson_interval(hits, plain.n)
        rows.append({"target": target, "condition": "no hooks", "rate": hits / plain.n,
                     "low": low, "high": high, "n": plain.n})
        steered = rate_of(steer(sets, stats, None, target, alpha=FORCING_ALPHA), target)
        rows.append({"target": target, "condition": f"steered (α = {FORCING_ALPHA:g})",
                     "rate": steered.rate, "low": steered.low, "high": steered.high,
                     "n": steered.n})
    table = pd.DataFrame(rows).set_index(["target", "condition"])
    fig, ax = plt.subplots(figsize=(1.6 * len(targets) + 2.5, 3.2))
    width = 0.38
    for k, (condition, part) in enumerate(table.groupby(level="condition", sort=False)):
        x = np.arange(len(targets)) + (k - 0.5) * width
        values = part["rate"].to_numpy()
        errors = [values - part["low"].to_numpy(), part["high"].to_numpy() - values]
        ax.bar(x, values, width, yerr=errors, capsize=3, label=condition)
    ax.set_xticks(np.arange(len(targets)), targets)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("answers in the target (Wilson 95%)")
    ax.set_title(f"Forcing: {n} English questions, additive steering")
    ax.legend(fontsize="small")
    fig.tight_layout()
    steered_rows = table.xs(f"steered (α = {FORCING_ALPHA:g})", level="condition")
    plain_rows = table.xs("no hooks", level="condition")
    reading = ("Steering the LAPE neurons of a language (additive, α = "
               f"{FORCING_ALPHA:g}) makes the answers to {n} English questions come in it: "
               + ", ".join(f"{t} {r['rate']:.2f} [{r['low']:.2f}, {r['high']:.2f}]"
                           for t, r in steered_rows.iterrows())
               + f"; without hooks at most {plain_rows['rate'].max():.2f}.")
    return CardSection("forcing", "Steering into a language (forcing rate)", reading, table,
                       figure_png(fig), seconds=timer.lap())


def token_section(model: Any, data: CardData, sets: NeuronSets, timer: Timer) -> CardSection:
    import matplotlib.pyplot as plt

    langs = [g for g in MIXED if g in sets.groups and data.heldout.get(g)][:4]
    if len(langs) < 2:
        langs = [g for g in sets.groups if data.heldout.get(g)][:4]
    clauses = {g: " ".join(data.heldout[g][0].split()[:8]) for g in langs}
    text = " ".join(clauses.values())
    table = token_activity_table(model, text, sets, groups=langs)
    by_clause = pd.DataFrame({g: token_activity_table(model, c, sets, groups=langs).mean()
                              for g, c in clauses.items()}).T.rename_axis("clause")
    agree = [g for g in langs if by_clause.loc[g].idxmax() == g]
    fig, ax = plt.subplots(figsize=(1.2 * len(langs) + 2.5, 0.5 * len(langs) + 1.5))
    image = ax.imshow(by_clause.to_numpy(), cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(langs)), langs)
    ax.set_yticks(range(len(langs)), [f"{g} clause" for g in langs])
    ax.set_xlabel("neurons of")
    ax.set_title("Mean activity per clause")
    fig.colorbar(image, ax=ax, shrink=0.8)
    fig.tight_layout()
    reading = (f"A text of {len(langs)} clauses ({', '.join(langs)}); each token coloured by how "
               f"strongly each language's neurons fire (pick a language above the text). "
               f"On {len(agree)} of {len(langs)} clauses the clause's own language's neurons "
               "are the most active.")
    return CardSection("tokens", "A mixed-language text, token by token", reading, by_clause,
                       figure_png(fig), token_table=table, seconds=timer.lap())
