"""Bad inputs and damaged files for saving and loading results (tests/_catalog.py)."""

from __future__ import annotations

import json
import uuid

import _catalog
import numpy as np
import pytest
import torch
from _catalog import Case

import lensneurons as ln
from lensneurons.errors import (
    CorruptResultError,
    ParameterError,
    ResultExistsError,
    ResultNotFoundError,
    UnwritablePathError,
)


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
