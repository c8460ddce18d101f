"""Bad inputs to Corpus and TokenizedCorpus (see tests/_catalog.py)."""

from __future__ import annotations

import sys
from unittest import mock

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
    MissingDependencyError,
    NoGroupsError,
    ParameterError,
    UnknownLanguageError,
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


def dataset(**columns):
    """A datasets.Dataset of these columns (default: two French and two English rows)."""
    import datasets

    columns = columns or {"text": [*TEXTS["fr"], *TEXTS["en"]], "lang": ["fr", "fr", "en", "en"]}
    return datasets.Dataset.from_dict(columns)


def from_dataset(ds=None, **kwargs):
    return ln.Corpus.from_dataset(dataset() if ds is None else ds, **kwargs)


def dataset_dict(**kwargs):
    import datasets

    return ln.Corpus.from_dataset(datasets.DatasetDict({"train": dataset(), "test": dataset()}),
                                  **kwargs)


def empty_dataset(c):
    import datasets

    return from_dataset(datasets.Dataset.from_dict({"text": [], "lang": []}))


def typed_columns(text_type, text, group_type="string", groups=None):
    """A Dataset whose columns have these feature types (so an empty-looking column keeps one)."""
    import datasets

    features = datasets.Features({"text": datasets.Value(text_type),
                                  "lang": datasets.Value(group_type)})
    return datasets.Dataset.from_dict({"text": text, "lang": groups or ["fr"] * len(text)},
                                      features=features)


def without_datasets(c):
    with mock.patch.dict(sys.modules, {"datasets": None}):
        return ln.Corpus.from_dataset({"fr": ["Un."]}, group=None)


