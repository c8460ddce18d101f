"""Shared pieces of the probability-based detectors: probabilities, entropy, percentiles."""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float

from lensneurons.errors import TooFewGroupsError
from lensneurons.stats import ActivationStats


def probabilities(stats: ActivationStats, method: str) -> Float[torch.Tensor, "layer unit group"]:
    """Activation probabilities ``[layer, unit, group]``; at least two groups are required.

    Raises:
        TooFewGroupsError: fewer than two groups.
    """
    if len(stats.groups) < 2:
        raise TooFewGroupsError(
            f"{method} compares groups, but the statistics hold only {stats.groups}. "
            "Collect at least two groups (e.g. two languages)."
        )
    return stats.probs().permute(1, 2, 0)


def entropy(probs: Float[torch.Tensor, "*units group"]) -> Float[torch.Tensor, " *units"]:
    """Entropy (natural log) of probabilities normalised across groups; 0 where all are 0."""
    total = probs.sum(-1, keepdim=True)
    normed = torch.where(total > 0, probs / total.clamp(min=torch.finfo(probs.dtype).tiny), 0.0)
    logs = torch.where(normed > 0, normed.log(), 0.0)
    return -(normed * logs).sum(-1)


def kth_smallest(values: torch.Tensor, rate: float) -> float:
    """The ``round(rate * N)``-th smallest of ``values`` (1-indexed, as ``torch.kthvalue``)."""
    flat = values.flatten()
    k = min(max(round(rate * flat.numel()), 1), flat.numel())
    return float(flat.kthvalue(k).values)


def lowest(scores: torch.Tensor, n: int) -> Bool[torch.Tensor, "..."]:
    """Mask of the ``n`` lowest ``scores``; ties go to the lower flat index (deterministic)."""
    order = torch.sort(scores.flatten(), stable=True).indices[:n]
    mask = torch.zeros(scores.numel(), dtype=torch.bool)
    mask[order] = True
    return mask.view(scores.shape)


def provenance(stats: ActivationStats) -> dict[str, object]:
    """The model fingerprint of ``stats`` (if any), to store with detected sets."""
    fingerprint = stats.meta.get("fingerprint")
    return {"fingerprint": fingerprint} if fingerprint else {}
