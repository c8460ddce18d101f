"""Evaluation: per-group perplexity, and the deactivation x evaluation perplexity matrix.

Perplexity uses the log-probability of the true next token only (never top-k entries), over the
corpus's counted tokens (BOS, padding and prompt tokens excluded). Tang et al.'s ``ppl.py`` prints
the mean NLL (log-perplexity); both the mean NLL and ``exp`` of it are reported here.

Memory stays bounded: beyond the model's own output, each sequence's log-probabilities are
computed on its own, in two halves, so that at most one sequence's logits exist in fp32 at a
time (never a copy of the whole batch's ``[batch, pos, vocab]`` logits).

Every evaluated sequence's summed NLL and counted tokens are kept (:class:`SequenceNLL`, in
``table.attrs["per_sequence"]``): :func:`nll_delta` uses them for paired bootstrap intervals
over held-out sequences.

Examples:
    >>> import lensneurons as ln
    >>> model = ln.organism.load()
    >>> heldout = ln.Corpus.from_texts(ln.organism.texts("heldout"))
    >>> table = ln.perplexity(model, heldout, progress=False)
    >>> list(table.columns)
    ['mean_nll', 'ppl', 'n_tokens']
    >>> per_sequence = table.attrs["per_sequence"].to_frame()
    >>> list(per_sequence.columns)
    ['group', 'nll_sum', 'n_tokens']
    >>> totals = per_sequence.groupby("group")["n_tokens"].sum()
    >>> totals[table.index].tolist() == table["n_tokens"].tolist()
    True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from lensneurons.corpus import Corpus
from lensneurons.errors import MissingStatisticError
from lensneurons.interventions import deactivate, random_like
from lensneurons.model import ModelView
from lensneurons.neurons import NeuronSets

HookList = Sequence[tuple[str, Callable[..., Any]]]

_BOOTSTRAP_BLOCK = 1 << 22  # resampled sequence indices held at once by nll_delta


@dataclass(frozen=True, eq=False)
class SequenceNLL:
    """Summed NLL and counted tokens of every evaluated sequence.

    Sequences are in the corpus's batch order (deterministic: the same corpus, tokenizer and
    ``max_tokens_per_group`` give the same order), so the rows of a
    :func:`perplexity_matrix` describe the same sequences and can be compared pairwise. The
    arrays are read-only. Equality compares contents and returns a bool, so pandas can compare
    ``attrs`` holding these (``pd.concat``, ``merge``); a deep copy returns the object itself.

    Attributes:
        groups: the corpus's group names, in order.
        group: the group name of each sequence.
        nll_sum: summed NLL of each sequence's counted tokens (float64).
        n_tokens: counted tokens of each sequence (int64).
    """

    groups: tuple[str, ...]
    group: np.ndarray
    nll_sum: np.ndarray
    n_tokens: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "groups", tuple(self.groups))
        for name, dtype in (("group", np.str_), ("nll_sum", np.float64), ("n_tokens", np.int64)):
            array = np.array(getattr(self, name), dtype=dtype)
            array.setflags(write=False)
            object.__setattr__(self, name, array)
        if not len(self.group) == len(self.nll_sum) == len(self.n_tokens):
            raise ValueError("group, nll_sum and n_tokens must have one entry per sequence.")

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

    def to_frame(self) -> pd.DataFrame:
        """One row per sequence, columns ``group``, ``nll_sum`` and ``n_tokens``."""
        return pd.DataFrame({"group": self.group.tolist(), "nll_sum": self.nll_sum,
                             "n_tokens": self.n_tokens},
                            index=pd.RangeIndex(len(self), name="sequence"))


def _row_nll_sums(
    logits: torch.Tensor, tokens: torch.Tensor, counted: torch.Tensor
) -> torch.Tensor:
    """Summed NLL (float64) of each row's counted next tokens, one sequence at a time.

    Each row is cut after its last counted target and scored in two halves: a half is cast to
    fp32 and log-softmaxed (two arrays of half a sequence), so the extra memory is at most one
    sequence's logits in fp32. The per-token values are those of a whole-batch cross-entropy.
    """
    device = logits.device
    targets = tokens[:, 1:].to(device)
    scored = counted[:, 1:]
    positions = torch.arange(1, scored.shape[1] + 1)
    ends = (scored * positions).amax(1).tolist() if scored.numel() else [0] * len(scored)
    scored = scored.to(device)
    sums = []
    for row, end in enumerate(ends):
        half = max(1, (end + 1) // 2)
        pieces = [F.cross_entropy(logits[row, start:min(start + half, end)].float(),
                                  targets[row, start:min(start + half, end)], reduction="none")
                  for start in range(0, end, half)]
        per_token = torch.cat(pieces) if pieces else torch.zeros(0, device=device)
        sums.append((per_token.double() * scored[row, :end]).sum())
    return torch.stack(sums)


def perplexity(
    model: Any,
    corpus: Corpus,
    *,
    fwd_hooks: HookList = (),
    batch_size: int = 8,
    max_tokens_per_group: int | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Mean NLL and perplexity of each group's counted tokens, optionally under hooks.

    Args:
        model: a TransformerLens model.
        corpus: the evaluation texts per group.
        fwd_hooks: hooks active during evaluation (e.g. ``ln.deactivate(neurons["fr"])``).
        batch_size: sequences per forward pass. The model's output holds ``batch_size``
            sequences' logits; scoring them adds at most one sequence's logits in fp32.
        max_tokens_per_group: evaluate at most this many tokens per group.
        progress: show a progress bar.

    Returns:
        A DataFrame indexed by group with ``mean_nll``, ``ppl`` and ``n_tokens``. Its
        ``attrs["per_sequence"]`` is a :class:`SequenceNLL`: each evaluated sequence's group,
        summed NLL and counted tokens, in the corpus's batch order. The group totals are sums
        of these.
    """
    view = ModelView(model)
    tokenized = corpus.tokenize(view).limit(max_tokens_per_group)
    device = view.input_device
    sums, counts, groups = [], [], []
    with torch.inference_mode(), view.model.hooks(fwd_hooks=list(fwd_hooks)):
        for batch in tqdm(tokenized.batches(batch_size), total=tokenized.n_batches(batch_size),
                          desc="perplexity", disable=not progress):
            logits = view.model(batch.tokens.to(device))
            sums.append(_row_nll_sums(logits, batch.tokens, batch.counted))
            counts.append(batch.counted[:, 1:].sum(1))
            groups.append(batch.rows)
            del logits
    nll_sum = torch.cat(sums).cpu() if sums else torch.zeros(0, dtype=torch.float64)
    n_tokens = torch.cat(counts) if counts else torch.zeros(0, dtype=torch.int64)
    group_ids = torch.cat(groups) if groups else torch.zeros(0, dtype=torch.int64)
    n_groups = len(corpus.groups)
    nll = torch.zeros(n_groups, dtype=torch.float64).index_add_(0, group_ids, nll_sum)
    totals = torch.zeros(n_groups, dtype=torch.int64).index_add_(0, group_ids, n_tokens)
    mean = nll / totals.clamp(min=1)
    table = pd.DataFrame({"mean_nll": mean.numpy(), "ppl": mean.exp().numpy(),
                          "n_tokens": totals.numpy()},
                         index=pd.Index(corpus.groups, name="group"))
    table.attrs["per_sequence"] = SequenceNLL(
        groups=tuple(corpus.groups), group=np.array(corpus.groups)[group_ids.numpy()],
        nll_sum=nll_sum.numpy(), n_tokens=n_tokens.numpy())
    return table


