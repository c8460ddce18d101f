"""Basic facts about the tiny random models every other test relies on.

These double as a record of how each TransformerLens adapter maps the neuron hooks: if one of them
fails after a TransformerLens upgrade, lensneurons/core/ may need a new special case.
"""

from __future__ import annotations

import _models
import pytest
import torch
import torch.nn.functional as F

ACT = {
    "silu": F.silu,
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
}

PROMPTS = ["Привет мир, 你好世界", "Hello world, Γειά σου κόσμε"]


@pytest.fixture(scope="module")
def cached(arch_model):
    tokens = arch_model.to_tokens(PROMPTS)
    with torch.no_grad():
        logits, cache = arch_model.run_with_cache(tokens)
    return tokens, logits, cache


def test_archs_match_version(tl_major):
    assert _models.ARCHS
    if tl_major >= 3:
        assert {"llama", "qwen2", "mistral", "gemma", "gpt2", "neox", "bloom"} <= set(_models.ARCHS)
    else:
        assert set(_models.ARCHS) == {"ht_llama", "ht_gpt2"}


def test_tokenizer_covers_scripts(tokenizer):
    assert tokenizer.convert_tokens_to_ids(["<s>", "</s>", "<pad>"]) == [0, 1, 2]
    for sentences in _models.SENTENCES.values():
        for s in sentences:
            ids = tokenizer(s, add_special_tokens=False).input_ids
            assert ids and tokenizer.decode(ids) == s


def test_to_tokens_bos(arch_model):
    bos = arch_model.tokenizer.bos_token_id
    assert bos == 0
    assert arch_model.to_tokens("hi", prepend_bos=True)[0, 0].item() == bos
    # Some adapters (Qwen2, GPT-NeoX, BLOOM on TL 4) default to prepend_bos=False.
    default_first = arch_model.to_tokens("hi")[0, 0].item()
    assert (default_first == bos) == bool(arch_model.cfg.default_prepend_bos)


def test_forward_finite_logits(arch_model, cached):
    tokens, logits, _ = cached
    assert logits.shape == (*tokens.shape, arch_model.cfg.d_vocab)
    assert logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


def test_cfg(arch, arch_model):
    cfg = arch_model.cfg
    assert cfg.n_layers == 2 and cfg.d_model == 64 and cfg.n_heads == 4
    assert bool(cfg.gated_mlp) == (arch in _models.GATED)
    assert cfg.d_mlp in (128, 192, 256)
    if arch == "bloom" and cfg.act_fn != _models.TRUE_ACT_FN[arch]:
        pytest.xfail(f"adapter gap: BLOOM cfg.act_fn={cfg.act_fn!r}, its MLP is GELU-tanh")
    assert cfg.act_fn == _models.TRUE_ACT_FN[arch]


def test_hook_names(arch, arch_model):
    for layer in range(arch_model.cfg.n_layers):
        names = [f"blocks.{layer}.mlp.hook_pre", f"blocks.{layer}.mlp.hook_post"]
        names += [f"blocks.{layer}.attn.hook_{x}" for x in "qkvz"]
        names += [f"blocks.{layer}.hook_resid_post"]
        if arch in _models.GATED:
            names.append(f"blocks.{layer}.mlp.hook_pre_linear")
        missing = [n for n in names if n not in arch_model.hook_dict]
        assert not missing


def test_hook_widths(arch, arch_model, cached):
    tokens, _, cache = cached
    cfg = arch_model.cfg
    n_kv = _models.N_KV_HEADS.get(arch, cfg.n_heads)
    for layer in range(cfg.n_layers):
        sites = ["hook_pre", "hook_post"] + (["hook_pre_linear"] if arch in _models.GATED else [])
        for site in sites:
            assert cache[f"blocks.{layer}.mlp.{site}"].shape == (*tokens.shape, cfg.d_mlp), site
        a = f"blocks.{layer}.attn"
        assert cache[f"{a}.hook_q"].shape == (*tokens.shape, cfg.n_heads, cfg.d_head)
        assert cache[f"{a}.hook_k"].shape == (*tokens.shape, n_kv, cfg.d_head)
        assert cache[f"{a}.hook_v"].shape == (*tokens.shape, n_kv, cfg.d_head)
        assert cache[f"{a}.hook_z"].shape == (*tokens.shape, cfg.n_heads, cfg.d_head)
        assert cache[f"blocks.{layer}.hook_resid_post"].shape == (*tokens.shape, cfg.d_model)


def test_hook_post_is_act_of_pre(arch, arch_model, cached):
    _, _, cache = cached
    act = ACT[_models.TRUE_ACT_FN[arch]]
    for layer in range(arch_model.cfg.n_layers):
        pre = cache[f"blocks.{layer}.mlp.hook_pre"]
        expected = act(pre)
        if arch in _models.GATED:
            expected = expected * cache[f"blocks.{layer}.mlp.hook_pre_linear"]
        torch.testing.assert_close(cache[f"blocks.{layer}.mlp.hook_post"], expected)


def test_gate_not_degenerate(arch_model, cached):
    _, _, cache = cached
    for layer in range(arch_model.cfg.n_layers):
        frac = (cache[f"blocks.{layer}.mlp.hook_pre"] > 0).float().mean().item()
        assert 0.3 < frac < 0.7


def test_zero_at_hook_post_equals_weight_edit(arch, arch_model):
    if arch.startswith("ht_"):
        model_w = lambda layer: (arch_model.blocks[layer].mlp.W_out, 0)  # noqa: E731
    else:
        model_w = lambda layer: _models.hf_down_proj(arch, layer)  # noqa: E731
    tokens = arch_model.to_tokens(PROMPTS)
    neurons = torch.tensor([3, 7, 20])

    def zero(x, hook):
        x = x.clone()
        x[..., neurons] = 0.0
        return x

    with torch.no_grad():
        base = arch_model(tokens)
        for layer in range(arch_model.cfg.n_layers):
            hooked = arch_model.run_with_hooks(
                tokens, fwd_hooks=[(f"blocks.{layer}.mlp.hook_post", zero)]
            )
            weight, axis = model_w(layer)
            saved = weight.detach().clone()
            try:
                weight.index_fill_(axis, neurons, 0.0)
                edited = arch_model(tokens)
            finally:
                weight.copy_(saved)
            assert (hooked - base).abs().max() > 1e-4
            torch.testing.assert_close(hooked, edited)
        torch.testing.assert_close(arch_model(tokens), base)


def test_seed_changes_weights_and_cache_returns_same_object():
    arch = _models.ARCHS[0]
    assert _models.build(arch) is _models.build(arch, seed=0)
    a = _models.build(arch, seed=0)
    b = _models.build(arch, seed=1)
    tokens = a.to_tokens("hi")
    with torch.no_grad():
        assert not torch.allclose(a(tokens), b(tokens))
