"""Bad inputs and damaged files for saving and loading results (tests/_catalog.py)."""

from __future__ import annotations

import functools
import json
import os
import shutil
import uuid
from pathlib import Path

import _catalog
import numpy as np
import pandas as pd
import pytest
import torch
from _catalog import Case

import lensneurons as ln
from lensneurons.core import persistence
from lensneurons.errors import (
    CorruptResultError,
    ModelSourceError,
    ParameterError,
    ResultExistsError,
    ResultNotFoundError,
    UnwritablePathError,
)
from lensneurons.evaluate import SweepResult
from lensneurons.subjects import models, real_stats


def fresh(c):
    return c.tmp_path / f"r-{uuid.uuid4().hex[:8]}"


def saved_stats(c):
    path = fresh(c)
    c.stats.save(path)
    return path


def saved_sets(c):
    path = fresh(c)
    c.sets.save(path)
    return path


def overwrite(c):
    path = saved_stats(c)
    other = c.stats.select(["fr", "de"])
    other.save(path, overwrite=True)
    return ln.ActivationStats.load(path)


def truncate(c):
    path = saved_stats(c)
    file = path / "stats.safetensors"
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    return ln.ActivationStats.load(path)


def edit_json(c):
    path = saved_stats(c)
    (path / "stats.json").write_text((path / "stats.json").read_text()[:-40])
    return ln.ActivationStats.load(path)


def swap_json(c):
    first, second = saved_stats(c), fresh(c)
    c.stats.select(["fr", "de"]).save(second)
    (first / "stats.json").write_text((second / "stats.json").read_text())
    return ln.ActivationStats.load(first)


def future_format(c):
    path = saved_stats(c)
    meta = json.loads((path / "stats.json").read_text())
    meta["format_version"] = 99
    (path / "stats.json").write_text(json.dumps(meta))
    return ln.ActivationStats.load(path)


def wrong_groups(c):
    path = saved_stats(c)
    meta = json.loads((path / "stats.json").read_text())
    meta["groups"] = meta["groups"][:2]
    (path / "stats.json").write_text(json.dumps(meta))
    return ln.ActivationStats.load(path)


def numpy_meta(c):
    path = fresh(c)
    stats = c.stats.select(["fr"])
    stats.meta = {**stats.meta, "n": np.int64(3), "rate": np.float32(0.5),
                  "layers": np.arange(2), "path": c.tmp_path}
    stats.save(path)
    return ln.ActivationStats.load(path).meta


def object_meta(c):
    path = fresh(c)
    stats = c.stats.select(["fr"])
    stats.meta = {**stats.meta, "model": object()}
    try:
        stats.save(path)
    finally:
        assert not path.exists() and not list(c.tmp_path.glob(f".{path.name}*"))


def folder_with_other_files(c):
    path = fresh(c)
    path.mkdir()
    (path / "notes.txt").write_text("mine")
    c.stats.save(path, overwrite=True)


# --- edits after a save: the digest over metadata and tensors (docs/design.md §12) ------------
def edit(folder, kind, change, *, resign=False):
    """Apply ``change`` to the parsed ``<kind>.json``; with ``resign``, recompute its digest (as
    a tool that rewrites results correctly would), so only the loader's own checks remain."""
    file = folder / f"{kind}.json"
    document = json.loads(file.read_text())
    change(document)
    if resign:
        document[persistence.NAMESPACE]["digest"] = persistence._digest(
            document, folder / f"{kind}.safetensors")
    file.write_text(json.dumps(document, indent=1))
    return folder


def as_format_2(folder, kind):
    """Rewrite a result as lensneurons wrote it before the digest: bookkeeping at the top level,
    where the metadata's own keys overwrote it (a ternary set's ``kind`` replaced ``neurons``)."""
    file = folder / f"{kind}.json"
    document = json.loads(file.read_text())
    own = document.pop(persistence.NAMESPACE)
    document.pop("format_version")
    file.write_text(json.dumps({"kind": kind, "format_version": 2,
                                "lensneurons_version": own["version"], "token": own["token"],
                                "tensors": own["tensors"], **document}))
    return folder


def reorder_groups(c):
    path = saved_stats(c)
    edit(path, "stats", lambda d: d["groups"].reverse())
    return ln.ActivationStats.load(path)


def flip_gated(c):
    path = saved_sets(c)
    edit(path, "neurons", lambda d: d.update(gated=not d["gated"]))
    return ln.NeuronSets.load(path)