def all_english(c):
    return from_dataset(dataset(text=[*TEXTS["en"], *TEXTS["fr"]], lang=["fr", "fr", "en", "en"]),
                        filter_language=True)


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
    # --- language filter --------------------------------------------------------------------
    Case("corpus-filter-group-not-a-language",
         "Corpus.from_texts({'python': [...], 'fr': [...]}, filter_language=True)",
         lambda c: ln.Corpus.from_texts({"python": ["print(1)"], "culture_x": ["a"],
                                         "fr": TEXTS["fr"]}, filter_language=True),
         UnknownLanguageError,
         r"not languages: 'python', 'culture_x'\. Pass filter_language=False, or rename"),
    Case("corpus-filter-group-emptied",
         "Corpus.from_texts({'fr': [english texts]}, filter_language=True)",
         lambda c: ln.Corpus.from_texts({"fr": TEXTS["en"]}, filter_language=True),
         EmptyGroupError, r"Group 'fr' is empty after the language filter.*found: en 2"),
    Case("corpus-filter-examples", "Corpus(examples, examples=True, filter_language=True)",
         lambda c: ln.Corpus({"fr": [("Q:", " chat")]}, examples=True, filter_language=True),
         ParameterError, "texts, not to examples"),
    Case("corpus-filter-flag-string", "Corpus.from_texts(texts, filter_language='yes')",
         lambda c: ln.Corpus.from_texts(TEXTS, filter_language="yes"), ParameterError,
         "filter_language must be True or False"),
    # --- Hugging Face datasets --------------------------------------------------------------
    Case("corpus-dataset-no-text-column", "Corpus.from_dataset(ds)  # columns sentence, lang",
         lambda c: from_dataset(dataset(sentence=["Un."], lang=["fr"])), ParameterError,
         r"has no column 'text'; its columns: 'sentence', 'lang'\. Pass text= the column of "
         r"texts \('sentence'\)\."),
    Case("corpus-dataset-no-group-column", "Corpus.from_dataset(ds, group='language')",
         lambda c: from_dataset(group="language"), ParameterError,
         r"no column 'language'; its columns: 'text', 'lang'\. Pass group="),
    Case("corpus-dataset-text-not-string", "Corpus.from_dataset(ds)  # text: int64",
         lambda c: from_dataset(dataset(text=[1, 2], lang=["fr", "en"])), InvalidTextError,
         "text column 'text' of the dataset holds int64, not strings"),
    Case("corpus-dataset-text-none", "Corpus.from_dataset(ds)  # a text is None",
         lambda c: from_dataset(typed_columns("string", ["Un.", None])), InvalidTextError,
         r"Row 1 of the dataset \(group 'fr'\) has NoneType None.*ds\.filter"),
    Case("corpus-dataset-group-int", "Corpus.from_dataset(ds)  # lang: int64",
         lambda c: from_dataset(dataset(text=["Un."], lang=[3])), ParameterError,
         "group column 'lang' of the dataset holds int64, not group names"),
    Case("corpus-dataset-group-none", "Corpus.from_dataset(ds)  # a group is None",
         lambda c: from_dataset(typed_columns("string", ["Un.", "Deux."], groups=["fr", None])),
         ParameterError, r"Row 1 of the dataset has NoneType None in group column 'lang', not a"),
    Case("corpus-dataset-group-not-a-language",
         "Corpus.from_dataset(ds, filter_language=True)  # lang: python, fr",
         lambda c: from_dataset(dataset(text=["print(1)", "Un."], lang=["python", "fr"]),
                                filter_language=True),
         UnknownLanguageError, r"not languages: 'python'\. Pass filter_language=False"),
    Case("corpus-dataset-empty", "Corpus.from_dataset(Dataset.from_dict({'text': [], ...}))",
         empty_dataset, NoGroupsError, "The dataset has no rows"),
    Case("corpus-dataset-empty-dict", "Corpus.from_dataset({}, group=None)",
         lambda c: ln.Corpus.from_dataset({}, group=None), NoGroupsError,
         "The dataset dict is empty"),
    Case("corpus-dataset-group-empty", "Corpus.from_dataset({'fr': empty_ds}, group=None)",
         lambda c: ln.Corpus.from_dataset({"fr": dataset(text=[])}, group=None),
         EmptyGroupError, "The dataset of group 'fr' has no rows"),
    Case("corpus-dataset-group-emptied-by-filter",
         "Corpus.from_dataset(ds, filter_language=True)  # 'fr' rows in English",
         all_english, EmptyGroupError, "Group 'fr' is empty after the language filter"),
    Case("corpus-dataset-groups-absent", "Corpus.from_dataset(ds, groups=['de'])",
         lambda c: from_dataset(groups=["fr", "de"]), EmptyGroupError,
         r"groups= asks for 'de', but the dataset has no row of that group\. Groups read: "
         "'fr'"),
    Case("corpus-dataset-split-missing", "Corpus.from_dataset(dataset_dict, split='validation')",
         lambda c: dataset_dict(split="validation"), ParameterError,
         r"no split 'validation'; its splits: 'train', 'test'\. Pass one of them as split="),
    Case("corpus-dataset-split-needed", "Corpus.from_dataset(dataset_dict)",
         lambda c: dataset_dict(), ParameterError,
         r"has the splits 'train', 'test': pass split='train'.*group=None"),
    Case("corpus-dataset-split-of-a-dataset", "Corpus.from_dataset(ds, split='train')",
         lambda c: from_dataset(split="train"), ParameterError,
         "picks a split of a DatasetDict, but this is one Dataset"),
    Case("corpus-dataset-group-none-one-dataset", "Corpus.from_dataset(ds, group=None)",
         lambda c: from_dataset(group=None), ParameterError, r"group=None needs a \{group"),
    Case("corpus-dataset-not-a-dataset", "Corpus.from_dataset(['a', 'b'])",
         lambda c: ln.Corpus.from_dataset(["a", "b"]), ParameterError,
         "reads a Hugging Face datasets.Dataset.*got list"),
    Case("corpus-dataset-dict-of-lists", "Corpus.from_dataset({'fr': ['Un.']}, group=None)",
         lambda c: ln.Corpus.from_dataset({"fr": ["Un."]}, group=None), ParameterError,
         "use Corpus.from_texts"),
    Case("corpus-dataset-budget-zero", "Corpus.from_dataset(ds, max_texts_per_group=0)",
         lambda c: from_dataset(max_texts_per_group=0), ParameterError,
         "max_texts_per_group must be an integer >= 1"),
    Case("corpus-dataset-budget-float",
         "Corpus.from_dataset(ds, max_tokens_per_group=1e4, tokenizer=model)",
         lambda c: from_dataset(max_tokens_per_group=1e4, tokenizer=c.model), ParameterError,
         "max_tokens_per_group must be an integer"),
    Case("corpus-dataset-token-budget-without-tokenizer",
         "Corpus.from_dataset(ds, max_tokens_per_group=1000)",
         lambda c: from_dataset(max_tokens_per_group=1000), ParameterError,
         "pass tokenizer=model"),
    Case("corpus-dataset-groups-string", "Corpus.from_dataset(ds, groups='fr')",
         lambda c: from_dataset(groups="fr"), ParameterError, "groups must be a list"),
    Case("corpus-dataset-package-missing", "Corpus.from_dataset(...)  # datasets not installed",
         without_datasets, MissingDependencyError, r"pip install 'lensneurons\[datasets\]'"),
]


@pytest.mark.parametrize("case", _catalog.params(CASES))
def test_case(case, bad):
    _catalog.run_case(case, bad, _catalog.area_of(__name__))
