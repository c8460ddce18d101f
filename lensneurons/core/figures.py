"""Figures every result draws with: axes handling, layer histograms, matrix heatmaps.

Every ``plot_*`` function returns the matplotlib ``Figure``; save it with ``fig.savefig(path)``.

Examples:
    >>> import pandas as pd
    >>> from lensneurons.core.figures import plot_layer_histogram
    >>> table = pd.DataFrame({0: [3, 1], 1: [0, 4]}, index=["fr", "de"])
    >>> type(plot_layer_histogram(table)).__name__
    'Figure'
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd


def axes(ax: Any, size: tuple[float, float]) -> tuple[Any, Any]:
    """``(figure, axes)``: those of ``ax`` when given, else a new figure of ``size`` inches."""
    import matplotlib.pyplot as plt

    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=size)
    return fig, ax


def plot_layer_histogram(table: pd.DataFrame, *, ax: Any = None, stacked: bool = True) -> Any:
    """Units per layer (x) and group (colour) from a group x layer count table."""
    fig, ax = axes(ax, (max(6.0, 0.3 * table.shape[1]), 3.5))
    colours = "tab10" if table.shape[0] <= 10 else "tab20"  # no colour shared by two groups
    table.T.plot.bar(ax=ax, stacked=stacked, width=0.85, colormap=colours)
    ax.set_xlabel("layer")
    ax.set_ylabel("neurons")
    ax.set_title("Neurons per layer")
    ax.legend(title="group", fontsize="small", ncols=2)
    fig.tight_layout()
    return fig


def plot_matrix(
    matrix: pd.DataFrame, *, ax: Any = None, title: str = "Δ mean NLL", fmt: str = "{:.2f}",
    cmap: str = "RdBu_r", centered: bool = True,
) -> Any:
    """Heatmap of a deactivated x evaluated matrix (e.g. :func:`lensneurons.nll_delta`).

    ``centered``: colours symmetric around 0 (changes); else from 0 to the largest value
    (overlaps, rates).
    """
    fig, ax = axes(ax, (1.0 + 0.7 * matrix.shape[1], 1.0 + 0.45 * matrix.shape[0]))
    values = matrix.to_numpy(dtype=float)
    bound = float(abs(values).max()) or 1.0
    image = ax.imshow(values, cmap=cmap, vmin=-bound if centered else 0.0, vmax=bound,
                      aspect="auto")
    ax.set_xticks(range(matrix.shape[1]), [str(c) for c in matrix.columns])
    ax.set_yticks(range(matrix.shape[0]), [str(r) for r in matrix.index])
    ax.set_xlabel(matrix.columns.name or "evaluated")
    ax.set_ylabel(matrix.index.name or "deactivated")
    for (i, j), value in pd.DataFrame(values).stack().items():
        ax.text(j, i, fmt.format(value), ha="center", va="center", fontsize=7,
                color="white" if abs(value) > 0.6 * bound else "black")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, shrink=0.8)
    fig.tight_layout()
    return fig


def figure_png(fig: Any, dpi: int = 90) -> np.ndarray:
    """A figure as PNG bytes (a ``uint8`` array), closed afterwards (notebooks draw it once)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return np.frombuffer(buffer.getvalue(), dtype=np.uint8).copy()
