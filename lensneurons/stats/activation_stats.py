"""ActivationStats: per-group streaming statistics of every unit, as ``collect`` returns them.

:func:`collect` runs one forward pass per batch with a hook on every layer's read point. The hook
selects the counted tokens, and adds per-group counts, sums, sums of squares and maxima into
accumulators that live on the layer's device. Nothing is kept per token, so memory is
``O(groups x layers x units)`` however large the corpus; results move to the CPU once, at the end.

Statistics are sums, so two runs over disjoint shards merge exactly with ``+``.

Examples:
    >>> import lensneurons as ln
    >>> model = ln.organism.load()
    >>> corpus = ln.Corpus.from_texts(ln.organism.texts("heldout"))
    >>> stats = ln.collect(model, corpus, progress=False)
    >>> stats.active.shape == (len(corpus.groups), model.cfg.n_layers, model.cfg.d_mlp)
    True
    >>> bool((stats.probs() <= 1).all())
    True
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float, Int, Real

from lensneurons.core.checks import group_label
from lensneurons.core.figures import axes
from lensneurons.core.model import ModelView, same_fingerprint
from lensneurons.core.result import Result
from lensneurons.errors import (
    CorruptResultError,
    EmptyGroupError,
    MissingStatisticError,
    ModelMismatchError,
    NegativeCountError,
    NoGroupsError,
    ParameterError,
    ShapeMismatchError,
    UnknownGroupError,
)

_OPTIONAL = ("sum", "sum_sq", "max", "seq_mean_max", "seq_mean_median", "n_sequences",
             "active_docs", "n_docs")
#: Fields that merge by sum (``max`` and ``seq_mean_max`` merge by maximum; medians do not merge).
_MERGED = ("n_tokens", "active", "sum", "sum_sq", "max", "seq_mean_max", "n_sequences",
           "active_docs", "n_docs")


@dataclass
class ActivationStats(Result):
    """Per group ``g``, layer ``l`` and unit ``d``: token counts and activation statistics.

    Attributes:
        groups: group names, in corpus order.
        n_tokens: counted tokens per group.
        active: tokens whose unit is active (``act(g) > 0``), int64.
        sum: sum of the activation value ``a`` over counted tokens (float64).
        sum_sq: sum of ``a**2`` (float64).
        max: maximum of ``a``.
        seq_mean_max: maximum over sequences of the per-sequence mean of ``a`` (Rahmanisa p_max).
        seq_mean_median: median over sequences of that mean (Rahmanisa p_median).
        n_sequences: sequences per group (with per-sequence statistics).
        active_docs: documents (texts or examples) in which the unit is active on at least one
            counted token, int64 (with per-document statistics).
        n_docs: documents per group (with per-document statistics).
        site: the site the statistics were read at.
        meta: model fingerprint, corpus description and other provenance.
    """

    kind = "stats"

    groups: list[str]
    n_tokens: Int[torch.Tensor, " group"]
    active: Int[torch.Tensor, "group layer unit"]
    sum: Float[torch.Tensor, "group layer unit"] | None = None
    sum_sq: Float[torch.Tensor, "group layer unit"] | None = None
    max: Float[torch.Tensor, "group layer unit"] | None = None
    seq_mean_max: Float[torch.Tensor, "group layer unit"] | None = None
    seq_mean_median: Float[torch.Tensor, "group layer unit"] | None = None
    n_sequences: Int[torch.Tensor, " group"] | None = None
    active_docs: Int[torch.Tensor, "group layer unit"] | None = None
    n_docs: Int[torch.Tensor, " group"] | None = None
    site: str = "mlp"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.groups:
            raise NoGroupsError("Statistics need at least one group.")
        if self.active.dim() != 3 or self.active.shape[0] != len(self.groups):
            raise ShapeMismatchError(
                f"active must be [group, layer, unit] with {len(self.groups)} groups, "
                f"got shape {tuple(self.active.shape)}."
            )
        if (self.n_tokens < 0).any() or (self.active < 0).any():
            raise NegativeCountError("Token and activation counts must not be negative.")
        empty = [g for g, n in zip(self.groups, self.n_tokens.tolist()) if n == 0]
        if empty:
            raise EmptyGroupError(f"Groups {empty} have no counted tokens; drop them first.")
        self._check_documents()
        over = self.active > self.n_tokens[:, None, None]
        if over.any():
            warnings.warn(
                f"{int(over.sum())} counts exceed their group's token total (e.g. from prefix "
                "subtraction); their probabilities exceed 1.",
                stacklevel=3,
            )

    def _check_documents(self) -> None:
        if self.active_docs is None and self.n_docs is None:
            return
        if (self.active_docs is None or self.n_docs is None
                or self.active_docs.shape != self.active.shape
                or self.n_docs.shape != self.n_tokens.shape):
            raise ShapeMismatchError(
                "active_docs [group, layer, unit] and n_docs [group] come together, shaped "
                f"like active {tuple(self.active.shape)} and n_tokens "
                f"{tuple(self.n_tokens.shape)}.")
        if (self.n_docs < 0).any() or (self.active_docs < 0).any():
            raise NegativeCountError("Document counts must not be negative.")
        if (self.active_docs > self.n_docs[:, None, None]).any():
            raise ParameterError(
                "Some units are active in more documents than their group has (active_docs > "
                "n_docs); pass the number of documents of each group as n_docs.")

    def __repr__(self) -> str:
        _, n_layers, width = self.active.shape
        counts = ", ".join(f"{g}={n}" for g, n in zip(self.groups, self.n_tokens.tolist()))
        return f"ActivationStats(site={self.site!r}, {n_layers}x{width}; tokens: {counts})"

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_layers, units per layer)``."""
        return int(self.active.shape[1]), int(self.active.shape[2])

    def index(self, group: str) -> int:
        """Position of ``group`` in :attr:`groups`.

        Raises:
            UnknownGroupError: no such group.
        """
        if group not in self.groups and isinstance(group, str) and group.strip():
            group = group_label(group)  # "français" typed in NFD names the NFC group
        if group not in self.groups:
            raise UnknownGroupError(f"No group {group!r}; the statistics hold {self.groups}.")
        return self.groups.index(group)

    def probs(self) -> Float[torch.Tensor, "group layer unit"]:
        """Activation probability ``active / n_tokens`` (float64).

        Counts above a group's token total (possible in counts made elsewhere, e.g. by prefix
        subtraction) are kept as they are, as the papers' code does, after a warning at load.
        """
        return self.active.double() / self.n_tokens.double()[:, None, None]

    def _field(self, name: str, group: str) -> torch.Tensor:
        value = getattr(self, name)
        if value is None:
            raise MissingStatisticError(
                f"These statistics hold no {name!r} (made from counts, or collected without "
                "it). Collect with lensneurons.collect(..., value_stats=True) (the default) for "
                "sums, sums of squares and maxima, and with sequence_stats=True for "
                "per-sequence statistics."
            )
        return value[self.index(group)]

    def doc_probs(self) -> Float[torch.Tensor, "group layer unit"]:
        """Share of each group's documents in which the unit is active: ``active_docs / n_docs``.

        Raises:
            MissingStatisticError: the statistics hold no per-document counts.

        Examples:
            >>> stats = ActivationStats.from_counts(
            ...     {"en": torch.tensor([[3, 0]])}, {"en": 4},
            ...     doc_counts={"en": torch.tensor([[2, 0]])}, n_docs={"en": 2})
            >>> stats.doc_probs()[0].tolist()
            [[1.0, 0.0]]
        """
        if self.active_docs is None or self.n_docs is None:
            raise MissingStatisticError(
                "These statistics hold no per-document counts. Collect them with "
                "lensneurons.collect(..., document_stats=True) on a corpus with one document per "
                "sequence, or pass doc_counts= and n_docs= to ActivationStats.from_counts.")
        return self.active_docs.double() / self.n_docs.double()[:, None, None]

    def mean(self, group: str) -> Float[torch.Tensor, "layer unit"]:
        """Mean activation value of ``group`` over its counted tokens (negatives included)."""
        return (self._field("sum", group) / self.n_tokens[self.index(group)]).float()

    def std(self, group: str) -> Float[torch.Tensor, "layer unit"]:
        """Standard deviation of the activation value of ``group``."""
        n = self.n_tokens[self.index(group)].double()
        mean = self._field("sum", group) / n
        return (self._field("sum_sq", group) / n - mean**2).clamp(min=0).sqrt().float()

    def seq_mean_max_of(self, group: str) -> Float[torch.Tensor, "layer unit"]:
        """Maximum over sequences of the per-sequence mean activation (Rahmanisa p_max)."""
        return self._field("seq_mean_max", group).float()

    def seq_mean_median_of(self, group: str) -> Float[torch.Tensor, "layer unit"]:
        """Median over sequences of the per-sequence mean activation (Rahmanisa p_median)."""
        return self._field("seq_mean_median", group).float()

    def __add__(self, other: ActivationStats) -> ActivationStats:
        """Merge statistics of disjoint shards exactly (groups are matched by name)."""
        if self.site != other.site or self.shape != other.shape:
            raise ShapeMismatchError(
                f"Cannot merge statistics of site {self.site!r} {self.shape} with site "
                f"{other.site!r} {other.shape}."
            )
        if not same_fingerprint(self.meta.get("fingerprint"), other.meta.get("fingerprint")):
            raise ModelMismatchError("Cannot merge statistics collected on different models.")
        if self.seq_mean_median is not None or other.seq_mean_median is not None:
            raise MissingStatisticError(
                "Medians do not merge; collect per-sequence statistics in a single run."
            )
        groups = self.groups + [g for g in other.groups if g not in self.groups]
        merged: dict[str, Any] = {}
        for f in _MERGED:
            a, b = getattr(self, f), getattr(other, f)
            if a is None or b is None:
                merged[f] = None
                continue
            out = torch.zeros((len(groups), *a.shape[1:]), dtype=a.dtype)
            if f in ("max", "seq_mean_max"):
                out.fill_(float("-inf"))
            for src, stats in ((a, self), (b, other)):
                idx = torch.tensor([groups.index(g) for g in stats.groups])
                if f in ("max", "seq_mean_max"):
                    out[idx] = torch.maximum(out[idx], src)
                else:
                    out[idx] += src
            merged[f] = out
        return ActivationStats(groups=groups, site=self.site, meta=dict(self.meta), **merged)

    def select(self, groups: list[str]) -> ActivationStats:
        """The statistics of ``groups`` only, in that order."""
        idx = torch.tensor([self.index(g) for g in groups])
        kept = {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in ("groups", "site", "meta")}
        kept = {k: (None if v is None else v[idx]) for k, v in kept.items()}
        return replace(self, groups=list(groups), **kept)

    def table(self) -> pd.DataFrame:
        """The share of units active on a counted token: groups (rows) x layers (columns).

        Each cell is the mean over units of ``P(active)``; ``n_tokens`` is the last column.
        """
        probs = self.probs().mean(-1).double().numpy()
        table = pd.DataFrame(probs, index=pd.Index(self.groups, name="group"),
                             columns=pd.RangeIndex(probs.shape[1], name="layer"))
        table["n_tokens"] = self.n_tokens.numpy()
        return table

    def plot(self, ax: Any = None) -> Any:
        """Mean ``P(active)`` per layer, one line per group."""
        fig, ax = axes(ax, (6.5, 3.8))
        table = self.table().drop(columns="n_tokens")
        for group, row in table.iterrows():
            ax.plot(row.index, row.to_numpy(), marker="o", label=str(group))
        ax.set_xlabel("layer")
        ax.set_ylabel("mean P(active)")
        ax.set_title(f"Activation probability per layer ({self.site})")
        ax.legend(title="group", fontsize="small", ncols=2)
        fig.tight_layout()
        return fig

    def summary_line(self) -> str:
        """One line for the notebook view."""
        return (f"ActivationStats on site {self.site!r}: {len(self.groups)} groups, "
                f"{self.shape[0]} layers x {self.shape[1]} units, "
                f"{int(self.n_tokens.sum())} counted tokens")

    def _record(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The tensors (``stats.safetensors``); groups, site and provenance (``stats.json``)."""
        tensors = {name: getattr(self, name) for name in ("n_tokens", "active", *_OPTIONAL)
                   if getattr(self, name) is not None}
        return tensors, {**self.meta, "groups": self.groups, "site": self.site}

    @classmethod
    def _from_record(cls, tensors: dict[str, torch.Tensor],
                     meta: dict[str, Any]) -> ActivationStats:
        meta = dict(meta)
        groups, site = meta.pop("groups", None), meta.pop("site", None)
        known = {"n_tokens", "active", *_OPTIONAL}
        if (not isinstance(groups, list) or not isinstance(site, str)
                or not {"n_tokens", "active"} <= set(tensors) or not set(tensors) <= known
                or tensors["n_tokens"].shape != (len(groups),)):
            raise CorruptResultError(
                "These statistics are damaged: groups, site or tensors are missing or "
                "disagree. Collect and save them again."
            )
        try:
            return cls(groups=groups, site=site, meta=meta, **tensors)
        except ShapeMismatchError as err:
            raise CorruptResultError(f"These statistics are damaged: {err}") from None

    def _check_model(self, model: Any) -> None:
        if "fingerprint" in self.meta:
            ModelView(model).check_fingerprint(self.meta["fingerprint"], "The statistics")

    @classmethod
    def from_counts(
        cls,
        counts: Mapping[str, Real[torch.Tensor, "layer unit"] | np.ndarray
                        | Sequence[Sequence[int | float]]],
        n_tokens: Mapping[str, int | float | np.number | Real[torch.Tensor, ""]],
        *,
        site: str = "mlp",
        doc_counts: Mapping[str, Real[torch.Tensor, "layer unit"] | np.ndarray
                            | Sequence[Sequence[int | float]]] | None = None,
        n_docs: Mapping[str, int | float | np.number | Real[torch.Tensor, ""]] | None = None,
    ) -> ActivationStats:
        """Statistics from activation counts made elsewhere (e.g. a paper's released files).

        Args:
            counts: ``{group: Tensor[layer, unit]}`` tokens with the unit active (whole
                numbers; integer or integral float tensors, numpy arrays or nested lists).
            n_tokens: ``{group: tokens counted}``.
            site: where the counts were read.
            doc_counts: optional ``{group: Tensor[layer, unit]}`` documents in which the unit
                is active at least once (SAE-LAPE's ``over_zero_example``); with ``n_docs``.
            n_docs: ``{group: documents}``, with ``doc_counts``.

        Raises:
            ShapeMismatchError: groups or shapes disagree.
            NegativeCountError: a count is negative.
            ParameterError: a count is not a whole number (probabilities instead of counts:
                multiply them by ``n_tokens``), NaN, or a boolean mask; ``doc_counts`` without
                ``n_docs`` or the reverse; a document count above its group's ``n_docs``.

        Warns:
            UserWarning: a count exceeds its group's ``n_tokens``.

        Examples:
            >>> stats = ActivationStats.from_counts({"en": torch.tensor([[3, 0]])}, {"en": 4})
            >>> stats.probs()[0].tolist()
            [[0.75, 0.0]]
        """
        groups = list(counts) if isinstance(counts, Mapping) else []
        active, totals = _counts(counts, n_tokens, ("counts", "n_tokens"), groups)
        active_docs = doc_totals = None
        if doc_counts is not None or n_docs is not None:
            if doc_counts is None or n_docs is None:
                raise ParameterError(
                    "doc_counts and n_docs come together: pass both (documents with the unit "
                    "active, and documents per group), or neither.")
            active_docs, doc_totals = _counts(doc_counts, n_docs, ("doc_counts", "n_docs"),
                                              groups)
            if active_docs.shape != active.shape:
                raise ShapeMismatchError(
                    f"doc_counts must be shaped like counts {tuple(active.shape[1:])}, got "
                    f"{tuple(active_docs.shape[1:])}.")
        return cls(groups=groups, n_tokens=totals, active=active, active_docs=active_docs,
                   n_docs=doc_totals, site=site)


def _counts(counts: Any, totals: Any, names: tuple[str, str],
            groups: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """``counts`` ``{group: [layer, unit]}`` and ``totals`` ``{group: n}`` checked, stacked.

    Raises:
        ShapeMismatchError: the groups are not ``groups``, or the shapes disagree.
    """
    from lensneurons.core.checks import mapping, whole_counts

    mapping(counts, names[0], "{group: Tensor[layer, unit]}")
    mapping(totals, names[1], "{group: int}")
    if set(counts) != set(groups) or set(totals) != set(groups):
        raise ShapeMismatchError(
            f"{names[0]} and {names[1]} name different groups: {sorted(counts)} and "
            f"{sorted(totals)}" + (f" (counts: {sorted(groups)})." if names[0] != "counts" else ".")
        )
    per_group = {g: whole_counts(counts[g], f"{names[0]}[{g!r}]") for g in groups}
    shapes = {tuple(c.shape) for c in per_group.values()}
    if len(shapes) > 1 or any(len(s) != 2 for s in shapes):
        raise ShapeMismatchError(f"Every count tensor must be [layer, unit]; got {shapes}.")
    sums = [whole_counts(totals[g], f"{names[1]}[{g!r}]") for g in groups]
    if any(t.numel() != 1 for t in sums):
        raise ShapeMismatchError(f"Every {names[1]} value must be one number per group.")
    return (torch.stack([per_group[g] for g in groups]),
            torch.stack([t.reshape(()) for t in sums]))

__all__ = ["ActivationStats"]
