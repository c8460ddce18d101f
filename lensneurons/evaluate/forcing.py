"""Forcing rate: how often a model answers in the target language under an intervention.

The model continues each prompt under the hooks (greedy by default, as in Gurgurov et al.'s
language-forcing test), an offline identifier (:mod:`lensneurons.corpora.langid`) names the
language of each continuation, and the rate is the share identified as the target. The interval
is Wilson's 95% score interval for a binomial proportion, which stays inside [0, 1] and is
sensible at rates near 0 or 1 and for the few dozen generations such tests use.

Examples:
    >>> import lensneurons as ln
    >>> model = ln.organism.load()
    >>> result = ln.forcing_rate(model, ["The weather is"], [], "en", max_new_tokens=8)
    >>> result.n, 0.0 <= result.low <= result.rate <= result.high <= 1.0
    (1, True)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from lensneurons.core.figures import axes
from lensneurons.core.model import ModelView
from lensneurons.core.result import Result
from lensneurons.corpora import langid
from lensneurons.evaluate.generation import generate

_Z95 = 1.959963984540054  # standard normal quantile of 0.975


def wilson_interval(successes: int, n: int, z: float = _Z95) -> tuple[float, float]:
    """Wilson's score interval for ``successes`` out of ``n`` (95% by default).

    Examples:
        >>> low, high = wilson_interval(8, 10)
        >>> round(low, 3), round(high, 3)
        (0.49, 0.943)
        >>> wilson_interval(0, 0)
        (0.0, 1.0)
    """
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class ForcingResult(Result):
    """The outcome of :func:`forcing_rate`.

    ``.table()`` lists every continuation and its language; ``.plot()`` the share of each
    identified language with its Wilson 95% interval, the target's bar highlighted.

    Attributes:
        target: the target language (normalised code).
        rate: share of continuations identified as ``target``.
        low: lower end of the Wilson 95% interval.
        high: upper end.
        n: continuations judged.
        prompts: the prompt of each continuation.
        generations: the continuations (prompt text not included).
        languages: the identified language of each (``"unknown"`` when too short to tell).
        seconds: wall time spent generating and identifying.
        decoding: how the continuations were decoded: ``"kv-cache"`` (checked against the
            forward pass, :func:`~lensneurons.evaluate.check_kv_cache`) or ``"full-forward"``.
        do_sample: whether they were sampled (else greedy).
        seed: the sampling seed.
        fingerprint: the model's fingerprint (:meth:`ModelView.fingerprint`): ``load(path,
            model)`` refuses the result of another model.
    """

    target: str
    rate: float
    low: float
    high: float
    n: int
    prompts: list[str] = field(repr=False)
    generations: list[str] = field(repr=False)
    languages: list[str] = field(repr=False)
    seconds: dict[str, float] = field(repr=False, default_factory=dict)
    decoding: str = "kv-cache"
    do_sample: bool = False
    seed: int = 0
    fingerprint: dict[str, Any] = field(default_factory=dict, repr=False)

    def table(self) -> pd.DataFrame:
        """One row per continuation: prompt, generation, language, on_target."""
        return pd.DataFrame({
            "prompt": self.prompts, "generation": self.generations,
            "language": self.languages,
            "on_target": [lang == self.target for lang in self.languages],
        })

    def distribution(self) -> pd.Series:
        """Share of continuations per identified language, largest first."""
        return pd.Series(self.languages, dtype=str).value_counts(normalize=True)

    def summary_line(self) -> str:
        """The rate, its interval and how the continuations were decoded, in one line."""
        return (f"ForcingResult: {self.rate:.0%} of {self.n} continuations in {self.target} "
                f"(95% interval {self.low:.0%} to {self.high:.0%}; {self.decoding})")

    def plot(self, ax: Any = None) -> Any:
        """Share of the continuations per identified language, with Wilson 95% intervals.

        The target's bar (drawn even when no continuation is in it) is highlighted, so its
        height and interval are the forcing rate and the interval of :func:`forcing_rate`.
        """
        counts = pd.Series(self.languages, dtype=str).value_counts()
        if self.target not in counts.index:
            counts[self.target] = 0
        counts = counts.sort_values(ascending=False, kind="stable")
        n = max(self.n, 1)
        shares = counts.to_numpy() / n
        bounds = [wilson_interval(int(k), self.n) for k in counts.to_numpy()]
        err = [[s - lo for s, (lo, _) in zip(shares, bounds, strict=True)],
               [hi - s for s, (_, hi) in zip(shares, bounds, strict=True)]]
        fig, ax = axes(ax, (1.5 + 0.6 * len(counts), 3.5))
        colors = ["tab:red" if lang == self.target else "tab:gray" for lang in counts.index]
        ax.bar([str(lang) for lang in counts.index], shares, yerr=err, capsize=3, color=colors)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("identified language")
        ax.set_ylabel("share of continuations")
        ax.set_title(f"forcing into {self.target}: {self.rate:.2f} "
                     f"[{self.low:.2f}, {self.high:.2f}], n = {self.n}")
        fig.tight_layout()
        return fig


def forcing_rate(
    model: Any,
    prompts: Sequence[str],
    fwd_hooks: Sequence[tuple[Any, Callable[..., Any]]],
    target: str,
    *,
    max_new_tokens: int = 32,
    do_sample: bool = False,
    n_samples: int = 1,
    seed: int = 0,
    batch_size: int = 16,
    languages: Sequence[str] | None = None,
    stop: Sequence[str] = (),
    progress: bool = False,
    use_past_kv_cache: bool | None = None,
    **generate_kwargs: Any,
) -> ForcingResult:
    r"""Share of the model's continuations in ``target`` while ``fwd_hooks`` are active.

    Args:
        model: a TransformerLens model.
        prompts: prompts to continue (e.g. ``"Q: How are you today?\\nA:"``).
        fwd_hooks: the intervention (``ln.steer(sets, stats, None, "fr")``); ``[]`` measures
            the model as it is.
        target: the language the intervention should force (``"fr"``, ``"zh_CN"``, ...).
        max_new_tokens: tokens generated per continuation.
        do_sample: sample instead of greedy decoding.
        n_samples: continuations per prompt (needs ``do_sample`` when > 1).
        seed: seed of the sampling.
        batch_size: sequences per ``generate`` call.
        languages: restrict the identifier to these languages (e.g. the ones studied), which
            makes short texts less ambiguous; ``None``: every language it knows.
        stop: cut continuations before the first of these strings; the language-forcing test
            cuts at the next question (``["\nQ:", "\nA:"]``).
        progress: show a progress bar.
        use_past_kv_cache: ``None``: the KV cache only where it was proven to reproduce the
            forward pass (:func:`~lensneurons.evaluate.decoding_mode`); ``False``: the full
            forward at every step; ``True``: the cache, refused where it disagrees.
        **generate_kwargs: passed to ``model.generate`` (e.g. ``temperature=0.7``,
            ``stop_at_eos=False``).

    Returns:
        A :class:`ForcingResult`; ``.table()`` shows every continuation and its language.

    Raises:
        UnknownLanguageError: the identifier does not know ``target`` (before generating).
        ParameterError: no prompts, ``max_new_tokens=0``, malformed hooks, ``languages`` that
            leave the identifier a single answer, an option ``model.generate`` does not take.
        KVCacheError: ``use_past_kv_cache=True`` where the cache disagrees with the forward.
        ShapeMismatchError: hooks built for another model (at registration).
    """
    target = langid.check_language(target)
    if languages is not None:
        languages = [langid.check_language(code) for code in languages]
        if target not in languages:
            languages.append(target)
        langid.check_candidates(languages)
    started = time.perf_counter()
    continuations = generate(model, prompts, fwd_hooks, max_new_tokens=max_new_tokens,
                             do_sample=do_sample, n_samples=n_samples, seed=seed,
                             batch_size=batch_size, stop=stop, progress=progress,
                             use_past_kv_cache=use_past_kv_cache, **generate_kwargs)
    generated = time.perf_counter()
    flat = [text for per_prompt in continuations for text in per_prompt]
    found = langid.identify(flat, languages=languages)
    done = time.perf_counter()
    hits = sum(lang == target for lang in found)
    low, high = wilson_interval(hits, len(flat))
    return ForcingResult(
        target=target, rate=hits / len(flat), low=low, high=high, n=len(flat),
        prompts=[p for p, per_prompt in zip(prompts, continuations, strict=True)
                 for _ in per_prompt],
        generations=flat, languages=found,
        seconds={"generate": generated - started, "identify": done - generated},
        decoding=continuations.decoding, do_sample=bool(do_sample), seed=seed,
        fingerprint=ModelView(model).fingerprint(),
    )
