"""Run PLND on Gemma 3 270M over the shipped held-out lines, and save the result (run once).

    LENSNEURONS_CACHE=/tmp/lncache .venv/bin/python scripts/plnd_gemma.py [--n-lines 40]

Each held-out line (gettext catalogs of the languages the shipped statistics were made on) is one
document; lines of fewer than ``--min-tokens`` counted tokens are left out, since PLND ranks units
within each document. Writes lensneurons/data/real/gemma-3-270m/plnd/plnd.{safetensors,json}
(counts stored as uint8) and prints the set sizes and per-layer counts.
"""

import argparse
import time

import torch

import lensneurons as ln
from lensneurons.detect.plnd import DOC_FREQUENCY
from lensneurons.subjects import real_stats

NAME = "gemma-3-270m"

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--n-lines", type=int, default=40, help="held-out lines per language")
parser.add_argument("--min-tokens", type=int, default=4)
parser.add_argument("--sites", nargs="+", default=["mlp", "attn.q", "attn.k", "attn.v"])
parser.add_argument("--doc-frequency", type=float, default=DOC_FREQUENCY)
parser.add_argument("--overwrite", action="store_true")
args = parser.parse_args()

start = time.monotonic()
model = ln.models.load(NAME, dtype=torch.float32, progress=False)
stats = real_stats.load(NAME)
held = real_stats.heldout(stats, n_lines=None)
tokenizer = model.tokenizer
texts = {}
for group, lines in held.items.items():
    kept = [t for t in lines
            if len(tokenizer(t, add_special_tokens=False)["input_ids"]) >= args.min_tokens]
    texts[group] = kept[:args.n_lines]
corpus = ln.Corpus.from_texts(texts)
n_tokens = corpus.tokenize(model).n_tokens
print(f"{NAME}: {corpus}; counted tokens per group {dict(zip(corpus.groups, n_tokens.tolist()))}")
result = ln.plnd(model, corpus, sites=tuple(args.sites), doc_frequency=args.doc_frequency,
                 batch_size=8)
out = real_stats.data_dir(NAME) / "plnd"
result.save(out, overwrite=args.overwrite)
print(f"{result}\n  {int(n_tokens.sum())} tokens in {time.monotonic() - start:.0f} s -> {out}")
for theta in (1.0, args.doc_frequency):
    print(f"\nspecific units per group and site at doc_frequency={theta}:")
    print(result.table(theta).to_string())
print(f"\nper-layer counts of the MLP sets at doc_frequency={args.doc_frequency}:")
print(result.neuron_sets("mlp").table().to_string())
