"""Evaluation: per-group perplexity, and the deactivation x evaluation perplexity matrix.

Perplexity uses the log-probability of the true next token only (never top-k entries), over the
corpus's counted tokens (BOS, padding and prompt tokens excluded). Tang et al.'s ``ppl.py`` prints
the mean NLL (log-perplexity); both the mean NLL and ``exp`` of it are reported here.

Memory stays bounded: beyond the model's own output, the NLL is read from the logits a few
positions at a time (a cross-entropy per piece), so no log-probability array of the batch's
``[batch, pos, vocab]`` size is ever made.

Both functions return results (:class:`Perplexity`, :class:`PerplexityMatrix`): ``.table()``
gives the numbers, ``.plot()`` the figure, ``.save(path)`` / ``.load(path)`` keep them. Every
evaluated sequence's summed NLL and counted tokens are kept on the result as ``.per_sequence``
(:class:`SequenceNLL`; per row for the matrix): :func:`nll_delta` uses them for paired
bootstrap intervals over held-out sequences (:mod:`lensneurons.evaluate.deltas`).

Inputs are checked before the first forward pass: a group with no token to predict (whose
perplexity would read a perfect 1.0), a random baseline that cannot avoid its set, hooks on hook
points the model lacks. Ctrl-C in :func:`perplexity_matrix` keeps the finished rows on the raised
:class:`~lensneurons.errors.EvaluationInterrupted`.

Examples:
    >>> import lensneurons as ln
    >>> model = ln.organism.load()
    >>> heldout = ln.Corpus.from_texts(ln.organism.texts("heldout"))
    >>> result = ln.perplexity(model, heldout, progress=False)
    >>> table = result.table()
    >>> list(table.columns)
    ['mean_nll', 'ppl', 'n_tokens']
    >>> per_sequence = result.per_sequence.table()
    >>> list(per_sequence.columns)
    ['group', 'nll_sum', 'n_tokens']
    >>> totals = per_sequence.groupby("group")["n_tokens"].sum()
    >>> totals[table.index].tolist() == table["n_tokens"].tolist()
    True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from tqdm.auto import tqdm

from lensneurons.core import checks as _checks
from lensneurons.core.model import ModelView
from lensneurons.corpora.corpus import Corpus, TokenizedCorpus
from lensneurons.errors import (
    EmptyTokenizationError,
    EvaluationInterrupted,
    ParameterError,
)
from lensneurons.evaluate.nll import Perplexity, PerplexityMatrix, SequenceNLL
from lensneurons.intervene.hooks import deactivate
from lensneurons.neurons import NeuronSet, NeuronSets, random_like

#: Logits per piece of a row's NLL (16 MiB of fp32 on the CPU; 64x that on accelerators).
_PIECE_ELEMENTS = 2**22

HookList = Sequence[tuple[str | Callable[[str], bool], Callable[..., Any]]]

__all__ = ["perplexity", "perplexity_matrix"]


def _row_nll_sums(
    logits: Float[torch.Tensor, "batch pos vocab"], tokens: Int[torch.Tensor, "batch pos"],
    counted: Bool[torch.Tensor, "batch pos"],
) -> Float[torch.Tensor, " batch"]:
    """Summed NLL (float64) of each row's counted next tokens, a few positions at a time.

    Each token's NLL is a cross-entropy in fp32. Each row is cut after its last counted target
    and read in pieces of at most
    :data:`_PIECE_ELEMENTS` logits: no log-probability array of the batch's size is ever made,
    and on the CPU every piece fits below the allocator's ``mmap`` threshold, so the pieces
    reuse one block of memory instead of faulting in fresh pages each time.
    """
    device = logits.device
    targets = tokens[:, 1:].to(device)
    scored = counted[:, 1:]
    positions = torch.arange(1, scored.shape[1] + 1)
    ends = (scored * positions).amax(1).tolist() if scored.numel() else [0] * len(scored)
    scored = scored.to(device)
    budget = _PIECE_ELEMENTS if device.type == "cpu" else 64 * _PIECE_ELEMENTS
    step = max(1, budget // logits.shape[-1])
    sums = torch.zeros(len(ends), dtype=torch.float64, device=device)
    for row, end in enumerate(ends):
        for start in range(0, end, step):
            stop = min(start + step, end)
            nll = F.cross_entropy(logits[row, start:stop].float(), targets[row, start:stop],
                                  reduction="none")
            sums[row] += (nll.double() * scored[row, start:stop]).sum()
    return sums


def perplexity(
    model: Any,
    corpus: Corpus,
    *,
    fwd_hooks: HookList = (),
    batch_size: int = 8,
    max_tokens_per_group: int | None = None,
    progress: bool = True,
) -> Perplexity:
    """Mean NLL and perplexity of each group's counted tokens, optionally under hooks.

    Args:
        model: a TransformerLens model.
        corpus: the evaluation texts per group.
        fwd_hooks: hooks active during evaluation (e.g. ``ln.deactivate(neurons["fr"])``).
        batch_size: sequences per forward pass. The model's output holds ``batch_size``
            sequences' logits; scoring them adds one piece of 2^22 fp32 logits.
        max_tokens_per_group: evaluate at most this many tokens per group.
        progress: show a progress bar.

    Returns:
        A :class:`Perplexity`: ``.table()`` is indexed by group with ``mean_nll``, ``ppl`` and
        ``n_tokens``; ``.per_sequence`` a :class:`SequenceNLL`, each evaluated sequence's
        group, summed NLL and counted tokens, in the corpus's batch order. The group totals
        are sums of these.

    Raises:
        ParameterError: ``corpus`` is not a :class:`Corpus`, ``fwd_hooks`` is not a list of
            ``(hook name, function)`` pairs on hook points of the model, or ``batch_size`` /
            ``max_tokens_per_group`` is not an integer >= 1.
        EmptyTokenizationError: a group has no token to predict (every counted token is the
            first of its sequence, e.g. ``max_tokens_per_group=1`` with ``count_bos=True``):
            its perplexity would read a perfect 1.0.
        ContextLengthError: the corpus's ``window`` is longer than the model's context.
    """
    view = ModelView(model)
    hooks = _checks.hook_list(fwd_hooks, view.model)
    tokenized = _tokenized(corpus, view, max_tokens_per_group)
    batches = tokenized.batches(batch_size)
    device = view.input_device
    sums, counts, groups = [], [], []
    with torch.inference_mode(), view.model.hooks(fwd_hooks=hooks):
        for batch in tqdm(batches, total=tokenized.n_batches(batch_size),
                          desc="perplexity", disable=not progress):
            logits = view.model(batch.tokens.to(device))
            sums.append(_row_nll_sums(logits, batch.tokens, batch.counted))
            counts.append(batch.counted[:, 1:].sum(1))
            groups.append(batch.rows)
            del logits
    nll_sum = torch.cat(sums).cpu()
    n_tokens = torch.cat(counts)
    group_ids = torch.cat(groups)
    n_groups = len(corpus.groups)
    nll = torch.zeros(n_groups, dtype=torch.float64).index_add_(0, group_ids, nll_sum)
    totals = torch.zeros(n_groups, dtype=torch.int64).index_add_(0, group_ids, n_tokens)
    mean = nll / totals
    table = pd.DataFrame({"mean_nll": mean.numpy(), "ppl": mean.exp().numpy(),
                          "n_tokens": totals.numpy()},
                         index=pd.Index(corpus.groups, name="group"))
    return Perplexity(table, SequenceNLL(
        groups=tuple(corpus.groups), group=np.array(corpus.groups)[group_ids.numpy()],
        nll_sum=nll_sum.numpy(), n_tokens=n_tokens.numpy()), view.fingerprint())


def _tokenized(corpus: Any, view: ModelView, max_tokens_per_group: Any) -> TokenizedCorpus:
    """The corpus tokenized for ``view``; every group must have a token to predict."""
    if not isinstance(corpus, Corpus):
        raise ParameterError(
            f"corpus must be a Corpus, got {type(corpus).__name__}; build one with "
            "ln.Corpus.from_texts({group: [text, ...]})."
        )
    tokenized = corpus.tokenize(view).limit(max_tokens_per_group)
    scored = torch.zeros(len(corpus.groups), dtype=torch.int64)
    for seq in tokenized.sequences:
        scored[seq.group] += int(seq.counted[1:].sum())
    empty = [g for g, n in zip(corpus.groups, scored.tolist()) if n == 0]
    if empty:
        raise EmptyTokenizationError(
            f"Groups {empty} have no token to predict: each counted token is the first of its "
            "sequence (which nothing precedes), so their perplexity would read a perfect 1.0. "
            "Raise max_tokens_per_group, or give these groups longer texts."
        )
    return tokenized


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
) -> PerplexityMatrix:
    """Mean NLL of every evaluated group while each group's set is deactivated.

    Rows: ``"none"`` (no intervention), then each group of ``neurons`` deactivated, then with
    ``random_baseline`` a ``"random:<group>"`` row per group (a random set of the same size per
    layer, disjoint from it). Columns: the corpus's groups. Use :func:`nll_delta` and
    :func:`ppl_ratio` for changes against ``"none"``.

    Returns:
        A :class:`PerplexityMatrix`: ``.table()`` is the matrix of mean NLL (rows deactivated,
        columns evaluated); ``.per_sequence`` maps each row to its :class:`SequenceNLL` (the
        same sequences in every row), from which ``nll_delta(matrix, interval=0.95)``
        computes paired bootstrap intervals; ``.save(path)`` keeps both (a CSV of the table
        keeps the mean NLL only); ``.plot()`` is the heatmap of the changes.

    Every input is checked before the first forward pass. Ctrl-C keeps the rows that finished:
    the raised :class:`~lensneurons.errors.EvaluationInterrupted` (a ``KeyboardInterrupt``)
    carries them as ``.partial`` and names the row it stopped in.

    Raises:
        ParameterError: ``neurons`` is not a :class:`NeuronSets`; or with ``random_baseline``
            a set fills so much of a layer that no random set of its profile is disjoint from
            it (its ``random:`` row would measure the set itself): use a smaller set, or
            ``random_baseline=False``.
        EvaluationInterrupted: Ctrl-C; ``.partial`` holds the finished rows (a
            :class:`PerplexityMatrix`).

    Examples:
        >>> import lensneurons as ln
        >>> model = ln.organism.load()
        >>> train = ln.Corpus.from_texts(ln.organism.texts("train"))
        >>> neurons = ln.lape(ln.collect(model, train, progress=False), top_rate=0.10)
        >>> heldout = ln.Corpus.from_texts(ln.organism.texts("heldout"))
        >>> matrix = ln.perplexity_matrix(model, heldout, neurons, progress=False)
        >>> bool(ln.nll_delta(matrix).loc["fr", "fr"] > 0)
        True
        >>> sorted(matrix.per_sequence) == sorted(matrix.table().index)
        True
        >>> ci = ln.nll_delta(matrix, interval=0.95)
        >>> bool(ci.loc[("ru", "ru"), "low"] > 0)  # clearly above zero
        True
    """
    if not isinstance(neurons, NeuronSets):
        raise ParameterError(
            f"neurons must be NeuronSets (one set per group, e.g. from ln.lape), got "
            f"{type(neurons).__name__}."
        )
    neurons.check_model(model)
    seed = _checks.integer(seed, "seed")
    _checks.flag(random_baseline, "random_baseline")
    view = ModelView(model)
    _tokenized(corpus, view, max_tokens_per_group).n_batches(batch_size)  # checks, cached
    rows: dict[str, HookList] = {"none": []}
    rows.update({g: deactivate(s) for g, s in neurons.items()})
    if random_baseline:
        rows.update({f"random:{g}": deactivate(_baseline(g, s, seed + i))
                     for i, (g, s) in enumerate(neurons.items())})
    results, per_sequence = {}, {}
    try:
        for name, hooks in tqdm(rows.items(), desc="perplexity matrix", disable=not progress):
            row = perplexity(model, corpus, fwd_hooks=hooks, batch_size=batch_size,
                             max_tokens_per_group=max_tokens_per_group, progress=False)
            results[name] = row.per_group["mean_nll"]
            per_sequence[name] = row.per_sequence
    except KeyboardInterrupt as stop:
        running = next(name for name in rows if name not in results)
        raise EvaluationInterrupted(
            f"perplexity_matrix was interrupted in row {running!r}; {len(results)} of "
            f"{len(rows)} rows had finished ({', '.join(results) or 'none'}): they are on "
            "this exception's .partial.",
            _matrix(results, per_sequence, corpus.groups, view), list(results), running,
        ) from stop
    return _matrix(results, per_sequence, corpus.groups, view)


def _baseline(group: str, neurons: NeuronSet, seed: int) -> NeuronSet:
    """A random set of ``neurons``'s layer profile, disjoint from it, or a ParameterError."""
    try:
        baseline = random_like(neurons, seed=seed)
    except ParameterError as err:
        baseline, reason = None, str(err)
    if baseline is not None:
        shared = len(baseline & neurons)
        if not shared:
            return baseline
        reason = f"it would share {shared} of its {len(neurons)} units with the set"
    raise ParameterError(
        f"No random baseline for group {group!r}: its set fills so much of a layer that a "
        f"random set of the same profile cannot avoid it ({reason}), so its 'random:' row would "
        "measure the set itself. Use a smaller set (a lower top_rate), or pass "
        "random_baseline=False."
    )


def _matrix(results: dict[str, pd.Series], per_sequence: dict[str, SequenceNLL],
            columns: list[str], view: ModelView) -> PerplexityMatrix:
    matrix = pd.DataFrame(results).T if results else pd.DataFrame(columns=columns, dtype=float)
    matrix.index.name, matrix.columns.name = "deactivated", "evaluated"
    return PerplexityMatrix(matrix, dict(per_sequence), view.fingerprint())
