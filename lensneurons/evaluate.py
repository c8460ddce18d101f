"""Evaluation: per-group perplexity, and the deactivation x evaluation perplexity matrix.

Perplexity uses the log-probability of the true next token only (never top-k entries), over the
corpus's counted tokens (BOS, padding and prompt tokens excluded). Tang et al.'s ``ppl.py`` prints
the mean NLL (log-perplexity); both the mean NLL and ``exp`` of it are reported here.

Examples:
    >>> import lensneurons as ln
    >>> model = ln.organism.load()
    >>> heldout = ln.Corpus.from_texts(ln.organism.texts("heldout"))
    >>> table = ln.perplexity(model, heldout, progress=False)
    >>> list(table.columns)
    ['mean_nll', 'ppl', 'n_tokens']
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from lensneurons.corpus import Corpus
from lensneurons.interventions import deactivate, random_like
from lensneurons.model import ModelView
from lensneurons.neurons import NeuronSets

HookList = Sequence[tuple[str, Callable[..., Any]]]


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
        batch_size: sequences per forward pass.
        max_tokens_per_group: evaluate at most this many tokens per group.
        progress: show a progress bar.

    Returns:
        A DataFrame indexed by group with ``mean_nll``, ``ppl`` and ``n_tokens``.
    """
    view = ModelView(model)
    tokenized = corpus.tokenize(view).limit(max_tokens_per_group)
    n_groups = len(corpus.groups)
    device = view.input_device
    nll = torch.zeros(n_groups, dtype=torch.float64, device=device)
    counts = torch.zeros(n_groups, dtype=torch.int64, device=device)
    with torch.inference_mode(), view.model.hooks(fwd_hooks=list(fwd_hooks)):
        for batch in tqdm(tokenized.batches(batch_size), total=tokenized.n_batches(batch_size),
                          desc="perplexity", disable=not progress):
            tokens = batch.tokens.to(device)
            logits = view.model(tokens)[:, :-1]
            targets = tokens[:, 1:]
            per_token = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(),
                                        reduction="none").view(targets.shape)
            counted = batch.counted[:, 1:].to(device)
            rows = batch.rows.to(device)
            nll.index_add_(0, rows, (per_token.double() * counted).sum(1))
            counts.index_add_(0, rows, counted.sum(1))
    nll, counts = nll.cpu(), counts.cpu()
    mean = nll / counts.clamp(min=1)
    return pd.DataFrame({"mean_nll": mean.numpy(), "ppl": mean.exp().numpy(),
                         "n_tokens": counts.numpy()},
                        index=pd.Index(corpus.groups, name="group"))


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

    Examples:
        >>> import lensneurons as ln
        >>> model = ln.organism.load()
        >>> train = ln.Corpus.from_texts(ln.organism.texts("train"))
        >>> neurons = ln.lape(ln.collect(model, train, progress=False), top_rate=0.10)
        >>> heldout = ln.Corpus.from_texts(ln.organism.texts("heldout"))
        >>> matrix = ln.perplexity_matrix(model, heldout, neurons, progress=False)
        >>> bool(ln.nll_delta(matrix).loc["fr", "fr"] > 0)
        True
    """
    neurons.check_model(model)
    rows: dict[str, HookList] = {"none": []}
    rows.update({g: deactivate(s) for g, s in neurons.items()})
    if random_baseline:
        rows.update({f"random:{g}": deactivate(random_like(s, seed=seed + i))
                     for i, (g, s) in enumerate(neurons.items())})
    results = {}
    for name, hooks in tqdm(rows.items(), desc="perplexity matrix", disable=not progress):
        table = perplexity(model, corpus, fwd_hooks=hooks, batch_size=batch_size,
                           max_tokens_per_group=max_tokens_per_group, progress=False)
        results[name] = table["mean_nll"]
    matrix = pd.DataFrame(results).T
    matrix.index.name, matrix.columns.name = "deactivated", "evaluated"
    return matrix


def nll_delta(matrix: pd.DataFrame) -> pd.DataFrame:
    """Change of mean NLL against the ``"none"`` row (Tang et al.'s reported quantity)."""
    return matrix - matrix.loc["none"]


def ppl_ratio(matrix: pd.DataFrame) -> pd.DataFrame:
    """Perplexity ratio against the ``"none"`` row: ``exp(delta NLL)``."""
    return np.exp(nll_delta(matrix))
