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

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from lensneurons.core.checks import positive_int, rate
from lensneurons.core.model import ModelView, same_fingerprint
from lensneurons.corpora.corpus import Corpus
from lensneurons.corpora.gettext import texts_digest
from lensneurons.detect.lape import lape
from lensneurons.errors import ParameterError, UnknownGroupError
from lensneurons.evaluate.perplexity import perplexity
from lensneurons.lens import prompts
from lensneurons.lens.latent import latent_language
from lensneurons.show import _card_sections as build
from lensneurons.show.card import CardSection, ModelCard
from lensneurons.stats import ActivationStats, collect
from lensneurons.subjects import organism, real_stats

#: Translation pairs for the latent-language curves, in order of preference (the first three
#: whose languages the model was studied in and the word lists cover).
PAIRS = (("de", "ru"), ("fr", "de"), ("es", "el"), ("fr", "ru"), ("pt", "de"), ("es", "ru"))
#: LAPE's top_rate on real models: Tang et al.'s 1%.
TANG_TOP_RATE = 0.01
#: Forcing targets, in order of preference.
FORCING_TARGETS = ("fr", "de", "es", "pt", "it", "ru")


@dataclass
class CardData:
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
            sections["lape"] = build.lape_section(sets, data.top_rate, timer)
            sections["ternary"] = build.ternary_section(stats.select(langs), timer)
            sections["overlap"] = build.overlap_section(sets, timer)
        with stage("ΔNLL") as timer:
            sections["nll"] = build.nll_section(model, data, sets, langs, heldout_lines, timer)
        with stage("latent") as timer:
            curves = {pair: latent_language(model, prompts.translation(
                src=pair[0], tgt=pair[1], seed=0)[:lens_items], batch_size=8,
                label=f"{pair[0]}→{pair[1]}") for pair in chosen_pairs}
            sections["latent"] = build.latent_section(curves, timer)
        with stage("mwork") as timer:
            sections["mwork"] = build.mwork_section(model, curves[chosen_pairs[0]], sets, timer)
        with stage("forcing") as timer:
            sections["forcing"] = build.forcing_section(model, sets, stats, targets,
                                                   n_forcing_prompts, timer)
        with stage("tokens") as timer:
            sections["tokens"] = build.token_section(model, data, sets, timer)
    seconds = time.monotonic() - started
    facts = build.model_facts(model, view, seconds)
    ordered = [build.model_section(facts, sections),
               build.data_section(data, stats, langs, heldout_lines), *sections.values()]
    return ModelCard(title=data.name, model=facts, sections=ordered,
                     fingerprint=view.fingerprint())


# -- where the numbers come from ------------------------------------------------------------------
def _data(model: Any, view: ModelView, name: str | None, *, fresh: bool,
          top_rate: float | None) -> CardData:
    """Shipped statistics when the model is a shipped one, else the parallel sample."""
    if name is not None and not isinstance(name, str):
        raise ParameterError(f"name must be a string, got {type(name).__name__}.")
    mine = view.fingerprint()
    for short in real_stats.shipped():
        shipped = real_stats.load(short)
        if same_fingerprint(shipped.meta.get("fingerprint"), mine):
            train, held = real_stats.texts()
            data = CardData(name or short, list(shipped.groups), held,
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
    return CardData(name or own_name, list(train), held,
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
def _tokens_per_second(model: Any, data: CardData) -> float:
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
    def __call__(self, name: str) -> Iterator[build.Timer]:
        if self.bar is not None:
            self.bar.set_description(f"model card · {name}", refresh=True)
        timer = build.Timer()
        yield timer
        if self.bar is not None:
            self.bar.update(self.costs[name])
