"""Integration on the shipped model organism: LAPE neurons carry their language."""

import pytest

import lensneurons as ln
from lensneurons.cli import main
from lensneurons.subjects import organism


@pytest.fixture(scope="module")
def model():
    return organism.load()


@pytest.fixture(scope="module")
def stats(model):
    return ln.collect(model, ln.Corpus.from_texts(organism.texts("train")), progress=False)


@pytest.fixture(scope="module")
def delta(model, stats):
    neurons = ln.lape(stats, top_rate=ln.organism.TOP_RATE)
    heldout = ln.Corpus.from_texts(organism.texts("heldout"))
    return ln.nll_delta(ln.perplexity_matrix(model, heldout, neurons, progress=False))


@pytest.mark.parametrize("language", [lang for lang in organism.LANGUAGES if lang != "en"])
def test_deactivating_a_language_hurts_that_language_most(delta, language):
    own = delta.loc[language, language]
    others = delta.loc[language].drop(language).mean()
    assert own > 0
    assert own >= 3 * others, f"{language}: own rise {own:.3f}, mean rise elsewhere {others:.3f}"
    assert own > delta.loc[f"random:{language}", language]


def test_lape_sets_on_the_organism(stats):
    neurons = ln.lape(stats, top_rate=ln.organism.TOP_RATE)
    n_layers, width = stats.shape
    assert len(neurons.union()) == round(ln.organism.TOP_RATE * n_layers * width)
    assert all(len(neurons[lang]) > 0 for lang in organism.LANGUAGES if lang != "en")


def test_demo_writes_its_outputs(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "LAPE" in printed and "Change of held-out mean NLL" in printed
    for name in ("layers.png", "nll_delta.png", "nll_delta.csv"):
        assert (tmp_path / name).stat().st_size > 0
    assert ln.NeuronSets.load(tmp_path / "neurons", model=organism.load()).groups == list(
        organism.LANGUAGES)
