"""The one batch loop of lensneurons: forward passes over batches for ``collect`` and detectors.

:func:`lensneurons.collect` (:mod:`lensneurons.stats.engine`), PLND (:mod:`lensneurons.detect.plnd`)
and gradient attribution (:mod:`lensneurons.detect.attribution`) all run their passes through
:class:`Passes` (``docs/design.md`` §2):

* **Batches** come from the caller in a deterministic order (``TokenizedCorpus.batches``:
  length-bucketed, right-padded, longest first); ``run`` does one pass over a batch or a piece of
  one. Corpus passes (:func:`forward`) stop right after the last hook they need
  (``ModelView.run_until``).
* **Transactional batches.** The caller's :class:`Work` hears ``start`` before each piece's pass,
  ``finish`` once it has wholly run, ``abort`` when it failed, and ``commit`` once every piece of
  the batch has finished; Ctrl-C is held off during ``commit``, so a batch counts wholly or not at
  all. Any exception leaving the loop (Ctrl-C included) first calls ``rollback``, which drops
  the unfinished batch; the caller turns a ``KeyboardInterrupt`` into its own ``...Interrupted``
  error carrying the committed work.
* **Out of memory.** A piece that raises ``torch.OutOfMemoryError`` is aborted, halved and
  retried with a :class:`~lensneurons.errors.BatchSplitWarning`; later batches run at most that
  many rows at a time. A single row that does not fit raises
  :class:`~lensneurons.errors.InsufficientMemoryError`.
* **Progress**: one bar per loop, advanced by the caller (ranks of a distributed run advance it
  together).

Examples:
    >>> import lensneurons as ln
    >>> model = ln.organism.load()
    >>> view = ln.ModelView(model)
    >>> tokenized = ln.Corpus.from_texts({"en": ["A cat.", "A dog runs."]}).tokenize(view)
    >>> class CountRows:
    ...     def __init__(self): self.rows, self.pending = 0, 0
    ...     def start(self, piece): pass
    ...     def finish(self, piece): self.pending += piece.tokens.shape[0]
    ...     def abort(self): pass
    ...     def commit(self): self.rows, self.pending = self.rows + self.pending, 0
    ...     def rollback(self): self.pending = 0
    >>> work = CountRows()
    >>> run_batches(view, tokenized, 1, work, stop_at="blocks.0.hook_resid_post", fwd_hooks=[],
    ...             progress=False, desc="demo")
    >>> work.rows
    2
"""

from __future__ import annotations

import math
import signal
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

import torch
from tqdm.auto import tqdm

from lensneurons.core.model import ModelView
from lensneurons.corpora.corpus import Batch, TokenizedCorpus
from lensneurons.errors import BatchSplitWarning, InsufficientMemoryError

_OOM: type[BaseException] = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


@runtime_checkable
class Piece(Protocol):
    """What a batch is to the loop: a ``[batch, pos]`` token tensor whose rows can be split."""

    @property
    def tokens(self) -> torch.Tensor:
        """The token ids ``[batch, pos]``."""
        ...


P = TypeVar("P", bound=Piece)
P_in = TypeVar("P_in", bound=Piece, contravariant=True)


@runtime_checkable
class Work(Protocol[P_in]):
    """What a loop's caller does around each pass (see the module docstring)."""

    def start(self, piece: P_in) -> None:
        """Before the pass over ``piece`` (a batch, or a piece of a split one)."""
        ...

    def finish(self, piece: P_in) -> None:
        """After that pass has wholly run: keep its results, uncommitted."""
        ...

    def abort(self) -> None:
        """That pass failed (out of memory): drop what it recorded."""
        ...

    def commit(self) -> None:
        """Every piece of the batch has finished: add the batch's results to the totals."""
        ...

    def rollback(self) -> None:
        """The loop is left by an exception: drop everything not committed."""
        ...


