"""The multilingual model card: one self-contained HTML page per model, and the result behind it.

A :class:`ModelCard` holds what :func:`lensneurons.report` measured, section by section: each
:class:`CardSection` has a title, a figure (PNG bytes), the numbers behind the figure (a
DataFrame) and a two-line reading. The card is a result like any other (``table()``, ``plot()``,
``save`` / ``load``, a notebook view); ``save(path)`` writes the result *and* the page,
``path/index.html``, which needs no network: figures are embedded as data URIs, circuitsvis's
bundle is inlined, and the style sheet is in the page.

Examples:
    >>> import numpy as np, pandas as pd
    >>> from lensneurons.show.card import CardSection, ModelCard
    >>> section = CardSection("lape", "Language neurons", "Two lines of reading.",
    ...                       pd.DataFrame({"neurons": [3, 4]}, index=["fr", "de"]))
    >>> card = ModelCard(title="toy", model={"architecture": "toy"}, sections=[section])
    >>> card.table().loc["lape", "title"]
    'Language neurons'
    >>> "<!DOCTYPE html>" in card.html()
    True
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import html
import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lensneurons.core.persistence import load_result, save_result
from lensneurons.core.result import Result
from lensneurons.errors import CorruptResultError
from lensneurons.show.token_views import TokenView

#: The page of a saved card, beside the result's two files.
PAGE = "index.html"
_TABLE_ROWS = 30

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1d2430;
       background: #fafbfc; }
header { background: #263248; color: #fff; padding: 1.4em 2em; }
header h1 { margin: 0 0 .3em 0; font-size: 1.6em; }
header p { margin: .1em 0; opacity: .85; }
nav { padding: .6em 2em; background: #e8ecf2; font-size: .92em; }
nav a { margin-right: 1.1em; color: #263248; text-decoration: none; }
main { padding: 0 2em 2em 2em; max-width: 1180px; }
section { background: #fff; border: 1px solid #dde3ea; border-radius: 6px; margin: 1.2em 0;
          padding: .8em 1.4em 1.2em 1.4em; }
section h2 { font-size: 1.25em; margin: .3em 0 .5em 0; }
.reading { background: #f1f6fb; border-left: 4px solid #4a78b0; padding: .5em .9em;
           margin: .4em 0 .9em 0; }
img.figure { max-width: 100%; height: auto; display: block; margin: .4em 0; }
table { border-collapse: collapse; font-size: .82em; margin: .5em 0; }
th, td { border: 1px solid #dde3ea; padding: .2em .5em; text-align: right; }
th { background: #f3f5f8; }
details summary { cursor: pointer; color: #4a78b0; margin: .4em 0; }
footer { color: #6b7685; font-size: .85em; padding: 1em 2em 2em 2em; }
"""


@dataclasses.dataclass
class CardSection:
    """One section of a card: a figure, its numbers and a two-line reading.

    Attributes:
        key: a short identifier (``"lape"``, ``"nll"``...), the anchor in the page.
        title: the heading.
        reading: what the figure says, in two lines of plain words, with its numbers.
        table: the numbers behind the figure.
        png: the figure as PNG bytes (a ``uint8`` array), or ``None``.
        token_table: a tokens x groups table shown as a circuitsvis token view, or ``None``.
        seconds: time this section took to compute.
    """

    key: str
    title: str
    reading: str
    table: pd.DataFrame
    png: np.ndarray | None = None
    token_table: pd.DataFrame | None = None
    seconds: float = 0.0


