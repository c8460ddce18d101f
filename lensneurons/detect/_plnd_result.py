"""The result of :func:`lensneurons.plnd`: per-unit document frequencies per group and site."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd
import torch
from jaxtyping import Float, Int

from lensneurons.core import checks as _checks
from lensneurons.core.model import ModelView
from lensneurons.core.persistence import load_result, save_result
from lensneurons.errors import CorruptResultError, ParameterError, UnknownSiteError
from lensneurons.neurons import NeuronSet, NeuronSets


@dataclass(frozen=True)
class PLNDResult:
    """How often each unit is among a document's most important units, per group and site.

    Attributes:
        groups: the group names, in the corpus's order.
        counts: per site, ``[group, layer, unit]`` integer counts: in how many of the group's
            documents the unit was in the document's top ``top_fraction`` of its layer.
        n_docs: documents per group, ``[group]``.
        meta: variant, top fractions, default ``doc_frequency``, gating, model fingerprint.
    """

    groups: list[str]
    counts: dict[str, Int[torch.Tensor, "group layer unit"]]
    n_docs: Int[torch.Tensor, " group"]
    meta: dict[str, Any] = field(default_factory=dict)

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
                ``plnd``; 1.0 is PLND's intersection over every document).
            exclude: ``"all"`` removes the units activated in *every* group (the released
                code); ``"any"`` removes every unit activated in any other group (strict).

        Returns:
            One set per group, usable with ``ln.deactivate`` at this site.

        Raises:
            UnknownSiteError: the site was not scored.
            ParameterError: ``doc_frequency`` is not in ``(0, 1]`` or ``exclude`` is unknown.
        """
        if exclude not in ("all", "any"):
            raise ParameterError(f"exclude must be 'all' or 'any', got {exclude!r}.")
        theta = self._threshold(doc_frequency)
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

    def summary(self, doc_frequency: float | None = None) -> pd.DataFrame:
        """Specific units per group (rows) and site (columns) at ``doc_frequency``."""
        return pd.DataFrame({site: [len(s) for s in self.neuron_sets(site, doc_frequency).values()]
                             for site in self.sites}, index=pd.Index(self.groups, name="group"))

    def _threshold(self, doc_frequency: float | None) -> float:
        if doc_frequency is None:
            return float(self.meta.get("doc_frequency", 1.0))
        return _checks.rate(doc_frequency, "doc_frequency")

    def _set(self, mask: torch.Tensor, site: str) -> NeuronSet:
        return NeuronSet(mask, site=site, gated=self.meta.get("gated"))

    def _meta(self, site: str, theta: float, kind: str) -> dict[str, Any]:
        keep = ("variant", "top_fraction", "fingerprint")
        return {"method": "plnd", "kind": kind, "site": site, "doc_frequency": theta,
                **{k: self.meta[k] for k in keep if k in self.meta}}

    # --- files -------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
        """Save as the folder ``path`` (``plnd.safetensors`` + ``plnd.json``), atomically.

        Counts are stored in the smallest integer type that holds them (``uint8`` up to 255
        documents per group), so a result stays small.

        Raises:
            ResultExistsError: ``path`` holds a result and ``overwrite`` is false.
        """
        top = int(self.n_docs.max())
        dtype = torch.uint8 if top <= 255 else torch.int16 if top < 2**15 else torch.int32
        tensors = {f"counts/{s}": c.to(dtype) for s, c in self.counts.items()}
        tensors["n_docs"] = self.n_docs.to(torch.int64)
        save_result(path, "plnd", tensors, {**self.meta, "groups": self.groups,
                                            "sites": self.sites}, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike[str], model: Any = None) -> PLNDResult:
        """Load a result saved with :meth:`save`; with ``model``, check it was made on it.

        Raises:
            ResultNotFoundError, CorruptResultError: nothing or a damaged result at ``path``.
            ModelMismatchError: the result was computed on another model.
        """
        tensors, meta = load_result(path, "plnd")
        groups, sites = meta.pop("groups", None), meta.pop("sites", None)
        if (not isinstance(groups, list) or not isinstance(sites, list) or "n_docs" not in tensors
                or any(f"counts/{s}" not in tensors for s in sites)):
            raise CorruptResultError(
                f"The PLND result in {path} is damaged: its sites and tensors disagree. "
                "Compute and save it again.")
        if model is not None and meta.get("fingerprint"):
            ModelView(model).check_fingerprint(meta["fingerprint"], "This PLND result")
        counts = {s: tensors[f"counts/{s}"].to(torch.int64) for s in sites}
        return cls(groups, counts, tensors["n_docs"].to(torch.int64), meta)
