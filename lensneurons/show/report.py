"""``ln.report``: the multilingual model card of one model, computed end to end.

One call answers "where does this model keep its languages, and does it think in English?" with
the package's own measurements, each a section of a :class:`~lensneurons.show.card.ModelCard`:

1. **model**: architecture, sizes, versions, device, the time each section took;
2. **data**: languages, scripts, tokens counted, held-out lines, the corpus digest;
3. **lape**: LAPE sets per language and layer (Tang et al.);
4. **ternary**: specific / related / general units over layers;
5. **overlap**: IoU of the LAPE sets;
6. **nll**: the ΔNLL matrix with paired bootstrap intervals and equal-size random sets, and each
   language's specificity;
7. **latent**: latent-language curves for translation pairs, with the pivot verdict;
8. **mwork**: the pivot with the target language's neurons switched off (and a random set);
9. **forcing**: forcing rates into several languages with Wilson intervals;
10. **tokens**: a token view of a mixed-language text.

The statistics of the offline real models (:mod:`lensneurons.subjects.real_stats`) are reused
from the shipped files (``fresh=True`` collects them again, on the same corpus); any other model
gets the package's parallel sample (the organism's corpus), collected in one pass.

Examples:
    >>> import lensneurons as ln
    >>> model = ln.organism.load()
    >>> card = ln.report(model, progress=False)  # doctest: +SKIP
    >>> card.save("cards/organism")  # doctest: +SKIP
    PosixPath('cards/organism')
"""

from __future__ import annotations

import dataclasses
import datetime
import time
import unicodedata
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from lensneurons.core.checks import positive_int, rate
from lensneurons.core.figures import plot_matrix
from lensneurons.core.model import ModelView, same_fingerprint
from lensneurons.core.persistence import environment
from lensneurons.corpora.corpus import Corpus
from lensneurons.corpora.gettext import texts_digest
from lensneurons.corpora.questions import STOP, forcing_prompts
from lensneurons.detect.lape import lape
from lensneurons.detect.ternary import ternary
from lensneurons.errors import ParameterError, SearchBoundWarning, UnknownGroupError
from lensneurons.evaluate.deltas import nll_delta, specificity
from lensneurons.evaluate.forcing import forcing_rate, wilson_interval
from lensneurons.evaluate.perplexity import perplexity, perplexity_matrix
from lensneurons.intervene.hooks import deactivate, steer
from lensneurons.lens import prompts
from lensneurons.lens.latent import LatentLanguageResult, latent_language
from lensneurons.lens.mwork import mwork
from lensneurons.lens.plots import plot_latent
from lensneurons.neurons.neuron_set import random_like
from lensneurons.neurons.neuron_sets import NeuronSets
from lensneurons.show.card import CardSection, ModelCard, figure_png
from lensneurons.show.token_views import token_activity_table
from lensneurons.stats import ActivationStats, collect
from lensneurons.subjects import organism, real_stats

#: Translation pairs for the latent-language curves, in order of preference (the first three
#: whose languages the model was studied in and the word lists cover).
PAIRS = (("de", "ru"), ("fr", "de"), ("es", "el"), ("fr", "ru"), ("pt", "de"), ("es", "ru"))
#: LAPE's top_rate on real models: Tang et al.'s 1%.
TANG_TOP_RATE = 0.01
#: Forcing targets, in order of preference.
FORCING_TARGETS = ("fr", "de", "es", "pt", "it", "ru")
#: Strength of the additive steering for the forcing rates: where docs/steering.md found German
#: and French forced on Gemma 3 270M.
FORCING_ALPHA = 2.0
#: Languages of the mixed-language text, in order of preference (different scripts first).
MIXED = ("fr", "ru", "de", "ja", "el", "zh", "es", "pt")
_SCRIPTS = {"CJK": "Han", "HIRAGANA": "Kana", "KATAKANA": "Kana", "HANGUL": "Hangul"}


@dataclass
class _Data:
    """What the card measures on: statistics (or a corpus to collect them from), held-out lines."""

    name: str
    groups: list[str]
    heldout: dict[str, list[str]]
    source: str
    digest: str
    top_rate: float
    stats: ActivationStats | None = None
    train: Corpus | None = None
    max_tokens_per_group: int | None = None

    def statistics(self, model: Any) -> ActivationStats:
        """The shipped statistics, or statistics collected now on the training corpus."""
        if self.stats is None:
            assert self.train is not None
            self.stats = collect(model, self.train, max_tokens_per_group=self.max_tokens_per_group,
                                 progress=False)
        return self.stats


