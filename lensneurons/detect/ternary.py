"""Ternary split into language-specific, language-related and general neurons (Zhang et al. 2025).

The rule of the released code (``identify.py``, ``autosweep.py``), which differs from the paper's
Eq. 5 in two normalisations (docs/design.md §7.2)::

    score = H / ln K - lam * max_k P / ((1 + 1/2 + ... + 1/K) / K)

The ``round(top_rate x L x D)`` lowest scores are selected; ``tau`` is the ``bar_ratio``
percentile of all probabilities and ``N`` the number of groups with ``P > tau``. A selected unit
is *specific* to its group when ``N = 1`` and *related* to each of its groups when
``1 < N < K``; *general* units are those with ``N = K`` among all units (the released code
does not emit them). ``lam="auto"`` is the largest ``lam`` in ``lam_range`` (default [0, 0.2];
binary search, ``eps = 1e-3``) for which no selected unit is above ``tau`` in all ``K`` groups.
When even the upper bound of the range lets no such unit in, the true ``lam`` may lie above it:
the result says so (``lam_at_bound``) and a :class:`~lensneurons.errors.SearchBoundWarning` is
emitted.

Units never active in any group (``sum_k P = 0``) are never selected: in the released code their
normalised probabilities are NaN and sort last. (Giving them entropy 0, as LAPE's code does, would
select them first, since LAPE removes them only through its ``tau`` filter, which this rule lacks.)
With this, the rule reproduces the released MGSM mask of MistralMathOctopus-7B exactly.

Examples:
    >>> import lensneurons as ln
    >>> stats = ln.ActivationStats.from_counts(
    ...     {"en": torch.tensor([[90, 10, 80, 5]]), "fr": torch.tensor([[10, 90, 80, 5]]),
    ...      "de": torch.tensor([[10, 90, 80, 5]])}, {"en": 100, "fr": 100, "de": 100})
    >>> result = ln.ternary(stats, top_rate=0.5, lam=0.0, bar_ratio=0.5)
    >>> result.specific["en"].indices[0].tolist(), result.related["fr"].indices[0].tolist()
    ([0], [1])
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd
import torch

from lensneurons.core import checks as _checks
from lensneurons.core.result import Result
from lensneurons.detect._common import (
    entropy,
    kth_smallest,
    layer_bars,
    lowest,
    n_selected,
    probabilities,
    provenance,
)
from lensneurons.errors import CorruptResultError, ParameterError, SearchBoundWarning
from lensneurons.neurons import NeuronSet, NeuronSets
from lensneurons.stats.activation_stats import ActivationStats

LAMBDA_RANGE = (0.0, 0.2)
LAMBDA_EPS = 1e-3


@dataclass(frozen=True)
class TernaryResult(Result):
    """Specific, related and general units, and the thresholds that made them.

    A result (:class:`~lensneurons.core.result.Result`): ``table()`` (specific and related units
    per group), ``plot()`` (specific, related and general units per layer), ``save`` / ``load``,
    and ``neuron_sets()``, the language sets (specific ∪ related per group).

    Attributes:
        specific: per group, selected units above ``tau`` in that group only.
        related: per group, selected units above ``tau`` in that group and some (not all) others.
        general: units above ``tau`` in every group (over all units).
        lam: the penalty weight used.
        tau: the membership threshold.
        appear: among selected units, how many are above ``tau`` in ``N`` groups, ``N = 0..K``.
        lam_at_bound: ``lam="auto"`` stopped at the top of its search range, which still let
            no unit above ``tau`` in all groups into the selection: the largest such ``lam`` may
            lie above the range (always ``False`` for an explicit ``lam``).

    Examples:
        >>> import lensneurons as ln
        >>> stats = ln.ActivationStats.from_counts(
        ...     {"en": torch.tensor([[90, 10, 80, 5]]), "fr": torch.tensor([[10, 90, 80, 5]]),
        ...      "de": torch.tensor([[10, 90, 80, 5]])}, {"en": 100, "fr": 100, "de": 100})
        >>> result = ln.ternary(stats, top_rate=0.5, lam=0.0, bar_ratio=0.5)
        >>> result.table().loc["fr"].tolist()  # specific, related
        [0, 1]
        >>> result.neuron_sets()["fr"].indices[0].tolist()
        [1]
    """

    specific: NeuronSets
    related: NeuronSets
    general: NeuronSet
    lam: float
    tau: float
    appear: list[int]
    lam_at_bound: bool = False

    kind = "result"

    @property
    def fingerprint(self) -> dict[str, Any] | None:
        """The fingerprint of the model the statistics were collected on, if recorded."""
        return self.specific.meta.get("fingerprint") or self.general.fingerprint

    def neuron_sets(self) -> NeuronSets:
        """The language sets: specific and related units per group (the released masks' content).

        ``result.specific`` and ``result.related`` hold the two parts, ``result.general`` the
        units above ``tau`` in every group.
        """
        return NeuronSets({g: self.specific[g] | self.related[g] for g in self.specific},
                          {**self.specific.meta, "kind": "language"})

    def table(self) -> pd.DataFrame:
        """Specific and related units per group (rows)."""
        return pd.DataFrame({
            "specific": [len(s) for s in self.specific.values()],
            "related": [len(s) for s in self.related.values()],
        }, index=pd.Index(self.specific.groups, name="group"))

    def summary_line(self) -> str:
        """One line for the notebook view: lambda, tau and the sizes of the three kinds."""
        return (f"TernaryResult: lam={self.lam:.4g}, tau={self.tau:.4g}, "
                f"{len(self.specific.union())} specific, {len(self.related.union())} related, "
                f"{len(self.general)} general units")

    def plot(self, ax: Any = None) -> Any:
        """Specific, related and general units per layer (bars side by side)."""
        table = pd.DataFrame({"specific": self.specific.union().per_layer(),
                              "related": self.related.union().per_layer(),
                              "general": self.general.per_layer()}).T
        return layer_bars(table, ax=ax, title=f"Ternary split (lam = {self.lam:.3g})",
                          legend="units")

    # -- storage: the masks as tensors, the rest as JSON --------------------------------------
    def _record(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        groups = self.specific.groups
        tensors = {"specific": torch.stack([self.specific[g].mask for g in groups]),
                   "related": torch.stack([self.related[g].mask for g in groups]),
                   "general": self.general.mask}
        meta = {k: v for k, v in self.specific.meta.items() if k != "kind"}
        return tensors, {"ternary": {
            "groups": groups, "site": self.general.site, "gated": self.general.gated,
            "lam": self.lam, "tau": self.tau, "appear": list(self.appear),
            "lam_at_bound": self.lam_at_bound, "meta": meta}}

    @classmethod
    def _from_record(cls, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> TernaryResult:
        record = meta.get("ternary")
        if (not isinstance(record, dict) or not isinstance(record.get("groups"), list)
                or any(k not in tensors for k in ("specific", "related", "general"))
                or tensors["specific"].shape[0] != len(record["groups"])):
            raise CorruptResultError(
                "This ternary result is damaged: its groups and masks disagree. Run ternary "
                "and save it again.")
        groups, site, gated = record["groups"], record["site"], record["gated"]
        inner = dict(record["meta"])

        def per_group(name: str) -> NeuronSets:
            return NeuronSets({g: NeuronSet(tensors[name][k], site=site, gated=gated)
                               for k, g in enumerate(groups)}, {**inner, "kind": name})

        return cls(per_group("specific"), per_group("related"),
                   NeuronSet(tensors["general"], site=site, gated=gated,
                             fingerprint=inner.get("fingerprint")),
                   float(record["lam"]), float(record["tau"]), list(record["appear"]),
                   bool(record["lam_at_bound"]))


def ternary(
    stats: ActivationStats,
    *,
    top_rate: float = 0.01,
    lam: float | Literal["auto"] = "auto",
    bar_ratio: float = 0.95,
    lam_range: tuple[float, float] = LAMBDA_RANGE,
) -> TernaryResult:
    """Split units into language-specific, language-related and general (Zhang et al. 2025).

    Args:
        stats: activation counts of at least two groups (response-only for the paper's setting:
            build the corpus with :meth:`Corpus.from_examples`).
        top_rate: fraction of all units selected by lowest score, in ``(0, 1]``; it must
            select at least one unit.
        lam: penalty weight on the maximum probability (a finite number ``>= 0``), or
            ``"auto"`` for the sweep.
        bar_ratio: percentile in ``[0, 1)`` of all probabilities used as ``tau``.
        lam_range: ``(low, high)`` with ``0 <= low < high`` (finite), searched by
            ``lam="auto"`` (binary search down to a width of ``1e-3``); ignored for an explicit
            ``lam``. The default is the released code's.

    Returns:
        The split. With ``lam="auto"``, ``result.lam_at_bound`` is ``True`` when even ``high``
        lets no unit above ``tau`` in all groups into the selection.

    Raises:
        TooFewGroupsError: fewer than two groups.
        ParameterError: ``top_rate`` or ``bar_ratio`` out of range (or selecting no unit),
            ``lam`` negative, NaN or another string than ``"auto"``, or (with ``lam="auto"``)
            ``lam_range`` not ``0 <= low < high`` (finite).

    Warns:
        SearchBoundWarning: ``lam="auto"`` stopped at the top of ``lam_range``; widen it, e.g.
            ``ternary(stats, lam_range=(0, 0.5))``.

    Examples:
        >>> import lensneurons as ln
        >>> stats = ln.ActivationStats.from_counts(
        ...     {"en": torch.tensor([[90, 10, 80, 70]]), "fr": torch.tensor([[10, 90, 80, 60]])},
        ...     {"en": 100, "fr": 100})
        >>> result = ln.ternary(stats, top_rate=0.75, bar_ratio=0.5)
        >>> result.lam, result.lam_at_bound
        (0.03203125, False)
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     capped = ln.ternary(stats, top_rate=0.5, bar_ratio=0.5)
        >>> capped.lam, capped.lam_at_bound, caught[0].category.__name__
        (0.19921875, True, 'SearchBoundWarning')
    """
    top_rate = _checks.rate(top_rate, "top_rate")
    bar_ratio = _checks.percentile(bar_ratio, "bar_ratio")
    if lam == "auto":
        low, high = _lambda_range(lam_range)
    elif isinstance(lam, str) or _checks.real(lam, "lam") < 0:
        raise ParameterError(
            f"lam must be a finite number >= 0 (the weight of the probability penalty) or "
            f"'auto', got {lam!r}."
        )
    probs = probabilities(stats, "The ternary split")
    n_layers, width, n_groups = probs.shape
    normalised_entropy = entropy(probs) / torch.log(torch.tensor(n_groups, dtype=probs.dtype))
    harmonic = sum(1.0 / k for k in range(1, n_groups + 1)) / n_groups
    penalty = probs.max(-1).values / harmonic
    tau = kth_smallest(probs, bar_ratio)
    above = probs > tau
    n_above = above.sum(-1)
    count = n_selected(top_rate, n_layers * width, "The ternary split")

    dead = probs.sum(-1) == 0

    def select(weight: float) -> torch.Tensor:
        scores = (normalised_entropy - weight * penalty).masked_fill(dead, float("inf"))
        return lowest(scores, count)

    def lets_general_in(weight: float) -> bool:
        return bool((n_above[select(weight)] == n_groups).any())

    at_bound = False
    if lam == "auto":
        start, bound = low, high
        while high - low > LAMBDA_EPS:
            mid = (low + high) / 2
            if lets_general_in(mid):
                high = mid
            else:
                low = mid
        lam = low
        # Every midpoint tried passed: check the bound itself before trusting the bracket.
        at_bound = high == bound and not lets_general_in(bound)
        if at_bound:
            warnings.warn(
                f"The automatic lambda search stopped at {lam:g}, the top of its range "
                f"lam_range={tuple(lam_range)}: even lambda = {bound:g} lets no unit above tau "
                "in all groups into the selection, so the largest such lambda may lie above "
                f"the range. Widen the range, e.g. ternary(stats, lam_range=({start:g}, "
                f"{max(0.5, 2 * bound):g})), or pass an explicit lam.",
                SearchBoundWarning,
                stacklevel=2,
            )
    selected = select(float(lam))
    appear = torch.bincount(n_above[selected], minlength=n_groups + 1).tolist()
    specific_mask = selected & (n_above == 1)
    related_mask = selected & (n_above > 1) & (n_above < n_groups)
    gated = stats.meta.get("gated")
    meta = {"method": "ternary", "top_rate": top_rate, "lam": float(lam), "bar_ratio": bar_ratio,
            "tau": tau, "lam_at_bound": at_bound, **provenance(stats)}

    def per_group(mask: torch.Tensor, kind: str) -> NeuronSets:
        return NeuronSets({g: NeuronSet(mask & above[..., k], site=stats.site, gated=gated)
                           for k, g in enumerate(stats.groups)}, {**meta, "kind": kind})

    return TernaryResult(
        specific=per_group(specific_mask, "specific"),
        related=per_group(related_mask, "related"),
        general=NeuronSet(n_above == n_groups, site=stats.site, gated=gated,
                          fingerprint=stats.meta.get("fingerprint")),
        lam=float(lam),
        tau=tau,
        appear=appear,
        lam_at_bound=at_bound,
    )


def _lambda_range(lam_range: object) -> tuple[float, float]:
    """``(low, high)`` of the automatic search, checked: ``0 <= low < high``, both finite."""
    try:
        low, high = (float(value) for value in lam_range)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        low, high = math.nan, math.nan
    if not (math.isfinite(low) and math.isfinite(high) and 0 <= low < high):
        raise ParameterError(
            f"lam_range must be (low, high) with 0 <= low < high, both finite, got "
            f"{lam_range!r}; the default is {LAMBDA_RANGE}."
        )
    return low, high
