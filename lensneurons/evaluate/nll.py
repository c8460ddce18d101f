"""The NLL results of evaluation: per sequence, per group, and the perplexity matrix.

:func:`~lensneurons.evaluate.perplexity.perplexity` returns a :class:`Perplexity`,
:func:`~lensneurons.evaluate.perplexity.perplexity_matrix` a :class:`PerplexityMatrix`; both keep
every evaluated sequence's summed NLL (:class:`SequenceNLL`), which
:func:`~lensneurons.evaluate.deltas.nll_delta` resamples for paired intervals.

Examples:
    >>> seqs = SequenceNLL(("fr",), ["fr", "fr"], [6.0, 4.0], [3, 2])
    >>> len(seqs), seqs.table()["n_tokens"].sum().item()
    (2, 5)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from jaxtyping import Float, Integer, Shaped

from lensneurons.core.figures import axes, plot_matrix
from lensneurons.core.result import Result
from lensneurons.errors import ShapeMismatchError, UnknownGroupError

__all__ = ["Perplexity", "PerplexityMatrix", "SequenceNLL"]


@dataclass(frozen=True, eq=False)
class SequenceNLL(Result):
    """Summed NLL and counted tokens of every evaluated sequence.

    Sequences are in the corpus's batch order (deterministic: the same corpus, tokenizer and
    ``max_tokens_per_group`` give the same order), so the rows of a
    :func:`perplexity_matrix` describe the same sequences and can be compared pairwise. The
    arrays are read-only. Equality compares contents and returns a bool; a deep copy returns the
    object itself. ``.table()`` has one row per sequence, ``.plot()`` the spread of the
    per-token mean NLL of each group's sequences.

    Attributes:
        groups: the corpus's group names, in order.
        group: the group name of each sequence.
        nll_sum: summed NLL of each sequence's counted tokens (float64).
        n_tokens: counted tokens of each sequence (int64).
    """

    groups: tuple[str, ...]
    # given as arrays or lists of one entry per sequence; stored as read-only arrays
    group: Shaped[np.ndarray, " seq"] | Sequence[str]
    nll_sum: Float[np.ndarray, " seq"] | Sequence[float]
    n_tokens: Integer[np.ndarray, " seq"] | Sequence[int]

    def __post_init__(self) -> None:
        object.__setattr__(self, "groups", tuple(self.groups))
        for name, dtype in (("group", np.str_), ("nll_sum", np.float64), ("n_tokens", np.int64)):
            array = np.array(getattr(self, name), dtype=dtype)
            array.setflags(write=False)
            object.__setattr__(self, name, array)
        if not len(self.group) == len(self.nll_sum) == len(self.n_tokens):
            raise ShapeMismatchError(
                "group, nll_sum and n_tokens must have one entry per sequence.")

    def __len__(self) -> int:
        return len(self.nll_sum)

    def __repr__(self) -> str:
        return f"SequenceNLL({len(self)} sequences; groups: {', '.join(self.groups)})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SequenceNLL):
            return NotImplemented
        return (self.groups == other.groups and np.array_equal(self.group, other.group)
                and np.array_equal(self.n_tokens, other.n_tokens)
                and np.array_equal(self.nll_sum, other.nll_sum, equal_nan=True))

    __hash__ = None  # type: ignore[assignment]

    def __deepcopy__(self, memo: dict[int, Any]) -> SequenceNLL:
        return self  # immutable: pandas deep-copies attrs on every operation

    def same_sequences(self, other: SequenceNLL) -> bool:
        """Whether ``other`` covers the same sequences (groups and token counts, in order)."""
        return (self.groups == other.groups and np.array_equal(self.group, other.group)
                and np.array_equal(self.n_tokens, other.n_tokens))

    def table(self) -> pd.DataFrame:
        """One row per sequence, columns ``group``, ``nll_sum`` and ``n_tokens``."""
        return pd.DataFrame({"group": self.group.tolist(), "nll_sum": self.nll_sum,
                             "n_tokens": self.n_tokens},
                            index=pd.RangeIndex(len(self), name="sequence"))

    def plot(self, ax: Any = None) -> Any:
        """Box plot per group of each sequence's mean NLL per counted token."""
        fig, ax = axes(ax, (1.5 + 0.8 * len(self.groups), 3.5))
        counted = self.n_tokens > 0
        per_token = self.nll_sum[counted] / self.n_tokens[counted]
        group = self.group[counted]
        ax.boxplot([per_token[group == g] for g in self.groups])
        ax.set_xticks(range(1, len(self.groups) + 1), list(self.groups))
        ax.set_xlabel("group")
        ax.set_ylabel("mean NLL per token (nats)")
        ax.set_title(f"{len(self)} held-out sequences")
        fig.tight_layout()
        return fig


