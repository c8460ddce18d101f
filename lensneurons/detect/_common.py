"""Shared pieces of the detectors: probabilities, entropy, percentiles, and the one selection rule.

Every detector that keeps a share of a ranking calls it ``top_rate`` (or ``<what>_top_rate`` when a
detector keeps several shares) and selects with the helpers here: :func:`n_selected` turns the share
into a count, ``round(top_rate x N)``, refused when it is 0, and :func:`lowest` / :func:`highest`
pick that many units, ties to the lower flat index.

Examples:
    >>> import torch
    >>> n = n_selected(0.5, 4, "Example")
    >>> highest(torch.tensor([1.0, 3.0, 3.0, 0.0]), n).tolist()
    [False, True, True, False]
    >>> lowest(torch.tensor([1.0, 3.0, 3.0, 0.0]), n).tolist()
    [True, False, False, True]
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch
from einops import rearrange
from jaxtyping import Bool, Float

from lensneurons.errors import ParameterError, TooFewGroupsError
from lensneurons.stats.activation_stats import ActivationStats


def probabilities(stats: ActivationStats, method: str) -> Float[torch.Tensor, "layer unit group"]:
    """Activation probabilities ``[layer, unit, group]``; at least two groups are required.

    Raises:
        ParameterError: ``stats`` is not an :class:`ActivationStats`.
        TooFewGroupsError: fewer than two groups.
    """
    if not isinstance(stats, ActivationStats):
        raise ParameterError(
            f"{method} reads ActivationStats, got {type(stats).__name__}. Collect them with "
            "ln.collect(model, corpus), or build them with ActivationStats.from_counts(...)."
        )
    if len(stats.groups) < 2:
        raise TooFewGroupsError(
            f"{method} compares groups, but the statistics hold only {stats.groups}. "
            "Collect at least two groups (e.g. two languages)."
        )
    return rearrange(stats.probs(), "group layer unit -> layer unit group")


def entropy(probs: Float[torch.Tensor, "*units group"]) -> Float[torch.Tensor, " *units"]:
    """Entropy (natural log) of probabilities normalised across groups; 0 where all are 0."""
    total = probs.sum(-1, keepdim=True)
    normed = torch.where(total > 0, probs / total.clamp(min=torch.finfo(probs.dtype).tiny), 0.0)
    logs = torch.where(normed > 0, normed.log(), 0.0)
    return -(normed * logs).sum(-1)


def n_selected(top_rate: float, n_units: int, method: str, name: str = "top_rate") -> int:
    """``round(top_rate * n_units)``: how many units a ``top_rate`` selects.

    Args:
        top_rate: the share selected.
        n_units: the size of the ranking.
        method: who selects, for the message.
        name: the parameter's name, for the message (e.g. ``"specific_top_rate"``).

    Raises:
        ParameterError: the rate selects no unit at all (below ``0.5 / n_units``).
    """
    count = round(top_rate * n_units)
    if count < 1:
        raise ParameterError(
            f"{method}: {name}={top_rate!r} selects round({top_rate!r} x {n_units}) = 0 of the "
            f"{n_units} units. Use {name} >= {1 / n_units:.3g} (at least one unit)."
        )
    return count


def kth_smallest(values: Float[torch.Tensor, "..."], rate: float) -> float:
    """The ``round(rate * N)``-th smallest of ``values`` (1-indexed, as ``torch.kthvalue``)."""
    flat = values.flatten()
    k = min(max(round(rate * flat.numel()), 1), flat.numel())
    return float(flat.kthvalue(k).values)


def lowest(scores: Float[torch.Tensor, "*shape"], n: int) -> Bool[torch.Tensor, "*shape"]:
    """Mask of the ``n`` lowest ``scores``; ties go to the lower flat index (deterministic)."""
    order = torch.sort(scores.flatten(), stable=True).indices[:n]
    mask = torch.zeros(scores.numel(), dtype=torch.bool)
    mask[order] = True
    return mask.view(scores.shape)


def highest(scores: Float[torch.Tensor, "*shape"], n: int) -> Bool[torch.Tensor, "*shape"]:
    """Mask of the ``n`` highest ``scores``; ties go to the lower flat index (deterministic)."""
    order = torch.sort(-scores.flatten(), stable=True).indices[:n]
    mask = torch.zeros(scores.numel(), dtype=torch.bool)
    mask[order] = True
    return mask.view(scores.shape)


def layer_bars(table: pd.DataFrame, *, ax: Any = None, title: str, legend: str,
               ylabel: str = "units", stacked: bool = False) -> Any:
    """Bars per layer (columns of ``table``), one colour per row; the detectors' figure.

    Returns:
        The matplotlib ``Figure`` (``ax.figure`` when ``ax`` is given).
    """
    from lensneurons.core.figures import axes

    fig, ax = axes(ax, (max(6.0, 0.3 * table.shape[1]), 3.5))
    table.T.plot.bar(ax=ax, stacked=stacked, width=0.85, colormap="tab10", rot=0)
    ax.set_xlabel("layer")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(title=legend, fontsize="small", ncols=2)
    fig.tight_layout()
    return fig


def provenance(stats: ActivationStats) -> dict[str, object]:
    """The model fingerprint of ``stats`` (if any), to store with detected sets."""
    fingerprint = stats.meta.get("fingerprint")
    return {"fingerprint": fingerprint} if fingerprint else {}
