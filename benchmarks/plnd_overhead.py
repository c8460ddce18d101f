"""``lensneurons.plnd`` vs a bare forward pass over the same batches.

Target (docs/methods/plnd.md): PLND on the MLP and value sites takes at most 4x a bare forward
pass on the model organism; the query/key sites (an exact re-softmax per dimension, chunked) are
reported separately.

What runs: the organism (or ``--model gemma-3-270m``, a real model loaded offline), a corpus of
``--docs`` held-out texts per language; timing, interleaved after a warm-up, of (a)
``model(batch.tokens)`` under ``inference_mode`` over exactly the batches PLND runs; (b)
``plnd(sites=("mlp", "attn.v"))``; (c) ``plnd(sites=("attn.q", "attn.k"))``; (d) all four
sites. Medians of ``--repeats`` rounds of wall-clock and CPU time; ratios against (a).

Usage:
    python benchmarks/plnd_overhead.py [--docs 8] [--batch-size 8] [--repeats 3] [--threads 0]
        [--model organism|gemma-3-270m] [--device cpu] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch
from _timing import timed

import lensneurons as ln


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="organism")
    parser.add_argument("--docs", type=int, default=8, help="held-out texts per language")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.model == "organism":
        model = ln.organism.load(device=args.device)
        corpus = ln.Corpus.from_texts({g: lines[:args.docs]
                                       for g, lines in ln.organism.texts("heldout").items()})
    else:
        model = ln.models.load(args.model, device=args.device, progress=False)
        corpus = ln.real_stats.heldout(ln.real_stats.load(args.model), n_lines=args.docs)
    view = ln.ModelView(model)
    batches = list(corpus.tokenize(view).batches(args.batch_size))

    def forward() -> None:
        with torch.inference_mode():
            for batch in batches:
                model(batch.tokens.to(view.input_device))

    runs = {
        "forward": forward,
        "plnd mlp+v": lambda: ln.plnd(model, corpus, sites=("mlp", "attn.v"),
                                      batch_size=args.batch_size, progress=False),
        "plnd q+k": lambda: ln.plnd(model, corpus, sites=("attn.q", "attn.k"),
                                    batch_size=args.batch_size, progress=False),
        "plnd all": lambda: ln.plnd(model, corpus, batch_size=args.batch_size, progress=False),
    }
    for fn in runs.values():  # warm-up
        fn()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            times[name].append(timed(fn))
    wall = {k: statistics.median(t[0] for t in v) for k, v in times.items()}
    cpu = {k: statistics.median(t[1] for t in v) for k, v in times.items()}
    tokens = sum(int(b.counted.sum()) for b in batches)
    print(f"{args.model}: {len(batches)} batches, {tokens} counted tokens, "
          f"{torch.get_num_threads()} threads")
    report = {}
    for name in runs:
        report[name] = {"wall_s": wall[name], "cpu_s": cpu[name],
                        "ratio_wall": wall[name] / wall["forward"],
                        "ratio_cpu": cpu[name] / cpu["forward"]}
        print(f"  {name:12s} wall {wall[name]:7.3f} s  cpu {cpu[name]:7.3f} s  "
              f"ratio wall {report[name]['ratio_wall']:5.2f}  cpu {report[name]['ratio_cpu']:5.2f}")
    target = report["plnd mlp+v"]["ratio_cpu"] <= 4.0
    print(f"  target mlp+v <= 4x a forward pass: {'met' if target else 'MISSED'}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"model": args.model, "tokens": tokens, "runs": report}, f, indent=1)


if __name__ == "__main__":
    main()
