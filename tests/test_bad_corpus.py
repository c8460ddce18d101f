"""Bad inputs to Corpus and TokenizedCorpus (see tests/_catalog.py)."""

from __future__ import annotations

import _catalog
import numpy as np
import pytest
from _catalog import Case

import lensneurons as ln
from lensneurons.errors import (
    ContextLengthError,
    EmptyGroupError,
    EmptyTokenizationError,
    InvalidTextError,
    NoGroupsError,
    ParameterError,
)

TEXTS = {"en": ["The cat sleeps on the mat.", "A dog barks."],
         "fr": ["Le chat dort sur le tapis.", "Un chien aboie."]}


def texts(**extra):
    return ln.Corpus.from_texts({**TEXTS, **extra})


def tokenized(c):
    return texts().tokenize(c.model)


def blank_dropped(c):
    with pytest.warns(UserWarning, match=r"Dropped 2 of the 3 texts of group 'de'.*whitespace"):
        return texts(de=["Der Hund bellt.", "   ", "\n\t"])


def blank_responses_dropped(c):
    with pytest.warns(UserWarning, match=r"Dropped 1 of the 2 examples of group 'fr'"):
        return ln.Corpus.from_examples({"fr": [("Q: chat? R:", " chat"), ("Q: chien? R:", " ")]})


def counts_only_real_texts(corpus, c):
    """The blank texts are gone: 'de' counts exactly the tokens of its one real text."""
    assert len(corpus.items["de"]) == 1
    n = corpus.tokenize(c.model).n_tokens[corpus.groups.index("de")]
    assert n == len(c.model.to_tokens("Der Hund bellt.", prepend_bos=False)[0])


def one_example(corpus, c):
    assert corpus.items["fr"] == [("Q: chat? R:", " chat")]


def fits_context(tok, c):
    assert max(len(s.tokens) for s in tok.sequences) == c.model.cfg.n_ctx


def long_text(c):
    return ln.Corpus.from_texts({"en": ["word " * 600]}, window=c.model.cfg.n_ctx).tokenize(
        c.model)


def batch_count(expected):
    def check(batches, c):
        assert len(list(batches)) == expected

    return check


def same_as_list(corpus, c):
    assert corpus.items == {"en": TEXTS["en"]}


NFC, NFD = "fran\u00e7ais", "franc\u0327ais"  # print alike: "français"


def merged(name, first, second):
    def check(corpus, c):
        assert corpus.groups == [name]
        assert corpus.items == {name: [*first, *second]}
        assert corpus.tokenize(c.model).n_tokens.tolist() == ln.Corpus.from_texts(
            {name: [*first, *second]}).tokenize(c.model).n_tokens.tolist()

    return check


