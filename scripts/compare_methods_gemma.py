"""Compare LAPE, ternary, PLND and attribution language-neuron sets of Gemma 3 270M (MLP site).

    LENSNEURONS_CACHE=/tmp/lncache .venv/bin/python scripts/compare_methods_gemma.py [--n-lines 20]

Everything but the perplexity part reads shipped data only: the activation statistics in
``lensneurons/data/real/gemma-3-270m/stats`` (LAPE at Tang et al.'s defaults, ternary at Zhang et
al.'s), the PLND result in ``.../plnd`` (MLP site, its saved ``doc_frequency``) and the
attribution scores per language in ``.../attribution`` (``scripts/attribution_gemma.py``), from
which CULNIG's culture-specific rule selects language sets with the mean of the other languages
as the control and LAPE's mean set size as the budget (:func:`attribution_sets`). Writes

- ``docs/data/method_comparison/``: ``set_sizes.csv``, ``iou_by_language.csv`` (per language, the
  IoU of each pair of methods), ``iou_methods.csv`` (methods × methods, mean over languages),
  ``iou_same_vs_other.csv`` (same-language against other-language IoU per pair),
  ``iou_full.csv`` (every ``method:language`` set against every other), ``containment.csv``
  (share of the LAPE, ternary and attribution sets inside the PLND set, with chance),
  ``layer_counts.csv``, and with the model: ``nll_matrix_<method>.csv`` and
  ``nll_delta_<method>.csv`` (rows: each set, then its random baseline ``random:<language>``),
  ``nll_delta_ci.csv`` (paired 95% intervals), ``specificity.csv`` (own ÷ mean of others of each
  set) and ``own_vs_random.csv`` (own Δ NLL of each set and of its
  random baseline, and their paired difference);
- ``docs/img/``: ``method_comparison_iou.png``, ``method_comparison_iou_full.png``,
  ``method_comparison_layers.png`` and ``method_comparison_nll.png``.

The perplexity matrix (en, de, fr, ru, zh) uses the first ``--n-lines`` held-out lines that PLND
did not use as documents (PLND took the first 20 of at least 4 tokens). All 20 sets and their 20
random baselines (same count per layer, disjoint from the set) are one ``perplexity_matrix``
call: 41 rows of about 1,200 tokens, 8 minutes on two shared CPU cores (``OMP_NUM_THREADS=1``:
with two threads per process an oversubscribed machine is several times slower).

``--skip-perplexity`` rewrites the set-level files without loading the model.
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
from lensneurons.detect.attribution_sets import others_mean  # noqa: E402

NAME = "gemma-3-270m"
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "docs" / "data" / "method_comparison"
IMG = ROOT / "docs" / "img"
EVAL_LANGUAGES = ["en", "de", "fr", "ru", "zh"]
METHODS = ["lape", "ternary", "plnd", "attribution"]
PLND_MIN_TOKENS = 4     # scripts/plnd_gemma.py's --min-tokens
PLND_RESULT = ln.PLNDResult.load(ln.real_stats.data_dir(NAME) / "plnd")
ATTRIBUTION = ln.real_stats.data_dir(NAME) / "attribution"


def attribution_sets(groups: list[str], budget: int) -> ln.NeuronSets:
    """Language sets from the shipped attribution scores, ``budget`` units per language before z.

    CULNIG's culture-specific rule with the other languages as the control: per language ``g``
    the top ``budget`` MLP units by ``q_g − mean_{h≠g} q_h``, kept where that contrast's z-score
    across the languages is at least 0.5 (``ln.culture_neurons``' default).
    """
    scores = {g: ln.AttributionScores.load(ATTRIBUTION / g) for g in groups}
    rate = budget / scores[groups[0]]["mlp"].numel()
    selected = ln.culture_neurons(scores, others_mean(scores), None, specific_top_rate=rate)
    return selected.specific["mlp"]


def method_sets(stats: ln.ActivationStats) -> tuple[dict[str, ln.NeuronSets], dict[str, object]]:
    """Each method's per-language MLP sets, and the thresholds that made them.

    The attribution budget is LAPE's mean set size (the same total over the languages, before
    the z rule drops units).
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        split = ln.ternary(stats)
    sets = {"lape": ln.lape(stats), "ternary": split.neuron_sets(),
            "plnd": PLND_RESULT.neuron_sets("mlp")}
    budget = round(sum(len(s) for s in sets["lape"].values()) / len(stats.groups))
    sets["attribution"] = attribution_sets(list(stats.groups), budget)
    info = {"ternary_lam": split.lam, "ternary_lam_at_bound": split.lam_at_bound,
            "ternary_warnings": [str(w.message) for w in caught],
            "plnd_doc_frequency": sets["plnd"].meta["doc_frequency"],
            "attribution_budget_per_language": budget,
            "attribution_dropped_by_z": budget * len(stats.groups)
            - sum(len(s) for s in sets["attribution"].values())}
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
    """Share of each small set (LAPE, ternary, attribution) inside the PLND set, and its chance.

    Chance: the expected share if the PLND set were random units with its own count per layer,
    ``sum_l |a_l| |b_l| / d_mlp / |a|``.
    """
    out = {}
    for m in ("lape", "ternary", "attribution"):
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


