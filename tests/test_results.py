"""Every public result type follows the result convention (core/result.py), walked here.

The walk is complete by construction: every subclass of ``Result`` in the package must have a
maker below, or be walked by the per-stage result tests (``test_detect_results.MAKERS``,
``test_evaluate_results.TYPES``, which run the same checks); a new result type without one fails.
Each is made on the organism, then: ``table()`` is a DataFrame, ``plot()`` a Figure,
``save`` returns the folder and refuses an existing one, ``load`` gives an equal table, and the
notebook view holds the figure.
"""

from __future__ import annotations

import importlib
import pkgutil

import matplotlib
import pandas as pd
import pytest
import test_detect_results
import test_evaluate_results

import lensneurons as ln
from lensneurons.core.result import Result
from lensneurons.errors import ResultExistsError

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def make_stats(organism, stats):
    return stats


def make_sets(organism, stats):
    return ln.lape(stats, top_rate=0.05)


def make_lexicon(organism, stats):
    return ln.corpora.build_lexicon("fr", "en", sources=("sample",))


def make_mix(organism, stats):
    lexicon = ln.corpora.build_lexicon("fr", "en", sources=("sample",))
    return ln.corpora.code_mix(ln.corpora.load_sample(["fr"])["fr"][:8], lexicon, 0.3)


def make_coverage(organism, stats):
    lexicon = ln.corpora.build_lexicon("fr", "en", sources=("sample",))
    return ln.corpora.coverage(ln.corpora.load_sample(["fr"])["fr"][:8], lexicon)


def make_card(organism, stats):  # the whole report is made in tests/test_report.py
    from lensneurons.core.figures import figure_png
    from lensneurons.show.card import CardSection

    sets = ln.lape(stats, top_rate=0.05)
    section = CardSection("lape", "Language neurons", "Sets per layer.", sets.table(),
                          figure_png(sets.plot()))
    return ln.ModelCard(title="organism", model={"n_layers": 4}, sections=[section],
                        fingerprint=ln.ModelView(organism).fingerprint())


def make_directions(organism, stats):
    texts = {g: lines[:6] for g, lines in ln.organism.texts("heldout").items()}
    return ln.pca_directions(organism, ln.Corpus.from_texts(texts), "fr", progress=False)


MAKERS = {
    "directions": (make_directions, ln.Directions),
    "stats": (make_stats, ln.ActivationStats), "sets": (make_sets, ln.NeuronSets),
    "lexicon": (make_lexicon, ln.corpora.Lexicon), "mix": (make_mix, ln.corpora.MixResult),
    "coverage": (make_coverage, ln.corpora.Coverage), "card": (make_card, ln.ModelCard),
}


def _result_types() -> set[type]:
    for info in pkgutil.walk_packages(ln.__path__, "lensneurons."):
        importlib.import_module(info.name)
    found, todo = set(), [Result]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub.__module__.startswith("lensneurons.") and sub not in found:
                found.add(sub)
                todo.append(sub)
    return found


def test_every_result_type_is_walked():
    walked = {cls for _, cls in [*MAKERS.values(), *test_detect_results.MAKERS.values()]}
    walked |= set(test_evaluate_results.TYPES.values())
    missing = sorted(cls.__qualname__ for cls in _result_types() - walked)
    assert not missing, f"result types without a maker in tests/test_results.py: {missing}"


@pytest.fixture(scope="module")
def stats(organism):
    texts = {g: lines[:12] for g, lines in ln.organism.texts("heldout").items()}
    return ln.collect(organism, ln.Corpus.from_texts(texts), progress=False)


@pytest.mark.parametrize("name", list(MAKERS))
def test_result_convention(name, organism, stats, tmp_path):
    make, cls = MAKERS[name]
    result = make(organism, stats)
    assert isinstance(result, cls)
    table = result.table()
    assert isinstance(table, pd.DataFrame) and len(table) > 0
    fig = result.plot()
    assert isinstance(fig, Figure)
    plt.close(fig)
    folder = result.save(tmp_path / name)
    assert folder == tmp_path / name and folder.is_dir()
    with pytest.raises(ResultExistsError):
        result.save(tmp_path / name)
    assert result.save(tmp_path / name, overwrite=True) == folder
    back = cls.load(folder)
    pd.testing.assert_frame_equal(back.table(), table)
    assert "<img" in result._repr_html_()


def test_the_codec_keeps_dtypes_missing_values_and_multiindex():
    import numpy as np

    from lensneurons.core.result import decode, encode

    frame = pd.DataFrame(
        {"a": [1.0, np.nan, np.inf], "b": [1, 2, 3], "c": [True, False, True],
         "d": ["x", "y", None], 0: np.array([1.5, 2.5, -0.5], dtype=np.float32)},
        index=pd.MultiIndex.from_tuples([("fr", 0), ("fr", 1), ("de", 0)], names=["g", "l"]))
    frame["e"] = pd.Categorical(["u", "v", "u"])
    tensors: dict = {}
    record = encode({"table": frame, "pairs": {1.5: ["a"]}, "t": (1, "x")}, tensors, "")
    back = decode(record, tensors)
    pd.testing.assert_frame_equal(back["table"], frame)
    assert back["pairs"] == {1.5: ["a"]} and back["t"] == (1, "x")
