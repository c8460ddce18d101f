"""collect on low-precision models (exact int64 counts, float64 sums) and out-of-memory retries."""

import warnings

import _models
import pytest
import torch

import lensneurons as ln
from lensneurons.errors import BatchSplitWarning, InsufficientMemoryError

TEXTS = dict(_models.SENTENCES)


@pytest.fixture(scope="module", params=[torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def low_model(request):
    """A tiny Llama of its own (a seed no other test uses) cast to bf16 / fp16."""
    seed = {torch.bfloat16: 7101, torch.float16: 7102}[request.param]
    return _models.build("llama" if "llama" in _models.ARCHS else "ht_llama",
                         seed=seed).to(request.param)


def brute_force(model, corpus, shape):
    """Counts and float64 sums from run_with_cache, one sequence at a time, in the model's dtype."""
    site = ln.get_site(model, "mlp")
    dtype = next(model.parameters()).dtype
    active = torch.zeros(shape, dtype=torch.int64)
    sums = torch.zeros(shape, dtype=torch.float64)
    squares = torch.zeros(shape, dtype=torch.float64)
    scale = torch.zeros(shape, dtype=torch.float64)  # sum of |a|: the scale of rounding errors
    for seq in corpus.tokenize(model).sequences:
        _, cache = model.run_with_cache(seq.tokens[None])
        for layer in range(shape[1]):
            g = cache[site.read_hook(layer)][0][seq.counted]
            assert g.dtype == dtype  # the cached pre-activation is in the model's dtype
            a = site.values(g.float()).double()
            active[seq.group, layer] += (g > 0).sum(0)
            sums[seq.group, layer] += a.sum(0)
            squares[seq.group, layer] += (a * a).sum(0)
            scale[seq.group, layer] += a.abs().sum(0)
    return active, sums, squares, scale


def test_low_precision_counts_and_sums_are_exact(low_model):
    corpus = ln.Corpus.from_texts(TEXTS)
    stats = ln.collect(low_model, corpus, batch_size=3, progress=False)
    active, sums, squares, scale = brute_force(low_model, corpus, stats.active.shape)
    assert stats.active.dtype == torch.int64 and stats.n_tokens.dtype == torch.int64
    assert stats.sum.dtype == torch.float64 and stats.sum_sq.dtype == torch.float64
    assert torch.equal(stats.active, active)
    assert stats.meta["dtype"] == str(next(low_model.parameters()).dtype).removeprefix("torch.")
    # float64 sums of the values: only the order of additions may differ (1e-12 relative);
    # per-batch float32 (let alone bf16) accumulation is off by ~1e-7 and fails this.
    assert ((stats.sum - sums).abs() <= 1e-12 * scale).all()
    assert ((stats.sum_sq - squares).abs() <= 1e-12 * squares).all()


def _oom_above(rows: int, layer: int = 1, limit: int = 1000):
    """A hook that raises CUDA's out-of-memory error for batches of more than ``rows`` rows.

    It sits on layer ``layer``'s read point, so the layers before it have already been seen by
    collect's hooks when the error strikes: the batch must not count them.
    """
    calls = []

    def hook(x, *, hook):
        if x.shape[0] > rows and len(calls) < limit:
            calls.append(x.shape[0])
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    return f"blocks.{layer}.mlp.hook_pre", hook, calls


def test_out_of_memory_batches_are_split_and_counts_stay_exact(llama_model):
    corpus = ln.Corpus.from_texts(TEXTS)
    plain = ln.collect(llama_model, corpus, batch_size=8, sequence_stats=True, progress=False)
    name, hook, calls = _oom_above(2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with llama_model.hooks(fwd_hooks=[(name, hook)]):
            split = ln.collect(llama_model, corpus, batch_size=8, sequence_stats=True,
                               progress=False)
    assert calls, "the injected error never fired"
    kinds = [w.category for w in caught]
    assert BatchSplitWarning in kinds and issubclass(BatchSplitWarning, UserWarning)
    assert any("batch_size=2" in str(w.message) for w in caught if w.category is BatchSplitWarning)
    assert split.meta["split_batches"] >= 1
    assert split.n_tokens.tolist() == plain.n_tokens.tolist()
    assert torch.equal(split.active, plain.active)
    assert torch.equal(split.n_sequences, plain.n_sequences)
    torch.testing.assert_close(split.sum, plain.sum, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(split.max, plain.max, rtol=0, atol=0)
    torch.testing.assert_close(split.seq_mean_max, plain.seq_mean_max, rtol=1e-6, atol=1e-6)


def test_a_single_sequence_that_does_not_fit_is_a_typed_error(llama_model):
    corpus = ln.Corpus.from_texts(TEXTS)
    before = sum(len(p._forward_hooks) for p in llama_model.hook_dict.values())
    name, hook, _ = _oom_above(0)
    with llama_model.hooks(fwd_hooks=[(name, hook)]), warnings.catch_warnings():
        warnings.simplefilter("ignore", BatchSplitWarning)
        with pytest.raises(InsufficientMemoryError, match="window="):
            ln.collect(llama_model, corpus, batch_size=4, progress=False)
    assert sum(len(p._forward_hooks) for p in llama_model.hook_dict.values()) == before
