r"""Language neurons against residual directions on Gemma 3 270M (writes docs/data/directions/).

    LENSNEURONS_CACHE=/tmp/lncache .venv/bin/python scripts/neurons_vs_directions_gemma.py

Five ways to make the model answer English questions in a target language, measured with the same
metrics on the same prompts:

* ``lape additive``: Gurgurov et al.'s arithmetic on LAPE sets, ``ln.steer(sets, stats, None, t,
  alpha=a)``;
* ``lape p_max``: Rahmanisa et al.'s amplification, the units set to their largest per-sentence
  mean (no strength: one point);
* ``neuron diffmean``: ``ln.steer(..., method="diffmean", alpha=a)`` on the same LAPE units;
* ``resid diffmean``: the residual difference-in-means direction of the target against the 13
  other languages, ``ln.add_direction(d, s, layer=L)`` (``s`` in RMS norms of the stream);
* ``resid pca``: the principal component separating the target's sentences from the others'.

Protocol (the steering protocol of docs/steering.md): the package's English questions, the first
``--prompts`` (100) for every measurement and the last ``--calibration`` (20) for choices only;
greedy, ``--max-new-tokens`` tokens cut at the next question, judged among the 14 studied
languages; Wilson 95% intervals. The *joint* score asks the shipped facts (premises in four
languages other than the target, 5 new tokens): the answer is in the target language **and**
correct when the continuation holds the target's one-word answer. The cost is the mean NLL of
15 held-out English lines under the hooks. The residual methods' layer is chosen by a sweep over
every layer on the calibration questions (``layer_sweep.csv``); each method's strength by one
rule on the calibration questions: the smallest strength of its grid whose forcing rate reaches
0.5, else the strength with the highest rate.

Every phase is saved as it finishes and a rerun skips what is saved (``--fresh`` starts over).
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
from lensneurons.corpora import STOP, forcing_prompts  # noqa: E402
from lensneurons.evaluate import check_kv_cache, generate, wilson_interval  # noqa: E402
from lensneurons.evaluate.shift import _facts  # noqa: E402
from lensneurons.intervene import amplify_to  # noqa: E402
from lensneurons.subjects import real_stats  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--out", default="docs/data/directions")
parser.add_argument("--img", default="docs/img")
parser.add_argument("--targets", nargs="+", default=["de", "fr", "es", "ru", "zh"])
parser.add_argument("--prompts", type=int, default=100)
parser.add_argument("--calibration", type=int, default=20)
parser.add_argument("--max-new-tokens", type=int, default=10)
parser.add_argument("--train-lines", type=int, default=150,
                    help="training lines per language for the residual statistics")
parser.add_argument("--direction-targets", nargs="+", default=["de", "fr", "es", "ru", "zh"])
parser.add_argument("--alphas", nargs="+", type=float, default=[1.0, 2.0, 3.0],
                    help="strength grid of the neuron methods")
parser.add_argument("--strengths", nargs="+", type=float, default=[0.1, 0.2, 0.3, 0.5],
                    help="strength grid of the residual methods (RMS norms)")
parser.add_argument("--sweep-strengths", nargs="+", type=float, default=[0.1, 0.5])
parser.add_argument("--layer", type=int, default=None,
                    help="the residual methods' layer (default: the sweep's best)")
parser.add_argument("--sweep-layers", nargs="+", type=int, default=[0, 3, 6, 9, 12, 15, 17])
parser.add_argument("--sweep-targets", nargs="+", default=["fr", "zh", "de"])
parser.add_argument("--threads", type=int, default=1)
parser.add_argument("--tag", default="a", help="names this process's files (several may run)")
parser.add_argument("--fresh", action="store_true")
parser.add_argument("--sweep-only", action="store_true", help="stop after the layer sweep")
parser.add_argument("--methods", nargs="+", default=None, help="measure only these methods")
parser.add_argument("--plot-only", action="store_true")
args = parser.parse_args()
out, img = Path(args.out), Path(args.img)
out.mkdir(parents=True, exist_ok=True)
torch.set_num_threads(args.threads)
METHODS = ["lape additive", "lape p_max", "neuron diffmean", "resid diffmean", "resid pca"]
PREMISES = ["en", "de", "fr", "es", "it", "pt"]
start = time.monotonic()


def log(message: str) -> None:
    """Print with the seconds since the start."""
    print(f"[{time.monotonic() - start:6.0f}s] {message}", flush=True)


def labelled(table: pd.DataFrame) -> pd.DataFrame:
    """The residual methods named with their layer ("resid diffmean @ 17")."""
    table = table.copy()
    if "layer" in table:
        resid = table["method"].str.startswith("resid")
        table.loc[resid, "method"] = [f"{m} @ {int(layer)}" for m, layer in
                                      zip(table.loc[resid, "method"], table.loc[resid, "layer"])]
    return table


def plot(curves: pd.DataFrame, calibration: pd.DataFrame, sweep: pd.DataFrame) -> None:
    """Per target: forcing and joint score against the English NLL cost, per method.

    Lines: the calibration grid (20 questions a point); large markers with Wilson 95% bars: the
    strength the rule chose, measured on the 100 evaluation questions (forcing) and the facts
    (joint).
    """
    curves, calibration = labelled(curves), labelled(calibration)
    methods = [m for m in dict.fromkeys([*METHODS, *sorted(set(curves["method"]))])
               if m in set(curves["method"])]
    targets = [t for t in ["de", "fr", "es", "ru", "zh"] if t in set(curves["target"])]
    fig, axes = plt.subplots(2, len(targets), figsize=(3.3 * len(targets), 6.2), sharey=True,
                             squeeze=False)
    for col, target in enumerate(targets):
        part = curves[curves["target"] == target]
        base = float(part.loc[part["method"] == "none", "nll_en"].iloc[0])
        for row, metric in enumerate(("forcing", "joint")):
            ax = axes[row, col]
            for i, method in enumerate(["none", *[m for m in methods if m != "none"]]):
                point = part[part["method"] == method]
                if row == 0 and method != "none":
                    line = calibration[(calibration["target"] == target)
                                       & (calibration["method"] == method)]
                    line = line.sort_values("strength")
                    ax.plot(line["nll_en"] - base, line["forcing"], ":", marker=".",
                            color=f"C{i}", alpha=0.7)
                if len(point):
                    ax.errorbar(point["nll_en"] - base, point[metric],
                                yerr=[point[metric] - point[f"{metric}_low"],
                                      point[f"{metric}_high"] - point[metric]],
                                fmt="o", ms=6, capsize=3, color=f"C{i}", label=method)
            ax.set_ylim(-0.02, 1.02)
            if row == 0:
                ax.set_title(f"English → {target}")
            else:
                ax.set_xlabel("Δ NLL on held-out English (nats)")
    axes[0, 0].set_ylabel("forcing rate")
    axes[1, 0].set_ylabel("joint: in the target\nlanguage and correct")
    handles = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    fig.legend(handles.values(), handles.keys(), fontsize="x-small", loc="lower center",
               ncols=len(handles), bbox_to_anchor=(0.5, 0.0))
    fig.suptitle("Neurons vs residual directions on Gemma 3 270M: dotted, the calibration grid "
                 "(20 questions); markers, the chosen strength (100 questions; facts)",
                 fontsize="small")
    fig.tight_layout()
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(img / "neurons_vs_directions.png", dpi=110)
    plt.close(fig)
    strengths = sorted(set(sweep["strength"]))
    fig, axes = plt.subplots(1, len(strengths), figsize=(4.6 * len(strengths), 3.4),
                             sharey=True, squeeze=False)
    for ax, strength in zip(axes[0], strengths):
        part_s = sweep[sweep["strength"] == strength]
        for i, (target, part) in enumerate(part_s.groupby("target")):
            ax.errorbar(part["layer"], part["forcing"],
                        yerr=[part["forcing"] - part["forcing_low"],
                              part["forcing_high"] - part["forcing"]],
                        fmt="o-", capsize=2, color=f"C{i}", label=f"into {target}")
        ax.set_xlabel("layer the direction is added after")
        ax.set_title(f"residual diffmean, strength {strength:g} RMS")
        ax.set_ylim(-0.02, 1.02)
    axes[0, 0].set_ylabel("forcing rate (20 questions, Wilson 95%)")
    axes[0, -1].legend(fontsize="x-small")
    fig.tight_layout()
    fig.savefig(img / "direction_layer_sweep.png", dpi=110)
    plt.close(fig)


if args.plot_only:
    plot(pd.concat([pd.read_csv(p) for p in sorted(out.glob("curves-*.csv"))]),
         pd.concat([pd.read_csv(p) for p in sorted(out.glob("calibration-*.csv"))]),
         pd.read_csv(out / "layer_sweep.csv"))
    raise SystemExit(0)

model = ln.models.load("gemma-3-270m", dtype=torch.float32, progress=False)
stats = real_stats.load("gemma-3-270m", model=model)
sets = ln.lape(stats)
languages = list(real_stats.LANGUAGES)
questions = forcing_prompts("en", n=args.prompts + args.calibration)
evaluation, calibration = questions[:args.prompts], questions[args.prompts:]
english = real_stats.heldout(stats, ["en"], n_lines=15)
train = real_stats.texts()[0]
protocol = dict(max_new_tokens=args.max_new_tokens, languages=languages, stop=STOP)


def forcing(prompts: list[str], hooks: list, target: str) -> dict[str, float]:
    """The forcing rate of ``prompts`` under ``hooks`` into ``target``, with its interval."""
    result = ln.forcing_rate(model, prompts, hooks, target, **protocol)
    hits = round(result.rate * result.n)
    return {"forcing": result.rate, "forcing_low": result.low, "forcing_high": result.high,
            "n": result.n, "hits": hits, "english": result.languages.count("en") / result.n,
            "decoding": result.decoding}


def joint_items(target: str) -> list[tuple[str, str]]:
    """The facts asked of a target: (premise in another language, the target's answer)."""
    facts = _facts()
    premise_langs = [lang for lang in PREMISES if lang != target][:3]
    items = []
    for lang in premise_langs:
        for fact in facts["facts"]:
            if fact["object"][lang].casefold() != fact["object"][target].casefold():
                items.append((fact["premise"][lang], fact["object"][target]))
    return items


def joint(hooks: list, target: str) -> dict[str, float]:
    """Share of facts answered correctly in the target language, with its interval."""
    items = joint_items(target)
    texts = generate(model, [p for p, _ in items], hooks, max_new_tokens=4)
    hits = sum(answer.casefold() in text.casefold() for (_, answer), [text] in zip(items, texts))
    low, high = wilson_interval(hits, len(items))
    return {"joint": hits / len(items), "joint_low": low, "joint_high": high,
            "joint_n": len(items)}


def nll(hooks: list) -> float:
    """Mean NLL of the held-out English lines under ``hooks``."""
    table = ln.perplexity(model, english, fwd_hooks=hooks, progress=False).table()
    return float(table.loc["en", "mean_nll"])


# --- phase 1: residual statistics and directions -----------------------------------------------
corpus = ln.Corpus.from_texts({lang: train[lang][:args.train_lines] for lang in languages})
directions: dict[tuple[str, str], ln.Directions] = {}
for target in args.direction_targets:
    for method in ("diffmean", "pca"):
        path = out / f"{method}-{target}"
        if path.exists() and not args.fresh:
            directions[method, target] = ln.Directions.load(path, model=model)
if len(directions) < 2 * len(args.direction_targets):
    log("collecting residual statistics")
    resid = ln.collect(model, corpus, site="resid", progress=False)
    log(f"residual statistics: {int(resid.n_tokens.sum())} tokens")
    pca = ln.pca_directions(model, corpus, args.direction_targets, progress=False)
    for target in args.direction_targets:
        directions["diffmean", target] = ln.diffmean_directions(resid, target)
        directions["diffmean", target].save(out / f"diffmean-{target}", overwrite=True)
        directions["pca", target] = pca[target]
        directions["pca", target].save(out / f"pca-{target}", overwrite=True)
    log("directions made")

# --- phase 2: which layer (residual diffmean, calibration questions) ---------------------------
sweep_path = out / "layer_sweep.csv"
sweep = pd.read_csv(sweep_path) if sweep_path.exists() and not args.fresh else pd.DataFrame(
    columns=["target", "strength", "layer"])
swept = {(r.target, float(r.strength), int(r.layer)) for r in sweep.itertuples()}
rows = sweep.to_dict("records")
for strength in args.sweep_strengths:
    for target in args.sweep_targets:
        gaps = directions["diffmean", target].table()["relative_gap"]
        for layer in args.sweep_layers:
            if (target, strength, layer) in swept:
                continue
            hooks = ln.add_direction(directions["diffmean", target], strength, layer=layer,
                                     model=model)
            rows.append({"target": target, "strength": strength, "layer": layer,
                         "relative_gap": gaps[layer], **forcing(calibration, hooks, target)})
            pd.DataFrame(rows).to_csv(sweep_path, index=False, float_format="%.4f")
            log(f"sweep {target} strength {strength} layer {layer}: {rows[-1]['forcing']:.2f}")
sweep = pd.DataFrame(rows)
by_layer = sweep.groupby("layer")["forcing"].mean()
LAYER = args.layer if args.layer is not None else int(by_layer.idxmax())  # first of the best
log(f"residual methods steer after block {LAYER} (mean calibration rate "
    f"{by_layer[LAYER]:.2f} over {sorted(set(sweep['strength']))} and {args.sweep_targets})")

if args.sweep_only:
    raise SystemExit(0)

# --- phase 3: the hooks of every method --------------------------------------------------------
seq_stats = None


def make_hooks(method: str, target: str, strength: float) -> list:
    """The hooks of ``method`` into ``target`` at ``strength``."""
    global seq_stats
    if method == "lape additive":
        return ln.steer(sets, stats, None, target, alpha=strength, model=model)
    if method == "neuron diffmean":
        return ln.steer(sets, stats, None, target, method="diffmean", alpha=strength, model=model)
    if method == "lape p_max":
        if seq_stats is None:
            texts = {t: train[t][:100] for t in args.targets}
            seq_stats = ln.collect(model, ln.Corpus.from_texts(texts), sequence_stats=True,
                                   progress=False)
        return amplify_to(sets, seq_stats, target, "p_max", model=model)
    kind = "diffmean" if method == "resid diffmean" else "pca"
    return ln.add_direction(directions[kind, target], strength, layer=LAYER, model=model)


def grid(method: str) -> list[float]:
    """The strengths measured for ``method``."""
    if method == "lape p_max":
        return [1.0]
    return list(args.strengths if method.startswith("resid") else args.alphas)


# --- phases 4 and 5, target by target: calibrate each method's strength, then measure it -------
calibration_path = out / f"calibration-{args.tag}.csv"
curves_path = out / f"curves-{args.tag}.csv"
fresh = args.fresh
calibrated = (pd.read_csv(calibration_path).to_dict("records")
              if calibration_path.exists() and not fresh else [])
rows = pd.read_csv(curves_path).to_dict("records") if curves_path.exists() and not fresh else []


def chosen_strength(target: str, method: str) -> float:
    """The rule: the smallest strength reaching 0.5 on calibration, else the best."""
    if method == "lape p_max":
        return 1.0
    part = pd.DataFrame(calibrated)
    if "layer" not in part:
        part["layer"] = [layer_of(m) for m in part["method"]]
    part = part[(part["target"] == target) & (part["method"] == method)
                & (part["layer"] == layer_of(method))]
    reached = part[part["forcing"] >= 0.5]
    if len(reached):
        return float(reached["strength"].min())
    return float(part.sort_values(["forcing", "strength"], ascending=[False, True])
                 ["strength"].iloc[0])


unsteered, base_nll = None, None
chosen_methods = [m for m in METHODS if args.methods is None or m in args.methods]


def layer_of(method: str) -> int:
    """The block a method acts after (-1: every layer, the neuron methods)."""
    return LAYER if method.startswith("resid") else -1


for target in args.targets:
    done = {(r["method"], float(r["strength"]), int(r.get("layer", layer_of(r["method"]))))
            for r in calibrated if r["target"] == target}
    for method in chosen_methods:
        for strength in grid(method):
            if method == "lape p_max" or (method, strength, layer_of(method)) in done:
                continue
            hooks = make_hooks(method, target, strength)
            calibrated.append({"target": target, "method": method, "strength": strength,
                               "layer": layer_of(method), "nll_en": nll(hooks),
                               **forcing(calibration, hooks, target)})
            pd.DataFrame(calibrated).to_csv(calibration_path, index=False, float_format="%.4f")
            log(f"calibration {target} {method} {strength}: {calibrated[-1]['forcing']:.2f} "
                f"nll_en {calibrated[-1]['nll_en']:.2f}")
    measured = {(r["method"], float(r["strength"]), int(r.get("layer", layer_of(r["method"]))))
                for r in rows if r["target"] == target}
    if ("none", 0.0, -1) not in measured and args.methods is None:
        if unsteered is None:  # the same continuations for every target: judged once per target
            unsteered, base_nll = ln.forcing_rate(model, evaluation, [], "en", **protocol), nll([])
            log(f"unsteered: English {unsteered.rate:.2f}, nll_en {base_nll:.3f}")
        hits = unsteered.languages.count(target)
        low, high = wilson_interval(hits, unsteered.n)
        rows.append({"target": target, "method": "none", "strength": 0.0, "layer": -1,
                     "forcing": hits / unsteered.n, "forcing_low": low, "forcing_high": high,
                     "n": unsteered.n, "hits": hits, "english": unsteered.rate,
                     "decoding": unsteered.decoding, **joint([], target), "nll_en": base_nll})
    for method in chosen_methods:
        strength = chosen_strength(target, method)
        if (method, strength, layer_of(method)) in measured:
            continue
        hooks = make_hooks(method, target, strength)
        rows.append({"target": target, "method": method, "strength": strength,
                     "layer": layer_of(method),
                     **forcing(evaluation, hooks, target), **joint(hooks, target),
                     "nll_en": nll(hooks)})
        pd.DataFrame(rows).to_csv(curves_path, index=False, float_format="%.4f")
        log(f"{target} {method} {strength}: forcing {rows[-1]['forcing']:.2f} joint "
            f"{rows[-1]['joint']:.2f} nll_en {rows[-1]['nll_en']:.2f}")
environment = {name: version(name) for name in ("lensneurons", "torch", "transformers",
                                                "transformer-lens")}
environment.update(torch_threads=torch.get_num_threads(), cpu=platform.machine(),
                   dtype="float32", device="cpu", kv_cache=check_kv_cache(model).mode)
(out / "protocol.json").write_text(json.dumps({
    "protocol": {k: v for k, v in vars(args).items() if k not in ("out", "img", "fresh",
                                                                  "plot_only")},
    "layer": LAYER, "methods": METHODS, "stop": list(STOP),
    "joint": "facts with premises in the first four of en de fr es it pt other than the "
             "target, 5 new tokens, the target's answer in the continuation (casefolded)",
    "environment": environment, "seconds_of_last_run": round(time.monotonic() - start)},
    indent=2) + "\n")
plot(pd.concat([pd.read_csv(p) for p in sorted(out.glob("curves-*.csv"))]),
     pd.concat([pd.read_csv(p) for p in sorted(out.glob("calibration-*.csv"))]), sweep)
log("done")
