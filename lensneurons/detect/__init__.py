"""Detectors: functions from statistics to neuron sets; they never touch hooks or models."""

from lensneurons.detect.attribution import AttributionItem, AttributionScores, attribution
from lensneurons.detect.culture import CultureNeurons, culture_neurons
from lensneurons.detect.groupings import compound, generic, pure_culture
from lensneurons.detect.lape import lape
from lensneurons.detect.plnd import PLNDResult, plnd
from lensneurons.detect.sae_lape import sae_lape
from lensneurons.detect.ternary import TernaryResult, ternary

__all__ = [
    "AttributionItem", "AttributionScores", "attribution", "CultureNeurons", "culture_neurons",
    "compound", "generic", "pure_culture", "TernaryResult", "lape", "ternary",
           "PLNDResult", "plnd", "sae_lape"]
