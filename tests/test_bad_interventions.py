"""Bad inputs to the intervention factories (see tests/_catalog.py)."""

from __future__ import annotations

from dataclasses import replace

import _catalog
import pytest
import torch
from _catalog import Case, same_shape_model

import lensneurons as ln
from lensneurons.errors import (
    EmptyInterventionWarning,
    LayerIndexError,
    ModelMismatchError,
    ParameterError,
    ShapeMismatchError,
    TooFewGroupsError,
)


def units(c, layers=(0, 3), n_layers=None, width=None):
    """A set of units 1 and 2 in ``layers`` (on the organism's shape unless told)."""
    mask = torch.zeros(n_layers or c.model.cfg.n_layers, width or c.model.cfg.d_mlp,
                       dtype=torch.bool)
    for layer in layers:
        mask[layer, 1:3] = True
    return ln.NeuronSet.from_mask(mask, gated=True)


def names(hooks):
    return [name for name, _ in hooks if isinstance(name, str)]


def register(c, hooks):
    with c.model.hooks(fwd_hooks=hooks):
        c.model(c.model.to_tokens("Le chat"))


def changes_only_last_block(hooks, c):
    assert names(hooks) == ["blocks.3.mlp.hook_post"]
    tokens = c.model.to_tokens("Le chat dort.")
    with c.model.hooks(fwd_hooks=hooks):
        edited = c.model(tokens)
    assert not torch.allclose(edited, c.model(tokens))


def warns_empty(c):
    with pytest.warns(EmptyInterventionWarning, match="change nothing"):
        return ln.deactivate(units(c, layers=(3,)), layers=[0])


def random_overlapping(c):
    full = ln.NeuronSet.from_mask(torch.ones(4, c.model.cfg.d_mlp, dtype=torch.bool))
    return full, ln.neurons.random_like(full, disjoint=False)


def stats_of_other_weights(c):
    fp = c.stats.meta["fingerprint"]
    moved = (torch.tensor(fp["embedding_slice"]) + 0.5).tolist()
    return replace(c.stats, meta={**c.stats.meta, "fingerprint": {**fp, "embedding_slice": moved}})


def steers_fr(hooks, c):
    names_written = names(hooks)
    assert names_written and all(n.startswith("blocks.") for n in names_written)
    tokens = c.model.to_tokens("The cat sleeps.")
    with c.model.hooks(fwd_hooks=hooks):
        edited = c.model(tokens)
    assert not torch.allclose(edited, c.model(tokens))


