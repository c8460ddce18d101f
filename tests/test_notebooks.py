"""The committed notebooks are executed, show their figures and carry no noise in their outputs.

The documentation site renders notebooks/*.ipynb with the outputs they were committed with (it
never runs them), so what is committed is what a reader sees. `make notebooks-refresh` executes
them all and saves them; this test reads the committed JSON (no kernel, no model, milliseconds)
and fails when a notebook was committed

* with a code cell that has no output: unexecuted, or cleared. A cell that legitimately prints
  nothing (imports, definitions) carries the cell tag ``no-output`` (cell metadata
  ``"tags": ["no-output"]``; in Jupyter: View > Cell toolbar > Tags);
* with a cell that draws a figure but has no ``image/png`` output (the figure was not shown
  inline, e.g. under ``MPLBACKEND=Agg`` without ``%matplotlib inline``). A cell *draws a figure*
  when its code, comments removed, calls ``plt.subplots(``, ``plt.subplot(``, ``plt.figure(``,
  a ``.plot(`` or ``.plot.<kind>(`` method (``ax.plot``, ``neurons.plot``, ``df.plot.bar``) or
  any function whose name starts with ``plot_`` (``ln.viz.plot_matrix``, ``plot_latent``);
* with an output that shows a path of the machine (``/work/``, ``/home/``, ``/root/``,
  ``/tmp/``, ``site-packages``, ``.venv``), a warning (``...Warning:``), a stderr stream, an
  error, or a progress bar (text ``%|`` or ``it/s]``, or a widget; nor may the notebook's
  metadata keep saved widget state).

Text outputs are checked whole; HTML outputs for paths only (the circuitsvis view inlines a
JavaScript bundle whose code may contain ``%|`` or ``Warning:``); images are not read.

It also checks that the home page's gallery (docs/img/gallery/) is the figures that
scripts/gallery.py copies out of the notebooks, so the two never drift apart.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
GALLERY_SCRIPT = NOTEBOOK_DIR.parent / "scripts" / "gallery.py"
NO_OUTPUT_TAG = "no-output"

FIGURE_CALL = re.compile(
    r"\bplt\.(?:subplots?|figure)\("      # plt.subplots(...), plt.subplot(...), plt.figure(...)
    r"|\.plot(?:\.\w+)?\("                # ax.plot(...), neurons.plot(), df.plot.bar(...)
    r"|(?<!def )\bplot_\w+\("             # plot_matrix(...), plot_latent(...), not a def
)
MACHINE_PATH = re.compile(r"/work/|/home/|/root/|/tmp/|site-packages|\.venv\b")
WARNING = re.compile(r"\w*Warning:")
PROGRESS_BAR = re.compile(r"%\||it/s\]|s/it\]")
WIDGET = "application/vnd.jupyter.widget-view+json"


def _text(value: str | list[str]) -> str:
    return "".join(value) if isinstance(value, list) else value


def _code(cell: dict) -> str:
    """The cell's source without comments and IPython magics (a simple line-wise cut)."""
    lines = []
    for line in _text(cell["source"]).splitlines():
        if line.lstrip().startswith(("%", "!")):
            continue
        lines.append(re.sub(r"#.*$", "", line))
    return "\n".join(lines)


def draws_figure(cell: dict) -> bool:
    """Whether a code cell draws a matplotlib figure (the rule in the module docstring)."""
    return bool(FIGURE_CALL.search(_code(cell)))


def problems(cell: dict) -> list[str]:
    """Everything wrong with one code cell of a committed notebook (empty when it is fine)."""
    found = []
    outputs = cell.get("outputs", [])
    tags = cell.get("metadata", {}).get("tags", [])
    if not _text(cell["source"]).strip():
        return ["an empty code cell (delete it)"]
    if not outputs and NO_OUTPUT_TAG not in tags:
        found.append(f"no output (execute the notebook, or tag a silent cell {NO_OUTPUT_TAG!r})")
    if draws_figure(cell) and not any("image/png" in o.get("data", {}) for o in outputs):
        found.append("draws a figure but has no image/png output (add %matplotlib inline)")
    for output in outputs:
        kind = output["output_type"]
        if kind == "error":
            found.append(f"an error: {output.get('ename')}: {output.get('evalue')}")
            continue
        if kind == "stream" and output.get("name") == "stderr":
            found.append(f"a stderr stream: {_text(output['text'])[:120]!r}")
        data = output.get("data", {})
        if WIDGET in data:
            found.append("a widget output (a progress bar?)")
        texts = [_text(output["text"])] if kind == "stream" else []
        texts += [_text(data[m]) for m in ("text/plain", "text/markdown", "text/latex")
                  if m in data]
        for text in texts:
            for pattern, what in ((MACHINE_PATH, "a machine path"), (WARNING, "a warning"),
                                  (PROGRESS_BAR, "a progress bar")):
                match = pattern.search(text)
                if match:
                    near = text[max(0, match.start() - 60):match.end() + 20]
                    found.append(f"{what} in an output: ...{near!r}")
        if "text/html" in data:
            match = MACHINE_PATH.search(_text(data["text/html"]))
            if match:
                found.append(f"a machine path in an HTML output: {match.group()!r}")
    return found


