"""The model card on Gemma 3 270M: the shipped statistics are recognised and reused.

A small card (four languages, few lines and prompts) so that the real-model suite stays short;
the full card (``lensneurons report --model gemma-3-270m``) is timed in docs/model_card.md.
"""

from __future__ import annotations

import pandas as pd
import pytest

import lensneurons as ln

pytestmark = pytest.mark.real


def test_gemma_card_reuses_the_shipped_statistics(gemma, gemma_stats, tmp_path):
    card = ln.report(gemma, languages=["en", "fr", "de", "ru"], pairs=[("fr", "de")],
                     forcing_targets=["de"], heldout_lines=4, lens_items=8, n_forcing_prompts=8,
                     progress=False)
    assert card.title == "gemma-3-270m"
    assert "shipped statistics" in card.section("data").reading
    lape = ln.lape(gemma_stats.select(["en", "fr", "de", "ru"]))
    pd.testing.assert_frame_equal(card.section("lape").table, lape.table())
    tokens = card.section("data").table["tokens counted"]
    assert tokens.to_dict() == {g: int(gemma_stats.n_tokens[gemma_stats.index(g)])
                                for g in ["en", "fr", "de", "ru"]}
    assert card.model["n_layers"] == 18
    page = card.save(tmp_path / "card") / "index.html"
    assert page.stat().st_size > 100_000
    assert ln.ModelCard.load(tmp_path / "card", model=gemma).table().equals(card.table())
