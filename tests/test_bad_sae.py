"""Bad inputs to SAE loading, SAE sites and latent interventions (see tests/_catalog.py)."""

from __future__ import annotations

import json
import uuid

import _catalog
import pytest
import torch
from _catalog import Case

import lensneurons as ln
from lensneurons.detect.sae_lape import sae_lape
from lensneurons.errors import (
    CheckpointMismatchError,
    MissingStatisticError,
    ModelMismatchError,
    NegativeCountError,
    ParameterError,
    ResultNotFoundError,
    SAEFormatError,
    ShapeMismatchError,
    TooFewGroupsError,
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


def saved_with_sae(c):
    """Statistics and LAPE sets collected on SAE A (seed 3) as ``sae:<name>``, saved; the site's
    name is unique to the call. Returns the name and the two folders."""
    name = f"swap-{uuid.uuid4().hex[:8]}"
    texts = {g: lines[:2] for g, lines in ln.organism.texts("heldout").items()}
    stats = ln.collect(c.model, ln.Corpus.from_texts(texts), site=ln.sae_site(sae(seed=3), name),
                       progress=False)
    assert stats.meta["fingerprint"]["sae"] == sae(seed=3).digest
    folder = c.tmp_path / name
    stats.save(folder / "stats")
    ln.lape(stats, top_rate=0.5).save(folder / "sets")
    return name, folder


def in_new_session(c, seed):
    """As a new Python process would: register the SAE of ``seed`` under the saved sets' site
    name, then load the sets saved with SAE A (seed 3)."""
    name, folder = saved_with_sae(c)
    ln.sae_site(sae(seed=seed), name, replace=True)  # replace: this process registered A
    return ln.NeuronSets.load(folder / "sets"), ln.ActivationStats.load(folder / "stats")


def resume_with_other_sae(c):
    """A checkpointed collection on SAE A (seed 3), resumed with SAE B under the same name."""
    name = f"resume-{uuid.uuid4().hex[:8]}"
    corpus = ln.Corpus.from_texts({g: lines[:2]
                                   for g, lines in ln.organism.texts("heldout").items()})
    checkpoint = c.tmp_path / name
    ln.collect(c.model, corpus, site=ln.sae_site(sae(seed=3), name), checkpoint=checkpoint,
               progress=False)
    ln.sae_site(sae(seed=4), name, replace=True)
    return ln.collect(c.model, corpus, site=f"sae:{name}", checkpoint=checkpoint, resume=True,
                      progress=False)


def first_nonempty(sets):
    return next(sets[g] for g in sets.groups if len(sets[g]))


def edits_latents(hooks, c):
    assert hooks
    zero_latents_change_output(hooks, c)


def documented(docs=((4, 1), (0, 3)), n_docs=(4, 3), **changes):
    """Statistics of groups en, fr on a [1, 2] layer with per-document counts."""
    args = dict(counts={"en": torch.tensor([[40, 2]]), "fr": torch.tensor([[1, 30]])},
                n_tokens={"en": 50, "fr": 50},
                doc_counts={g: torch.tensor([d]) for g, d in zip(("en", "fr"), docs)},
                n_docs=dict(zip(("en", "fr"), n_docs)) if isinstance(n_docs, tuple) else n_docs)
    args.update(changes)
    return ln.ActivationStats.from_counts(args.pop("counts"), args.pop("n_tokens"), **args)


def one_per_group(sets, c):
    assert sets["en"].indices[0].tolist() == [0] and sets["fr"].indices[0].tolist() == [1]


def nothing_selected(sets, c):
    assert all(len(s) == 0 for s in sets.values()) and sets.meta["kept"] == 0


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
    # --- the site's SAE weights travel with statistics and sets ----------------------------
    Case("sae-sets-other-sae-same-name",
         "NeuronSets.load(sets made with SAE A); sae_site(SAE B, same name); deactivate(s)",
         lambda c: ln.deactivate(first_nonempty(in_new_session(c, seed=4)[0])),
         ModelMismatchError, "other SAE weights.*Register the SAE it was made with"),
    Case("sae-sets-other-sae-with-model",
         "... sae_site(SAE B, same name); deactivate(s, model=model)",
         lambda c: ln.deactivate(first_nonempty(in_new_session(c, seed=4)[0]), model=c.model),
         ModelMismatchError, "other SAE weights"),
    Case("sae-stats-other-sae-same-name",
         "ActivationStats.load(stats made with SAE A); sae_site(SAE B, same name); "
         "deactivate(lape(stats)[g])",
         lambda c: ln.deactivate(first_nonempty(ln.lape(in_new_session(c, seed=4)[1],
                                                        top_rate=0.5))),
         ModelMismatchError, "other SAE weights"),
    Case("sae-sets-same-sae-again",
         "NeuronSets.load(sets made with SAE A); sae_site(SAE A loaded again); deactivate(s)",
         lambda c: ln.deactivate(first_nonempty(in_new_session(c, seed=3)[0]), model=c.model),
         check=edits_latents),
    Case("sae-encode-wrong-width", "sae.encode(tensor of width 64)",
         lambda c: sae().encode(torch.zeros(2, 64)), ParameterError, "width 128"),
    # --- sae_lape: SAE-LAPE's per-document rule ----------------------------------------------
    Case("sae-lape-without-document-counts", "sae_lape(stats)  # collected without them",
         lambda c: sae_lape(c.stats), MissingStatisticError, "document_stats=True"),
    Case("sae-lape-one-group", "sae_lape(stats.select(['en']))",
         lambda c: sae_lape(documented().select(["en"])), TooFewGroupsError, "two groups"),
    Case("sae-lape-not-stats", "sae_lape(neuron_sets)",
         lambda c: sae_lape(c.sets), ParameterError, "ActivationStats"),
    Case("sae-lape-example-rate-zero", "sae_lape(stats, example_rate=0)",
         lambda c: sae_lape(documented(), example_rate=0), ParameterError, "example_rate"),
    Case("sae-lape-example-rate-percent", "sae_lape(stats, example_rate=98)",
         lambda c: sae_lape(documented(), example_rate=98), ParameterError, r"\(0, 1\]"),
    Case("sae-lape-token-rate-one", "sae_lape(stats, token_rate=1.0)",
         lambda c: sae_lape(documented(), token_rate=1.0), ParameterError, "token_rate"),
    Case("sae-lape-token-rate-nan", "sae_lape(stats, token_rate=nan)",
         lambda c: sae_lape(documented(), token_rate=float("nan")), ParameterError,
         "token_rate"),
    Case("sae-lape-ratio-zero", "sae_lape(stats, ratio=0)",
         lambda c: sae_lape(documented(), ratio=0), ParameterError, "ratio"),
    Case("sae-lape-ratio-above-one", "sae_lape(stats, ratio=1.5)",
         lambda c: sae_lape(documented(), ratio=1.5), ParameterError, "ratio"),
    Case("sae-lape-per-group-budget-zero", "sae_lape(stats, per_group_budget=0)",
         lambda c: sae_lape(documented(), per_group_budget=0), ParameterError,
         "per_group_budget"),
    Case("sae-lape-lang-specific-string", "sae_lape(stats, lang_specific='yes')",
         lambda c: sae_lape(documented(), lang_specific="yes"), ParameterError, "True or False"),
    Case("sae-lape-planted", "sae_lape(stats)  # en fires in 4/4 documents, fr in 3/3",
         lambda c: sae_lape(documented()), check=one_per_group),
    Case("sae-lape-nothing-passes", "sae_lape(stats, example_rate=1.0)  # no unit in every doc",
         lambda c: sae_lape(documented(docs=((3, 1), (0, 2))), example_rate=1.0),
         check=nothing_selected),
    Case("sae-lape-doc-counts-without-n-docs",
         "ActivationStats.from_counts(counts, n_tokens, doc_counts=docs)",
         lambda c: documented(n_docs=None), ParameterError, "come together"),
    Case("sae-lape-doc-counts-above-n-docs",
         "from_counts(..., doc_counts={'en': [[5, 1]]}, n_docs={'en': 4, ...})",
         lambda c: documented(docs=((5, 1), (0, 3))), ParameterError, "more documents"),
    Case("sae-lape-doc-counts-negative", "from_counts(..., doc_counts={'en': [[-1, 1]]}, ...)",
         lambda c: documented(docs=((-1, 1), (0, 3))), NegativeCountError, "negative"),
    Case("sae-lape-doc-counts-other-shape",
         "from_counts(..., doc_counts={'en': [[1, 1, 1]], ...})  # counts are [1, 2]",
         lambda c: documented(docs=((1, 1, 1), (0, 3, 0))), ShapeMismatchError,
         "shaped like counts"),
    Case("sae-lape-doc-counts-other-groups",
         "from_counts(..., doc_counts={'en': ..., 'de': ...})",
         lambda c: documented(n_docs={"en": 4, "de": 3}), ShapeMismatchError,
         "different groups"),
    Case("sae-resume-other-weights",
         "collect(model, corpus, site='sae:x', checkpoint=ckpt, resume=True) after "
         "sae_site(other_sae, 'x', replace=True)",
         resume_with_other_sae, CheckpointMismatchError, "fingerprint|other"),
]


@pytest.mark.parametrize("case", _catalog.params(CASES))
def test_case(case, bad):
    _catalog.run_case(case, bad, _catalog.area_of(__name__))
