"""Bad inputs to the grouping recipes: compound, pure culture, generic (see tests/_catalog.py)."""

from __future__ import annotations

import _catalog
import pytest
import torch
from _catalog import Case

import lensneurons as ln
from lensneurons.corpora.code import MissingLanguagesWarning, load_code
from lensneurons.errors import (
    ParameterError,
    ShapeMismatchError,
    TooFewGroupsError,
    UnknownGroupError,
)


def sets(width=8, **indices):
    return ln.NeuronSets({g: ln.NeuronSet.from_indices([idx], width=width)
                          for g, idx in indices.items()})


LANGS = sets(de=[0, 1], fa=[4])
CULTS = sets(german=[1, 2], persian=[4, 5])


def empty_language_sets():
    """Language sets that are all empty: pure culture is the culture set itself."""
    empty = sets(de=[], fa=[])
    return ln.detect.pure_culture(CULTS, empty), empty


def one_language_left(c):
    """Only Python exists: the other roots are an empty folder."""
    empty = c.tmp_path / "no-code"
    empty.mkdir(exist_ok=True)
    with pytest.warns(MissingLanguagesWarning):
        return load_code(["python", "perl"], roots={"perl": [empty]}, max_files=2)


CASES = [
    Case("compound-not-sets", "compound({'de': mask}, cultures)",
         lambda c: ln.detect.compound({"de": torch.ones(1, 8, dtype=torch.bool)}, CULTS),
         ParameterError, "NeuronSets"),
    Case("compound-no-shared-names", "compound(languages, cultures) with other names",
         lambda c: ln.detect.compound(LANGS, CULTS), UnknownGroupError, "culture_of="),
    Case("compound-unknown-culture", "compound(..., culture_of={'de': 'danish'})",
         lambda c: ln.detect.compound(LANGS, CULTS, {"de": "danish"}), UnknownGroupError, "danish"),
    Case("compound-culture-of-list", "compound(..., culture_of=['de'])",
         lambda c: ln.detect.compound(LANGS, CULTS, ["de"]), ParameterError, "mapping"),
    Case("compound-shape-mismatch", "compound of sets of width 8 and 9",
         lambda c: ln.detect.compound(LANGS, sets(width=9, de=[1]), {"de": "de"}),
         ShapeMismatchError, "Cannot combine"),
    Case("pure-culture-bad-scope", "pure_culture(cultures, languages, scope='mine')",
         lambda c: ln.detect.pure_culture(CULTS, LANGS, scope="mine"), ParameterError,
         "'all' or 'own'"),
    Case("pure-culture-empty-languages", "pure_culture(cultures, all-empty language sets)",
         lambda c: empty_language_sets(),
         check=lambda out, c: dict(out[0]) == dict(CULTS) or pytest.fail()),
    Case("generic-not-sets", "generic([set_a, set_b])",
         lambda c: ln.detect.generic(list(CULTS.values())), ParameterError, "NeuronSets"),
    Case("code-unknown-language", "load_code(['python', 'cobol'])",
         lambda c: load_code(["python", "cobol"]), UnknownGroupError, "known:"),
    Case("code-zero-files", "load_code(max_files=0)",
         lambda c: load_code(["python", "c"], max_files=0), ParameterError, "max_files"),
    Case("code-one-language-found", "load_code(['python', 'perl']) with no Perl installed",
         one_language_left, TooFewGroupsError, "roots="),
]


@pytest.mark.parametrize("case", _catalog.params(CASES))
def test_case(case, bad):
    _catalog.run_case(case, bad, _catalog.area_of(__name__))
