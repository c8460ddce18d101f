"""Which units code-mixed input uses: active sets per group and their overlap (IoU) per layer.

**Active set.** A unit's activity is the count of tokens on which it is active (``act(g) > 0``,
read at the gate pre-activation: ``ActivationStats.active``). Counting where the MLP's product
``act(g) * u`` is nonzero instead would count nearly every unit on nearly every token, since the
product of two real numbers is almost never exactly zero; every set would then hold almost every
unit. Two rules turn the counts of one group into a set, layer by layer:

- ``rule="coverage"`` (Tan et al.'s rule): sort the layer's units by count, highest first (ties by
  index), and keep the shortest prefix whose counts sum to at least ``share`` (0.9) of the layer's
  total count. A layer with no activity has an empty set.
- ``rule="top_k"``: the ``k`` units of highest activation probability in the layer (ties by
  index), units never active excluded.

``remove_shared=True`` then removes, in each layer, the units that are in *every* group's set (of
all groups compared, mixed and pure): what is left is what tells the groups apart.

**Overlap.** For a mixed group ``m`` and a pure language ``p``, per layer,
``IoU = |S_m ∩ S_p| / |S_m ∪ S_p|``; NaN where both sets are empty.

Examples:
    >>> import torch, lensneurons as ln
    >>> from lensneurons.detect import specialisation_iou
    >>> pure = ln.ActivationStats.from_counts(
    ...     {"fr": torch.tensor([[9, 9, 1, 0]]), "en": torch.tensor([[0, 9, 9, 1]])},
    ...     {"fr": 10, "en": 10})
    >>> mixed = ln.ActivationStats.from_counts({"fr+en@0.5": torch.tensor([[9, 9, 9, 0]])},
    ...                                        {"fr+en@0.5": 10})
    >>> specialisation_iou(mixed, pure)[["pure", "iou"]].values.tolist()
    [['fr', 0.6666666666666666], ['en', 0.6666666666666666]]
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from jaxtyping import Bool

from lensneurons.core import checks as _checks
from lensneurons.core.model import same_fingerprint
from lensneurons.detect._common import provenance
from lensneurons.errors import ModelMismatchError, ParameterError, ShapeMismatchError
from lensneurons.neurons import NeuronSet, NeuronSets
from lensneurons.stats.activation_stats import ActivationStats

__all__ = ["active_sets", "plot_specialisation", "specialisation_iou"]

Rule = Literal["coverage", "top_k"]
_MIXED = re.compile(r"(?P<base>.+)\+(?P<partner>.+)@(?P<rate>[0-9.eE+-]+)")


def _stats(stats: object, name: str) -> ActivationStats:
    if not isinstance(stats, ActivationStats):
        raise ParameterError(
            f"{name} must be ActivationStats, got {type(stats).__name__}. Collect them with "
            "ln.collect(model, corpus)."
        )
    return stats


def _masks(stats: ActivationStats, rule: Rule, share: float,
           k: int | None) -> Bool[torch.Tensor, "group layer unit"]:
    """The active set of every group and layer, by ``rule`` (module docstring)."""
    width = stats.shape[1]
    if rule == "coverage":
        counts, order = torch.sort(stats.active, dim=-1, descending=True, stable=True)
        running = counts.cumsum(-1).double()
        total = running[..., -1:]
        size = ((running < share * total).sum(-1, keepdim=True) + 1).clamp(max=width)
        size = torch.where(total > 0, size, 0)
    else:
        probs, order = torch.sort(stats.probs(), dim=-1, descending=True, stable=True)
        size = torch.minimum((probs > 0).sum(-1, keepdim=True), torch.tensor(k))
    ranks = torch.arange(width).expand_as(order)
    return torch.zeros_like(order, dtype=torch.bool).scatter(-1, order, ranks < size)


def _check_rule(rule: object, share: object, k: object,
                width: int) -> tuple[Rule, float, int | None]:
    if rule not in ("coverage", "top_k"):
        raise ParameterError(f"rule must be 'coverage' or 'top_k', got {rule!r}.")
    share = _checks.rate(share, "share")
    if rule == "coverage":
        if k is not None:
            raise ParameterError("k is the size of a top_k set; pass rule='top_k' with it.")
        return "coverage", share, None
    if k is None:
        raise ParameterError("rule='top_k' needs k, the units per layer (e.g. k=100).")
    k = _checks.positive_int(k, "k")
    if k > width:
        raise ParameterError(f"k={k} exceeds the {width} units of a layer.")
    return "top_k", share, k


def active_sets(
    stats: ActivationStats, *, rule: Rule = "coverage", share: float = 0.9,
    k: int | None = None, remove_shared: bool = False,
) -> NeuronSets:
    """The active set of each group (module docstring), as :class:`NeuronSets`.

    Args:
        stats: activation counts per group.
        rule: ``"coverage"`` (the units covering ``share`` of the layer's activity) or
            ``"top_k"`` (the ``k`` most often active units per layer).
        share: the share of the activity covered, in ``(0, 1]`` (``"coverage"`` only).
        k: units per layer (``"top_k"`` only).
        remove_shared: remove the units that are in every group's set.

    Raises:
        ParameterError: ``stats`` is not ActivationStats, or a bad ``rule``, ``share`` or ``k``.

    Examples:
        >>> import torch, lensneurons as ln
        >>> stats = ln.ActivationStats.from_counts({"fr": torch.tensor([[5, 3, 2, 0]])},
        ...                                        {"fr": 5})
        >>> active_sets(stats, share=0.75)["fr"].indices[0].tolist()
        [0, 1]
        >>> active_sets(stats, rule="top_k", k=3)["fr"].indices[0].tolist()
        [0, 1, 2]
    """
    stats = _stats(stats, "stats")
    rule, share, k = _check_rule(rule, share, k, stats.shape[1])
    masks = _masks(stats, rule, share, k)
    if _checks.flag(remove_shared, "remove_shared"):
        masks = masks & ~masks.all(0)
    gated = stats.meta.get("gated")
    return NeuronSets({g: NeuronSet(masks[i], site=stats.site, gated=gated)
                       for i, g in enumerate(stats.groups)},
                      {"method": "active_sets", "rule": rule, "share": share, "k": k,
                       "remove_shared": remove_shared, **provenance(stats)})


def specialisation_iou(
    stats_mixed: ActivationStats, stats_pure: ActivationStats, *, rule: Rule = "coverage",
    share: float = 0.9, k: int | None = None, remove_shared: bool = False,
) -> pd.DataFrame:
    """Per layer, the IoU of each mixed group's active set with each pure language's.

    Args:
        stats_mixed: statistics of the code-mixed groups (names as in
            :func:`~lensneurons.corpora.mixed_group`, for :func:`plot_specialisation`).
        stats_pure: statistics of the pure languages, from the same model and site.
        rule: ``"coverage"`` or ``"top_k"`` (:func:`active_sets`).
        share: the share of each layer's activity an active set covers (``"coverage"``).
        k: units per layer (``"top_k"``).
        remove_shared: remove the units in every set of both statistics first.

    Returns:
        One row per (mixed group, pure language, layer): ``mixed``, ``pure``, ``layer``,
        ``iou``, and the set sizes ``mixed_size``, ``pure_size``.

    Raises:
        ParameterError: an input is not ActivationStats, or a bad rule parameter.
        ShapeMismatchError: the statistics have other sites or shapes.
        ModelMismatchError: they were collected on different models (the same weights in bf16
            and fp32 are one model).

    Examples:
        >>> import torch, lensneurons as ln
        >>> stats = ln.ActivationStats.from_counts({"fr": torch.tensor([[5, 3, 2, 0]])},
        ...                                        {"fr": 5})
        >>> specialisation_iou(stats, stats)["iou"].tolist()
        [1.0]
    """
    stats_mixed = _stats(stats_mixed, "stats_mixed")
    stats_pure = _stats(stats_pure, "stats_pure")
    if stats_mixed.site != stats_pure.site or stats_mixed.shape != stats_pure.shape:
        raise ShapeMismatchError(
            f"The mixed statistics are {stats_mixed.shape} on site {stats_mixed.site!r}, the "
            f"pure ones {stats_pure.shape} on {stats_pure.site!r}; collect both with the same "
            "model and site."
        )
    mine, theirs = (s.meta.get("fingerprint") for s in (stats_mixed, stats_pure))
    if not same_fingerprint(mine, theirs):  # the same weights in bf16 and fp32 are one model
        raise ModelMismatchError(
            "The mixed and pure statistics were collected on different models; collect both "
            "with the same one."
        )
    rule, share, k = _check_rule(rule, share, k, stats_mixed.shape[1])
    mixed, pure = _masks(stats_mixed, rule, share, k), _masks(stats_pure, rule, share, k)
    if _checks.flag(remove_shared, "remove_shared"):
        shared = mixed.all(0) & pure.all(0)
        mixed, pure = mixed & ~shared, pure & ~shared
    inter = (mixed[:, None] & pure[None]).sum(-1).double()
    union = (mixed[:, None] | pure[None]).sum(-1).double()
    iou = torch.where(union > 0, inter / union.clamp(min=1), float("nan"))
    n_layers = stats_mixed.shape[0]
    rows = [(m, p, layer, float(iou[i, j, layer]), int(mixed[i, layer].sum()),
             int(pure[j, layer].sum()))
            for i, m in enumerate(stats_mixed.groups) for j, p in enumerate(stats_pure.groups)
            for layer in range(n_layers)]
    return pd.DataFrame(rows, columns=["mixed", "pure", "layer", "iou", "mixed_size",
                                       "pure_size"])


def plot_specialisation(
    table: pd.DataFrame, *, bands: int = 3, rates: Mapping[str, float] | None = None,
) -> Any:
    """IoU against the mixing rate: one panel per mix and band of layers, one line per language.

    Reads the base language, the mixed-in language and the rate from the ``mixed`` names
    (``"fr+en@0.25"``, :func:`~lensneurons.corpora.mixed_group`); rows of other names are left
    out. Each point is the mean IoU over the layers of its band (``bands`` contiguous bands of
    nearly equal size). Each pure language keeps one colour in every panel.

    Args:
        table: the result of :func:`specialisation_iou`.
        bands: bands of layers (rows of panels), between 1 and the number of layers.
        rates: the x value of some mixed groups, e.g. the achieved rates
            (:attr:`~lensneurons.corpora.MixResult.rate`) instead of the requested ones.

    Returns:
        The matplotlib figure.

    Raises:
        ParameterError: not such a table, no ``mixed`` name of the form ``base+mixed@rate``,
            ``bands`` out of range, or ``rates`` not a dict of numbers.

    Examples:
        >>> import pandas as pd
        >>> table = pd.DataFrame({"mixed": ["fr+en@0", "fr+en@1"] * 2, "pure": ["fr"] * 4,
        ...                       "layer": [0, 0, 1, 1], "iou": [1.0, 0.4, 1.0, 0.6]})
        >>> fig = plot_specialisation(table, bands=2, rates={"fr+en@1": 0.52})
        >>> len(fig.axes), fig.axes[0].get_lines()[0].get_xdata().tolist()
        (2, [0.0, 0.52])
    """
    import matplotlib.pyplot as plt

    if not isinstance(table, pd.DataFrame) or not {"mixed", "pure", "layer", "iou"} <= set(
            table.columns):
        raise ParameterError("table must be the DataFrame of specialisation_iou(...).")
    parsed = table["mixed"].astype(str).str.fullmatch(_MIXED.pattern)
    if not parsed.any():
        raise ParameterError(
            "No mixed group is named 'base+mixed@rate'; name them with "
            "mixed_group(base, mixed, rate), e.g. 'fr+en@0.25'."
        )
    data = pd.concat([table[parsed].reset_index(drop=True),
                      table.loc[parsed, "mixed"].str.extract(_MIXED.pattern).reset_index(
                          drop=True)], axis=1)
    data["rate"] = data["rate"].astype(float)
    if rates is not None:
        _checks.mapping(rates, "rates", "{mixed group: rate}")
        given = {g: _checks.real(r, f"rates[{g!r}]") for g, r in rates.items()}
        data["rate"] = [given.get(g, r) for g, r in zip(data["mixed"], data["rate"])]
    layers = sorted(data["layer"].unique())
    bands = _checks.positive_int(bands, "bands")
    if bands > len(layers):
        raise ParameterError(f"bands={bands} exceeds the {len(layers)} layers in the table.")
    pairs = list(dict.fromkeys(zip(data["base"], data["partner"])))
    colours = {p: f"C{i}" for i, p in enumerate(dict.fromkeys(data["pure"]))}
    fig, axes = plt.subplots(bands, len(pairs), figsize=(4.2 * len(pairs), 2.8 * bands),
                             sharex=True, sharey=True, squeeze=False)
    for row, band in enumerate(np.array_split(np.array(layers), bands)):
        for col, (base, partner) in enumerate(pairs):
            ax = axes[row, col]
            here = data[(data["base"] == base) & (data["partner"] == partner)
                        & data["layer"].isin(band)]
            curves = here.groupby(["pure", "rate"], sort=False)["iou"].mean().unstack(0)
            curves.sort_index().plot(ax=ax, marker="o", legend=row == 0 and col == 0,
                                     color=[colours[p] for p in curves.columns])
            ax.set_title(f"{base} + {partner}, layers {band[0]}-{band[-1]}", fontsize="small")
            ax.set_xlabel("share of words replaced" if rates is not None else "mixing rate")
            ax.set_ylabel("IoU")
    fig.tight_layout()
    return fig
