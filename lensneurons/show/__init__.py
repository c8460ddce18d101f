"""Show: figures, token views and the model card; ``ln.viz`` is this package.

Layer histograms of neuron sets and heatmaps of perplexity matrices: every ``plot_*`` function
returns the matplotlib ``Figure``; save it with ``fig.savefig(path)``.

:func:`token_activity` returns a :class:`TokenView`, a circuitsvis view of how strongly each
group's neurons fire on each token of a text; it renders in notebooks and in a file written with
:func:`save_html`, without network (circuitsvis's JavaScript bundle is inlined, never loaded from
a CDN).

:func:`report` measures everything the package knows about one model and returns a
:class:`ModelCard`, one self-contained HTML page (``card.save(folder)`` writes
``folder/index.html``).

Examples:
    >>> import pandas as pd, lensneurons as ln
    >>> table = pd.DataFrame({0: [3, 1], 1: [0, 4]}, index=["fr", "de"])
    >>> fig = ln.viz.plot_layer_histogram(table)
"""

from lensneurons.core.figures import plot_layer_histogram, plot_matrix
from lensneurons.show.card import CardSection, ModelCard
from lensneurons.show.report import report
from lensneurons.show.token_views import (
    SINGLE_GROUP,
    TokenView,
    save_html,
    token_activity,
    token_activity_table,
)

__all__ = [
    "SINGLE_GROUP",
    "CardSection",
    "ModelCard",
    "TokenView",
    "plot_layer_histogram",
    "plot_matrix",
    "report",
    "save_html",
    "token_activity",
    "token_activity_table",
]
