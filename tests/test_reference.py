"""Regression on real counts of MistralMathOctopus-7B released with Zhang et al. 2025.

The counts and the released mask are carried in ``tests/data/reference/`` (see its README and
``tests/_reference.py``), so these tests run everywhere, CI included. Only the check that the
carried form equals the released files needs those files (``../shared/reference``) and skips
without them.
"""

import json
import lzma
from pathlib import Path

import _reference
import pytest
import torch

import lensneurons as ln

pytestmark = pytest.mark.reference

RELEASED = Path(__file__).resolve().parents[2] / "shared" / "reference"
RELEASED_COUNTS = RELEASED / "mgsm_mistral7b_activation_counts.safetensors"
RELEASED_MASK = RELEASED / _reference.MASK.name


@pytest.fixture(scope="module")
def released():
    return _reference.load()


def response_only(languages, tensors):
    counts = {lang: (tensors[f"full.over_zero.{lang}"].long()
                     - tensors[f"prefix.over_zero.{lang}"].long()).clamp(min=0)
              for lang in languages}
    n_tokens = {lang: max(int(tensors[f"full.total_tokens.{lang}"])
                          - int(tensors[f"prefix.total_tokens.{lang}"]), 1)
                for lang in languages}
    with pytest.warns(UserWarning, match="exceed"):
        return ln.ActivationStats.from_counts(counts, n_tokens)


@pytest.mark.skipif(not RELEASED_COUNTS.exists(), reason=f"released files absent ({RELEASED})")
def test_carried_data_equals_the_released_files(released):
    from safetensors import safe_open
    from safetensors.torch import load_file

    languages, tensors = released
    original = load_file(str(RELEASED_COUNTS))
    with safe_open(str(RELEASED_COUNTS), "pt") as f:
        assert languages == f.metadata()["languages"].split(",")
    assert sorted(tensors) == sorted(original)
    for name, tensor in original.items():
        assert tensors[name].dtype == tensor.dtype and torch.equal(tensors[name], tensor), name
    assert _reference.MASK.read_bytes() == RELEASED_MASK.read_bytes()


def test_carried_counts_have_the_released_layout(released):
    languages, tensors = released
    assert languages == ["en", "ru", "es", "fr", "de", "zh", "ja", "bn", "th", "sw"]
    assert len(tensors) == 40
    for lang in languages:
        for part in ("full", "prefix"):
            counts = tensors[f"{part}.over_zero.{lang}"]
            assert counts.dtype == torch.int32 and counts.shape == (32, 14336)
            total = tensors[f"{part}.total_tokens.{lang}"]
            assert total.dtype == torch.int64 and total.dim() == 0
            assert 0 <= int(counts.min()) and int(counts.max()) <= int(total)
    assert int(tensors["full.total_tokens.en"]) == 583261


def test_packing_round_trips_and_detects_damage():
    gen = torch.Generator().manual_seed(0)
    languages = ["a", "b", "c"]
    tensors = {}
    for lang in languages:
        full = torch.randint(0, 2**30, (3, 50), generator=gen, dtype=torch.int32)
        tensors[f"full.over_zero.{lang}"] = full
        tensors[f"prefix.over_zero.{lang}"] = full // 2 - 7  # negative values too
        tensors[f"full.total_tokens.{lang}"] = torch.tensor(2**31 + 5)
        tensors[f"prefix.total_tokens.{lang}"] = torch.tensor(17)
    packed = _reference.pack(tensors, languages)
    got_languages, back = _reference.unpack(packed)
    assert got_languages == languages
    assert all(back[k].dtype == v.dtype and torch.equal(back[k], v) for k, v in tensors.items())

    raw = bytearray(lzma.decompress(packed))
    header = int.from_bytes(raw[:8], "little")
    planes_at = 8 + header + json.loads(raw[8:8 + header])["planes"]["data_offsets"][0]
    raw[planes_at] ^= 1  # one flipped bit in the lowest byte of the first residual
    with pytest.raises(ValueError, match="reconstructed wrongly"):
        _reference.unpack(lzma.compress(bytes(raw)))


def test_ternary_reproduces_released_mask_exactly(released):
    stats = response_only(*released)
    result = ln.ternary(stats, lam=0.109375)
    mine = result.neuron_sets().to_index_lists()
    expected = _reference.mask()
    assert sum(len(layer) for lists in expected.values() for layer in lists) == 6307
    assert {lang: [sorted(layer) for layer in lists] for lang, lists in expected.items()} == mine
    assert result.tau == pytest.approx(0.5644, abs=1e-4)
    assert result.appear == [1369, 1866, 617, 310, 153, 127, 59, 40, 27, 20, 0]


def test_lambda_auto_sweep_lands_on_released_value(released):
    result = ln.ternary(response_only(*released))
    assert result.lam == 0.109375 and not result.lam_at_bound


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
    sets = ln.NeuronSets.from_json(_reference.MASK, width=14336)
    assert sum(len(s) for s in sets.values()) == 6307
    assert torch.equal(
        sets["fr"].mask,
        ln.ternary(response_only(*released), lam=0.109375).neuron_sets()["fr"].mask)
