"""Cost of ``ln.attribution`` against a bare forward pass over the same batches (same run).

Run: ``.venv/bin/python benchmarks/attribution_overhead.py [--items 48] [--repeats 3]``. Uses the
model organism and the shipped cultural questions; prints the ratio per site selection. A forward
plus a backward pass costs about 3x a forward pass; the target is attribution <= 4x.
"""

from __future__ import annotations

import argparse

import torch
from _timing import median_seconds

import lensneurons as ln
from lensneurons.corpora import culture_items
from lensneurons.detect._attribution_items import encode as _encode


def bare_forward(model, items, batch_size: int) -> None:
    """Forward passes over the same right-padded batches attribution builds."""
    view = ln.ModelView(model)
    encoded = sorted(_encode(view, items), key=lambda e: -len(e[0]))
    with torch.no_grad():
        for start in range(0, len(encoded), batch_size):
            rows = encoded[start:start + batch_size]
            width = max(len(ids) for ids, _ in rows)
            tokens = torch.zeros(len(rows), width, dtype=torch.int64)
            for r, (ids, _) in enumerate(rows):
                tokens[r, :len(ids)] = torch.tensor(ids)
            model(tokens)


def main() -> None:
    """Print the ratios."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model = ln.organism.load()
    items = [i for rows in culture_items().values() for i in rows][:args.items]
    base = median_seconds(lambda: bare_forward(model, items, args.batch_size), args.repeats)
    print(f"bare forward: {base:.3f} s for {len(items)} items")
    for sites in (("mlp",), ("mlp", "attn.q", "attn.k", "attn.v")):
        t = median_seconds(lambda s=sites: ln.attribution(model, items, sites=s, progress=False,
                                                 batch_size=args.batch_size), args.repeats)
        print(f"attribution {'+'.join(sites):28s} {t:.3f} s   ratio {t / base:.2f}")


if __name__ == "__main__":
    main()
