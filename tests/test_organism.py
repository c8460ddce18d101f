"""The shipped model organism and its offline text sources (no retraining here)."""

from __future__ import annotations

import gettext as std_gettext
import json

import pytest
import torch

from lensneurons.corpora import gettext as gettext_source
from lensneurons.corpora import load_sample
from lensneurons.subjects import organism


@pytest.fixture(scope="module")
def model():
    return organism.load()


def test_shipped_files_are_complete_and_small():
    folder = organism.organism_dir()
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "training.json",
    ):
        assert (folder / name).is_file(), name
    assert (folder / "model.safetensors").stat().st_size <= 20 * 2**20
    record = json.loads((folder / "training.json").read_text())
    assert record["languages"] == list(organism.LANGUAGES)


def test_load_gives_finite_logits_of_the_right_shape(model):
    tokens = model.to_tokens(["The weather is nice today.", "Сегодня хорошая погода."])
    assert (tokens[:, 0] == model.tokenizer.bos_token_id).all()
    assert (tokens[:, 1] != model.tokenizer.bos_token_id).all()  # BOS is prepended once
    with torch.no_grad():
        logits = model(tokens)
    assert logits.shape == (*tokens.shape, model.cfg.d_vocab)
    assert torch.isfinite(logits).all()


def test_tl_model_matches_the_hf_model(model):
    hf_model, tokenizer = organism.load_hf()
    ids = tokenizer(["Le chat dort sur le canapé au soleil."], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        expected = hf_model(input_ids=ids).logits
        actual = model(ids)
    torch.testing.assert_close(actual, expected, atol=1e-3, rtol=1e-3)


def test_mlp_hooks_exist(model):
    seen = {}

    def record(name):
        def hook(x, hook):
            seen[name] = x.shape
            return x

        return hook

    names = [f"blocks.0.mlp.{h}" for h in ("hook_pre", "hook_pre_linear", "hook_post")]
    with model.hooks(fwd_hooks=[(name, record(name)) for name in names]):
        model(model.to_tokens("Guten Morgen"))
    assert all(seen[name][-1] == model.cfg.d_mlp for name in names)


def test_organism_learned_its_languages():
    record = json.loads((organism.organism_dir() / "training.json").read_text())
    uniform = torch.log(torch.tensor(float(record["config"]["vocab_size"]))).item()
    assert all(nll < 0.8 * uniform for nll in record["heldout_nll"].values())


@pytest.mark.parametrize("split", ["train", "heldout", "all"])
def test_texts_cover_every_language(split):
    texts = organism.texts(split)
    assert list(texts) == list(organism.LANGUAGES)
    assert all(lines and all(isinstance(s, str) and s for s in lines) for lines in texts.values())


def test_sample_split_is_deterministic_disjoint_and_parallel():
    train, heldout, everything = (load_sample(split=s) for s in ("train", "heldout", "all"))
    for lang in everything:
        assert len(train[lang]) + len(heldout[lang]) == len(everything[lang]) >= 150
        assert not set(train[lang]) & set(heldout[lang])
        assert heldout[lang] == everything[lang][4::5]
    assert len({len(lines) for lines in everything.values()}) == 1


def test_clean_string_strips_markers():
    assert gettext_source.clean_string("Open _File %s…\n<b>Save</b> %1$d items") == [
        "Open File …",
        "Save items",
    ]
    assert gettext_source.clean_string("menu\x04_Quit") == ["Quit"]


def _write_mo(path, messages):
    """Write a minimal GNU .mo file (format 0) holding ``messages``."""
    entries = sorted({"": "Content-Type: text/plain; charset=UTF-8\n", **messages}.items())
    ids = [k.encode() for k, _ in entries]
    strs = [v.encode() for _, v in entries]
    n = len(entries)
    table_start = 28
    data_start = table_start + 16 * n
    offsets, data = [], b""
    for blob in ids + strs:
        offsets.append((len(blob), data_start + len(data)))
        data += blob + b"\0"
    header = [0x950412DE, 0, n, table_start, table_start + 8 * n, 0, 0]
    words = header + [x for pair in offsets for x in pair]
    path.parent.mkdir(parents=True)
    path.write_bytes(b"".join(w.to_bytes(4, "little") for w in words) + data)


def test_load_gettext_reads_a_catalog(tmp_path):
    messages = {
        "Could not open the _file %s": "Konnte die _Datei %s nicht öffnen",
        "Print the document": "Das Dokument drucken",
        "Germany": "Deutschland",
        "OK": "OK",
    }
    _write_mo(tmp_path / "de" / "LC_MESSAGES" / "demo.mo", messages)
    with open(tmp_path / "de" / "LC_MESSAGES" / "demo.mo", "rb") as f:
        assert std_gettext.GNUTranslations(f).gettext("Germany") == "Deutschland"
    texts = gettext_source.load_gettext(["en", "de"], tmp_path, min_chars=5)
    assert texts["de"] == ["Konnte die Datei nicht öffnen", "Das Dokument drucken"]
    assert texts["en"] == ["Could not open the file", "Print the document"]


def test_load_gettext_on_installed_catalogs():
    try:
        locale_dir = gettext_source.find_locale_dir()
    except FileNotFoundError:
        pytest.skip("no gettext catalogs installed")
    texts = gettext_source.load_gettext(["en", "de"], locale_dir, domains=["glib20", "gtk20"])
    assert set(texts) == {"en", "de"}


def test_find_locale_dir_raises_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="gettext catalogs"):
        gettext_source.find_locale_dir([tmp_path])


def test_retraining_recipe_runs_end_to_end(tmp_path):
    """A few steps of the real recipe: data, tokenizer, training, saving, loading back."""
    record = organism.train(tmp_path, steps=2, minutes=None, progress=False)
    assert record["steps"] == 2
    assert set(record["heldout_nll"]) == set(organism.LANGUAGES)
    model = organism.load(path=tmp_path)
    assert model.cfg.n_layers == organism.TrainConfig().n_layers