def plot_iou_full(full: pd.DataFrame) -> plt.Figure:
    """Heatmap of every ``method:language`` set against every other, blocks per method pair."""
    n = len(full) // len(METHODS)
    fig, ax = plt.subplots(figsize=(10, 9), layout="constrained")
    im = ax.imshow(full.to_numpy(), vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(full)), [name.split(":")[1] for name in full.columns], fontsize=6,
                  rotation=90)
    ax.set_yticks(range(len(full)), [name.split(":")[1] for name in full.index], fontsize=6)
    for k, m in enumerate(METHODS):
        ax.text(k * n + n / 2 - 0.5, -1.5, m, ha="center", fontsize=9)
        ax.text(-3.5, k * n + n / 2 - 0.5, m, ha="right", va="center", rotation=90, fontsize=9)
        if k:
            ax.axhline(k * n - 0.5, color="white", lw=1)
            ax.axvline(k * n - 0.5, color="white", lw=1)
    fig.colorbar(im, ax=ax, shrink=0.7, label="IoU (Jaccard)")
    return fig


def plot_layers(counts: pd.DataFrame) -> plt.Figure:
    """Units per layer summed over languages, one panel per method."""
    per_layer = counts.groupby(["method", "layer"])["units"].sum().unstack("method")[METHODS]
    fig, axes = plt.subplots(1, len(METHODS), figsize=(16, 3.5), sharex=True)
    for ax, m in zip(axes, METHODS):
        ax.bar(per_layer.index, per_layer[m], color=f"C{METHODS.index(m)}")
        ax.set_title(f"{m}: {int(per_layer[m].sum())} memberships")
        ax.set_xlabel("layer")
    axes[0].set_ylabel("units, summed over 14 languages")
    fig.tight_layout()
    return fig


def plot_deltas(deltas: dict[str, pd.DataFrame]) -> plt.Figure:
    """The ΔNLL matrix of each method, side by side: its sets, then their random baselines."""
    fig, axes = plt.subplots(1, len(deltas), figsize=(4.2 * len(deltas), 6))
    for ax, (m, delta) in zip(axes, deltas.items()):
        table = delta.drop(index="none")
        top = float(np.abs(table.to_numpy()).max())
        ax.imshow(table.to_numpy(), cmap="RdBu_r", vmin=-top, vmax=top)
        ax.axhline(len(EVAL_LANGUAGES) - 0.5, color="black", lw=1.5)
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


def method_matrix(full: ln.evaluate.PerplexityMatrix,
                  method: str) -> ln.evaluate.PerplexityMatrix:
    """One method's rows of the combined matrix, named as ``perplexity_matrix`` names them."""
    names = {"none": "none", **{f"{method}:{g}": g for g in EVAL_LANGUAGES},
             **{f"random:{method}:{g}": f"random:{g}" for g in EVAL_LANGUAGES}}
    return full.select(names)


