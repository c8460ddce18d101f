"""The shared batch loop (lensneurons/stats/passes.py): its contract, its users out of memory."""

import warnings

import pytest
import torch

import lensneurons as ln
from lensneurons.errors import BatchSplitWarning, InsufficientMemoryError
from lensneurons.stats.passes import Passes, forward, run_batches, split

OOM = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


class Journal:
    """A Work that writes down every call, and counts the committed rows per group."""

    def __init__(self, n_groups):
        self.calls, self.pending = [], []
        self.rows = torch.zeros(n_groups, dtype=torch.int64)

    def start(self, piece):
        self.calls.append(("start", piece.tokens.shape[0]))

    def finish(self, piece):
        self.calls.append(("finish", piece.tokens.shape[0]))
        self.pending.append(piece.rows)

    def abort(self):
        self.calls.append(("abort",))

    def commit(self):
        self.calls.append(("commit",))
        for rows in self.pending:
            self.rows += torch.bincount(rows, minlength=len(self.rows))
        self.pending = []

    def rollback(self):
        self.calls.append(("rollback",))
        self.pending = []


def oom_above(rows, layer=1):
    """A hook raising CUDA's out-of-memory error in passes over more than ``rows`` rows."""
    def hook(x, *, hook):
        if x.shape[0] > rows:
            raise OOM
    return f"blocks.{layer}.hook_resid_pre", hook


def test_the_loop_calls_its_work_in_order(organism, corpus):
    view = ln.ModelView(organism)
    tokenized = corpus.tokenize(view)
    work = Journal(len(corpus.groups))
    with organism.hooks(fwd_hooks=[oom_above(2)]), warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        run_batches(view, tokenized, 4, work, stop_at="blocks.1.hook_resid_post", fwd_hooks=[],
                    progress=False, desc="test")
    assert work.rows.tolist() == [8] * 7
    # the first batch of 4 fails, is split in 2 + 2; later batches start at 2 rows
    assert work.calls[:7] == [("start", 4), ("abort",), ("start", 2), ("finish", 2),
                              ("start", 2), ("finish", 2), ("commit",)]
    assert ("start", 4) not in work.calls[1:]
    assert [w.category for w in seen] == [BatchSplitWarning]  # once: the size only shrank once
    assert "batch_size=2" in str(seen[0].message)


def test_an_exception_rolls_back_and_removes_the_hooks(organism, corpus):
    view = ln.ModelView(organism)
    tokenized = corpus.tokenize(view)
    work = Journal(len(corpus.groups))
    before = sum(len(p._forward_hooks) for p in organism.hook_dict.values())
    passes = Passes(view, work, forward(view, "blocks.0.hook_resid_post"), total=3, desc="t",
                    progress=False, split=split,
                    fwd_hooks=[("blocks.0.hook_resid_pre", lambda x, hook: None)])
    with pytest.raises(KeyboardInterrupt), passes:
        batches = tokenized.batches(8)
        passes.batch(next(batches))
        work.finish(next(batches))  # finished but never committed
        raise KeyboardInterrupt
    assert work.calls[-1] == ("rollback",) and work.pending == []
    assert int(work.rows.sum()) == 8
    assert sum(len(p._forward_hooks) for p in organism.hook_dict.values()) == before


def test_a_single_row_that_does_not_fit_is_a_typed_error(organism, corpus):
    view = ln.ModelView(organism)
    work = Journal(len(corpus.groups))
    with organism.hooks(fwd_hooks=[oom_above(0)]), warnings.catch_warnings():
        warnings.simplefilter("ignore", BatchSplitWarning)
        with pytest.raises(InsufficientMemoryError, match="window="):
            run_batches(view, corpus.tokenize(view), 2, work, stop_at="blocks.1.hook_resid_post",
                        fwd_hooks=[], progress=False, desc="test")
    assert work.calls[-1] == ("rollback",) and int(work.rows.sum()) == 0


def test_plnd_splits_batches_and_counts_the_same(organism):
    texts = {g: lines[:4] for g, lines in ln.organism.texts("heldout").items() if g in (
        "en", "de")}
    corpus = ln.Corpus.from_texts(texts)
    plain = ln.plnd(organism, corpus, sites=("mlp", "attn.k"), batch_size=8, progress=False)
    with organism.hooks(fwd_hooks=[oom_above(3)]), pytest.warns(BatchSplitWarning):
        split_run = ln.plnd(organism, corpus, sites=("mlp", "attn.k"), batch_size=8,
                            progress=False)
    for site in plain.sites:
        assert torch.equal(split_run.counts[site], plain.counts[site])
    assert torch.equal(split_run.n_docs, plain.n_docs)


def test_attribution_splits_batches_and_scores_the_same(organism):
    items = [("The capital of France is", " Paris"), ("Le chat", " dort"),
             ("Die Katze", " schläft"), ("El perro", " corre"), ("A dog", " runs")]
    plain = ln.attribution(organism, items, sites=("mlp", "attn.v"), batch_size=4,
                           progress=False)
    with organism.hooks(fwd_hooks=[oom_above(1)]), warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        split_run = ln.attribution(organism, items, sites=("mlp", "attn.v"), batch_size=4,
                                   progress=False)
    assert [w.category for w in seen] == [BatchSplitWarning] * 2  # 4 -> 2 -> 1 item
    assert "batch_size=1" in str(seen[-1].message)
    for site in plain.sites:
        torch.testing.assert_close(split_run[site], plain[site], rtol=1e-5, atol=1e-9)
    assert plain["mlp"].abs().sum() > 0
