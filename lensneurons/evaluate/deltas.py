"""Changes of mean NLL against the ``"none"`` row, with paired bootstrap intervals.

The rows of a :class:`~lensneurons.evaluate.nll.PerplexityMatrix` scored the same held-out
sequences; each row's per-sequence NLL (:class:`SequenceNLL`, in ``matrix.per_sequence``) lets
:func:`nll_delta` resample sequences *paired* across rows. :func:`ppl_ratio` and
:func:`specificity` summarise the changes. A bare DataFrame of mean NLL (e.g. read back from a CSV
file) still gives the changes, without intervals.

Examples:
    >>> import pandas as pd
    >>> matrix = pd.DataFrame({"fr": [4.0, 4.5]}, index=["none", "fr"])
    >>> float(nll_delta(matrix).loc["fr", "fr"]), float(ppl_ratio(matrix).loc["none", "fr"])
    (0.5, 1.0)
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import pandas as pd

from lensneurons.core import checks as _checks
from lensneurons.errors import MissingStatisticError, ParameterError
from lensneurons.evaluate.nll import PerplexityMatrix, SequenceNLL

_BOOTSTRAP_BLOCK = 1 << 22  # resampled sequence indices held at once by nll_delta


def nll_delta(
    matrix: Any,
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
        matrix: the :class:`~lensneurons.evaluate.nll.PerplexityMatrix` of
            :func:`perplexity_matrix` (its ``per_sequence`` gives the intervals), or a
            DataFrame of mean NLL with a ``"none"`` row (changes only, e.g. one read back from
            a CSV file).
        interval: confidence level in (0, 1), or ``None`` for the changes alone.
        n_boot: bootstrap resamples per evaluated group.
        seed: seed of the resampling (a non-negative integer).

    Returns:
        With ``interval=None``, a DataFrame like ``matrix.table()`` holding
        ``table - table.loc["none"]``. Otherwise a DataFrame indexed by
        ``(deactivated, evaluated)``, in the matrix's order, with columns ``delta`` (as without
        ``interval``), ``low``, ``high`` and ``n_sequences`` (held-out sequences resampled).

    Raises:
        MissingStatisticError: ``interval`` was given but the matrix carries no per-sequence
            NLL for some row (a bare DataFrame, e.g. read from a CSV file): recompute it with
            :func:`perplexity_matrix`.
        ParameterError: ``matrix`` is neither a PerplexityMatrix nor a DataFrame with a
            ``"none"`` row, is a DataFrame carrying per-sequence data in ``attrs`` (the former
            hidden channel: pass the PerplexityMatrix itself), ``interval`` is not in (0, 1),
            ``n_boot`` is not an integer >= 1, or ``seed`` is not an integer >= 0.

    Examples:
        >>> import pandas as pd
        >>> import lensneurons as ln
        >>> matrix = pd.DataFrame({"fr": [4.0, 4.5]}, index=["none", "fr"])
        >>> float(ln.nll_delta(matrix).loc["fr", "fr"])
        0.5
        >>> try:  # a matrix without per-sequence data, as read back from a CSV file
        ...     ln.nll_delta(matrix, interval=0.95)
        ... except ln.errors.MissingStatisticError as err:
        ...     print(type(err).__name__)
        MissingStatisticError
    """
    frame, per_sequence = _unpack(matrix)
    delta = frame - frame.loc["none"]
    if interval is None:
        return delta
    if isinstance(interval, bool) or not isinstance(interval, numbers.Real) or not (
            0 < interval < 1):
        raise ParameterError(
            f"interval must be a confidence level in (0, 1) such as 0.95, got {interval!r}.")
    n_boot = _checks.positive_int(n_boot, "n_boot")
    seed = _checks.positive_int(seed, "seed", minimum=0)
    per_sequence = _paired_sequences(frame, per_sequence)
    none = per_sequence["none"]
    quantiles = [(1 - interval) / 2, (1 + interval) / 2]
    shape = (len(frame.index), len(frame.columns))
    low, high = np.empty(shape), np.empty(shape)
    n_sequences = np.empty(shape[1], dtype=np.int64)
    for j, column in enumerate(frame.columns):
        chosen = (none.group == str(column)) & (none.n_tokens > 0)
        n_sequences[j] = chosen.sum()
        if not n_sequences[j]:
            raise MissingStatisticError(
                f"The matrix's per-sequence data hold no sequence of evaluated group "
                f"{column!r}. Recompute the matrix with perplexity_matrix on a corpus "
                "that has this group.")
        diffs = np.stack([per_sequence[row].nll_sum[chosen] - none.nll_sum[chosen]
                          for row in frame.index], axis=1)
        index = none.groups.index(str(column)) if str(column) in none.groups else j
        rng = np.random.default_rng([seed, index])
        boot = _paired_bootstrap(diffs, none.n_tokens[chosen], n_boot, rng)
        low[:, j], high[:, j] = np.quantile(boot, quantiles, axis=0)
    table = pd.DataFrame(
        {"delta": delta.to_numpy(dtype=np.float64).ravel(), "low": low.ravel(),
         "high": high.ravel(), "n_sequences": np.tile(n_sequences, shape[0])},
        index=pd.MultiIndex.from_product([frame.index, frame.columns],
                                         names=["deactivated", "evaluated"]))
    table.attrs = {"interval": interval, "n_boot": n_boot, "seed": seed}
    return table