def own_vs_random(matrix: ln.evaluate.PerplexityMatrix) -> pd.DataFrame:
    """Per language: own ΔNLL of its set, of the set's random baseline, and set minus baseline.

    All with paired 95% bootstrap intervals; the difference pairs the two rows directly (the
    baseline row plays the part of ``"none"`` in ``ln.nll_delta``).
    """
    ci = ln.nll_delta(matrix, interval=0.95)
    rows = []
    for g in EVAL_LANGUAGES:
        base = f"random:{g}"
        pair = matrix.select({base: "none", g: g})
        excess = ln.nll_delta(pair, interval=0.95).loc[(g, g)]
        row = {"language": g}
        for name, (value, low, high) in {
                "own": ci.loc[(g, g), ["delta", "low", "high"]],
                "random": ci.loc[(base, g), ["delta", "low", "high"]],
                "excess": excess[["delta", "low", "high"]]}.items():
            row.update({name: value, f"{name}_low": low, f"{name}_high": high})
        rows.append(row)
    return pd.DataFrame(rows)


def perplexity_part(stats: ln.ActivationStats, sets: dict[str, ln.NeuronSets],
                    n_lines: int, batch_size: int) -> dict[str, pd.DataFrame]:
    """The perplexity matrix of every method's sets and their random baselines; saves CSVs."""
    model = ln.models.load(NAME, progress=False)
    for m in METHODS:
        sets[m].check_model(model)
    corpus = eval_corpus(model, stats, n_lines)
    print(f"evaluation corpus: {corpus}")
    combined = ln.NeuronSets({f"{m}:{g}": sets[m][g] for m in METHODS for g in EVAL_LANGUAGES})
    start = time.perf_counter()
    full = ln.perplexity_matrix(model, corpus, combined, batch_size=batch_size)
    print(f"perplexity matrix ({len(full.table())} rows) in {time.perf_counter() - start:.0f} s")
    deltas, cis, own = {}, [], []
    for m in METHODS:
        matrix = method_matrix(full, m)
        matrix.table().to_csv(DATA / f"nll_matrix_{m}.csv")
        deltas[m] = ln.nll_delta(matrix)
        deltas[m].to_csv(DATA / f"nll_delta_{m}.csv")
        cis.append(ln.nll_delta(matrix, interval=0.95).reset_index().assign(method=m))
        own.append(own_vs_random(matrix).assign(method=m))
    pd.concat(cis).to_csv(DATA / "nll_delta_ci.csv", index=False)
    pd.concat(own).set_index(["method", "language"]).round(4).to_csv(DATA / "own_vs_random.csv")
    return deltas


def specificity(deltas: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Own ÷ mean of others for each method's sets.

    Not for the random baselines: their changes are mostly noise around zero, so their ratios
    mean nothing; ``own_vs_random.csv`` gives their own change instead.
    """
    table = pd.DataFrame({m: ln.specificity(delta.loc[["none", *EVAL_LANGUAGES]])
                          for m, delta in deltas.items()})
    table.index.name = "language"
    return table


def main() -> None:
    """Compute and save everything."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-lines", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--skip-perplexity", action="store_true")
    args = parser.parse_args()
    DATA.mkdir(parents=True, exist_ok=True)
    IMG.mkdir(parents=True, exist_ok=True)
    stats = ln.real_stats.load(NAME)
    sets, info = method_sets(stats)
    print(info)
    sizes = pd.DataFrame({m: sets[m].table()["total"] for m in METHODS})
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
    plot_iou_full(tables["iou_full"]).savefig(IMG / "method_comparison_iou_full.png", dpi=80,
                                              bbox_inches="tight")
    plot_layers(counts).savefig(IMG / "method_comparison_layers.png", dpi=80,
                                bbox_inches="tight")
    if args.skip_perplexity:      # reuse the saved matrices, if any
        saved = {m: DATA / f"nll_delta_{m}.csv" for m in METHODS}
        if not all(f.exists() for f in saved.values()):
            return
        deltas = {m: pd.read_csv(f, index_col=0) for m, f in saved.items()}
    else:
        deltas = perplexity_part(stats, sets, args.n_lines, args.batch_size)
        print(pd.read_csv(DATA / "own_vs_random.csv", index_col=[0, 1]).round(2).to_string())
    plot_deltas(deltas).savefig(IMG / "method_comparison_nll.png", dpi=80, bbox_inches="tight")
    ratios = specificity(deltas)
    ratios.to_csv(DATA / "specificity.csv")
    print(ratios.round(2))


if __name__ == "__main__":
    main()
