"""Generation under steering hooks vs generation without them, and the identifier's share.

Targets (issue: steering evaluation): generation under hooks <= 1.10x generation without them
(same prompts, same run); language identification adds <= 10% to a forcing-rate run.

The hooks are the heaviest kind the steering evaluation uses: ``ln.steer`` with a source language
deactivated and a target added (two hooks per layer plus the capture of ``u``), on LAPE sets of
the shipped statistics. Both arms run through :func:`lensneurons.evaluate.generate` (greedy, KV
cache, length-bucketed batches), interleaved, after one warm-up each; the medians are compared.

Usage:
    python benchmarks/generation_overhead.py                       # the organism
    LENSNEURONS_CACHE=/tmp/lncache python benchmarks/generation_overhead.py --model gemma-3-270m
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from _timing import timed

import lensneurons as ln
from lensneurons.corpora import langid
from lensneurons.evaluate import generate

PROMPTS = ["Q: How are you today?\nA:", "Q: What is your favourite food?\nA:",
           "Q: Where do you live?\nA:", "Q: What did you do yesterday?\nA:",
           "Q: What is the weather like today?\nA:", "Q: Can you describe your family?\nA:",
           "Q: What is your job?\nA:", "Q: How do you get to work?\nA:"]


def setup(name: str):
    if name == "organism":
        model = ln.organism.load()
        texts = {g: lines[:16] for g, lines in ln.organism.texts("heldout").items()}
        stats = ln.collect(model, ln.Corpus.from_texts(texts), progress=False)
        return model, stats, ln.lape(stats, top_rate=0.05), "fr"
    model = ln.models.load(name, dtype=torch.float32, progress=False)
    stats = ln.real_stats.load(name, model=model)
    return model, stats, ln.lape(stats), "fr"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="organism")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, stats, sets, target = setup(args.model)
    hooks = ln.steer(sets, stats, "en", target, alpha=2.0)
    arms = {"bare": [], "hooks": hooks}
    runs = {arm: lambda h=h: generate(model, PROMPTS, h, max_new_tokens=args.max_new_tokens)
            for arm, h in arms.items()}
    for fn in runs.values():
        fn()  # warm-up
    seconds: dict[str, list[float]] = {arm: [] for arm in runs}
    for _ in range(args.repeats):
        for arm, fn in runs.items():
            seconds[arm].append(timed(fn)[0])
    bare, hooked = (statistics.median(seconds[a]) for a in ("bare", "hooks"))
    texts = [t for row in generate(model, PROMPTS, hooks, max_new_tokens=args.max_new_tokens)
             for t in row]
    langid.identify(texts)  # loads the identifier once, as any forcing-rate run does
    start = time.perf_counter()
    for _ in range(args.repeats):
        langid.identify(texts, languages=list(ln.real_stats.LANGUAGES))
    identify = (time.perf_counter() - start) / args.repeats
    report = {
        "model": args.model, "prompts": len(PROMPTS), "max_new_tokens": args.max_new_tokens,
        "threads": torch.get_num_threads(), "bare_s": bare, "hooks_s": hooked,
        "hooks_ratio": hooked / bare, "identify_s": identify,
        "identify_share_of_forcing_run": identify / (hooked + identify),
    }
    print(json.dumps(report, indent=2))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
