"""Gemma 3 270M, the real architecture: sliding-window attention, q/k norms, tied embeddings,
GELU-tanh gate. Everything the unit tests prove on tiny random models, proven again here."""

from __future__ import annotations

import copy

import pytest
import torch
from test_stats import brute_force
from transformers import AutoModelForCausalLM

import lensneurons as ln
from lensneurons.subjects import models

pytestmark = pytest.mark.real

TEXT = "Le chat dort sur le tapis. The cat sleeps. Кошка спит. 猫が寝ている。"
# Longer than the 512-token sliding window, so local and global layers differ.
LONG = " ".join(["Die Katze schläft auf der Matte, und der Hund läuft im Park."] * 50)


def hf_reference(dtype=torch.float32):
    """The dequantized HF model from the cache, with eager attention like the bridge."""
    folder = models.convert_gguf(models.gguf_path("gemma-3-270m"), progress=False)
    return AutoModelForCausalLM.from_pretrained(folder, dtype=dtype,
                                                attn_implementation="eager").eval()


def test_bridge_logits_equal_the_dequantized_hf_model(gemma):
    hf = hf_reference()
    for text in (TEXT, LONG):
        tokens = gemma.to_tokens(text)
        assert tokens.shape[1] > 512 or text is TEXT
        with torch.inference_mode():
            expected = hf(tokens).logits
            got = gemma(tokens)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)


def test_view_of_gemma(gemma_view):
    assert (gemma_view.n_layers, gemma_view.d_model, gemma_view.d_mlp) == (18, 640, 2048)
    assert gemma_view.gated and gemma_view.act_fn_name == "gelu_pytorch_tanh"
    assert gemma_view.d_vocab == 262_144 and gemma_view.n_kv_heads == 1


def test_hook_map_holds_numerically(gemma, gemma_view):
    _, cache = gemma.run_with_cache(gemma.to_tokens(TEXT))
    for layer in range(gemma_view.n_layers):
        pre = cache[f"blocks.{layer}.mlp.hook_pre"]
        expected = gemma_view.act_fn(pre) * cache[f"blocks.{layer}.mlp.hook_pre_linear"]
        torch.testing.assert_close(cache[f"blocks.{layer}.mlp.hook_post"], expected,
                                   rtol=1e-4, atol=1e-5)


def test_collect_equals_a_brute_force_count(gemma):
    corpus = ln.Corpus.from_texts({"fr": ["Le chat dort sur le tapis.", "Bonjour à tous."],
                                   "ja": ["猫が寝ている。", "こんにちは、世界。"]})
    stats = ln.collect(gemma, corpus, batch_size=3, progress=False)
    expected, n_tokens = brute_force(gemma, corpus)
    assert stats.n_tokens.tolist() == n_tokens.tolist()
    assert torch.equal(stats.active, expected["active"])
    torch.testing.assert_close(stats.sum, expected["sum"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(stats.max, expected["max"], rtol=1e-4, atol=1e-5)


def test_collect_skips_the_unembedding(gemma):
    fired = []
    with gemma.hooks(fwd_hooks=[("blocks.17.hook_resid_post", lambda x, hook: fired.append(1)),
                                ("blocks.17.mlp.hook_pre", lambda x, hook: fired.append(0))]):
        ln.collect(gemma, ln.Corpus.from_texts({"en": ["A short text."]}), progress=False)
    assert fired == [0]  # the last block's MLP input was read, nothing after it ran


def test_deactivate_equals_zeroing_down_weights(gemma):
    units = {3: [0, 7, 2047], 12: [5, 100], 17: list(range(0, 2048, 37))}
    neurons = ln.NeuronSet.from_indices([units.get(layer, []) for layer in range(18)],
                                        width=2048, gated=True)
    tokens = gemma.to_tokens(TEXT)
    with torch.inference_mode(), gemma.hooks(fwd_hooks=ln.deactivate(neurons)):
        hooked = gemma(tokens)
    edited = copy.deepcopy(hf_reference())
    with torch.no_grad():
        for layer, idx in units.items():
            edited.model.layers[layer].mlp.down_proj.weight[:, idx] = 0
        expected = edited(tokens).logits
    torch.testing.assert_close(hooked, expected, rtol=0, atol=1e-4)


def test_logit_lens_last_layer_is_the_model_distribution(gemma):
    result = ln.lens.logit_lens(gemma, TEXT, top_k=5)
    probs = gemma(gemma.to_tokens(TEXT))[0, -1].float().softmax(-1)
    top = probs.topk(5)
    assert result.top_ids[-1, 0].tolist() == top.indices.tolist()
    torch.testing.assert_close(result.top_probs[-1, 0], top.values, atol=1e-5, rtol=1e-4)
