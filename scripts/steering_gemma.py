r"""Steer Gemma 3 270M into other languages and measure it (run once; writes docs/data/steering/).

    LENSNEURONS_CACHE=/tmp/lncache .venv/bin/python scripts/steering_gemma.py

An exploratory survey of methods and targets on few prompts; the claims of the docs rest on the
protocol of ``scripts/steering_curve_gemma.py`` (100 questions per point, greedy and sampled).
Sets: LAPE on the shipped statistics (top 1%). Prompts: the first twelve of the package's
everyday questions (``ln.corpora.forcing_prompts(language, n=12)``) in English (forcing, sweeps)
and in French (fallback; ``--fallback fr de`` adds German), answers cut at
``ln.corpora.STOP``. Writes:

* ``sweep_additive.csv``: per target language and alpha, forcing rate (Wilson 95%), LSS (base
  English, the shipped facts), mean shift and held-out NLL of English and the target;
* ``forcing.csv``: forcing rate per target and method (additive at the alpha chosen by LSS,
  replacement, diffmean, source-English deactivation plus addition, p_max amplification);
* ``fallback.csv``: output-language shares as French / German units are switched off by layer
  groups and by entropy quantiles;
* ``examples.csv``: the first continuations of each condition;
* figures ``docs/img/steering_*.png``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from einops import rearrange  # noqa: E402

import lensneurons as ln  # noqa: E402
from lensneurons.detect._common import entropy  # noqa: E402
from lensneurons.evaluate import (  # noqa: E402
    STOP,
    amplify_to,
    forcing_prompts,
    layer_steps,
    quantile_steps,
    shift_items,
)
from lensneurons.subjects import real_stats  # noqa: E402

NAME = "gemma-3-270m"
#: The identifier judges among the languages of the shipped statistics: short continuations are
#: then not taken for a close relative the model never saw (Galician for Spanish, ...).
LANGUAGES = list(real_stats.LANGUAGES)

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--out", default="docs/data/steering")
parser.add_argument("--img", default="docs/img")
parser.add_argument("--max-new-tokens", type=int, default=32)
parser.add_argument("--prompts", type=int, default=12,
                    help="questions per language (12: the exploratory run shipped; the claims of "
                         "the docs come from scripts/steering_curve_gemma.py on 100)")
parser.add_argument("--nll-lines", type=int, default=15)
parser.add_argument("--targets", nargs="+", default=["de", "fr", "es", "ru", "zh"])
parser.add_argument("--alphas", nargs="+", type=float, default=[1.0, 2.0, 4.0, 8.0])
parser.add_argument("--fallback", nargs="+", default=["fr"], help="languages switched off")
parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
parser.add_argument("--reuse", action="store_true",
                    help="read sweep_additive.csv and forcing.csv from --out instead of measuring "
                         "again; regenerate only the three example continuations per condition "
                         "(greedy and batch-independent, so the same as in the full run)")
args = parser.parse_args()
if args.threads:
    torch.set_num_threads(args.threads)
TARGETS, ALPHAS = args.targets, args.alphas
out, img = Path(args.out), Path(args.img)
out.mkdir(parents=True, exist_ok=True)


start = time.monotonic()
model = ln.models.load(NAME, dtype=torch.float32, progress=False)
stats = real_stats.load(NAME, model=model)
sets = ln.lape(stats)
#: The forcing test judges the answer only: cut before the model asks itself the next question.
gen = dict(max_new_tokens=args.max_new_tokens, languages=LANGUAGES, stop=STOP)
english = forcing_prompts("en", n=args.prompts)
examples = []


def keep_examples(condition: str, target: str, texts: list[str]) -> None:
    """Keep the first three continuations of a condition for examples.csv."""
    for prompt, text in list(zip(english, texts, strict=False))[:3]:
        examples.append({"condition": condition, "target": target, "prompt": prompt,
                         "generation": text})


def examples_of(condition: str, target: str, hooks: list) -> None:
    """Generate the first three continuations of a condition again (for ``--reuse``)."""
    forced = ln.forcing_rate(model, english[:3], hooks, target, **gen)
    keep_examples(condition, target, forced.generations)


def additive(target: str, alpha: float) -> list:
    """Gurgurov et al.'s additive arithmetic into ``target``."""
    return ln.steer(sets, stats, None, target, alpha=alpha)


# --- sweeps of additive steering, one per target ---------------------------------------------
reuse = args.reuse and (out / "sweep_additive.csv").exists() and (out / "forcing.csv").exists()
sweeps = []
for target in TARGETS if not reuse else []:
    corpus = real_stats.heldout(stats, ["en", target], n_lines=args.nll_lines)
    result = ln.sweep(model, lambda a, t=target: additive(t, a), ALPHAS, prompts=english,
                      target=target, lss_items=shift_items("en", target), nll_corpus=corpus,
                      progress=False, **gen)
    table = result.table().rename(columns={f"nll:{target}": "nll:target"}).reset_index()
    base = {k.replace(f"nll:{target}", "nll:target"): v for k, v in result.baseline.items()}
    table = pd.concat([pd.DataFrame([{"value": 0.0, **base}]), table], ignore_index=True)
    table.insert(0, "target", target)
    table["best_by_lss"] = table["value"] == result.best()
    table["smallest_reaching_50"] = table["value"] == result.smallest_reaching(0.5)
    sweeps.append(table)
    keep_examples(f"additive alpha={result.best()}", target, result.generations[result.best()])
    print(f"[{time.monotonic() - start:6.0f}s] sweep {target}: best alpha {result.best()}, "
          f"rates {result.table()['forcing_rate'].round(2).tolist()}", flush=True)
