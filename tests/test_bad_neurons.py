"""Bad inputs to neuron sets: shapes, the papers' index lists, group maps (tests/_catalog.py)."""

from __future__ import annotations

import json

import _catalog
import pytest
import torch
from _catalog import Case

import lensneurons as ln
from lensneurons.errors import (
    CorruptResultError,
    NoGroupsError,
    ParameterError,
    ShapeMismatchError,
)


def json_file(c, name, content):
    path = c.tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def per_layer_lists_on_model(c):
    lists = {"fr": [[1, 2], [], [], [5]]}
    return ln.NeuronSets.from_index_lists(lists, model=c.model)


def fits_model(sets, c):
    assert sets["fr"].shape == (4, c.model.cfg.d_mlp)
    assert [idx.tolist() for idx in sets["fr"].indices] == [[1, 2], [], [], [5]]
    assert sets["fr"].gated is True


CASES = [
    Case("flat-list-json", 'NeuronSets.from_json(file with {"en": [1, 2, 3]}, width=2048)',
         lambda c: ln.NeuronSets.from_json(json_file(c, "flat.json", {"en": [1, 2, 3]}),
                                           width=2048),
         ShapeMismatchError, "one list per layer"),
    Case("lists-wrong-depth", "from_index_lists({'fr': 8 layer lists}, model=4-layer model)",
         lambda c: ln.NeuronSets.from_index_lists({"fr": [[1]] * 8}, model=c.model),
         ShapeMismatchError, "8 layers but the model has 4"),
    Case("lists-on-model", "from_index_lists({'fr': 4 layer lists}, model=model)",
         per_layer_lists_on_model, check=fits_model),
    Case("unit-out-of-range", "from_index_lists({'fr': [[5000], [], [], []]}, width=2048)",
         lambda c: ln.NeuronSets.from_index_lists({"fr": [[5000], [], [], []]}, width=2048),
         ShapeMismatchError, "5000.*0..2047"),
    Case("negative-unit", "from_index_lists({'fr': [[-1], [], [], []]}, width=2048)",
         lambda c: ln.NeuronSets.from_index_lists({"fr": [[-1], [], [], []]}, width=2048),
         ShapeMismatchError, "-1"),
    Case("float-units", "from_index_lists({'fr': [[0.5], [], [], []]}, width=2048)",
         lambda c: ln.NeuronSets.from_index_lists({"fr": [[0.5], [], [], []]}, width=2048),
         ShapeMismatchError, "non-integer"),
    Case("no-width", "from_index_lists({'fr': [[1]]}) (no width, no model)",
         lambda c: ln.NeuronSets.from_index_lists({"fr": [[1]]}), ParameterError, "width="),
    Case("width-disagrees", "from_index_lists(lists, width=100, model=model)",
         lambda c: ln.NeuronSets.from_index_lists({"fr": [[1]] * 4}, width=100, model=c.model),
         ShapeMismatchError, "2048"),
    Case("not-json", "NeuronSets.from_json(a file that is not JSON, width=8)",
         lambda c: ln.NeuronSets.from_json(json_file(c, "bad.json", "{not json"), width=8),
         CorruptResultError, "not a JSON"),
    Case("json-list", "NeuronSets.from_json(file holding a list, width=8)",
         lambda c: ln.NeuronSets.from_json(json_file(c, "list.json", [[1]]), width=8),
         ShapeMismatchError, "group"),
    Case("empty-sets", "NeuronSets({})",
         lambda c: ln.NeuronSets({}), NoGroupsError, "at least one group"),
    Case("mask-not-set", "NeuronSets({'fr': a bool tensor})",
         lambda c: ln.NeuronSets({"fr": torch.zeros(4, 8, dtype=torch.bool)}), ParameterError,
         "NeuronSet objects"),
    Case("mixed-shapes", "NeuronSets({'fr': [4, 8] set, 'de': [2, 8] set})",
         lambda c: ln.NeuronSets({"fr": ln.NeuronSet(torch.zeros(4, 8, dtype=torch.bool)),
                                  "de": ln.NeuronSet(torch.zeros(2, 8, dtype=torch.bool))}),
         ShapeMismatchError, "share shape"),
    Case("mask-3d", "NeuronSet(torch.zeros(2, 4, 8))",
         lambda c: ln.NeuronSet(torch.zeros(2, 4, 8)), ShapeMismatchError, r"\[layer, unit\]"),
    Case("combine-shapes", "NeuronSet [4, 8] | NeuronSet [2, 8]",
         lambda c: ln.NeuronSet(torch.zeros(4, 8, dtype=torch.bool))
         | ln.NeuronSet(torch.zeros(2, 8, dtype=torch.bool)), ShapeMismatchError, "combine"),
    Case("check-other-model", "sets.check_model(model) for sets of another shape",
         lambda c: ln.NeuronSets({"fr": ln.NeuronSet(torch.zeros(4, 8, dtype=torch.bool))})
         .check_model(c.model), ShapeMismatchError, "detected on this model"),
]


@pytest.mark.parametrize("case", _catalog.params(CASES))
def test_case(case, bad):
    _catalog.run_case(case, bad, _catalog.area_of(__name__))
