"""Logit lens: readout identity on every architecture, padding, interventions, bad input."""

from __future__ import annotations

import _models
import pytest
import torch

from lensneurons.errors import (
    EmptyTokenSetError,
    PositionOutOfRangeError,
    ReadoutError,
    VocabularyError,
)
from lensneurons.lens import (
    logit_lens,
)

PROMPTS = ["The cat sleeps on the warm mat.", "Hallo Welt", "Le chat dort sur le tapis chaud et"]


def test_last_layer_is_model_output(arch_model):
    model = arch_model
    result = logit_lens(model, PROMPTS[0], top_k=5, token_sets={"a": [3, 4, 5]})
    probs = model(model.to_tokens(PROMPTS[0]))[0, -1].float().softmax(-1)
    top = probs.topk(5)
    assert result.top_ids[-1, 0].tolist() == top.indices.tolist()
    torch.testing.assert_close(result.top_probs[-1, 0], top.values, atol=1e-5, rtol=1e-4)
    entropy = -(probs * probs.log()).sum() / torch.log(torch.tensor(2.0))
    torch.testing.assert_close(result.entropy[-1, 0], entropy, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(result.set_probs[-1, 0, 0], probs[[3, 4, 5]].sum(), atol=1e-6,
                               rtol=1e-4)


def test_intermediate_layer_recomputes_final_norm(llama_model):
    """Layer 1 equals unembed(ln_final(resid)) with the norm's own statistics (no cached scale)."""
    model = llama_model
    tokens = model.to_tokens(PROMPTS[0])
    _, cache = model.run_with_cache(tokens, names_filter="blocks.0.hook_resid_post")
    h = cache["blocks.0.hook_resid_post"][0, -1]
    rms = h.pow(2).mean().add(model.cfg.eps).rsqrt()
    weight = model.ln_final.w if hasattr(model.ln_final, "w") else model.ln_final.weight
    logits = (h * rms * weight) @ model.W_U + model.b_U
    result = logit_lens(model, tokens, depths=[1], top_k=3)
    torch.testing.assert_close(result.top_probs[0, 0], logits.softmax(-1).topk(3).values,
                               atol=1e-5, rtol=1e-4)


def test_shapes_dataframe_and_top_tokens(llama_model):
    result = logit_lens(llama_model, PROMPTS, token_sets={"x": [5], "y": [6, 7]}, top_k=4)
    n = llama_model.cfg.n_layers
    assert result.depths == list(range(1, n + 1))
    assert result.entropy.shape == (n, 3)
    assert result.set_probs.shape == (n, 3, 2)
    assert result.top_ids.shape == (n, 3, 4)
    tokens = result.top_tokens(2)
    assert len(tokens) == n and len(tokens[0]) == 3 and len(tokens[0][0]) == 2
    top = result.top_ids[0, 0, 0].item()
    assert tokens[0][0][0] == (llama_model.tokenizer.decode([top]),
                               pytest.approx(result.top_probs[0, 0, 0].item()))
    frame = result.table()
    assert len(frame) == n * 3
    assert {"depth", "entropy_bits", "top_token", "p_x", "p_y"} <= set(frame.columns)
    assert (result.entropy > 0).all() and (result.entropy <= 10).all()  # 512-token vocabulary


def test_embedding_layer_and_multiple_positions(llama_model):
    result = logit_lens(llama_model, PROMPTS[0], depths=[0, -1], positions=[0, -1], top_k=2)
    assert result.depths == [0, llama_model.cfg.n_layers]
    assert result.entropy.shape == (2, 1, 2)
    assert result.positions[0, 0] == 0


def test_batched_equals_one_by_one(arch_model):
    batched = logit_lens(arch_model, PROMPTS, top_k=3, token_sets={"s": [[5, 6], [7], [8, 9]]})
    for i, prompt in enumerate(PROMPTS):
        sets = {"s": [[5, 6], [7], [8, 9]][i:i + 1]}
        single = logit_lens(arch_model, prompt, top_k=3, token_sets=sets)
        torch.testing.assert_close(batched.entropy[:, i], single.entropy[:, 0], atol=1e-4,
                                   rtol=1e-4)
        torch.testing.assert_close(batched.set_probs[:, i], single.set_probs[:, 0], atol=1e-6,
                                   rtol=1e-3)
        assert batched.top_ids[-1, i].tolist() == single.top_ids[-1, 0].tolist()


def test_small_batch_size_and_token_inputs(llama_model):
    tokens = llama_model.to_tokens(PROMPTS[0])
    a = logit_lens(llama_model, tokens.repeat(3, 1), batch_size=2)
    b = logit_lens(llama_model, tokens)
    torch.testing.assert_close(a.entropy, b.entropy.expand(-1, 3), atol=1e-5, rtol=1e-5)


def test_interventions_apply_and_equal_weight_edit():
    import lensneurons as ln

    arch = "llama" if "llama" in _models.ARCHS else "ht_llama"
    model = _models.build(arch)
    mask = torch.zeros(model.cfg.n_layers, model.cfg.d_mlp, dtype=torch.bool)
    mask[0, :48] = True
    mask[1, 10:60] = True
    neurons = ln.NeuronSet(mask) if hasattr(ln, "NeuronSet") else __import__(
        "lensneurons.neurons", fromlist=["NeuronSet"]).NeuronSet(mask)
    from lensneurons.intervene.hooks import deactivate

    base = logit_lens(model, PROMPTS, top_k=5)
    with model.hooks(fwd_hooks=deactivate(neurons)):
        hooked = logit_lens(model, PROMPTS, top_k=5)
    assert not torch.allclose(base.entropy, hooked.entropy, atol=1e-6)
    assert not model.hook_dict["blocks.0.mlp.hook_post"].fwd_hooks  # nothing left behind
    if arch.startswith("ht_"):
        weights = [model.blocks[layer].mlp.W_out for layer in range(model.cfg.n_layers)]
        rows = True
    else:
        hf = _models.hf_model(arch)
        weights = [hf.model.layers[layer].mlp.down_proj.weight
                   for layer in range(model.cfg.n_layers)]
        rows = False
    saved = [w.detach().clone() for w in weights]
    try:
        with torch.no_grad():
            for layer, w in enumerate(weights):
                if rows:
                    w[mask[layer]] = 0
                else:
                    w[:, mask[layer]] = 0
        edited = logit_lens(model, PROMPTS, top_k=5)
    finally:
        with torch.no_grad():
            for w, s in zip(weights, saved, strict=True):
                w.copy_(s)
    torch.testing.assert_close(hooked.entropy, edited.entropy, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(hooked.top_probs, edited.top_probs, atol=1e-6, rtol=1e-4)


def test_bad_positions_depths_and_sets(llama_model):
    with pytest.raises(PositionOutOfRangeError, match="outside prompt"):
        logit_lens(llama_model, "Hi", positions=50)
    with pytest.raises(PositionOutOfRangeError, match="Depth 99 does not exist"):
        logit_lens(llama_model, "Hi", depths=[99])
    with pytest.raises(EmptyTokenSetError, match="empty"):
        logit_lens(llama_model, "Hi", token_sets={"none": [[]]})
    with pytest.raises(VocabularyError, match="outside the vocabulary"):
        logit_lens(llama_model, "Hi", token_sets={"big": [10**7]})


def test_readout_hook_is_refused(llama_model):
    def bend(x, hook):
        return x * torch.linspace(0.1, 3.0, x.shape[-1])

    if "unembed.hook_out" not in llama_model.hook_dict:
        pytest.skip("TL 2.x: hooks on ln_final/unembed also fire inside the lens readout")
    with llama_model.hooks(fwd_hooks=[("unembed.hook_out", bend)]):
        with pytest.raises(ReadoutError, match="last layer"):
            logit_lens(llama_model, "Hello world")


def test_lens_pass_reads_only_the_asked_positions(arch, arch_model, monkeypatch):
    """Past the last block the lens's pass carries only the read positions, where the
    architecture allows it (HF GPT-2 reshapes to the input's length: it gets a full pass), and
    both passes give the same lens."""
    from lensneurons.lens import logit as logit_module

    seen = []

    def logits_shape(x, hook):
        seen.append(tuple(x.shape[:2]))

    hook_name = "unembed.hook_out" if "unembed.hook_out" in arch_model.hook_dict else None
    hooks = [(hook_name, logits_shape)] if hook_name else []
    with arch_model.hooks(fwd_hooks=hooks):
        narrow = logit_lens(arch_model, PROMPTS, top_k=3)
    narrows = logit_module._NARROWS[arch_model]
    assert narrows == (arch != "gpt2")  # TL 2.x's HookedTransformer (ht_*) narrows too
    if hook_name and narrows:
        assert seen[-1] == (len(PROMPTS), 1)  # logits at the 3 read positions only
    monkeypatch.setitem(logit_module._NARROWS, arch_model, False)
    full = logit_lens(arch_model, PROMPTS, top_k=3)
    torch.testing.assert_close(narrow.top_probs, full.top_probs, atol=1e-5, rtol=1e-4)
    assert torch.equal(narrow.top_ids, full.top_ids)
    torch.testing.assert_close(narrow.entropy, full.entropy, atol=1e-4, rtol=1e-4)
