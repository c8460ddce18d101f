"""The public namespace and the house: a small face in pipeline order, stages as sub-packages,
no import cycles (function-level imports counted), no shims."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import warnings
from pathlib import Path

import pytest

import lensneurons as ln
from lensneurons import errors

PACKAGE = Path(ln.__file__).parent

#: What users already write, and where it keeps working.
KEPT = [
    "collect", "lape", "ternary", "plnd", "attribution", "culture_neurons", "sae_lape",
    "deactivate", "amplify", "set_activation", "add_activation", "steer", "perplexity",
    "perplexity_matrix", "nll_delta", "logit_lens", "latent_language", "mwork", "forcing_rate",
    "steering_shift", "sweep", "fallback", "Corpus", "ActivationStats", "NeuronSet", "NeuronSets",
    "errors", "LensNeuronsError", "models", "organism", "real_stats", "viz",
]


def test_every_public_name_resolves_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        missing = [name for name in ln.__all__ if getattr(ln, name, None) is None]
    assert not missing
    assert not [name for name in KEPT if name not in ln.__all__]
    assert callable(ln.collect) and callable(ln.ActivationStats.from_counts)
    assert callable(ln.ActivationStats.load) and callable(ln.NeuronSet.from_mask)
    assert callable(ln.lens.prompts.translation)
    from lensneurons.corpora.gettext import load_gettext

    assert callable(load_gettext)


def test_the_face_is_small_and_in_pipeline_order():
    names = ln.__all__
    stages = ["corpora", "stats", "detect", "intervene", "evaluate", "lens", "show"]
    assert [names.index(s) for s in stages] == sorted(names.index(s) for s in stages)
    for paper_helper in ("compound", "random_like", "ppl_ratio", "readout_fn", "stage_split",
                         "codemix", "steering", "langid"):
        assert not hasattr(ln, paper_helper), f"ln.{paper_helper} belongs in its stage"
    assert ln.detect.compound and ln.neurons.random_like and ln.evaluate.ppl_ratio


def test_errors_live_in_one_module_under_one_base():
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass)
               if c.__module__ == "lensneurons.errors"]
    # Ctrl-C carriers stay KeyboardInterrupts only, so `except Exception` cannot swallow them
    exceptions = [c for c in classes if issubclass(c, BaseException)
                  and not issubclass(c, (Warning, KeyboardInterrupt))]
    assert len(exceptions) > 30
    assert all(issubclass(c, ln.LensNeuronsError) for c in exceptions)
    # ...and each also derives from the builtin a Python user would catch
    generic = (Exception, BaseException, object)
    lone = [c.__name__ for c in exceptions if c is not ln.LensNeuronsError and not any(
        b.__module__ == "builtins" and b not in generic for b in c.__mro__)]
    assert not lone, f"{lone} derive from no specific builtin exception"
    top_level_errors = [n for n in ln.__all__ if n.endswith("Error")]
    assert top_level_errors == ["LensNeuronsError"]


@pytest.mark.parametrize("name", ["ShapeMismatchError", "UnknownSiteError", "ReadoutError"])
def test_no_shims_for_moved_names(name):
    with pytest.raises(AttributeError):
        getattr(ln, name)
    with pytest.raises(AttributeError):
        getattr(ln.lens, name)
    assert not any(hasattr(m, "__getattr__") for m in _modules().values())


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError):
        ln.no_such_name  # noqa: B018


# -- the house ---------------------------------------------------------------------------------
def _modules() -> dict[str, object]:
    found = {"lensneurons": ln}
    for info in pkgutil.walk_packages([str(PACKAGE)], "lensneurons."):
        found[info.name] = importlib.import_module(info.name)
    return found


def _imports(name: str, module: object) -> set[str]:
    """Every lensneurons module ``module`` imports, inside functions too (``TYPE_CHECKING`` blocks
    exempt), with the packages whose ``__init__`` each import runs."""
    known = _modules()
    tree = ast.parse(Path(module.__file__).read_text())  # type: ignore[attr-defined]
    exempt = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
              and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
    is_package = Path(module.__file__).name == "__init__.py"  # type: ignore[attr-defined]
    here = name if is_package else name.rsplit(".", 1)[0]
    targets: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in exempt:
            continue
        if isinstance(node, ast.Import):
            targets |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = here.split(".")[: len(here.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            targets |= {f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                        for a in node.names}
    edges = set()
    for target in targets:
        parts = target.split(".")
        for i in range(2, len(parts) + 1):  # the module and the packages above it
            prefix = ".".join(parts[:i])
            if prefix in known and not (name + ".").startswith(prefix + "."):
                edges.add(prefix)
    edges.discard(name)
    return edges


def test_no_import_cycles_counting_imports_inside_functions():
    graph = {name: _imports(name, module) for name, module in _modules().items()
             if name != "lensneurons"}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_root_holds_few_modules_and_every_stage_says_its_job():
    root_files = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(root_files) <= 8, root_files
    for package in sorted(p.parent for p in PACKAGE.glob("*/__init__.py")):
        doc = importlib.import_module(f"lensneurons.{package.name}").__doc__
        assert doc and doc.strip().splitlines()[0].strip(), f"{package.name} has no docstring"