def report(
    model: Any,
    *,
    name: str | None = None,
    languages: Sequence[str] | None = None,
    pairs: Sequence[tuple[str, str]] | None = None,
    forcing_targets: Sequence[str] | None = None,
    top_rate: float | None = None,
    heldout_lines: int = 15,
    lens_items: int = 40,
    n_forcing_prompts: int = 60,
    fresh: bool = False,
    progress: bool = True,
) -> ModelCard:
    """The multilingual model card of ``model``: every section measured now, on this model.

    Args:
        model: a TransformerLens model (``TransformerBridge`` or ``HookedTransformer``).
        name: the page's title; default the shipped short name the model is recognised as
            (``"gemma-3-270m"``), ``"organism"``, or the model's own name.
        languages: the languages of the LAPE, overlap, ΔNLL and token sections (default: every
            language of the statistics).
        pairs: ``(source, target)`` translation pairs of the latent-language curves (default:
            three of :data:`PAIRS` the model was studied in); the first pair's target is the
            language whose neurons the MWork section switches off.
        forcing_targets: languages the forcing section steers into (default: three of
            :data:`FORCING_TARGETS`).
        top_rate: LAPE's ``top_rate`` (default: Tang et al.'s 1%, the organism's documented
            10%).
        heldout_lines: held-out lines per language for the ΔNLL matrix.
        lens_items: translation prompts per pair for the latent-language curves.
        n_forcing_prompts: English questions per forcing condition.
        fresh: collect the statistics again even when they are shipped.
        progress: show the stage and an estimate of the time left on stderr.

    Returns:
        A :class:`~lensneurons.show.card.ModelCard`; ``card.save(folder)`` writes the page
        ``folder/index.html``.

    Raises:
        ParameterError: a count that is not a positive integer, a ``top_rate`` outside
            ``(0, 1]``, pairs that are not ``(source, target)`` pairs of two languages.
        UnknownGroupError: a language the statistics (or the word lists) do not hold.
    """
    heldout_lines = positive_int(heldout_lines, "heldout_lines")
    lens_items = positive_int(lens_items, "lens_items")
    n_forcing_prompts = positive_int(n_forcing_prompts, "n_forcing_prompts")
    if top_rate is not None:
        top_rate = rate(top_rate, "top_rate")
    view = ModelView(model)
    started = time.monotonic()
    data = _data(model, view, name, fresh=fresh, top_rate=top_rate)
    langs = _languages(languages, data.groups)
    chosen_pairs = _pairs(pairs, langs)  # the pivot and MWork need the target's LAPE set
    targets = _targets(forcing_targets, langs)
    tokens = {  # forward tokens each stage runs, roughly
        "statistics": 0 if data.stats is not None else len(data.groups) * 3_000,
        "detectors": 0,
        "ΔNLL": (2 * len(langs) + 1) * len(langs) * heldout_lines * 15,
        "latent": len(chosen_pairs) * lens_items * 60,
        "mwork": 3 * lens_items * 60,
        "forcing": (1 + len(targets)) * n_forcing_prompts * 16 * 8,
        "tokens": 200,
    }
    per_second = _tokens_per_second(model, data) if progress else 1.0
    costs = {stage: 1.0 + n / per_second for stage, n in tokens.items()}  # seconds, estimated
    sections: dict[str, CardSection] = {}
    with _Stages(costs, progress) as stage:
        with stage("statistics"):
            stats = data.statistics(model)
        with stage("detectors") as timer:
            sets = lape(stats.select(langs), top_rate=data.top_rate)
            sections["lape"] = _lape_section(sets, data.top_rate, timer)
            sections["ternary"] = _ternary_section(stats.select(langs), timer)
            sections["overlap"] = _overlap_section(sets, timer)
        with stage("ΔNLL") as timer:
            sections["nll"] = _nll_section(model, data, sets, langs, heldout_lines, timer)
        with stage("latent") as timer:
            curves = {pair: latent_language(model, prompts.translation(
                src=pair[0], tgt=pair[1], seed=0)[:lens_items], batch_size=8,
                label=f"{pair[0]}→{pair[1]}") for pair in chosen_pairs}
            sections["latent"] = _latent_section(curves, timer)
        with stage("mwork") as timer:
            sections["mwork"] = _mwork_section(model, curves[chosen_pairs[0]], sets, timer)
        with stage("forcing") as timer:
            sections["forcing"] = _forcing_section(model, sets, stats, targets,
                                                   n_forcing_prompts, timer)
        with stage("tokens") as timer:
            sections["tokens"] = _token_section(model, data, sets, timer)
    seconds = time.monotonic() - started
    facts = _model_facts(model, view, seconds)
    ordered = [_model_section(facts, sections), _data_section(data, stats, langs, heldout_lines),
               *sections.values()]
    return ModelCard(title=data.name, model=facts, sections=ordered,
                     fingerprint=view.fingerprint())


