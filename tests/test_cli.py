"""The command line on the organism: collect -> detect -> evaluate with text files."""

import pandas as pd
import pytest

import lensneurons as ln
from lensneurons import organism
from lensneurons.cli import main


def test_collect_detect_evaluate(tmp_path, capsys):
    texts = organism.texts("heldout")
    files = []
    for lang in ("en", "fr", "ru"):
        path = tmp_path / f"{lang}.txt"
        path.write_text("\n".join(texts[lang]) + "\n\n", encoding="utf-8")
        files.append(f"{lang}={path}")
    assert main(["collect", "--model", "organism", "--texts", *files,
                 "--out", str(tmp_path / "stats")]) == 0
    stats = ln.ActivationStats.load(tmp_path / "stats", model=organism.load())
    assert stats.groups == ["en", "fr", "ru"]
    for method in ("lape", "ternary"):
        out = tmp_path / method
        assert main(["detect", str(tmp_path / "stats"), "--method", method, "--top-rate", "0.02",
                     "--out", str(out)]) == 0
    assert "lambda" in capsys.readouterr().out
    csv = tmp_path / "matrix.csv"
    assert main(["evaluate", str(tmp_path / "lape"), "--model", "organism", "--texts", *files,
                 "--csv", str(csv)]) == 0
    matrix = pd.read_csv(csv, index_col=0)
    assert list(matrix.index[:4]) == ["none", "en", "fr", "ru"]


def test_texts_argument_must_name_groups():
    with pytest.raises(SystemExit, match="GROUP=FILE"):
        main(["collect", "--texts", "en.txt", "--out", "x"])
