"""The residual stream as a site, language directions (diffmean, PCA) and steering with them.

Everything is checked against the model itself: the collected means against ``run_with_cache``
one sequence at a time, the directions against a brute-force computation from those caches, the
hook against the same vector added at the next block's input, and generation under the hook
against the argmax of the forward pass.
"""

from __future__ import annotations

from dataclasses import replace

import _greedy
import _models
import numpy as np
import pytest
import torch

import lensneurons as ln
from lensneurons.errors import ModelMismatchError, ShapeMismatchError

TEXTS = {lang: _models.SENTENCES[lang] for lang in ("en", "de", "fr")}


def cached_resid(model, corpus):
    """Per sequence: its group and the residual stream after every block on counted tokens."""
    site = ln.get_site(model, "resid")
    out = []
    for seq in corpus.tokenize(model).sequences:
        _, cache = model.run_with_cache(seq.tokens[None])
        out.append((seq.group, [cache[site.read_hook(layer)][0][seq.counted].double()
                                for layer in range(site.n_layers)]))
    return out


@pytest.fixture(scope="module")
def resid_case(arch_model):
    corpus = ln.Corpus.from_texts(TEXTS)
    stats = ln.collect(arch_model, corpus, site="resid", batch_size=2, progress=False)
    return arch_model, corpus, stats, cached_resid(arch_model, corpus)


def test_resid_site_reads_the_residual_stream_after_each_block(arch_model):
    site = ln.get_site(arch_model, "resid")
    assert site.width == arch_model.cfg.d_model
    assert site.read_hook(0) == site.write_hook(0) == "blocks.0.hook_resid_post"


def test_collected_resid_means_are_the_cached_means(resid_case):
    model, corpus, stats, cached = resid_case
    for g, group in enumerate(corpus.groups):
        rows = [layers for gi, layers in cached if gi == g]
        for layer in range(model.cfg.n_layers):
            tokens = torch.cat([r[layer] for r in rows])
            expected = tokens.mean(0)
            assert torch.allclose(stats.mean(group)[layer].double(), expected, rtol=1e-5,
                                  atol=1e-6 * float(expected.abs().max()))


def test_diffmean_direction_is_the_normalised_difference_of_means(resid_case):
    model, corpus, stats, cached = resid_case
    d = ln.diffmean_directions(stats, "fr")
    assert d.against == ["en", "de"] and d.method == "diffmean"
    for layer in range(model.cfg.n_layers):
        means = {g: torch.cat([r[layer] for gi, r in cached if gi == i]).mean(0)
                 for i, g in enumerate(corpus.groups)}
        diff = means["fr"] - (means["en"] + means["de"]) / 2
        assert torch.allclose(d.vectors[layer].double(), diff / diff.norm(), atol=1e-5)
        assert float(d.gap[layer]) == pytest.approx(float(diff.norm()), rel=1e-5)
        everything = torch.cat([r[layer] for _, r in cached])
        rms = everything.pow(2).sum(-1).mean().sqrt()
        assert float(d.resid_norm[layer]) == pytest.approx(float(rms), rel=1e-5)
    one = ln.diffmean_directions(stats, "fr", against="en")
    assert one.against == ["en"] and not torch.allclose(one.vectors, d.vectors)


def test_pca_direction_is_the_separating_principal_component(arch_model):
    corpus = ln.Corpus.from_texts(TEXTS)
    d = ln.pca_directions(arch_model, corpus, "fr", n_components=3, batch_size=2,
                          progress=False)
    cached = cached_resid(arch_model, corpus)
    groups = np.array([g for g, _ in cached])
    for layer in range(arch_model.cfg.n_layers):
        x = torch.stack([r[layer].mean(0) for _, r in cached]).numpy()
        centred = x - x.mean(0)
        _, _, basis = np.linalg.svd(centred, full_matrices=False)
        component = int(d.details.loc[layer, "component"])
        vector = d.vectors[layer].double().numpy()
        assert abs(abs(vector @ basis[component]) - 1) < 1e-4  # a principal axis, +-
        projected = centred @ basis[:3].T
        others = np.mean([projected[groups == g].mean(0) for g in (0, 1)], axis=0)
        gap = projected[groups == 2].mean(0) - others
        spread = np.sqrt((projected[groups == 2].var(0, ddof=1)
                          + projected[groups != 2].var(0, ddof=1)) / 2)
        assert component == int(np.argmax(np.abs(gap) / spread))
        # signed towards the target: fr sequences project higher than the others
        along = centred @ vector
        assert along[groups == 2].mean() > along[groups != 2].mean()