# -- where the numbers come from ------------------------------------------------------------------
def _data(model: Any, view: ModelView, name: str | None, *, fresh: bool,
          top_rate: float | None) -> _Data:
    """Shipped statistics when the model is a shipped one, else the parallel sample."""
    if name is not None and not isinstance(name, str):
        raise ParameterError(f"name must be a string, got {type(name).__name__}.")
    mine = view.fingerprint()
    for short in real_stats.shipped():
        shipped = real_stats.load(short)
        if same_fingerprint(shipped.meta.get("fingerprint"), mine):
            train, held = real_stats.texts()
            data = _Data(name or short, list(shipped.groups), held,
                         "the shipped statistics (gettext catalogs)",
                         texts_digest(train), top_rate or TANG_TOP_RATE)
            if fresh:
                data.source = "statistics collected now (gettext catalogs)"
                data.train = real_stats.train_corpus(train)
                data.max_tokens_per_group = real_stats.TOKENS_PER_GROUP
            else:
                data.stats = shipped
            return data
    is_organism = getattr(view.cfg, "model_name", None) == organism.NAME
    train, held = organism.texts("train"), organism.texts("heldout")
    own_name = "organism" if is_organism else str(getattr(view.cfg, "model_name", "model"))
    return _Data(name or own_name, list(train), held,
                 "statistics collected now (the package's parallel sample)", texts_digest(train),
                 top_rate or (organism.TOP_RATE if is_organism else TANG_TOP_RATE),
                 train=Corpus.from_texts(train))


def _languages(languages: Sequence[str] | None, groups: Sequence[str]) -> list[str]:
    if languages is None:
        return list(groups)
    chosen = [languages] if isinstance(languages, str) else list(languages)
    unknown = [g for g in chosen if g not in groups]
    if unknown or len(chosen) < 2:
        raise UnknownGroupError(
            f"languages={chosen}: the card needs two or more of the studied languages "
            f"{list(groups)}; {unknown} are not among them.")
    return chosen


def _pairs(pairs: Sequence[tuple[str, str]] | None, groups: Sequence[str]) -> list[tuple[str, str]]:
    known = set(prompts.LANGUAGES) & set(groups)
    if pairs is None:
        chosen = [p for p in PAIRS if set(p) <= known][:3]
        if not chosen:
            raise UnknownGroupError(f"No translation pair among {PAIRS} fits the card's languages "
                                    f"with word lists, {sorted(known)}; pass pairs=.")
        return chosen
    chosen = []
    for pair in pairs:
        if not (isinstance(pair, tuple | list) and len(pair) == 2 and pair[0] != pair[1]):
            raise ParameterError(f"pairs must be (source, target) pairs of two languages, got "
                                 f"{pair!r}.")
        if not set(pair) <= known:
            raise UnknownGroupError(f"The pair {tuple(pair)} needs both languages among the "
                                    f"card's languages and with a word list: {sorted(known)}.")
        chosen.append((pair[0], pair[1]))
    if not chosen:
        raise ParameterError("pairs is empty; pass one or more (source, target) pairs.")
    return chosen