def small_sweep():
    table = pd.DataFrame({"lss": [0.1, 0.4, 0.9], "mean_shift": [0.0, 0.2, 0.5]},
                         index=pd.Index([0.5, 1.0, 2.0], name="value"))
    return SweepResult(table, {"lss": 0.0, "mean_shift": 0.0}, None)


def saved_sweep(c):
    path = fresh(c)
    small_sweep().save(path)
    return path


def reverse_sweep_values(c):
    path = edit(saved_sweep(c), "sweep", lambda d: d["values"].reverse())
    return SweepResult.load(path)


def shorten_sweep_values(c, resign):
    path = edit(saved_sweep(c), "sweep", lambda d: d["values"].pop(), resign=resign)
    return SweepResult.load(path)


def edit_environment(c, resign):
    path = edit(saved_stats(c), "stats",
                lambda d: d[persistence.NAMESPACE]["environment"].update(torch_threads=999),
                resign=resign)
    return ln.ActivationStats.load(path)


def drop_digest(c):
    path = edit(saved_stats(c), "stats", lambda d: d[persistence.NAMESPACE].pop("digest"))
    return ln.ActivationStats.load(path)


def reformat_json(c):
    """Whitespace and key order are not content: the digest is over the canonical JSON."""
    path = saved_stats(c)
    document = json.loads((path / "stats.json").read_text())
    (path / "stats.json").write_text(json.dumps(dict(reversed(document.items()))))
    return ln.ActivationStats.load(path)


def same_stats(stats, c):
    assert stats.groups == c.stats.groups and torch.equal(stats.active, c.stats.active)


def ternary_round_trip(c):
    path = fresh(c)
    ln.ternary(c.stats, lam=0.1).specific.save(path)
    return ln.NeuronSets.load(path)


def is_ternary_specific(sets, c):
    assert sets.meta["kind"] == "specific" and sets.groups == c.stats.groups
    assert torch.equal(sets["fr"].mask, ln.ternary(c.stats, lam=0.1).specific["fr"].mask)


def legacy_ternary(c):
    path = fresh(c)
    ln.ternary(c.stats, lam=0.1).specific.save(path)
    return ln.NeuronSets.load(as_format_2(path, "neurons"))


def user_kind_in_stats(c):
    path = fresh(c)
    stats = c.stats.select(["fr", "de"])
    stats.meta = {**stats.meta, "kind": "my-experiment"}
    stats.save(path)
    return ln.ActivationStats.load(path)


def reserved_key(c):
    path = fresh(c)
    stats = c.stats.select(["fr"])
    stats.meta = {**stats.meta, "format_version": 1}
    try:
        stats.save(path)
    finally:
        assert not path.exists()


def legacy_stats(c):
    return ln.ActivationStats.load(as_format_2(saved_stats(c), "stats"))


def environment_of(c):
    return ln.ActivationStats.load(saved_stats(c)).meta["environment"]


def check_environment(env, c):
    import transformers

    assert env["packages"]["lensneurons"] == ln.__version__
    assert env["packages"]["torch"] == torch.__version__
    assert env["packages"]["transformers"] == transformers.__version__
    assert env["packages"]["numpy"] == np.__version__ and env["packages"]["transformer-lens"]
    assert env["torch_threads"] == torch.get_num_threads()
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert env["model_dtype"] == "float32"  # collect records the model's dtype
    assert (env["gpu"] is None) == (not torch.cuda.is_available())


def environment_on_a_gpu(c):
    """What a save on a CUDA machine records, with CUDA's answers stood in for (no GPU here)."""
    saved = torch.cuda.is_available, torch.cuda.get_device_name
    torch.cuda.is_available = lambda: True
    torch.cuda.get_device_name = lambda device=None: f"Stand-in GPU {device}"
    try:
        return persistence.environment({"model_dtype": "bfloat16", "model_device": "cuda:1"})
    finally:
        torch.cuda.is_available, torch.cuda.get_device_name = saved


def check_gpu_environment(env, c):
    assert env["gpu"] == "Stand-in GPU cuda:1"  # the model's own GPU
    assert env["model_dtype"] == "bfloat16" and env["model_device"] == "cuda:1"


def sweep_environment(c):
    path = saved_sweep(c)
    return SweepResult.load(path).environment


def other_machine(stats, c):
    assert stats.meta["environment"]["torch_threads"] == 999
    same_stats(stats, c)


