"""Corpus: tokenization, counted flags, packing, examples, limits, batching and bad input."""

import pytest
import torch

import lensneurons as ln

TEXTS = {"en": ["The cat sleeps on the mat.", "A dog runs."], "fr": ["Le chat dort.", "Un chien."]}


def test_bos_prepended_not_counted(llama_model):
    tokenized = ln.Corpus.from_texts(TEXTS).tokenize(llama_model)
    bos = llama_model.tokenizer.bos_token_id
    for seq in tokenized.sequences:
        assert seq.tokens[0] == bos and not seq.counted[0] and seq.counted[1:].all()
    with_bos = ln.Corpus.from_texts(TEXTS, count_bos=True).tokenize(llama_model)
    assert (with_bos.n_tokens - tokenized.n_tokens).tolist() == [2, 2]


def test_tokens_match_model_tokenization(llama_model):
    tokenized = ln.Corpus.from_texts({"en": ["The cat sleeps."]}).tokenize(llama_model)
    expected = llama_model.to_tokens("The cat sleeps.")[0].tolist()
    assert tokenized.sequences[0].tokens.tolist() == expected


def test_long_texts_are_split_not_truncated(llama_model):
    text = " ".join(["word"] * 200)
    n_body = len(llama_model.tokenizer(text, add_special_tokens=False)["input_ids"])
    tokenized = ln.Corpus.from_texts({"en": [text]}, window=16).tokenize(llama_model)
    assert all(len(seq.tokens) <= 16 for seq in tokenized.sequences)
    assert int(tokenized.n_tokens[0]) == n_body


def test_packing_fills_windows(llama_model):
    texts = {"en": ["one two three four five"] * 20}
    packed = ln.Corpus.from_texts(texts, pack=True, window=12).tokenize(llama_model)
    unpacked = ln.Corpus.from_texts(texts, window=12).tokenize(llama_model)
    assert packed.n_tokens.tolist() == unpacked.n_tokens.tolist()
    assert all(len(seq.tokens) == 12 for seq in packed.sequences[:-1])
    assert len(packed.sequences) < len(unpacked.sequences)


def test_examples_count_response_tokens_only(llama_model):
    corpus = ln.Corpus.from_examples({"fr": [("Question: 2+2?", " Réponse: quatre.")]})
    seq = corpus.tokenize(llama_model).sequences[0]
    tok = llama_model.tokenizer
    n_prompt = len(tok("Question: 2+2?", add_special_tokens=False)["input_ids"])
    n_all = len(tok("Question: 2+2? Réponse: quatre.", add_special_tokens=False)["input_ids"])
    assert int(seq.counted.sum()) == n_all - n_prompt
    assert not seq.counted[: 1 + n_prompt].any()


def test_limit_caps_each_group_exactly(llama_model):
    tokenized = ln.Corpus.from_texts(TEXTS).tokenize(llama_model).limit(5)
    assert tokenized.n_tokens.tolist() == [5, 5]


def test_batches_cover_every_token_once(llama_model):
    tokenized = ln.Corpus.from_texts(TEXTS).tokenize(llama_model)
    total = torch.zeros(2, dtype=torch.int64)
    lengths = sorted(len(seq.tokens) for seq in tokenized.sequences)
    seen = []
    for batch in tokenized.batches(3):
        assert (batch.rows.diff() >= 0).all()
        for row in range(batch.tokens.shape[0]):
            n = int(batch.counted[row].sum()) + 1  # BOS, then the counted tokens, then padding
            assert batch.counted[row, 1:n].all() and not batch.counted[row, n:].any()
            seen.append(n)
        total += batch.n_counted
        assert sum(end - start for _, start, end in batch.segments) == int(batch.counted.sum())
    assert total.tolist() == tokenized.n_tokens.tolist()
    assert sorted(seen) == lengths


def test_bad_input_raises_typed_errors(llama_model):
    with pytest.raises(ln.errors.NoGroupsError):
        ln.Corpus.from_texts({})
    with pytest.raises(ln.errors.EmptyGroupError, match="'fr'"):
        ln.Corpus.from_texts({"en": ["a"], "fr": []})
    with pytest.raises(TypeError, match="list of texts"):
        ln.Corpus.from_texts({"en": "a single string"})
    with pytest.raises(ln.errors.EmptyGroupError, match="'fr'.*whitespace"):
        ln.Corpus.from_texts({"en": ["a"], "fr": ["", " \n"]})
    # a response that the tokenizer merges into the prompt's last token has no token of its own
    assert ln.Corpus.from_texts({"x": ["The"]}).tokenize(llama_model).n_tokens.item() == 1
    merged = ln.Corpus.from_examples({"en": [("a", "b")], "fr": [("Th", "e")]})
    with pytest.raises(ln.errors.EmptyTokenizationError, match="'fr'"):
        merged.tokenize(llama_model)
