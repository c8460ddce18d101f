"""docs/design.md agrees with the tree: the module map is the one scripts/module_map.py writes."""

import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_module_map_is_the_tree():
    module_map = runpy.run_path(str(ROOT / "scripts" / "module_map.py"))
    design = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    table = module_map["render"]()
    assert table in design, ("docs/design.md §3 differs from the tree: run "
                             "`python scripts/module_map.py` and review the diff")
    listed = {line.split("`")[1] for line in table.splitlines() if line.startswith("| `")}
    files = {p.relative_to(ROOT / "lensneurons").as_posix()
             for p in (ROOT / "lensneurons").rglob("*.py")}
    assert listed == files
    assert all(job.strip(" |") for job in (line.split("` |", 1)[1] for line in table.splitlines()
                                           if line.startswith("| `")))


def test_design_names_every_persistence_kind_and_the_glossary():
    from lensneurons.core.persistence import KINDS

    design = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    section = design[design.index("## §12"):design.index("## §13")]
    assert all(f"`{kind}`" in section for kind in KINDS), KINDS
    glossary = design[design.index("### Glossary"):design.index("## §3")]
    for word in ("top_rate", "neuron_sets()", "fwd_hooks", "target", "objective"):
        assert f"`{word}`" in glossary
