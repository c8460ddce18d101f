"""Programming-language units of Gemma 3 270M (Kargaran et al.'s recipe); run once, a few minutes.

    LENSNEURONS_CACHE=/tmp/lncache .venv/bin/python scripts/code_neurons_gemma.py
    .venv/bin/python scripts/code_neurons_gemma.py --analyse-only    # reuse the saved statistics

1. Code chunks of LANGUAGES from the files installed on this machine (lensneurons.corpora.code),
   packed into 128-token windows, 3,000 counted tokens per language; statistics saved (counts and
   sums only) in lensneurons/data/real/gemma-3-270m/code_stats/.
2. LAPE with 400 units per language (per_group_budget=400) and the exclusive sets; units per
   layer (table and docs/img/code_neurons_gemma.png).
3. Overlap (IoU) with the natural-language sets of the shipped language statistics, detected the
   same way, against the IoU two random sets of the same sizes would have.
"""

import argparse
import time
from pathlib import Path

import matplotlib
import pandas as pd
import torch

import lensneurons as ln
from lensneurons.corpora.code import load_code
from lensneurons.corpora.gettext import texts_digest
from lensneurons.subjects import real_stats

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MODEL = "gemma-3-270m"
LANGUAGES = ["python", "c", "cpp", "javascript", "html", "shell", "perl"]
TOKENS, WINDOW, MAX_FILES, MAX_CHARS, SEED, BUDGET = 3_000, 128, 60, 16_000, 0, 400
OUT = real_stats.data_dir(MODEL) / "code_stats"
FIGURE = Path(__file__).resolve().parents[1] / "docs" / "img" / "code_neurons_gemma.png"


def collect_code_stats() -> ln.ActivationStats:
    """Collect the code statistics once and save them (counts and sums only)."""
    start = time.monotonic()
    model = ln.models.load(MODEL, dtype=torch.float32)
    texts = load_code(LANGUAGES, max_files=MAX_FILES, max_chars=MAX_CHARS, seed=SEED)
    corpus = ln.Corpus.from_texts(texts, pack=True, window=WINDOW)
    stats = ln.collect(model, corpus, max_tokens_per_group=TOKENS)
    for name in ("sum_sq", "max"):
        setattr(stats, name, None)
    stats.meta.update({"languages": list(texts), "source": "installed source files",
                       "max_files": MAX_FILES, "max_chars": MAX_CHARS, "seed": SEED,
                       "window": WINDOW, "texts_digest": texts_digest(texts)})
    stats.save(OUT, overwrite=True)
    n = int(stats.n_tokens.sum())
    seconds = time.monotonic() - start
    print(f"{stats}\n{n} tokens in {seconds:.0f} s ({n / seconds:.0f} tokens/s, load included)")
    size = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"saved {OUT} ({size / 1e6:.1f} MB)")
    return stats


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    """Intersection over union of two masks (0 when both are empty)."""
    union = int((a | b).sum())
    return int((a & b).sum()) / union if union else 0.0


def chance_iou(size_a: int, size_b: int, n: int) -> float:
    """The expected IoU of two random sets of these sizes among ``n`` units."""
    inter = size_a * size_b / n
    return inter / (size_a + size_b - inter)


def analyse(stats: ln.ActivationStats) -> None:
    """Print the per-layer tables and overlaps, and save the figure."""
    sets = ln.lape(stats, per_group_budget=BUDGET)
    exclusive = sets.exclusive()
    layers = sets.table().columns[:-1]
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 40)
    print(f"\ncounted tokens: {dict(zip(stats.groups, stats.n_tokens.tolist()))}")
    print(f"tau (bar) = {sets.meta['tau'][0]:.4f}")
    print(f"\nunits per layer, per_group_budget={BUDGET}:\n{sets.table().to_string()}")
    print(f"\nexclusive units per layer:\n{exclusive.table().to_string()}")

    def mean_layer(s: ln.NeuronSet) -> float:
        counts = torch.tensor(s.per_layer(), dtype=torch.float64)
        return float((counts * torch.arange(len(counts))).sum() / counts.sum())

    table = pd.DataFrame({
        "selected": {g: len(s) for g, s in sets.items()},
        "exclusive": {g: len(s) for g, s in exclusive.items()},
        "mean layer (selected)": {g: round(mean_layer(s), 1) for g, s in sets.items()},
        "mean layer (exclusive)": {g: round(mean_layer(s), 1) if len(s) else None
                                   for g, s in exclusive.items()},
    })
    print(f"\n{table.to_string()}")
    union, ex_union = sets.union(), exclusive.union()
    n_layers = len(layers)
    thirds = [range(0, n_layers // 3), range(n_layers // 3, 2 * n_layers // 3),
              range(2 * n_layers // 3, n_layers)]
    shares_of = {"code, per_group_budget": union, "code, exclusive": ex_union}
    lang_stats = real_stats.load(MODEL)
    lang_sets = ln.lape(lang_stats, per_group_budget=BUDGET)
    shares_of["natural languages, per_group_budget"] = lang_sets.union()
    shares_of["code, lape defaults (top 1%)"] = ln.lape(stats).union()
    for name, s in shares_of.items():
        per = s.per_layer()
        shares = [sum(per[i] for i in r) / max(len(s), 1) for r in thirds]
        print(f"{name}: {len(s)} units; share in layers 0-5 / 6-11 / 12-17: "
              + " / ".join(f"{x:.0%}" for x in shares))
    print(f"\nIoU between code languages (selected):\n{sets.overlap().round(3).to_string()}")

    fig, axes = plt.subplots(1, 2, figsize=(13, 4), sharey=False)
    sets.plot(ax=axes[0])
    axes[0].set_title(f"Gemma 3 270M: {BUDGET} LAPE units per programming language")
    exclusive.plot(ax=axes[1])
    axes[1].set_title("exclusive to one programming language")
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(FIGURE, dpi=110)
    print(f"\nfigure: {FIGURE}")

    n_units = union.mask.numel()
    matrix = pd.DataFrame({lang: {code: iou(sets[code].mask, lang_sets[lang].mask)
                                  for code in sets.groups} for lang in lang_sets.groups})
    chance = chance_iou(BUDGET, BUDGET, n_units)
    print(f"\nIoU code x natural language (both per_group_budget={BUDGET}); "
          f"two random {BUDGET}-unit sets: {chance:.4f}\n{matrix.round(3).to_string()}")
    lu = lang_sets.union()
    print(f"union of code sets {len(union)}, of language sets {len(lu)}, shared {len(union & lu)},"
          f" IoU {iou(union.mask, lu.mask):.3f}, chance "
          f"{chance_iou(len(union), len(lu), n_units):.3f}")
    ex_lang = lang_sets.exclusive()
    exm = pd.DataFrame({lang: {code: int((exclusive[code].mask & ex_lang[lang].mask).sum())
                               for code in sets.groups} for lang in lang_sets.groups})
    print(f"\nshared units, exclusive code sets x exclusive language sets:\n{exm.to_string()}")


parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--analyse-only", action="store_true")
args = parser.parse_args()
analyse(ln.ActivationStats.load(OUT) if args.analyse_only else collect_code_stats())
