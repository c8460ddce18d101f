"""Start(w) token sets, prompt builders, latent-language curves, the MWork view and plots."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch

from lensneurons.errors import (
    EmptyTokenSetError,
    NoItemsLeftError,
    UnknownLanguageError,
    VocabularyUnavailableError,
)
from lensneurons.lens import (
    LensItem,
    latent_language,
    load_words,
    mwork,
    prompts,
    stage_split,
    start_tokens,
)

matplotlib.use("Agg")


# --- Start(w) ------------------------------------------------------------------------------
def test_start_tokens_are_decoded_prefixes(tokenizer):
    ts = start_tokens(tokenizer, "Katze")
    assert ts.ids
    for s in ts.strings:
        assert "Katze".startswith(s) or " Katze".startswith(s)
    first = tokenizer.encode("Katze", add_special_tokens=False)[0]
    assert first in ts.ids
    assert all(tokenizer.decode([i]).strip() for i in ts.ids)  # no bare-space token


def test_start_tokens_non_latin_first_byte(tokenizer):
    ts = start_tokens(tokenizer, "кошка")
    # byte-level BPE stores the first UTF-8 byte (0xD0) as the printable character 'Ð'
    first_byte = tokenizer.get_vocab()["Ð"]
    assert first_byte in ts.ids
    assert any(tokenizer.decode([i]) in ("к", " к", "ко", " ко") for i in ts.ids)


def test_start_tokens_sentencepiece_byte_fallback():
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "▁": 1, "▁ch": 2, "at": 3, "▁chat": 4, "<0xD0>": 5, "c": 6}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>", byte_fallback=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="never")
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback()])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>")
    chat = start_tokens(fast, "chat")
    assert {2, 4, 6} <= set(chat.ids) and 0 not in chat.ids and 1 not in chat.ids
    assert chat.single_token
    assert 5 in start_tokens(fast, "кошка").ids


def test_start_tokens_errors(tokenizer):
    with pytest.raises(EmptyTokenSetError):
        start_tokens(tokenizer, "  ")

    class NoVocab:
        def decode(self, ids):
            return ""

    with pytest.raises(VocabularyUnavailableError, match="vocabulary"):
        start_tokens(NoVocab(), "dog")


# --- prompts -------------------------------------------------------------------------------
def test_word_lists_are_parallel():
    en = load_words("en")
    assert len(en) >= 80
    for lang in prompts.LANGUAGES:
        wl = load_words(lang)
        assert set(wl.words) == set(en.words)
        assert all(s.count("___") == 1 for s in wl.cloze.values())
    with pytest.raises(UnknownLanguageError, match="No word list"):
        load_words("xx")


def test_prompt_shapes_and_seeds():
    items = prompts.translation(src="fr", tgt="de", seed=3)
    assert items == prompts.translation(src="fr", tgt="de", seed=3)
    lines = items[0].prompt.splitlines()
    assert len(lines) == 5 and lines[-1] == 'Français: "chien" - Deutsch: "'
    assert lines[0].startswith('Français: "') and '" - Deutsch: "' in lines[0]
    assert items[0].words["en"] == "dog" and items[0].target == "de"
    rep = prompts.repetition(lang="ru", limit=3)
    assert rep[0].task == "repetition" and rep[0].prompt.endswith('Русский: "')
    cl = prompts.cloze(lang="en", limit=2)
    assert len(cl[0].prompt.splitlines()) == 3
    assert cl[0].prompt.endswith('A "___" barks at night. Answer: "')


# --- latent language -----------------------------------------------------------------------
# The tiny models have a context of 64 tokens: prompts without demonstrations fit in it (a longer
# prompt raises ContextLengthError; it was once silently truncated to its first 64 tokens).
def test_latent_language_counts_and_intervals(llama_model):
    items = prompts.translation(src="fr", tgt="ru", limit=24, n_demos=0)
    res = latent_language(llama_model, items)
    assert res.languages == ("en", "ru")
    assert res.n_items + sum(res.dropped.values()) == 24
    assert res.probs.shape == (llama_model.cfg.n_layers, res.n_items, 2)
    lo, hi = res.interval("en")
    x = res.values("en").double().numpy()  # [layer, item]
    half = 1.959964 * x.std(1, ddof=1) / np.sqrt(x.shape[1])  # mean +- z s / sqrt(n)
    assert lo.numpy() == pytest.approx(x.mean(1) - half, rel=1e-5, abs=1e-7)
    assert hi.numpy() == pytest.approx(x.mean(1) + half, rel=1e-5, abs=1e-7)
    assert set(res.single_token_fraction) == {"en", "ru"}
    frame = res.table()
    assert set(frame["quantity"]) == {"en", "ru", "entropy"}
    boot = latent_language(llama_model, items, ci="bootstrap")
    blo, bhi = boot.interval("ru")
    nlo, nhi = res.interval("ru")
    # the percentile bootstrap of a mean is about as wide as the normal interval...
    assert (bhi - blo).numpy() == pytest.approx((nhi - nlo).numpy(), rel=0.35)
    # ...and seeded: the same seed gives the same bounds, another seed others
    assert torch.equal(boot.interval("ru", seed=3)[0], boot.interval("ru", seed=3)[0])
    assert not torch.equal(boot.interval("ru", seed=3)[0], boot.interval("ru", seed=4)[0])
    fig = res.plot()
    assert fig.axes


def test_latent_language_drops_overlapping_and_unknown(llama_model):
    same = LensItem(prompt='English: "cat" - English: "', task="translation", source="en",
                    target="de", id="x", words={"en": "cat", "de": "cat"})
    missing = LensItem(prompt="x", task="translation", source="en", target="de", id="y",
                       words={"en": "dog"})
    with pytest.raises(NoItemsLeftError, match="dropped"):
        latent_language(llama_model, [same, missing])
    good = prompts.translation(src="fr", tgt="ru", limit=10, n_demos=0)
    res = latent_language(llama_model, [same, missing, *good], languages=("en", "ru"))
    assert res.dropped.get("missing_word", 0) >= 2  # neither "same" nor "missing" has "ru"


def test_latent_language_under_hooks_changes(llama_model):
    items = prompts.translation(src="fr", tgt="ru", limit=12, n_demos=0)
    base = latent_language(llama_model, items)
    with llama_model.hooks(fwd_hooks=[("blocks.0.hook_resid_post", lambda x, hook: 3 * x)]):
        hooked = latent_language(llama_model, items)
    assert not torch.allclose(base.entropy, hooked.entropy)


# --- MWork ---------------------------------------------------------------------------------
def test_stage_split_from_n1_n2_and_curves(llama_model):
    assert stage_split(n_layers=8, n1=2, n2=3) == {
        "understanding": [1, 2], "task_solving": [3, 4, 5], "generation": [6, 7, 8]}
    with pytest.raises(ValueError):
        stage_split(n_layers=4, n1=3, n2=3)
    items = prompts.translation(src="fr", tgt="ru", limit=12, n_demos=0)
    res = latent_language(llama_model, items)
    stages = stage_split(res)
    flat = stages["understanding"] + stages["task_solving"] + stages["generation"]
    assert flat == res.depths


def test_mwork_view(llama_model):
    items = prompts.translation(src="fr", tgt="ru", limit=12, n_demos=0)
    mask = torch.zeros(llama_model.cfg.n_layers, llama_model.cfg.d_mlp, dtype=torch.bool)
    mask[1, :20] = True

    class FakeSet:
        pass

    fake = FakeSet()
    fake.mask = mask
    hooks = [("blocks.1.mlp.hook_post", lambda x, hook: x * (~mask[1]).float())]
    view = mwork(llama_model, items, {"mask": hooks}, neurons=fake)
    assert view.layer_counts.tolist() == [0, 20]
    assert view.intervened["mask"].n_items == view.baseline.n_items
    assert view.delta("entropy").shape == (llama_model.cfg.n_layers,)
    frame = view.table()
    assert set(frame["condition"]) == {"baseline", "mask"}
    assert view.plot().axes
    fixed = mwork(llama_model, items, hooks, n1=1, n2=1)
    assert fixed.stages["understanding"] == [1]


def test_lens_result_plot(llama_model):
    from lensneurons.lens import logit_lens

    assert logit_lens(llama_model, "Hello world").plot().axes
    assert logit_lens(llama_model, "Hello world", token_sets={"a": [5]}).plot().axes
