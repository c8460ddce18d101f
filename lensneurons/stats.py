"""Streaming activation statistics per group, layer and unit, and the pass that collects them.

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

import os
import warnings
from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch
from jaxtyping import Float, Int
from tqdm.auto import tqdm

from lensneurons._accumulators import Accumulators
from lensneurons._io import load_result, save_result
from lensneurons.corpus import Corpus
from lensneurons.errors import (
    EmptyGroupError,
    MissingStatisticError,
    ModelMismatchError,
    NegativeCountError,
    NoGroupsError,
    ShapeMismatchError,
    UnknownGroupError,
)
from lensneurons.model import ModelView
from lensneurons.sites import get_site

_OPTIONAL = ("sum", "sum_sq", "max", "seq_mean_max", "seq_mean_median", "n_sequences")


@dataclass
class ActivationStats:
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
        site: the site the statistics were read at.
        meta: model fingerprint, corpus description and other provenance.
    """

    groups: list[str]
    n_tokens: Int[torch.Tensor, " group"]
    active: Int[torch.Tensor, "group layer unit"]
    sum: Float[torch.Tensor, "group layer unit"] | None = None
    sum_sq: Float[torch.Tensor, "group layer unit"] | None = None
    max: Float[torch.Tensor, "group layer unit"] | None = None
    seq_mean_max: Float[torch.Tensor, "group layer unit"] | None = None
    seq_mean_median: Float[torch.Tensor, "group layer unit"] | None = None
    n_sequences: Int[torch.Tensor, " group"] | None = None
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
        over = self.active > self.n_tokens[:, None, None]
        if over.any():
            warnings.warn(
                f"{int(over.sum())} counts exceed their group's token total (e.g. from prefix "
                "subtraction); their probabilities exceed 1.",
                stacklevel=3,
            )

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
                "it). Collect with lensneurons.collect(..., sequence_stats=True) for "
                "per-sequence statistics."
            )
        return value[self.index(group)]

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
        mine, theirs = self.meta.get("fingerprint"), other.meta.get("fingerprint")
        if mine and theirs and mine != theirs:
            raise ModelMismatchError("Cannot merge statistics collected on different models.")
        if self.seq_mean_median is not None or other.seq_mean_median is not None:
            raise MissingStatisticError(
                "Medians do not merge; collect per-sequence statistics in a single run."
            )
        groups = self.groups + [g for g in other.groups if g not in self.groups]
        merged: dict[str, Any] = {}
        for f in ("n_tokens", "active", "sum", "sum_sq", "max", "seq_mean_max", "n_sequences"):
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

    def save(self, path: str | os.PathLike[str]) -> None:
        """Save into the folder ``path`` as ``stats.safetensors`` + ``stats.json``."""
        tensors = {name: getattr(self, name) for name in ("n_tokens", "active", *_OPTIONAL)
                   if getattr(self, name) is not None}
        save_result(path, "stats", tensors,
                    {"groups": self.groups, "site": self.site, **self.meta})

    @classmethod
    def load(cls, path: str | os.PathLike[str], model: Any = None) -> ActivationStats:
        """Load statistics saved with :meth:`save`.

        Args:
            path: the folder.
            model: if given, the model the statistics are meant for; it must be the model
                they were collected with.

        Raises:
            ModelMismatchError: ``model`` is not the model the statistics were collected with.
        """
        tensors, meta = load_result(path, "stats")
        groups, site = meta.pop("groups"), meta.pop("site")
        for key in ("kind", "format_version", "lensneurons_version"):
            meta.pop(key, None)
        if model is not None and "fingerprint" in meta:
            ModelView(model).check_fingerprint(meta["fingerprint"], f"The statistics in {path}")
        return cls(groups=groups, site=site, meta=meta, **tensors)

    @classmethod
    def from_counts(
        cls,
        counts: dict[str, torch.Tensor],
        n_tokens: dict[str, int | torch.Tensor],
        *,
        site: str = "mlp",
    ) -> ActivationStats:
        """Statistics from activation counts made elsewhere (e.g. a paper's released files).

        Args:
            counts: ``{group: Tensor[layer, unit]}`` tokens with the unit active.
            n_tokens: ``{group: tokens counted}``.
            site: where the counts were read.

        Raises:
            ShapeMismatchError: groups or shapes disagree.
            NegativeCountError: a count is negative.
        """
        if set(counts) != set(n_tokens):
            raise ShapeMismatchError(
                f"counts and n_tokens name different groups: {sorted(counts)} and "
                f"{sorted(n_tokens)}."
            )
        shapes = {tuple(c.shape) for c in counts.values()}
        if len(shapes) > 1 or any(len(s) != 2 for s in shapes):
            raise ShapeMismatchError(f"Every count tensor must be [layer, unit]; got {shapes}.")
        groups = list(counts)
        return cls(
            groups=groups,
            n_tokens=torch.tensor([int(n_tokens[g]) for g in groups], dtype=torch.int64),
            active=torch.stack([counts[g].to(torch.int64) for g in groups]),
            site=site,
        )


def collect(
    model: Any,
    corpus: Corpus,
    *,
    site: str = "mlp",
    batch_size: int = 8,
    max_tokens_per_group: int | None = None,
    sequence_stats: bool = False,
    progress: bool = True,
) -> ActivationStats:
    """Collect :class:`ActivationStats` of ``corpus`` on ``model`` in one streaming pass.

    Each forward pass stops at the last layer's read hook: the rest of the last block and the
    unembedding are never computed (most of a pass on a large-vocabulary model).

    Args:
        model: a TransformerLens model (``TransformerBridge`` or ``HookedTransformer``).
        corpus: the texts or examples per group.
        site: where to read (``"mlp"``: gate pre-activation sign and ``act(g)``).
        batch_size: sequences per forward pass.
        max_tokens_per_group: stop each group at this many counted tokens.
        sequence_stats: also keep the max and median over sequences of each sequence's mean
            activation (Rahmanisa et al.). The median needs every per-sequence mean on the CPU
            (``sequences x layers x units`` floats), so memory then grows with the corpus.
        progress: show a progress bar.

    Returns:
        Statistics on the CPU.

    Raises:
        HookShapeError: a hook gave a tensor of another width than the site (an adapter gap).
        UnknownSiteError: ``site`` is unknown or missing on this model.
    """
    view = ModelView(model)
    where = get_site(view, site)
    tokenized = corpus.tokenize(view).limit(max_tokens_per_group)
    acc = Accumulators(where, len(corpus.groups), sequence_stats)
    n_tokens = torch.zeros(len(corpus.groups), dtype=torch.int64)
    device = view.input_device
    last_read = where.read_hook(view.n_layers - 1)  # no statistic needs anything after it
    with torch.inference_mode(), view.model.hooks(fwd_hooks=acc.hooks()):
        for batch in tqdm(tokenized.batches(batch_size), total=tokenized.n_batches(batch_size),
                          desc="collect", disable=not progress):
            acc.start(batch)
            view.run_until(batch.tokens.to(device), last_read)
            acc.finish()
            n_tokens += batch.n_counted
    return ActivationStats(
        groups=corpus.groups, n_tokens=n_tokens, site=site, **acc.results(),
        meta={"fingerprint": view.fingerprint(), "gated": view.gated, "corpus": repr(corpus),
              "max_tokens_per_group": max_tokens_per_group},
    )
