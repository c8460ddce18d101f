r"""Gemma 3 270M's latent-language curves through three decoders: logit, tuned lens, patchscope.

    .venv/bin/python scripts/patchscope_gemma.py [--items 40] [--threads 1]

The three pairs of ``notebooks/04_does_gemma_think_in_english.ipynb`` (de→ru, fr→de, es→el),
the same translation prompts (``prompts.translation(src, tgt, seed=0)[:items]``), each read at
every block output (depths 1..18) by

* the logit lens (``lens=None``),
* the shipped tuned lens (``lensneurons/data/real/gemma-3-270m/tuned_lens``, trained 33 steps),
* the patchscope (``lens="patchscope"``: the paper's identity target prompt
  ``"cat -> cat\n1135 -> 1135\nhello -> hello\n?"``, the state of depth d patched into the
  target's last position at depth d).

Writes ``docs/data/patchscope/curves.csv`` (pair, decoder, depth, quantity, mean, lo, hi, n),
``docs/data/patchscope/summary.json`` (per pair and decoder: the P(en) peak, the first depth where
P(en) exceeds P(target), the "English-first" depths of notebook 04, the last depth, the decoder's
record, seconds) and the figure ``docs/img/pivot_decoders.png``. About 5 minutes on one thread
of this project's 2-core CPU with 40 items per pair.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import time
from pathlib import Path

import matplotlib
import pandas as pd
import torch

import lensneurons as ln
from lensneurons.lens import TunedLens, latent_language, prompts

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

NAME = "gemma-3-270m"
PAIRS = [("de", "ru"), ("fr", "de"), ("es", "el")]
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "docs" / "data" / "patchscope"
FIGURE = ROOT / "docs" / "img" / "pivot_decoders.png"
STYLES = {"logit lens": "-", "tuned lens": "--", "patchscope": ":"}
COLORS = {"en": "tab:blue", "target": "tab:orange"}


def parse() -> argparse.Namespace:
    """Command-line settings."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=40, help="prompts per pair (notebook 04: 40)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=8)
    return p.parse_args()


def summary(curves: ln.lens.LatentLanguageResult) -> dict:
    """Where P(en) peaks, where it first exceeds P(target), who wins the last depth."""
    tgt = curves.languages[-1]
    en, tg = curves.mean("en"), curves.mean(tgt)
    en_lo, _ = curves.interval("en")
    _, tg_hi = curves.interval(tgt)
    depths = curves.depths
    peak = int(en[:-1].argmax())  # before the last depth, as in notebook 04
    above = [depths[i] for i in range(len(depths) - 1) if en[i] > tg[i] and en[i] >= 0.01]
    english_first = [depths[i] for i in range(len(depths) - 1)
                     if en_lo[i] > tg_hi[i] and en[i] >= 0.01]
    return {
        "items": curves.n_items,
        "p_en_peak_depth": depths[peak],
        "p_en_peak": round(float(en[peak]), 4),
        "p_target_at_peak": round(float(tg[peak]), 4),
        "first_depth_p_en_above_p_target": above[0] if above else None,
        "depths_p_en_above_p_target": above,
        "english_first_depths": english_first,
        "p_target_peak": round(float(tg.max()), 4),
        "p_target_peak_depth": depths[int(tg.argmax())],
        "last_depth_p_en": round(float(en[-1]), 4),
        "last_depth_p_target": round(float(tg[-1]), 4),
        "decoder": curves.decoder,
    }


def draw(results: dict) -> None:
    """Three panels (one per pair): P(en) and P(target) per decoder, with 95% bands."""
    fig, axes = plt.subplots(1, len(PAIRS), figsize=(15, 4.4), sharey=False)
    for ax, (src, tgt) in zip(axes, PAIRS, strict=True):
        n = 0
        for decoder, curves in results[(src, tgt)].items():
            n = curves.n_items
            for lang, key in (("en", "en"), (tgt, "target")):
                lo, hi = curves.interval(lang)
                ax.plot(curves.depths, curves.mean(lang), STYLES[decoder], color=COLORS[key],
                        lw=1.6, label=f"P({lang}), {decoder}")
                ax.fill_between(curves.depths, lo, hi, color=COLORS[key], alpha=0.10)
        ax.set_title(f"{src}→{tgt}, n = {n} prompts", fontsize=10)
        ax.set_xlabel("depth (d = output of block d - 1)")
        ax.set_xlim(1, 18)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("probability (Start(w) tokens)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, [lab.replace("(ru)", "(target)") for lab in labels], loc="lower center",
               ncol=6, fontsize=8, frameon=False)
    fig.suptitle("Gemma 3 270M, latent language through three decoders: logit lens (solid), "
                 "tuned lens (dashed), patchscope (dotted)", fontsize=11)
    fig.tight_layout(rect=(0, 0.08, 1, 0.95))
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURE, dpi=90)
    plt.close(fig)


def main() -> None:
    """Run the three decoders on the three pairs; write the table, the summary and the figure."""
    args = parse()
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    start = time.perf_counter()
    model = ln.models.load(NAME, progress=False)
    tuned = TunedLens.load(ln.real_stats.data_dir(NAME) / "tuned_lens", model)
    decoders = {"logit lens": None, "tuned lens": tuned, "patchscope": "patchscope"}
    results: dict = {}
    rows, record = [], {}
    for src, tgt in PAIRS:
        items = prompts.translation(src=src, tgt=tgt, seed=0)[:args.items]
        results[(src, tgt)] = {}
        for decoder, lens in decoders.items():
            t0 = time.perf_counter()
            curves = latent_language(model, items, lens=lens, batch_size=args.batch_size,
                                     label=decoder)
            seconds = time.perf_counter() - t0
            results[(src, tgt)][decoder] = curves
            table = curves.table()
            table.insert(0, "decoder", decoder)
            table.insert(0, "pair", f"{src}-{tgt}")
            table["quantity"] = table["quantity"].replace({tgt: "target"})
            table.insert(table.columns.get_loc("quantity") + 1, "language",
                         table["quantity"].replace({"target": tgt}))
            rows.append(table)
            record.setdefault(f"{src}-{tgt}", {})[decoder] = {**summary(curves),
                                                             "seconds": round(seconds, 1)}
            print(f"{src}→{tgt} {decoder:10s} {seconds:6.1f} s "
                  f"{ {k: v for k, v in summary(curves).items() if k != 'decoder'} }", flush=True)
    DATA.mkdir(parents=True, exist_ok=True)
    pd.concat(rows, ignore_index=True).to_csv(DATA / "curves.csv", index=False,
                                              float_format="%.6g")
    meta = {
        "model": NAME,
        "pairs": [f"{s}-{t}" for s, t in PAIRS],
        "items_per_pair": args.items,
        "prompts": "prompts.translation(src, tgt, seed=0)[:items] (notebook 04's items)",
        "threads": torch.get_num_threads(),
        "seconds_total": round(time.perf_counter() - start, 1),
        "versions": {name: importlib.metadata.version(name)
                     for name in ("transformer-lens", "transformers", "torch")},
        "results": record,
    }
    (DATA / "summary.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n")
    draw(results)
    print(f"wrote {DATA / 'curves.csv'}, {DATA / 'summary.json'}, {FIGURE} "
          f"in {meta['seconds_total']:.0f} s")


if __name__ == "__main__":
    main()