CASES = [
    Case("layers-minus-one", "deactivate(s, layers=[-1])",
         lambda c: ln.deactivate(units(c), layers=[-1]), check=changes_only_last_block),
    Case("layers-int", "deactivate(s, layers=-1)",
         lambda c: ln.deactivate(units(c), layers=-1), check=changes_only_last_block),
    Case("layers-99", "deactivate(s, layers=[99])",
         lambda c: ln.deactivate(units(c), layers=[99]), LayerIndexError, "0..3"),
    Case("layers-minus-5", "deactivate(s, layers=[-5]) on 4 layers",
         lambda c: ln.deactivate(units(c), layers=[-5]), LayerIndexError, "does not exist"),
    Case("layers-string", 'deactivate(s, layers="0")',
         lambda c: ln.deactivate(units(c), layers="0"), ParameterError, "list of ints"),
    Case("layers-empty", "deactivate(s, layers=[])",
         lambda c: ln.deactivate(units(c), layers=[]), ParameterError, "pass None"),
    Case("layers-float", "deactivate(s, layers=[0.5])",
         lambda c: ln.deactivate(units(c), layers=[0.5]), ParameterError, "ints"),
    Case("layers-without-units", "deactivate(s, layers=[0]) where s has no unit in layer 0",
         warns_empty, check=lambda hooks, c: (names(hooks) == [] or pytest.fail("hooks"))),
    Case("positions-empty", "deactivate(s, positions=[])",
         lambda c: ln.deactivate(units(c), positions=[]), ParameterError, "no position"),
    Case("positions-empty-tensor", "deactivate(s, positions=torch.tensor([]))",
         lambda c: ln.deactivate(units(c), positions=torch.tensor([])), ParameterError,
         "ints"),
    Case("positions-string", 'deactivate(s, positions="0")',
         lambda c: ln.deactivate(units(c), positions="0"), ParameterError, "int"),
    Case("positions-tensor", "deactivate(s, positions=torch.tensor([0, 1]))",
         lambda c: ln.deactivate(units(c), positions=torch.tensor([0, 1])),
         check=lambda hooks, c: register(c, hooks)),
    Case("amplify-nan", 'amplify(s, float("nan"))',
         lambda c: ln.amplify(units(c), float("nan")), ParameterError, "finite"),
    Case("amplify-inf", 'amplify(s, float("inf"))',
         lambda c: ln.amplify(units(c), float("inf")), ParameterError, "finite"),
    Case("set-nan-tensor", "set_activation(s, tensor with a NaN)",
         lambda c: ln.set_activation(units(c), torch.full((4, c.model.cfg.d_mlp), float("nan"))),
         ParameterError, "NaN"),
    Case("add-inf", 'add_activation(s, float("-inf"))',
         lambda c: ln.add_activation(units(c), float("-inf")), ParameterError, "finite"),
    Case("values-wrong-shape", "set_activation(s, torch.ones(3))",
         lambda c: ln.set_activation(units(c), torch.ones(3)), ShapeMismatchError,
         r"\[layer, unit\] tensor of shape"),
    Case("steer-nan-alpha", 'steer(sets, stats, "en", "fr", alpha=float("nan"))',
         lambda c: ln.steer(c.sets, c.stats, "en", "fr", alpha=float("nan")), ParameterError,
         "alpha"),
    Case("steer-method", 'steer(sets, stats, "en", "fr", method="magic")',
         lambda c: ln.steer(c.sets, c.stats, "en", "fr", method="magic"), ParameterError,
         "additive"),
    Case("steer-diffmean-one-group", 'steer(sets, stats.select(["fr"]), None, "fr", '
         'method="diffmean")',
         lambda c: ln.steer(c.sets, c.stats.select(["fr"]), None, "fr", method="diffmean"),
         TooFewGroupsError, "at least two groups.*method='additive'"),
    Case("steer-diffmean-two-groups", 'steer(sets, stats.select(["en", "fr"]), "en", "fr", '
         'method="diffmean", model=model)',
         lambda c: ln.steer(c.sets, c.stats.select(["en", "fr"]), "en", "fr",
                            method="diffmean", model=c.model), check=steers_fr),
    Case("steer-other-model", 'steer(sets, stats, "en", "fr", model=other model, same shape)',
         lambda c: ln.steer(c.sets, c.stats, "en", "fr", model=same_shape_model()),
         ModelMismatchError, "other weights.*collected on this model"),
    Case("steer-stats-of-other-model", 'steer(sets, stats of another model, "en", "fr")',
         lambda c: ln.steer(c.sets, stats_of_other_weights(c), "en", "fr"),
         ModelMismatchError, "different models"),
    Case("steer-sets-for-stats", 'steer(sets, sets, "en", "fr")',
         lambda c: ln.steer(c.sets, c.sets, "en", "fr"), ParameterError, "ActivationStats"),
    Case("deactivate-other-model", 'deactivate(sets["fr"], model=other model, same shape)',
         lambda c: ln.deactivate(c.sets["fr"], model=same_shape_model()), ModelMismatchError,
         "Use sets detected on this model"),
    Case("steer-one-set", 'steer(sets["fr"], stats, "en", "fr")',
         lambda c: ln.steer(c.sets["fr"], c.stats, "en", "fr"), ParameterError, "NeuronSets"),
    Case("not-a-set", "deactivate(sets) (all groups, not one set)",
         lambda c: ln.deactivate(c.sets), ParameterError, r"neurons\['fr'\]"),
    Case("deeper-set", "a [8, d_mlp] set on a 4-layer model, hooks registered",
         lambda c: register(c, ln.deactivate(units(c, layers=(0, 7), n_layers=8))),
         ShapeMismatchError, "8 layers .* 4 blocks"),
    Case("shallower-set", "a [2, d_mlp] set on a 4-layer model, hooks registered",
         lambda c: register(c, ln.deactivate(units(c, layers=(0,), n_layers=2))),
         ShapeMismatchError, "2 layers .* at least 3 blocks"),
    Case("shallower-set-model", "deactivate(a [2, d_mlp] set, model=model)",
         lambda c: ln.deactivate(units(c, layers=(0,), n_layers=2), model=c.model),
         ShapeMismatchError, r"\(2, 2048\)"),
    Case("narrower-set", "a [4, 100] set on d_mlp=2048, first forward pass",
         lambda c: register(c, ln.deactivate(units(c, width=100))),
         ShapeMismatchError, "width 100"),
    Case("random-like-full-layer", "random_like(a set holding whole layers)",
         lambda c: ln.neurons.random_like(
             ln.NeuronSet.from_mask(torch.ones(4, 16, dtype=torch.bool))),
         ParameterError, "overlap"),
    Case("random-like-overlap-allowed", "random_like(full set, disjoint=False)",
         random_overlapping, check=lambda pair, c: (pair[1] == pair[0]) or pytest.fail()),
]


@pytest.mark.parametrize("case", _catalog.params(CASES))
def test_case(case, bad):
    _catalog.run_case(case, bad, _catalog.area_of(__name__))
