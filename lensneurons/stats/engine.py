"""The collection engine behind :func:`lensneurons.collect`: checkpoints, ranks, the result.

The batch loop itself (deterministic batches, early stop, transactional batches, out-of-memory
splits, Ctrl-C held off during a commit, the progress bar) is
:class:`lensneurons.stats.passes.Passes`, shared with the detectors that run passes of their
own; the hooks are :mod:`lensneurons.stats._accumulators`. What is particular to ``collect``
lives here:

* **Checkpoints** (:mod:`lensneurons.stats._checkpoint`): every ``checkpoint_every`` batches the
  totals and the number of finished batches are saved atomically; ``resume=`` continues exactly
  after the last finished batch, so a run killed at any moment ends with the statistics of an
  uninterrupted one.
* **Ctrl-C** raises :class:`~lensneurons.errors.CollectInterrupted` carrying the finished
  batches' statistics (and saves them to the checkpoint folder when one is set).
* **torchrun** (:mod:`lensneurons.stats._distributed`): each rank runs its share of the batches;
  totals are all-reduced at the end; every rank returns the merged statistics.
* **Per-document counts** (``document_stats``) are refused when a sequence is not one document.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from lensneurons.core import checks as _checks
from lensneurons.core.model import ModelView
from lensneurons.core.sites import check_site_name, get_site
from lensneurons.corpora.corpus import Batch, Corpus, TokenizedCorpus
from lensneurons.errors import (
    CollectInterrupted,
    CorruptResultError,
    LensNeuronsError,
    ParameterError,
)
from lensneurons.stats import _checkpoint
from lensneurons.stats._accumulators import Accumulators, results
from lensneurons.stats._checkpoint import Plan
from lensneurons.stats._distributed import Group, join
from lensneurons.stats.passes import Passes, forward, split

if TYPE_CHECKING:
    from lensneurons.stats.activation_stats import ActivationStats


def collect(
    model: Any,
    corpus: Corpus,
    *,
    site: str = "mlp",
    batch_size: int = 8,
    max_tokens_per_group: int | None = None,
    sequence_stats: bool = False,
    document_stats: bool = False,
    value_stats: bool = True,
    progress: bool = True,
    checkpoint: str | Path | None = None,
    checkpoint_every: int | None = None,
    resume: bool | str | Path = False,
    distributed: bool | None = None,
) -> ActivationStats:
    """Collect :class:`~lensneurons.ActivationStats` of ``corpus`` in one streaming pass.

    Each forward pass stops at the last layer's read hook: the rest of the last block and the
    unembedding are never computed (most of a pass on a large-vocabulary model). Counts are
    int64 and sums float64 whatever the model's dtype (bf16 and fp16 included).

    Args:
        model: a TransformerLens model (``TransformerBridge`` or ``HookedTransformer``).
        corpus: the texts or examples per group.
        site: where to read (``"mlp"``: gate pre-activation sign and ``act(g)``).
        batch_size: sequences per forward pass.
        max_tokens_per_group: stop each group at this many counted tokens.
        sequence_stats: also keep the max and median over sequences of each sequence's mean
            activation (Rahmanisa et al.). The median needs every per-sequence mean on the CPU
            (``sequences x layers x units`` half floats), so memory then grows with the corpus.
        document_stats: also count the documents: per unit, in how many documents it is active
            on at least one counted token (``active_docs``), and the documents per group
            (``n_docs``), as SAE-LAPE's per-example rule needs (:func:`lensneurons.sae_lape`).
            A document is one text or example, so the corpus must not pack texts
            (``pack=False``) and no text may be longer than the window.
        value_stats: keep the sums, sums of squares and maxima of the activation values
            (``mean``, ``std``, steering values). ``False`` keeps the counts only, which is all
            LAPE, the ternary split and the other count-based detectors read, and skips most
            of the hooks' work (Gemma 3 270M: ``collect`` 1.12x -> 1.03x the pass it needs).
        progress: show a progress bar.
        checkpoint: a folder to save the run's progress into, atomically, every
            ``checkpoint_every`` batches, on Ctrl-C and at the end.
        checkpoint_every: batches between checkpoints (default 100).
        resume: ``True`` continues the run saved in ``checkpoint``; ``"auto"`` continues it
            when there is one and starts otherwise (for jobs that get restarted); a folder
            continues that checkpoint (and keeps saving there unless ``checkpoint`` is given).
        distributed: spread the batches over the processes of ``torchrun`` (``None``:
            whenever the script runs under it; ``False``: never).

    Returns:
        Statistics on the CPU (on every rank under ``torchrun``).

    Raises:
        ParameterError: a setting is out of range or they do not fit together, or
            ``document_stats`` on a corpus whose sequences are not one document each (packed,
            or a text longer than the window).
        UnknownSiteError: ``site`` is unknown or missing on this model.
        UnwritablePathError, ResultExistsError: ``checkpoint`` cannot be used (checked first).
        ResultNotFoundError: ``resume`` names no checkpoint.
        CheckpointMismatchError: the checkpoint was written for another model, corpus, site or
            settings (the message names each difference).
        InsufficientMemoryError: a single sequence does not fit in the device's memory.
        CollectInterrupted: Ctrl-C; ``.partial`` holds the statistics of the finished batches.
        HookShapeError: a hook gave a tensor of another width than the site (an adapter gap).

    Examples:
        >>> import lensneurons as ln
        >>> model = ln.organism.load()
        >>> corpus = ln.Corpus.from_texts(ln.organism.texts("heldout"))
        >>> stats = ln.collect(model, corpus, progress=False)
        >>> stats.active.dtype, stats.sum.dtype
        (torch.int64, torch.float64)
        >>> import tempfile
        >>> folder = tempfile.mkdtemp() + "/ckpt"
        >>> again = ln.collect(model, corpus, checkpoint=folder, progress=False)
        >>> resumed = ln.collect(model, corpus, checkpoint=folder, resume=True, progress=False)
        >>> bool((resumed.active == stats.active).all())
        True
    """
    batch_size = _checks.positive_int(batch_size, "batch_size")
    max_tokens_per_group = _checks.optional_positive_int(max_tokens_per_group,
                                                         "max_tokens_per_group")
    _checks.flag(sequence_stats, "sequence_stats")
    _checks.flag(document_stats, "document_stats")
    _checks.flag(value_stats, "value_stats")
    _checks.flag(progress, "progress")
    check_site_name(site)
    plan = Plan.resolve(checkpoint, checkpoint_every, resume)
    view = ModelView(model)
    group = join(view, distributed)
    _agree(group, plan.check)
    tokenized = corpus.tokenize(view)
    if document_stats:
        _one_document_per_sequence(corpus, tokenized)
    tokenized = tokenized.limit(max_tokens_per_group)
    run = _Run(view, get_site(view, site), tokenized, plan, group, repr(corpus), dict(
        site=site, batch_size=batch_size, max_tokens_per_group=max_tokens_per_group,
        sequence_stats=sequence_stats, document_stats=document_stats, value_stats=value_stats,
        groups=corpus.groups,
        n_batches=tokenized.n_batches(batch_size)))
    _agree(group, run.resume)
    if group is not None:
        run.first = group.broadcast_int(run.first)
    run.loop(progress)
    stats = run.stats(final=True)
    assert stats is not None  # every group of a corpus has counted tokens
    return stats


def _one_document_per_sequence(corpus: Corpus, tokenized: TokenizedCorpus) -> None:
    """Refuse per-document counts when a sequence of ``tokenized`` is not one whole document.

    Raises:
        ParameterError: the corpus packs its texts, or a text was cut into several windows.
    """
    if corpus.pack:
        raise ParameterError(
            "document_stats=True counts the documents a unit is active in, but this corpus "
            "packs its texts into windows (pack=True): a window holds pieces of several "
            "documents, which cannot be told apart. Build the corpus with pack=False (one "
            "text per sequence).")
    if corpus.examples:
        return  # an example is one sequence (truncated to the window when longer)
    sequences = torch.bincount(torch.tensor([s.group for s in tokenized.sequences]),
                               minlength=len(corpus.groups)).tolist()
    for group, n in zip(corpus.groups, sequences):
        if n > len(corpus.items[group]):
            raise ParameterError(
                f"document_stats=True needs one sequence per document, but texts of group "
                f"{group!r} are longer than the window and were cut into several sequences. "
                "Pass a longer window to Corpus.from_texts (up to the model's context), or "
                "split the texts into documents of your own.")


def _agree(group: Group | None, check: Any) -> None:
    """Run ``check`` (on rank 0 under torchrun) and raise its error on every rank."""
    if group is None:
        check()
        return
    error = None
    if group.leader:
        try:
            check()
        except (LensNeuronsError, OSError) as err:
            error = err
    group.agree(error)


class _Run:
    """One call of :func:`collect`: its accumulators, position and checkpoint plan."""

    def __init__(self, view: ModelView, where: Any, tokenized: TokenizedCorpus, plan: Plan,
                 group: Group | None, corpus: str, settings: dict[str, Any]) -> None:
        self.view, self.tokenized, self.plan, self.group = view, tokenized, plan, group
        self.corpus, self.settings = corpus, settings
        self.identity = _checkpoint.identity(view, where, tokenized, **settings)
        if group is not None:  # ranks must also agree on when they meet to checkpoint
            group.check_same({**self.identity, "checkpoints": [plan.write is not None,
                                                               plan.every]})
        self.acc = Accumulators(where, len(settings["groups"]), settings["sequence_stats"],
                                settings["document_stats"], settings["value_stats"])
        self.last_read = where.read_hook(where.n_layers - 1)  # nothing after it is needed
        self.n_batches: int = settings["n_batches"]
        self.first = self.done = self.saved = self.ran = self.splits = self.index = 0
        self.mark = (0, 0, 0)

    @property
    def leader(self) -> bool:
        return self.group is None or self.group.leader

    # --- resume, loop, checkpoints ----------------------------------------------------------
    def resume(self) -> None:
        """Load the checkpoint to resume, if any (rank 0), and start after its last batch."""
        read = self.plan.read
        if read is None or (not self.plan.required and _checkpoint.find(read) is None):
            return
        state, means, done = _checkpoint.load(read, self.identity)
        expected = {k: tuple(v.shape) for k, v in self.acc.state().items()}
        if {k: tuple(v.shape) for k, v in state.items()} != expected or (
                self.acc.sequence_stats and len(means) != len(self.settings["groups"])):
            raise CorruptResultError(
                f"The checkpoint in {read} holds tensors of other shapes than this run's; it is "
                "damaged. Delete it and start over.")
        self.acc.load_state(state, means)
        self.first = done

    def loop(self, progress: bool) -> None:
        """Run this process's batches from :attr:`first` on, checkpointing as planned."""
        world, rank = (1, 0) if self.group is None else (self.group.world, self.group.rank)
        # Every rank (not only rank 0, which loaded the checkpoint) counts from the same start,
        # so that all of them meet at the same checkpoints.
        self.done = self.saved = self.first
        passes = Passes(self.view, self, forward(self.view, self.last_read),
                        total=self.n_batches, initial=self.first, desc="collect",
                        progress=progress and self.leader, split=split,
                        fwd_hooks=self.acc.hooks())
        try:
            with passes:
                batches = self.tokenized.batches(self.settings["batch_size"], skip=self.first)
                for index, batch in enumerate(batches, start=self.first):
                    if (index - self.first) % world == rank:
                        self.index = index
                        passes.batch(batch)
                    if (index - self.first) % world != world - 1 and index + 1 < self.n_batches:
                        continue
                    passes.advance(index + 1 - self.done if self.group else 1)
                    self.done = index + 1
                    every = self.plan.every
                    if (self.plan.write is not None and self.done < self.n_batches
                            and self.done // every > self.saved // every):
                        self._save(*self._merged())
        except KeyboardInterrupt as stop:
            if isinstance(stop, CollectInterrupted):
                raise
            self.splits = passes.splits
            raise self._interrupted() from stop
        self.splits = passes.splits

    # --- the work around each pass (lensneurons.stats.passes.Work) ---------------------------
    def start(self, piece: Batch) -> None:
        """Before a piece's pass: remember where to roll back to, prepare the hooks."""
        self.mark = self.acc.mark()
        self.acc.start(piece)

    def finish(self, piece: Batch) -> None:
        """After a piece's pass: keep its deltas (uncommitted)."""
        self.acc.finish()

    def abort(self) -> None:
        """The piece ran out of memory: drop its deltas."""
        self.acc.rollback(self.mark)

    def commit(self) -> None:
        """The batch has passed: add it to the totals and count it (Ctrl-C is held off)."""
        self.acc.commit()
        self.ran += 1
        if self.group is None:
            self.done = self.index + 1

    def rollback(self) -> None:
        """The loop is left by an exception: drop the unfinished batch."""
        self.acc.rollback()

    def _merged(self) -> tuple[dict[str, torch.Tensor], list[torch.Tensor] | None]:
        """The totals (and sequence means) of every rank, as of :attr:`done`."""
        state = self.acc.state()
        means = self.acc.means() if self.acc.sequence_stats else None
        if self.group is not None:
            state = self.group.all_reduce(state)
            if means is not None:
                means = [self.group.all_gather_rows(m) for m in means]
        return state, means

    def _save(self, state: dict[str, torch.Tensor], means: list[torch.Tensor] | None) -> None:
        if self.leader and self.plan.write is not None:
            _checkpoint.save(self.plan.write, state, means, self.identity, self.done)
        self.saved = self.done

    # --- results -------------------------------------------------------------------------------
    def stats(self, *, final: bool) -> ActivationStats | None:
        """The merged statistics (``final``), or this process's finished batches (Ctrl-C)."""
        from lensneurons.stats.activation_stats import ActivationStats

        if final:
            state, means = self._merged()
            if self.plan.write is not None and self.saved < self.n_batches:
                self._save(state, means)
        else:
            state = self.acc.state()
            means = self.acc.means() if self.acc.sequence_stats else None
        per_rank = [[self.ran]] if self.group is None or not final else (
            self.group.all_gather_ints([self.ran]))
        groups = list(self.settings["groups"])
        meta = {"fingerprint": self.identity["fingerprint"], "gated": self.view.gated,
                "corpus": self.corpus, "corpus_digest": self.identity["corpus_digest"],
                "dtype": self.identity["dtype"],
                **{k: self.settings[k] for k in ("max_tokens_per_group", "batch_size",
                                                  "n_batches")},
                "batches_done": self.done, "resumed_at": self.first,
                "batches_per_rank": [r[0] for r in per_rank], "split_batches": self.splits}
        fields = results(state, means)
        kept = [g for g, n in enumerate(state["n_tokens"].tolist()) if n > 0]
        if not kept:
            return None
        if len(kept) < len(groups):  # only for partial statistics
            index = torch.tensor(kept)
            fields = {k: v[index] for k, v in fields.items()}
            groups = [groups[g] for g in kept]
        return ActivationStats(groups=groups, site=self.settings["site"], meta=meta, **fields)

    def _interrupted(self) -> CollectInterrupted:
        where = f"after {self.done} of {self.n_batches} batches"
        saved = None
        if self.group is None and self.plan.write is not None:
            try:
                self._save(self.acc.state(),
                           self.acc.means() if self.acc.sequence_stats else None)
                saved = self.plan.write
            except (KeyboardInterrupt, LensNeuronsError, OSError):
                saved = None
        partial = self.stats(final=False)
        if saved is not None:
            how = (f"They are saved in {saved}: continue with collect(..., "
                   f"checkpoint={str(saved)!r}, resume=True).")
        elif self.group is not None:
            how = (f"Under torchrun this holds rank {self.group.rank}'s batches only; resume "
                   f"the job from its last checkpoint ({self.saved} batches).")
        else:
            how = "Pass checkpoint='runs/ckpt' to be able to resume a run."
        return CollectInterrupted(
            f"collect was interrupted {where}; the statistics of the finished batches are on "
            f"this exception's .partial. {how}", partial, self.done, self.n_batches, saved)
