"""SAE-feature LAPE: SAELens format, latent statistics, latent interventions, the shipped SAE."""

from __future__ import annotations

import json

import pytest
import torch

import lensneurons as ln
from lensneurons.sae import SAE

HOOK = "blocks.1.hook_resid_post"


def random_sae(d_in=128, d_sae=96, hook=HOOK, seed=0, **kwargs):
    """A random SAE whose latents fire on some tokens and not on others."""
    gen = torch.Generator().manual_seed(seed)
    w_enc = torch.randn(d_in, d_sae, generator=gen) / d_in**0.5
    return SAE(w_enc, torch.randn(d_sae, generator=gen) * 0.3 - 0.2,
               torch.randn(d_sae, d_in, generator=gen), torch.randn(d_in, generator=gen) * 0.1,
               hook_name=hook, name=f"random-{seed}-{d_sae}", **kwargs)


def test_encode_decode_follow_the_formula():
    sae = random_sae()
    x = torch.randn(5, 7, 128)
    f = sae.encode(x)
    expected = torch.relu((x - sae.b_dec) @ sae.W_enc + sae.b_enc)
    torch.testing.assert_close(f, expected)
    index = torch.tensor([3, 50, 7])
    torch.testing.assert_close(sae.encode(x, index), expected[..., index])
    torch.testing.assert_close(sae.decode(f), f @ sae.W_dec + sae.b_dec)


def test_topk_and_jumprelu():
    top = random_sae(activation="topk", k=4)
    f = top.encode(torch.randn(6, 128))
    assert (f.gt(0).sum(-1) <= 4).all() and f.gt(0).any()
    index = torch.tensor([0, 5])
    torch.testing.assert_close(top.encode(torch.ones(2, 128), index),
                               top.encode(torch.ones(2, 128))[:, index])
    threshold = torch.full((96,), 0.5)
    jump = random_sae(activation="jumprelu", threshold=threshold)
    x = torch.randn(6, 128)
    pre = (x - jump.b_dec) @ jump.W_enc + jump.b_enc
    torch.testing.assert_close(jump.encode(x), pre * (pre > 0.5))


def test_save_load_round_trip_and_old_layout(tmp_path):
    sae = random_sae(activation="topk", k=5)
    sae.save(tmp_path / "a")
    again = SAE.load(tmp_path / "a")
    assert (again.hook_name, again.activation, again.k, again.name) == (HOOK, "topk", 5, "a")
    for key in ("W_enc", "b_enc", "W_dec", "b_dec"):
        assert torch.equal(getattr(again, key), getattr(sae, key))
    # the layout before SAELens 6: hook and activation at the top level
    folder = tmp_path / "old"
    random_sae().save(folder)
    cfg = json.loads((folder / "cfg.json").read_text())
    old = {"d_in": 128, "d_sae": 96, "hook_name": HOOK, "hook_layer": 1,
           "activation_fn_str": "relu", "apply_b_dec_to_input": False,
           "normalize_activations": "none", "dtype": "float32"}
    assert cfg["metadata"]["hook_name"] == HOOK
    (folder / "cfg.json").write_text(json.dumps(old))
    loaded = SAE.load(folder)
    assert loaded.activation == "relu" and not loaded.apply_b_dec_to_input


def brute_latents(model, corpus, sae):
    """Per group, counted tokens with each latent > 0, via run_with_cache."""
    view = ln.ModelView(model)
    tokenized = corpus.tokenize(view)
    counts = torch.zeros(len(corpus.groups), sae.d_sae, dtype=torch.int64)
    sums = torch.zeros(len(corpus.groups), sae.d_sae, dtype=torch.float64)
    for batch in tokenized.batches(4):
        _, cache = model.run_with_cache(batch.tokens, names_filter=sae.hook_name)
        f = sae.encode(cache[sae.hook_name].float())
        for row in range(len(batch.tokens)):
            picked = f[row][batch.counted[row]]
            counts[batch.rows[row]] += picked.gt(0).sum(0)
            sums[batch.rows[row]] += picked.double().sum(0)
    return counts, sums


def test_collect_counts_latents_exactly(organism, corpus):
    sae = random_sae()
    site = ln.sae_site(sae)
    stats = ln.collect(organism, corpus, site=site, batch_size=3, progress=False)
    assert stats.site == site and stats.active.shape == (7, 1, 96)
    counts, sums = brute_latents(organism, corpus, sae)
    assert torch.equal(stats.active[:, 0], counts)
    assert counts.sum() > 0 and (counts < stats.n_tokens[:, None]).any()  # not all, not none
    torch.testing.assert_close(stats.sum[:, 0], sums, rtol=1e-5, atol=1e-4)
    sets = ln.lape(stats, top_rate=0.2)  # LAPE runs unchanged on latent statistics
    assert sets["fr"].shape == (1, 96) and sets["fr"].site == site


