"""The fallback experiment: switch a language's neurons off step by step, see what it speaks.

Gurgurov et al. deactivate language-specific neurons progressively while the model answers
prompts, and record the languages of the answers at each step: the language the model "falls
back" to once its own is gone. :func:`fallback` runs any ordered series of cumulative neuron
sets; three builders make the usual series:

* :func:`layer_steps`: one language's set, a group of layers at a time (from the last layers,
  where language-specific units concentrate, or from the first);
* :func:`quantile_steps`: one language's set, most important units first, by any per-unit score
  (e.g. LAPE's entropy, negated, or a PLND frequency);
* :func:`language_steps`: the union of several languages' sets, one language at a time (the
  paper's own protocol: English, then French, then Spanish, ...).

Examples:
    >>> import torch, lensneurons as ln
    >>> mask = torch.zeros(4, 8, dtype=torch.bool)
    >>> mask[1, :2] = mask[3, :4] = True
    >>> steps = ln.evaluate.layer_steps(ln.NeuronSet.from_mask(mask), n_groups=2)
    >>> {label: len(s) for label, s in steps.items()}
    {'layers 2-3': 4, 'layers 0-3': 6}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from tqdm.auto import tqdm

from lensneurons.core.checks import positive_int
from lensneurons.core.figures import axes
from lensneurons.core.model import ModelView
from lensneurons.core.result import Result
from lensneurons.corpora import langid
from lensneurons.errors import ParameterError, ShapeMismatchError
from lensneurons.evaluate.generation import generate
from lensneurons.intervene.hooks import deactivate
from lensneurons.neurons import NeuronSet, NeuronSets


def layer_steps(neurons: NeuronSet, n_groups: int = 4, *,
                start: str = "last") -> dict[str, NeuronSet]:
    """Cumulative steps that add the set's units a group of consecutive layers at a time.

    Args:
        neurons: one language's set.
        n_groups: number of layer groups (steps).
        start: ``"last"`` (deepest layers first) or ``"first"``.
    """
    n_groups = positive_int(n_groups, "n_groups")
    if start not in ("last", "first"):
        raise ParameterError(f"start must be 'last' or 'first', got {start!r}.")
    n_layers = neurons.mask.shape[0]
    if n_groups > n_layers:
        raise ParameterError(f"n_groups={n_groups} exceeds the {n_layers} layers.")
    groups = np.array_split(np.arange(n_layers), n_groups)
    if start == "last":
        groups = groups[::-1]
    steps, mask, seen = {}, torch.zeros_like(neurons.mask), list[int]()
    for group in groups:
        mask[group] = neurons.mask[group]
        seen.extend(int(layer) for layer in group)
        label = f"layers {min(seen)}-{max(seen)}"
        steps[label] = NeuronSet(mask.clone(), site=neurons.site, gated=neurons.gated,
                                 fingerprint=neurons.fingerprint)
    return steps


def quantile_steps(neurons: NeuronSet, scores: Float[torch.Tensor, "layer unit"],
                   quantiles: Sequence[float] = (0.25, 0.5, 0.75, 1.0)) -> dict[str, NeuronSet]:
    """Cumulative steps that add the set's units by descending ``scores``.

    Args:
        neurons: one language's set.
        scores: one score per unit of the site (higher: switched off earlier); only members of
            ``neurons`` are used. Ties keep layer-major order.
        quantiles: increasing shares in (0, 1] of the set switched off at each step.
    """
    if scores.shape != neurons.mask.shape:
        raise ShapeMismatchError(f"scores have shape {tuple(scores.shape)}; the set is "
                                 f"{tuple(neurons.mask.shape)}. Pass one score per unit.")
    shares = [float(q) for q in quantiles]
    if not shares or any(not 0 < q <= 1 for q in shares) or shares != sorted(set(shares)):
        raise ParameterError(f"quantiles must increase within (0, 1], got {list(quantiles)}.")
    members = neurons.mask.flatten().nonzero().squeeze(1)
    if len(members) == 0:
        raise ParameterError("The set is empty: there is nothing to switch off.")
    order = members[torch.argsort(-scores.flatten()[members].float(), stable=True)]
    steps = {}
    for share in shares:
        mask = torch.zeros(neurons.mask.numel(), dtype=torch.bool)
        mask[order[:max(1, round(share * len(order)))]] = True
        steps[f"top {share:.0%}"] = NeuronSet(mask.view_as(neurons.mask), site=neurons.site,
                                             gated=neurons.gated,
                                             fingerprint=neurons.fingerprint)
    return steps


def language_steps(sets: NeuronSets, order: Sequence[str]) -> dict[str, NeuronSet]:
    """Cumulative steps that add one language's whole set at a time, in ``order``."""
    if not order:
        raise ParameterError("order names no language; pass e.g. ['en', 'fr', 'es'].")
    steps, union, names = {}, None, []
    for group in order:
        union = sets[group] if union is None else union | sets[group]
        names.append(group)
        steps["+".join(names)] = union
    return steps


#: The label of :func:`fallback`'s first row, the continuations without intervention.
BASELINE = "none"
#: Step labels :func:`fallback` refuses, since its own rows use them.
RESERVED_STEPS = frozenset({BASELINE})


