"""Tuned lens: identity at init, training lowers KL, save/load with the model fingerprint."""

from __future__ import annotations

import _models
import pytest
import torch

from lensneurons.errors import ModelMismatchError
from lensneurons.lens import TunedLens, logit_lens

TEXTS = [s for sents in _models.SENTENCES.values() for s in sents] * 3


def test_untrained_lens_is_the_logit_lens(llama_model):
    lens = TunedLens.from_model(llama_model)
    a = logit_lens(llama_model, "The cat sleeps", lens=lens, layers=[0, 1, 2])
    b = logit_lens(llama_model, "The cat sleeps", layers=[0, 1, 2])
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
