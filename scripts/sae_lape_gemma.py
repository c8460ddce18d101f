"""SAE-LAPE on the shipped Gemma 3 270M SAE: language-specific latents of layer 12.

Collects the latent statistics of ``lensneurons/data/sae/gemma-3-270m-l12/`` with per-document
counts over a slice of the real-statistics *training* lines that the SAE was not trained on (each
language's lines ``START`` to ``START + 500``; the SAE saw each language's first lines, at most
~1,000), 100 documents per language, in two granularities:

* ``one_line``: one line per document (the first 100 lines of the slice, ~12 tokens each);
* ``five_lines``: five consecutive lines joined by newlines per document (~60 tokens each).

On each it selects latents with ``ln.sae_lape`` (the paper's rule, defaults, and a sweep of
``example_rate``) and ``ln.lape`` (Tang et al., defaults), and reports how the latents are shared
(the ``groups_per_unit`` histogram, the overlap with LAPE's sets). For the five-line documents it
also prints each language's latents with examples (the tokens they fire on most often, the
context where they fire strongest) and the NLL change on ``N_EVAL`` held-out lines per language
when each language's SAE-LAPE latents are zeroed (``ln.perplexity_matrix``, the SAE's error
term kept, random latents of the same number as a baseline).

The counts (``active``, ``active_docs``, ``n_tokens``, ``n_docs``) of both are saved to
``lensneurons/data/real/gemma-3-270m/sae_stats/{one_line,five_lines}/``.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/sae_lape_gemma.py [--no-save] [--no-matrix]

About 12 minutes on one CPU core (the perplexity matrix 7 of them).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch

import lensneurons as ln
from lensneurons.corpora.gettext import texts_digest
from lensneurons.subjects import real_stats

SAE_DIR = Path(ln.__file__).resolve().parent / "data" / "sae" / "gemma-3-270m-l12"
STATS_DIR = real_stats.data_dir("gemma-3-270m") / "sae_stats"
#: First training line of the slice (after every line the SAE was trained on); documents per
#: language.
START, N_DOCS = 2000, 100
#: Held-out lines per language for the perplexity matrix.
N_EVAL = 15


def documents(train: dict[str, list[str]], lines_per_doc: int) -> dict[str, list[str]]:
    """``N_DOCS`` documents per language of ``lines_per_doc`` consecutive lines from ``START``."""
    return {g: ["\n".join(train[g][START + i * lines_per_doc:START + (i + 1) * lines_per_doc])
                for i in range(N_DOCS)] for g in real_stats.LANGUAGES}


def select(stats: ln.ActivationStats) -> ln.NeuronSets:
    """Print the selections on ``stats``; return SAE-LAPE's sets with the defaults."""
    sets = ln.sae_lape(stats)
    print("  sae_lape (defaults):", {g: len(s) for g, s in sets.items()}, "total",
          len(sets.union()), "| kept", sets.meta["kept"], "groups_per_unit",
          sets.meta["groups_per_unit"])
    for rate in (0.9, 0.8, 0.5):
        other = ln.sae_lape(stats, example_rate=rate)
        print(f"  sae_lape example_rate={rate}:", {g: len(s) for g, s in other.items()},
              "total", len(other.union()))
    other = ln.sae_lape(stats, ratio=0.8)
    print("  sae_lape ratio=0.8:", {g: len(s) for g, s in other.items()}, "total",
          len(other.union()))
    lape = ln.lape(stats)
    print("  lape (defaults):", {g: len(s) for g, s in lape.items()}, "total",
          len(lape.union()))
    print("  in both SAE-LAPE and LAPE (same language):",
          {g: len(sets[g] & lape[g]) for g in stats.groups if len(sets[g])},
          "| SAE-LAPE latents in any LAPE set:", len(sets.union() & lape.union()))
    return sets


def latent_table(model: Any, corpus: ln.Corpus, sae: ln.SAE, latents: torch.Tensor
                 ) -> tuple[tuple[torch.Tensor, ...], list[list[int]]]:
    """Activations of ``latents`` on every counted token, with where the token is.

    Returns ``(values [token, latent], token ids, group index, document index, position)`` and
    each document's token ids (BOS first).
    """
    view = ln.ModelView(model)
    values, tokens, groups, docs, positions, texts = [], [], [], [], [], []
    seen: list[torch.Tensor] = []

    def keep(x: torch.Tensor, *, hook: Any) -> None:
        seen.append(sae.encode(x.detach().float(), latents))

    with torch.inference_mode(), model.hooks(fwd_hooks=[(sae.hook_name, keep)]):
        for batch in corpus.tokenize(view).batches(16):
            view.run_until(batch.tokens, sae.hook_name)
            x = seen.pop()
            for row in range(len(batch.tokens)):
                mask = batch.counted[row]
                n = int(mask.sum())
                values.append(x[row][mask])
                tokens.append(batch.tokens[row][mask])
                groups.append(torch.full((n,), int(batch.rows[row])))
                docs.append(torch.full((n,), len(texts)))
                positions.append(mask.nonzero().flatten())
                texts.append(batch.tokens[row][: int(positions[-1].max()) + 1].tolist())
    table = tuple(torch.cat(t) for t in (values, tokens, groups, docs, positions))
    return table, texts


