"""Neuron sets: which units of which layers belong to a group, with set algebra and views.

A :class:`NeuronSet` is a boolean mask ``[layer, unit]`` on a site. :class:`NeuronSets` maps
group names to sets and adds what a researcher looks at first: a group x layer count table, the
overlap between groups, a layer histogram, saving, and the papers' mask format
(``{group: [[indices of layer 0], [indices of layer 1], ...]}``).

Examples:
    >>> import torch, lensneurons as ln
    >>> mask = torch.zeros(2, 8, dtype=torch.bool); mask[1, [3, 5]] = True
    >>> fr = ln.NeuronSet.from_mask(mask)
    >>> len(fr), [idx.tolist() for idx in fr.indices]
    (2, [[], [3, 5]])
    >>> sets = ln.NeuronSets({"fr": fr, "de": ln.NeuronSet.from_indices([[3], []], width=8)})
    >>> sets.summary().loc["fr"].tolist()  # layer 0, layer 1, total
    [0, 2, 2]
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from jaxtyping import Bool

from lensneurons._io import load_result, save_result
from lensneurons.errors import ShapeMismatchError, UnknownGroupError
from lensneurons.model import ModelView


class NeuronSet:
    """A set of units per layer of one site, stored as a boolean mask ``[layer, unit]``.

    Args:
        mask: ``[layer, unit]``, true for members.
        site: the site the units belong to.
        gated: whether the model's MLP is gated, when known (detectors copy it from the
            statistics); interventions that set or add activation values need it, or a model.
    """

    def __init__(
        self, mask: Bool[torch.Tensor, "layer unit"], *, site: str = "mlp",
        gated: bool | None = None,
    ) -> None:
        if mask.dim() != 2:
            raise ShapeMismatchError(
                f"A neuron mask must be [layer, unit], got {tuple(mask.shape)}."
            )
        self.mask = mask.to(torch.bool).cpu()
        self.site = site
        self.gated = gated

    @classmethod
    def from_mask(
        cls, mask: torch.Tensor, *, site: str = "mlp", gated: bool | None = None
    ) -> NeuronSet:
        """The set whose members are the true entries of ``mask`` ``[layer, unit]``."""
        return cls(mask, site=site, gated=gated)

    @classmethod
    def from_indices(
        cls, indices: Sequence[Sequence[int] | torch.Tensor], *, width: int, site: str = "mlp",
        gated: bool | None = None,
    ) -> NeuronSet:
        """The set holding ``indices[l]`` in layer ``l`` (the papers' per-layer index lists)."""
        mask = torch.zeros(len(indices), width, dtype=torch.bool)
        for layer, idx in enumerate(indices):
            idx = torch.as_tensor(idx, dtype=torch.int64)
            if idx.numel() and (int(idx.max()) >= width or int(idx.min()) < 0):
                raise ShapeMismatchError(
                    f"Layer {layer} names unit {int(idx.max())}, but layers have {width} units."
                )
            mask[layer, idx] = True
        return cls(mask, site=site, gated=gated)

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_layers, units per layer)``."""
        return int(self.mask.shape[0]), int(self.mask.shape[1])

    @property
    def indices(self) -> list[torch.Tensor]:
        """Sorted unit indices per layer."""
        return [row.nonzero().squeeze(1) for row in self.mask]

    def per_layer(self) -> list[int]:
        """Number of units per layer."""
        return self.mask.sum(1).tolist()

    def __len__(self) -> int:
        return int(self.mask.sum())

    def __repr__(self) -> str:
        layers = [layer for layer, n in enumerate(self.per_layer()) if n]
        return f"NeuronSet({len(self)} units on {self.site!r}, layers {layers})"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, NeuronSet) and self.site == other.site
                and self.shape == other.shape and torch.equal(self.mask, other.mask))

    def __hash__(self) -> int:
        return hash((self.site, self.shape, len(self)))

    def _combine(self, other: NeuronSet, op: Any) -> NeuronSet:
        if not isinstance(other, NeuronSet):
            return NotImplemented
        if self.shape != other.shape or self.site != other.site:
            raise ShapeMismatchError(
                f"Cannot combine a {self.shape} set on {self.site!r} with a {other.shape} set "
                f"on {other.site!r}."
            )
        gated = self.gated if self.gated is not None else other.gated
        return NeuronSet(op(self.mask, other.mask), site=self.site, gated=gated)

    def __or__(self, other: NeuronSet) -> NeuronSet:
        return self._combine(other, torch.logical_or)

    def __and__(self, other: NeuronSet) -> NeuronSet:
        return self._combine(other, torch.logical_and)

    def __sub__(self, other: NeuronSet) -> NeuronSet:
        return self._combine(other, lambda a, b: a & ~b)

    def check_model(self, model: Any) -> None:
        """Raise :class:`ShapeMismatchError` unless the set fits ``model``'s site."""
        from lensneurons.sites import get_site

        site = get_site(ModelView(model), self.site)
        expected = (site.view.n_layers, site.width)
        if self.shape != expected:
            raise ShapeMismatchError(
                f"This neuron set is {self.shape} (layers, units) but the model's site "
                f"{self.site!r} is {expected}. Use sets detected on this model."
            )


