"""Subjects: the models studied, the shipped organism and the offline real models.

The statistics of the real models are collected once and shipped (``real_stats``).

Examples:
    >>> from lensneurons.subjects import organism
    >>> organism.load().cfg.n_layers
    4
"""

from lensneurons.subjects import models, organism, real_stats

__all__ = ["models", "organism", "real_stats"]
