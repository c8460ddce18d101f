"""collect under torchrun (gloo, CPU): each rank runs its share, every rank returns the merge."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import lensneurons as ln
from lensneurons.errors import CollectInterrupted

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).parent / "torchrun"
BATCH = 3  # 56 sequences: 19 batches, so the two ranks get 10 and 9

# A user's script: nothing in it knows about torch.distributed. It counts its forward passes.
SCRIPT = textwrap.dedent("""
    import json, os, sys
    import torch
    import lensneurons as ln

    out, ckpt = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    model = ln.organism.load()
    texts = {lang: lines[:8] for lang, lines in ln.organism.texts("heldout").items()}
    passes = []
    with model.hooks(fwd_hooks=[("blocks.0.mlp.hook_pre", lambda x, hook: passes.append(1))]):
        extra = dict(checkpoint=ckpt, checkpoint_every=4, resume="auto") if ckpt else {}
        stats = ln.collect(model, ln.Corpus.from_texts(texts), batch_size=BATCH,
                           sequence_stats=True, document_stats=True, progress=False, **extra)
    rank = os.environ["RANK"]
    stats.save(f"{out}/stats-{rank}")
    with open(f"{out}/rank-{rank}.json", "w") as f:
        json.dump({"passes": len(passes)}, f)
""").replace("BATCH", str(BATCH))


@pytest.fixture(scope="module")
def reference(organism, corpus):
    return ln.collect(organism, corpus, batch_size=BATCH, sequence_stats=True,
                      document_stats=True, progress=False)


def torchrun(tmp_path: Path, ckpt: Path | None = None) -> list[tuple[ln.ActivationStats, int]]:
    """Run the script on 2 CPU processes; each rank's statistics and forward passes."""
    script = tmp_path / "user_script.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [str(TORCHRUN), "--standalone", "--nproc-per-node", "2", str(script), str(tmp_path),
         str(ckpt or "")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return [(ln.ActivationStats.load(tmp_path / f"stats-{rank}"),
             json.loads((tmp_path / f"rank-{rank}.json").read_text())["passes"])
            for rank in range(2)]


def assert_merged(stats, reference):
    """Counts exactly; sums to 1e-9 relative; maxima and medians exactly."""
    assert stats.groups == reference.groups
    for name in ("n_tokens", "active", "n_sequences", "max", "seq_mean_max", "seq_mean_median",
                 "active_docs", "n_docs"):
        assert torch.equal(getattr(stats, name), getattr(reference, name)), name
    for name in ("sum", "sum_sq"):
        got, want = getattr(stats, name), getattr(reference, name)
        tol = 1e-9 * want.abs().amax(dim=-1, keepdim=True)
        assert ((got - want).abs() <= tol).all(), name


def test_two_ranks_share_the_batches_and_return_the_merge(tmp_path, reference):
    ranks = torchrun(tmp_path)
    n_batches = reference.meta["n_batches"]
    assert n_batches == 19
    shares = [len(range(rank, n_batches, 2)) for rank in range(2)]  # rank::world_size
    for rank, (stats, passes) in enumerate(ranks):
        assert passes == shares[rank]  # forward passes counted by the user's own hook
        assert stats.meta["batches_per_rank"] == shares
        assert_merged(stats, reference)


def test_torchrun_resumes_a_single_process_checkpoint(tmp_path, organism, corpus, reference):
    ckpt = tmp_path / "ckpt"
    calls = []

    def stop_at_6(x, *, hook):
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt

    with pytest.raises(CollectInterrupted), organism.hooks(
            fwd_hooks=[("blocks.1.mlp.hook_pre", stop_at_6)]):
        ln.collect(organism, corpus, batch_size=BATCH, checkpoint=ckpt, checkpoint_every=2,
                   sequence_stats=True, document_stats=True, progress=False)
    ranks = torchrun(tmp_path, ckpt)
    left = reference.meta["n_batches"] - 5
    shares = [len(range(rank, left, 2)) for rank in range(2)]
    assert [passes for _, passes in ranks] == shares
    for stats, _ in ranks:
        assert stats.meta["resumed_at"] == 5
        assert_merged(stats, reference)
    # rank 0 wrote the final checkpoint; resuming it runs nothing and gives the same statistics
    again = ln.collect(organism, corpus, batch_size=BATCH, checkpoint=ckpt, resume=True,
                       sequence_stats=True, document_stats=True, progress=False)
    assert again.meta["batches_per_rank"] == [0]
    assert_merged(again, reference)