def shipped_results(c):
    """Every result shipped in the package (formats 1 and 2, without a digest) still loads."""
    loaded = []
    for json_file in sorted(Path(real_stats._real_root()).rglob("*.json")):
        folder, kind = json_file.parent, json_file.stem
        if kind not in persistence.KINDS or not (folder / f"{kind}.safetensors").exists():
            continue
        loaded.append((kind, persistence.load_result(folder, kind)))
    return loaded


def every_kind_loaded(loaded, c):
    kinds = {kind for kind, _ in loaded}
    assert {"stats", "attribution", "plnd", "tuned_lens"} <= kinds, kinds
    assert all(tensors for _, (tensors, _) in loaded)


# --- real models from folders and the conversion cache ------------------------------------
@functools.cache
def _tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, vocab_size=4096, max_position_embeddings=64))


def model_folder(c, change=None, *, gemma=False):
    """A tiny Hugging Face model folder (Llama, or Gemma 3) with the organism's tokenizer; then
    ``change(folder)``."""
    folder = c.tmp_path / f"model-{uuid.uuid4().hex[:8]}"
    if gemma:
        from transformers import Gemma3ForCausalLM, Gemma3TextConfig

        Gemma3ForCausalLM(Gemma3TextConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=1, head_dim=16, vocab_size=4096)).save_pretrained(folder)
    else:
        _tiny_llama().save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(ln.organism.organism_dir() / name, folder / name)
    if change is not None:
        change(folder)
    return folder


def edit_config(**changes):
    def change(folder):
        config = json.loads((folder / "config.json").read_text())
        config.update(changes)
        (folder / "config.json").write_text(json.dumps(config))
    return change


def truncate_weights(folder):
    file = folder / "model.safetensors"
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])


def with_cache(value, call):
    """Run ``call()`` with ``LENSNEURONS_CACHE=value``, restoring the environment after."""
    saved = os.environ.get("LENSNEURONS_CACHE")
    os.environ["LENSNEURONS_CACHE"] = str(value)
    try:
        return call()
    finally:
        if saved is None:
            os.environ.pop("LENSNEURONS_CACHE", None)
        else:
            os.environ["LENSNEURONS_CACHE"] = saved


def fake_gguf(c):
    path = c.tmp_path / f"model-{uuid.uuid4().hex[:8]}.gguf"
    path.write_bytes(b"not a gguf file" * 10)
    return path


def read_only_place(c):
    """A folder that cannot be created: under a read-only folder, or (as root, who may write
    anywhere on an ordinary file system) under /sys."""
    if os.geteuid() == 0:
        return Path("/sys") / f"lensneurons-cache-{uuid.uuid4().hex[:8]}"
    locked = c.tmp_path / f"locked-{uuid.uuid4().hex[:8]}"
    locked.mkdir()
    locked.chmod(0o555)
    return locked / "cache"


def check_numpy_meta(meta, c):
    assert meta["n"] == 3 and meta["rate"] == 0.5 and meta["layers"] == [0, 1]
    assert meta["path"] == str(c.tmp_path)


