"""Bad command lines (tests/_catalog.py): each is refused with a typed error before any work.

A case runs the command in-process with :func:`lensneurons.cli.run`, which raises the typed
error that ``main`` turns into one line on stderr. The ``cli`` helper also checks that line and
the exit status ``main`` returns for it, and that the refusal came before a model was loaded or
training started (``early=True``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import uuid
from pathlib import Path
from unittest import mock

import _catalog
import pytest
import torch
from _catalog import Case

import lensneurons as ln
from lensneurons import cli as cli_module
from lensneurons.errors import (
    InputFileError,
    LensNeuronsError,
    ModelSourceError,
    ParameterError,
    ResultExistsError,
    ResultNotFoundError,
    ShapeMismatchError,
    UnknownSiteError,
    UnwritablePathError,
)
from lensneurons.subjects import organism


def cli(c, *argv, early=True):
    """Run ``lensneurons *argv``; on a refusal, check main's line and status, then re-raise."""
    started = []

    def fake_load(name):
        started.append(name)
        return c.model if name == "organism" else ln.models.load(name)

    def fake_train(*args, **kwargs):
        started.append("train")
        return {}

    out, err = io.StringIO(), io.StringIO()
    with (mock.patch.object(cli_module, "_load_model", fake_load),
          mock.patch.object(organism, "train", fake_train),
          contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO())):
        try:
            return cli_module.run([str(a) for a in argv])
        except LensNeuronsError as error:
            status = cli_module.print_error(error, err)
            line = err.getvalue()
            assert status == (2 if isinstance(error, ParameterError) else 1)
            assert line.startswith("lensneurons: error: ") and line.count("\n") == 1, line
            if early:
                assert not started, f"refused only after starting work: {started}"
            raise


def text_file(c, lines=None, data=None, name="en.txt"):
    path = Path(name)
    if data is not None:
        path.write_bytes(data)
    else:
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def heldout(lang, start=0, stop=4):
    return organism.texts("heldout")[lang][start:stop]


def en(c):
    return f"en={text_file(c, heldout('en'))}"


def fr(c):
    return f"fr={text_file(c, heldout('fr'), name='fr.txt')}"


def collect(c, *texts, out="stats", extra=()):
    return cli(c, "collect", "--texts", *texts, "--out", out, *extra)


def a_file(c, name="notes.txt"):
    return text_file(c, ["not a folder"], name=name)


def saved_stats(c, name="stats"):
    c.stats.save(name)
    return Path(name)


def saved_sets(c, name="neurons"):
    c.sets.save(name)
    return Path(name)


def foreign_folder(c):
    path = Path("my-files")
    path.mkdir()
    (path / "notes.txt").write_text("mine")
    return path


def two_files_one_group(c):
    a, b = heldout("en", 0, 3), heldout("en", 3, 6)
    collect(c, f"en={text_file(c, a, name='a.txt')}", f"en={text_file(c, b, name='b.txt')}",
            fr(c))
    return ln.ActivationStats.load("stats"), a + b


def check_merged(result, c):
    stats, lines = result
    expected = ln.collect(c.model, ln.Corpus.from_texts({"en": lines, "fr": heldout("fr")}),
                          progress=False)
    assert stats.groups == ["en", "fr"]
    assert torch.equal(stats.n_tokens, expected.n_tokens)
    assert torch.equal(stats.active, expected.active)


def one_group_of_two_names(first, second):
    """``collect --texts en=en.txt FIRST=a.txt SECOND=b.txt``: FIRST and SECOND print alike."""

    def run(c):
        a, b = heldout("fr", 0, 3), heldout("fr", 3, 6)
        collect(c, en(c), f"{first}={text_file(c, a, name='a.txt')}",
                f"{second}={text_file(c, b, name='b.txt')}")
        return ln.ActivationStats.load("stats"), a + b, second.strip()

    return run


def check_one_group(result, c):
    stats, lines, name = result
    expected = ln.collect(c.model, ln.Corpus.from_texts({"en": heldout("en"), name: lines}),
                          progress=False)
    assert stats.groups == ["en", name]
    assert torch.equal(stats.n_tokens, expected.n_tokens)
    assert torch.equal(stats.active, expected.active)


def repeated_option(c):
    cli(c, "collect", "--texts", en(c), "--texts", fr(c), "--out", "stats")
    return ln.ActivationStats.load("stats")


