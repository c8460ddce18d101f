"""Tuned lens: identity at init, training lowers KL, the vocabulary-restricted KL, save/load."""

from __future__ import annotations

import json

import _models
import pytest
import torch

from lensneurons.errors import ModelMismatchError, ReadoutError
from lensneurons.lens import TunedLens, logit_lens, readout_fn, tuned
from lensneurons.lens.tuned import subset_readout

TEXTS = [s for sents in _models.SENTENCES.values() for s in sents] * 3


def test_untrained_lens_is_the_logit_lens(llama_model):
    lens = TunedLens.from_model(llama_model)
    a = logit_lens(llama_model, "The cat sleeps", lens=lens, depths=[0, 1, 2])
    b = logit_lens(llama_model, "The cat sleeps", depths=[0, 1, 2])
    torch.testing.assert_close(a.entropy, b.entropy)


def test_fit_save_load(llama_model, tmp_path):
    lens = TunedLens.fit(llama_model, TEXTS, steps=12, seq_len=16, batch_size=4, lr=3e-3)
    assert len(lens.history) == 12
    assert sum(lens.history[-3:]) < sum(lens.history[:3])
    assert all(p.requires_grad for p in llama_model.parameters())  # model unfrozen again
    lens.save(tmp_path / "lens")
    assert (tmp_path / "lens" / "tuned_lens.safetensors").exists()
    loaded = TunedLens.load(tmp_path / "lens", llama_model)
    x = logit_lens(llama_model, "Le chat dort", lens=lens)
    y = logit_lens(llama_model, "Le chat dort", lens=loaded)
    torch.testing.assert_close(x.entropy, y.entropy)
    last = logit_lens(llama_model, "Le chat dort")
    torch.testing.assert_close(x.entropy[-1], last.entropy[-1])  # final layer untouched
    other = "gpt2" if "gpt2" in _models.ARCHS else "ht_gpt2"
    with pytest.raises(ModelMismatchError):
        TunedLens.load(tmp_path / "lens", _models.build(other))


def test_too_little_text(llama_model):
    with pytest.raises(ValueError, match="fewer than one window"):
        TunedLens.fit(llama_model, ["Hi"], steps=1, seq_len=64)


# --- vocabulary-restricted training (large vocabularies) -----------------------------------------
def _state(lens):
    return {k: v.detach().clone() for k, v in lens.state_dict().items()}


def test_subset_readout_is_the_readout_restricted(llama_model):
    x = torch.randn(5, llama_model.cfg.d_model, generator=torch.Generator().manual_seed(0)) * 3
    ids = torch.tensor([7, 3, 400, 0, 511, 42])
    full = readout_fn(llama_model)(x)
    torch.testing.assert_close(subset_readout(llama_model, ids)(x), full[:, ids])
    cfg = llama_model.cfg
    old = cfg.output_logits_soft_cap
    cfg.output_logits_soft_cap = 0.5  # a cap the readouts must both apply
    try:
        capped = readout_fn(llama_model)(x)
        assert not torch.allclose(capped, full)
        torch.testing.assert_close(subset_readout(llama_model, ids)(x), capped[:, ids])
    finally:
        cfg.output_logits_soft_cap = old


@pytest.mark.parametrize("tail_samples", [0, 16])
def test_subset_kl_over_the_whole_vocabulary_is_the_exact_kl(llama_model, tail_samples):
    common = dict(steps=3, seq_len=16, batch_size=3, lr=3e-3, positions_per_step=20)
    exact = TunedLens.fit(llama_model, TEXTS, **common)
    subset = TunedLens.fit(llama_model, TEXTS, vocab_subset=llama_model.cfg.d_vocab,
                           tail_samples=tail_samples, **common)
    assert subset.meta["training"]["mean_subset_size"] == llama_model.cfg.d_vocab
    torch.testing.assert_close(torch.tensor(subset.history), torch.tensor(exact.history))
    torch.testing.assert_close(_state(subset), _state(exact), atol=1e-5, rtol=1e-4)


def test_subset_training_lowers_the_full_kl(llama_model):
    seen = []
    lens = TunedLens.fit(llama_model, TEXTS, steps=12, seq_len=16, batch_size=4, lr=3e-3,
                         vocab_subset=8, frequent_tokens=16, tail_samples=32,
                         positions_per_step=32, lr_decay=True,
                         callback=lambda step, kl: seen.append(step))
    assert seen == list(range(12))
    info = lens.meta["training"]
    assert info["vocab_subset"] == 8 and info["steps"] == 12 and info["lr_decay"]
    assert 16 <= info["mean_subset_size"] < llama_model.cfg.d_vocab
    tokens = llama_model.to_tokens(TEXTS[0])
    untrained = TunedLens.from_model(llama_model)
    kl = {}
    for name, lens_ in (("logit", untrained), ("tuned", lens)):
        resid, logits = tuned._forward(llama_model, tokens)
        target = logits.float().log_softmax(-1)
        with torch.no_grad():
            logq = readout_fn(llama_model)(lens_(resid[1], 1)).float().log_softmax(-1)
        kl[name] = float((target.exp() * (target - logq)).sum(-1).mean())
    assert kl["tuned"] < kl["logit"]


def test_subset_refuses_a_transform_that_mixes_tokens(llama_model, monkeypatch):
    adapter = getattr(llama_model, "adapter", None)
    if adapter is None:
        pytest.skip("TL 2.x: no adapter output transform")
    monkeypatch.setattr(adapter, "apply_output_logits_transform",
                        lambda z: z / z.norm(dim=-1, keepdim=True), raising=False)
    with pytest.raises(ReadoutError, match="mixes tokens"):
        subset_readout(llama_model, torch.arange(4))


def test_bad_subset_options(llama_model):
    with pytest.raises(ValueError, match="vocab_subset"):
        TunedLens.fit(llama_model, TEXTS, steps=1, seq_len=16, vocab_subset=0)
    with pytest.raises(ValueError, match="positions_per_step"):
        TunedLens.fit(llama_model, TEXTS, steps=1, seq_len=16, positions_per_step=0)


def test_save_bf16_loads_fp32(llama_model, tmp_path):
    lens = TunedLens.from_model(llama_model)
    with torch.no_grad():
        for p in lens.parameters():
            p.normal_(0, 0.1, generator=torch.Generator().manual_seed(1))
    lens.meta["note"] = {"heldout_kl": [1.5, 0.5]}
    lens.save(tmp_path / "fp32")
    lens.save(tmp_path / "bf16", dtype=torch.bfloat16)
    size = {d: (tmp_path / d / "tuned_lens.safetensors").stat().st_size for d in ("fp32", "bf16")}
    assert size["bf16"] < 0.55 * size["fp32"]
    loaded = TunedLens.load(tmp_path / "bf16", llama_model)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    assert loaded.meta == lens.meta
    torch.testing.assert_close(_state(loaded), _state(lens), atol=2e-3, rtol=1e-2)
    meta = json.loads((tmp_path / "bf16" / "tuned_lens.json").read_text())
    assert meta["dtype"] == "bfloat16" and meta["fingerprint"] == lens.fingerprint
