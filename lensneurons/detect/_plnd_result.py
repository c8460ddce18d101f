"""The result of :func:`lensneurons.plnd`: per-unit document frequencies per group and site.

A group's set is read off the frequencies at a threshold, ``doc_frequency``: the default
:data:`DOC_FREQUENCY` (0.9) keeps sets steady as the corpus grows; the paper's intersection over
every document, :data:`PAPER_DOC_FREQUENCY` (1.0), shrinks them towards empty
(docs/methods/plnd.md, "Which documents count"). A set that comes out empty warns
(:class:`~lensneurons.errors.EmptySetWarning`).

Saved as the folder ``plnd.safetensors`` (``counts/<site>``, ``n_docs``) + ``plnd.json`` (the
meta, ``groups``, ``sites``). The share of a layer's units activated per document is
``meta["top_rate"]`` (one number per site); the file keeps the format's key for it,
``"top_fraction"`` (the parameter's earlier name), so folders of every version load alike.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd
import torch
from jaxtyping import Float, Int

from lensneurons.core import checks as _checks
from lensneurons.core.model import ModelView
from lensneurons.core.result import Result
from lensneurons.detect._common import layer_bars
from lensneurons.errors import (
    CorruptResultError,
    EmptySetWarning,
    ParameterError,
    UnknownSiteError,
)
from lensneurons.neurons import NeuronSet, NeuronSets

#: The default ``doc_frequency``: a unit is activated for a group when it is among the top units
#: of at least 90% of the group's documents. A deviation from the paper (see
#: :data:`PAPER_DOC_FREQUENCY`): a share, unlike "every document", settles as documents are added
#: (docs/methods/plnd.md, "Which documents count", has the measurements).
DOC_FREQUENCY = 0.9
#: The paper's rule: activated in *every* document of the group (the released code's
#: intersection), which shrinks towards an empty set as the corpus grows.
PAPER_DOC_FREQUENCY = 1.0

#: The file format's key of ``top_rate`` (the parameter's earlier name; written and read).
_LEGACY_TOP_RATE = "top_fraction"


@dataclass(frozen=True)
class PLNDResult(Result):
    """How often each unit is among a document's most important units, per group and site.

    A result (:class:`~lensneurons.core.result.Result`): ``table()`` (specific units per group
    and site), ``plot()`` (specific units per layer and group), ``save`` / ``load``,
    ``neuron_sets(site)``.

    Attributes:
        groups: the group names, in the corpus's order.
        counts: per site, ``[group, layer, unit]`` integer counts: in how many of the group's
            documents the unit was in the document's top ``top_rate`` of its layer.
        n_docs: documents per group, ``[group]``.
        meta: variant, ``top_rate`` per site, default ``doc_frequency``, gating, model
            fingerprint.
    """

    groups: list[str]
    counts: dict[str, Int[torch.Tensor, "group layer unit"]]
    n_docs: Int[torch.Tensor, " group"]
    meta: dict[str, Any] = field(default_factory=dict)

    kind = "plnd"

    @property
    def sites(self) -> list[str]:
        """The sites scored."""
        return list(self.counts)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{s}={tuple(c.shape[1:])}" for s, c in self.counts.items())
        docs = ", ".join(f"{g}={n}" for g, n in zip(self.groups, self.n_docs.tolist()))
        return (f"PLNDResult({self.meta.get('variant', 'paper')}; documents: {docs}; "
                f"sites [layer, unit]: {shapes})")

    def _site(self, site: str) -> str:
        if site not in self.counts:
            raise UnknownSiteError(
                f"This PLND result has no site {site!r}; it scored {self.sites}. Run plnd(..., "
                f"sites=(..., {site!r})) to score it.")
        return site

    def frequency(self, site: str = "mlp") -> Float[torch.Tensor, "group layer unit"]:
        """Fraction of each group's documents in which the unit is among the top units.

        Raises:
            UnknownSiteError: the site was not scored.
        """
        counts = self.counts[self._site(site)].to(torch.float64)
        return (counts / self.n_docs.to(torch.float64)[:, None, None]).float()

    def activated(self, site: str = "mlp", doc_frequency: float | None = None) -> NeuronSets:
        """Per group, the units with frequency ``>= doc_frequency`` (PLND's per-language set).

        Raises:
            UnknownSiteError: the site was not scored.
            ParameterError: ``doc_frequency`` is not in ``(0, 1]``.
        """
        theta = self._threshold(doc_frequency)
        freq = self.frequency(site)
        return NeuronSets({g: self._set(freq[i] >= theta, site) for i, g in enumerate(self.groups)},
                          self._meta(site, theta, "activated"))

    def neuron_sets(
        self, site: str = "mlp", doc_frequency: float | None = None, *,
        exclude: Literal["all", "any"] = "all",
    ) -> NeuronSets:
        """Language-specific sets: activated units minus the units shared with other groups.

        Args:
            site: the site (``"mlp"``, ``"attn.q"``, ``"attn.k"``, ``"attn.v"``).
            doc_frequency: a unit is activated for a group when it is in the top units of at
                least this fraction of the group's documents (default: the value given to
                ``plnd``, :data:`DOC_FREQUENCY` = 0.9 unless changed there). 1.0 is the
                paper's rule, the intersection over every document: it shrinks as the corpus
                grows, to empty sets on a few hundred varied documents.
            exclude: ``"all"`` removes the units activated in *every* group (the released
                code); ``"any"`` removes every unit activated in any other group (strict).

        Returns:
            One set per group, usable with ``ln.deactivate`` at this site.

        Raises:
            UnknownSiteError: the site was not scored.
            ParameterError: ``doc_frequency`` is not in ``(0, 1]`` or ``exclude`` is unknown.

        Warns:
            EmptySetWarning: a group's set is empty (switching it off would change nothing);
                the message names the groups and what to change.
        """
        sets = self._specific(site, self._threshold(doc_frequency), exclude)
        self._warn_empty({site: sets})
        return sets

    def _specific(self, site: str, theta: float, exclude: str) -> NeuronSets:
        """The specific sets of :meth:`neuron_sets`, without the warning."""
        if exclude not in ("all", "any"):
            raise ParameterError(f"exclude must be 'all' or 'any', got {exclude!r}.")
        active = self.frequency(site) >= theta
        shared = active.all(0)
        sets = {}
        for i, g in enumerate(self.groups):
            if exclude == "all":
                mask = active[i] & ~shared
            else:
                others = torch.cat([active[:i], active[i + 1:]]).any(0)
                mask = active[i] & ~others
            sets[g] = self._set(mask, site)
        return NeuronSets(sets, {**self._meta(site, theta, "specific"), "exclude": exclude})

    def _warn_empty(self, sets: dict[str, NeuronSets]) -> None:
        """Warn (:class:`EmptySetWarning`) when a group's set at some site has no unit.

        ``sets`` maps sites to the specific sets at one ``doc_frequency`` and ``exclude``; the
        message names each empty set, why it is empty and what to change.
        """
        empty = {site: [g for g, s in by_group.items() if len(s) == 0]
                 for site, by_group in sets.items()}
        empty = {site: groups for site, groups in empty.items() if groups}
        if not empty:
            return
        first = next(iter(empty))
        theta = sets[first].meta["doc_frequency"]
        exclude = sets[first].meta["exclude"]
        shared = "every group" if exclude == "all" else "another group"
        parts, alike = [], False
        for site, groups in empty.items():
            active = self.activated(site, theta)
            why = [f"{g!r} ({len(active[g])} activated, all shared with {shared})"
                   if len(active[g]) else f"{g!r} (no unit activated)" for g in groups]
            alike = alike or any(len(active[g]) for g in groups)
            parts.append(f"{site}: {', '.join(why)}")
        docs = sorted(set(self.n_docs.tolist()))
        n = f"{docs[0]}" if len(docs) == 1 else f"{docs[0]}-{docs[-1]}"
        n += " documents per group"
        if theta < 1 and math.ceil(theta * docs[0] - 1e-9) == docs[0]:
            n += f" (with {docs[0]} documents, {theta:g} means every one)"
        lower = max(0.5, round(theta - 0.1, 2)) if theta > 0.5 else round(theta / 2, 2)
        hints = [f"lower doc_frequency, e.g. result.neuron_sets({first!r}, doc_frequency="
                 f"{lower:g})"]
        if theta >= PAPER_DOC_FREQUENCY:
            hints[0] += (" (1.0, the paper's rule, asks for every document and empties as "
                         f"documents are added; the default is {DOC_FREQUENCY:g})")
        if exclude == "any":
            hints.append("exclude='all' (removes only the units activated in every group)")
        hints.append("a larger top_rate in ln.plnd (more units per document)")
        if theta >= PAPER_DOC_FREQUENCY:
            hints.append("fewer documents per group")
        if alike:
            hints.append("where every activated unit is shared, check that the groups' texts "
                         "differ")
        warnings.warn(
            f"PLND gave no unit to {'; '.join(parts)} at doc_frequency={theta:g} over {n} "
            f"(exclude={exclude!r}): such a set changes nothing when "
            "switched off, and an evaluation of it measures nothing. A unit is activated for a "
            "group when it is among a document's top units in at least doc_frequency of the "
            f"group's documents. Fix: {'; '.join(hints)}.",
            EmptySetWarning, stacklevel=_checks.user_stacklevel())

    def table(self, doc_frequency: float | None = None) -> pd.DataFrame:
        """Specific units per group (rows) and site (columns) at ``doc_frequency``."""
        theta = self._threshold(doc_frequency)
        return pd.DataFrame({site: [len(s) for s in self._specific(site, theta, "all").values()]
                             for site in self.sites}, index=pd.Index(self.groups, name="group"))

    def plot(self, ax: Any = None, *, site: str | None = None,
             doc_frequency: float | None = None) -> Any:
        """Specific units per layer and group at one site (default: ``"mlp"``, or the first).

        Raises:
            UnknownSiteError: the site was not scored.
        """
        site = site if site is not None else "mlp" if "mlp" in self.counts else self.sites[0]
        sets = self._specific(site, self._threshold(doc_frequency), "all")
        table = pd.DataFrame({g: s.per_layer() for g, s in sets.items()}).T
        theta = sets.meta["doc_frequency"]
        return layer_bars(table, ax=ax, stacked=True, legend="group",
                          title=f"PLND specific units, {site} (doc_frequency = {theta:g})")

    def _threshold(self, doc_frequency: float | None) -> float:
        if doc_frequency is None:
            return float(self.meta.get("doc_frequency", DOC_FREQUENCY))
        return _checks.rate(doc_frequency, "doc_frequency")

    def _set(self, mask: torch.Tensor, site: str) -> NeuronSet:
        return NeuronSet(mask, site=site, gated=self.meta.get("gated"))

    def _meta(self, site: str, theta: float, kind: str) -> dict[str, Any]:
        keep = ("variant", "top_rate", "fingerprint")
        return {"method": "plnd", "kind": kind, "site": site, "doc_frequency": theta,
                **{k: self.meta[k] for k in keep if k in self.meta}}

    # --- files: plnd.safetensors + plnd.json ------------------------------------------------
    def _check_model(self, model: Any) -> None:
        if self.meta.get("fingerprint"):
            ModelView(model).check_fingerprint(self.meta["fingerprint"], "This PLND result")

    def _record(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The counts (``counts/<site>``, ``n_docs``) and the meta, with ``groups`` and ``sites``.

        Counts are stored in the smallest integer type that holds them (``uint8`` up to 255
        documents per group), so a result stays small.
        """
        top = int(self.n_docs.max())
        dtype = torch.uint8 if top <= 255 else torch.int16 if top < 2**15 else torch.int32
        tensors = {f"counts/{s}": c.to(dtype) for s, c in self.counts.items()}
        tensors["n_docs"] = self.n_docs.to(torch.int64)
        meta = dict(self.meta)
        if "top_rate" in meta:  # the key of the file format (read by every version)
            meta[_LEGACY_TOP_RATE] = meta.pop("top_rate")
        return tensors, {**meta, "groups": self.groups, "sites": self.sites}

    @classmethod
    def _from_record(cls, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> PLNDResult:
        meta = dict(meta)
        groups, sites = meta.pop("groups", None), meta.pop("sites", None)
        if (not isinstance(groups, list) or not isinstance(sites, list) or "n_docs" not in tensors
                or any(f"counts/{s}" not in tensors for s in sites)):
            raise CorruptResultError(
                "This PLND result is damaged: its sites and tensors disagree. "
                "Compute and save it again.")
        if _LEGACY_TOP_RATE in meta:
            meta["top_rate"] = meta.pop(_LEGACY_TOP_RATE)
        counts = {s: tensors[f"counts/{s}"].to(torch.int64) for s in sites}
        return cls(groups, counts, tensors["n_docs"].to(torch.int64), meta)
