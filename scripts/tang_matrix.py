"""Tang et al.'s perplexity matrix on a real model from its shipped statistics; prints the report.

    .venv/bin/python scripts/tang_matrix.py smollm2-135m --languages en de fr ru el tr vi ja ko zh

LAPE at the paper's defaults (top 1%) on lensneurons/data/real/<model>/, then the held-out
perplexity matrix with random same-size baselines, the own / others ratios and paired bootstrap
intervals. The same measurement as tests/real/test_tang_effect.py, for any shipped model.
"""

import argparse
import time

import pandas as pd

import lensneurons as ln
from lensneurons.subjects import real_stats

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("model", choices=sorted(ln.models.OFFLINE_MODELS))
parser.add_argument("--languages", nargs="+", default=None)
parser.add_argument("--lines", type=int, default=25, help="held-out lines per language")
parser.add_argument("--csv", default=None, help="write the matrix of mean NLL here")
args = parser.parse_args()

start = time.monotonic()
model = ln.models.load(args.model)
stats = real_stats.load(args.model, model=model)
languages = args.languages or list(stats.groups)
neurons = ln.lape(stats.select(languages))
matrix = ln.perplexity_matrix(model, real_stats.heldout(stats, languages, n_lines=args.lines),
                              neurons, batch_size=16)
delta = ln.nll_delta(matrix)
own = ln.nll_delta(matrix, interval=0.95).loc[[(g, g) for g in languages]]
with pd.option_context("display.width", 200, "display.max_columns", 30):
    print(f"{args.model}: LAPE units per language: {neurons.table()['total'].to_dict()}")
    print(f"\nΔ mean NLL (rows deactivated, columns evaluated):\n"
          f"{delta.to_string(float_format=lambda v: f'{v:+.3f}')}")
    print(f"\nown / others:\n{ln.specificity(delta).round(1).to_string()}")
    print(f"\nown ΔNLL, paired 95% bootstrap:\n{own.round(3).to_string()}")
print(f"\n{time.monotonic() - start:.0f} s")
if args.csv:
    matrix.table().to_csv(args.csv)
