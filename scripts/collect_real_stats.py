"""Collect the shipped statistics of the offline real models (run once; minutes on a CPU).

    .venv/bin/python scripts/collect_real_stats.py gemma-3-270m smollm2-135m

Writes lensneurons/data/real/<model>/stats.{safetensors,json}. Gemma keeps sums, sums of squares
and maxima (steering and the notebooks use means); SmolLM2, reported only, keeps counts and sums.
"""

import argparse
import time

import torch

from lensneurons.subjects import models, real_stats

KEEP = {"gemma-3-270m": ("sum", "sum_sq", "max"), "smollm2-135m": ("sum",)}

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("names", nargs="+", choices=sorted(KEEP))
parser.add_argument("--tokens-per-group", type=int, default=real_stats.TOKENS_PER_GROUP)
args = parser.parse_args()
for name in args.names:
    start = time.monotonic()
    model = models.load(name, dtype=torch.float32)
    stats = real_stats.collect_and_save(model, name, tokens_per_group=args.tokens_per_group,
                                        keep=KEEP[name])
    n = int(stats.n_tokens.sum())
    seconds = time.monotonic() - start
    print(f"{name}: {stats}\n  {n} tokens in {seconds:.0f} s ({n / seconds:.0f} tokens/s, "
          f"load included) -> {real_stats.data_dir(name) / 'stats'}")
