"""Bad inputs to SAE loading, SAE sites and latent interventions (see tests/_catalog.py)."""

from __future__ import annotations

import json

import _catalog
import pytest
import torch
from _catalog import Case

import lensneurons as ln
from lensneurons.errors import (
    ParameterError,
    ResultNotFoundError,
    SAEFormatError,
    ShapeMismatchError,
    UnknownSiteError,
)
from lensneurons.sae import SAE


def sae(d_in=128, d_sae=16, hook="blocks.1.hook_resid_post", seed=0, **kwargs):
    gen = torch.Generator().manual_seed(seed)
    return SAE(torch.randn(d_in, d_sae, generator=gen), torch.zeros(d_sae),
               torch.randn(d_sae, d_in, generator=gen), torch.zeros(d_in), hook_name=hook,
               name=f"bad-{seed}", **kwargs)


def collect_on(c, one):
    texts = {g: lines[:2] for g, lines in ln.organism.texts("heldout").items()}
    return ln.collect(c.model, ln.Corpus.from_texts(texts), site=ln.sae_site(one, replace=True),
                      progress=False)


def folder_with(c, name, **changes):
    """A saved SAE folder whose cfg.json has ``changes`` applied (``None`` deletes a key)."""
    path = c.tmp_path / name
    if not path.exists():
        sae().save(path)
    cfg = json.loads((path / "cfg.json").read_text())
    for key, value in changes.items():
        if value is None:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    (path / "cfg.json").write_text(json.dumps(cfg))
    return path


def without_weights(c):
    path = c.tmp_path / "no-weights"
    sae().save(path)
    (path / "sae_weights.safetensors").unlink()
    return SAE.load(path)


def latent_set(c, width):
    site = ln.sae_site(sae(), "bad-set", replace=True)
    return ln.NeuronSet.from_mask(torch.ones(1, width, dtype=torch.bool), site=site)


def same_twice(c):
    first = ln.sae_site(sae(seed=5), "twice", replace=True)
    return first, ln.sae_site(sae(seed=5), "twice")


def zero_latents_change_output(hooks, c):
    tokens = c.model.to_tokens("Le chat dort.")
    with torch.no_grad():
        base = c.model(tokens)
        with c.model.hooks(fwd_hooks=hooks):
            assert not torch.allclose(c.model(tokens), base)


CASES = [
    Case("sae-width-mismatch", "collect(model, corpus, site=sae_site(SAE with d_in=64))",
         lambda c: collect_on(c, sae(d_in=64)), ShapeMismatchError, "d_in=64"),
    Case("sae-width-mismatch-at-run", "SAE with d_in=64 at blocks.1.ln2.hook_normalized",
         lambda c: collect_on(c, sae(d_in=64, hook="blocks.1.ln2.hook_normalized")),
         ShapeMismatchError, "trained on this model"),
    Case("sae-unknown-hook", "SAE at blocks.9.hook_resid_post on a 4-block model",
         lambda c: collect_on(c, sae(hook="blocks.9.hook_resid_post")), UnknownSiteError,
         "does not have"),
    Case("sae-unknown-activation", "cfg.json with activation_fn_str='tanh'",
         lambda c: SAE.load(folder_with(c, "tanh", architecture=None,
                                        activation_fn_str="tanh")),
         SAEFormatError, "Supported: standard"),
    Case("sae-normalized-input", "cfg.json with normalize_activations='layer_norm'",
         lambda c: SAE.load(folder_with(c, "norm", normalize_activations="layer_norm")),
         SAEFormatError, "only 'none' is supported"),
    Case("sae-no-hook-name", "cfg.json without hook_name",
         lambda c: SAE.load(folder_with(c, "nohook", metadata={})), SAEFormatError,
         "names no hook_name"),
    Case("sae-topk-without-k", "cfg.json architecture='topk' without k",
         lambda c: SAE.load(folder_with(c, "nok", architecture="topk")), SAEFormatError,
         "needs k"),
    Case("sae-missing-weights", "SAE.load(folder without sae_weights.safetensors)",
         without_weights, ResultNotFoundError, "sae_weights.safetensors is missing"),
    Case("sae-missing-folder", "SAE.load('no/such/folder')",
         lambda c: SAE.load(c.tmp_path / "nothing-here"), ResultNotFoundError, "cfg.json"),
    Case("sae-bad-decoder-shape", "SAE(W_dec of shape [d_in, d_sae])",
         lambda c: SAE(torch.zeros(8, 4), torch.zeros(4), torch.zeros(8, 4), torch.zeros(8),
                       hook_name="blocks.0.hook_resid_post"), SAEFormatError, "W_dec"),
    Case("sae-unregistered-site", "collect(model, corpus, site='sae:never-registered')",
         lambda c: ln.collect(c.model, ln.Corpus.from_texts({"en": ["Hello."]}),
                              site="sae:never-registered", progress=False),
         UnknownSiteError, "ln.sae_site"),
    Case("sae-name-taken", "sae_site(other_sae, name already used)",
         lambda c: (ln.sae_site(sae(seed=1), "taken", replace=True),
                    ln.sae_site(sae(seed=2), "taken")), ParameterError, "replace=True"),
    Case("sae-same-sae-twice", "sae_site(equal SAE, same name) twice",
         same_twice, check=lambda pair, c: pair[0] == pair[1] or pytest.fail()),
    Case("sae-not-an-sae", "sae_site('blocks.1.hook_resid_post')",
         lambda c: ln.sae_site("blocks.1.hook_resid_post"), ParameterError, "SAE.load"),
    Case("sae-blocks-out-of-order", "sae_site([SAE at block 3, SAE at block 1])",
         lambda c: ln.sae_site([sae(hook="blocks.3.hook_resid_post"), sae()], "order"),
         ParameterError, "increasing blocks"),
    Case("sae-set-wrong-width", "deactivate(set of 50 latents on a 16-latent SAE site)",
         lambda c: ln.deactivate(latent_set(c, 50)), ShapeMismatchError, "16"),
    Case("sae-set-on-model", "deactivate(latent set, model=model)",
         lambda c: ln.deactivate(latent_set(c, 16), model=c.model),
         check=zero_latents_change_output),
    Case("sae-encode-wrong-width", "sae.encode(tensor of width 64)",
         lambda c: sae().encode(torch.zeros(2, 64)), ParameterError, "width 128"),
]


@pytest.mark.parametrize("case", _catalog.params(CASES))
def test_case(case, bad):
    _catalog.run_case(case, bad, _catalog.area_of(__name__))