def _unpack(matrix: Any) -> tuple[pd.DataFrame, dict[str, SequenceNLL] | None]:
    """The mean-NLL table of ``matrix`` and its per-sequence data (``None`` for a DataFrame)."""
    if isinstance(matrix, PerplexityMatrix):
        frame, per_sequence = matrix.table(), dict(matrix.per_sequence)
    elif isinstance(matrix, pd.DataFrame):
        if "per_sequence" in matrix.attrs:
            raise ParameterError(
                "This DataFrame carries per-sequence NLL in attrs['per_sequence'], the former "
                "hidden channel of perplexity_matrix, which is no longer read. Pass the "
                "PerplexityMatrix that ln.perplexity_matrix returns (its .per_sequence holds "
                "each row's SequenceNLL), or drop the attrs for the changes alone."
            )
        frame, per_sequence = matrix, None
    else:
        frame, per_sequence = None, None
    if frame is None or "none" not in frame.index:
        raise ParameterError(
            "matrix must be the PerplexityMatrix of ln.perplexity_matrix (or a DataFrame of "
            "its mean NLL), whose 'none' row (no intervention) the changes are measured "
            f"against; got {type(matrix).__name__}"
            + ("" if frame is None else f" with rows {list(frame.index)}") + "."
        )
    return frame, per_sequence


def _paired_sequences(frame: pd.DataFrame, per_sequence: dict[str, SequenceNLL] | None,
                      ) -> dict[str, SequenceNLL]:
    """The per-sequence NLL of every row of ``frame``, checked to cover the same sequences."""
    per_sequence = per_sequence or {}
    missing = [row for row in frame.index if not isinstance(per_sequence.get(row), SequenceNLL)]
    if missing or "none" not in per_sequence:
        raise MissingStatisticError(
            "Intervals need each sequence's NLL, which this matrix does not carry for "
            f"{', '.join(map(repr, missing or ['none']))} (a DataFrame, e.g. one read from a "
            "CSV file, has none). Recompute it with ln.perplexity_matrix(...), then call "
            "ln.nll_delta(matrix, interval=...) on the PerplexityMatrix it returns.")
    none = per_sequence["none"]
    for row in frame.index:
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


def ppl_ratio(matrix: Any) -> pd.DataFrame:
    """Perplexity ratio against the ``"none"`` row: ``exp(delta NLL)``.

    Args:
        matrix: a :class:`~lensneurons.evaluate.nll.PerplexityMatrix`, or a DataFrame
            of mean NLL with a ``"none"`` row (as :func:`nll_delta` takes it).
    """
    return np.exp(nll_delta(matrix))


def specificity(delta: Any) -> pd.Series:
    """Own ΔNLL ÷ mean ΔNLL on the other groups, per group deactivated (Tang et al.'s diagonal).

    For each group ``g`` that is both a row and a column of ``delta`` (from :func:`nll_delta`):
    ``delta[g, g]`` divided by the mean of ``delta[g, h]`` over the other such groups ``h``.
    When the other groups' mean change is not positive the ratio is ``inf`` if the own change
    is positive, else NaN (also NaN without another group to compare with).

    Args:
        delta: the DataFrame of :func:`nll_delta`, or the
            :class:`~lensneurons.evaluate.nll.PerplexityMatrix` itself (its changes are
            taken first).

    Raises:
        ParameterError: ``delta`` is a DataFrame of the matrix itself (its ``"none"`` row is not
            zero), not the output of :func:`nll_delta`; or a DataFrame carrying per-sequence
            data in ``attrs`` (pass the PerplexityMatrix).

    Examples:
        >>> import pandas as pd
        >>> delta = pd.DataFrame({"fr": [0.0, 0.9, 0.1], "de": [0.0, 0.3, 0.5]},
        ...                      index=["none", "fr", "de"])
        >>> specificity(delta).round(2).to_dict()
        {'fr': 3.0, 'de': 5.0}
    """
    if isinstance(delta, PerplexityMatrix):
        delta = nll_delta(delta)
    if not isinstance(delta, pd.DataFrame):
        raise ParameterError(f"delta must be the DataFrame of ln.nll_delta(matrix), got "
                             f"{type(delta).__name__}.")
    if "per_sequence" in delta.attrs:
        raise ParameterError(
            "This DataFrame carries per-sequence NLL in attrs['per_sequence'], the former hidden "
            "channel of perplexity_matrix, which is no longer read. Pass the PerplexityMatrix "
            "that ln.perplexity_matrix returns, or ln.nll_delta(matrix)."
        )
    if "none" in delta.index and bool((delta.loc["none"].abs() > 0).any()):
        raise ParameterError(
            "specificity reads changes, but the 'none' row of this table is not zero: it is the "
            "matrix itself. Pass ln.nll_delta(matrix)."
        )
    groups = [g for g in delta.columns if g in delta.index]
    out = {}
    for g in groups:
        own = float(delta.loc[g, g])
        rest = [h for h in groups if h != g]
        others = float(delta.loc[g, rest].mean()) if rest else float("nan")
        out[g] = own / others if others > 0 else (
            float("inf") if own > 0 and rest else float("nan"))
    return pd.Series(out, name="own / others", dtype=float)
