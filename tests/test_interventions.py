"""Interventions: hooks equal weight edits, the papers' set/add semantics, composition, no leaks."""

import pytest
import torch
from _models import hf_down_proj

import lensneurons as ln

TEXT = "The cat sleeps. Le chat dort. Кошка спит."


def some_units(model, layer_units):
    view = ln.ModelView(model)
    mask = torch.zeros(view.n_layers, view.d_mlp, dtype=torch.bool)
    for layer, units in layer_units.items():
        mask[layer, units] = True
    return ln.NeuronSet.from_mask(mask, gated=view.gated)


def hook_counts(model):
    return {name: len(hp._forward_hooks) for name, hp in model.hook_dict.items()}


def down_weight(arch, model, layer):
    """W_down of the layer and its neuron axis, for a weight edit."""
    if arch.startswith("ht_"):
        return model.blocks[layer].mlp.W_out, 0
    return hf_down_proj(arch, layer)


def test_deactivate_equals_zeroing_down_weights(arch, arch_model):
    units = {0: [1, 5, 9], 1: [0, 2]}
    tokens = arch_model.to_tokens(TEXT)
    with torch.no_grad():
        with arch_model.hooks(fwd_hooks=ln.deactivate(some_units(arch_model, units))):
            hooked = arch_model(tokens)
        saved = {}
        for layer, idx in units.items():
            weight, axis = down_weight(arch, arch_model, layer)
            saved[layer] = weight.detach().clone()
            weight.index_fill_(axis, torch.tensor(idx), 0.0)
        try:
            edited = arch_model(tokens)
        finally:
            for layer in units:
                down_weight(arch, arch_model, layer)[0].copy_(saved[layer])
        clean = arch_model(tokens)
    torch.testing.assert_close(hooked, edited, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(hooked, clean)


def post_and_parts(model, tokens, hooks, layer):
    """hook_post under ``hooks``, and act(hook_pre), hook_pre_linear of the same pass."""
    seen = {}

    def grab(name):
        def fn(x, *, hook):
            seen[name] = x.detach().clone()
        return fn

    names = [f"blocks.{layer}.mlp.hook_pre", f"blocks.{layer}.mlp.hook_post"]
    if ln.ModelView(model).gated:
        names.append(f"blocks.{layer}.mlp.hook_pre_linear")
    with torch.no_grad(), model.hooks(fwd_hooks=hooks + [(n, grab(n)) for n in names]):
        model(tokens)
    view = ln.ModelView(model)
    up = seen.get(names[-1]) if view.gated else torch.ones(1)
    return seen[names[1]], view.act_fn(seen[names[0]]), up


@pytest.mark.parametrize("op", ["set", "add", "scale"])
def test_set_add_scale_follow_the_papers(arch_model, op):
    neurons = some_units(arch_model, {1: [3, 4]})
    tokens = arch_model.to_tokens(TEXT)
    clean, act, up = post_and_parts(arch_model, tokens, [], 1)
    if op == "set":
        hooks = ln.set_activation(neurons, 2.5)
        expected_units = 2.5 * up[..., [3, 4]] if up.dim() > 1 else torch.full_like(
            clean[..., [3, 4]], 2.5)
    elif op == "add":
        hooks = ln.add_activation(neurons, 2.5)
        expected_units = (act[..., [3, 4]] + 2.5) * (up[..., [3, 4]] if up.dim() > 1 else 1)
    else:
        hooks = ln.amplify(neurons, 3.0)
        expected_units = 3.0 * clean[..., [3, 4]]
    edited, _, _ = post_and_parts(arch_model, tokens, hooks, 1)
    torch.testing.assert_close(edited[..., [3, 4]], expected_units, rtol=1e-4, atol=1e-5)
    keep = [i for i in range(clean.shape[-1]) if i not in (3, 4)]
    torch.testing.assert_close(edited[..., keep], clean[..., keep])


def test_per_neuron_values_and_positions(llama_model):
    neurons = some_units(llama_model, {0: [7], 1: [2]})
    values = torch.zeros(neurons.shape)
    values[0, 7], values[1, 2] = 1.5, -2.0
    tokens = llama_model.to_tokens(TEXT)
    edited, _, up = post_and_parts(
        llama_model, tokens, ln.set_activation(neurons, values, positions=[-1]), 1)
    clean, _, _ = post_and_parts(llama_model, tokens, [], 1)
    torch.testing.assert_close(edited[0, -1, 2], -2.0 * up[0, -1, 2])
    torch.testing.assert_close(edited[0, :-1], clean[0, :-1])


def test_layers_filter(llama_model):
    neurons = some_units(llama_model, {0: [1], 1: [1]})
    hooks = ln.deactivate(neurons, layers=[1])
    assert [name for name, _ in hooks[1:]] == ["blocks.1.mlp.hook_post"]
    assert "zero 1 units of layer 1" in repr(hooks[1][1])
    assert [name for name, _ in ln.deactivate(neurons, layers=-1)[1:]] == ["blocks.1.mlp.hook_post"]


def test_hooks_compose_and_never_leak(llama_model):
    neurons = some_units(llama_model, {0: [1, 2], 1: [3]})
    before = hook_counts(llama_model)
    tokens = llama_model.to_tokens(TEXT)
    clean = llama_model(tokens)
    both = ln.deactivate(neurons, layers=[0]) + ln.deactivate(neurons, layers=[1])
    with llama_model.hooks(fwd_hooks=both):
        combined = llama_model(tokens)
    with llama_model.hooks(fwd_hooks=ln.deactivate(neurons)):
        single = llama_model(tokens)
    torch.testing.assert_close(combined, single)
    assert hook_counts(llama_model) == before
    torch.testing.assert_close(llama_model(tokens), clean)


def test_hooks_act_during_generation(llama_model):
    neurons = some_units(llama_model, {0: list(range(0, 128, 2)), 1: list(range(0, 128, 2))})
    fired = []

    def spy(x, *, hook):
        fired.append(x.shape[1])
        assert (x[..., ::2] == 0).all()

    hooks = ln.deactivate(neurons) + [("blocks.1.mlp.hook_post", spy)]
    with llama_model.hooks(fwd_hooks=hooks):
        llama_model.generate("Le chat", max_new_tokens=3, do_sample=False, verbose=False)
    assert len(fired) == 3 and fired[-1] == 1  # prompt, then one position per cached step


def test_every_batch_row_is_edited(llama_model):
    neurons = some_units(llama_model, {1: [5]})
    tokens = llama_model.to_tokens(["Le chat dort.", "Der Hund läuft."])
    edited, _, _ = post_and_parts(llama_model, tokens, ln.deactivate(neurons), 1)
    assert (edited[..., 5] == 0).all()


def test_wrong_width_is_a_typed_error(llama_model):
    neurons = ln.NeuronSet.from_mask(torch.ones(2, 64, dtype=torch.bool))
    with pytest.raises(ln.errors.ShapeMismatchError, match="blocks.0.mlp.*width 64"):
        with llama_model.hooks(fwd_hooks=ln.deactivate(neurons)):
            llama_model("Hello")


def test_set_needs_to_know_gating(llama_model):
    bare = ln.NeuronSet.from_mask(some_units(llama_model, {0: [1]}).mask)
    with pytest.raises(ln.LensNeuronsError, match="model="):
        ln.set_activation(bare, 1.0)
    hooks = ln.set_activation(bare, 1.0, model=llama_model)
    assert [type(fn).__name__ for _, fn in hooks] == ["function", "_UpCapture", "NeuronHook"]


def test_steer_methods(llama_model):
    stats = ln.collect(llama_model, ln.Corpus.from_texts(
        {"en": ["The cat sleeps.", "A dog."], "fr": ["Le chat dort.", "Un chien."]}),
        progress=False)
    neurons = ln.lape(stats, top_rate=0.05, filter_rate=0.5, bar_ratio=0.5)
    tokens = llama_model.to_tokens("The cat")
    clean = llama_model(tokens)
    for method in ("additive", "replacement", "diffmean"):
        hooks = ln.steer(neurons, stats, "en", "fr", method=method, alpha=2.0)
        with llama_model.hooks(fwd_hooks=hooks):
            assert not torch.allclose(llama_model(tokens), clean)


def test_random_like_keeps_layer_profile():
    mask = torch.zeros(3, 20, dtype=torch.bool)
    mask[0, :4] = True
    mask[2, 5:7] = True
    neurons = ln.NeuronSet.from_mask(mask)
    baseline = ln.neurons.random_like(neurons, seed=1)
    assert baseline.per_layer() == neurons.per_layer()
    assert len(baseline & neurons) == 0
    random_like = ln.neurons.random_like
    assert random_like(neurons, seed=1) == baseline != random_like(neurons, seed=2)


def test_positions_out_of_range_during_cached_generation(llama_model):
    neurons = some_units(llama_model, {0: [1]})
    with pytest.raises(ln.errors.PositionError, match="KV cache"):
        with llama_model.hooks(fwd_hooks=ln.deactivate(neurons, positions=3)):
            llama_model.generate("Le chat dort", max_new_tokens=2, do_sample=False, verbose=False)
    with llama_model.hooks(fwd_hooks=ln.deactivate(neurons, positions=-1)):
        llama_model.generate("Le chat dort", max_new_tokens=2, do_sample=False, verbose=False)