class Passes(Generic[P]):
    """A loop over batches, as a context: hooks registered, grad mode set, a progress bar.

    Args:
        view: the model.
        work: the caller's :class:`Work`.
        run: one pass over a batch or a piece of one.
        total: batches of the whole run (for the progress bar).
        desc: the progress bar's label.
        progress: show the progress bar.
        initial: batches already done (a resumed run).
        split: cuts a batch into pieces of at most ``size`` rows (:func:`split` for corpus
            batches).
        fwd_hooks: hooks registered around the whole loop (removed on any exit).
        grad: run with autograd on (also inside ``torch.inference_mode()``); else in inference
            mode.

    Attributes:
        splits: how many pieces ran out of memory and were split.
    """

    def __init__(self, view: ModelView, work: Work[P], run: Callable[[P], None], *, total: int,
                 desc: str, progress: bool, initial: int = 0,
                 split: Callable[[P, int], Iterator[P]],
                 fwd_hooks: Sequence[tuple[str, Callable[..., Any]]] = (),
                 grad: bool = False) -> None:
        self.view, self.work, self.run, self.split = view, work, run, split
        self.bar_args = dict(total=total, initial=initial, desc=desc, disable=not progress)
        self.fwd_hooks, self.grad = list(fwd_hooks), grad
        self.max_rows: int | None = None
        self.splits = 0
        self._stack = ExitStack()

    def __enter__(self) -> Passes[P]:
        with ExitStack() as stack:  # a failure half-way closes what was entered
            self.bar = stack.enter_context(tqdm(**self.bar_args))
            if self.grad:
                stack.enter_context(torch.inference_mode(False))
                stack.enter_context(torch.enable_grad())
            else:
                stack.enter_context(torch.inference_mode())
            stack.enter_context(self.view.model.hooks(fwd_hooks=self.fwd_hooks))
            self._stack = stack.pop_all()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        try:
            if kind is not None:
                self.work.rollback()
        finally:
            self._stack.close()

    def batch(self, batch: P) -> None:
        """Run ``batch`` (in pieces, once a batch has run out of memory) and commit it."""
        rows = batch.tokens.shape[0]
        size = rows if self.max_rows is None else min(rows, self.max_rows)
        for piece in self.split(batch, size):
            self._piece(piece)
        with _sigint_deferred():
            self.work.commit()

    def advance(self, n: int = 1) -> None:
        """Advance the progress bar by ``n`` batches."""
        self.bar.update(n)

    def _piece(self, piece: P) -> None:
        self.work.start(piece)
        try:
            self.run(piece)
            self.work.finish(piece)
            return
        except _OOM as err:
            reason = str(err).splitlines()[0] if str(err) else "out of memory"
        # Outside the except block: the error and the activations its frames hold are freed.
        self.work.abort()
        rows, width = piece.tokens.shape
        device = self.view.input_device
        half = half_after_oom(piece, device, reason)
        if self.max_rows is None or half < self.max_rows:
            warnings.warn(
                f"A batch of {rows} sequences x {width} tokens ran out of memory on {device}; "
                f"it was split and retried, and later batches run at most {half} sequences at "
                f"a time. Results stay exact. Pass batch_size={half} to avoid the retries.",
                BatchSplitWarning, stacklevel=5)
        self.max_rows, self.splits = half, self.splits + 1
        for sub in self.split(piece, half):
            self._piece(sub)


def forward(view: ModelView, stop_at: str) -> Callable[[Batch], None]:
    """The pass of corpus batches: the model's forward, stopped right after hook ``stop_at``."""
    device = view.input_device

    def run(piece: Batch) -> None:
        view.run_until(piece.tokens.to(device), stop_at)

    return run


def run_batches(
    view: ModelView, tokenized: TokenizedCorpus, batch_size: int, work: Work[Batch], *,
    stop_at: str, fwd_hooks: Sequence[tuple[str, Callable[..., Any]]], progress: bool, desc: str,
) -> None:
    """One forward pass per batch of ``tokenized`` under ``fwd_hooks``, stopped after ``stop_at``.

    Args:
        view: the model.
        tokenized: the corpus's token sequences.
        batch_size: sequences per pass.
        work: hears each pass (:class:`Work`); it keeps the results.
        stop_at: the hook name after which a pass stops.
        fwd_hooks: hooks registered once around the whole loop.
        progress: show a progress bar.
        desc: the progress bar's label.

    Raises:
        InsufficientMemoryError: a single sequence does not fit in the device's memory.
    """
    with Passes(view, work, forward(view, stop_at), total=tokenized.n_batches(batch_size),
                desc=desc, progress=progress, fwd_hooks=fwd_hooks, split=split) as passes:
        for batch in tokenized.batches(batch_size):
            passes.batch(batch)
            passes.advance()


def half_after_oom(piece: Piece, device: torch.device, reason: str) -> int:
    """After an out-of-memory pass: free the cache and return the rows of each half.

    Raises:
        InsufficientMemoryError: ``piece`` is one sequence already; it cannot be split.
    """
    rows, width = piece.tokens.shape
    if device.type == "cuda":
        torch.cuda.empty_cache()
    if rows == 1:
        raise InsufficientMemoryError(
            f"One sequence of {width} tokens does not fit in the memory of {device} even alone "
            f"({reason}). Use shorter sequences (Corpus.from_texts(..., window=...)), free "
            "memory, or use a device with more memory.")
    return math.ceil(rows / 2)


def split(batch: Batch, size: int) -> Iterator[Batch]:
    """``batch`` in pieces of at most ``size`` rows (same width; segments recomputed)."""
    rows = batch.tokens.shape[0]
    if size >= rows:
        yield batch
        return
    for lo in range(0, rows, size):
        counted, groups = batch.counted[lo:lo + size], batch.rows[lo:lo + size]
        n_counted = torch.zeros_like(batch.n_counted).index_add_(0, groups, counted.sum(1))
        segments, start = [], 0
        for group in groups.unique_consecutive().tolist():
            end = start + int(n_counted[group])
            segments.append((group, start, end))
            start = end
        yield Batch(batch.tokens[lo:lo + size], counted, groups, n_counted, tuple(segments))


@contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold Ctrl-C until the block ends, so a batch is committed wholly or not at all."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    caught: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if caught:
            raise KeyboardInterrupt
