"""Subjects: the models studied here, the shipped organism and the offline real models, with the
statistics collected on them once and shipped.

Examples:
    >>> from lensneurons.subjects import organism
    >>> organism.load().cfg.n_layers
    4
"""

from lensneurons.subjects import models, organism, real_stats

__all__ = ["models", "organism", "real_stats"]
