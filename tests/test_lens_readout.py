"""The lens's one-pass readout equals the model's full readout, slice by slice and row by row."""

from __future__ import annotations

import math

import pytest
import torch

from lensneurons.lens import readout
from lensneurons.lens.readout import IDENTITY_RTOL, readout_fn, summarize


def _rows(model, n=11, seed=0, scale=4.0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, model.cfg.d_model, generator=gen) * scale


def _brute(model, x, k, sets, groups):
    """Every number from the whole log-softmax of every row."""
    with torch.no_grad():
        logp = readout_fn(model)(x).float().log_softmax(-1)
    entropy = -(logp.exp() * logp).sum(-1)
    top = logp.topk(k, dim=-1)
    set_lp = [torch.stack([logp[r, per_group[int(g)]].logsumexp(-1) for r, g in enumerate(groups)])
              for per_group in sets]
    set_lp = torch.stack(set_lp, -1) if set_lp else None
    return logp, entropy, top, set_lp


@pytest.mark.parametrize("columns, elements", [(None, None), (97, 97 * 4), (1000, 1000)])
def test_summary_equals_the_full_readout(arch_model, monkeypatch, columns, elements):
    """Slices that do not divide the vocabulary, row chunks, sets per group: all as brute force."""
    if columns is not None:
        monkeypatch.setattr(readout, "SLICE_COLUMNS", columns)
        monkeypatch.setattr(readout, "SLICE_ELEMENTS", elements)
    model = arch_model
    x = _rows(model)
    groups = torch.tensor([0, 1, 2] * 3 + [0, 1])
    sets = [[torch.tensor([3, 4, 5]), torch.tensor([7]), torch.tensor([0, 511])],
            [torch.tensor([100]), torch.tensor([5, 6]), torch.tensor([42, 43, 44, 45])]]
    kept = summarize(model, x, top_k=5, sets=sets, groups=groups)
    logp, entropy, top, set_lp = _brute(model, x, 5, sets, groups)
    torch.testing.assert_close(kept.entropy, entropy, atol=2e-5, rtol=1e-5)
    assert torch.equal(kept.top_ids, top.indices)
    torch.testing.assert_close(kept.top_log_probs, top.values, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(kept.set_log_probs, set_lp, atol=2e-5, rtol=1e-5)
    assert kept.mismatch == 0.0  # no reference asked


def test_a_row_reads_the_same_alone_and_among_others(llama_model):
    x = _rows(llama_model, n=9, seed=1)
    together = summarize(llama_model, x, top_k=3)
    alone = summarize(llama_model, x[4:5], top_k=3)
    torch.testing.assert_close(together.entropy[4:5], alone.entropy, atol=1e-6, rtol=1e-6)
    assert torch.equal(together.top_ids[4:5], alone.top_ids)


def test_the_soft_cap_is_applied(llama_model):
    x = _rows(llama_model, n=4, seed=2, scale=20.0)
    plain = summarize(llama_model, x, top_k=2)
    cfg = llama_model.cfg
    old = cfg.output_logits_soft_cap
    cfg.output_logits_soft_cap = 0.5  # flattens every distribution
    try:
        capped = summarize(llama_model, x, top_k=2)
        _, entropy, top, _ = _brute(llama_model, x, 2, [], [])
    finally:
        cfg.output_logits_soft_cap = old
    assert (capped.entropy > plain.entropy).all()
    assert not torch.allclose(capped.top_log_probs, plain.top_log_probs, atol=1e-3)
    torch.testing.assert_close(capped.entropy, entropy, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(capped.top_log_probs, top.values, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("columns", [4, 5, 64])
def test_tokens_the_model_never_predicts(columns, monkeypatch):
    """-inf logits (whole slices of them, first or last) give 0 log 0 = 0, as the full softmax."""
    monkeypatch.setattr(readout, "SLICE_COLUMNS", columns)
    gen = torch.Generator().manual_seed(3)
    h, w_u = torch.randn(6, 8, generator=gen), torch.randn(8, 20, generator=gen)
    b_u = torch.zeros(20)
    b_u[:9] = -torch.inf  # the first slices are -inf for every row
    b_u[17] = -torch.inf
    state = readout._stream(h, w_u, b_u, None, 3, None)
    logp = (h @ w_u + b_u).log_softmax(-1)
    entropy = -(logp.exp() * logp).nan_to_num().sum(-1)
    torch.testing.assert_close(state.entropy, entropy, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(state.shift + state.log_total, (h @ w_u + b_u).logsumexp(-1))
    top = logp.topk(3, dim=-1)
    assert torch.equal(state.top_ids, top.indices)
    torch.testing.assert_close(state.top_log_probs, top.values)


def test_the_reference_check_measures_the_deviation(llama_model, monkeypatch):
    """The model's own logits pass; logits off in one column of one row fail, even mid-slice."""
    monkeypatch.setattr(readout, "SLICE_COLUMNS", 100)
    x = _rows(llama_model, n=6, seed=4)
    with torch.no_grad():
        logits = readout_fn(llama_model)(x).float()
    rows = torch.tensor([1, 4])
    good = summarize(llama_model, x, top_k=1, reference=(rows, logits[rows]))
    assert 0.0 <= good.mismatch < 1e-4
    spread = (logits[rows].log_softmax(-1) - logits[rows].log_softmax(-1).mean(-1, keepdim=True))
    off = logits[rows].clone()
    off[1, 250] += 0.05 * float(spread.abs().max())  # 5x the tolerance, in the third slice
    bad = summarize(llama_model, x, top_k=1, reference=(rows, off))
    assert bad.mismatch > IDENTITY_RTOL
    nan = off.clone()
    nan[0, 0] = torch.nan
    assert math.isnan(summarize(llama_model, x, top_k=1, reference=(rows, nan)).mismatch)


def test_large_logits_keep_their_precision(monkeypatch):
    """Logits in the hundreds (Gemma's reach ~300): log-probs as exact as a float64 softmax's
    fp32 rounding, not the ulp of the logits (6e-5 at 800)."""
    monkeypatch.setattr(readout, "SLICE_COLUMNS", 7)
    gen = torch.Generator().manual_seed(5)
    h, w_u = torch.randn(5, 16, generator=gen), torch.randn(16, 40, generator=gen) * 200
    state = readout._stream(h, w_u, None, None, 4, None)
    logits = torch.cat([h @ w_u[:, v:v + 7] for v in range(0, 40, 7)], 1)  # the same fp32 logits
    exact = logits.double().log_softmax(-1).gather(1, state.top_ids)
    assert (h @ w_u).abs().max() > 500
    torch.testing.assert_close(state.top_log_probs.double(), exact, atol=2e-6, rtol=1e-6)
