r"""Forcing-rate curves on Gemma 3 270M under the package's protocol (writes docs/data/steering/).

    LENSNEURONS_CACHE=/tmp/lncache .venv/bin/python scripts/steering_curve_gemma.py

The protocol behind every steering claim of the docs: the package's English questions
(``ln.corpora.forcing_prompts("en", n=100)``), answers cut at ``ln.corpora.STOP``, Gurgurov
et al.'s additive arithmetic on LAPE sets (top 1% of the shipped statistics) at each strength,
greedy decoding and sampling (temperature 1, several seeds), each rate with its Wilson 95%
interval. Writes ``forcing_curve.csv`` (one row per target, strength and decoding),
``forcing_curve.json`` (the protocol and the environment that made it) and
``docs/img/steering_curve.png``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from importlib.metadata import version
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

import lensneurons as ln  # noqa: E402
from lensneurons.evaluate import STOP, check_kv_cache, forcing_prompts, wilson_interval  # noqa: E402
from lensneurons.subjects import real_stats  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--out", default="docs/data/steering")
parser.add_argument("--img", default="docs/img")
parser.add_argument("--prompts", type=int, default=100)
parser.add_argument("--max-new-tokens", type=int, default=16)
parser.add_argument("--targets", nargs="+", default=["fr", "de"])
parser.add_argument("--alphas", nargs="+", type=float, default=[0.0, 1.0, 1.5, 2.0, 3.0, 4.0])
parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
parser.add_argument("--sampled-alphas", nargs="+", type=float, default=[0.0, 2.0, 4.0])
parser.add_argument("--plot-only", action="store_true",
                    help="draw docs/img/steering_curve.png from forcing_curve.csv and stop")
parser.add_argument("--append", action="store_true",
                    help="keep the runs already in forcing_curve.csv, measure only missing ones")
args = parser.parse_args()
out, img = Path(args.out), Path(args.img)

def plot(table: pd.DataFrame) -> None:
    """The greedy curve with its band; each sampled seed and the pooled seeds with error bars."""
    targets = list(dict.fromkeys(table["target"]))
    fig, axes = plt.subplots(1, len(targets), figsize=(5 * len(targets), 3.3), sharey=True)
    for ax, target in zip(axes, targets, strict=True):
        part = table[table["target"] == target]
        greedy = part[part["decoding"] == "greedy"]
        ax.plot(greedy["alpha"], greedy["rate"], "o-", label="greedy")
        ax.fill_between(greedy["alpha"], greedy["low"], greedy["high"], alpha=0.2)
        seeds = part[part["decoding"] == "sampled"]
        ax.plot(seeds["alpha"] + 0.06, seeds["rate"], ".", color="C1", alpha=0.6,
                label="sampled, one seed")
        pooled = part[part["decoding"] == "sampled (pooled)"]
        ax.errorbar(pooled["alpha"] + 0.12, pooled["rate"],
                    yerr=[pooled["rate"] - pooled["low"], pooled["high"] - pooled["rate"]],
                    fmt="s", color="C1", capsize=3, label="sampled, 3 seeds pooled")
        n = int(greedy["n"].max())
        ax.set_title(f"English questions → {target} (n={n} per point)")
        ax.set_xlabel("alpha (additive strength)")
        ax.set_ylim(0, 1.02)
    axes[0].set_ylabel("forcing rate (Wilson 95%)")
    axes[0].legend(fontsize="small", loc="lower right")
    fig.tight_layout()
    fig.savefig(img / "steering_curve.png", dpi=110)


if args.plot_only:
    plot(pd.read_csv(out / "forcing_curve.csv", dtype={"seed": str}))
    raise SystemExit(0)

start = time.monotonic()
model = ln.models.load("gemma-3-270m", dtype=torch.float32, progress=False)
stats = real_stats.load("gemma-3-270m", model=model)
sets = ln.lape(stats)
prompts = forcing_prompts("en", n=args.prompts)
protocol = dict(max_new_tokens=args.max_new_tokens, languages=list(real_stats.LANGUAGES),
                stop=STOP)
rows = []
done: set[tuple[str, float, str]] = set()
if args.append and (out / "forcing_curve.csv").exists():
    kept = pd.read_csv(out / "forcing_curve.csv", dtype={"seed": str}, keep_default_na=False)
    kept = kept[kept["decoding"] != "sampled (pooled)"]
    for column in ("alpha", "n", "hits", "rate", "low", "high", "english"):
        kept[column] = pd.to_numeric(kept[column])
    rows = kept.to_dict("records")
    done = {(r["target"], float(r["alpha"]), str(r["seed"])) for r in rows}
unsteered: dict[object, ln.evaluate.ForcingResult] = {}  # alpha 0 generates the same for all
for target in args.targets:
    for alpha in args.alphas:
        hooks = ln.steer(sets, stats, None, target, alpha=alpha) if alpha else []
        runs = [("greedy", None)]
        if alpha in args.sampled_alphas:
            runs += [("sampled", seed) for seed in args.seeds]
        for decoding, seed in runs:
            sampled = seed is not None
            if (target, alpha, "" if seed is None else str(seed)) in done:
                continue
            if alpha or seed not in unsteered:
                result = ln.forcing_rate(model, prompts, hooks, target, do_sample=sampled,
                                         seed=seed or 0, **protocol)
                if not alpha:
                    unsteered[seed] = result
            languages = (unsteered[seed] if not alpha else result).languages
            hits = sum(language == target for language in languages)
            low, high = wilson_interval(hits, len(languages))
            rows.append({"target": target, "alpha": alpha, "decoding": decoding,
                         "seed": "" if seed is None else seed, "n": len(languages),
                         "hits": hits, "rate": hits / len(languages), "low": low, "high": high,
                         "english": languages.count("en") / len(languages),
                         "cache": result.decoding})
            rate = hits / len(languages)
            print(f"[{time.monotonic() - start:6.0f}s] {target} alpha={alpha} {decoding} "
                  f"{seed}: {rate:.2f} [{low:.2f}, {high:.2f}]", flush=True)
table = pd.DataFrame(rows)
table["seed"] = table["seed"].astype(str)  # "" (greedy) sorts first
table = table.sort_values(["target", "alpha", "seed"], kind="stable")
rows = table.to_dict("records")
# Sampled seeds pooled per condition (n = seeds x prompts), with the Wilson interval of the pool.
pooled = (table[table["decoding"] == "sampled"].groupby(["target", "alpha"], as_index=False)
          [["n", "hits"]].sum())
for row in pooled.itertuples():
    low, high = wilson_interval(int(row.hits), int(row.n))
    rows.append({"target": row.target, "alpha": row.alpha, "decoding": "sampled (pooled)",
                 "seed": "all", "n": row.n, "hits": row.hits, "rate": row.hits / row.n,
                 "low": low, "high": high, "english": float("nan"), "cache": rows[0]["cache"]})
table = pd.DataFrame(rows)
table.to_csv(out / "forcing_curve.csv", index=False, float_format="%.4f")
environment = {name: version(name) for name in ("lensneurons", "torch", "transformers",
                                                "transformer-lens", "numpy")}
environment.update(torch_threads=torch.get_num_threads(), cpu=platform.processor() or
                   platform.machine(), cpu_capability=torch.backends.cpu.get_cpu_capability(),
                   dtype="float32", device="cpu", kv_cache=check_kv_cache(model).mode)
(out / "forcing_curve.json").write_text(json.dumps({
    "protocol": {**{k: v for k, v in vars(args).items() if k not in ("out", "img", "append")},
                 "prompts": f"forcing_prompts('en', n={args.prompts})",
                 "stop": list(STOP), "sets": "ln.lape(real_stats.load('gemma-3-270m'))",
                 "hooks": "ln.steer(sets, stats, None, target, alpha=alpha)",
                 "sampling": "temperature 1 (model.generate's default), seed per run"},
    "environment": environment,
    "seconds_of_last_run": round(time.monotonic() - start)}, indent=2) + "\n")

plot(table)
print(f"done in {time.monotonic() - start:.0f}s")