def _targets(targets: Sequence[str] | None, groups: Sequence[str]) -> list[str]:
    if targets is None:
        return [t for t in FORCING_TARGETS if t in groups][:3]
    chosen = [targets] if isinstance(targets, str) else list(targets)
    unknown = [t for t in chosen if t not in groups]
    if unknown or not chosen:
        raise UnknownGroupError(f"forcing_targets={chosen}: steering needs the target's LAPE "
                                f"set; the card's languages are {list(groups)}.")
    return chosen


# -- progress --------------------------------------------------------------------------------------
def _tokens_per_second(model: Any, data: _Data) -> float:
    """Forward tokens per second of ``model`` here: one timed batch of eight held-out lines."""
    lines = [line for group in data.groups for line in data.heldout.get(group, [])[:1]][:8]
    started = time.perf_counter()
    timed = perplexity(model, Corpus.from_texts({"sample": lines}), batch_size=8, progress=False)
    tokens = float(timed.table()["n_tokens"].sum())
    return max(tokens / max(time.perf_counter() - started, 1e-3), 1.0)


class _Stages:
    """A progress bar over the stages in seconds (estimated from a timed batch), the time left."""

    def __init__(self, costs: dict[str, float], enabled: bool) -> None:
        self.costs = costs
        self.enabled = enabled
        self.bar: Any = None

    def __enter__(self) -> _Stages:
        if self.enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=round(sum(self.costs.values()), 1), desc="model card",
                            bar_format="{desc} {percentage:3.0f}%|{bar}| "
                                       "[{elapsed} elapsed, about {remaining} left]")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()

    @contextmanager
    def __call__(self, name: str) -> Iterator[_Timer]:
        if self.bar is not None:
            self.bar.set_description(f"model card · {name}", refresh=True)
        timer = _Timer()
        yield timer
        if self.bar is not None:
            self.bar.update(self.costs[name])


class _Timer:
    """Seconds since the stage began, and since the last section of it was taken."""

    def __init__(self) -> None:
        self.last = time.monotonic()

    def lap(self) -> float:
        now = time.monotonic()
        taken, self.last = now - self.last, now
        return taken


# -- the sections ----------------------------------------------------------------------------------
def _model_facts(model: Any, view: ModelView, seconds: float) -> dict[str, Any]:
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


def _model_section(facts: dict[str, Any], sections: dict[str, CardSection]) -> CardSection:
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


def _script(lines: Sequence[str]) -> str:
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


def _data_section(data: _Data, stats: ActivationStats, langs: list[str],
                  lines: int) -> CardSection:
    import matplotlib.pyplot as plt

    scripts = {g: _script(data.heldout.get(g, [])) for g in langs}
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


def _lape_section(sets: NeuronSets, top_rate: float, timer: _Timer) -> CardSection:
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


def _ternary_section(stats: ActivationStats, timer: _Timer) -> CardSection:
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


def _overlap_section(sets: NeuronSets, timer: _Timer) -> CardSection:
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


def _nll_section(model: Any, data: _Data, sets: NeuronSets, langs: list[str], lines: int,
                 timer: _Timer) -> CardSection:
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


def _pivot(curve: LatentLanguageResult) -> dict[str, Any]:
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


def _latent_section(curves: dict[tuple[str, str], LatentLanguageResult],
                    timer: _Timer) -> CardSection:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.6), squeeze=False)
    for ax, ((src, tgt), curve) in zip(axes[0], curves.items(), strict=True):
        plot_latent([curve], ax=ax, title=f"{src}→{tgt}, logit lens, n = {curve.n_items}")
    fig.tight_layout()
    table = pd.DataFrame({f"{s}→{t}": _pivot(c) for (s, t), c in curves.items()}).T
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


def _mwork_section(model: Any, curve: LatentLanguageResult, sets: NeuronSets,
                   timer: _Timer) -> CardSection:
    target = curve.languages[-1]
    view = mwork(model, curve.items,
                 {f"{target} neurons off": deactivate(sets[target]),
                  "random set off": deactivate(random_like(sets[target], seed=0))},
                 neurons=sets[target], batch_size=8)
    rows = {name: _pivot(c) for name, c in {"baseline": view.baseline, **view.intervened}.items()}
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


def _forcing_section(model: Any, sets: NeuronSets, stats: ActivationStats,
                     targets: list[str], n: int, timer: _Timer) -> CardSection:
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


def _token_section(model: Any, data: _Data, sets: NeuronSets, timer: _Timer) -> CardSection:
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
