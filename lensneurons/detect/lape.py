"""LAPE: language activation probability entropy (Tang et al., ACL 2024), and its variants.

The rule, exactly as the released code applies it (DESIGN.md §5):

1. ``P = active / n`` per group; ``P~ = P / sum_k P`` (0 where the sum is 0);
   ``H = -sum_k P~ ln P~`` (``0 ln 0 = 0``).
2. ``tau`` = the ``round(0.95 N)``-th smallest of *all* ``P`` (``N = L x D x K``, one global
   percentile). ``H = +inf`` where no group has ``P > tau`` (``filter_rate``).
3. Select the ``round(top_rate x L x D)`` lowest ``H`` over all layers together.
4. A selected unit belongs to every group whose ``P`` exceeds the ``bar_ratio`` percentile
   (the same number as ``tau`` by default): multi-label.

Deliberate deviations from the original code: ties are broken by index (``topk`` is not stable),
and a group with no neuron keeps its (empty) place, where the original ``bincount`` split shifts
the following languages. Variants: ``tau_scope="per_group"`` (a percentile per group),
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

from lensneurons.detect._common import entropy, kth_smallest, lowest, probabilities, provenance
from lensneurons.neurons import NeuronSet, NeuronSets
from lensneurons.stats import ActivationStats


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
        top_rate: fraction of all units selected (lowest entropy first).
        filter_rate: percentile of all probabilities that a unit must exceed in some group to
            be eligible.
        bar_ratio: percentile a group's probability must exceed for the unit to join its set.
        tau_scope: ``"global"`` (one percentile over all groups, the paper's) or
            ``"per_group"`` (a percentile per group).
        per_group_budget: if set, ignore ``top_rate`` and give each group its
            ``per_group_budget`` lowest-entropy units among those above its bar (Kargaran).
        exclusive: keep only units that belong to exactly one group.

    Returns:
        The sets per group; ``meta`` holds the thresholds and parameters.

    Raises:
        TooFewGroupsError: fewer than two groups.
    """
    probs = probabilities(stats, "LAPE")
    n_layers, width, n_groups = probs.shape
    scores = entropy(probs)
    if tau_scope == "global":
        filter_tau = torch.full((n_groups,), kth_smallest(probs, filter_rate), dtype=probs.dtype)
        bar = torch.full((n_groups,), kth_smallest(probs, bar_ratio), dtype=probs.dtype)
    elif tau_scope == "per_group":
        filter_tau = torch.tensor([kth_smallest(probs[..., k], filter_rate)
                                   for k in range(n_groups)], dtype=probs.dtype)
        bar = torch.tensor([kth_smallest(probs[..., k], bar_ratio) for k in range(n_groups)],
                           dtype=probs.dtype)
    else:
        raise ValueError(f"tau_scope must be 'global' or 'per_group', got {tau_scope!r}.")
    scores = scores.masked_fill(~(probs > filter_tau).any(-1), float("inf"))
    above = probs > bar
    if per_group_budget is None:
        selected = lowest(scores, round(top_rate * n_layers * width))
        members = above & selected[..., None]
    else:
        members = torch.stack([
            lowest(scores.masked_fill(~above[..., k], float("inf")), per_group_budget)
            & above[..., k]
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
