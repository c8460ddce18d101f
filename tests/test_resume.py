"""Long runs: a collection killed with SIGKILL at any moment resumes to identical statistics;
Ctrl-C keeps the finished batches; a checkpoint refuses another model, corpus or settings."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

import lensneurons as ln
from lensneurons.corpora.corpus import TokenizedCorpus
from lensneurons.errors import CheckpointMismatchError, CollectInterrupted
from lensneurons.stats import _checkpoint

ROOT = Path(__file__).resolve().parents[1]
BATCH, EVERY = 4, 2
FIELDS = ("n_tokens", "active", "sum", "sum_sq", "max", "seq_mean_max", "seq_mean_median",
          "n_sequences")

# The child collects with checkpoints and reports each forward pass in a progress file. Its
# modes slow it down at the moment the test kills it; only this script patches anything.
CHILD = textwrap.dedent("""
    import pathlib, sys, time
    import torch
    import lensneurons as ln
    import lensneurons.core.persistence as io

    ckpt, log, mode, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    torch.set_num_threads(threads)

    def note(text):
        with open(log, "a") as f:
            f.write(text + "\\n")

    if mode == "save":  # each fsync of a save is slow: the kill lands inside a save
        real_fsync = io._fsync
        def slow_fsync(path):
            note("saving")
            time.sleep(0.4)
            real_fsync(path)
        io._fsync = slow_fsync
    if mode == "rename":  # the old checkpoint is moved aside, the new one not yet in place
        real_rename = pathlib.Path.rename
        def slow_rename(self, target):
            out = real_rename(self, target)
            if ".old-" in pathlib.Path(target).name:
                note("between renames")
                time.sleep(60)
            return out
        pathlib.Path.rename = slow_rename

    passes = 0
    def count(x, hook):
        global passes
        passes += 1
        note(f"pass {passes}")
        if mode == "slow":
            time.sleep(0.25)

    model = ln.organism.load()
    texts = {lang: lines[:8] for lang, lines in ln.organism.texts("heldout").items()}
    with model.hooks(fwd_hooks=[("blocks.0.mlp.hook_pre", count)]):
        ln.collect(model, ln.Corpus.from_texts(texts), batch_size=BATCH, checkpoint=ckpt,
                   checkpoint_every=EVERY, sequence_stats=True, progress=False)
    note("done")
""").replace("BATCH", str(BATCH)).replace("EVERY", str(EVERY))


@pytest.fixture(scope="module")
def reference(organism, corpus):
    """The uninterrupted run."""
    return ln.collect(organism, corpus, batch_size=BATCH, sequence_stats=True, progress=False)


def assert_identical(stats, reference):
    """Counts bit for bit; sums to 1e-12 relative (of the sum of their magnitudes' scale)."""
    assert stats.groups == reference.groups
    for name in FIELDS:
        got, want = getattr(stats, name), getattr(reference, name)
        if name in ("sum", "sum_sq"):
            tol = 1e-12 * want.abs().amax(dim=-1, keepdim=True)
            assert ((got - want).abs() <= tol).all(), name
        else:
            assert torch.equal(got, want), name


def _lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def _run_and_kill(tmp_path: Path, mode: str, ready) -> tuple[Path, list[str]]:
    script, log, ckpt = tmp_path / "child.py", tmp_path / "progress.log", tmp_path / "ckpt"
    script.write_text(CHILD)
    child = subprocess.Popen(
        [sys.executable, str(script), str(ckpt), str(log), mode, str(torch.get_num_threads())],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    try:
        while not ready(_lines(log)):
            if child.poll() is not None:
                pytest.fail(f"the child ended before the kill point: {child.stderr.read()}")
            if time.monotonic() > deadline:
                pytest.fail(f"the child never reached the kill point: {_lines(log)[-3:]}")
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
        child.stderr.close()
    return ckpt, _lines(log)


def _passes(lines: list[str]) -> int:
    return sum(line.startswith("pass") for line in lines)


KILLS = {
    # name: (child mode, kill when the log says..., the batch the resumed run starts at)
    "after-checkpoint-1": ("slow", lambda lines: _passes(lines) >= EVERY + 1, EVERY),
    "mid-way": ("slow", lambda lines: _passes(lines) >= 4 * EVERY, 3 * EVERY),
    "during-a-save": ("save", lambda lines: lines.count("saving") >= 3, EVERY),
    "between-renames": ("rename", lambda lines: "between renames" in lines, EVERY),
}


@pytest.mark.parametrize("point", list(KILLS))
def test_sigkill_then_resume_gives_identical_statistics(tmp_path, organism, corpus, reference,
                                                        point):
    mode, ready, resumes_at = KILLS[point]
    ckpt, lines = _run_and_kill(tmp_path, mode, ready)
    assert "done" not in lines
    if point == "between-renames":
        assert not ckpt.exists() and list(tmp_path.glob(".ckpt.old-*"))
    stats = ln.collect(organism, corpus, batch_size=BATCH, checkpoint=ckpt,
                       checkpoint_every=EVERY, resume=True, sequence_stats=True, progress=False)
    assert stats.meta["resumed_at"] == resumes_at
    assert stats.meta["batches_per_rank"] == [stats.meta["n_batches"] - resumes_at]
    assert_identical(stats, reference)
    # the final checkpoint replaced every leftover of the killed save, and is complete
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".ckpt")) == []
    again = ln.collect(organism, corpus, batch_size=BATCH, checkpoint=ckpt, resume=True,
                       sequence_stats=True, progress=False)
    assert again.meta["batches_per_rank"] == [0]
    assert_identical(again, reference)


