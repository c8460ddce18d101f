"""Neuron sets per group: tables, overlap, plots, saving, and the papers' index-list format.

Examples:
    >>> import torch
    >>> from lensneurons.neurons import NeuronSet, NeuronSets
    >>> sets = NeuronSets({"fr": NeuronSet.from_indices([[], [3, 5]], width=8),
    ...                    "de": NeuronSet.from_indices([[3], []], width=8)})
    >>> sets.table().loc["fr"].tolist()  # layer 0, layer 1, total
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

from lensneurons.core.checks import group_label
from lensneurons.core.figures import plot_layer_histogram
from lensneurons.core.model import ModelView
from lensneurons.core.result import Result
from lensneurons.core.sites import get_site
from lensneurons.errors import (
    CorruptResultError,
    NoGroupsError,
    ParameterError,
    ShapeMismatchError,
    UnknownGroupError,
)
from lensneurons.neurons.neuron_set import (
    NeuronSet,
    UnitIndices,
    check_provenance,
    check_shape,
    common_fingerprint,
)


class NeuronSets(Mapping[str, NeuronSet], Result):
    """Neuron sets per group, with tables, overlap, plots, saving and the papers' mask format.

    Args:
        sets: ``{group: NeuronSet}``, all of one shape and site.
        meta: provenance (method, parameters, thresholds, model fingerprint).

    The model fingerprint is shared: ``meta["fingerprint"]`` (the record of the whole collection,
    as detectors write it) or, without one, the fingerprint the sets carry goes to every set, so
    ``sets["fr"]`` alone is still refused on another model, and a saved and loaded set keeps it.

    Raises:
        ModelMismatchError: the sets carry fingerprints of different models.
    """

    kind = "neurons"

    def __init__(self, sets: Mapping[str, NeuronSet], meta: dict[str, Any] | None = None) -> None:
        self._sets = dict(sets)
        if not self._sets:
            raise NoGroupsError("NeuronSets needs at least one group, e.g. {'fr': NeuronSet}.")
        wrong = [g for g, s in self._sets.items()
                 if not isinstance(g, str) or not isinstance(s, NeuronSet)]
        if wrong:
            raise ParameterError(
                f"NeuronSets maps group names (str) to NeuronSet objects; {wrong} do not."
            )
        shapes = {(s.shape, s.site) for s in self._sets.values()}
        if len(shapes) > 1:
            raise ShapeMismatchError(f"All neuron sets must share shape and site; got {shapes}.")
        self.meta = dict(meta or {})
        recorded = self.meta.get("fingerprint")
        fingerprint = common_fingerprint(
            [recorded, *(s.fingerprint for s in self._sets.values())], "group")
        if fingerprint is not None:
            self.meta.setdefault("fingerprint", fingerprint)
            self._sets = {g: s if s.fingerprint is fingerprint else s.with_fingerprint(fingerprint)
                          for g, s in self._sets.items()}

    def __getitem__(self, group: str) -> NeuronSet:
        if group not in self._sets and isinstance(group, str) and group.strip():
            group = group_label(group)  # "français" typed in NFD names the NFC group
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

    def summary_line(self) -> str:
        """One line for the notebook view."""
        return f"{self!r} on site {next(iter(self._sets.values())).site!r}"

    @property
    def groups(self) -> list[str]:
        """Group names."""
        return list(self._sets)

    def union(self) -> NeuronSet:
        """Units that belong to at least one group."""
        sets = list(self._sets.values())
        mask = torch.stack([s.mask for s in sets]).any(0)
        return NeuronSet(mask, site=sets[0].site, gated=sets[0].gated,
                         fingerprint=sets[0].fingerprint)

    def table(self) -> pd.DataFrame:
        """Units per group (rows) and layer (columns), with a ``total`` column."""
        table = pd.DataFrame({g: s.per_layer() for g, s in self._sets.items()}).T
        table.columns.name, table.index.name = "layer", "group"
        table["total"] = table.sum(axis=1)
        return table

    def overlap(self, *, kind: str = "iou") -> pd.DataFrame:
        """Pairwise overlap between groups: ``"iou"`` (intersection over union) or ``"count"``.

        Raises:
            ParameterError: unknown ``kind``.
        """
        if kind not in ("iou", "count"):
            raise ParameterError(f"kind must be 'iou' or 'count', got {kind!r}.")
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
        return NeuronSets({g: NeuronSet(s.mask & (counts == 1), site=s.site, gated=s.gated,
                                        fingerprint=s.fingerprint)
                           for g, s in self._sets.items()}, {**self.meta, "exclusive": True})

    def plot(self, ax: Any = None, *, stacked: bool = True) -> Any:
        """Bar chart of units per layer and group; returns the matplotlib figure."""
        return plot_layer_histogram(self.table().drop(columns="total"), ax=ax, stacked=stacked)

    def check_model(self, model: Any) -> None:
        """Raise unless every set fits ``model`` (and, when recorded, was made on it).

        Raises:
            ShapeMismatchError: the sets do not fit the model's site.
            ModelMismatchError: the sets were detected on another model (or other SAE weights).
        """
        view = ModelView(model)
        first = next(iter(self._sets.values()))
        site = get_site(view, first.site)
        check_shape(first.shape, (site.n_layers, site.width), f"site {first.site!r}")
        checked: list[int] = []
        for s in self._sets.values():  # one check per distinct record (usually one)
            if s.fingerprint is not None and id(s.fingerprint) not in checked:
                check_provenance(s.fingerprint, view, first.site, "The NeuronSets")
                checked.append(id(s.fingerprint))
        recorded = self.meta.get("fingerprint")
        if isinstance(recorded, dict) and id(recorded) not in checked:
            check_provenance(recorded, view, first.site, "The NeuronSets")

    def to_index_lists(self) -> dict[str, list[list[int]]]:
        """The papers' format: ``{group: [[unit indices] for each layer]}``."""
        return {g: [idx.tolist() for idx in s.indices] for g, s in self._sets.items()}

    @classmethod
    def from_index_lists(
        cls, lists: Mapping[str, Sequence[UnitIndices]], *,
        width: int | None = None,
        site: str = "mlp", model: Any = None,
    ) -> NeuronSets:
        """Sets from the papers' format ``{group: [[units of layer 0], [units of layer 1], ...]}``.

        Args:
            lists: the index lists per group.
            width: units per layer (taken from ``model`` when it is given).
            site: the site the units belong to.
            model: the model the sets are for: fixes the width and checks the layer count.

        Raises:
            ShapeMismatchError: a flat list, or lists that do not fit ``model``.
            ParameterError: neither ``width`` nor ``model`` was given.
        """
        n_layers, gated = None, None
        if model is not None:
            from lensneurons.core.sites import get_site

            where = get_site(ModelView(model), site)
            if width is not None and width != where.width:
                raise ShapeMismatchError(
                    f"width={width} but the model's site {site!r} has {where.width} units."
                )
            width, n_layers, gated = where.width, where.n_layers, where.view.gated
        if width is None:
            raise ParameterError("Pass width= (units per layer) or model=.")
        if not isinstance(lists, Mapping):
            raise ShapeMismatchError(
                f"Expected {{group: [[units of layer 0], ...]}}, got {type(lists).__name__}."
            )
        return cls({g: NeuronSet.from_indices(idx, width=width, n_layers=n_layers, site=site,
                                              gated=gated)
                    for g, idx in lists.items()})

    @classmethod
    def from_json(
        cls, path: str | os.PathLike[str], *, width: int | None = None, site: str = "mlp",
        model: Any = None,
    ) -> NeuronSets:
        """Read a JSON file in the papers' format (e.g. Zhang et al.'s released masks).

        Raises:
            CorruptResultError: the file is not JSON.
            ShapeMismatchError: its lists are not one per layer, or do not fit ``model``.
        """
        try:
            lists = json.loads(Path(path).read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            raise CorruptResultError(f"{path} is not a JSON file ({err}).") from None
        return cls.from_index_lists(lists, width=width, site=site, model=model)

    @classmethod
    def from_torch_masks(
        cls, path: str | os.PathLike[str], groups: Sequence[str], *, width: int | None = None,
        site: str = "mlp", model: Any = None,
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
        return cls.from_index_lists(dict(zip(groups, lists)), width=width, site=site,
                                    model=model)

    def _record(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The masks (``neurons.safetensors``); groups, site, provenance (``neurons.json``)."""
        first = next(iter(self._sets.values()))
        return ({g: s.mask for g, s in self._sets.items()},
                {**self.meta, "groups": self.groups, "site": first.site, "gated": first.gated})

    @classmethod
    def _from_record(cls, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> NeuronSets:
        meta = dict(meta)
        groups, site = meta.pop("groups", None), meta.pop("site", None)
        gated = meta.pop("gated", None)
        if (not isinstance(groups, list) or not isinstance(site, str)
                or set(groups) != set(tensors)):
            raise CorruptResultError(
                "These neuron sets are damaged: their groups and tensors disagree. "
                "Detect and save them again."
            )
        return cls({g: NeuronSet(tensors[g], site=site, gated=gated) for g in groups}, meta)

    def _check_model(self, model: Any) -> None:
        self.check_model(model)