if reuse:
    sweep_table = pd.read_csv(out / "sweep_additive.csv")
    for target, alpha in sweep_table[sweep_table["best_by_lss"]][["target", "value"]].values:
        examples_of(f"additive alpha={alpha}", target, additive(target, alpha))
else:
    sweep_table = pd.concat(sweeps, ignore_index=True)
    sweep_table.to_csv(out / "sweep_additive.csv", index=False, float_format="%.4f")

# --- forcing rate per method ---------------------------------------------------------------------
texts = {t: real_stats.texts()[0][t][:100] for t in TARGETS}  # training lines (never held out)
seq_stats = ln.collect(model, ln.Corpus.from_texts(texts), sequence_stats=True, progress=False)
best = sweep_table[sweep_table["best_by_lss"]].set_index("target")["value"]
methods = {
    "none": lambda t: [],
    "additive (alpha by LSS)": lambda t: additive(t, float(best[t])),
    "replacement": lambda t: ln.steer(sets, stats, None, t, method="replacement"),
    "diffmean": lambda t: ln.steer(sets, stats, None, t, method="diffmean",
                                   alpha=float(best[t])),
    "deactivate en + additive": lambda t: ln.steer(sets, stats, "en", t, alpha=float(best[t])),
    "amplify p_max": lambda t: amplify_to(sets, seq_stats, t, "p_max", model=model),
}
rows = []
for method, make in methods.items() if not reuse else []:
    for target in TARGETS:
        forced = ln.forcing_rate(model, english, make(target), target, **gen)
        rows.append({"method": method, "target": target, "rate": forced.rate,
                     "low": forced.low, "high": forced.high, "n": forced.n,
                     "generate_s": forced.seconds["generate"],
                     "identify_s": forced.seconds["identify"]})
        keep_examples(method, target, forced.generations)
    print(f"[{time.monotonic() - start:6.0f}s] {method}: "
          f"{[round(r['rate'], 2) for r in rows[-len(TARGETS):]]}", flush=True)
if reuse:
    forcing = pd.read_csv(out / "forcing.csv")
    for method, make in methods.items():
        for target in TARGETS:
            examples_of(method, target, make(target))
else:
    forcing = pd.DataFrame(rows)
    forcing.to_csv(out / "forcing.csv", index=False, float_format="%.4f")

# --- fallback -----------------------------------------------------------------------------------
scores = -entropy(rearrange(stats.probs(), "group layer unit -> layer unit group"))
frames = []
for lang in args.fallback:
    plans = {"layers": layer_steps(sets[lang], n_groups=4),
             "entropy quantiles": quantile_steps(sets[lang], scores)}
    for by, steps in plans.items():
        result = ln.fallback(model, forcing_prompts(lang, n=args.prompts), steps,
                             progress=False, **gen)
        shares = result.shares.assign(n_units=result.n_units).reset_index(names="step")
        shares.insert(0, "by", by)
        shares.insert(0, "language", lang)
        frames.append(shares)
        print(f"[{time.monotonic() - start:6.0f}s] fallback {lang} by {by}: "
              f"{result.dominant().tolist()}", flush=True)
fallback = pd.concat(frames, ignore_index=True).fillna(0.0)
fallback.to_csv(out / "fallback.csv", index=False, float_format="%.4f")
pd.DataFrame(examples).to_csv(out / "examples.csv", index=False)

# --- figures ------------------------------------------------------------------------------------
pivot = forcing.pivot(index="method", columns="target", values="rate").loc[list(methods)]
ax = pivot.T.plot.bar(figsize=(8, 3.5), width=0.8)
ax.set_ylabel("forcing rate")
ax.set_ylim(0, 1)
ax.set_title("Gemma 3 270M: English prompts forced into each language (LAPE sets)")
ax.legend(fontsize="small", ncol=2)
plt.tight_layout()
plt.savefig(img / "steering_forcing.png", dpi=120)
plt.close()

fig, axes = plt.subplots(1, len(TARGETS), figsize=(16, 3), sharey=True)
for ax, (target, table) in zip(axes, sweep_table.groupby("target", sort=False), strict=True):
    ax.plot(table["value"], table["forcing_rate"], "o-", label="forcing rate")
    ax.fill_between(table["value"], table["forcing_low"], table["forcing_high"], alpha=0.2)
    ax.plot(table["value"], table["lss"], "s--", label="LSS")
    ax.set_xscale("symlog", linthresh=0.5)
    ax.set_title(target)
    ax.set_xlabel("alpha")
axes[0].set_ylabel("share")
axes[0].legend(fontsize="small")
plt.tight_layout()
plt.savefig(img / "steering_sweeps.png", dpi=120)
plt.close()

langs = [c for c in fallback.columns if c not in ("language", "by", "step", "n_units")]
n_plots = fallback.groupby(["language", "by"]).ngroups
fig, axes = plt.subplots(1, n_plots, figsize=(4 * n_plots, 3.2), sharey=True)
for ax, ((lang, by), table) in zip(axes, fallback.groupby(["language", "by"], sort=False),
                                  strict=True):
    shown = [c for c in langs if table[c].max() > 0.05]
    rest = table[[c for c in langs if c not in shown]].sum(axis=1)
    ax.stackplot(range(len(table)), *[table[c] for c in shown], rest,
                 labels=[*shown, "other"], alpha=0.85)
    ax.set_xticks(range(len(table)), [f"{s}\n({n})" for s, n in
                                      zip(table["step"], table["n_units"], strict=True)],
                  fontsize=7)
    ax.set_title(f"{lang} prompts, {lang} units off by {by}", fontsize=9)
    ax.legend(fontsize=7, loc="lower left")
axes[0].set_ylabel("share of answers")
plt.tight_layout()
plt.savefig(img / "steering_fallback.png", dpi=120)
plt.close()
print(f"done in {time.monotonic() - start:.0f}s")
