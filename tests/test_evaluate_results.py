"""The result convention for evaluation and lens results: table, plot, save, load, notebook view.

Every result of ``lensneurons.evaluate`` and ``lensneurons.lens`` is made cheaply on the organism
and checked the same way: ``.table()`` is a DataFrame, ``.plot()`` a matplotlib Figure (drawn into
a given axes too), ``.save`` writes a folder through the persistence layer and refuses to replace
one without ``overwrite=True``, ``Type.load`` gives the same table back, and the notebook view
shows the figure. Every result made from a model records its fingerprint, so loading it against
another model is refused.
"""

from __future__ import annotations

import _catalog
import matplotlib
import pandas as pd
import pytest
import torch

import lensneurons as ln
from lensneurons.evaluate import (
    FallbackResult,
    ForcingResult,
    SequenceNLL,
    ShiftResult,
    SweepResult,
    layer_steps,
    shift_items,
)
from lensneurons.evaluate.nll import Perplexity, PerplexityMatrix
from lensneurons.lens import (
    LatentLanguageResult,
    LensResult,
    MWorkResult,
    TunedLens,
    latent_language,
    logit_lens,
    mwork,
    prompts,
)

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

PROMPTS = ["Q: Comment vas-tu ?\nA:", "Le chat dort sur le"]


@pytest.fixture(scope="module")
def model():
    return ln.organism.load()


@pytest.fixture(scope="module")
def results(model):
    """One result of every type, each from a cheap call on the organism."""
    mask = torch.zeros(model.cfg.n_layers, model.cfg.d_mlp, dtype=torch.bool)
    mask[1:, :64] = True
    fr = ln.NeuronSet.from_mask(mask)
    corpus = ln.Corpus.from_texts({g: lines[:4] for g, lines in
                                   ln.organism.texts("heldout").items() if g in ("fr", "de")})
    items = prompts.translation(src="fr", tgt="de", limit=12)
    shift = shift_items("en", "fr")[:4]
    perplexity = ln.perplexity(model, corpus, progress=False)
    out = {
        "LensResult": logit_lens(model, PROMPTS, top_k=3, token_sets={"x": [5, 6]}),
        "LatentLanguageResult": latent_language(model, items),
        "MWorkResult": mwork(model, items, {"fr off": ln.deactivate(fr)}, neurons=fr,
                             n1=1, n2=1),
        "TunedLens": TunedLens.fit(model, ln.organism.texts("heldout")["fr"], steps=3,
                                   seq_len=16, batch_size=2),
        "ForcingResult": ln.forcing_rate(model, PROMPTS, ln.amplify(fr, 3.0), "fr",
                                         max_new_tokens=6),
        "ShiftResult": ln.steering_shift(model, shift, ln.amplify(fr, 3.0)),
        "SweepResult": ln.sweep(model, lambda a: ln.amplify(fr, a), [1.0, 4.0],
                                prompts=PROMPTS, target="fr", lss_items=shift,
                                nll_corpus=corpus, max_new_tokens=4, progress=False),
        "FallbackResult": ln.fallback(model, PROMPTS[1:], layer_steps(fr, 2),
                                      max_new_tokens=4, progress=False),
        "Perplexity": perplexity,
        "SequenceNLL": perplexity.per_sequence,
        "PerplexityMatrix": ln.perplexity_matrix(model, corpus, ln.NeuronSets({"fr": fr}),
                                                 progress=False),
    }
    return out


TYPES = {cls.__name__: cls for cls in (
    LensResult, LatentLanguageResult, MWorkResult, TunedLens, ForcingResult, ShiftResult,
    SweepResult, FallbackResult, Perplexity, SequenceNLL, PerplexityMatrix)}


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.mark.parametrize("name", list(TYPES))
def test_result_convention(results, name, model, tmp_path):
    result = results[name]
    cls = TYPES[name]
    assert isinstance(result, cls) and isinstance(result, ln.core.result.Result)
    table = result.table()
    assert isinstance(table, pd.DataFrame) and not table.empty

    fig = result.plot()
    assert isinstance(fig, Figure) and fig.axes
    _, ax = plt.subplots()
    assert result.plot(ax=ax) is ax.figure

    path = result.save(tmp_path / name)
    assert path == tmp_path / name and path.is_dir()
    with pytest.raises(ln.errors.ResultExistsError, match="overwrite=True"):
        result.save(tmp_path / name)
    assert result.save(tmp_path / name, overwrite=True) == path

    loaded = cls.load(path)
    assert type(loaded) is cls
    pd.testing.assert_frame_equal(loaded.table(), table)
    pd.testing.assert_frame_equal(cls.load(path, model=model).table(), table)
    if name != "SequenceNLL":  # a part of Perplexity, which records the model
        assert loaded.fingerprint == result.fingerprint and result.fingerprint
        with pytest.raises(ln.errors.ModelMismatchError):
            cls.load(path, model=_catalog.same_shape_model())

    view = result._repr_html_()
    assert "<img" in view and "<table" in view


def test_a_result_loads_only_as_its_own_type(results, tmp_path):
    path = results["ShiftResult"].save(tmp_path / "shift")
    with pytest.raises(ln.errors.CorruptResultError, match="ShiftResult.load"):
        ForcingResult.load(path)


def test_loaded_results_keep_what_their_methods_need(results, tmp_path):
    """Beyond the table: the matrix's intervals, the lens's decoded tokens, the sweep's choice."""
    matrix = results["PerplexityMatrix"]
    back = PerplexityMatrix.load(matrix.save(tmp_path / "matrix"))
    pd.testing.assert_frame_equal(ln.nll_delta(back, interval=0.9),
                                  ln.nll_delta(matrix, interval=0.9))
    lens = results["LensResult"]
    assert LensResult.load(lens.save(tmp_path / "lens")).top_tokens(2) == lens.top_tokens(2)
    sweep = results["SweepResult"]
    assert SweepResult.load(sweep.save(tmp_path / "sweep")).best() == sweep.best()
    shift = results["ShiftResult"]
    again = ShiftResult.load(shift.save(tmp_path / "shift"))
    assert again.items == shift.items and again.shifts.tolist() == shift.shifts.tolist()
    fallback = results["FallbackResult"]
    assert FallbackResult.load(fallback.save(tmp_path / "fallback")).dominant().equals(
        fallback.dominant())


def test_tables_name_the_lens_axis_depth(results):
    """The lens's axis is the depth (0 = embeddings), never a block-indexed "layer"."""
    for name in ("LensResult", "LatentLanguageResult", "MWorkResult"):
        columns = results[name].table().columns
        assert "depth" in columns and "layer" not in columns
    assert results["TunedLens"].table().index.name == "depth"
