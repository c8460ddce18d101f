"""CULNIG selection (Yamamoto et al.): culture-general and culture-specific units from attribution.

Inputs are :class:`~lensneurons.detect.attribution.AttributionScores` (per-item means): per
culture ``c`` the scores on its questions ``q_c``, on the same questions with the question text
removed ``k_c`` (the *control*: what answering any multiple-choice item takes), and on items whose
only content is a country name ``r_c`` (the CRC step: country-name units). Pools: the MLP units
(site ``"mlp"``) and the attention units (``"attn.q"``, ``"attn.k"``, ``"attn.v"`` together).

Culture-general::

    S(n)     = Σ_c q_c(n) − Σ_c k_c(n)
    general  = (top general_mlp_top_rate of the MLP pool by S  ∪  top general_attn_top_rate of
                the attention pool by S)
               − (top exclude_top_rate of each pool by Σ_c r_c)

Culture-specific, one pool of all sites::

    S_c(n)    = q_c(n) − k_c(n)
    z_c(n)    = (S_c(n) − mean_c' S_c'(n)) / std_c' S_c'(n)       population std, over all cultures
    specific_c = top specific_top_rate of the pool by S_c  −  top exclude_top_rate by r_c,
                 kept where z_c ≥ z_threshold                      (z = 0 where the std is 0)

"Top r" is the ``round(r · N)`` highest of the pool's ``N`` units, ties to the lower index. Every
share taken from the top of a ranking is a ``*_top_rate`` (the vocabulary of every detector's
``top_rate``); the prefix says which ranking (general MLP pool, general attention pool,
per-culture pool, country-name exclusion). ``z_threshold`` is a threshold, not a share.

Examples:
    >>> import torch
    >>> from lensneurons.detect.attribution import AttributionScores
    >>> def s(x): return AttributionScores({"mlp": torch.tensor(x)}, n_items=1)
    >>> q = {"jp": s([[5.0, 0, 0, 0]]), "mx": s([[0.0, 4, 0, 0]])}
    >>> k = s([[0.0, 0, 0, 0]])
    >>> out = culture_neurons(q, k, None, general_mlp_top_rate=0.25, specific_top_rate=0.25)
    >>> out.general["mlp"].mask.tolist(), out.specific["mlp"]["mx"].mask.tolist()
    ([[True, False, False, False]], [[False, True, False, False]])
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch

from lensneurons.core import checks as _checks
from lensneurons.core.model import same_fingerprint
from lensneurons.core.result import Result
from lensneurons.detect._common import highest, layer_bars, n_selected
from lensneurons.detect.attribution import AttributionScores
from lensneurons.errors import (
    CorruptResultError,
    ModelMismatchError,
    ParameterError,
    ShapeMismatchError,
    TooFewGroupsError,
    UnknownGroupError,
    UnknownSiteError,
)
from lensneurons.neurons import NeuronSet, NeuronSets

MLP_POOL = ("mlp",)
ATTN_POOL = ("attn.q", "attn.k", "attn.v")


@dataclass(frozen=True)
class CultureNeurons(Result):
    """The sets CULNIG selects, per site (each a :class:`NeuronSet` usable with the hooks).

    A result (:class:`~lensneurons.core.result.Result`): ``table()`` (units per set and site),
    ``plot()`` (general and specific units per layer), ``save`` / ``load``, and
    ``neuron_sets(site)``, the culture-specific sets of one site.

    Attributes:
        general: per site, the culture-general units.
        specific: per site, the culture-specific units of each culture.
        meta: the thresholds and the pool sizes.

    Examples:
        >>> import torch
        >>> from lensneurons.detect.attribution import AttributionScores
        >>> def s(x): return AttributionScores({"mlp": torch.tensor(x)}, n_items=1)
        >>> out = culture_neurons({"jp": s([[5.0, 0, 0, 0]]), "mx": s([[0.0, 4, 0, 0]])},
        ...                       s([[0.0, 0, 0, 0]]), None, general_mlp_top_rate=0.25,
        ...                       specific_top_rate=0.25)
        >>> int(out.table().loc["mx", "mlp"]), out.neuron_sets()["mx"].indices[0].tolist()
        (1, [1])
    """

    general: dict[str, NeuronSet]
    specific: dict[str, NeuronSets]
    meta: dict[str, Any] = field(default_factory=dict)

    kind = "result"

    @property
    def sites(self) -> list[str]:
        """The sites the sets are on."""
        return list(self.general)

    @property
    def fingerprint(self) -> dict[str, Any] | None:
        """The fingerprint of the model the scores were computed on, if recorded."""
        return self.meta.get("fingerprint")

    def neuron_sets(self, site: str | None = None) -> NeuronSets:
        """The culture-specific sets of one site (default: ``"mlp"``, or the first site).

        The culture-general units of that site are ``result.general[site]``.

        Raises:
            UnknownSiteError: no sets at ``site``.
        """
        if site is None:
            site = "mlp" if "mlp" in self.specific else self.sites[0]
        if site not in self.specific:
            raise UnknownSiteError(
                f"These culture sets have no site {site!r}; they hold {self.sites}.")
        return self.specific[site]

    def table(self) -> pd.DataFrame:
        """Units per set (rows: ``general`` and each culture) and site (columns)."""
        rows = {"general": {s: len(ns) for s, ns in self.general.items()}}
        for site, sets in self.specific.items():
            for culture, ns in sets.items():
                rows.setdefault(culture, {})[site] = len(ns)
        return pd.DataFrame(rows).T.fillna(0).astype(int)

    def plot(self, ax: Any = None) -> Any:
        """General and specific units (all cultures, all sites) per layer."""
        general = sum(torch.tensor(ns.per_layer()) for ns in self.general.values())
        specific = sum(torch.tensor(sets.union().per_layer()) for sets in self.specific.values())
        table = pd.DataFrame({"general": general.tolist(), "specific": specific.tolist()}).T
        return layer_bars(table, ax=ax, legend="units", title="CULNIG units per layer "
                          f"({len(self.meta.get('cultures', []))} cultures, all sites)")

    # -- storage: masks as tensors, the rest as JSON ------------------------------------------
    def _record(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors = {f"general/{s}": ns.mask for s, ns in self.general.items()}
        groups: dict[str, list[str]] = {}
        for site, sets in self.specific.items():
            groups[site] = sets.groups
            tensors[f"specific/{site}"] = torch.stack([sets[g].mask for g in sets.groups])
        gated = next(iter(self.general.values())).gated if self.general else None
        return tensors, {"culture": {"sites": self.sites, "groups": groups, "gated": gated,
                                     "meta": self.meta}}

    @classmethod
    def _from_record(cls, tensors: dict[str, torch.Tensor],
                     meta: dict[str, Any]) -> CultureNeurons:
        record = meta.get("culture")
        if (not isinstance(record, dict) or not isinstance(record.get("sites"), list)
                or any(f"general/{s}" not in tensors or f"specific/{s}" not in tensors
                       or tensors[f"specific/{s}"].shape[0] != len(record["groups"][s])
                       for s in record["sites"])):
            raise CorruptResultError(
                "These culture sets are damaged: their sites and masks disagree. Select them "
                "and save them again.")
        gated, inner = record["gated"], dict(record["meta"])
        general = {s: NeuronSet.from_mask(tensors[f"general/{s}"], site=s, gated=gated)
                   for s in record["sites"]}
        specific = {s: NeuronSets({g: NeuronSet.from_mask(tensors[f"specific/{s}"][k], site=s,
                                                          gated=gated)
                                   for k, g in enumerate(record["groups"][s])}, dict(inner))
                    for s in record["sites"]}
        return cls(general, specific, inner)


def culture_neurons(
    scores_by_culture: Mapping[str, AttributionScores],
    control_scores: AttributionScores | Mapping[str, AttributionScores],
    country_scores: AttributionScores | Mapping[str, AttributionScores] | None,
    *,
    general_mlp_top_rate: float = 0.01,
    general_attn_top_rate: float = 0.002,
    specific_top_rate: float = 0.003,
    exclude_top_rate: float = 0.01,
    z_threshold: float = 0.5,
) -> CultureNeurons:
    """Culture-general and culture-specific units, with CULNIG's defaults.

    Args:
        scores_by_culture: per culture, attribution scores on its questions.
        control_scores: per culture (same keys), or one for all: scores on the control items
            (the questions with the question text removed).
        country_scores: per culture, or one for all: scores on the country-name items (the
            CRC step); ``None`` skips the exclusion.
        general_mlp_top_rate: share of the MLP pool kept as culture-general, from the top of
            ``S`` (paper: 1%).
        general_attn_top_rate: share of the attention pool kept as culture-general (paper:
            0.2%).
        specific_top_rate: share of the pooled units kept per culture, from the top of
            ``S_c``, before the z rule (0.3%).
        exclude_top_rate: share of each pool, from the top of the country-name score, excluded
            (1%).
        z_threshold: minimal z-score across cultures of a culture-specific unit (0.5); a
            threshold, not a share.

    Each ``*_top_rate`` is a share of a ranking selected from its top (``round(r · N)`` units,
    as every detector's ``top_rate``); the prefix names the ranking.

    Returns:
        A :class:`CultureNeurons` with sets per site.

    Raises:
        TooFewGroupsError: fewer than two cultures (the z-score compares cultures).
        UnknownGroupError: a control or country mapping lacks a culture.
        ShapeMismatchError: the scores have different sites or shapes.
        ModelMismatchError: the scores come from different models (the same weights in another
            dtype, e.g. bf16 and fp32, are one model).
        ParameterError: a rate outside ``(0, 1]`` or selecting no unit, a non-finite threshold;
            scores of different objectives (``"prob"`` and ``"logprob"``), or NaN or infinite
            scores.
    """
    _checks.mapping(scores_by_culture, "scores_by_culture", "{culture: AttributionScores}")
    cultures = list(scores_by_culture)
    if len(cultures) < 2:
        raise TooFewGroupsError(
            f"culture_neurons compares cultures, got {cultures}. Score at least two cultures."
        )
    rates = {name: _checks.rate(value, name) for name, value in (
        ("general_mlp_top_rate", general_mlp_top_rate),
        ("general_attn_top_rate", general_attn_top_rate),
        ("specific_top_rate", specific_top_rate), ("exclude_top_rate", exclude_top_rate))}
    z_threshold = _checks.real(z_threshold, "z_threshold")
    q = {c: scores_by_culture[c] for c in cultures}
    k = _per_culture(control_scores, cultures, "control_scores")
    r = None if country_scores is None else _per_culture(country_scores, cultures,
                                                        "country_scores")
    labelled = [(f"scores_by_culture[{c!r}]", q[c]) for c in cultures]
    labelled += _labels(control_scores, k, "control_scores")
    if r is not None:
        labelled += _labels(country_scores, r, "country_scores")
    reference = q[cultures[0]]
    _check_alike(labelled)
    sites = reference.sites
    gated = reference.meta.get("gated")

    general_score = {s: sum(q[c][s] for c in cultures) - sum(k[c][s] for c in cultures)
                     for s in sites}
    general = {s: torch.zeros_like(general_score[s], dtype=torch.bool) for s in sites}
    pools = [(p, n) for p, n in ((_in(MLP_POOL, sites), "general_mlp_top_rate"),
                                 (_in(ATTN_POOL, sites), "general_attn_top_rate")) if p]
    for pool, name in pools:
        _merge(general, _top(general_score, pool, rates[name], name))
        if r is not None:
            crc = {s: sum(r[c][s] for c in cultures) for s in pool}
            for s, m in _top(crc, pool, rates["exclude_top_rate"], "exclude_top_rate").items():
                general[s] &= ~m

    per_culture = {c: {s: q[c][s] - k[c][s] for s in sites} for c in cultures}
    z = {}
    for s in sites:
        stacked = torch.stack([per_culture[c][s] for c in cultures])
        mean, std = stacked.mean(0), stacked.std(0, correction=0)
        z[s] = torch.where(std > 0, (stacked - mean) / std.clamp(min=1e-300), 0.0)
    specific: dict[str, dict[str, NeuronSet]] = {s: {} for s in sites}
    for i, c in enumerate(cultures):
        chosen = _top(per_culture[c], sites, rates["specific_top_rate"], "specific_top_rate")
        if r is not None:
            for s, m in _top(r[c].scores, sites, rates["exclude_top_rate"],
                             "exclude_top_rate").items():
                chosen[s] &= ~m
        for s in sites:
            mask = chosen[s] & (z[s][i] >= z_threshold)
            specific[s][c] = NeuronSet.from_mask(mask, site=s, gated=gated)
    meta = {"method": "culnig", **rates, "z_threshold": z_threshold, "cultures": cultures,
            "country_exclusion": r is not None, **_provenance(reference)}
    return CultureNeurons(
        {s: NeuronSet.from_mask(m, site=s, gated=gated) for s, m in general.items()},
        {s: NeuronSets(sets, dict(meta)) for s, sets in specific.items()}, meta)


def _in(pool: tuple[str, ...], sites: list[str]) -> list[str]:
    return [s for s in pool if s in sites]


def _top(scores: Mapping[str, torch.Tensor], pool: list[str], rate: float,
         name: str) -> dict[str, torch.Tensor]:
    """Masks of the top ``rate`` of the units of ``pool`` ranked together."""
    flat = torch.cat([scores[s].flatten() for s in pool])
    mask = highest(flat, n_selected(rate, flat.numel(), "culture_neurons", name))
    out, start = {}, 0
    for s in pool:
        n = scores[s].numel()
        out[s] = mask[start:start + n].view(scores[s].shape)
        start += n
    return out


def _merge(into: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> None:
    for s, m in masks.items():
        into[s] |= m


def _per_culture(value: Any, cultures: list[str], name: str) -> dict[str, AttributionScores]:
    if isinstance(value, AttributionScores):
        return {c: value for c in cultures}
    _checks.mapping(value, name, "{culture: AttributionScores} or one AttributionScores")
    missing = [c for c in cultures if c not in value]
    if missing:
        raise UnknownGroupError(
            f"{name} has no scores for {missing}; give one per culture of scores_by_culture, "
            "or a single AttributionScores for all."
        )
    return {c: value[c] for c in cultures}


def _labels(given: Any, per_culture: dict[str, AttributionScores],
            name: str) -> list[tuple[str, AttributionScores]]:
    """``(name in messages, scores)`` of a control or country argument."""
    if isinstance(given, AttributionScores):
        return [(name, given)]
    return [(f"{name}[{c!r}]", scores) for c, scores in per_culture.items()]


def _check_alike(labelled: list[tuple[str, Any]]) -> None:
    """Refuse scores that cannot be compared: other sites or shapes, targets, models; NaN."""
    first, reference = labelled[0]
    for label, other in labelled:
        if not isinstance(other, AttributionScores):
            raise ParameterError(
                f"{label} must be AttributionScores (from ln.attribution), got "
                f"{type(other).__name__}."
            )
        if other.sites != reference.sites or any(
                other[s].shape != reference[s].shape for s in reference.sites):
            raise ShapeMismatchError(
                f"All scores must cover the same sites with the same shapes; got {other!r} "
                f"({label}) and {reference!r} ({first}). Score every item set with the same "
                "model and sites."
            )
        a, b = reference.meta.get("objective"), other.meta.get("objective")
        if a is not None and b is not None and a != b:
            raise ParameterError(
                f"{first} was scored with objective={a!r}, {label} with objective={b!r}: "
                "probabilities and log-probabilities are not comparable. Score every item set "
                f"with the same objective, e.g. ln.attribution(..., objective={a!r})."
            )
        if not same_fingerprint(reference.meta.get("fingerprint"),
                                  other.meta.get("fingerprint")):
            raise ModelMismatchError(
                f"{first} and {label} were computed on different models. Score every item set "
                "with the same model (the same weights in another dtype are fine)."
            )
        for site in other.sites:
            bad = ~torch.isfinite(other[site])
            if bad.any():
                what = "NaN" if other[site].isnan().any() else "infinite"
                raise ParameterError(
                    f"{label} has {what} scores at site {site!r} ({int(bad.sum())} of "
                    f"{bad.numel()} units), so its units cannot be ranked. Compute them again "
                    "(e.g. with the model in float32) and check that the items of this set "
                    "give a finite probability of their answer."
                )


def _provenance(scores: AttributionScores) -> dict[str, Any]:
    fingerprint = scores.meta.get("fingerprint")
    return {"fingerprint": fingerprint} if fingerprint else {}
