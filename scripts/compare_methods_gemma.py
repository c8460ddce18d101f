"""Compare LAPE, ternary and PLND language-neuron sets of Gemma 3 270M (MLP site).

    LENSNEURONS_CACHE=/tmp/lncache .venv/bin/python scripts/compare_methods_gemma.py [--n-lines 20]

Everything but the perplexity part reads shipped data only: the activation statistics in
``lensneurons/data/real/gemma-3-270m/stats`` (LAPE at Tang et al.'s defaults, ternary at Zhang et
al.'s) and the PLND result in ``.../plnd`` (MLP site, its saved ``doc_frequency``). Writes

- ``docs/data/method_comparison/``: ``set_sizes.csv``, ``iou_by_language.csv`` (per language, the
  IoU of each pair of methods), ``iou_methods.csv`` (methods × methods, mean over languages),
  ``iou_same_vs_other.csv`` (same-language against other-language IoU per pair),
  ``iou_full.csv`` (every ``method:language`` set against every other), ``containment.csv``
  (share of the LAPE and ternary sets inside the PLND set, with chance), ``layer_counts.csv``,
  and with the model: ``nll_matrix_<method>.csv``, ``nll_delta_<method>.csv``,
  ``nll_delta_ci.csv`` (paired 95% intervals) and ``specificity.csv``;
- ``docs/img/``: ``method_comparison_iou.png``, ``method_comparison_layers.png`` and
  ``method_comparison_nll.png``.

The perplexity matrices (en, de, fr, ru, zh) use the first ``--n-lines`` held-out lines that PLND
did not use as documents (PLND took the first 20 of at least 4 tokens).

``--skip-perplexity`` rewrites the set-level files without loading the model. Attribution
(CULNIG) sets exist for cultures only, not languages, so they are not compared here.
"""

from __future__ import annotations

import argparse
import itertools
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import lensneurons as ln  # noqa: E402

NAME = "gemma-3-270m"
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "docs" / "data" / "method_comparison"
IMG = ROOT / "docs" / "img"
EVAL_LANGUAGES = ["en", "de", "fr", "ru", "zh"]
METHODS = ["lape", "ternary", "plnd"]
PLND_MIN_TOKENS = 4     # scripts/plnd_gemma.py's --min-tokens
PLND_RESULT = ln.PLNDResult.load(ln.real_stats.data_dir(NAME) / "plnd")


