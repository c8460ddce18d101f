"""Regression on real counts of MistralMathOctopus-7B released with Zhang et al. 2025."""

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import lensneurons as ln

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
COUNTS = REFERENCE / "mgsm_mistral7b_activation_counts.safetensors"
MASK = REFERENCE / "mgsm_mistral7b_ternary_mask_top0.01_lambda0.109375.json"

pytestmark = [
    pytest.mark.reference,
    pytest.mark.skipif(not COUNTS.exists(), reason=f"reference data absent ({REFERENCE})"),
]


@pytest.fixture(scope="module")
def released():
    tensors = load_file(str(COUNTS))
    with safe_open(str(COUNTS), "pt") as f:
        languages = f.metadata()["languages"].split(",")
    return languages, tensors


def response_only(languages, tensors):
    counts = {lang: (tensors[f"full.over_zero.{lang}"].long()
                     - tensors[f"prefix.over_zero.{lang}"].long()).clamp(min=0)
              for lang in languages}
    n_tokens = {lang: max(int(tensors[f"full.total_tokens.{lang}"])
                          - int(tensors[f"prefix.total_tokens.{lang}"]), 1)
                for lang in languages}
    with pytest.warns(UserWarning, match="exceed"):
        return ln.ActivationStats.from_counts(counts, n_tokens)


def test_ternary_reproduces_released_mask_exactly(released):
    stats = response_only(*released)
    result = ln.ternary(stats, lam=0.109375)
    mine = result.language_neurons().to_index_lists()
    expected = json.loads(MASK.read_text())
    assert sum(len(layer) for lists in expected.values() for layer in lists) == 6307
    assert {lang: [sorted(layer) for layer in lists] for lang, lists in expected.items()} == mine
    assert result.tau == pytest.approx(0.5644, abs=1e-4)
    assert result.appear == [1369, 1866, 617, 310, 153, 127, 59, 40, 27, 20, 0]


def test_lambda_auto_sweep_lands_on_released_value(released):
    assert ln.ternary(response_only(*released)).lam == 0.109375


def test_lape_on_full_counts_selects_one_percent(released):
    languages, tensors = released
    stats = ln.ActivationStats.from_counts(
        {lang: tensors[f"full.over_zero.{lang}"] for lang in languages},
        {lang: int(tensors[f"full.total_tokens.{lang}"]) for lang in languages})
    sets = ln.lape(stats)
    assert len(sets.union()) == round(0.01 * 32 * 14336) == 4588
    assert sets.groups == languages
    assert len(sets["en"]) < min(len(sets[lang]) for lang in languages if lang != "en")


def test_released_mask_loads_as_neuron_sets(released):
    sets = ln.NeuronSets.from_json(MASK, width=14336)
    assert sum(len(s) for s in sets.values()) == 6307
    assert torch.equal(
        sets["fr"].mask,
        ln.ternary(response_only(*released), lam=0.109375).language_neurons()["fr"].mask)
