"""The command line on the organism: collect -> detect -> evaluate with text files."""

import subprocess
import sys
import warnings

import pandas as pd
import torch

import lensneurons as ln
from lensneurons import cli
from lensneurons.cli import main
from lensneurons.subjects import organism


def test_collect_detect_evaluate(tmp_path, capsys):
    texts = organism.texts("heldout")
    files = []
    for lang in ("en", "fr", "ru"):
        path = tmp_path / f"{lang}.txt"
        path.write_text("\n".join(texts[lang]) + "\n\n", encoding="utf-8")
        files.append(f"{lang}={path}")
    assert main(["collect", "--model", "organism", "--texts", *files, "--counts-only",
                 "--out", str(tmp_path / "stats")]) == 0
    stats = ln.ActivationStats.load(tmp_path / "stats", model=organism.load())
    assert stats.groups == ["en", "fr", "ru"]
    assert stats.sum is None  # counts only: all that detect reads
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


def test_a_bad_argument_is_one_line_and_status_2(capsys):
    assert main(["detect", "stats", "--top-rate", "5", "--out", "neurons"]) == 2
    captured = capsys.readouterr()
    assert captured.err == "lensneurons: error: --top-rate must be a number in (0, 1], got 5.0.\n"
    assert captured.out == ""


def test_texts_argument_must_name_groups(capsys):
    assert main(["collect", "--texts", "en.txt", "--out", "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lensneurons: error: --texts takes GROUP=FILE") and err.count("\n") == 1


def test_a_missing_file_is_one_line_and_status_1(tmp_path, capsys):
    missing = tmp_path / "missing.txt"
    assert main(["collect", "--texts", f"en={missing}", "--out", str(tmp_path / "s")]) == 1
    err = capsys.readouterr().err
    assert err == f"lensneurons: error: Text file {missing} (group 'en') does not exist; " \
                  "check the path.\n"
    assert not (tmp_path / "s").exists()


def test_multiline_messages_are_printed_on_one_line(capsys):
    assert cli.print_error(ln.errors.CorruptResultError("first\n  second"), sys.stderr) == 1
    assert capsys.readouterr().err == "lensneurons: error: first second\n"


def test_ctrl_c_exits_130_without_traceback(monkeypatch, capsys):
    def interrupted(argv):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run", interrupted)
    assert main(["demo"]) == 130
    assert capsys.readouterr().err == "lensneurons: interrupted\n"


def test_the_installed_command_exits_non_zero_without_traceback(tmp_path):
    """The real process: exit status through sys.exit, one line on stderr, nothing written."""
    command = [sys.executable, "-c", "import sys; from lensneurons.cli import main; "
               "sys.exit(main())", "collect", "--texts", "en=/dev/null", "--batch-size", "0",
               "--out", str(tmp_path / "stats")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr == "lensneurons: error: --batch-size must be an integer >= 1, got 0.\n"
    assert "Traceback" not in done.stdout and not (tmp_path / "stats").exists()


def test_overwrite_replaces_results_of_every_command(tmp_path, capsys):
    files = []
    for lang in ("en", "fr"):
        path = tmp_path / f"{lang}.txt"
        path.write_text("\n".join(organism.texts("heldout")[lang][:6]), encoding="utf-8")
        files.append(f"{lang}={path}")
    stats, sets, csv = tmp_path / "stats", tmp_path / "sets", tmp_path / "m.csv"
    steps = [["collect", "--texts", *files, "--out", str(stats)],
             ["detect", str(stats), "--top-rate", "0.05", "--out", str(sets)],
             ["evaluate", str(sets), "--texts", *files, "--csv", str(csv)]]
    for argv in steps:
        assert main(argv) == 0
    csv.write_text("stale")
    for argv in steps:
        assert main(argv) == 1  # each output exists now
        assert "--overwrite" in capsys.readouterr().err
    for argv in steps:
        assert main([*argv, "--overwrite"]) == 0
    assert pd.read_csv(csv, index_col=0).index[0] == "none"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["en.txt", "fr.txt", "m.csv", "sets",
                                                           "stats"]


def test_warnings_are_one_line_each(monkeypatch, capsys):
    def warns(argv):
        warnings.warn("lambda stopped\n  at the top of its range", ln.errors.SearchBoundWarning,
                      stacklevel=1)
        return 0

    monkeypatch.setattr(cli, "run", warns)
    assert main(["demo"]) == 0
    assert capsys.readouterr().err == ("lensneurons: warning: lambda stopped at the top of its "
                                       "range (SearchBoundWarning)\n")


def test_collect_checkpoint_and_resume(tmp_path, capsys, monkeypatch):
    texts = organism.texts("heldout")
    files = []
    for lang in ("en", "fr"):
        path = tmp_path / f"{lang}.txt"
        path.write_text("\n".join(texts[lang][:6]), encoding="utf-8")
        files.append(f"{lang}={path}")
    base = ["collect", "--texts", *files, "--batch-size", "2"]
    assert main([*base, "--out", str(tmp_path / "whole")]) == 0
    real_collect = ln.collect

    def stop_after_two_checkpoints(*args, **kwargs):  # a run killed after its 2nd checkpoint
        calls = {"n": 0}

        def hook(x, *, hook):
            calls["n"] += 1
            if calls["n"] == 3:
                raise KeyboardInterrupt

        model = args[0]
        with model.hooks(fwd_hooks=[("blocks.0.mlp.hook_pre", hook)]):
            return real_collect(*args, **kwargs)

    monkeypatch.setattr(ln, "collect", stop_after_two_checkpoints)
    ckpt = ["--checkpoint", str(tmp_path / "ckpt"), "--checkpoint-every", "1"]
    assert main([*base, *ckpt, "--out", str(tmp_path / "resumed")]) == 130
    monkeypatch.setattr(ln, "collect", real_collect)
    assert main([*base, *ckpt, "--out", str(tmp_path / "resumed")]) == 1  # needs --resume
    assert "resume" in capsys.readouterr().err
    assert main([*base, *ckpt, "--resume", "--out", str(tmp_path / "resumed")]) == 0
    whole = ln.ActivationStats.load(tmp_path / "whole")
    resumed = ln.ActivationStats.load(tmp_path / "resumed")
    assert torch.equal(whole.active, resumed.active)
    assert whole.n_tokens.tolist() == resumed.n_tokens.tolist()
    assert main([*base, "--resume", "--out", str(tmp_path / "x")]) == 2