CASES = [
    # --- texts ------------------------------------------------------------------------------
    Case("corpus-text-none", "Corpus.from_texts({'en': ['a', None]})",
         lambda c: ln.Corpus.from_texts({"en": ["a", None]}), InvalidTextError,
         "Text 1 of group 'en' is NoneType None, not a string"),
    Case("corpus-text-number", "Corpus.from_texts({'en': ['a', 42]})",
         lambda c: ln.Corpus.from_texts({"en": ["a", 42]}), InvalidTextError, "not a string"),
    Case("corpus-text-bytes", "Corpus.from_texts({'en': [b'abc']})",
         lambda c: ln.Corpus.from_texts({"en": [b"abc"]}), InvalidTextError, "decode"),
    Case("corpus-group-one-string", "Corpus.from_texts({'en': 'a text'})",
         lambda c: ln.Corpus.from_texts({"en": "a text"}), InvalidTextError, "list of texts"),
    Case("corpus-group-not-a-list", "Corpus.from_texts({'en': 5})",
         lambda c: ln.Corpus.from_texts({"en": 5}), InvalidTextError, "list of texts"),
    Case("corpus-group-generator", "Corpus.from_texts({'en': (t for t in texts)})",
         lambda c: ln.Corpus.from_texts({"en": (t for t in TEXTS["en"])}), check=same_as_list),
    Case("corpus-whitespace-texts", "Corpus.from_texts({..., 'de': ['Der Hund bellt.', '  ']})",
         blank_dropped, check=counts_only_real_texts),
    Case("corpus-whitespace-group", "Corpus.from_texts({'en': ['a'], 'fr': [' ', '\\t']})",
         lambda c: ln.Corpus.from_texts({"en": ["a"], "fr": [" ", "\t"]}), EmptyGroupError,
         "group 'fr' is empty or whitespace"),
    Case("corpus-empty-group", "Corpus.from_texts({'en': ['a'], 'fr': []})",
         lambda c: ln.Corpus.from_texts({"en": ["a"], "fr": []}), EmptyGroupError,
         "Remove the group"),
    Case("corpus-no-groups", "Corpus.from_texts({})",
         lambda c: ln.Corpus.from_texts({}), NoGroupsError, "no groups"),
    Case("corpus-not-a-dict", "Corpus.from_texts(['a', 'b'])",
         lambda c: ln.Corpus.from_texts(["a", "b"]), ParameterError, "must be a dict"),
    Case("corpus-group-name-int", "Corpus.from_texts({1: ['a']})",
         lambda c: ln.Corpus.from_texts({1: ["a"]}), ParameterError,
         "Group names must be non-empty strings"),
    Case("corpus-group-name-none", "Corpus.from_texts({None: ['a']})",
         lambda c: ln.Corpus.from_texts({None: ["a"]}), ParameterError, "Group names"),
    Case("corpus-group-name-empty", "Corpus.from_texts({'': ['a']})",
         lambda c: ln.Corpus.from_texts({"": ["a"]}), ParameterError, "Group names"),
    Case("corpus-group-names-nfc-and-nfd",
         "Corpus.from_texts({'fran\\u00e7ais': [a], 'franc\\u0327ais': [b]})",
         lambda c: ln.Corpus.from_texts({NFC: TEXTS["fr"][:1], NFD: TEXTS["fr"][1:]}),
         check=merged(NFC, TEXTS["fr"][:1], TEXTS["fr"][1:])),
    Case("corpus-group-name-nfd", "Corpus.from_texts({'franc\\u0327ais': texts})",
         lambda c: ln.Corpus.from_texts({NFD: TEXTS["fr"]}),
         check=merged(NFC, TEXTS["fr"], [])),
    Case("corpus-group-names-blank-shard", "Corpus.from_texts({'fr': [a], 'fr ': ['  ']})",
         lambda c: ln.Corpus.from_texts({"fr": TEXTS["fr"][:1], "fr ": ["  "]}),
         check=merged("fr", TEXTS["fr"][:1], [])),
    Case("corpus-group-names-spaces", "Corpus.from_texts({'fr': [a], ' fr ': [b]})",
         lambda c: ln.Corpus.from_texts({"fr": TEXTS["fr"][:1], " fr ": TEXTS["fr"][1:]}),
         check=merged("fr", TEXTS["fr"][:1], TEXTS["fr"][1:])),
    Case("corpus-example-group-names-spaces",
         "Corpus.from_examples({'fr': [(q, r)], 'fr\\n': [(q2, r2)]})",
         lambda c: ln.Corpus.from_examples({"fr": [("Q: chat? R:", " chat")],
                                            "fr\n": [("Q: chien? R:", " chien")]}),
         check=lambda corpus, c: corpus.items == {"fr": [("Q: chat? R:", " chat"),
                                                          ("Q: chien? R:", " chien")]}
         or pytest.fail()),
    # --- examples ---------------------------------------------------------------------------
    Case("corpus-example-string", "Corpus.from_examples({'en': ['ab']})",
         lambda c: ln.Corpus.from_examples({"en": ["ab"]}), InvalidTextError,
         r"\(prompt, response\) pair"),
    Case("corpus-example-triple", "Corpus.from_examples({'en': [('a', 'b', 'c')]})",
         lambda c: ln.Corpus.from_examples({"en": [("a", "b", "c")]}), InvalidTextError,
         r"\(prompt, response\) pair"),
    Case("corpus-example-none-response", "Corpus.from_examples({'en': [('Q', None)]})",
         lambda c: ln.Corpus.from_examples({"en": [("Q", None)]}), InvalidTextError,
         "not a string"),
    Case("corpus-example-blank-responses", "Corpus.from_examples({'en': [('Q', ' ')]})",
         lambda c: ln.Corpus.from_examples({"en": [("Q", " ")]}), EmptyGroupError,
         "Every response of group 'en' is empty or whitespace"),
    Case("corpus-example-some-blank", "Corpus.from_examples({'fr': [(q, ' chat'), (q, ' ')]})",
         blank_responses_dropped, check=one_example),
    Case("corpus-example-merged-response", "Corpus.from_examples({'fr': [('Th', 'e')]})",
         lambda c: ln.Corpus.from_examples({"en": [("a", "b")], "fr": [("Th", "e")]}).tokenize(
             c.model),
         EmptyTokenizationError, "merged into its prompt's last token"),
    # --- window, pack -----------------------------------------------------------------------
    Case("corpus-window-one", "Corpus.from_texts(texts, window=1)",
         lambda c: ln.Corpus.from_texts(TEXTS, window=1), ParameterError,
         "window must be an integer >= 2"),
    Case("corpus-window-float", "Corpus.from_texts(texts, window=64.0)",
         lambda c: ln.Corpus.from_texts(TEXTS, window=64.0), ParameterError,
         "window must be an integer"),
    Case("corpus-window-past-context", "Corpus.from_texts(texts, window=1024).tokenize(model)",
         lambda c: ln.Corpus.from_texts(TEXTS, window=1024).tokenize(c.model),
         ContextLengthError, r"longer than the model's context of 256 tokens.*window <= 256"),
    Case("corpus-window-is-context", "Corpus.from_texts({'en': [long]}, window=n_ctx)",
         long_text, check=fits_context),
    Case("corpus-pack-string", "Corpus.from_texts(texts, pack='yes')",
         lambda c: ln.Corpus.from_texts(TEXTS, pack="yes"), ParameterError, "True or False"),
    # --- batches ----------------------------------------------------------------------------
    Case("corpus-batch-size-zero", "tokenized.batches(batch_size=0)",
         lambda c: tokenized(c).batches(batch_size=0), ParameterError,
         "batch_size must be an integer >= 1"),
    Case("corpus-batch-size-negative", "tokenized.n_batches(-1)",
         lambda c: tokenized(c).n_batches(-1), ParameterError, "batch_size"),
    Case("corpus-batch-size-float", "tokenized.batches(2.5)",
         lambda c: tokenized(c).batches(2.5), ParameterError, "batch_size must be an integer"),
    Case("corpus-batch-size-bool", "tokenized.batches(True)",
         lambda c: tokenized(c).batches(True), ParameterError, "batch_size must be an integer"),
    Case("corpus-batch-size-numpy", "tokenized.batches(np.int64(3))",
         lambda c: tokenized(c).batches(np.int64(3)), check=batch_count(2)),
    Case("corpus-max-tokens-zero", "tokenized.limit(0)",
         lambda c: tokenized(c).limit(0), ParameterError, "max_tokens_per_group"),
    Case("corpus-max-tokens-negative", "tokenized.limit(-5)",
         lambda c: tokenized(c).limit(-5), ParameterError, "max_tokens_per_group"),
]


@pytest.mark.parametrize("case", _catalog.params(CASES))
def test_case(case, bad):
    _catalog.run_case(case, bad, _catalog.area_of(__name__))