def test_add_direction_is_the_vector_added_to_the_next_block_input(arch_model):
    corpus = ln.Corpus.from_texts(TEXTS)
    stats = ln.collect(arch_model, corpus, site="resid", progress=False)
    d = ln.diffmean_directions(stats, "de")
    tokens = corpus.tokenize(arch_model).sequences[0].tokens[None]
    vector = 2.0 * d.resid_norm[0] * d.vectors[0]

    def add(x, *, hook):
        return x + vector.to(x.dtype)

    with torch.inference_mode():
        hooked = arch_model.run_with_hooks(
            tokens, fwd_hooks=ln.add_direction(d, 2.0, layer=0, model=arch_model))
        reference = arch_model.run_with_hooks(tokens, fwd_hooks=[("blocks.1.hook_resid_pre", add)])
        plain = arch_model(tokens)
    assert torch.allclose(hooked, reference, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(hooked, plain, atol=1e-3)
    assert not arch_model.hook_dict["blocks.0.hook_resid_post"].fwd_hooks  # no leak


def test_add_direction_at_chosen_positions_edits_only_those(organism):
    corpus = ln.Corpus.from_texts(ln.organism.texts("heldout"))
    d = ln.diffmean_directions(ln.collect(organism, corpus, site="resid", progress=False), "fr")
    seen = {}

    def after(x, *, hook):
        seen["after"] = x.clone()

    tokens = organism.to_tokens("The cat sleeps on the mat")
    with torch.inference_mode():
        organism.run_with_hooks(tokens, fwd_hooks=[("blocks.1.hook_resid_post", after)])
        plain = seen.pop("after")
        organism.run_with_hooks(tokens, fwd_hooks=[
            *ln.add_direction(d, 1.5, layer=1, positions=-1, model=organism),
            ("blocks.1.hook_resid_post", after)])
    edited = seen["after"]
    assert torch.equal(edited[:, :-1], plain[:, :-1])
    added = edited[0, -1] - plain[0, -1]
    assert torch.allclose(added, 1.5 * d.resid_norm[1] * d.vectors[1], atol=1e-4)
    assert float(added.norm()) == pytest.approx(1.5 * float(d.resid_norm[1]), rel=1e-4)


def test_generation_under_a_direction_is_the_forward_argmax(organism):
    corpus = ln.Corpus.from_texts(ln.organism.texts("heldout"))
    d = ln.diffmean_directions(ln.collect(organism, corpus, site="resid", progress=False), "fr")
    hooks = ln.add_direction(d, 1.0, layer=2, model=organism)
    _greedy.assert_same_as_forward(organism, ["The cat", "Hello world, this"], 8, hooks)


def test_directions_save_load_and_refuse_another_model(tmp_path, organism):
    corpus = ln.Corpus.from_texts(ln.organism.texts("heldout"))
    d = ln.pca_directions(organism, corpus, "de", progress=False)
    back = ln.Directions.load(d.save(tmp_path / "dirs"), model=organism)
    assert torch.equal(back.vectors, d.vectors) and back.table().equals(d.table())
    assert back.fingerprint == d.fingerprint
    fig = back.plot()
    assert fig.axes and "de" in back.summary_line()
    other = _models.build("llama" if "llama" in _models.ARCHS else "ht_llama")
    with pytest.raises(ShapeMismatchError, match="Make the directions on this model"):
        ln.add_direction(back, 1.0, layer=0, model=other)
    slice_ = [[v + 1.0 for v in row] for row in back.fingerprint["embedding_slice"]]
    tampered = dict(back.fingerprint, embedding_slice=slice_)  # same shape, other weights
    with pytest.raises(ModelMismatchError, match="other weights"):
        ln.add_direction(replace(back, fingerprint=tampered), 1.0, layer=0, model=organism)
