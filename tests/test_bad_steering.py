"""Bad inputs to forcing_rate, steering_shift, sweep, fallback and amplification (_catalog.py)."""

from __future__ import annotations

import math

import _catalog
import pytest
import torch
from _catalog import Case

import lensneurons as ln
from lensneurons.corpora import forcing_prompts
from lensneurons.errors import (
    ContextLengthError,
    InvalidTextError,
    MissingStatisticError,
    ParameterError,
    ShapeMismatchError,
    UnknownLanguageError,
)
from lensneurons.evaluate import ShiftItem, layer_steps, quantile_steps, shift_items
from lensneurons.intervene import amplify_to

PROMPTS = ["The weather is"]


def foreign_hooks(c):
    """Deactivation hooks of a set built for an 8-block model (the organism has 4)."""
    mask = torch.zeros(8, c.model.cfg.d_mlp, dtype=torch.bool)
    mask[7, 0] = True
    return ln.deactivate(ln.NeuronSet.from_mask(mask, gated=True))


def forcing(c, prompts=PROMPTS, hooks=(), target="fr", **options):
    return ln.forcing_rate(c.model, prompts, list(hooks), target, max_new_tokens=4, **options)


def sweep(c, make=None, values=(1.0,), **options):
    make = make or (lambda a: ln.amplify(c.sets["fr"], a))
    return ln.sweep(c.model, make, values, progress=False, **options)


def assert_decoding(result, mode):
    """A forcing result that says how it decoded (``mode``, or either way when None)."""
    assert result.n == 1 and result.decoding in ("kv-cache", "full-forward")
    assert mode is None or result.decoding == mode


def greedy_equals_single(result, c):
    """Two identical prompts give two identical greedy continuations."""
    assert result.n == 2 and result.generations[0] == result.generations[1]


