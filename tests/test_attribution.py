"""Gradient attribution: equal to finite differences, batch-invariant, and saved faithfully."""

from __future__ import annotations

import types

import _models
import pytest
import torch

import lensneurons as ln
from lensneurons.core.sites import flatten_heads, get_site, unflatten_heads

SITES = ("mlp", "attn.q", "attn.k", "attn.v")
# Gated and GQA (Mistral: 2 kv heads) and non-gated (GPT-2) architectures.
FD_ARCHS = [a for a in ("mistral", "gpt2", "ht_llama", "ht_gpt2") if a in _models.ARCHS]
ITEMS = [
    ("Hello world, this is", " a"),
    ("The cat sleeps on the warm", " mat"),
    ("Bonjour", " le"),
    ("Die Katze schläft auf der Matte und", " die"),
    ("Le chat dort sur le tapis", " chaud"),
]


def double_model(arch: str):
    """A float64 copy of the tiny ``arch`` model (its own seed, so shared models stay float32).

    Hugging Face's Llama-family RMSNorm computes in float32 even in a float64 model, which makes
    finite differences noisy; this copy's norms compute in float64 (same formula).
    """
    model = _models.build(arch, seed=8101).to(torch.float64)
    for module in model.modules():
        if type(module).__name__.endswith("RMSNorm") and hasattr(module, "variance_epsilon"):
            module.forward = types.MethodType(_rms_norm, module)
    return model


def _rms_norm(self, x):
    return self.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)


def encode(model, prompt: str, answer: str) -> tuple[torch.Tensor, int]:
    view = ln.ModelView(model)
    ids = view.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    bos = [view.bos_token_id] if view.bos_token_id is not None else []
    return torch.tensor([bos + list(ids)]), view.tokenizer(answer,
                                                            add_special_tokens=False)["input_ids"][0]


def prob_with(model, tokens, y, hook_name, pos, unit, factor) -> float:
    """P(y) at the last position with unit ``unit`` at ``pos`` scaled by ``factor``."""
    def edit(x, hook):
        flat = flatten_heads(x).clone()
        flat[0, pos, unit] = flat[0, pos, unit] * factor
        return unflatten_heads(flat, x)

    with torch.no_grad(), model.hooks(fwd_hooks=[(hook_name, edit)]):
        logits = model(tokens)
    return float(logits[0, -1].double().softmax(-1)[y])


@pytest.mark.parametrize("arch", FD_ARCHS)
def test_scores_equal_finite_differences(arch):
    """score = P(y) · max_i a_i ∂P/∂a_i, each derivative checked by a central difference."""
    model = double_model(arch)
    prompt, answer = ITEMS[1]
    tokens, y = encode(model, prompt, answer)
    scores = ln.attribution(model, [(prompt, answer)], progress=False)
    with torch.no_grad():
        p = float(model(tokens)[0, -1].double().softmax(-1)[y])
    # HF eager attention takes its softmax in float32 even in a float64 model: the Llama-family
    # bridges are smooth only to float32 precision, so a wider step and tolerance there.
    eps, rel = (1e-3, 2e-2) if arch == "mistral" else (1e-5, 1e-6)
    checked = 0
    for name in SITES:
        site = get_site(model, name)
        for layer in range(ln.ModelView(model).n_layers):
            row, top = scores[name][layer], float(scores[name].abs().max())
            units = [*row.abs().topk(2).indices.tolist(), 3]
            for unit in units:
                fd = [(prob_with(model, tokens, y, site.read_hook(layer), i, unit, 1 + eps)
                       - prob_with(model, tokens, y, site.read_hook(layer), i, unit, 1 - eps))
                      / (2 * eps) for i in range(tokens.shape[1])]
                expected = p * max(fd)
                assert float(row[unit]) == pytest.approx(expected, rel=rel,
                                                         abs=rel * top)
                checked += 1
    assert checked >= 12
    assert all(float(scores[s].abs().max()) > 0 for s in SITES)


def test_first_order_estimate_of_zeroing():
    """a·∂P/∂a is the linear prediction of P − P(a := 0): close for a small activation."""
    model = double_model(FD_ARCHS[0])
    prompt, answer = ITEMS[0]
    tokens, y = encode(model, prompt, answer)
    scores = ln.attribution(model, [(prompt, answer)], sites=("attn.v",), progress=False)
    p = prob_with(model, tokens, y, "blocks.0.attn.hook_v", 0, 0, 1.0)
    site = get_site(model, "attn.v")
    unit = int(scores["attn.v"][1].abs().argmax())
    drops = [p - prob_with(model, tokens, y, site.read_hook(1), i, unit, 0.0)
             for i in range(tokens.shape[1])]
    # The best position's first-order drop is within 20% of the exact drop of zeroing it.
    assert float(scores["attn.v"][1, unit]) / p == pytest.approx(max(drops), rel=0.2)


