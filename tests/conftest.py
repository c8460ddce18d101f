"""Shared pytest fixtures: tiny random models of every available architecture (tests/_models.py)."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import _models  # noqa: E402


@pytest.fixture(scope="session")
def tl_major() -> int:
    """Major version of the installed TransformerLens (2, 3, 4...)."""
    return _models.TL_MAJOR


@pytest.fixture(scope="session", params=_models.ARCHS, ids=list(_models.ARCHS))
def arch(request: pytest.FixtureRequest) -> str:
    """Each available architecture id (see ``_models.ARCHS``)."""
    return request.param


@pytest.fixture(scope="session")
def arch_model(arch: str):
    """The tiny model of each available architecture (shared: restore anything you edit)."""
    return _models.build(arch)


@pytest.fixture(scope="session")
def llama_model():
    """Gated-MLP (SiLU, RMSNorm, rotary) tiny model: the Llama bridge, or ``ht_llama`` on TL 2."""
    return _models.build("llama" if "llama" in _models.ARCHS else "ht_llama")


@pytest.fixture(scope="session")
def tokenizer():
    """The shared tiny multilingual byte-level BPE tokenizer."""
    return _models.tokenizer()