CASES = [
    Case("exists", "stats.save(folder holding a result)",
         lambda c: c.stats.save(saved_stats(c)), ResultExistsError, "overwrite=True"),
    Case("overwrite", "stats.save(folder holding a result, overwrite=True)",
         overwrite, check=lambda s, c: (s.groups == ["fr", "de"]) or pytest.fail()),
    Case("other-files", "stats.save(folder with other files, overwrite=True)",
         folder_with_other_files, ResultExistsError, "new or empty folder"),
    Case("path-is-file", "stats.save(path of a file)",
         lambda c: c.stats.save(json_path(c)), UnwritablePathError, "is a file"),
    Case("parent-is-file", "stats.save('<a file>/sub')",
         lambda c: c.stats.save(json_path(c) / "sub"), UnwritablePathError, "Cannot create"),
    Case("numpy-meta", "stats.meta holds numpy ints, floats, arrays and a Path; save, load",
         numpy_meta, check=check_numpy_meta),
    Case("object-meta", "stats.meta holds object(); save",
         object_meta, ParameterError, "nothing was written"),
    Case("missing", "ActivationStats.load(folder that does not exist)",
         lambda c: ln.ActivationStats.load(fresh(c)), ResultNotFoundError, "no saved stats"),
    Case("wrong-kind", "ActivationStats.load(a neuron-set folder)",
         lambda c: ln.ActivationStats.load(saved_sets(c)), ResultNotFoundError,
         "holds a neurons result"),
    Case("truncated", "ActivationStats.load(folder whose safetensors is cut in half)",
         truncate, CorruptResultError, "truncated"),
    Case("edited-json", "ActivationStats.load(folder whose JSON is cut short)",
         edit_json, CorruptResultError, "not valid JSON"),
    Case("swapped-json", "ActivationStats.load(tensors of one save, JSON of another)",
         swap_json, CorruptResultError, "different saves"),
    Case("future-format", "ActivationStats.load(format_version 99)",
         future_format, CorruptResultError, "Upgrade"),
    Case("edited-groups", "ActivationStats.load(JSON listing 2 of 7 groups)",
         wrong_groups, CorruptResultError, "damaged"),
    Case("sets-truncated", "NeuronSets.load(folder whose safetensors is cut)",
         lambda c: ln.NeuronSets.load(cut(saved_sets(c) / "neurons.safetensors").parent),
         CorruptResultError, "truncated"),
    # --- the digest: metadata and tensors still belong together --------------------------
    Case("edited-groups-reordered", "ActivationStats.load(stats.json with its groups reversed)",
         reorder_groups, CorruptResultError, "edited or damaged.*save it"),
    Case("edited-gated", "NeuronSets.load(neurons.json with gated flipped)",
         flip_gated, CorruptResultError, "edited or damaged"),
    Case("edited-sweep-values", "SweepResult.load(sweep.json with its values reversed)",
         reverse_sweep_values, CorruptResultError, "edited or damaged"),
    Case("edited-digest-removed", "ActivationStats.load(stats.json without its digest)",
         drop_digest, CorruptResultError, "edited or damaged"),
    Case("edited-environment", "ActivationStats.load(stats.json with torch_threads edited)",
         lambda c: edit_environment(c, resign=False), CorruptResultError, "edited or damaged"),
    Case("reformatted-json", "ActivationStats.load(stats.json re-indented, keys reordered)",
         reformat_json, check=same_stats),
    Case("environment-of-another-machine",
         "ActivationStats.load(stats saved where torch had 999 threads)",
         lambda c: edit_environment(c, resign=True), check=other_machine),
    Case("sweep-values-shortened", "SweepResult.load(sweep.json with one value removed)",
         lambda c: shorten_sweep_values(c, resign=False), CorruptResultError,
         "edited or damaged"),
    Case("sweep-values-shortened-resigned",
         "SweepResult.load(sweep.json with one value removed, digest recomputed)",
         lambda c: shorten_sweep_values(c, resign=True), CorruptResultError,
         r"table has shape \(3, 2\) but its JSON lists 2 values.*Run the sweep again"),
    Case("legacy-format-2", "ActivationStats.load(a result saved before digests, format 2)",
         legacy_stats, check=same_stats),
    Case("legacy-shipped", "load every result shipped in lensneurons/data/real",
         shipped_results, check=every_kind_loaded),
    # --- metadata keys cannot overwrite the layer's own ----------------------------------
    Case("ternary-round-trip", "ternary(stats, lam=0.1).specific.save(p); NeuronSets.load(p)",
         ternary_round_trip, check=is_ternary_specific),
    Case("legacy-ternary-kind",
         "NeuronSets.load(ternary sets saved before format 3, whose 'kind' overwrote the file's)",
         legacy_ternary, check=is_ternary_specific),
    Case("meta-kind", "stats.meta['kind'] = 'my-experiment'; save, load",
         user_kind_in_stats,
         check=lambda s, c: (s.meta["kind"] == "my-experiment" and s.groups == ["fr", "de"])
         or pytest.fail()),
    Case("meta-reserved-key", "stats.meta['format_version'] = 1; save",
         reserved_key, ParameterError, "may not use"),
    # --- the environment each result records ---------------------------------------------
    Case("environment-recorded", "ActivationStats.load(p).meta['environment']",
         environment_of, check=check_environment),
    Case("environment-gpu", "a save on a CUDA machine, model in bfloat16 on cuda:1",
         environment_on_a_gpu, check=check_gpu_environment),
    Case("environment-of-sweep", "SweepResult.load(p).environment",
         sweep_environment,
         check=lambda env, c: (env["packages"]["torch"] == torch.__version__) or pytest.fail()),
    # --- real models: folders and the conversion cache -----------------------------------
    Case("model-folder-without-weights", "models.load(folder without model.safetensors)",
         lambda c: models.load(model_folder(c, lambda f: (f / "model.safetensors").unlink()),
                               device="cpu"),
         ModelSourceError, "holds no model weights.*save_pretrained"),
    Case("model-weights-truncated", "models.load(folder whose model.safetensors is cut)",
         lambda c: models.load(model_folder(c, truncate_weights), device="cpu"),
         ModelSourceError, "truncated or damaged.*again"),
    Case("model-config-other-sizes", "models.load(folder, config.json intermediate_size edited)",
         lambda c: models.load(model_folder(c, edit_config(intermediate_size=128)),
                               device="cpu"),
         ModelSourceError, r"other shapes .*(\(file \[64, 32\], config \[128, 32\]\))?.*Restore"),
    Case("model-config-more-layers", "models.load(folder, config.json num_hidden_layers 2 -> 3)",
         lambda c: models.load(model_folder(c, edit_config(num_hidden_layers=3)), device="cpu"),
         ModelSourceError, "missing from the files: model.layers.2.*Restore the config.json"),
    Case("model-config-fewer-layers", "models.load(folder, config.json num_hidden_layers 2 -> 1)",
         lambda c: models.load(model_folder(c, edit_config(num_hidden_layers=1)), device="cpu"),
         ModelSourceError, "in the files but not in the config: model.layers.1"),
    Case("model-config-layer-types", "models.load(Gemma 3 folder, num_hidden_layers edited)",
         lambda c: models.load(model_folder(c, edit_config(num_hidden_layers=3), gemma=True),
                               device="cpu"),
         ModelSourceError, "config.json is damaged or was edited"),
    Case("model-cache-is-a-file", "LENSNEURONS_CACHE=notes.txt models.load('model.gguf')",
         lambda c: with_cache(json_path(c), lambda: models.load(fake_gguf(c))),
         UnwritablePathError, "is a file.*Point LENSNEURONS_CACHE at a writable folder"),
    Case("model-cache-read-only", "LENSNEURONS_CACHE=<read-only place> models.load('model.gguf')",
         lambda c: with_cache(read_only_place(c), lambda: models.load(fake_gguf(c))),
         UnwritablePathError, "Point LENSNEURONS_CACHE at a writable folder"),
    Case("model-cache-empty", "LENSNEURONS_CACHE= models.cache_root()",
         lambda c: with_cache("", models.cache_root),
         check=lambda root, c: (root == Path.home() / ".cache" / "lensneurons") or pytest.fail()),
    # --- shipped real-model statistics -----------------------------------------------------
    Case("real-stats-unknown-name", "real_stats.load('gemma-3')",
         lambda c: real_stats.load("gemma-3"), ResultNotFoundError,
         "shipped: gemma-3-270m, smollm2-135m"),
    Case("real-stats-name-case", "real_stats.load('Gemma-3-270M')",
         lambda c: real_stats.load("Gemma-3-270M"),
         check=lambda s, c: (s.shape == (18, 2048) and "fr" in s.groups) or pytest.fail()),
]


