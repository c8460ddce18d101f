"""Generation says what the model's forward pass says: greedy continuations, token for token.

Every tiny architecture and the organism, without hooks and under intervention hooks, on the
installed TransformerLens (TL 4 in ``make test``, TL 2 in ``make test-tl2``), against the
hand-written greedy loop of ``tests/_greedy.py``.
"""

from __future__ import annotations

import _greedy
import _models
import pytest
import torch

import lensneurons as ln
from lensneurons.evaluate import check_kv_cache, decoding_mode, generate

PROMPTS = ["Le chat dort", "The cat sleeps on the", "Die Katze"]
N_NEW = 12


def intervention(model, seed=0):
    """Additive and scaling hooks on a random tenth of every layer's MLP units."""
    generator = torch.Generator().manual_seed(seed)
    mask = torch.rand(model.cfg.n_layers, model.cfg.d_mlp, generator=generator) < 0.1
    gated = getattr(model.cfg, "gated_mlp", False)
    neurons = ln.NeuronSet.from_mask(mask, gated=gated)
    return [*ln.add_activation(neurons, 2.0), *ln.amplify(neurons, 3.0)]


def assert_same_as_forward(model, hooks, **options):
    _greedy.assert_same_as_forward(model, PROMPTS, N_NEW, hooks, **options)


@pytest.fixture(params=["plain", "hooks"])
def hooks_of(request):
    return (lambda model: []) if request.param == "plain" else intervention


def test_greedy_generation_equals_the_forward_argmax(arch_model, hooks_of):
    assert_same_as_forward(arch_model, hooks_of(arch_model))


def test_organism_generation_equals_the_forward_argmax(organism, hooks_of):
    assert_same_as_forward(organism, hooks_of(organism))
    assert_same_as_forward(organism, hooks_of(organism), use_past_kv_cache=False)


def test_batched_prompts_give_the_single_prompt_continuations(organism):
    """Prompts of one length share a batch; a batch changes no continuation."""
    prompts = ["Le chat dort", "Le chien dort", "Der Hund schläft"]
    together = generate(organism, prompts, max_new_tokens=8)
    alone = [generate(organism, [p], max_new_tokens=8)[0] for p in prompts]
    assert together == alone


def test_the_cache_check_is_remembered_and_names_the_environment(organism):
    check = check_kv_cache(organism)
    assert check is check_kv_cache(organism)
    assert "transformers" in check.environment
    assert check.agrees == (check.first_difference is None)
    assert decoding_mode(organism) == check.mode
    assert decoding_mode(organism, False) == "full-forward"


def test_hooks_on_chosen_positions_decode_with_the_full_forward(organism):
    mask = torch.zeros(organism.cfg.n_layers, organism.cfg.d_mlp, dtype=torch.bool)
    mask[:, :8] = True
    hooks = ln.amplify(ln.NeuronSet.from_mask(mask, gated=True), 4.0, positions=[1])
    assert decoding_mode(organism, None, hooks) == "full-forward"
    assert_same_as_forward(organism, hooks)


def test_forcing_rate_says_how_it_decoded(organism):
    result = ln.forcing_rate(organism, ["Le chat"], [], "fr", max_new_tokens=4)
    assert result.decoding == decoding_mode(organism)
    forced = ln.forcing_rate(organism, ["Le chat"], [], "fr", max_new_tokens=4,
                             use_past_kv_cache=False)
    assert forced.decoding == "full-forward"


def test_sampling_repeats_with_its_seed(organism):
    options = dict(max_new_tokens=6, do_sample=True, n_samples=3, temperature=0.8)
    first = generate(organism, ["Le chat"], seed=5, **options)
    assert first == generate(organism, ["Le chat"], seed=5, **options)


def test_stop_at_eos_false_runs_past_the_end(organism):
    [[short]] = generate(organism, ["Le chat"], max_new_tokens=40)
    [[long]] = generate(organism, ["Le chat"], max_new_tokens=40, stop_at_eos=False)
    assert long.startswith(short)


@pytest.mark.skipif(_models.TL_MAJOR < 3, reason="the bridge's cache is HF's")
def test_a_refuted_cache_is_refused_when_asked_for(organism, monkeypatch):
    from lensneurons.errors import KVCacheError
    from lensneurons.evaluate import KVCacheCheck
    from lensneurons.evaluate import generation as _generate

    refuted = KVCacheCheck(False, 16, 1, "test")
    monkeypatch.setattr(_generate, "check_kv_cache", lambda model: refuted)
    with pytest.raises(KVCacheError, match="Leave use_past_kv_cache unset"):
        generate(organism, ["Le chat"], max_new_tokens=2, use_past_kv_cache=True)
    assert decoding_mode(organism) == "full-forward"


def test_prompts_holding_the_pad_id_decode_with_the_full_forward(organism):
    """TransformerLens 2 masks pad tokens only when it decodes with its cache."""
    continuations = generate(organism, ["Le <pad> chat"], max_new_tokens=6)
    assert continuations.decoding == "full-forward"
    assert_same_as_forward(organism, [], use_past_kv_cache=None)
    ids, _ = _greedy.greedy_loop(organism, "Le <pad> chat", 6)
    assert continuations[0][0] == organism.tokenizer.decode(ids.tolist(),
                                                           skip_special_tokens=True)


def test_sae_latent_hooks_on_chosen_positions_decode_with_the_full_forward(organism):
    from lensneurons.sae import SAE

    generator = torch.Generator().manual_seed(0)
    d_model = organism.cfg.d_model
    sae = SAE(torch.randn(d_model, 16, generator=generator), torch.zeros(16),
              torch.randn(16, d_model, generator=generator), torch.zeros(d_model),
              hook_name="blocks.1.hook_resid_post", name="generation-test")
    site = ln.sae_site(sae, replace=True)
    mask = torch.zeros(1, 16, dtype=torch.bool)
    mask[0, :4] = True
    latents = ln.NeuronSet.from_mask(mask, site=site)
    assert decoding_mode(organism, None, ln.amplify(latents, 3.0, positions=[1])) == "full-forward"
    every = ln.amplify(latents, 3.0)
    assert decoding_mode(organism, None, every) == check_kv_cache(organism).mode
    assert_same_as_forward(organism, every)


def test_a_check_under_live_hooks_is_not_remembered():
    from lensneurons.evaluate import generation as _generate

    model = _models.build(_models.ARCHS[0], seed=7)
    mask = torch.zeros(model.cfg.n_layers, model.cfg.d_mlp, dtype=torch.bool)
    mask[:, :4] = True
    gated = getattr(model.cfg, "gated_mlp", False)
    with model.hooks(fwd_hooks=ln.amplify(ln.NeuronSet.from_mask(mask, gated=gated), 50.0,
                                          positions=-1)):
        check_kv_cache(model)
    assert model not in _generate._CHECKS or not _generate._CHECKS[model]
    check_kv_cache(model)
    assert len(_generate._CHECKS[model]) == 1


def test_a_context_too_short_for_the_probe_never_uses_the_cache():
    model = _models.build(_models.ARCHS[0], seed=8)
    n_ctx = model.cfg.n_ctx
    try:
        model.cfg.n_ctx = 13
        assert check_kv_cache(model).mode == "full-forward"
    finally:
        model.cfg.n_ctx = n_ctx