def describe(model: Any, stats: ln.ActivationStats, sets: ln.NeuronSets,
             table: tuple[torch.Tensor, ...], texts: list[list[int]],
             latents: list[int], n_examples: int = 3) -> None:
    """Print each language's latents with their probabilities and examples."""
    values, tokens, groups, docs, positions = table
    probs, doc_probs = stats.probs()[:, 0], stats.doc_probs()[:, 0]
    column = {u: i for i, u in enumerate(latents)}
    decode = model.tokenizer.decode
    for g, group in enumerate(stats.groups):
        idx = sets[group].indices[0].tolist()
        if not idx:
            print(f"  {group}: 0 latents")
            continue
        others = torch.cat([probs[:g, idx], probs[g + 1:, idx]])
        print(f"  {group}: {len(idx)} latents; P(active) own {probs[g, idx].mean():.3f}, "
              f"others mean {others.mean():.4f}, highest {others.max():.4f}; documents "
              f"{doc_probs[g, idx].mean():.3f}")
        for u in idx[:n_examples]:
            fired = values[:, column[u]] > 0
            common = Counter(tokens[fired & (groups == g)].tolist()).most_common(5)
            column_values = values[:, column[u]]
            best = int(column_values.masked_fill(groups != g, -1.0).argmax())
            doc, pos = texts[int(docs[best])], int(positions[best])
            context = (decode(doc[max(1, pos - 8):pos]) + "[" + decode(doc[pos:pos + 1]) + "]"
                       + decode(doc[pos + 1:pos + 4]))
            anywhere = stats.groups[int(groups[int(column_values.argmax())])]
            other = torch.cat([probs[:g, u], probs[g + 1:, u]])
            rival = [x for x in stats.groups if x != group][int(other.argmax())]
            print(f"    latent {u}: own {probs[g, u]:.3f} (docs {doc_probs[g, u]:.2f}), "
                  f"next {rival} {other.max():.3f}; tokens "
                  f"{[decode([t]) for t, _ in common]}; strongest in {group}: {context!r}"
                  + ("" if anywhere == group else f" (strongest of all in {anywhere})"))


def main() -> None:
    """Collect, select, describe, save the counts, and run the perplexity matrix."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-save", action="store_true", help="do not save the counts")
    parser.add_argument("--no-matrix", action="store_true", help="skip the perplexity matrix")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.time()
    model = ln.models.load("gemma-3-270m", dtype=torch.float32, progress=False)
    sae = ln.SAE.load(SAE_DIR)
    site = ln.sae_site(sae)
    trained = sae.cfg["metadata"]["training"].get("lines_per_language", {})
    assert max(trained.values(), default=0) <= START, "the slice overlaps the SAE's lines"
    train, held = real_stats.texts()
    results = {}
    for name, lines_per_doc in (("one_line", 1), ("five_lines", 5)):
        corpus = ln.Corpus.from_texts(documents(train, lines_per_doc))
        began = time.time()
        stats = ln.collect(model, corpus, site=site, document_stats=True, progress=False)
        print(f"{name}: {int(stats.n_tokens.sum())} tokens, {int(stats.n_docs.sum())} documents "
              f"(collected in {time.time() - began:.0f} s)")
        sets = select(stats)
        results[name] = corpus, stats, sets
        if not args.no_save:
            for field in ("sum", "sum_sq", "max", "seq_mean_max", "seq_mean_median"):
                setattr(stats, field, None)
            stats.meta.update(
                sae=SAE_DIR.name, train_digest=texts_digest(train),
                corpus=(f"real_stats.texts()[0] (training lines) from line {START} of each "
                        f"language, {N_DOCS} documents of {lines_per_doc} line(s) joined by "
                        "newlines"))
            stats.save(STATS_DIR / name, overwrite=True)
    if not args.no_save:
        size = sum(p.stat().st_size for p in STATS_DIR.rglob("*") if p.is_file())
        print(f"saved the counts to {STATS_DIR} ({size / 1e6:.2f} MB)")

    corpus, stats, sets = results["five_lines"]
    latents = sorted(set(sets.union().indices[0].tolist()))
    if latents:
        table, texts = latent_table(model, corpus, sae, torch.tensor(latents))
        print("five_lines: SAE-LAPE latents per language (first three with examples)")
        describe(model, stats, sets, table, texts, latents)

    chosen = {g: s for g, s in sets.items() if len(s)}
    if not args.no_matrix and chosen:
        began = time.time()
        heldout = ln.Corpus.from_texts({g: held[g][:N_EVAL] for g in real_stats.LANGUAGES})
        matrix = ln.perplexity_matrix(model, heldout, ln.NeuronSets(chosen, sets.meta),
                                      progress=False)
        delta = ln.nll_delta(matrix)
        print(f"ΔNLL ({N_EVAL} held-out lines per language; row: latents zeroed, column: "
              "evaluated language)")
        print(delta.round(3).to_string())
        print("specificity:", ln.specificity(delta).round(1).to_dict())
        print(f"perplexity matrix in {time.time() - began:.0f} s")
    print(f"whole script {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