def test_site_with_one_sae_per_block(organism, corpus):
    first, second = random_sae(hook="blocks.0.hook_resid_post", seed=1, d_sae=32), random_sae(
        hook="blocks.3.hook_resid_post", seed=2, d_sae=32)
    site = ln.sae_site([first, second], "two-blocks")
    stats = ln.collect(organism, corpus, site=site, progress=False)
    assert stats.active.shape == (7, 2, 32)
    assert torch.equal(stats.active[:, 1], brute_latents(organism, corpus, second)[0])


def run(model, tokens, hooks=()):
    with torch.no_grad(), model.hooks(fwd_hooks=list(hooks)):
        return model(tokens)


def test_untouched_latents_leave_the_output_unchanged(organism):
    sae = random_sae()
    site = ln.sae_site(sae)
    mask = torch.zeros(1, 96, dtype=torch.bool)
    mask[0, :20] = True
    neurons = ln.NeuronSet.from_mask(mask, site=site)
    tokens = organism.to_tokens(["Le chat dort sur le canapé.", "Der Hund schläft."])
    base = run(organism, tokens)
    assert torch.equal(run(organism, tokens, ln.amplify(neurons, 1.0, model=organism)), base)
    assert torch.equal(run(organism, tokens, ln.add_activation(neurons, 0.0)), base)
    assert not torch.allclose(run(organism, tokens, ln.amplify(neurons, 3.0)), base)


@pytest.mark.parametrize("activation", ["relu", "topk"])
def test_zeroing_a_latent_equals_brute_force(organism, activation):
    sae = random_sae(activation=activation, k=12)
    site = ln.sae_site(sae, f"zero-{activation}")
    tokens = organism.to_tokens(["Le chat dort sur le canapé.", "Η γάτα κοιμάται."])
    capture = _Capture(sae)
    run(organism, tokens, [(HOOK, capture)])
    fired = capture.f.gt(0).flatten(0, 1).sum(0)
    latents = fired.topk(3).indices  # latents that fire here, so zeroing them changes something
    mask = torch.zeros(1, 96, dtype=torch.bool)
    mask[0, latents] = True

    def brute(x, hook):
        full = sae.encode(x)
        edited = full.clone()
        edited[..., latents] = 0
        return sae.decode(edited) + (x - sae.decode(full))

    expected = run(organism, tokens, [(HOOK, brute)])
    got = run(organism, tokens, ln.deactivate(ln.NeuronSet.from_mask(mask, site=site)))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(got, run(organism, tokens), atol=1e-3)


class _Capture:
    def __init__(self, sae):
        self.sae, self.f = sae, None

    def __call__(self, x, hook):
        self.f = self.sae.encode(x)


def test_latent_hooks_respect_positions(organism):
    sae = random_sae()
    site = ln.sae_site(sae)
    mask = torch.zeros(1, 96, dtype=torch.bool)
    mask[0, :40] = True
    tokens = organism.to_tokens("Le chat dort sur le canapé.")
    base = run(organism, tokens)
    got = run(organism, tokens, ln.deactivate(ln.NeuronSet.from_mask(mask, site=site),
                                              positions=-1))
    torch.testing.assert_close(got[:, :-1], base[:, :-1])


def test_shipped_sae_has_language_specific_latents(organism):
    sae = SAE.load(ln.sae.ORGANISM_SAE)
    assert (sae.hook_name, sae.d_in, sae.d_sae) == ("blocks.2.hook_resid_post", 128, 1024)
    stats = ln.collect(organism, ln.Corpus.from_texts(ln.organism.texts("heldout")),
                       site=ln.sae_site(sae), progress=False)
    sets = ln.lape(stats, per_group_budget=10)
    probs = stats.probs()[:, 0]  # [group, latent]
    for g, group in enumerate(stats.groups):
        index = sets[group].indices[0]
        assert len(index) == 10, group
        own = probs[g, index].mean()
        others = torch.cat([probs[:g, index], probs[g + 1:, index]]).mean(1)  # per other group
        assert own > 2 * others.max(), (group, own, others)
    fr = stats.groups.index("fr")
    index = sets["fr"].indices[0]
    assert probs[fr, index].mean() > 10 * probs[:, index].mean(1).sort().values[-2]


def test_sae_lens_reads_and_writes_the_same_sae(tmp_path):
    sae_lens = pytest.importorskip(
        "sae_lens", reason="sae-lens is installed only with TransformerLens 2 (.venv-tl2)")
    ours = random_sae(activation="topk", k=6)
    ours.save(tmp_path / "ours")
    theirs = sae_lens.SAE.load_from_disk(str(tmp_path / "ours"))
    x = torch.randn(4, 128)
    with torch.no_grad():
        torch.testing.assert_close(theirs.encode(x), ours.encode(x))
        torch.testing.assert_close(theirs.decode(ours.encode(x)), ours.decode(ours.encode(x)))
    theirs.save_model(str(tmp_path / "theirs"))
    back = SAE.load(tmp_path / "theirs")
    assert (back.hook_name, back.activation, back.k) == (HOOK, "topk", 6)
    with torch.no_grad():
        torch.testing.assert_close(back.encode(x), theirs.encode(x))
