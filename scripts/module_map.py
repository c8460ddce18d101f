"""Write the module map of docs/design.md (§3) from the tree, one row a module.

Each module's job is the first sentence of its docstring; ``tests/test_design.py`` fails when
the page and the tree disagree.

Usage: ``python scripts/module_map.py`` (rewrites the table between the markers in place).
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "lensneurons"
DESIGN = ROOT / "docs" / "design.md"
BEGIN, END = "<!-- module map: begin (scripts/module_map.py) -->", "<!-- module map: end -->"
#: Stages in pipeline order; the root modules first.
ORDER = ["", "core", "corpora", "stats", "detect", "neurons", "intervene", "evaluate", "lens",
         "show", "sae", "subjects"]


def job(path: Path) -> str:
    """The first sentence of a module's docstring, on one line."""
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    first = " ".join(doc.split("\n\n")[0].split())
    return first.replace("|", "\\|")


def render() -> str:
    """The table, between its markers."""
    rows = ["| module | job |", "|---|---|"]
    folders = sorted({p.parent for p in PACKAGE.rglob("*.py")},
                     key=lambda d: (ORDER.index(str(d.relative_to(PACKAGE)).replace(".", ""))
                                    if str(d.relative_to(PACKAGE)).replace(".", "") in ORDER
                                    else len(ORDER), str(d)))
    for folder in folders:
        files = sorted(folder.glob("*.py"), key=lambda p: (p.name != "__init__.py", p.name))
        for path in files:
            rel = path.relative_to(PACKAGE).as_posix()
            rows.append(f"| `{rel}` | {job(path)} |")
    return "\n".join([BEGIN, *rows, END])


def main() -> int:
    """Rewrite the table in docs/design.md."""
    text = DESIGN.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        print(f"{DESIGN} has no module-map markers", file=sys.stderr)
        return 1
    DESIGN.write_text(pattern.sub(lambda _: render(), text), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
