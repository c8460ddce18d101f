"""Detect: from statistics (or passes of their own) to neuron sets and directions; never hooks.

Every detector selects its share with ``top_rate``; every detector result has ``.neuron_sets()``.

Examples:
    >>> import lensneurons as ln
    >>> stats = ln.real_stats.load("gemma-3-270m")
    >>> sorted(ln.lape(stats, top_rate=0.01))[:3]
    ['de', 'el', 'en']
"""

from lensneurons.detect.attribution import AttributionItem, AttributionScores, attribution
from lensneurons.detect.attribution_sets import next_token_items, others_mean
from lensneurons.detect.culture import CultureNeurons, culture_neurons
from lensneurons.detect.directions import Directions, diffmean_directions, pca_directions
from lensneurons.detect.groupings import compound, generic, pure_culture
from lensneurons.detect.lape import lape
from lensneurons.detect.plnd import PLNDResult, plnd
from lensneurons.detect.sae_lape import sae_lape
from lensneurons.detect.specialisation import active_sets, plot_specialisation, specialisation_iou
from lensneurons.detect.ternary import TernaryResult, ternary

__all__ = [
    "AttributionItem", "AttributionScores", "CultureNeurons", "Directions", "PLNDResult",
    "TernaryResult", "active_sets", "attribution", "compound", "culture_neurons",
    "diffmean_directions", "generic", "lape", "pca_directions",
    "next_token_items", "others_mean", "plnd", "plot_specialisation", "pure_culture", "sae_lape",
    "specialisation_iou", "ternary",
]
