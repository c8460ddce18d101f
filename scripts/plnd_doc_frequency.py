"""How PLND's set sizes move with the number of documents, per doc_frequency; own/off ratios.

    .venv/bin/python scripts/plnd_doc_frequency.py --model organism
    .venv/bin/python scripts/plnd_doc_frequency.py --model gemma-3-270m \
        --languages en de fr es it ru uk zh

Documents are gettext training lines (``real_stats.texts()``, the training side of the shipped
held-out split; lines of fewer than ``--min-tokens`` tokens are left out), one line a document.
Every document is scored once, MLP site: PLND runs on the chunks ``[0, 50)``, ``[50, 100)``, ...
of each language's lines, and since counts are sums over documents the chunks' counts add up to
the results at 50, 100, 200 and 400 documents per language; every threshold is read off those
counts. Then the sets of ``--eval-docs`` documents at each ``--eval-rules`` threshold are switched
off one language at a time on held-out lines (``ln.perplexity_matrix``: the organism's held-out
sample, or Gemma's shipped held-out gettext lines), and ``ln.specificity`` gives own / off ΔNLL.
Prints the tables of docs/methods/plnd.md ("Which documents count").
"""

import argparse
import time
import warnings
from pathlib import Path

import pandas as pd
import torch

import lensneurons as ln
from lensneurons.errors import EmptySetWarning
from lensneurons.subjects import real_stats

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--model", default="organism")
parser.add_argument("--languages", nargs="+", default=None)
parser.add_argument("--docs", nargs="+", type=int, default=[50, 100, 200, 400])
parser.add_argument("--min-tokens", type=int, default=4)
parser.add_argument("--rules", nargs="+", type=float, default=[1.0, 0.95, 0.9, 0.8, 0.7, 0.5])
parser.add_argument("--eval-rules", nargs="*", type=float, default=[1.0, 0.9])
parser.add_argument("--eval-docs", type=int, default=None, help="default: the largest --docs")
parser.add_argument("--eval-lines", type=int, default=32, help="held-out lines per language")
parser.add_argument("--eval-languages", nargs="+", default=None,
                    help="languages switched off and evaluated (default: every language)")
parser.add_argument("--exclude", choices=("all", "any"), default="all",
                    help="neuron_sets(exclude=...) of the evaluated sets")
parser.add_argument("--batch-size", type=int, default=16)
parser.add_argument("--results", default=None,
                    help="folder keeping the PLND results (plnd-<docs>); reused when present")
args = parser.parse_args()
torch.set_num_threads(1)
warnings.simplefilter("ignore", EmptySetWarning)  # the tables show the empty sets
start = time.monotonic()


def say(text: str) -> None:
    """Print ``text`` after the seconds spent so far."""
    print(f"[{time.monotonic() - start:.0f} s] {text}", flush=True)


def score() -> dict[int, ln.PLNDResult]:
    """PLND over the chunks of each language's training lines; the results at each size."""
    train, _ = real_stats.texts()
    tokenizer = model.tokenizer
    most = max(args.docs)
    docs = {}
    for g in languages:
        lines = [t for t in train[g][:3 * most]
                 if len(tokenizer(t, add_special_tokens=False)["input_ids"]) >= args.min_tokens]
        if len(lines) < most:
            raise SystemExit(f"{g}: {len(lines)} usable lines, fewer than {most}")
        docs[g] = lines[:most]
    say(f"loaded {args.model} and {most} lines per language")
    results = {}
    total = None
    edges = [0, *sorted(args.docs)]
    for lo, hi in zip(edges, edges[1:]):
        chunk = ln.Corpus.from_texts({g: d[lo:hi] for g, d in docs.items()})
        part = ln.plnd(model, chunk, sites=("mlp",), batch_size=args.batch_size,
                       progress=False)
        total = part if total is None else ln.PLNDResult(
            total.groups, {"mlp": total.counts["mlp"] + part.counts["mlp"]},
            total.n_docs + part.n_docs, total.meta)
        results[hi] = total
        if folder:
            total.save(folder / f"plnd-{hi}", overwrite=True)
        say(f"scored {hi} documents per language")
    return results


if args.model == "organism":
    model = ln.organism.load()
    languages = args.languages or list(ln.organism.LANGUAGES)
    evaluated = args.eval_languages or languages
    held = {g: ln.organism.texts("heldout")[g][:args.eval_lines] for g in evaluated}
else:
    model = ln.models.load(args.model, dtype=torch.float32, progress=False)
    languages = args.languages or list(real_stats.LANGUAGES)
    evaluated = args.eval_languages or languages
    held = real_stats.heldout(real_stats.load(args.model), evaluated,
                              n_lines=args.eval_lines).items
folder = Path(args.results) if args.results else None
if folder and all((folder / f"plnd-{n}").is_dir() for n in args.docs):
    results = {n: ln.PLNDResult.load(folder / f"plnd-{n}", model=model)
               for n in sorted(args.docs)}
    say(f"loaded the PLND results of {sorted(args.docs)} documents from {folder}")
else:
    results = score()
rows = []
for n, result in results.items():
    for theta in args.rules:
        active = result.activated("mlp", theta)
        shared = int(torch.stack([s.mask for s in active.values()]).all(0).sum())
        sets = result.neuron_sets("mlp", theta)
        rows.append({"docs": n, "doc_frequency": theta, "shared": shared,
                     **{g: len(s) for g, s in sets.items()}})
print(f"\n{args.model}: MLP specific units per language (exclude='all'); 'shared': units "
      "activated in every language")
print(pd.DataFrame(rows).to_string(index=False))

n_eval = args.eval_docs or max(args.docs)
heldout = ln.Corpus.from_texts(held)
for theta in args.eval_rules:
    every = results[n_eval].neuron_sets("mlp", theta, exclude=args.exclude)
    sets = ln.NeuronSets({g: every[g] for g in evaluated}, every.meta)
    matrix = ln.perplexity_matrix(model, heldout, sets, random_baseline=False,
                                  batch_size=args.batch_size, progress=False)
    delta = ln.nll_delta(matrix)
    say(f"{n_eval} documents, doc_frequency={theta}, exclude={args.exclude!r}: set sizes "
        f"{ {g: len(s) for g, s in sets.items()} }")
    print(f"ΔNLL (rows: switched off, columns: evaluated)\n{delta.round(3).to_string()}")
    print(f"own/off {ln.specificity(delta).round(2).to_dict()}", flush=True)
