"""The detector results follow the result convention (core/result.py) on the organism.

``TernaryResult``, ``PLNDResult``, ``AttributionScores`` and ``CultureNeurons``: a table, a
figure, a saved folder that loads back with an equal table (and refuses another model), one
neuron set per group, and a notebook view with the figure.
"""

from __future__ import annotations

import functools

import _models
import matplotlib
import pandas as pd
import pytest

import lensneurons as ln
from lensneurons.detect.attribution_sets import others_mean
from lensneurons.errors import ModelMismatchError, ResultExistsError
from lensneurons.neurons import NeuronSets

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402

ITEMS = {"en": [("The cat sleeps on the", " mat"), ("The weather is", " nice")],
         "fr": [("Le chat dort sur le", " tapis"), ("Il fait", " beau")],
         "de": [("Die Katze schläft auf der", " Matte"), ("Das Wetter ist", " schön")]}


@pytest.fixture(scope="module")
def stats(organism, corpus):
    return ln.collect(organism, corpus, progress=False)


@functools.cache
def _attribution(organism, group):
    return ln.attribution(organism, ITEMS[group], sites=("mlp", "attn.v"), progress=False)


def make_ternary(organism, stats):
    return ln.ternary(stats, top_rate=0.02, lam=0.05)


def make_plnd(organism, stats):
    texts = {g: lines[:3] for g, lines in ln.organism.texts("heldout").items()
             if g in ("en", "fr", "de")}
    return ln.plnd(organism, ln.Corpus.from_texts(texts), sites=("mlp", "attn.v"),
                   progress=False)


def make_attribution(organism, stats):
    return _attribution(organism, "fr")


def make_culture(organism, stats):
    scores = {g: _attribution(organism, g) for g in ITEMS}
    return ln.culture_neurons(scores, others_mean(scores), None, specific_top_rate=0.01)


MAKERS = {"ternary": (make_ternary, ln.TernaryResult), "plnd": (make_plnd, ln.PLNDResult),
          "attribution": (make_attribution, ln.AttributionScores),
          "culture": (make_culture, ln.CultureNeurons)}


@pytest.fixture(scope="module", params=list(MAKERS))
def made(request, organism, stats):
    make, cls = MAKERS[request.param]
    return make(organism, stats), cls


def test_table_and_plot(made):
    import matplotlib.pyplot as plt

    result, _ = made
    table = result.table()
    assert isinstance(table, pd.DataFrame) and len(table) > 0
    fig = result.plot()
    assert isinstance(fig, Figure)
    plt.close(fig)
    fig, ax = plt.subplots()
    assert result.plot(ax=ax) is fig  # drawn into the given axes
    assert ax.has_data()
    plt.close(fig)


def test_save_refuses_an_existing_folder_and_loads_an_equal_table(made, organism, tmp_path):
    result, cls = made
    path = tmp_path / "result"
    written = result.save(path)
    assert written == path and path.is_dir()
    with pytest.raises(ResultExistsError):
        result.save(path)
    assert result.save(path, overwrite=True) == path
    back = cls.load(path, model=organism)
    assert type(back) is cls
    pd.testing.assert_frame_equal(back.table(), result.table())
    pd.testing.assert_frame_equal(cls.load(path).table(), result.table())
    with pytest.raises(ModelMismatchError):
        cls.load(path, model=_models.build(_models.ARCHS[0]))


def test_neuron_sets_and_notebook_view(made):
    result, _ = made
    sets = result.neuron_sets()
    assert isinstance(sets, NeuronSets) and len(sets) >= 1
    assert "<img" in result._repr_html_()


def test_neuron_sets_of_each_detector(organism, stats):
    ternary = make_ternary(organism, stats)
    language = ternary.neuron_sets()
    assert language.groups == stats.groups
    for g in stats.groups:  # specific ∪ related; general and the parts stay attributes
        assert language[g] == ternary.specific[g] | ternary.related[g]
    scores = make_attribution(organism, stats)
    top = scores.neuron_sets(top_rate=0.01, site="attn.v")
    assert top.groups == ["top"] and len(top["top"]) == round(0.01 * scores["attn.v"].numel())
    assert top["top"].site == "attn.v" and top.meta["top_rate"] == 0.01
    culture = make_culture(organism, stats)
    assert culture.neuron_sets().groups == list(ITEMS)
    assert culture.neuron_sets("attn.v") is culture.specific["attn.v"]
    with pytest.raises(ln.errors.UnknownSiteError):
        culture.neuron_sets("attn.q")
    plnd = make_plnd(organism, stats)
    assert plnd.neuron_sets("attn.v").groups == plnd.groups
    assert plnd.meta["top_rate"]["mlp"] == pytest.approx(2000 / 14336)


def test_plnd_folders_keep_their_format(organism, tmp_path):
    """The file keeps the format's key ``top_fraction``; the loaded result says ``top_rate``."""
    import json

    texts = {g: lines[:2] for g, lines in ln.organism.texts("heldout").items() if g in ("en", "fr")}
    result = ln.plnd(organism, ln.Corpus.from_texts(texts), sites=("mlp",), top_rate=0.1,
                     progress=False)
    result.save(tmp_path / "p")
    meta = json.loads((tmp_path / "p" / "plnd.json").read_text())
    assert meta["top_fraction"] == {"mlp": 0.1} and "top_rate" not in meta
    assert ln.PLNDResult.load(tmp_path / "p").meta["top_rate"] == {"mlp": 0.1}