@dataclass(frozen=True, eq=False)
class Perplexity(Result):
    """What :func:`perplexity` measured: per group, and per evaluated sequence.

    Attributes:
        per_group: indexed by group, columns ``mean_nll``, ``ppl`` and ``n_tokens``
            (``.table()``).
        per_sequence: each evaluated sequence's group, summed NLL and counted tokens, in the
            corpus's batch order; the group totals are sums of these.
        fingerprint: the model's fingerprint (:meth:`ModelView.fingerprint`): ``load(path,
            model)`` refuses the result of another model.

    Examples:
        >>> import pandas as pd
        >>> frame = pd.DataFrame({"mean_nll": [2.0], "ppl": [7.39], "n_tokens": [3]},
        ...                      index=pd.Index(["fr"], name="group"))
        >>> result = Perplexity(frame, SequenceNLL(("fr",), ["fr"], [6.0], [3]))
        >>> float(result.table().loc["fr", "mean_nll"])
        2.0
    """

    per_group: pd.DataFrame
    per_sequence: SequenceNLL = field(repr=False)
    fingerprint: dict[str, Any] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        nll = ", ".join(f"{g}: {v:.3f}" for g, v in self.per_group["mean_nll"].items())
        return f"Perplexity(mean NLL {nll}; {len(self.per_sequence)} sequences)"

    def table(self) -> pd.DataFrame:
        """Per group: ``mean_nll``, ``ppl`` and ``n_tokens``."""
        return self.per_group

    def plot(self, ax: Any = None) -> Any:
        """Mean NLL per group (bars), with the perplexity written on each."""
        fig, ax = axes(ax, (1.5 + 0.7 * len(self.per_group), 3.5))
        groups = [str(g) for g in self.per_group.index]
        bars = ax.bar(groups, self.per_group["mean_nll"], color="tab:blue")
        for bar, ppl in zip(bars, self.per_group["ppl"], strict=True):
            ax.annotate(f"ppl {ppl:.3g}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=7)
        ax.set_xlabel("group")
        ax.set_ylabel("mean NLL (nats/token)")
        ax.set_title("held-out perplexity")
        fig.tight_layout()
        return fig


@dataclass(frozen=True, eq=False)
class PerplexityMatrix(Result):
    """What :func:`perplexity_matrix` measured: mean NLL per deactivated set and evaluated group.

    Attributes:
        mean_nll: rows ``"none"``, each group's set, ``"random:<group>"`` (index name
            ``deactivated``); columns the evaluated groups (``evaluated``) (``.table()``).
        per_sequence: row name -> that row's :class:`SequenceNLL` (the same sequences in
            every row), for :func:`nll_delta`'s paired intervals.
        fingerprint: the model's fingerprint (:meth:`ModelView.fingerprint`): ``load(path,
            model)`` refuses the result of another model.

    ``.plot()`` draws the heatmap of the changes against ``"none"`` (``nll_delta``);
    :meth:`select` keeps (and renames) rows and columns with their per-sequence data.

    Examples:
        >>> import pandas as pd
        >>> frame = pd.DataFrame({"fr": [4.0, 4.5]}, index=["none", "fr"])
        >>> matrix = PerplexityMatrix(frame, {})
        >>> matrix.select(["fr"]).table().loc["fr", "fr"].item()
        4.5
    """

    mean_nll: pd.DataFrame
    per_sequence: dict[str, SequenceNLL] = field(default_factory=dict, repr=False)
    fingerprint: dict[str, Any] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        rows, cols = self.mean_nll.shape
        return (f"PerplexityMatrix({rows} deactivated x {cols} evaluated; rows "
                f"{list(self.mean_nll.index)})")

    def table(self) -> pd.DataFrame:
        """Mean NLL, deactivated (rows) x evaluated (columns)."""
        return self.mean_nll

    def plot(self, ax: Any = None, *, title: str = "Δ mean NLL vs no intervention") -> Any:
        """Heatmap of the change of mean NLL against the ``"none"`` row (:func:`nll_delta`).

        Without a ``"none"`` row (e.g. :meth:`select` left it out) the mean NLL itself.
        """
        if self.mean_nll.empty:  # e.g. the partial matrix of a Ctrl-C before any row
            fig, ax = axes(ax, (4, 2))
            ax.set_title("no finished row")
            return fig
        if "none" in self.mean_nll.index:  # the changes (nll_delta without intervals)
            return plot_matrix(self.mean_nll - self.mean_nll.loc["none"], ax=ax, title=title)
        return plot_matrix(self.mean_nll, ax=ax, title="mean NLL", cmap="viridis")

    def select(self, rows: Sequence[str] | Mapping[str, str] | None = None,
               columns: Sequence[str] | None = None) -> PerplexityMatrix:
        """Some rows and columns, with their per-sequence data.

        Args:
            rows: row names to keep, in this order; a mapping ``old -> new`` also renames
                them (e.g. ``{"random:fr": "none", "fr": "fr"}`` measures a set against its
                random baseline). Default: every row.
            columns: evaluated groups to keep. Default: every column.

        Raises:
            UnknownGroupError: a row or column the matrix does not hold.

        Examples:
            >>> import pandas as pd
            >>> frame = pd.DataFrame({"fr": [4.0, 4.5], "de": [3.0, 3.1]},
            ...                      index=["none", "fr"])
            >>> PerplexityMatrix(frame).select({"fr": "none"}, ["de"]).table()
                   de
            none  3.1
        """
        rows = [rows] if isinstance(rows, str) else rows
        columns = [columns] if isinstance(columns, str) else columns
        names = dict(rows) if isinstance(rows, Mapping) else {
            r: r for r in (self.mean_nll.index if rows is None else rows)}
        keep = list(self.mean_nll.columns if columns is None else columns)
        missing = [r for r in names if r not in self.mean_nll.index] + [
            c for c in keep if c not in self.mean_nll.columns]
        if missing:
            raise UnknownGroupError(
                f"The matrix has no row or column {missing}; rows: "
                f"{list(self.mean_nll.index)}, columns: {list(self.mean_nll.columns)}.")
        frame = self.mean_nll.loc[list(names), keep].rename(index=names)
        return PerplexityMatrix(frame, {new: self.per_sequence[old] for old, new in names.items()
                                        if old in self.per_sequence}, self.fingerprint)
