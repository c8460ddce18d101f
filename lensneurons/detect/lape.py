"""LAPE: language activation probability entropy (Tang et al., ACL 2024), and its variants.

The rule, exactly as the released code applies it (docs/design.md §7.1):

1. ``P = active / n`` per group; ``P~ = P / sum_k P`` (0 where the sum is 0);
   ``H = -sum_k P~ ln P~`` (``0 ln 0 = 0``).
2. ``tau`` = the ``round(0.95 N)``-th smallest of *all* ``P`` (``N = L x D x K``, one global
   percentile). ``H = +inf`` where no group has ``P > tau`` (``filter_rate``).
3. Select the ``round(top_rate x L x D)`` lowest ``H`` over all layers together.
4. A selected unit belongs to every group whose ``P`` exceeds the ``bar_ratio`` percentile
   (the same number as ``tau`` by default): multi-label.

Deliberate deviations from the original code: ties are broken by index (``topk`` is not stable),
a group with no neuron keeps its (empty) place, where the original ``bincount`` split shifts
the following languages, and a unit that fails the filter (``H = +inf``) is never selected, where
the original pads the selection with such units when fewer are eligible (which changes a set only
when ``bar_ratio < filter_rate``). Variants: ``tau_scope="per_group"`` (a percentile per group),
``per_group_budget=k`` (Kargaran et al.: the ``k`` lowest-entropy units among those above ``tau``
for each group), ``exclusive=True`` (units of exactly one group).

Examples:
    >>> import lensneurons as ln
    >>> stats = ln.ActivationStats.from_counts(
    ...     {"en": torch.tensor([[90, 10, 50, 0]]), "fr": torch.tensor([[10, 90, 50, 0]])},
    ...     {"en": 100, "fr": 100})
    >>> sets = ln.lape(stats, top_rate=0.5, filter_rate=0.5, bar_ratio=0.5)
    >>> sets["en"].indices[0].tolist(), sets["fr"].indices[0].tolist()
    ([0], [1])
"""

from __future__ import annotations

from typing import Literal

import torch

from lensneurons.core import checks as _checks
from lensneurons.detect._common import (
    entropy,
    kth_smallest,
    lowest,
    n_selected,
    probabilities,
    provenance,
)
from lensneurons.errors import ParameterError
from lensneurons.neurons import NeuronSet, NeuronSets
from lensneurons.stats.activation_stats import ActivationStats


def lape(
    stats: ActivationStats,
    *,
    top_rate: float = 0.01,
    filter_rate: float = 0.95,
    bar_ratio: float = 0.95,
    tau_scope: Literal["global", "per_group"] = "global",
    per_group_budget: int | None = None,
    exclusive: bool = False,
) -> NeuronSets:
    """Language-specific units by LAPE (Tang et al. 2024).

    Args:
        stats: activation counts of at least two groups.
        top_rate: fraction of all units selected (lowest entropy first), in ``(0, 1]``; it
            must select at least one unit. Only eligible units are selected, so fewer may be
            when fewer are eligible.
        filter_rate: percentile in ``[0, 1)`` of all probabilities that a unit must exceed in
            some group to be eligible.
        bar_ratio: percentile in ``[0, 1)`` a group's probability must exceed for the unit to
            join its set.
        tau_scope: ``"global"`` (one percentile over all groups, the paper's) or
            ``"per_group"`` (a percentile per group).
        per_group_budget: if set (an integer >= 1), ignore ``top_rate`` and give each group its
            ``per_group_budget`` lowest-entropy eligible units among those above its bar
            (Kargaran).
        exclusive: keep only units that belong to exactly one group.

    Returns:
        The sets per group; ``meta`` holds the thresholds and parameters.

    Raises:
        TooFewGroupsError: fewer than two groups.
        ParameterError: a rate or percentile out of its range (or NaN), ``top_rate`` selecting
            no unit, ``per_group_budget < 1``, an unknown ``tau_scope``, a non-bool
            ``exclusive``, or ``stats`` that are not :class:`ActivationStats`.

    Examples:
        >>> import lensneurons as ln
        >>> stats = ln.ActivationStats.from_counts(
        ...     {"en": torch.tensor([[90, 10]]), "fr": torch.tensor([[10, 90]])},
        ...     {"en": 100, "fr": 100})
        >>> try:
        ...     ln.lape(stats, top_rate=-0.1)
        ... except ln.errors.ParameterError as err:
        ...     print(err)
        top_rate must be a number in (0, 1], got -0.1.
    """
    top_rate = _checks.rate(top_rate, "top_rate")
    filter_rate = _checks.percentile(filter_rate, "filter_rate")
    bar_ratio = _checks.percentile(bar_ratio, "bar_ratio")
    if per_group_budget is not None:
        per_group_budget = _checks.positive_int(per_group_budget, "per_group_budget")
    exclusive = _checks.flag(exclusive, "exclusive")
    if tau_scope not in ("global", "per_group"):
        raise ParameterError(f"tau_scope must be 'global' or 'per_group', got {tau_scope!r}.")
    probs = probabilities(stats, "LAPE")
    n_layers, width, n_groups = probs.shape
    scores = entropy(probs)
    if tau_scope == "global":
        filter_tau = torch.full((n_groups,), kth_smallest(probs, filter_rate), dtype=probs.dtype)
        bar = torch.full((n_groups,), kth_smallest(probs, bar_ratio), dtype=probs.dtype)
    else:
        filter_tau = torch.tensor([kth_smallest(probs[..., k], filter_rate)
                                   for k in range(n_groups)], dtype=probs.dtype)
        bar = torch.tensor([kth_smallest(probs[..., k], bar_ratio) for k in range(n_groups)],
                           dtype=probs.dtype)
    eligible = (probs > filter_tau).any(-1)
    scores = scores.masked_fill(~eligible, float("inf"))
    above = probs > bar
    if per_group_budget is None:
        selected = lowest(scores, n_selected(top_rate, n_layers * width, "LAPE")) & eligible
        members = above & selected[..., None]
    else:
        members = torch.stack([
            lowest(scores.masked_fill(~above[..., k], float("inf")), per_group_budget)
            & above[..., k] & eligible
            for k in range(n_groups)
        ], dim=-1)
    if exclusive:
        members &= (members.sum(-1) == 1)[..., None]
    meta = {
        "method": "lape", "top_rate": top_rate, "filter_rate": filter_rate,
        "bar_ratio": bar_ratio, "tau_scope": tau_scope, "per_group_budget": per_group_budget,
        "exclusive": exclusive, "tau": bar.tolist(), **provenance(stats),
    }
    gated = stats.meta.get("gated")
    return NeuronSets({g: NeuronSet(members[..., k], site=stats.site, gated=gated)
                       for k, g in enumerate(stats.groups)}, meta)