@pytest.mark.parametrize("arch", FD_ARCHS[:2])
def test_batched_equals_one_by_one(arch):
    """Right padding leaks nothing: any batch size gives the one-item-at-a-time scores."""
    model = double_model(arch)
    batched = ln.attribution(model, ITEMS, batch_size=3, progress=False)
    singles = [ln.attribution(model, [item], progress=False) for item in ITEMS]
    for site in SITES:
        mean = torch.stack([s[site] for s in singles]).mean(0)
        # float32 softmax inside HF attention: agreement to float32 rounding, not float64.
        torch.testing.assert_close(batched[site], mean, rtol=1e-6,
                                   atol=1e-7 * float(mean.abs().max()))
        assert batched.n_items == len(ITEMS)


def test_logprob_objective_and_clamp():
    """logprob scores are prob scores / P(y)²; clamping keeps max(s, 0) per item."""
    model = double_model(FD_ARCHS[0])
    prompt, answer = ITEMS[3]
    tokens, y = encode(model, prompt, answer)
    p = prob_with(model, tokens, y, "blocks.0.attn.hook_v", 0, 0, 1.0)
    prob = ln.attribution(model, [(prompt, answer)], progress=False)
    logprob = ln.attribution(model, [(prompt, answer)], objective="logprob", progress=False)
    for site in SITES:
        torch.testing.assert_close(logprob[site] * p * p, prob[site], rtol=1e-5,
                                   atol=1e-7 * float(prob[site].abs().max()))
    # Short prompts (BOS + one token) have negative maxima; the clamp acts per item.
    short = [("Bonjour", " le"), ("Hello", " world")]
    prob = ln.attribution(model, short, progress=False)
    clamped = ln.attribution(model, short, clamp_negative=True, progress=False)
    singles = [ln.attribution(model, [item], progress=False) for item in short]
    for site in SITES:
        expected = torch.stack([s[site].clamp(min=0) for s in singles]).mean(0)
        torch.testing.assert_close(clamped[site], expected, rtol=1e-6,
                                   atol=1e-7 * float(expected.abs().max()))
    assert any((prob[s] < 0).any() for s in SITES)  # the clamp test can fail


def test_grad_free_contexts_give_the_same_scores(organism):
    """Frozen weights, no_grad and inference_mode: same scores, no parameter .grad written."""
    items = [ITEMS[0], ITEMS[4]]
    plain = ln.attribution(organism, items, sites=("mlp", "attn.k"), progress=False)
    flags = {n: p.requires_grad for n, p in organism.named_parameters()}
    try:
        for p in organism.parameters():
            p.requires_grad_(False)
        frozen = ln.attribution(organism, items, sites=("mlp", "attn.k"), progress=False)
        with torch.inference_mode():
            inference = ln.attribution(organism, items, sites=("mlp", "attn.k"), progress=False)
        with torch.no_grad():
            nograd = ln.attribution(organism, items, sites=("mlp", "attn.k"), progress=False)
    finally:
        for n, p in organism.named_parameters():
            p.requires_grad_(flags[n])
    for other in (frozen, inference, nograd):
        for site in ("mlp", "attn.k"):
            torch.testing.assert_close(other[site], plain[site])
    assert all(p.grad is None for p in organism.parameters())


def test_save_load_and_top(organism, tmp_path):
    scores = ln.attribution(organism, ITEMS[:2], sites=("mlp", "attn.q"), progress=False)
    scores.save(tmp_path / "s")
    back = ln.AttributionScores.load(tmp_path / "s", model=organism)
    assert back.sites == ["mlp", "attn.q"] and back.n_items == 2
    assert back.meta["objective"] == "prob"
    torch.testing.assert_close(back["mlp"], scores["mlp"])
    chosen = scores.neuron_sets(top_rate=0.01, site="mlp")["top"]
    assert len(chosen) == round(0.01 * 4 * 2048) and chosen.site == "mlp"
    assert float(scores["mlp"][chosen.mask].min()) >= float(scores["mlp"][~chosen.mask].max())
    with pytest.raises(ln.errors.ModelMismatchError):
        ln.AttributionScores.load(tmp_path / "s", model=_models.build(FD_ARCHS[0]))