@dataclass(frozen=True)
class FallbackResult(Result):
    """Languages of the continuations at each step.

    Attributes:
        shares: rows = steps (``"none"`` first), columns = identified languages, values =
            share of the continuations.
        n_units: units switched off at each step.
        generations: per step, the continuations.
        decoding: per step, how they were decoded (``"kv-cache"`` or ``"full-forward"``).
        fingerprint: the model's fingerprint (:meth:`ModelView.fingerprint`): ``load(path,
            model)`` refuses the result of another model.

    ``.table()`` is the shares with the units switched off; ``.plot()`` the stacked shares.
    """

    shares: pd.DataFrame
    n_units: pd.Series
    generations: dict[str, list[str]] = field(repr=False)
    decoding: dict[str, str] = field(repr=False, default_factory=dict)
    fingerprint: dict[str, Any] = field(default_factory=dict, repr=False)

    def dominant(self) -> pd.Series:
        """The most frequent language at each step (``"unknown"`` included)."""
        return self.shares.idxmax(axis=1)

    def table(self) -> pd.DataFrame:
        """One row per step (``"none"`` first): ``n_units``, then the share of each language."""
        table = self.shares.copy()
        table.insert(0, "n_units", self.n_units.reindex(table.index).to_numpy())
        table.index.name = "step"
        return table

    def plot(self, ax: Any = None, *, title: str | None = None) -> Any:
        """A stacked area plot of the language shares over the steps."""
        fig, ax = axes(ax, (6.5, 3.5))
        x = np.arange(len(self.shares))
        ax.stackplot(x, self.shares.to_numpy().T, labels=list(self.shares.columns), alpha=0.85)
        ax.set_xticks(x, [f"{s}\n({n})" for s, n in self.n_units.items()], fontsize="small")
        ax.set_ylim(0, 1)
        ax.set_ylabel("share of continuations")
        ax.set_xlabel("units switched off (count)")
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small")
        ax.set_title(title or "fallback")
        fig.tight_layout()
        return fig


def fallback(
    model: Any,
    prompts: Sequence[str],
    steps: Mapping[str, NeuronSet],
    *,
    max_new_tokens: int = 32,
    batch_size: int = 16,
    languages: Sequence[str] | None = None,
    stop: Sequence[str] = (),
    progress: bool = True,
    **generate_kwargs: Any,
) -> FallbackResult:
    """Continue ``prompts`` with each step's units deactivated; tabulate the output languages.

    Args:
        model: a TransformerLens model.
        prompts: prompts, usually in the language being switched off.
        steps: ordered ``label -> NeuronSet`` (from :func:`layer_steps`, :func:`quantile_steps`
            or :func:`language_steps`); a step ``"none"`` without intervention comes first,
            so no step of ``steps`` may be named ``"none"``.
        max_new_tokens: tokens per continuation.
        batch_size: sequences per generation call.
        languages: restrict the identifier to these languages.
        stop: cut continuations before the first of these strings.
        progress: show a progress bar over the steps.
        **generate_kwargs: passed to ``model.generate``.

    Raises:
        ParameterError: no steps, a step that is not a NeuronSet, or one named ``"none"``.
        ShapeMismatchError: a set that does not fit ``model``.
    """
    if not isinstance(steps, Mapping) or not steps:
        raise ParameterError("steps must be a non-empty mapping label -> NeuronSet; build it "
                             "with ln.evaluate.layer_steps(sets['fr']).")
    for label, neurons in steps.items():
        if label in RESERVED_STEPS:
            raise ParameterError(
                f"A step is named {label!r}, the name of the baseline row (no intervention) "
                f"that fallback adds itself; it would overwrite that row. Rename the step "
                f"(e.g. {label + ' (mine)'!r}), and leave the baseline out of steps."
            )
        if not isinstance(neurons, NeuronSet):
            raise ParameterError(f"Step {label!r} is {type(neurons).__name__}, not a NeuronSet.")
        neurons.check_model(model)
    if languages is not None:
        languages = sorted(langid.check_candidates(languages) or ())  # before any generation
    counts, texts, units, decoding = {}, {}, {BASELINE: 0}, {}
    plan = [(BASELINE, None), *steps.items()]
    for label, neurons in tqdm(plan, desc="fallback", disable=not progress):
        hooks = [] if neurons is None else deactivate(neurons, model=model)
        continuations = generate(model, prompts, hooks, max_new_tokens=max_new_tokens,
                                 batch_size=batch_size, stop=stop, **generate_kwargs)
        texts[label] = [text for per_prompt in continuations for text in per_prompt]
        decoding[label] = continuations.decoding
        found = langid.identify(texts[label], languages=languages)
        counts[label] = pd.Series(found, dtype=str).value_counts(normalize=True)
        if neurons is not None:
            units[label] = len(neurons)
    shares = pd.DataFrame(counts).T.fillna(0.0)
    shares = shares[shares.sum().sort_values(ascending=False).index]
    return FallbackResult(shares, pd.Series(units, name="n_units"), texts, decoding,
                          ModelView(model).fingerprint())
