"""Collect: one pass over a corpus, per-group streaming statistics of every unit (``ActivationStats``).

Examples:
    >>> import lensneurons as ln
    >>> stats = ln.collect(ln.organism.load(), ln.Corpus.from_texts(ln.organism.texts("heldout")),
    ...                    progress=False)
    >>> type(stats).__name__
    'ActivationStats'
"""

from lensneurons.collect.engine import collect
from lensneurons.collect.stats import ActivationStats

__all__ = ["ActivationStats", "collect"]