CASES = [
    # --- forcing_rate -------------------------------------------------------------------------
    Case("steering-no-prompts", "forcing_rate(model, [], [], 'fr')",
         lambda c: forcing(c, prompts=[]), ParameterError, "at least one prompt"),
    Case("steering-prompt-string", "forcing_rate(model, 'The weather is', [], 'fr')",
         lambda c: forcing(c, prompts="The weather is"), ParameterError, r"wrap it"),
    Case("steering-prompt-blank", "forcing_rate(model, ['  '], [], 'fr')",
         lambda c: forcing(c, prompts=["  "]), InvalidTextError, "Remove it or write a prompt"),
    Case("steering-prompt-none", "forcing_rate(model, [None], [], 'fr')",
         lambda c: forcing(c, prompts=[None]), InvalidTextError, "not a string"),
    Case("steering-max-new-tokens-zero", "forcing_rate(..., max_new_tokens=0)",
         lambda c: ln.forcing_rate(c.model, PROMPTS, [], "fr", max_new_tokens=0),
         ParameterError, "max_new_tokens"),
    Case("steering-stop-string", "forcing_rate(..., stop='\\nQ:')",
         lambda c: forcing(c, stop="\nQ:"), ParameterError, "list of non-empty strings"),
    Case("steering-samples-greedy", "forcing_rate(..., n_samples=3)",
         lambda c: forcing(c, n_samples=3), ParameterError, "do_sample=True"),
    Case("steering-unknown-target", "forcing_rate(model, prompts, [], 'xx')",
         lambda c: forcing(c, target="xx"), UnknownLanguageError, "xx"),
    Case("steering-foreign-hooks", "forcing_rate(model, prompts, hooks_for_8_blocks, 'fr')",
         lambda c: forcing(c, hooks=foreign_hooks(c)), ShapeMismatchError, "8 layers"),
    Case("steering-hooks-not-hooks", "forcing_rate(model, prompts, sets['fr'], 'fr')",
         lambda c: ln.forcing_rate(c.model, PROMPTS, c.sets["fr"], "fr"), ParameterError,
         "list of \\(hook name, function\\) pairs"),
    Case("steering-prompt-too-long", "forcing_rate(model, [very long prompt], [], 'fr')",
         lambda c: forcing(c, prompts=["word " * 5000]), ContextLengthError, "shorten"),
    Case("steering-duplicate-prompts", "forcing_rate(model, [p, p], [], 'fr')",
         lambda c: forcing(c, prompts=PROMPTS * 2), check=greedy_equals_single),
    # --- steering_shift --------------------------------------------------------------------
    Case("steering-shift-no-items", "steering_shift(model, [], [])",
         lambda c: ln.steering_shift(c.model, [], []), ParameterError, "shift_items"),
    Case("steering-shift-dict-items", "steering_shift(model, [{'premise': ...}], [])",
         lambda c: ln.steering_shift(c.model, [{"premise": "a", "base": "b", "target": "c"}],
                                     []),
         ParameterError, "not a ShiftItem"),
    Case("steering-shift-same-answer", "steering_shift(model, [ShiftItem(p, 'verde', 'verde')])",
         lambda c: ln.steering_shift(c.model, [ShiftItem("La hierba es", "verde", "verde")],
                                     []),
         ParameterError, "Drop it"),
    Case("steering-shift-empty-answer", "steering_shift(model, [ShiftItem(p, '', 'vert')])",
         lambda c: ln.steering_shift(c.model, [ShiftItem("Grass is", "", "vert")], []),
         InvalidTextError, "empty"),
    Case("steering-shift-items-unknown", "shift_items('en', 'sw')",
         lambda c: shift_items("en", "sw"), UnknownLanguageError, "ShiftItem"),
    Case("steering-shift-items-same", "shift_items('fr', 'fr')",
         lambda c: shift_items("fr", "fr"), ParameterError, "two languages"),
    Case("steering-shift-baseline-length", "steering_shift(model, items, [], baseline=[0.0])",
         lambda c: ln.steering_shift(c.model, shift_items("en", "fr")[:3], [],
                                     baseline=[0.0]),
         ParameterError, "one value per item"),
    Case("steering-shift-baseline-nan", "steering_shift(model, items, [], baseline=[nan, 0, 0])",
         lambda c: ln.steering_shift(c.model, shift_items("en", "fr")[:3], [],
                                     baseline=[math.nan, 0.0, 0.0]),
         ParameterError, r"NaN or infinite .*item 0.*baseline=None"),
    Case("steering-shift-baseline-inf", "steering_shift(model, items, [], baseline=[0, inf, 0])",
         lambda c: ln.steering_shift(c.model, shift_items("en", "fr")[:3], [],
                                     baseline=[0.0, math.inf, 0.0]),
         ParameterError, r"NaN or infinite .*item 1"),
    Case("steering-shift-baseline-words", "steering_shift(model, items, [], baseline='d0')",
         lambda c: ln.steering_shift(c.model, shift_items("en", "fr")[:3], [], baseline="d0"),
         ParameterError, "one per item"),
    Case("steering-shift-tolerance-nan", "steering_shift(model, items, [], tolerance=nan)",
         lambda c: ln.steering_shift(c.model, shift_items("en", "fr")[:3], [],
                                     tolerance=math.nan),
         ParameterError, "tolerance must be a finite number"),
    Case("steering-shift-items-upper-case", "shift_items('EN', 'FR')",
         lambda c: shift_items("EN", "FR"),
         check=lambda items, c: items == shift_items("en", "fr") or pytest.fail()),
    Case("steering-shift-items-regions", "shift_items('en_US', 'pt-BR')",
         lambda c: shift_items("en_US", "pt-BR"),
         check=lambda items, c: items == shift_items("en", "pt") or pytest.fail()),
    Case("steering-shift-items-same-spelled-apart", "shift_items('fr', 'FR')",
         lambda c: shift_items("fr", "FR"), ParameterError, "both 'fr'"),
    Case("steering-shift-items-not-a-code", "shift_items(None, 'fr')",
         lambda c: shift_items(None, "fr"), ParameterError, "language code"),
    # --- sweep -------------------------------------------------------------------------------
    Case("steering-sweep-no-values", "sweep(model, make_hooks, [], lss_items=items)",
         lambda c: sweep(c, values=[], lss_items=shift_items("en", "fr")), ParameterError,
         r"values=\[0.5, 1, 2, 4\]"),
    Case("steering-sweep-nan-value", "sweep(model, make_hooks, [1, nan], lss_items=items)",
         lambda c: sweep(c, values=[1.0, math.nan], lss_items=shift_items("en", "fr")),
         ParameterError, "finite numbers"),
    Case("steering-sweep-repeated", "sweep(model, make_hooks, [1, 1], lss_items=items)",
         lambda c: sweep(c, values=[1.0, 1.0], lss_items=shift_items("en", "fr")),
         ParameterError, "each value once"),
    Case("steering-sweep-nothing", "sweep(model, make_hooks, [1])",
         lambda c: sweep(c), ParameterError, "Nothing to measure"),
    Case("steering-sweep-prompts-no-target", "sweep(model, make_hooks, [1], prompts=p)",
         lambda c: sweep(c, prompts=PROMPTS), ParameterError, "go together"),
    Case("steering-sweep-not-callable", "sweep(model, hooks, [1], lss_items=items)",
         lambda c: ln.sweep(c.model, ln.amplify(c.sets["fr"], 2.0), [1.0],
                            lss_items=shift_items("en", "fr")),
         ParameterError, "function value -> fwd_hooks"),
    Case("steering-sweep-returns-set", "sweep(model, lambda a: sets['fr'], [1], lss_items=items)",
         lambda c: sweep(c, make=lambda a: c.sets["fr"], lss_items=shift_items("en", "fr")[:2]),
         ParameterError, "make_hooks\\(value\\) must be a list"),
    Case("steering-sweep-corpus-dict", "sweep(..., nll_corpus={'fr': [...]})",
         lambda c: sweep(c, nll_corpus={"fr": ["Le chat."]}), ParameterError, "ln.Corpus"),
    Case("steering-sweep-unknown-target", "sweep(..., prompts=p, target='xx')",
         lambda c: sweep(c, prompts=PROMPTS, target="xx"), UnknownLanguageError, "xx"),
    Case("steering-sweep-out-exists", "sweep(..., out=existing_result)",
         lambda c: sweep(c, lss_items=shift_items("en", "fr")[:2],
                         out=existing_sweep(c)),
         ln.errors.ResultExistsError, "overwrite=True"),
    # --- fallback and its steps ----------------------------------------------------------------
    Case("steering-fallback-no-steps", "fallback(model, prompts, {})",
         lambda c: ln.fallback(c.model, PROMPTS, {}), ParameterError, "layer_steps"),
    Case("steering-fallback-step-list", "fallback(model, prompts, {'a': [1, 2]})",
         lambda c: ln.fallback(c.model, PROMPTS, {"a": [1, 2]}), ParameterError,
         "not a NeuronSet"),
    Case("steering-fallback-step-named-none", "fallback(model, prompts, {'none': sets['fr']})",
         lambda c: ln.fallback(c.model, PROMPTS, {"none": c.sets["fr"]}, progress=False),
         ParameterError, r"baseline row .* Rename the step"),
    Case("steering-fallback-hooks-named-none",
         "fallback(model, prompts, {'none': hooks, 'fr': sets['fr']})",
         lambda c: ln.fallback(c.model, PROMPTS, {"none": ln.deactivate(c.sets["fr"]),
                                                  "fr": c.sets["fr"]}, progress=False),
         ParameterError, "Rename the step"),
    Case("steering-layer-steps-too-many", "layer_steps(sets['fr'], n_groups=9)",
         lambda c: layer_steps(c.sets["fr"], n_groups=9), ParameterError, "exceeds"),
    Case("steering-layer-steps-start", "layer_steps(sets['fr'], start='middle')",
         lambda c: layer_steps(c.sets["fr"], start="middle"), ParameterError, "'last' or"),
    Case("steering-quantile-steps-order", "quantile_steps(sets['fr'], scores, (0.5, 0.25))",
         lambda c: quantile_steps(c.sets["fr"], torch.zeros(c.sets["fr"].mask.shape),
                                  (0.5, 0.25)),
         ParameterError, "increase"),
    Case("steering-quantile-steps-shape", "quantile_steps(sets['fr'], torch.zeros(2, 2))",
         lambda c: quantile_steps(c.sets["fr"], torch.zeros(2, 2)), ShapeMismatchError,
         "one score per unit"),
    # --- amplification -------------------------------------------------------------------------
    Case("steering-amplify-no-sequence-stats", "amplify_to(sets, stats, 'fr', 'p_max')",
         lambda c: amplify_to(c.sets, c.stats, "fr", "p_max"), MissingStatisticError,
         "sequence_stats=True"),
    Case("steering-amplify-kind", "amplify_to(sets, stats, 'fr', 'p_mean')",
         lambda c: amplify_to(c.sets, c.stats, "fr", "p_mean"), ParameterError, "p_median"),
    # --- generation (the KV cache, options passed to model.generate) ---------------------------
    Case("steering-languages-target-only", "forcing_rate(..., 'fr', languages=['fr'])",
         lambda c: forcing(c, languages=["fr"]), ParameterError,
         r"at least two languages to choose between"),
    Case("steering-no-kv-cache", "forcing_rate(..., use_past_kv_cache=False)",
         lambda c: forcing(c, use_past_kv_cache=False),
         check=lambda r, c: assert_decoding(r, "full-forward")),
    Case("steering-kv-cache-not-bool", "forcing_rate(..., use_past_kv_cache='yes')",
         lambda c: forcing(c, use_past_kv_cache="yes"), ParameterError,
         "True, False or None"),
    Case("steering-stop-at-eos-false", "forcing_rate(..., stop_at_eos=False)",
         lambda c: forcing(c, stop_at_eos=False), check=lambda r, c: assert_decoding(r, None)),
    Case("steering-stop-at-eos-not-bool", "forcing_rate(..., stop_at_eos='no')",
         lambda c: forcing(c, stop_at_eos="no"), ParameterError, "stop_at_eos must be True"),
    Case("steering-generate-unknown-option", "forcing_rate(..., temprature=0.7)",
         lambda c: forcing(c, do_sample=True, temprature=0.7), ParameterError,
         r"takes no option \['temprature'\]; pass one of .*'temperature'"),
    Case("steering-generate-return-type", "generate(model, prompts, return_type='tokens')",
         lambda c: ln.evaluate.generate(c.model, PROMPTS, return_type="tokens"), ParameterError,
         r"sets \['return_type'\] itself"),
    Case("steering-generate-sampling-options", "forcing_rate(..., do_sample=True, top_k=5, "
         "temperature=0.7)",
         lambda c: forcing(c, do_sample=True, top_k=5, temperature=0.7),
         check=lambda r, c: assert_decoding(r, None)),

    Case("steering-prompts-n-float", "forcing_prompts('en', n=2.0)",
         lambda c: forcing_prompts("en", n=2.0), ParameterError, "n must be an integer"),
    Case("steering-prompts-n-string", "forcing_prompts('en', n='5')",
         lambda c: forcing_prompts("en", n="5"), ParameterError, "n must be an integer"),
    Case("steering-prompts-n-too-many", "forcing_prompts('fr', n=500)",
         lambda c: forcing_prompts("fr", n=500), ParameterError, "from 1 to 120"),
]


def existing_sweep(c):
    path = c.tmp_path / "existing-sweep"
    if not path.exists():
        ln.sweep(c.model, lambda a: ln.amplify(c.sets["fr"], a), [1.0],
                 lss_items=shift_items("en", "fr")[:2], out=path, progress=False)
    return path


@pytest.mark.parametrize("case", _catalog.params(CASES))
def test_case(case, bad):
    _catalog.run_case(case, bad, _catalog.area_of(__name__))
