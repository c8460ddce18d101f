"""The multilingual model card on the organism: every section, and the numbers it reports.

One card is made per module (the organism; about 20 s on 2 cores). Its numbers are checked
against the package's functions called directly on the same inputs, the page against the
offline rule (no network URL anywhere) and the result convention (save, load, a model check).
"""

from __future__ import annotations

import base64
import html
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _catalog import same_shape_model
from PIL import Image

import lensneurons as ln
from lensneurons.errors import ModelMismatchError
from lensneurons.show.card import PAGE, ModelCard

HAS_CIRCUITSVIS = importlib.util.find_spec("circuitsvis") is not None
SECTIONS = ["model", "data", "lape", "ternary", "overlap", "nll", "latent", "mwork", "forcing",
            "tokens"]


@pytest.fixture(scope="module")
def model():
    return ln.organism.load()


@pytest.fixture(scope="module")
def card(model):
    return ln.report(model, heldout_lines=6, lens_items=12, n_forcing_prompts=8,
                     progress=False)


def test_every_section_has_a_figure_numbers_and_a_reading(card):
    assert [s.key for s in card.sections] == SECTIONS
    for section in card.sections:
        assert section.png is not None, section.key
        Image.open(io.BytesIO(section.png.tobytes())).verify()
        assert len(section.table) > 0, section.key
        assert len(section.reading) > 40, section.key
    assert card.title == "organism"
    assert card.model["n_layers"] == 4


def test_numbers_are_those_of_the_package_on_the_same_inputs(card, model):
    stats = ln.collect(model, ln.Corpus.from_texts(ln.organism.texts("train")), progress=False)
    sets = ln.lape(stats, top_rate=ln.organism.TOP_RATE)
    pd.testing.assert_frame_equal(card.section("lape").table, sets.table())
    heldout = ln.Corpus.from_texts({g: lines[:6] for g, lines in
                                    ln.organism.texts("heldout").items()})
    matrix = ln.perplexity_matrix(model, heldout, sets, progress=False)
    delta = ln.nll_delta(matrix)
    own = pd.Series({g: delta.loc[g, g] for g in sets.groups})
    np.testing.assert_allclose(card.section("nll").table["own Δ"].to_numpy(),
                               own[card.section("nll").table.index].to_numpy(),
                               rtol=1e-5, atol=1e-6)
    tokens = card.section("data").table["tokens counted"]
    assert tokens.to_dict() == dict(zip(stats.groups, stats.n_tokens.tolist(), strict=True))


def test_forcing_rates_carry_wilson_intervals(card):
    table = card.section("forcing").table
    assert len(table.index.get_level_values("target").unique()) == 3
    assert ((table["low"] <= table["rate"]) & (table["rate"] <= table["high"])).all()
    assert (table["n"] == 8).all()


def test_latent_section_reads_three_pairs(card):
    table = card.section("latent").table
    assert len(table) == 3
    assert set(table.columns) >= {"pivot", "English-first depths", "last P(target)"}


def test_page_is_self_contained(card):
    page = card.html()
    assert page.startswith("<!DOCTYPE html>")
    # no URL the browser would fetch: every image is a data URI, no external script or style
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<link" not in page
    images = re.findall(r'<img[^>]+src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == len(SECTIONS)
    for data in images:
        Image.open(io.BytesIO(base64.b64decode(data))).verify()
    if HAS_CIRCUITSVIS:
        assert "CircuitsVis" in page  # the token view, its bundle inlined


def test_save_load_and_the_model_check(card, tmp_path):
    folder = card.save(tmp_path / "card")
    page = (folder / PAGE).read_text(encoding="utf-8")
    assert all(html.escape(section.reading) in page for section in card.sections)
    back = ModelCard.load(folder)
    pd.testing.assert_frame_equal(back.table(), card.table())
    pd.testing.assert_frame_equal(back.section("nll").table, card.section("nll").table)
    assert back.section("tokens").token_table.equals(card.section("tokens").token_table)
    with pytest.raises(ModelMismatchError):
        ModelCard.load(folder, model=same_shape_model())
    assert card.plot() is not None


# -- in a real browser: headless Chromium (installed by .ci/run) -----------------------------------
_PROBE = """<script>window.addEventListener("load", () => {
  const images = [...document.images];
  const probe = document.createElement("pre");
  probe.id = "probe";
  probe.textContent = JSON.stringify({
    images: images.length,
    broken: images.filter((i) => !(i.complete && i.naturalWidth > 0)).length,
    tokens: document.querySelectorAll("[id^='circuits-vis'] *").length});
  document.body.appendChild(probe);
});</script>"""


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("LENSNEURONS_REQUIRE_BROWSER") == "1":
            pytest.fail("LENSNEURONS_REQUIRE_BROWSER=1 but no chromium on PATH "
                        "(apt-get install chromium)")
        pytest.skip("no chromium on PATH (.ci/run installs it)")
    return found


def _open(page: Path, tmp_path: Path, *mode: str) -> tuple[str, list[str]]:
    """Open ``page`` headless; return stdout and the URLs the *page* asked the network for.

    Chromium's own background requests (updates, accounts) carry the initiator "not an origin";
    a request of a page opened from a file carries the page's opaque origin, "null".
    """
    log = tmp_path / f"net-{len(list(tmp_path.iterdir()))}.json"
    run = subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", f"--user-data-dir={tmp_path / 'profile'}",
         f"--log-net-log={log}", "--virtual-time-budget=10000", *mode, page.as_uri()],
        capture_output=True, text=True, timeout=180, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    events = json.loads(log.read_text(encoding="utf-8"))
    kinds = {v: k for k, v in events["constants"]["logEventTypes"].items()}
    asked = [e["params"]["url"] for e in events["events"]
             if kinds[e["type"]] == "URL_REQUEST_START_JOB" and "url" in e.get("params", {})
             and e["params"].get("initiator") != "not an origin"]
    return run.stdout, asked


def _probe(page: Path, tmp_path: Path) -> tuple[dict[str, int], list[str]]:
    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text(encoding="utf-8").replace("</body>", _PROBE + "</body>"),
                      encoding="utf-8")
    dom, asked = _open(probed, tmp_path, "--dump-dom")
    found = re.search(r'<pre id="probe">([^<]*)</pre>', dom)
    assert found, "the probe script did not run"
    return json.loads(html.unescape(found.group(1))), asked


@pytest.mark.browser
def test_the_probe_sees_a_network_request_and_a_broken_image(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><body><img src="http://example.invalid/a.png">'
                    '<img src="data:image/png;base64,AAAA"></body></html>', encoding="utf-8")
    seen, asked = _probe(page, tmp_path)
    assert seen["images"] == 2 and seen["broken"] == 2
    assert asked == ["http://example.invalid/a.png"]


@pytest.mark.browser
def test_the_card_in_a_browser(card, tmp_path):
    page = card.save(tmp_path / "card") / PAGE
    seen, asked = _probe(page, tmp_path)
    assert seen["images"] == len(SECTIONS) and seen["broken"] == 0
    if HAS_CIRCUITSVIS:
        assert seen["tokens"] > 10, "the circuitsvis token view did not render"
    assert asked == []
    shot = tmp_path / "card.png"
    _, asked = _open(page, tmp_path, f"--screenshot={shot}", "--window-size=1280,2400",
                     "--hide-scrollbars")
    assert asked == []
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.std() > 20, "the screenshot is blank"
    assert len(np.unique(pixels)) > 50
