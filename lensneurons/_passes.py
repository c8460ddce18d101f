"""Forward passes over the batches of a tokenized corpus, for detectors that need their own pass.

:func:`lensneurons.collect` keeps its own loop (:mod:`lensneurons._collect`: checkpoints, ranks,
Ctrl-C statistics); detectors that score each document in a pass of their own (PLND) use
:func:`run_batches`: the same deterministic, length-bucketed batches
(``TokenizedCorpus.batches``), the same early stop (``ModelView.run_until``) and the same
out-of-memory handling (a batch that does not fit is halved and retried, with a
:class:`~lensneurons.errors.BatchSplitWarning`; a single sequence that does not fit raises
:class:`~lensneurons.errors.InsufficientMemoryError`). The caller's ``start`` is called before
each pass and ``finish`` after it; a pass that fails calls neither ``finish`` nor counts, so the
caller commits its per-batch results in ``finish`` only (transactional batches, as ``collect``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from lensneurons._collect import half_after_oom, split
from lensneurons.corpus import Batch, TokenizedCorpus
from lensneurons.errors import BatchSplitWarning
from lensneurons.model import ModelView

_OOM: type[BaseException] = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


def run_batches(
    view: ModelView, tokenized: TokenizedCorpus, batch_size: int, *, stop_at: str,
    fwd_hooks: Sequence[tuple[str, Callable[..., Any]]], start: Callable[[Batch], None],
    finish: Callable[[Batch], None], progress: bool, desc: str,
) -> None:
    """One forward pass per batch under ``fwd_hooks``, each stopped right after ``stop_at``.

    Args:
        view: the model.
        tokenized: the corpus's token sequences.
        batch_size: sequences per pass.
        stop_at: the hook name after which a pass stops.
        fwd_hooks: hooks registered once around the whole loop (removed on any exit).
        start: called with each batch (or piece of a split batch) before its pass.
        finish: called after the pass has wholly run.
        progress: show a progress bar.
        desc: the progress bar's label.
    """
    device = view.input_device
    state: dict[str, int | None] = {"max_rows": None}
    bar = tqdm(total=tokenized.n_batches(batch_size), desc=desc, disable=not progress)
    try:
        with torch.inference_mode(), view.model.hooks(fwd_hooks=list(fwd_hooks)):
            for batch in tokenized.batches(batch_size):
                rows = batch.tokens.shape[0]
                size = rows if state["max_rows"] is None else min(rows, state["max_rows"])
                for piece in split(batch, size):
                    _piece(view, piece, device, stop_at, start, finish, state)
                bar.update(1)
    finally:
        bar.close()


def _piece(view: ModelView, piece: Batch, device: torch.device, stop_at: str,
           start: Callable[[Batch], None], finish: Callable[[Batch], None],
           state: dict[str, int | None]) -> None:
    start(piece)
    try:
        view.run_until(piece.tokens.to(device), stop_at)
        finish(piece)
        return
    except _OOM as err:
        reason = str(err).splitlines()[0] if str(err) else "out of memory"
    rows, width = piece.tokens.shape
    half = half_after_oom(piece, device, reason)
    warnings.warn(
        f"A batch of {rows} sequences x {width} tokens ran out of memory on {device}; it was "
        f"split and retried. Pass batch_size={half} to avoid the retries.",
        BatchSplitWarning, stacklevel=4)
    state["max_rows"] = half
    for sub in split(piece, half):
        _piece(view, sub, device, stop_at, start, finish, state)