def _interrupt_at(model, k):
    """A hook on layer 1 raising KeyboardInterrupt in the ``k``-th forward pass (layer 0 of that
    pass has already been seen by collect's hooks)."""
    calls = []

    def hook(x, *, hook):
        calls.append(1)
        if len(calls) == k:
            raise KeyboardInterrupt

    return model.hooks(fwd_hooks=[("blocks.1.mlp.hook_pre", hook)])


def _prefix(model, corpus, n_batches, monkeypatch):
    """Statistics of the first ``n_batches`` batches only (an independent reference)."""
    real = TokenizedCorpus.batches

    def first(self, batch_size=8, skip=0):
        return (b for i, b in enumerate(real(self, batch_size, skip=skip)) if i < n_batches)

    with monkeypatch.context() as patch:
        patch.setattr(TokenizedCorpus, "batches", first)
        return ln.collect(model, corpus, batch_size=BATCH, sequence_stats=True, progress=False)


@pytest.mark.parametrize("k", [1, 6])
def test_ctrl_c_keeps_the_finished_batches(tmp_path, organism, corpus, reference, monkeypatch,
                                           k):
    hooks_before = sum(len(p._forward_hooks) for p in organism.hook_dict.values())
    ckpt = tmp_path / "ckpt"
    with pytest.raises(CollectInterrupted) as info, _interrupt_at(organism, k):
        ln.collect(organism, corpus, batch_size=BATCH, checkpoint=ckpt, checkpoint_every=100,
                   sequence_stats=True, progress=False)
    stop = info.value
    assert isinstance(stop, KeyboardInterrupt)
    assert sum(len(p._forward_hooks) for p in organism.hook_dict.values()) == hooks_before
    assert stop.batches_done == k - 1 and stop.n_batches == reference.meta["n_batches"]
    assert stop.checkpoint == ckpt and "resume=True" in str(stop)
    if k == 1:
        assert stop.partial is None
    else:
        prefix = _prefix(organism, corpus, k - 1, monkeypatch)
        assert stop.partial.groups == [g for g in prefix.groups]
        assert_identical(stop.partial, prefix)
    resumed = ln.collect(organism, corpus, batch_size=BATCH, checkpoint=ckpt, resume=True,
                         sequence_stats=True, progress=False)
    assert resumed.meta["resumed_at"] == k - 1
    assert_identical(resumed, reference)


def test_ctrl_c_without_checkpoint_says_how_to_resume(organism, corpus):
    with pytest.raises(CollectInterrupted, match="checkpoint=") as info, _interrupt_at(
            organism, 3):
        ln.collect(organism, corpus, batch_size=BATCH, progress=False)
    assert info.value.checkpoint is None and info.value.batches_done == 2
    assert info.value.partial.n_tokens.sum() > 0


def test_resume_auto_starts_when_there_is_no_checkpoint(tmp_path, organism, corpus, reference):
    stats = ln.collect(organism, corpus, batch_size=BATCH, checkpoint=tmp_path / "ckpt",
                       resume="auto", sequence_stats=True, progress=False)
    assert stats.meta["resumed_at"] == 0
    assert_identical(stats, reference)
    assert (tmp_path / "ckpt" / "checkpoint.json").exists()


@pytest.mark.parametrize("change, says", [
    (dict(batch_size=2), "batch_size 4 vs 2"),
    (dict(site="attn.k"), "site 'mlp' vs 'attn.k'"),
    (dict(max_tokens_per_group=50), "max_tokens_per_group None vs 50"),
    (dict(sequence_stats=False), "sequence_stats True vs False"),
    (dict(corpus={"en": ["Another text."], "fr": ["Un autre."]}), "tokenized corpus"),
    (dict(model="llama"), "the model: "),
])
def test_resume_refuses_another_run(tmp_path, organism, corpus, llama_model, change, says):
    ckpt = tmp_path / "ckpt"
    with pytest.raises(CollectInterrupted), _interrupt_at(organism, 3):
        ln.collect(organism, corpus, batch_size=BATCH, checkpoint=ckpt, sequence_stats=True,
                   progress=False)
    args = dict(batch_size=BATCH, site="mlp", sequence_stats=True, max_tokens_per_group=None)
    model, other = organism, corpus
    for key, value in change.items():
        if key == "model":
            model = llama_model
        elif key == "corpus":
            other = ln.Corpus.from_texts(value)
        else:
            args[key] = value
    with pytest.raises(CheckpointMismatchError, match=f"differs in: .*{says}"):
        ln.collect(model, other, checkpoint=ckpt, resume=True, progress=False, **args)
    assert _checkpoint.find(ckpt) == ckpt  # refusing leaves the checkpoint as it was