@dataclasses.dataclass
class ModelCard(Result):
    """Where a model keeps its languages, and whether it thinks in English: one page.

    Made by :func:`lensneurons.report`. ``html()`` is the page; ``save(path)`` writes the result
    and ``path/index.html``; ``section(key)`` gives one section's numbers.

    Attributes:
        title: the page title (the model's name).
        model: what the model is (architecture, sizes, versions, device, time taken).
        sections: the sections, in page order.
        fingerprint: the model's fingerprint (a load with ``model=`` refuses another model).
    """

    title: str
    model: dict[str, Any]
    sections: list[CardSection]
    fingerprint: dict[str, Any] = dataclasses.field(default_factory=dict)

    kind = "card"

    def section(self, key: str) -> CardSection:
        """The section ``key`` (``"lape"``, ``"nll"``, ``"latent"``...).

        Raises:
            KeyError: no such section (the message lists them).
        """
        for section in self.sections:
            if section.key == key:
                return section
        raise KeyError(f"No section {key!r}; sections: {[s.key for s in self.sections]}.")

    def table(self) -> pd.DataFrame:
        """One row per section: its title, its reading and the seconds it took."""
        return pd.DataFrame(
            {"title": [s.title for s in self.sections],
             "reading": [s.reading for s in self.sections],
             "seconds": [round(s.seconds, 1) for s in self.sections]},
            index=pd.Index([s.key for s in self.sections], name="section"))

    def summary_line(self) -> str:
        """The model and the number of sections."""
        return f"ModelCard of {self.title}: {len(self.sections)} sections"

    def plot(self, ax: Any = None) -> Any:
        """The card's figures side by side, two to a row (``ax`` is not used: a grid)."""
        import matplotlib.pyplot as plt

        figures = [s for s in self.sections if s.png is not None]
        rows = max(1, (len(figures) + 1) // 2)
        fig, axes = plt.subplots(rows, 2, figsize=(14, 3.6 * rows), squeeze=False)
        for axis in axes.flat:
            axis.set_axis_off()
        for axis, section in zip(axes.flat, figures, strict=False):
            assert section.png is not None
            axis.imshow(plt.imread(io.BytesIO(section.png.tobytes()), format="png"))
            axis.set_title(section.title, fontsize=10)
        fig.suptitle(self.title)
        fig.tight_layout()
        return fig

    def _repr_html_(self) -> str:
        return self._body()

    # -- the page -------------------------------------------------------------------------------
    def html(self) -> str:
        """The whole page: self-contained, offline, one file."""
        return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
                f"<title>{html.escape(self.title)}: multilingual model card</title>\n"
                f"<style>{_STYLE}</style>\n</head>\n<body>\n{self._body()}\n</body>\n</html>\n")

    def _body(self) -> str:
        facts = self.model
        lines = [
            f"{facts.get('architecture', '')}, {facts.get('n_layers', '?')} layers, "
            f"{facts.get('parameters', '')}",
            f"lensneurons {facts.get('lensneurons', '?')} · made {facts.get('made', '')} in "
            f"{facts.get('seconds', 0):.0f} s on {facts.get('device', '?')}",
        ]
        nav = " ".join(f'<a href="#{s.key}">{html.escape(s.title)}</a>' for s in self.sections)
        parts = ["<header>", f"<h1>{html.escape(self.title)}: where does it keep its "
                 "languages, and does it think in English?</h1>",
                 *(f"<p>{html.escape(line)}</p>" for line in lines), "</header>",
                 f"<nav>{nav}</nav>", "<main>"]
        parts += [_section_html(s) for s in self.sections]
        parts += ["</main>", "<footer>Made by <code>lensneurons.report</code>. Every figure "
                  "is embedded in this file; it needs no network.</footer>"]
        return "\n".join(parts)

    # -- storage: the result, and the page beside it ------------------------------------------
    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the result and its page ``path/index.html``, atomically; return the folder.

        Raises:
            ResultExistsError: ``path`` holds a result and ``overwrite`` is false.
            UnwritablePathError: the folder cannot be written.
        """
        tensors, meta = self._record()
        page = self.html().encode("utf-8")
        meta["page_sha256"] = hashlib.sha256(page).hexdigest()
        return save_result(path, self.kind, tensors, meta, overwrite=overwrite,
                           companions={PAGE: page})

    @classmethod
    def load(cls, path: str | os.PathLike[str], model: Any = None) -> ModelCard:
        """Read a card written by :meth:`save`; the page must be the one written with it.

        Raises:
            CorruptResultError: the page was changed or removed after the save.
        """
        tensors, meta = load_result(path, cls.kind)
        page = Path(path) / PAGE
        expected = meta.pop("page_sha256", None)
        if not page.is_file() or hashlib.sha256(page.read_bytes()).hexdigest() != expected:
            raise CorruptResultError(
                f"{page} is missing or is not the page saved with the card in {path}; write the "
                "card again with card.save(path, overwrite=True).")
        card = cls._from_record(tensors, meta)
        if model is not None:
            card._check_model(model)
        return card


def _section_html(section: CardSection) -> str:
    parts = [f'<section id="{html.escape(section.key)}">',
             f"<h2>{html.escape(section.title)}</h2>",
             f'<p class="reading">{html.escape(section.reading)}</p>']
    if section.png is not None:
        data = base64.b64encode(section.png.tobytes()).decode("ascii")
        parts.append(f'<img class="figure" alt="{html.escape(section.title)}" '
                     f'src="data:image/png;base64,{data}">')
    if section.token_table is not None:
        try:
            parts.append(TokenView.from_table(section.token_table).html)
        except ImportError:  # the numbers stay in the card; the view needs circuitsvis
            parts.append("<p><i>The token view needs circuitsvis: pip install "
                         "\"lensneurons[viz]\", then write the card again.</i></p>")
    if len(section.table):
        shown = section.table.head(_TABLE_ROWS).to_html(
            float_format=lambda v: f"{v:.3g}", na_rep="–", border=0)
        more = (f" (first {_TABLE_ROWS} of {len(section.table)} rows)"
                if len(section.table) > _TABLE_ROWS else "")
        parts.append(f"<details><summary>The numbers{more}</summary>{shown}</details>")
    parts.append("</section>")
    return "\n".join(parts)

