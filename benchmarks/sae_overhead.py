"""SAE sites on the organism: ``collect`` on SAE latents and latent interventions vs a forward pass.

What runs (the organism and its shipped SAE on ``blocks.2.hook_resid_post``, 1024 latents):

(a) a bare forward pass ``model(batch.tokens)`` under ``inference_mode`` over exactly the batches of
    ``corpus.tokenize(model).batches(batch_size)`` (the organism's held-out texts);
(b) ``collect(model, corpus, site="sae:organism-l2")``; (c) ``collect(model, corpus)`` on the MLP
    neurons, for comparison (both stop after their last read hook, so they may be below 1x);
(d) the same forward passes as (a) under ``deactivate`` of 10 latents (encode them, write back the
    change of the reconstruction).

Medians of ``--repeats`` interleaved rounds after a warm-up; ratios against (a).

Usage:
    python benchmarks/sae_overhead.py [--repeats 5] [--batch-size 16] [--threads 0]
"""

from __future__ import annotations

import argparse
import statistics

import torch
from _timing import timed

import lensneurons as ln


def main() -> None:
    """Run the rounds and print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = ln.organism.load()
    corpus = ln.Corpus.from_texts(ln.organism.texts("heldout"))
    site = ln.sae_site(ln.SAE.load(ln.sae.ORGANISM_SAE))
    batches = list(corpus.tokenize(ln.ModelView(model)).batches(args.batch_size))
    mask = torch.zeros(1, 1024, dtype=torch.bool)
    mask[0, :10] = True
    hooks = ln.deactivate(ln.NeuronSet.from_mask(mask, site=site), model=model)

    def forward(fwd_hooks: list) -> None:
        with torch.inference_mode(), model.hooks(fwd_hooks=fwd_hooks):
            for batch in batches:
                model(batch.tokens)

    runs = {
        "forward": lambda: forward([]),
        "collect sae": lambda: ln.collect(model, corpus, site=site, batch_size=args.batch_size,
                                          progress=False),
        "collect mlp": lambda: ln.collect(model, corpus, batch_size=args.batch_size,
                                          progress=False),
        "forward + deactivate 10 latents": lambda: forward(hooks),
    }
    for fn in runs.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            times[name].append(timed(fn)[0])
    base = statistics.median(times["forward"])
    tokens = sum(int(b.counted.sum()) for b in batches)
    print(f"{len(batches)} batches, {tokens} counted tokens; forward {base:.3f} s")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:34s} {median:.3f} s  {median / base:.2f}x forward")


if __name__ == "__main__":
    main()