def perplexity_matrix(
    model: Any,
    corpus: Corpus,
    neurons: NeuronSets,
    *,
    random_baseline: bool = True,
    seed: int = 0,
    batch_size: int = 8,
    max_tokens_per_group: int | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Mean NLL of every evaluated group while each group's set is deactivated.

    Rows: ``"none"`` (no intervention), then each group of ``neurons`` deactivated, then with
    ``random_baseline`` a ``"random:<group>"`` row per group (a random set of the same size per
    layer, disjoint from it). Columns: the corpus's groups. Use :func:`nll_delta` and
    :func:`ppl_ratio` for changes against ``"none"``.

    ``matrix.attrs["per_sequence"]`` maps each row to its :class:`SequenceNLL` (the same
    sequences in every row), from which ``nll_delta(matrix, interval=0.95)`` computes paired
    bootstrap intervals. The attrs survive pandas operations, but not a CSV round trip.

    Examples:
        >>> import lensneurons as ln
        >>> model = ln.organism.load()
        >>> train = ln.Corpus.from_texts(ln.organism.texts("train"))
        >>> neurons = ln.lape(ln.collect(model, train, progress=False), top_rate=0.10)
        >>> heldout = ln.Corpus.from_texts(ln.organism.texts("heldout"))
        >>> matrix = ln.perplexity_matrix(model, heldout, neurons, progress=False)
        >>> bool(ln.nll_delta(matrix).loc["fr", "fr"] > 0)
        True
        >>> sorted(matrix.attrs["per_sequence"]) == sorted(matrix.index)
        True
        >>> ci = ln.nll_delta(matrix, interval=0.95)
        >>> bool(ci.loc[("ru", "ru"), "low"] > 0)  # clearly above zero
        True
    """
    neurons.check_model(model)
    rows: dict[str, HookList] = {"none": []}
    rows.update({g: deactivate(s) for g, s in neurons.items()})
    if random_baseline:
        rows.update({f"random:{g}": deactivate(random_like(s, seed=seed + i))
                     for i, (g, s) in enumerate(neurons.items())})
    results, per_sequence = {}, {}
    for name, hooks in tqdm(rows.items(), desc="perplexity matrix", disable=not progress):
        table = perplexity(model, corpus, fwd_hooks=hooks, batch_size=batch_size,
                           max_tokens_per_group=max_tokens_per_group, progress=False)
        results[name] = table["mean_nll"]
        per_sequence[name] = table.attrs["per_sequence"]
    matrix = pd.DataFrame(results).T
    matrix.index.name, matrix.columns.name = "deactivated", "evaluated"
    matrix.attrs = {"per_sequence": per_sequence}
    return matrix


def nll_delta(
    matrix: pd.DataFrame,
    *,
    interval: float | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Change of mean NLL against the ``"none"`` row (Tang et al.'s reported quantity).

    With ``interval`` (e.g. ``0.95``), each change also gets a paired bootstrap percentile
    interval over held-out sequences. Every row of the matrix scored the same sequences, so
    for each evaluated group the sequences are resampled with replacement (``n_boot`` times),
    the *same* resample is applied to a row and to ``"none"``, and the token-weighted mean NLL
    difference is recomputed: ``sum(nll_row - nll_none) / sum(n_tokens)`` over the resample.
    The bounds are the ``(1 - interval) / 2`` and ``(1 + interval) / 2`` quantiles of these.
    Pairing removes the variation between sequences that both rows share, which an unpaired
    interval would count as noise. The resampled indices of evaluated group number ``j`` of
    the corpus are ``numpy.random.default_rng([seed, j]).integers(0, m, size=(n_boot, m))``
    (``m``: its sequences with counted tokens), the same for every row.

    Args:
        matrix: the output of :func:`perplexity_matrix` (with its ``attrs`` for intervals).
        interval: confidence level in (0, 1), or ``None`` for the changes alone.
        n_boot: bootstrap resamples per evaluated group.
        seed: seed of the resampling (a non-negative integer).

    Returns:
        With ``interval=None``, a DataFrame like ``matrix`` holding ``matrix - matrix.loc["none"]``.
        Otherwise a DataFrame indexed by ``(deactivated, evaluated)``, in the matrix's order,
        with columns ``delta`` (as without ``interval``), ``low``, ``high`` and
        ``n_sequences`` (held-out sequences resampled).

    Raises:
        MissingStatisticError: ``interval`` was given but the matrix carries no per-sequence
            NLL for some row (e.g. it was read from a CSV file): recompute it with
            :func:`perplexity_matrix`.
        ValueError: ``interval`` is not in (0, 1) or ``n_boot`` is below 1.

    Examples:
        >>> import pandas as pd
        >>> import lensneurons as ln
        >>> matrix = pd.DataFrame({"fr": [4.0, 4.5]}, index=["none", "fr"])
        >>> float(ln.nll_delta(matrix).loc["fr", "fr"])
        0.5
        >>> try:  # a matrix without per-sequence data, as read back from a CSV file
        ...     ln.nll_delta(matrix, interval=0.95)
        ... except ln.MissingStatisticError as err:
        ...     print(type(err).__name__)
        MissingStatisticError
    """
    delta = matrix - matrix.loc["none"]
    if interval is None:
        return delta
    if not 0 < interval < 1:
        raise ValueError(f"interval must be a confidence level in (0, 1), got {interval}.")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}.")
    per_sequence = _paired_sequences(matrix)
    none = per_sequence["none"]
    quantiles = [(1 - interval) / 2, (1 + interval) / 2]
    shape = (len(matrix.index), len(matrix.columns))
    low, high = np.empty(shape), np.empty(shape)
    n_sequences = np.empty(shape[1], dtype=np.int64)
    for j, column in enumerate(matrix.columns):
        chosen = (none.group == str(column)) & (none.n_tokens > 0)
        n_sequences[j] = chosen.sum()
        if not n_sequences[j]:
            raise MissingStatisticError(
                f"The matrix's per-sequence data hold no sequence of evaluated group "
                f"{column!r}. Recompute the matrix with perplexity_matrix on a corpus "
                "that has this group.")
        diffs = np.stack([per_sequence[row].nll_sum[chosen] - none.nll_sum[chosen]
                          for row in matrix.index], axis=1)
        index = none.groups.index(str(column)) if str(column) in none.groups else j
        rng = np.random.default_rng([seed, index])
        boot = _paired_bootstrap(diffs, none.n_tokens[chosen], n_boot, rng)
        low[:, j], high[:, j] = np.quantile(boot, quantiles, axis=0)
    table = pd.DataFrame(
        {"delta": delta.to_numpy(dtype=np.float64).ravel(), "low": low.ravel(),
         "high": high.ravel(), "n_sequences": np.tile(n_sequences, shape[0])},
        index=pd.MultiIndex.from_product([matrix.index, matrix.columns],
                                         names=["deactivated", "evaluated"]))
    table.attrs = {"interval": interval, "n_boot": n_boot, "seed": seed}
    return table