def overwrite(c):
    saved_stats(c)
    collect(c, en(c), fr(c), extra=["--overwrite"])
    return ln.ActivationStats.load("stats")


def wrong_shape_sets(c):
    ln.NeuronSets({"en": ln.NeuronSet(torch.zeros(8, 2048, dtype=torch.bool))}).save("sets")
    return cli(c, "evaluate", "sets", "--texts", en(c), early=False)


def demo_again(c):
    c.stats.save(Path("demo-output") / "stats")
    return cli(c, "demo", "--out", "demo-output")


def in_own_folder(run):
    """``run`` inside a new empty working folder, so paths (and messages) are short."""

    def wrapped(c):
        folder = c.tmp_path / f"cli-{uuid.uuid4().hex[:8]}"
        folder.mkdir()
        before = os.getcwd()
        os.chdir(folder)  # contextlib.chdir needs Python 3.11
        try:
            return run(c)
        finally:
            os.chdir(before)

    return wrapped


def detect(c, *argv):
    return cli(c, "detect", saved_stats(c), *argv)


def evaluate(c, *argv):
    return cli(c, "evaluate", saved_sets(c), "--texts", en(c), *argv)


def train(c, *argv):
    return cli(c, "organism", "train", *argv)


def utf16(c, encoding):
    return "en=" + str(text_file(c, data="A cat.\nA dog.\n".encode(encoding)))


