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


@pytest.fixture(scope="session")
def organism():
    """The shipped model organism (shared: restore anything you edit)."""
    import lensneurons as ln

    return ln.organism.load()


@pytest.fixture(scope="session")
def corpus():
    """The organism's first 8 held-out sentences per language."""
    import lensneurons as ln

    return ln.Corpus.from_texts({lang: lines[:8]
                                 for lang, lines in ln.organism.texts("heldout").items()})


@pytest.fixture(scope="session")
def bad(tmp_path_factory: pytest.TempPathFactory):
    """The context of the bad-input catalog (tests/_catalog.py): organism, statistics, LAPE sets."""
    import _catalog

    import lensneurons as ln

    model = ln.organism.load()
    texts = {lang: lines[:8] for lang, lines in ln.organism.texts("heldout").items()}
    stats = ln.collect(model, ln.Corpus.from_texts(texts), progress=False)
    sets = ln.lape(stats, top_rate=0.05)
    return _catalog.Context(model, stats, sets, tmp_path_factory.mktemp("bad"))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With ``LENSNEURONS_ERRORS_TABLE=path``, write the bad-input table there (docs/errors.md)."""
    target = os.environ.get("LENSNEURONS_ERRORS_TABLE")
    if not target:
        return
    import _catalog

    if _catalog.OUTCOMES:
        with open(target, "w", encoding="utf-8") as f:
            f.write(_catalog.render(_catalog.OUTCOMES))
