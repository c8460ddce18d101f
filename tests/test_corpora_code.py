"""The offline code corpus: file discovery, chunking, sampling, missing languages."""

from __future__ import annotations

import random
import re
import warnings

import pytest

from lensneurons.corpora.code import (
    MissingLanguagesWarning,
    find_code_files,
    load_code,
    split_code,
)
from lensneurons.errors import TooFewGroupsError


def lines(tag, n):
    return "".join(f"{tag}_{i} = compute({i})  # line {i} of {tag}\n" for i in range(n))


@pytest.fixture
def tree(tmp_path):
    """Python files, C headers (one really C++), shell scripts (one by shebang), bad files."""
    py, c, sh, empty = (tmp_path / d for d in ("py", "c", "sh", "empty"))
    for d in (py, c, sh, empty, py / "sub", py / "__pycache__"):
        d.mkdir()
    for i in range(6):
        (py / f"mod{i}.py").write_text(lines(f"py{i}", 30))
    (py / "sub" / "deep.py").write_text(lines("pydeep", 5))
    (py / "__pycache__" / "cached.py").write_text(lines("pycache", 5))
    (py / "latin1.py").write_bytes("s = 'caf\xe9'\n".encode("latin-1") * 20)  # not UTF-8
    (py / "minified.py").write_text("x=1;" * 2000 + "\n")  # one 8000-char line
    (py / "notes.txt").write_text(lines("txt", 5))
    for i in range(4):
        (c / f"h{i}.h").write_text("#include <stdio.h>\n" + lines(f"c{i}", 10).replace("#", "//"))
    (c / "cpp.h").write_text("namespace foo {\n" + lines("cplusplus", 10) + "}\n")
    (sh / "run.sh").write_text("#!/bin/sh\n" + "echo hello\n" * 10)
    (sh / "tool").write_text("#!/usr/bin/env bash\n" + "echo tool\n" * 10)
    (sh / "other").write_text("#!/usr/bin/perl\nprint 1;\n")
    return {"python": [py], "c": [c], "shell": [sh], "perl": [empty]}


def test_find_code_files_by_extension_and_shebang(tree):
    paths = find_code_files("python", tree["python"])
    assert paths == sorted(paths)
    names = [p.name for p in paths]
    assert set(names) == {f"mod{i}.py" for i in range(6)} | {"deep.py", "latin1.py",
                                                             "minified.py"}
    assert {p.name for p in find_code_files("shell", tree["shell"])} == {"run.sh", "tool"}


def test_load_code_reads_chunks_of_the_planted_files(tree):
    texts = load_code(["python", "c", "shell"], roots=tree, chunk_chars=120)
    assert list(texts) == ["python", "c", "shell"]
    joined = "".join(texts["python"])
    assert "caf" not in joined and "x=1;" not in joined and "pycache" not in joined
    assert "txt_" not in joined
    for i in range(6):
        assert f"py{i}_29 = compute(29)" in joined  # every line of every file is kept
    assert "cplusplus" not in "".join(texts["c"])  # C++ inside a .h file is not C
    assert all(0 < len(chunk) <= 120 for chunks in texts.values() for chunk in chunks)
    assert "echo tool" in "".join(texts["shell"])


def test_load_code_is_deterministic_and_seeded(tree):
    a = load_code(["python", "c"], roots=tree, max_files=3, seed=0)
    assert a == load_code(["python", "c"], roots=tree, max_files=3, seed=0)
    b = load_code(["python", "c"], roots=tree, max_files=3, seed=1)
    assert a != b


def test_load_code_limits_files_and_characters(tree):
    texts = load_code(["python", "c"], roots=tree, max_files=2, max_chars=1_500)
    files = {m.group(1) for chunk in texts["python"] for m in re.finditer(r"(py\w+?)_\d+ =", chunk)}
    assert len(files) == 2
    assert 1_000 < sum(map(len, texts["python"])) <= 1_500  # 2 files of ~1,400 characters
    assert sum(map(len, texts["c"])) <= 1_500


def test_missing_language_is_reported_and_left_out(tree):
    with pytest.warns(MissingLanguagesWarning, match="perl"):
        texts = load_code(["python", "perl", "c"], roots=tree)
    assert list(texts) == ["python", "c"]


def test_fewer_than_two_languages_raise(tree):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingLanguagesWarning)
        with pytest.raises(TooFewGroupsError, match="roots="):
            load_code(["python", "perl"], roots=tree)


def test_split_code_keeps_every_character_but_blank_chunks():
    gen = random.Random(0)
    for _ in range(50):
        text = "".join(gen.choice(["abc ", "\n", "    ", "x" * gen.randint(1, 300), "\t\n"])
                       for _ in range(gen.randint(0, 60)))
        chunks = split_code(text, chunk_chars=100)
        assert all(0 < len(c) <= 100 and c.strip() for c in chunks)
        assert re.sub(r"\s", "", "".join(chunks)) == re.sub(r"\s", "", text)


def test_the_python_standard_library_is_always_found():
    assert len(find_code_files("python")) > 100
