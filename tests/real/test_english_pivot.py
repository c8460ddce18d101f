"""Wendler et al.'s English pivot on a real model: translation between two non-English languages.

On Gemma 3 270M, P(en) must rise above P(target) in some middle layer while the target wins at the
last layer. SmolLM2 (English-centric) is measured and printed, not asserted."""

from __future__ import annotations

import pytest
import torch

from lensneurons.lens import latent_language, logit_lens, prompts

pytestmark = pytest.mark.real

PAIRS = [("de", "ru"), ("fr", "de")]
N_ITEMS = 40


@pytest.mark.parametrize(("src", "tgt"), PAIRS, ids=[f"{s}-{t}" for s, t in PAIRS])
def test_gemma_pivots_through_english(gemma, src, tgt):
    items = prompts.translation(src=src, tgt=tgt, seed=0)[:N_ITEMS]
    result = latent_language(gemma, items, batch_size=8)
    en, target = result.mean("en"), result.mean(tgt)
    print(f"\n{src}->{tgt} ({result.n_items} items) layer: P(en) / P({tgt})")
    for layer, p_en, p_t in zip(result.depths, en.tolist(), target.tolist()):
        print(f"  {layer:2d}: {p_en:.3f} / {p_t:.3f}")
    middle = [i for i, layer in enumerate(result.depths) if 3 <= layer <= 15]
    assert any(en[i] > target[i] and en[i] > 0.02 for i in middle), "no English-first layer"
    assert target[-1] > en[-1], "the target language does not win at the last layer"
    assert result.n_items >= N_ITEMS // 2


def test_smollm_curves_are_reported_and_its_last_layer_is_exact(smollm):
    items = prompts.translation(src="fr", tgt="de", seed=0)[:N_ITEMS]
    result = latent_language(smollm, items, batch_size=8)
    en, target = result.mean("en"), result.mean("de")
    print(f"\nSmolLM2 fr->de ({result.n_items} items) max P(en) {en.max():.3f} at layer "
          f"{result.depths[int(en.argmax())]}, last-layer P(de) {target[-1]:.3f}")
    lens = logit_lens(smollm, result.items[0].prompt, top_k=3)
    probs = smollm(smollm.to_tokens(result.items[0].prompt))[0, -1].float().softmax(-1)
    torch.testing.assert_close(lens.top_probs[-1, 0], probs.topk(3).values, atol=1e-5,
                               rtol=1e-4)