class NeuronSets(Mapping[str, NeuronSet]):
    """Neuron sets per group, with tables, overlap, plots, saving and the papers' mask format.

    Args:
        sets: ``{group: NeuronSet}``, all of one shape and site.
        meta: provenance (method, parameters, thresholds, model fingerprint).
    """

    def __init__(self, sets: Mapping[str, NeuronSet], meta: dict[str, Any] | None = None) -> None:
        self._sets = dict(sets)
        shapes = {(s.shape, s.site) for s in self._sets.values()}
        if len(shapes) > 1:
            raise ShapeMismatchError(f"All neuron sets must share shape and site; got {shapes}.")
        self.meta = dict(meta or {})

    def __getitem__(self, group: str) -> NeuronSet:
        if group not in self._sets:
            raise UnknownGroupError(f"No neuron set for {group!r}; groups: {list(self._sets)}.")
        return self._sets[group]

    def __iter__(self) -> Iterator[str]:
        return iter(self._sets)

    def __len__(self) -> int:
        return len(self._sets)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{g}={len(s)}" for g, s in self._sets.items())
        return f"NeuronSets({sizes}; union {len(self.union())})"

    def _repr_html_(self) -> str:
        return self.summary()._repr_html_()  # type: ignore[operator]

    @property
    def groups(self) -> list[str]:
        """Group names."""
        return list(self._sets)

    def union(self) -> NeuronSet:
        """Units that belong to at least one group."""
        sets = list(self._sets.values())
        mask = torch.stack([s.mask for s in sets]).any(0)
        return NeuronSet(mask, site=sets[0].site, gated=sets[0].gated)

    def summary(self) -> pd.DataFrame:
        """Units per group (rows) and layer (columns), with a ``total`` column."""
        table = pd.DataFrame({g: s.per_layer() for g, s in self._sets.items()}).T
        table.columns.name, table.index.name = "layer", "group"
        table["total"] = table.sum(axis=1)
        return table

    def overlap(self, *, kind: str = "iou") -> pd.DataFrame:
        """Pairwise overlap between groups: ``"iou"`` (intersection over union) or ``"count"``.

        Raises:
            ValueError: unknown ``kind``.
        """
        if kind not in ("iou", "count"):
            raise ValueError(f"kind must be 'iou' or 'count', got {kind!r}.")
        masks = torch.stack([s.mask.flatten() for s in self._sets.values()]).float()
        inter = masks @ masks.T
        if kind == "iou":
            sizes = masks.sum(1)
            union = sizes[:, None] + sizes[None, :] - inter
            inter = torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(inter))
        values = inter.numpy() if kind == "iou" else inter.long().numpy()
        return pd.DataFrame(values, index=self.groups, columns=self.groups)

    def exclusive(self) -> NeuronSets:
        """Each group's units that no other group holds."""
        counts = torch.stack([s.mask for s in self._sets.values()]).sum(0)
        return NeuronSets({g: NeuronSet(s.mask & (counts == 1), site=s.site, gated=s.gated)
                           for g, s in self._sets.items()}, {**self.meta, "exclusive": True})

    def plot_layers(self, *, ax: Any = None, stacked: bool = True) -> Any:
        """Bar chart of units per layer and group; returns the matplotlib figure."""
        from lensneurons.viz import plot_layer_histogram

        return plot_layer_histogram(self.summary().drop(columns="total"), ax=ax, stacked=stacked)

    def check_model(self, model: Any) -> None:
        """Raise unless every set fits ``model`` (and, when recorded, was made on it)."""
        for s in self._sets.values():
            s.check_model(model)
        if "fingerprint" in self.meta:
            ModelView(model).check_fingerprint(self.meta["fingerprint"], "These neuron sets")

    def to_index_lists(self) -> dict[str, list[list[int]]]:
        """The papers' format: ``{group: [[unit indices] for each layer]}``."""
        return {g: [idx.tolist() for idx in s.indices] for g, s in self._sets.items()}

    @classmethod
    def from_index_lists(
        cls, lists: Mapping[str, Sequence[Sequence[int]]], *, width: int, site: str = "mlp"
    ) -> NeuronSets:
        """Sets from the papers' format; ``width`` is the number of units per layer."""
        return cls({g: NeuronSet.from_indices(idx, width=width, site=site)
                    for g, idx in lists.items()})

    @classmethod
    def from_json(
        cls, path: str | os.PathLike[str], *, width: int, site: str = "mlp"
    ) -> NeuronSets:
        """Read a JSON file in the papers' format (e.g. Zhang et al.'s released masks)."""
        return cls.from_index_lists(json.loads(Path(path).read_text()), width=width, site=site)

    @classmethod
    def from_torch_masks(
        cls, path: str | os.PathLike[str], groups: Sequence[str], *, width: int, site: str = "mlp"
    ) -> NeuronSets:
        """Read Tang et al.'s ``List[List[LongTensor]]`` ``.pth`` masks (safely: no pickle code).

        Raises:
            ShapeMismatchError: the file holds another number of groups than ``groups``.
        """
        lists = torch.load(path, map_location="cpu", weights_only=True)
        if len(lists) != len(groups):
            raise ShapeMismatchError(
                f"{path} holds {len(lists)} groups but {len(groups)} names were given. "
                "(Tang et al.'s files for non-Llama models hold 6 languages, without ja.)"
            )
        return cls.from_index_lists(dict(zip(groups, lists)), width=width, site=site)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Save into the folder ``path`` as ``neurons.safetensors`` + ``neurons.json``."""
        first = next(iter(self._sets.values()), NeuronSet(torch.zeros(0, 0)))
        save_result(path, "neurons", {g: s.mask for g, s in self._sets.items()},
                    {"groups": self.groups, "site": first.site, "gated": first.gated, **self.meta})

    @classmethod
    def load(cls, path: str | os.PathLike[str], model: Any = None) -> NeuronSets:
        """Load sets saved with :meth:`save`; with ``model``, check they were made on it.

        Raises:
            ModelMismatchError: the sets were detected on another model.
            ShapeMismatchError: the sets do not fit ``model``.
        """
        tensors, meta = load_result(path, "neurons")
        groups, site, gated = meta.pop("groups"), meta.pop("site"), meta.pop("gated", None)
        for key in ("kind", "format_version", "lensneurons_version"):
            meta.pop(key, None)
        sets = cls({g: NeuronSet(tensors[g], site=site, gated=gated) for g in groups}, meta)
        if model is not None:
            sets.check_model(model)
        return sets
