"""Gradient attribution of Gemma 3 270M's MLP units per language, computed once and shipped.

    LENSNEURONS_CACHE=/tmp/lncache .venv/bin/python scripts/attribution_gemma.py [--n-items 256]

Items: for each of the 14 languages of the shipped statistics, ``next_token_items`` on its
training lines (``real_stats.texts()``, the split the statistics were collected on; the held-out
lines that the perplexity evaluations use are never read): a prefix of a line (4 to 32 tokens)
is the prompt, the next word token of the same line the answer. Scores: ``ln.attribution`` at the
MLP site with ``objective="logprob"``, the first-order rise of the answer's NLL when a unit is
switched off, the quantity the perplexity matrices measure. Writes one result per language,
``lensneurons/data/real/gemma-3-270m/attribution/<language>/attribution.{safetensors,json}``
(float64 ``[18, 2048]``, 295 kB each), whose metadata record how the items were made. About
7 minutes on two shared CPU cores with ``OMP_NUM_THREADS=1``.
"""

from __future__ import annotations

import argparse
import time

import torch

import lensneurons as ln
from lensneurons.corpora.gettext import texts_digest
from lensneurons.detect.attribution_sets import next_token_items
from lensneurons.subjects import real_stats

NAME = "gemma-3-270m"
OUT = real_stats.data_dir(NAME) / "attribution"
ITEMS = {"min_prompt": 4, "max_prompt": 32, "seed": 0}
OBJECTIVE = "logprob"


def main() -> None:
    """Score every language and save it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-items", type=int, default=256, help="items per language")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    start = time.perf_counter()
    model = ln.models.load(NAME, dtype=torch.float32, progress=False)
    stats = real_stats.load(NAME, model=model)
    train, _ = real_stats.texts()
    digest = texts_digest(train)
    if digest != stats.meta["train_digest"]:
        raise SystemExit("This machine's gettext catalogs differ from the shipped statistics'.")
    print(f"model loaded in {time.perf_counter() - start:.0f} s")
    for language in stats.groups:
        begin = time.perf_counter()
        items = next_token_items(model, train[language], args.n_items, **ITEMS)
        scores = ln.attribution(model, items, sites=("mlp",), objective=OBJECTIVE,
                                batch_size=args.batch_size, progress=False)
        scores.meta.update({"group": language, "items": "next_token_items", **ITEMS,
                            "batch_size": args.batch_size, "source": "gettext training lines",
                            "train_digest": digest})
        scores.save(OUT / language, overwrite=args.overwrite)
        tokens = sum(len(model.tokenizer(i.prompt)["input_ids"]) for i in items)
        print(f"{language}: {len(items)} items, {tokens} prompt tokens with BOS, "
              f"{time.perf_counter() - begin:.0f} s", flush=True)
    print(f"total {time.perf_counter() - start:.0f} s -> {OUT}")


if __name__ == "__main__":
    main()
