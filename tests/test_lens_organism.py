"""The lens on the model organism: readout identity, word lists fit its tokenizer, MWork runs."""

from __future__ import annotations

import pytest
import torch

organism = pytest.importorskip("lensneurons.subjects.organism")

from lensneurons.lens import (  # noqa: E402
    latent_language,
    logit_lens,
    mwork,
    prompts,
    start_tokens,
)


@pytest.fixture(scope="module")
def model():
    folder = organism.organism_dir()
    if not (folder / "config.json").is_file() or not list(folder.glob("*.safetensors")):
        pytest.skip("organism weights not trained/shipped yet")
    return organism.load()


def test_organism_last_layer_and_languages(model):
    result = logit_lens(model, "Le chat dort sur le", top_k=3)
    probs = model(model.to_tokens("Le chat dort sur le"))[0, -1].softmax(-1)
    torch.testing.assert_close(result.top_probs[-1, 0], probs.topk(3).values, atol=1e-5, rtol=1e-4)
    assert set(prompts.LANGUAGES) >= set(organism.LANGUAGES)


@pytest.mark.parametrize("tgt", ["de", "ru"])
def test_organism_latent_language(model, tgt):
    items = prompts.translation(src="fr", tgt=tgt, limit=40)
    res = latent_language(model, items)
    assert res.n_items >= 10
    words = sorted({it.words[tgt] for it in items})
    singles = [start_tokens(model.tokenizer, w).single_token for w in words]
    assert res.single_token_fraction[tgt] == sum(singles) / len(words)
    p_tgt, p_en = res.mean(tgt), res.mean("en")
    assert p_tgt[-1] > 2 * p_tgt[0]  # the target language rises toward the output...
    assert p_en[-1] < p_en[0]  # ...while English falls


def test_organism_mwork_with_hooks(model):
    items = prompts.translation(src="fr", tgt="de", limit=20)
    n = model.cfg.n_layers
    hooks = [(f"blocks.{n - 1}.mlp.hook_post", lambda x, hook: torch.zeros_like(x))]
    view = mwork(model, items, {"last mlp off": hooks}, n1=1, n2=1)
    assert not torch.allclose(view.baseline.probs, view.intervened["last mlp off"].probs)