def json_path(c):
    path = c.tmp_path / "a-file.json"
    path.write_text("{}")
    return path


def cut(file):
    file.write_bytes(file.read_bytes()[:100])
    return file


@pytest.mark.parametrize("case", _catalog.params(CASES))
def test_case(case, bad):
    _catalog.run_case(case, bad, _catalog.area_of(__name__))


def test_interrupted_save_keeps_the_old_result(bad, monkeypatch, tmp_path):
    """A save killed after the tensors but before the JSON leaves the previous result whole."""
    path = tmp_path / "stats"
    bad.stats.save(path)
    before = ln.ActivationStats.load(path)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("pathlib.Path.write_text", interrupted)
    with pytest.raises(KeyboardInterrupt):
        bad.stats.select(["fr"]).save(path, overwrite=True)
    monkeypatch.undo()
    after = ln.ActivationStats.load(path)
    assert after.groups == before.groups and torch.equal(after.active, before.active)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stats"]


def test_replaced_result_is_complete_and_leaves_nothing_behind(bad, tmp_path):
    path = tmp_path / "sets"
    bad.sets.save(path)
    smaller = ln.NeuronSets({"fr": bad.sets["fr"]})
    smaller.save(path, overwrite=True)
    assert ln.NeuronSets.load(path).groups == ["fr"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sets"]
