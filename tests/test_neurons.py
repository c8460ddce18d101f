"""NeuronSet / NeuronSets: algebra, tables, overlap, formats and saving."""

import json

import pytest
import torch

import lensneurons as ln


def make_sets():
    fr = ln.NeuronSet.from_indices([[1, 2], [], [4]], width=6)
    de = ln.NeuronSet.from_indices([[2, 3], [5], []], width=6)
    return ln.NeuronSets({"fr": fr, "de": de}, {"method": "test"})


def test_set_algebra():
    sets = make_sets()
    fr, de = sets["fr"], sets["de"]
    assert (fr | de).indices[0].tolist() == [1, 2, 3]
    assert (fr & de).indices[0].tolist() == [2]
    assert len(fr - de) == 2 and len(fr) == 3
    assert fr.per_layer() == [2, 0, 1]
    with pytest.raises(ln.errors.ShapeMismatchError):
        fr | ln.NeuronSet.from_indices([[1]], width=6)
    with pytest.raises(ln.errors.ShapeMismatchError, match="names unit 9"):
        ln.NeuronSet.from_indices([[9]], width=6)


def test_table_overlap_exclusive():
    sets = make_sets()
    table = sets.table()
    assert table.loc["fr"].tolist() == [2, 0, 1, 3] and list(table.columns)[-1] == "total"
    iou = sets.overlap()
    assert iou.loc["fr", "de"] == pytest.approx(1 / 5) and iou.loc["fr", "fr"] == 1.0
    assert sets.overlap(kind="count").loc["fr", "de"] == 1
    exclusive = sets.exclusive()
    assert not exclusive["fr"].mask[0, 2] and exclusive["fr"].mask[0, 1]
    assert len(sets.union()) == 5


def test_plot_returns_a_figure():
    fig = make_sets().plot()
    assert fig.axes and fig.axes[0].get_xlabel() == "layer"


def test_paper_formats_round_trip(tmp_path):
    sets = make_sets()
    lists = sets.to_index_lists()
    assert lists == {"fr": [[1, 2], [], [4]], "de": [[2, 3], [5], []]}
    (tmp_path / "mask.json").write_text(json.dumps(lists))
    again = ln.NeuronSets.from_json(tmp_path / "mask.json", width=6)
    assert all(again[g] == sets[g] for g in sets)
    torch.save([[torch.tensor(idx) for idx in lists[g]] for g in ("fr", "de")], tmp_path / "m.pth")
    loaded = ln.NeuronSets.from_torch_masks(tmp_path / "m.pth", ["fr", "de"], width=6)
    assert loaded["de"] == sets["de"]
    with pytest.raises(ln.errors.ShapeMismatchError, match="holds 2 groups"):
        ln.NeuronSets.from_torch_masks(tmp_path / "m.pth", ["fr", "de", "ja"], width=6)


def test_save_load_and_model_checks(tmp_path, llama_model):
    stats = ln.collect(llama_model, ln.Corpus.from_texts(
        {"en": ["The cat sleeps."], "fr": ["Le chat dort."]}), progress=False)
    sets = ln.lape(stats, top_rate=0.05, filter_rate=0.5, bar_ratio=0.5)
    sets.save(tmp_path / "sets")
    loaded = ln.NeuronSets.load(tmp_path / "sets", model=llama_model)
    assert loaded.meta["method"] == "lape" and loaded["fr"] == sets["fr"]
    assert loaded["fr"].gated is True
    with pytest.raises(ln.errors.ShapeMismatchError, match="Use sets detected on this model"):
        make_sets().check_model(llama_model)
    with pytest.raises(ln.errors.UnknownGroupError, match="'zh'"):
        sets["zh"]
