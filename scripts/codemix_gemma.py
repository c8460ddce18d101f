"""Code-mixed input on Gemma 3 270M: which language do its active units look like.

    LENSNEURONS_CACHE=/tmp/lncache .venv/bin/python scripts/codemix_gemma.py
    .venv/bin/python scripts/codemix_gemma.py --analyse-only    # reuse the saved statistics
    (--skip-coverage: keep docs/data/codemix/coverage.csv, about 2 minutes of CPU to remake)

1. Lexicons between the sample's languages (written sample + gettext catalogs); their coverage of
   the sample, per pair, in docs/data/codemix/coverage.csv.
2. Every second sample sentence (80) of each base language (BASES) mixed with each partner
   language (PARTNERS) at RATES; the achieved rates in docs/data/codemix/rates.csv.
3. MLP statistics (activity = gate pre-activation > 0) of every mixed condition, of the pure
   languages on the same parallel sentences and, as a control, of the pure languages on the
   other 80 sentences; counts cached under $LENSNEURONS_CACHE/codemix_stats (groups whose texts
   are unchanged are not collected again). Rate 0 is the pure base language itself.
4. Per layer, the IoU of each mixed condition's active set with each pure language's, by three
   rules (90% coverage; 90% coverage minus the units every set holds; the top 100 units by
   activation probability): docs/data/codemix/iou_*.csv and docs/img/codemix_*.png.
"""

import argparse
import os
import time
from dataclasses import replace
from pathlib import Path

import matplotlib
import pandas as pd
import torch

import lensneurons as ln
from lensneurons.corpora import (
    SAMPLE_LANGUAGES,
    build_lexicon,
    code_mix,
    coverage,
    load_sample,
    mixed_group,
)
from lensneurons.corpora.gettext import texts_digest
from lensneurons.detect import plot_specialisation, specialisation_iou

matplotlib.use("Agg")

MODEL = "gemma-3-270m"
BASES, PARTNERS = ("fr", "de"), ("en", "es")
RATES = (0.25, 0.5, 0.75, 1.0)
SEED, BATCH, TOP_K, BANDS, EVERY = 0, 16, 100, 3, 2
OTHER = "/other"  # suffix of the control groups: the same language on the other sentences
RULES = {"coverage": {}, "coverage_minus_shared": {"remove_shared": True},
         "top_k": {"rule": "top_k", "k": TOP_K}}
ROOT = Path(__file__).resolve().parents[1]
DATA, IMG = ROOT / "docs" / "data" / "codemix", ROOT / "docs" / "img"
CACHE = Path(os.environ.get("LENSNEURONS_CACHE", "/tmp/lncache")) / "codemix_stats"


def coverage_table() -> pd.DataFrame:
    """Coverage of the sample by every lexicon between its languages."""
    texts = load_sample()
    rows = []
    for base in SAMPLE_LANGUAGES:
        for mixed in SAMPLE_LANGUAGES:
            if base == mixed:
                continue
            lex = build_lexicon(base, mixed)
            cov = coverage(texts[base], lex)
            sources = lex.table()["source"]
            rows.append({"base": base, "mixed": mixed, "tokens": round(cov.tokens, 3),
                         "types": round(cov.types, 3), "entries": len(lex),
                         "from_sample": int(sources.str.startswith("sample").sum()),
                         "from_gettext": int((sources == "gettext").sum())})
    return pd.DataFrame(rows)


def mixed_texts() -> tuple[dict[str, list[str]], pd.DataFrame]:
    """Pure and mixed texts per group, and the rates reached."""
    full = load_sample([*BASES, *PARTNERS])
    sample = {lang: lines[::EVERY] for lang, lines in full.items()}
    texts = {lang: sample[lang] for lang in dict.fromkeys([*BASES, *PARTNERS])}
    texts.update({f"{lang}{OTHER}": full[lang][1::EVERY] for lang in sample})
    rows = []
    for base in BASES:
        for partner in PARTNERS:
            lex = build_lexicon(base, partner)
            ceiling = coverage(sample[base], lex).tokens
            for rate in RATES:
                result = code_mix(sample[base], lex, rate, seed=SEED)
                texts[mixed_group(base, partner, rate)] = result.texts
                rows.append({"base": base, "partner": partner, "requested": rate,
                             "achieved": round(result.rate, 3), "coverage": round(ceiling, 3),
                             "example": result.texts[0]})
    return texts, pd.DataFrame(rows)


