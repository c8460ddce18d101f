"""Fixtures of the real-model tests: Gemma 3 270M and SmolLM2-135M from their registry packages.

These tests carry the ``real`` marker: ``make test-real`` runs them (after ``make setup-real``)
with ``LENSNEURONS_REQUIRE_REAL=1``, so a missing model fails instead of skipping; ``make test``
deselects them.
"""

from __future__ import annotations

import os

import pytest
import torch

import lensneurons as ln
from lensneurons.subjects import models, real_stats


def _model(short_name: str):
    if not models.is_installed(short_name):
        message = f"{short_name} is not installed: {models.OFFLINE_MODELS[short_name].install}"
        if os.environ.get("LENSNEURONS_REQUIRE_REAL"):
            pytest.fail(message)
        pytest.skip(message)
    torch.set_num_threads(max(1, os.cpu_count() or 1))  # real models gain from every core
    return models.load(short_name, progress=False)


@pytest.fixture(scope="session")
def gemma():
    """Gemma 3 270M (fp32, TransformerBridge on TL >= 3)."""
    return _model("gemma-3-270m")


@pytest.fixture(scope="session")
def gemma_stats(gemma):
    """The shipped statistics of Gemma 3 270M, checked against the model."""
    return real_stats.load("gemma-3-270m", model=gemma)


@pytest.fixture(scope="session")
def smollm():
    """SmolLM2-135M-Instruct."""
    return _model("smollm2-135m")


@pytest.fixture(scope="session")
def gemma_view(gemma):
    return ln.ModelView(gemma)