def test_the_gallery_is_the_notebooks_figures():
    """docs/img/gallery/ holds the figures scripts/gallery.py copies out of the notebooks."""
    spec = importlib.util.spec_from_file_location("gallery", GALLERY_SCRIPT)
    gallery = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gallery)
    for name, (notebook, tag) in gallery.GALLERY.items():
        path = gallery.OUT / name
        assert path.is_file() and path.read_bytes() == gallery.figure(notebook, tag), (
            f"{path} differs from the figure of the cell tagged {tag!r} in {notebook}: "
            "run python scripts/gallery.py")


def test_the_notebooks_are_there():
    assert len(NOTEBOOKS) >= 6, f"expected the six notebooks in {NOTEBOOK_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_executed_and_clean(path: Path):
    notebook = json.loads(path.read_text(encoding="utf-8"))
    report = []
    if "widgets" in notebook.get("metadata", {}):
        report.append("saved widget state in the notebook's metadata (a progress bar's?): "
                      "execute it again without widgets, or delete metadata.widgets")
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] == "code":
            report += [f"cell {index}: {p}" for p in problems(cell)]
    assert not report, (f"{path.name} (re-execute with `make notebooks-refresh`):\n"
                        + "\n".join(report))


# The checker itself, on made-up cells: each rule fires, and a clean cell passes.

def _cell(source: str, outputs: list[dict] | None = None, tags: list[str] | None = None) -> dict:
    return {"cell_type": "code", "source": source, "outputs": outputs or [],
            "metadata": {"tags": tags} if tags else {}}


def _stream(text: str, name: str = "stdout") -> dict:
    return {"output_type": "stream", "name": name, "text": text}


PNG = {"output_type": "display_data", "data": {"image/png": "iVBOR", "text/plain": "<Figure>"}}


@pytest.mark.parametrize("source", [
    "fig = neurons.plot()", "neurons.plot();", "fig, ax = plt.subplots()", "plt.figure()",
    "ln.viz.plot_matrix(delta)", "plot_latent([c], ax=ax)", "table.T.plot.bar(ylim=(0, 1))",
])
def test_figure_rule_matches(source: str):
    assert draws_figure(_cell(source))


@pytest.mark.parametrize("source", [
    "x = 1  # neurons.plot() in a comment", "def plot_pairs(x):\n    return x",
    "%matplotlib inline\nimport matplotlib.pyplot as plt", "view = ln.viz.token_activity(m, t, s)",
])
def test_figure_rule_ignores(source: str):
    assert not draws_figure(_cell(source))


@pytest.mark.parametrize("cell, expected", [
    (_cell("x = 1"), "no output"),
    (_cell(""), "empty code cell"),
    (_cell("fig = neurons.plot()", [_stream("done\n")]), "no image/png"),
    (_cell("import ln", [_stream("/work/main/.venv/lib/x.py:1: TqdmWarning: no", "stderr")]),
     "stderr"),
    (_cell("import ln", [_stream("x.py:1: UserWarning: careful\n")]), "a warning"),
    (_cell("load()", [_stream("Loading weights: 100%|██████████| 236/236 [00:00<00:00]\n")]),
     "a progress bar"),
    (_cell("load()", [_stream("236/236 [00:01<00:00, 120.5it/s]\n")]), "a progress bar"),
    (_cell("print(p)", [_stream("saved to /tmp/tmpab12/stats\n")]), "a machine path"),
    (_cell("p", [{"output_type": "execute_result", "execution_count": 1, "metadata": {},
                  "data": {"text/plain": "PosixPath('/home/me/x')"}}]), "a machine path"),
    (_cell("load()", [{"output_type": "display_data", "metadata": {},
                       "data": {WIDGET: {}, "text/plain": "bar"}}]), "widget"),
    (_cell("1/0", [{"output_type": "error", "ename": "ZeroDivisionError", "evalue": "x",
                    "traceback": []}]), "an error"),
])
def test_checker_catches(cell: dict, expected: str):
    assert any(expected in p for p in problems(cell)), problems(cell)


def test_checker_passes_clean_cells():
    assert problems(_cell("fig = neurons.plot()", [PNG])) == []
    assert problems(_cell("import numpy as np", tags=[NO_OUTPUT_TAG])) == []
    assert problems(_cell("print(1)", [_stream("1 of 14 languages: 50% done\n")])) == []