def method_sets(stats: ln.ActivationStats) -> tuple[dict[str, ln.NeuronSets], dict[str, object]]:
    """Each method's per-language MLP sets, and the thresholds that made them."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        split = ln.ternary(stats)
    sets = {"lape": ln.lape(stats), "ternary": split.language_neurons(),
            "plnd": PLND_RESULT.neuron_sets("mlp")}
    info = {"ternary_lam": split.lam, "ternary_lam_at_bound": split.lam_at_bound,
            "ternary_warnings": [str(w.message) for w in caught],
            "plnd_doc_frequency": sets["plnd"].meta["doc_frequency"]}
    return sets, info


def iou(a: ln.NeuronSet, b: ln.NeuronSet) -> float:
    """Jaccard index of two sets (NaN when both are empty)."""
    union = len(a | b)
    return len(a & b) / union if union else float("nan")


def iou_tables(sets: dict[str, ln.NeuronSets]) -> dict[str, pd.DataFrame]:
    """IoU per language and pair, methods × methods mean, full matrix, same vs other language."""
    groups = sets["lape"].groups
    pairs = list(itertools.combinations(METHODS, 2))
    by_language = pd.DataFrame(
        {f"{a}-{b}": [iou(sets[a][g], sets[b][g]) for g in groups] for a, b in pairs},
        index=pd.Index(groups, name="language"))
    methods = pd.DataFrame(np.eye(len(METHODS)), index=METHODS, columns=METHODS)
    for a, b in pairs:
        methods.loc[a, b] = methods.loc[b, a] = by_language[f"{a}-{b}"].mean()
    names = [f"{m}:{g}" for m in METHODS for g in groups]
    flat = [sets[m][g] for m in METHODS for g in groups]
    full = pd.DataFrame([[iou(x, y) for y in flat] for x in flat], index=names, columns=names)
    rows = []
    for a, b in [(m, m) for m in METHODS] + pairs:
        block = full.loc[[f"{a}:{g}" for g in groups], [f"{b}:{g}" for g in groups]].to_numpy()
        off = block[~np.eye(len(groups), dtype=bool)]
        rows.append({"pair": f"{a}-{b}", "same_language": np.nan if a == b else
                     float(np.diag(block).mean()), "other_language": float(off.mean())})
    same_vs_other = pd.DataFrame(rows).set_index("pair")
    return {"iou_by_language": by_language, "iou_methods": methods, "iou_full": full,
            "iou_same_vs_other": same_vs_other}


def containment(sets: dict[str, ln.NeuronSets]) -> pd.DataFrame:
    """Share of each small set (LAPE, ternary) inside the PLND set, and its layer-matched chance.

    Chance: the expected share if the PLND set were random units with its own count per layer,
    ``sum_l |a_l| |b_l| / d_mlp / |a|``.
    """
    out = {}
    for m in ("lape", "ternary"):
        share, chance = [], []
        for g in sets[m].groups:
            a, b = sets[m][g], sets["plnd"][g]
            width = a.shape[1]
            share.append(len(a & b) / len(a) if len(a) else np.nan)
            expected = sum(x * y / width for x, y in zip(a.per_layer(), b.per_layer()))
            chance.append(expected / len(a) if len(a) else np.nan)
        out[f"{m}_in_plnd"], out[f"{m}_in_plnd_chance"] = share, chance
    return pd.DataFrame(out, index=pd.Index(sets["lape"].groups, name="language"))


def layer_counts(sets: dict[str, ln.NeuronSets]) -> pd.DataFrame:
    """Units per method, language and layer (long format)."""
    rows = [{"method": m, "language": g, "layer": layer, "units": n}
            for m in METHODS for g, s in sets[m].items() for layer, n in enumerate(s.per_layer())]
    return pd.DataFrame(rows)


def plot_iou(tables: dict[str, pd.DataFrame]) -> plt.Figure:
    """Heatmaps: IoU per language and pair; mean IoU methods × methods."""
    by_language, methods = tables["iou_by_language"], tables["iou_methods"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), gridspec_kw={"width_ratios": [3, 1.3]},
                             layout="constrained")
    for ax, table, title in [(axes[0], by_language.T, "IoU per language (pair of methods)"),
                             (axes[1], methods, "mean IoU over 14 languages")]:
        im = ax.imshow(table.to_numpy(), vmin=0, vmax=max(0.3, float(by_language.max().max())),
                       cmap="viridis", aspect="auto")
        ax.set_xticks(range(table.shape[1]), table.columns, rotation=45, ha="right")
        ax.set_yticks(range(table.shape[0]), table.index)
        for (i, j), v in np.ndenumerate(table.to_numpy()):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if v < 0.15 else "black")
        ax.set_title(title)
    fig.colorbar(im, ax=axes, shrink=0.8, label="IoU (Jaccard)")
    return fig


def plot_layers(counts: pd.DataFrame) -> plt.Figure:
    """Units per layer summed over languages, one panel per method."""
    per_layer = counts.groupby(["method", "layer"])["units"].sum().unstack("method")[METHODS]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.5), sharex=True)
    for ax, m in zip(axes, METHODS):
        ax.bar(per_layer.index, per_layer[m], color=f"C{METHODS.index(m)}")
        ax.set_title(f"{m}: {int(per_layer[m].sum())} memberships")
        ax.set_xlabel("layer")
    axes[0].set_ylabel("units, summed over 14 languages")
    fig.tight_layout()
    return fig


def plot_deltas(deltas: dict[str, pd.DataFrame]) -> plt.Figure:
    """The ΔNLL matrix of each method, side by side."""
    fig, axes = plt.subplots(1, len(deltas), figsize=(4.2 * len(deltas), 3.8))
    for ax, (m, delta) in zip(axes, deltas.items()):
        table = delta.drop(index="none")
        top = float(np.abs(table.to_numpy()).max())
        ax.imshow(table.to_numpy(), cmap="RdBu_r", vmin=-top, vmax=top)
        ax.set_xticks(range(table.shape[1]), table.columns)
        ax.set_yticks(range(table.shape[0]), table.index)
        for (i, j), v in np.ndenumerate(table.to_numpy()):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if abs(v) > 0.6 * top else "black")
        ax.set_title(f"{m}: ΔNLL (nats)")
        ax.set_xlabel("evaluated")
    axes[0].set_ylabel("deactivated")
    fig.tight_layout()
    return fig


def eval_corpus(model: object, stats: ln.ActivationStats, n_lines: int) -> ln.Corpus:
    """The first ``n_lines`` held-out lines per language that PLND did not use as documents.

    ``scripts/plnd_gemma.py`` took the first 20 held-out lines of at least 4 tokens per language:
    evaluating on them would test PLND's sets on the documents that chose them.
    """
    held = ln.real_stats.heldout(stats, languages=EVAL_LANGUAGES)
    n_docs = dict(zip(PLND_RESULT.groups, PLND_RESULT.n_docs.tolist()))
    texts = {}
    for g, lines in held.items.items():
        long = [t for t in lines if len(model.tokenizer(t, add_special_tokens=False)["input_ids"])
                >= PLND_MIN_TOKENS]
        used = set(long[:n_docs[g]])
        texts[g] = [t for t in lines if t not in used][:n_lines]
    return ln.Corpus.from_texts(texts)


def perplexity_part(stats: ln.ActivationStats, sets: dict[str, ln.NeuronSets],
                    n_lines: int) -> dict[str, pd.DataFrame]:
    """Perplexity matrices of each method's sets on a few languages; saves CSVs."""
    model = ln.models.load(NAME, progress=False)
    corpus = eval_corpus(model, stats, n_lines)
    print(f"evaluation corpus: {corpus}")
    deltas, cis, spec = {}, [], {}
    for m in METHODS:
        subset = ln.NeuronSets({g: sets[m][g] for g in EVAL_LANGUAGES}, sets[m].meta)
        start = time.perf_counter()
        matrix = ln.perplexity_matrix(model, corpus, subset, random_baseline=False)
        print(f"{m}: perplexity matrix in {time.perf_counter() - start:.0f} s")
        matrix.to_csv(DATA / f"nll_matrix_{m}.csv")
        deltas[m] = ln.nll_delta(matrix)
        deltas[m].to_csv(DATA / f"nll_delta_{m}.csv")
        ci = ln.nll_delta(matrix, interval=0.95).reset_index()
        cis.append(ci.assign(method=m))
        spec[m] = ln.specificity(deltas[m])
    pd.concat(cis).to_csv(DATA / "nll_delta_ci.csv", index=False)
    specificity = pd.DataFrame(spec)
    specificity.index.name = "language"
    specificity.to_csv(DATA / "specificity.csv")
    return deltas


