"""Train the shipped SAE of the model organism and report its language-specific latents.

Trains a ReLU SAE (d_sae 1024, L1) on ``blocks.2.hook_resid_post`` over the organism's training
texts, saves it in the SAELens format to ``lensneurons/data/sae/organism-l2/``, then collects
latent statistics on the held-out texts and runs LAPE on them.

    .venv/bin/python scripts/train_organism_sae.py [--steps 1500] [--overwrite] [--report-only]

The report: latents per language and their activation probability on their own language against
the others (LAPE with ``per_group_budget=10``), and the change of mean NLL on each language when
each language's latents are zeroed (the SAE's error term kept).
"""

from __future__ import annotations

import argparse
import time

import torch

import lensneurons as ln


def main() -> None:
    """Train, save, and report the language-specific latents."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--l1", type=float, default=4.0)
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--report-only", action="store_true", help="skip training")
    args = parser.parse_args()
    model = ln.organism.load()
    if not args.report_only:
        start = time.time()
        sae = ln.sae.train_sae(model, ln.Corpus.from_texts(ln.organism.texts("train")),
                               "blocks.2.hook_resid_post", d_sae=1024, l1=args.l1,
                               steps=args.steps, name="organism-l2")
        print(f"trained in {time.time() - start:.0f} s: {sae.cfg['metadata']['training']}")
        sae.save(ln.sae.ORGANISM_SAE, overwrite=args.overwrite)
    sae = ln.SAE.load(ln.sae.ORGANISM_SAE)
    heldout = ln.Corpus.from_texts(ln.organism.texts("heldout"))
    stats = ln.collect(model, heldout, site=ln.sae_site(sae), progress=False)
    probs = stats.probs()[:, 0]  # [group, latent]
    print("LAPE top_rate=0.1 (one global ranking):")
    print(ln.lape(stats, top_rate=0.1).table().to_string())
    sets = ln.lape(stats, per_group_budget=10)
    print("LAPE per_group_budget=10: P(active) on own language vs the others")
    for g, group in enumerate(stats.groups):
        idx = sets[group].indices[0]
        others = torch.cat([probs[:g, idx], probs[g + 1:, idx]]).mean(1)
        print(f"  {group}: {len(idx)} latents, own {probs[g, idx].mean().item():.3f}, others "
              f"mean {others.mean().item():.4f}, max {others.max().item():.4f}")
    delta = ln.nll_delta(ln.perplexity_matrix(model, heldout, sets, progress=False))
    print("ΔNLL (row: latents zeroed, column: evaluated language)")
    print(delta.round(3).to_string())
    print("specificity:", ln.specificity(delta).round(1).to_dict())


if __name__ == "__main__":
    main()