def _paired_sequences(matrix: pd.DataFrame) -> dict[str, SequenceNLL]:
    """The matrix's per-sequence NLL of every row, checked to cover the same sequences."""
    per_sequence = matrix.attrs.get("per_sequence")
    missing = [row for row in matrix.index
               if not isinstance(per_sequence, dict)
               or not isinstance(per_sequence.get(row), SequenceNLL)]
    if missing or "none" not in per_sequence:
        raise MissingStatisticError(
            "Intervals need each sequence's NLL, which this matrix does not carry for "
            f"{', '.join(map(repr, missing or ['none']))} (a matrix read from a CSV file has "
            "none). Recompute it with ln.perplexity_matrix(...), then call "
            "ln.nll_delta(matrix, interval=...) on the result.")
    none = per_sequence["none"]
    for row in matrix.index:
        if not per_sequence[row].same_sequences(none):
            raise MissingStatisticError(
                f"The per-sequence NLL of row {row!r} covers other sequences than the 'none' "
                "row, so they cannot be paired. Recompute the whole matrix with one call of "
                "ln.perplexity_matrix(...).")
    return per_sequence


def _paired_bootstrap(
    diffs: np.ndarray, n_tokens: np.ndarray, n_boot: int, rng: np.random.Generator
) -> np.ndarray:
    """``[n_boot, rows]`` token-weighted mean differences over resampled sequences.

    ``diffs`` is ``[sequences, rows]`` (summed NLL minus that of ``"none"``). Each resample is
    turned into per-sequence weights (how often each sequence was drawn), so all rows are
    reweighted with one matrix product; resamples are drawn in blocks to bound memory.
    """
    m = len(n_tokens)
    tokens = n_tokens.astype(np.float64)
    block = max(1, _BOOTSTRAP_BLOCK // m)
    out = []
    for start in range(0, n_boot, block):
        size = min(block, n_boot - start)
        draws = rng.integers(0, m, size=(size, m))
        draws += m * np.arange(size)[:, None]
        weights = np.bincount(draws.ravel(), minlength=size * m).reshape(size, m)
        weights = weights.astype(np.float64)
        out.append((weights @ diffs) / (weights @ tokens)[:, None])
    return np.concatenate(out)


def ppl_ratio(matrix: pd.DataFrame) -> pd.DataFrame:
    """Perplexity ratio against the ``"none"`` row: ``exp(delta NLL)``."""
    return np.exp(nll_delta(matrix))


def specificity(delta: pd.DataFrame) -> pd.Series:
    """Own ΔNLL ÷ mean ΔNLL on the other groups, per group deactivated (Tang et al.'s diagonal).

    For each group ``g`` that is both a row and a column of ``delta`` (from :func:`nll_delta`):
    ``delta[g, g]`` divided by the mean of ``delta[g, h]`` over the other such groups ``h``.
    When the other groups' mean change is not positive the ratio is ``inf`` if the own change
    is positive, else NaN.

    Examples:
        >>> import pandas as pd
        >>> delta = pd.DataFrame({"fr": [0.0, 0.9, 0.1], "de": [0.0, 0.3, 0.5]},
        ...                      index=["none", "fr", "de"])
        >>> specificity(delta).round(2).to_dict()
        {'fr': 3.0, 'de': 5.0}
    """
    groups = [g for g in delta.columns if g in delta.index]
    out = {}
    for g in groups:
        own = float(delta.loc[g, g])
        others = float(delta.loc[g, [h for h in groups if h != g]].mean())
        out[g] = own / others if others > 0 else (float("inf") if own > 0 else float("nan"))
    return pd.Series(out, name="own / others", dtype=float)