def collect_stats(texts: dict[str, list[str]]) -> ln.ActivationStats:
    """Counts of every group, collected in one pass and cached (sums dropped).

    Groups already in the cache with the same texts (by digest) are not collected again.
    """
    digests = {g: texts_digest({g: t}) for g, t in texts.items()}
    cached = ln.ActivationStats.load(CACHE) if (CACHE / "stats.json").exists() else None
    known = cached.meta.get("digests", {}) if cached is not None else {}
    todo = {g: t for g, t in texts.items() if known.get(g) != digests[g]}
    if not todo:
        return cached.select(list(texts))
    start = time.monotonic()
    model = ln.models.load(MODEL, dtype=torch.float32)
    stats = ln.collect(model, ln.Corpus.from_texts(todo), batch_size=BATCH)
    for name in ("sum", "sum_sq", "max"):
        setattr(stats, name, None)
    n = int(stats.n_tokens.sum())
    seconds = time.monotonic() - start
    print(f"{stats}\n{n} tokens in {seconds:.0f} s ({n / seconds:.0f} tokens/s, load included)")
    if cached is not None:
        stats = cached.select([g for g in cached.groups if g not in todo]) + stats
    stats.meta["digests"] = {g: d for g, d in {**known, **digests}.items() if g in stats.groups}
    stats.save(CACHE, overwrite=True)
    return stats.select(list(texts))


def split_stats(
    stats: ln.ActivationStats,
) -> tuple[ln.ActivationStats, ln.ActivationStats, ln.ActivationStats]:
    """(mixed conditions with rate 0 = the pure base, pure languages, controls)."""
    pure = stats.select(list(dict.fromkeys([*BASES, *PARTNERS])))
    mixed = stats.select([g for g in stats.groups if "@" in g])
    for base in BASES:
        for partner in PARTNERS:
            mixed = mixed + replace(stats.select([base]),
                                    groups=[mixed_group(base, partner, 0)])
    return mixed, pure, stats.select([g for g in stats.groups if g.endswith(OTHER)])


def bands_of(layer: pd.Series, n_layers: int) -> pd.Series:
    """``"0-5"``, ``"6-11"``... for each layer, as an ordered categorical."""
    size = -(-n_layers // BANDS)
    labels = [f"{b * size}-{min(b * size + size, n_layers) - 1}" for b in range(BANDS)]
    return pd.Categorical([labels[i] for i in layer // size], categories=labels, ordered=True)


def band_summary(table: pd.DataFrame, n_layers: int) -> pd.DataFrame:
    """Mean IoU per mix, rate, band of layers and pure language."""
    parts = table["mixed"].str.extract(r"(?P<base>.+)\+(?P<partner>.+)@(?P<rate>.+)")
    data = pd.concat([table, parts], axis=1)
    data["rate"] = data["rate"].astype(float)
    data["band"] = bands_of(data["layer"], n_layers)
    return data.pivot_table(index=["base", "partner", "band", "rate"], columns="pure",
                            values="iou", aggfunc="mean", observed=True).round(3)


def control_summary(controls: ln.ActivationStats, pure: ln.ActivationStats,
                    options: dict, n_layers: int) -> pd.DataFrame:
    """Mean IoU per band between each language on the other sentences and each pure set."""
    table = specialisation_iou(controls, pure, **options)
    table["band"] = bands_of(table["layer"], n_layers)
    return table.pivot_table(index=["mixed", "band"], columns="pure", values="iou",
                             aggfunc="mean", observed=True).round(3)


def analyse(stats: ln.ActivationStats, achieved: dict[str, float]) -> None:
    """IoU tables and figures by each rule; figures against the achieved rates."""
    mixed, pure, controls = split_stats(stats)
    n_layers = stats.shape[0]
    pd.set_option("display.width", 200)
    for name, options in RULES.items():
        table = specialisation_iou(mixed, pure, **options)
        table.round(4).to_csv(DATA / f"iou_{name}.csv", index=False)
        summary = band_summary(table, n_layers)
        summary.to_csv(DATA / f"iou_{name}_bands.csv")
        control = control_summary(controls, pure, options, n_layers)
        control.to_csv(DATA / f"iou_{name}_control.csv")
        print(f"\n== {name}: mean set size {table['pure_size'].mean():.0f} of "
              f"{stats.shape[1]} units per layer\n{summary.to_string()}\n"
              f"control, the same languages on the other 80 sentences:\n{control.to_string()}")
        fig = plot_specialisation(table, bands=BANDS, rates=achieved)
        fig.suptitle(f"Gemma 3 270M, code-mixed sample: IoU of active sets ({name})", y=1.02)
        fig.savefig(IMG / f"codemix_iou_{name}.png", dpi=100, bbox_inches="tight")
        print(f"figure: {IMG / f'codemix_iou_{name}.png'}")


parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--analyse-only", action="store_true")
parser.add_argument("--skip-coverage", action="store_true")
args = parser.parse_args()
DATA.mkdir(parents=True, exist_ok=True)
texts, rates = mixed_texts()
rates.to_csv(DATA / "rates.csv", index=False)
print(rates.drop(columns="example").to_string())
if not (args.analyse_only or args.skip_coverage):
    cov = coverage_table()
    cov.to_csv(DATA / "coverage.csv", index=False)
    print(cov.pivot(index="base", columns="mixed", values="tokens").to_string())
achieved = {mixed_group(r.base, r.partner, r.requested): r.achieved for r in rates.itertuples()}
analyse(ln.ActivationStats.load(CACHE).select(list(texts)) if args.analyse_only
        else collect_stats(texts), achieved)
