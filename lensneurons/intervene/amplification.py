"""Rahmanisa et al.'s amplification values: set a language's units to what they reach on it.

Their "patched" amplification sets each target-language unit to a value measured on that
language's sentences: ``p_max``, the largest per-sentence mean activation, or ``p_median``, the
median of the per-sentence means (``collect(..., sequence_stats=True)`` keeps both). Unlike their
code, whose simpler operators edited only the first row of a batch, the hooks here are ordinary
:func:`~lensneurons.set_activation` hooks and act on every row and position.

Examples:
    >>> import torch, lensneurons as ln
    >>> model = ln.organism.load()
    >>> texts = {"en": ["The cat sleeps.", "A dog barks."], "fr": ["Le chat dort.", "Un chien."]}
    >>> stats = ln.collect(model, ln.Corpus.from_texts(texts), sequence_stats=True,
    ...                    progress=False)
    >>> values = ln.intervene.amplification_values(stats, "fr", "p_max")
    >>> bool((values >= stats.mean("fr") - 1e-6).all())  # the max of means >= the mean
    True
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import torch
from jaxtyping import Float

from lensneurons.errors import ParameterError
from lensneurons.intervene.hooks import HookList, Positions, set_activation
from lensneurons.neurons import NeuronSets
from lensneurons.stats.activation_stats import ActivationStats

Kind = Literal["p_max", "p_median", "mean"]


def amplification_values(stats: ActivationStats, group: str,
                         kind: Kind = "p_max") -> Float[torch.Tensor, "layer unit"]:
    """Per unit, the value a ``group`` unit is set to: ``p_max``, ``p_median`` or ``mean``.

    Raises:
        ParameterError: an unknown ``kind``.
        MissingStatisticError: ``p_max``/``p_median`` without ``sequence_stats=True``, or
            ``mean`` without sums.
        UnknownGroupError: a group the statistics do not hold.
    """
    if kind == "p_max":
        return stats.seq_mean_max_of(group)
    if kind == "p_median":
        return stats.seq_mean_median_of(group)
    if kind == "mean":
        return stats.mean(group)
    raise ParameterError(f"kind must be 'p_max', 'p_median' or 'mean', got {kind!r}.")


def amplify_to(sets: NeuronSets, stats: ActivationStats, target: str, kind: Kind = "p_max", *,
               layers: Iterable[int] | int | None = None, positions: Positions = None,
               model: Any = None) -> HookList:
    """Hooks that set ``target``'s units to their ``kind`` value (Rahmanisa's patched factors).

    Args:
        sets: language sets (``ln.lape(stats)``).
        stats: statistics with per-sequence means (``sequence_stats=True``).
        target: the language amplified.
        kind: ``"p_max"`` (their usual choice), ``"p_median"`` or ``"mean"``.
        layers: restrict to these layers (their per-layer runs); default all.
        positions: restrict to these positions; default all.
        model: check the set against this model now.
    """
    if not isinstance(sets, NeuronSets):
        raise ParameterError(f"amplify_to needs NeuronSets, got {type(sets).__name__}.")
    values = amplification_values(stats, target, kind)
    return set_activation(sets[target], values, layers=layers, positions=positions, model=model)
