"""Bad inputs to neuron sets: shapes, the papers' index lists, group maps (tests/_catalog.py)."""

from __future__ import annotations

import json
import uuid

import _catalog
import pytest
import torch
from _catalog import Case, same_shape_model

import lensneurons as ln
from lensneurons.errors import (
    CorruptResultError,
    ModelMismatchError,
    NoGroupsError,
    ParameterError,
    ShapeMismatchError,
    UnknownGroupError,
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


def shifted(fingerprint, by):
    return {**fingerprint, "embedding_slice": (torch.tensor(fingerprint["embedding_slice"])
                                               + by).tolist()}


def saved_and_loaded(c, sets):
    path = c.tmp_path / f"sets-{uuid.uuid4().hex[:8]}"
    sets.save(path)
    return ln.NeuronSets.load(path)


def edits_the_model(hooks, c):
    assert len(hooks) > 1  # the layer check and at least one edit
    tokens = c.model.to_tokens("Le chat dort.")
    with c.model.hooks(fwd_hooks=hooks):
        edited = c.model(tokens)
    assert not torch.allclose(edited, c.model(tokens))


def in_bf16(c):
    """The French set as if detected on the same model in bf16 (its fingerprint rounded)."""
    fr = c.sets["fr"]
    rounded = torch.tensor(fr.fingerprint["embedding_slice"]).bfloat16().float().tolist()
    return fr.with_fingerprint({**fr.fingerprint, "embedding_slice": rounded})


def _assert(condition):
    assert condition


def same_mask_as_fr(result, c):
    assert torch.equal(result.mask, c.sets["fr"].mask)


CASES = [
    # --- group names that print alike name one group -----------------------------------------
    Case("sets-lookup-spaces", "sets[' fr ']", lambda c: c.sets[" fr "], check=same_mask_as_fr),
    Case("stats-lookup-spaces", "stats.index('fr\\n')", lambda c: c.stats.index("fr\n"),
         check=lambda r, c: _assert(r == c.stats.groups.index("fr"))),
    Case("sets-lookup-unknown", "sets['xx']", lambda c: c.sets["xx"], UnknownGroupError,
         "groups: "),
    # --- ternary and fallback sets carry the model too ----------------------------------------
    Case("ternary-general-fingerprint", "ln.ternary(stats).general",
         lambda c: ln.ternary(c.stats, lam=0.05).general,
         check=lambda r, c: _assert(r.fingerprint == c.stats.meta["fingerprint"])),
    Case("fallback-steps-fingerprint", "ln.evaluate.layer_steps(sets['fr'])",
         lambda c: ln.evaluate.layer_steps(c.sets["fr"], n_groups=2),
         check=lambda r, c: _assert(all(s.fingerprint == c.sets["fr"].fingerprint
                                        and s.fingerprint for s in r.values()))),
    # --- a set taken out of NeuronSets keeps the model it was detected on ----------------
    Case("set-other-weights", 'deactivate(sets["fr"], model=other model of the same shape)',
         lambda c: ln.deactivate(c.sets["fr"], model=same_shape_model()), ModelMismatchError,
         "same shape but other weights.*Use sets detected on this model"),
    Case("set-other-weights-check", 'sets["fr"].check_model(other model of the same shape)',
         lambda c: c.sets["fr"].check_model(same_shape_model()), ModelMismatchError,
         "with_fingerprint\\(None\\)"),
    Case("set-saved-loaded-other-weights",
         'NeuronSets({"fr": sets["fr"]}).save(p); deactivate(NeuronSets.load(p)["fr"], '
         "model=other)",
         lambda c: ln.deactivate(saved_and_loaded(c, ln.NeuronSets({"fr": c.sets["fr"]}))["fr"],
                                 model=same_shape_model()),
         ModelMismatchError, "other weights"),
    Case("set-own-model", 'deactivate(sets["fr"], model=model)',
         lambda c: ln.deactivate(c.sets["fr"], model=c.model), check=edits_the_model),
    Case("set-bf16-fingerprint", 'deactivate(set detected in bf16, model=fp32 model)',
         lambda c: ln.deactivate(in_bf16(c), model=c.model), check=edits_the_model),
    Case("set-by-hand-any-model", 'deactivate(NeuronSet.from_mask(mask), model=other model)',
         lambda c: ln.deactivate(ln.NeuronSet.from_mask(c.sets["fr"].mask, gated=True),
                                 model=same_shape_model()),
         check=lambda hooks, c: (len(hooks) > 1) or pytest.fail()),
    Case("set-record-dropped", 'deactivate(sets["fr"].with_fingerprint(None), model=other)',
         lambda c: ln.deactivate(c.sets["fr"].with_fingerprint(None), model=same_shape_model()),
         check=lambda hooks, c: (len(hooks) > 1) or pytest.fail()),
    Case("sets-of-two-models", 'NeuronSets({"fr": sets["fr"], "de": set of another model})',
         lambda c: ln.NeuronSets({"fr": c.sets["fr"], "de": c.sets["de"].with_fingerprint(
             shifted(c.sets["de"].fingerprint, 0.5))}),
         ModelMismatchError, "different models"),
    Case("combine-two-models", 'sets["fr"] | set of another model',
         lambda c: c.sets["fr"] | c.sets["de"].with_fingerprint(
             shifted(c.sets["de"].fingerprint, 0.5)),
         ModelMismatchError, "Cannot combine neuron sets detected on different models"),
    Case("combine-keeps-record", 'deactivate(sets["fr"] | hand-made set, model=other)',
         lambda c: ln.deactivate(c.sets["fr"] | ln.NeuronSet(c.sets["de"].mask),
                                 model=same_shape_model()),
         ModelMismatchError, "other weights"),

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