def main() -> None:
    """Compute and save everything."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-lines", type=int, default=20)
    parser.add_argument("--skip-perplexity", action="store_true")
    args = parser.parse_args()
    DATA.mkdir(parents=True, exist_ok=True)
    IMG.mkdir(parents=True, exist_ok=True)
    stats = ln.real_stats.load(NAME)
    sets, info = method_sets(stats)
    print(info)
    sizes = pd.DataFrame({m: sets[m].summary()["total"] for m in METHODS})
    sizes.index.name = "language"
    sizes.to_csv(DATA / "set_sizes.csv")
    tables = iou_tables(sets)
    for name, table in tables.items():
        table.round(4).to_csv(DATA / f"{name}.csv")
    print(tables["iou_methods"].round(3), tables["iou_same_vs_other"].round(3), sep="\n")
    contained = containment(sets)
    contained.round(4).to_csv(DATA / "containment.csv")
    print(contained.mean().round(3))
    counts = layer_counts(sets)
    counts.to_csv(DATA / "layer_counts.csv", index=False)
    plot_iou(tables).savefig(IMG / "method_comparison_iou.png", dpi=80, bbox_inches="tight")
    plot_layers(counts).savefig(IMG / "method_comparison_layers.png", dpi=80,
                                bbox_inches="tight")
    if args.skip_perplexity:      # redraw the figure from the saved matrices, if any
        saved = {m: DATA / f"nll_delta_{m}.csv" for m in METHODS}
        if all(f.exists() for f in saved.values()):
            deltas = {m: pd.read_csv(f, index_col=0) for m, f in saved.items()}
            plot_deltas(deltas).savefig(IMG / "method_comparison_nll.png", dpi=80,
                                        bbox_inches="tight")
    else:
        deltas = perplexity_part(stats, sets, args.n_lines)
        plot_deltas(deltas).savefig(IMG / "method_comparison_nll.png", dpi=80,
                                    bbox_inches="tight")
        print(pd.read_csv(DATA / "specificity.csv", index_col=0).round(2))


if __name__ == "__main__":
    main()
