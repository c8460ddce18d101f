"""Bad inputs to the language identifier: identify, probability, check_language (_catalog.py)."""

from __future__ import annotations

import _catalog
import numpy as np
import pytest
from _catalog import Case

from lensneurons.corpora import langid
from lensneurons.errors import InvalidTextError, ParameterError, UnknownLanguageError

TEXTS = ["Le chat dort sur le canapé.", "Der Hund schläft im Garten."]


def answers(expected):
    def check(result, c):
        assert result == expected, result
    return check


def empty_probabilities(result, c):
    assert isinstance(result, np.ndarray) and result.shape == (0,) and result.dtype == np.float64


CASES = [
    # --- texts ----------------------------------------------------------------------------------
    Case("langid-texts-bare-string", "identify('Bonjour tout le monde')",
         lambda c: langid.identify("Bonjour tout le monde"), ParameterError,
         r"pass a list of strings"),
    Case("langid-texts-bytes", "identify(b'Bonjour')",
         lambda c: langid.identify(b"Bonjour"), ParameterError, r"pass a list of strings"),
    Case("langid-texts-not-a-sequence", "identify(42)",
         lambda c: langid.identify(42), ParameterError, "list of strings"),
    Case("langid-text-none", "identify(['Bonjour', None])",
         lambda c: langid.identify(["Bonjour", None]), InvalidTextError,
         r"texts\[1\] is not a string.*drop or replace missing texts"),
    Case("langid-text-bytes", "identify([b'Bonjour'])",
         lambda c: langid.identify([b"Bonjour"]), InvalidTextError, "decode bytes first"),
    Case("langid-text-number", "identify([3.5])",
         lambda c: langid.identify([3.5]), InvalidTextError, r"texts\[0\].*float"),
    Case("langid-texts-empty", "identify([])", lambda c: langid.identify([]), check=answers([])),
    Case("langid-texts-tuple", "identify(('Bonjour tout le monde',))",
         lambda c: langid.identify(("Bonjour tout le monde",)), check=answers(["fr"])),
    Case("langid-text-whitespace", "identify(['', '   ', '\\n\\t'])",
         lambda c: langid.identify(["", "   ", "\n\t"]), check=answers(["unknown"] * 3)),
    Case("langid-text-no-letters", "identify(['12345', '3.14 + 2.71', '?!?!'])",
         lambda c: langid.identify(["12345", "3.14 + 2.71", "?!?!"]),
         check=answers(["unknown"] * 3)),
    Case("langid-text-too-short", "identify(['ok', 'Ja'])",
         lambda c: langid.identify(["ok", "Ja"]), check=answers(["unknown"] * 2)),
    Case("langid-text-newlines", "identify(['Bonjour.\\n\\nComment allez-vous ?'])",
         lambda c: langid.identify(["Bonjour.\n\nComment allez-vous ?"]), check=answers(["fr"])),
    Case("langid-text-very-long", "identify([french_sentence * 2000])",
         lambda c: langid.identify([TEXTS[0] * 2000]), check=answers(["fr"])),
    # --- min_chars ------------------------------------------------------------------------------
    Case("langid-min-chars-zero", "identify(texts, min_chars=0)",
         lambda c: langid.identify(TEXTS, min_chars=0), ParameterError,
         "min_chars must be an integer >= 1"),
    Case("langid-min-chars-float", "identify(texts, min_chars=2.5)",
         lambda c: langid.identify(TEXTS, min_chars=2.5), ParameterError,
         "min_chars must be an integer"),
    Case("langid-min-chars-bool", "identify(texts, min_chars=True)",
         lambda c: langid.identify(TEXTS, min_chars=True), ParameterError,
         "min_chars must be an integer"),
    Case("langid-min-chars-one", "identify(['Bonjour', '7'], min_chars=1)",
         lambda c: langid.identify(["Bonjour", "7"], min_chars=1),
         check=answers(["fr", "unknown"])),
    # --- languages ------------------------------------------------------------------------------
    Case("langid-unknown-language", "check_language('xx')",
         lambda c: langid.check_language("xx"), UnknownLanguageError,
         r"does not know 'xx': pass an ISO 639-1 code such as 'fr'"),
    Case("langid-unknown-marker-as-language", "check_language('unknown')",
         lambda c: langid.check_language(langid.UNKNOWN), UnknownLanguageError,
         "does not know 'unknown'"),
    Case("langid-language-name", "check_language('French')",
         lambda c: langid.check_language("French"), UnknownLanguageError,
         r"'French'.*ISO 639-1 code such as 'fr'"),
    Case("langid-language-not-a-string", "check_language(None)",
         lambda c: langid.check_language(None), ParameterError, "a string such as 'fr'"),
    Case("langid-language-region", "check_language('pt_BR')",
         lambda c: langid.check_language("pt_BR"), check=answers("pt")),
    Case("langid-language-three-letters", "check_language('fra')",
         lambda c: langid.check_language("fra"), check=answers("fr")),
    Case("langid-languages-unknown-code", "identify(texts, languages=['fr', 'klingon'])",
         lambda c: langid.identify(TEXTS, languages=["fr", "klingon"]), UnknownLanguageError,
         "'klingon'"),
    Case("langid-languages-string", "identify(texts, languages='fr')",
         lambda c: langid.identify(TEXTS, languages="fr"), ParameterError,
         r"pass languages=\['fr', \.\.\.\]"),
    Case("langid-languages-one", "identify(['Der Hund schläft.'], languages=['fr'])",
         lambda c: langid.identify(["Der Hund schläft."], languages=["fr"]), ParameterError,
         r"one answer, so every text would be called 'fr'.*at least two languages"),
    Case("langid-probability-languages-one", "probability(texts, 'fr', languages=['fr'])",
         lambda c: langid.probability(TEXTS, "fr", languages=["fr"]), ParameterError,
         "at least two languages"),
    Case("langid-languages-one-spelled-twice", "identify(texts, languages=['fr', 'FR'])",
         lambda c: langid.identify(TEXTS, languages=["fr", "FR"]), ParameterError,
         "at least two languages"),
    Case("langid-languages-empty", "identify(texts, languages=[])",
         lambda c: langid.identify(TEXTS, languages=[]), ParameterError,
         "pass None .every language. or some codes"),
    Case("langid-languages-region-codes", "identify(texts, languages=['fr_FR', 'de-AT'])",
         lambda c: langid.identify(TEXTS, languages=["fr_FR", "de-AT"]),
         check=answers(["fr", "de"])),
    Case("langid-languages-duplicates", "identify(texts, languages=['fr', 'fr', 'de'])",
         lambda c: langid.identify(TEXTS, languages=["fr", "fr", "de"]),
         check=answers(["fr", "de"])),
    Case("langid-languages-excludes-text",
         "identify(['Привет, как дела?'], languages=['es', 'pt'])",
         lambda c: langid.identify(["Привет, как дела?"], languages=["es", "pt"]),
         check=answers(["unknown"])),
    # --- probability ----------------------------------------------------------------------------
    Case("langid-probability-bare-string", "probability('Bonjour tout le monde', 'fr')",
         lambda c: langid.probability("Bonjour tout le monde", "fr"), ParameterError,
         r"pass a list of strings"),
    Case("langid-probability-unknown-language", "probability(texts, 'xx')",
         lambda c: langid.probability(TEXTS, "xx"), UnknownLanguageError, "'xx'"),
    Case("langid-probability-outside-languages", "probability(texts, 'de', languages=['fr', 'en'])",
         lambda c: langid.probability(TEXTS, "de", languages=["fr", "en"]), ParameterError,
         r"'de' is not among languages=\['en', 'fr'\]: add it there"),
    Case("langid-probability-min-chars-zero", "probability(texts, 'fr', min_chars=0)",
         lambda c: langid.probability(TEXTS, "fr", min_chars=0), ParameterError, "min_chars"),
    Case("langid-probability-text-none", "probability([None], 'fr')",
         lambda c: langid.probability([None], "fr"), InvalidTextError, "not a string"),
    Case("langid-probability-empty", "probability([], 'fr')",
         lambda c: langid.probability([], "fr"), check=empty_probabilities),
    Case("langid-probability-short-text", "probability(['', 'ok'], 'fr')",
         lambda c: langid.probability(["", "ok"], "fr"),
         check=lambda result, c: np.testing.assert_array_equal(result, [0.0, 0.0])),
    # --- normalize ------------------------------------------------------------------------------
    Case("langid-normalize-not-a-string", "normalize(3)",
         lambda c: langid.normalize(3), ParameterError, "a string such as 'fr'"),
    Case("langid-normalize-label-prefix", "normalize('__label__zh-Hant')",
         lambda c: langid.normalize("__label__zh-Hant"), check=answers("zh")),
]


@pytest.mark.parametrize("case", _catalog.params(CASES))
def test_case(case, bad):
    _catalog.run_case(case, bad, _catalog.area_of(__name__))
