"""Detectors: functions from statistics to neuron sets; they never touch hooks or models."""

from lensneurons.detect.lape import lape
from lensneurons.detect.ternary import TernaryResult, ternary

__all__ = ["TernaryResult", "lape", "ternary"]