CASES = [
    # --texts: pairs and files
    Case("texts-no-group", "lensneurons collect --texts en.txt --out stats",
         lambda c: collect(c, "en.txt"), ParameterError, "GROUP=FILE"),
    Case("texts-empty-group", "lensneurons collect --texts =en.txt --out stats",
         lambda c: collect(c, f"={text_file(c, ['A.'])}"), ParameterError, "GROUP=FILE"),
    Case("texts-missing-file", "lensneurons collect --texts en=missing.txt --out stats",
         lambda c: collect(c, "en=missing.txt"), InputFileError,
         r"missing\.txt \(group 'en'\) does not exist"),
    Case("texts-folder", "lensneurons collect --texts en=corpus/ --out stats",
         lambda c: collect(c, f"en={foreign_folder(c)}"), InputFileError, "is a folder"),
    Case("texts-binary", "lensneurons collect --texts en=image.png --out stats",
         lambda c: collect(c, f"en={text_file(c, data=bytes(range(256)), name='image.png')}"),
         InputFileError, r"image\.png \(group 'en'\) is not UTF-8 text \(byte 128, line 2\)"),
    Case("texts-utf16", "lensneurons collect --texts en=en.txt (UTF-16, with a BOM)",
         lambda c: collect(c, utf16(c, "utf-16")), InputFileError, "not UTF-8 text"),
    Case("texts-nul", "lensneurons collect --texts en=en.txt (UTF-16-LE, no BOM)",
         lambda c: collect(c, utf16(c, "utf-16-le")), InputFileError, "NUL bytes"),
    Case("texts-empty-file", "lensneurons collect --texts en=en.txt (0 bytes) --out stats",
         lambda c: collect(c, f"en={text_file(c, data=b'')}"), InputFileError,
         r"en\.txt \(group 'en'\) holds no text"),
    Case("texts-blank-file", "lensneurons collect --texts en=en.txt (spaces and newlines)",
         lambda c: collect(c, "en=" + str(text_file(c, data=b"  \n\t\n\r\n"))),
         InputFileError, "holds no text"),
    Case("texts-same-file-twice", "lensneurons collect --texts en=en.txt en=en.txt --out stats",
         lambda c: collect(c, *[en(c)] * 2), ParameterError, "given twice"),
    Case("texts-two-files-one-group",
         "lensneurons collect --texts en=a.txt en=b.txt fr=fr.txt --out stats",
         two_files_one_group, check=check_merged),
    Case("texts-group-spaces", "lensneurons collect --texts en=en.txt ' fr=a.txt' fr=b.txt ...",
         one_group_of_two_names(" fr", "fr"), check=check_one_group),
    Case("texts-group-nfd-and-nfc",
         "lensneurons collect --texts en=en.txt fran\\u00e7ais=a.txt franc\\u0327ais=b.txt ...",
         one_group_of_two_names("franc\u0327ais", "fran\u00e7ais"), check=check_one_group),
    Case("texts-same-file-group-spaces",
         "lensneurons collect --texts en=en.txt ' en =en.txt' --out stats",
         lambda c: collect(c, en(c), " en =en.txt"), ParameterError, "given twice for group 'en'"),
    Case("texts-repeated-option", "lensneurons collect --texts en=en.txt --texts fr=fr.txt ...",
         repeated_option, check=lambda s, c: s.groups == ["en", "fr"] or pytest.fail()),
    # collect: parameters and the output path
    Case("collect-batch-size-0", "lensneurons collect ... --batch-size 0",
         lambda c: collect(c, en(c), extra=["--batch-size", "0"]), ParameterError,
         "--batch-size must be an integer >= 1"),
    Case("collect-batch-size-negative", "lensneurons collect ... --batch-size -4",
         lambda c: collect(c, en(c), extra=["--batch-size", "-4"]), ParameterError,
         "--batch-size must be an integer >= 1"),
    Case("collect-batch-size-word", "lensneurons collect ... --batch-size eight",
         lambda c: collect(c, en(c), extra=["--batch-size", "eight"]), ParameterError,
         "invalid int value"),
    Case("collect-max-tokens-0", "lensneurons collect ... --max-tokens-per-group 0",
         lambda c: collect(c, en(c), extra=["--max-tokens-per-group", "0"]), ParameterError,
         "--max-tokens-per-group must be an integer >= 1"),
    Case("collect-unknown-site", "lensneurons collect ... --site resid_pre",
         lambda c: collect(c, en(c), extra=["--site", "resid_pre"]), UnknownSiteError,
         "known sites: mlp"),
    Case("collect-unknown-model", "lensneurons collect --model no-such-model ...",
         lambda c: cli(c, "collect", "--model", "no-such-model", "--texts", en(c), "--out",
                       "stats", early=False), ModelSourceError, "short name of an offline"),
    Case("collect-out-exists", "lensneurons collect ... --out stats (holds a result)",
         lambda c: collect(c, en(c), out=saved_stats(c)), ResultExistsError, "--overwrite"),
    Case("collect-overwrite", "lensneurons collect --texts en=en.txt fr=fr.txt --out stats "
         "--overwrite (stats holds a result)", overwrite,
         check=lambda s, c: s.groups == ["en", "fr"] or pytest.fail()),
    Case("collect-out-foreign-folder", "lensneurons collect ... --out my-files --overwrite",
         lambda c: collect(c, en(c), out=foreign_folder(c), extra=["--overwrite"]),
         ResultExistsError, "new or empty folder"),
    Case("collect-out-is-file", "lensneurons collect ... --out notes.txt",
         lambda c: collect(c, en(c), out=a_file(c)), UnwritablePathError, "is a file"),
    Case("collect-out-under-file", "lensneurons collect ... --out notes.txt/stats",
         lambda c: collect(c, en(c), out=a_file(c) / "stats"), UnwritablePathError,
         "Cannot create"),
    Case("collect-no-out", "lensneurons collect --texts en=en.txt",
         lambda c: cli(c, "collect", "--texts", en(c)), ParameterError, "required: --out"),
    # detect
    Case("detect-top-rate-5", "lensneurons detect stats --top-rate 5 --out neurons",
         lambda c: detect(c, "--top-rate", "5", "--out", "neurons"), ParameterError,
         r"--top-rate must be a number in \(0, 1\]"),
    Case("detect-top-rate-0", "lensneurons detect stats --top-rate 0 --out neurons",
         lambda c: detect(c, "--top-rate", "0", "--out", "neurons"), ParameterError,
         r"in \(0, 1\]"),
    Case("detect-top-rate-nan", "lensneurons detect stats --top-rate nan --out neurons",
         lambda c: detect(c, "--top-rate", "nan", "--out", "neurons"), ParameterError,
         r"in \(0, 1\]"),
    Case("detect-unknown-method", "lensneurons detect stats --method entropy --out neurons",
         lambda c: detect(c, "--method", "entropy", "--out", "neurons"), ParameterError,
         "invalid choice"),
    Case("detect-stats-missing", "lensneurons detect missing --out neurons",
         lambda c: cli(c, "detect", "missing", "--out", "neurons"), ResultNotFoundError,
         "holds no saved stats"),
    Case("detect-stats-are-neurons", "lensneurons detect neurons --out neurons2",
         lambda c: cli(c, "detect", saved_sets(c), "--out", "neurons2"), ResultNotFoundError,
         "holds a neurons result"),
    Case("detect-out-is-input", "lensneurons detect stats --out stats --overwrite",
         lambda c: detect(c, "--out", "stats", "--overwrite"), ParameterError, "inside it"),
    Case("detect-out-inside-input", "lensneurons detect stats --out stats/neurons",
         lambda c: detect(c, "--out", "stats/neurons"), ParameterError, "inside it"),
    Case("detect-out-exists", "lensneurons detect stats --out neurons (holds a result)",
         lambda c: detect(c, "--out", saved_sets(c)), ResultExistsError, "--overwrite"),
    # evaluate
    Case("evaluate-neurons-missing", "lensneurons evaluate missing --texts en=en.txt",
         lambda c: cli(c, "evaluate", "missing", "--texts", en(c)), ResultNotFoundError,
         "holds no saved neurons"),
    Case("evaluate-neurons-are-stats", "lensneurons evaluate stats --texts en=en.txt",
         lambda c: cli(c, "evaluate", saved_stats(c), "--texts", en(c)), ResultNotFoundError,
         "holds a stats result"),
    Case("evaluate-csv-exists", "lensneurons evaluate neurons --texts en=en.txt --csv notes.txt",
         lambda c: evaluate(c, "--csv", a_file(c)), ResultExistsError, "--overwrite"),
    Case("evaluate-csv-is-folder", "lensneurons evaluate neurons --texts ... --csv my-files",
         lambda c: evaluate(c, "--csv", foreign_folder(c), "--overwrite"), UnwritablePathError,
         "is a folder"),
    Case("evaluate-texts-missing", "lensneurons evaluate neurons --texts en=missing.txt",
         lambda c: cli(c, "evaluate", saved_sets(c), "--texts", "en=missing.txt"),
         InputFileError, "does not exist"),
    Case("evaluate-sets-of-8-layers", "lensneurons evaluate sets --texts en=en.txt (sets of "
         "8 x 2048 units; the organism has 4 layers)", wrong_shape_sets, ShapeMismatchError,
         "layer"),
    # organism train
    Case("organism-steps-negative", "lensneurons organism train --steps -1",
         lambda c: train(c, "--steps", "-1"), ParameterError,
         "--steps must be an integer >= 1"),
    Case("organism-steps-0", "lensneurons organism train --steps 0",
         lambda c: train(c, "--steps", "0"), ParameterError, "--steps must be an integer >= 1"),
    Case("organism-minutes-0", "lensneurons organism train --minutes 0",
         lambda c: train(c, "--minutes", "0"), ParameterError,
         "--minutes must be a time budget > 0"),
    Case("organism-minutes-nan", "lensneurons organism train --minutes nan",
         lambda c: train(c, "--minutes", "nan"), ParameterError,
         "--minutes must be a finite number"),
    Case("organism-out-full", "lensneurons organism train --out my-files",
         lambda c: train(c, "--out", foreign_folder(c)), ResultExistsError, "--overwrite"),
    Case("organism-out-is-file", "lensneurons organism train --out notes.txt",
         lambda c: train(c, "--out", a_file(c)), UnwritablePathError, "is a file"),
    # demo and the command line itself
    Case("demo-top-rate-5", "lensneurons demo --top-rate 5",
         lambda c: cli(c, "demo", "--top-rate", "5"), ParameterError, r"in \(0, 1\]"),
    Case("demo-out-exists", "lensneurons demo (demo-output holds an earlier demo's results)",
         demo_again, ResultExistsError, "--overwrite"),
    Case("no-command", "lensneurons", lambda c: cli(c), ParameterError, "required: command"),
    Case("unknown-command", "lensneurons train", lambda c: cli(c, "train"), ParameterError,
         "invalid choice"),
    Case("unknown-option", "lensneurons detect stats --out neurons --top-k 5",
         lambda c: detect(c, "--out", "neurons", "--top-k", "5"), ParameterError,
         "unrecognized arguments"),
]
CASES = [dataclasses.replace(case, run=in_own_folder(case.run)) for case in CASES]


@pytest.mark.parametrize("case", _catalog.params(CASES))
def test_case(case, bad):
    _catalog.run_case(case, bad, _catalog.area_of(__name__))


def test_organism_train_checks_its_arguments_too():
    """The Python API refuses what the command line refuses, before any work."""
    for kwargs in ({"steps": -1}, {"steps": 0}, {"minutes": 0}, {"minutes": float("nan")},
                   {"threads": 0}, {"seed": 1.5}):
        with pytest.raises(ParameterError):
            organism.train(Path("/nonexistent/never-written"), **kwargs)
    assert not Path("/nonexistent").exists()
