"""Bad inputs to the model card: ``ln.report``, ``ModelCard.save/load``, ``lensneurons report``.

Every argument of ``ln.report`` is checked before the first forward pass (tests/_catalog.py).
"""

from __future__ import annotations

import _catalog
import pandas as pd
import pytest
from _catalog import Case

import lensneurons as ln
from lensneurons import cli
from lensneurons.errors import (
    CorruptResultError,
    ParameterError,
    ResultExistsError,
    UnknownGroupError,
)
from lensneurons.show.card import PAGE, CardSection, ModelCard


def _card() -> ModelCard:
    section = CardSection("lape", "Language neurons", "Two lines.",
                          pd.DataFrame({"neurons": [3, 4]}, index=["fr", "de"]))
    return ModelCard(title="toy", model={"architecture": "toy"}, sections=[section])


def _edited_page(c):
    folder = _card().save(c.tmp_path / "card-edited", overwrite=True)
    page = folder / PAGE
    page.write_text(page.read_text(encoding="utf-8").replace("Two lines.", "Other words."),
                    encoding="utf-8")
    return ModelCard.load(folder)


def _missing_page(c):
    folder = _card().save(c.tmp_path / "card-no-page", overwrite=True)
    (folder / PAGE).unlink()
    return ModelCard.load(folder)


def _saved_twice(c):
    _card().save(c.tmp_path / "card-twice", overwrite=True)
    return _card().save(c.tmp_path / "card-twice")


def _cli_existing(c):
    folder = _card().save(c.tmp_path / "card-cli", overwrite=True)
    return cli.run(["report", "--out", str(folder)])


CASES = [
    Case("report-heldout-lines", "ln.report(model, heldout_lines=0)",
         lambda c: ln.report(c.model, heldout_lines=0), ParameterError, "heldout_lines"),
    Case("report-lens-items", 'ln.report(model, lens_items="40")',
         lambda c: ln.report(c.model, lens_items="40"), ParameterError, "lens_items"),
    Case("report-top-rate", "ln.report(model, top_rate=5)",
         lambda c: ln.report(c.model, top_rate=5), ParameterError, r"\(0, 1\]"),
    Case("report-name", "ln.report(model, name=3)",
         lambda c: ln.report(c.model, name=3), ParameterError, "string"),
    Case("report-language", 'ln.report(model, languages=["fr", "xx"])',
         lambda c: ln.report(c.model, languages=["fr", "xx"]), UnknownGroupError,
         "studied languages"),
    Case("report-one-language", 'ln.report(model, languages=["fr"])',
         lambda c: ln.report(c.model, languages=["fr"]), UnknownGroupError, "two or more"),
    Case("report-pair-same", 'ln.report(model, pairs=[("fr", "fr")])',
         lambda c: ln.report(c.model, pairs=[("fr", "fr")]), ParameterError,
         "pairs of two languages"),
    Case("report-pair-unknown", 'ln.report(model, pairs=[("fr", "ja")])',
         lambda c: ln.report(c.model, pairs=[("fr", "ja")]), UnknownGroupError,
         "card's languages and with a word list"),
    Case("report-no-pair-fits", 'ln.report(model, languages=["en", "pt"])',
         lambda c: ln.report(c.model, languages=["en", "pt"]), UnknownGroupError,
         "No translation pair"),
    Case("report-pairs-empty", "ln.report(model, pairs=[])",
         lambda c: ln.report(c.model, pairs=[]), ParameterError, "pairs is empty"),
    Case("report-target", 'ln.report(model, forcing_targets=["ja"])',
         lambda c: ln.report(c.model, forcing_targets=["ja"]), UnknownGroupError,
         "target's LAPE set"),
    Case("card-page-edited", "ModelCard.load(folder)  # index.html edited after the save",
         _edited_page, CorruptResultError, "not the page saved"),
    Case("card-page-missing", "ModelCard.load(folder)  # index.html deleted",
         _missing_page, CorruptResultError, "missing"),
    Case("card-save-twice", 'card.save(folder)  # a card is already there',
         _saved_twice, ResultExistsError, "overwrite"),
    Case("cli-report-existing", "lensneurons report --out FOLDER  # a card is already there",
         _cli_existing, ResultExistsError, "overwrite"),
    Case("cli-report-heldout", "lensneurons report --out cards/x --heldout-lines 0",
         lambda c: cli.run(["report", "--out", str(c.tmp_path / "x"), "--heldout-lines", "0"]),
         ParameterError, "--heldout-lines"),
]


@pytest.mark.parametrize("case", _catalog.params(CASES))
def test_case(case, bad):
    _catalog.run_case(case, bad, _catalog.area_of(__name__))
