"""Statistics: one pass over a corpus (``collect``), per-group streaming statistics of every unit.

Examples:
    >>> import lensneurons as ln
    >>> stats = ln.collect(ln.organism.load(), ln.Corpus.from_texts(ln.organism.texts("heldout")),
    ...                    progress=False)
    >>> type(stats).__name__
    'ActivationStats'
"""

from lensneurons.stats.activation_stats import ActivationStats
from lensneurons.stats.engine import collect

__all__ = ["ActivationStats", "collect"]
