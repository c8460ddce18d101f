"""ModelView and sites: sizes, activation functions and the hook map on every architecture."""

import pytest
import torch
from _models import GATED, N_KV_HEADS, TRUE_ACT_FN

import lensneurons as ln
from lensneurons.core.model import _ACTIVATIONS

TEXT = "Hello world, bonjour le monde. Привет мир."


def test_view_sizes_and_gating(arch, arch_model):
    view = ln.ModelView(arch_model)
    assert view.n_layers == 2
    assert view.gated == (arch in GATED)
    assert view.n_kv_heads == N_KV_HEADS.get(arch, 4)
    assert view.tokenizer is arch_model.tokenizer
    assert view.layer_device(1) == torch.device("cpu")


def test_act_fn_is_the_one_the_model_applies(arch, arch_model):
    x = torch.linspace(-4, 4, 101)
    expected = _ACTIVATIONS[TRUE_ACT_FN[arch]](x)
    torch.testing.assert_close(ln.ModelView(arch_model).act_fn(x), expected)


def test_hook_map_holds_numerically(arch, arch_model):
    view = ln.ModelView(arch_model)
    tokens = arch_model.to_tokens(TEXT)
    _, cache = arch_model.run_with_cache(tokens)
    for layer in range(view.n_layers):
        pre = cache[f"blocks.{layer}.mlp.hook_pre"]
        post = cache[f"blocks.{layer}.mlp.hook_post"]
        expected = view.act_fn(pre)
        if view.gated:
            expected = expected * cache[f"blocks.{layer}.mlp.hook_pre_linear"]
        torch.testing.assert_close(post, expected, rtol=1e-4, atol=1e-5)
        assert pre.shape[-1] == view.d_mlp


@pytest.mark.parametrize("name", ["mlp", "attn.q", "attn.k", "attn.v"])
def test_site_widths_match_hook_tensors(arch_model, name):
    site = ln.get_site(arch_model, name)
    tokens = arch_model.to_tokens(TEXT)
    _, cache = arch_model.run_with_cache(tokens)
    x = cache[site.read_hook(0)]
    assert site.units(x, site.read_hook(0)).shape[-1] == site.width


def test_unknown_site_and_layer_raise(llama_model):
    with pytest.raises(ln.errors.UnknownSiteError, match="known sites"):
        ln.get_site(llama_model, "mlp.out")
    with pytest.raises(ln.errors.UnknownSiteError, match="register it first"):
        ln.get_site(llama_model, "sae:res-jb")  # an SAE site that was never registered
    with pytest.raises(ln.errors.UnknownSiteError, match="Layer 7"):
        ln.ModelView(llama_model).hook_name(7, "mlp.hook_pre")


def test_not_a_model_raises():
    with pytest.raises(ln.errors.UnsupportedModelError, match="not a TransformerLens model"):
        ln.ModelView(torch.nn.Linear(2, 2))


def test_fingerprint_recognises_the_model(llama_model, arch_model):
    view = ln.ModelView(llama_model)
    view.check_fingerprint(view.fingerprint(), "stats")
    if arch_model is not llama_model:
        with pytest.raises(ln.errors.ModelMismatchError):
            ln.ModelView(arch_model).check_fingerprint(view.fingerprint(), "stats")
