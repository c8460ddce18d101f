"""docs/errors.md is generated from the bad-input catalog; fail when it misses a case."""

from __future__ import annotations

import importlib
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "errors.md"


def test_every_case_is_in_the_generated_document():
    modules = sorted(p.stem for p in Path(__file__).parent.glob("test_bad_*.py"))
    assert modules, "the catalog is empty"
    text = DOC.read_text(encoding="utf-8")
    missing = [case.id for name in modules for case in importlib.import_module(name).CASES
               if f"`{case.id}`" not in text]
    assert not missing, f"run `make errors-doc`: docs/errors.md lacks {missing}"
