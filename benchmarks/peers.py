"""lensneurons side by side with plain Hugging Face hooks and nnsight/nnterp, on the same work.

Four works, each done by every tool on the same inputs in one run (tools alternated within each
round, each round starting one run later, medians of ``--rounds`` rounds after a warm-up), with
the results compared in the same run:

* ``counts``: per group, layer and MLP unit, how many counted tokens have the unit active (the
  input of LAPE): ``ln.collect(..., value_stats=False)`` and ``ln.collect`` with every
  statistic; forward hooks on each layer's gate projection of the HF model (a pass of the base
  model, no ``lm_head``); an nnsight trace saving each layer's gate output, stopped after the
  last layer.
* ``lens``: the logit lens over every layer at the last position of translation prompts:
  ``ln.logit_lens``; HF hooks on every decoder layer, then the final norm and ``lm_head``;
  nnterp's ``logit_lens``.
* ``perplexity``: mean NLL per group of the counted tokens: ``ln.perplexity``; an HF forward and
  ``cross_entropy``.
* ``generation``: greedy continuations under hooks on a LAPE set (``ln.amplify`` by 1, so every
  hook does its work and the continuations must not change) against the same generation without
  hooks (lensneurons' ``generate``).

Reference passes of the same run: the HF forward (with and without ``lm_head``), the
TransformerLens bridge's forward (``bridge``), and the bridge's pass stopped after the last
layer's MLP read hook (``bridge_blocks``, the floor of ``collect``). Ratios are printed against
them, so the bridge's own cost is separate from lensneurons'.

Usage (the peers are installed by ``make setup-peers``)::

    python benchmarks/peers.py --model organism
    python benchmarks/peers.py --model gemma-3-270m --threads 2 --json peers.json

Needs: ``nnsight`` and ``nnterp`` (benchmark-only dependencies; a missing one is skipped with a
note in the report).
"""

from __future__ import annotations

import argparse
import inspect
import json
import statistics
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from _timing import timed  # noqa: E402

import lensneurons as ln  # noqa: E402
from lensneurons.evaluate import generate  # noqa: E402
from lensneurons.lens import prompts as lens_prompts  # noqa: E402
from lensneurons.subjects import models, real_stats  # noqa: E402

GEN_PROMPTS = ["Q: How are you today?\nA:", "Q: What is your favourite food?\nA:",
               "Q: Where do you live?\nA:", "Q: What did you do yesterday?\nA:"]


class _Stop(Exception):
    """Ends a plain-HF pass after the last hook that reads something."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="organism", help="organism or an installed real model")
    p.add_argument("--works", default="counts,lens,perplexity,generation")
    p.add_argument("--languages", type=int, default=7)
    p.add_argument("--tokens", type=int, default=1024, help="counted tokens per language")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--prompts", type=int, default=32, help="lens prompts")
    p.add_argument("--new-tokens", type=int, default=16, help="generation: tokens per prompt")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--check", action="store_true",
                   help="exit with status 1 when the tools' results disagree")
    p.add_argument("--json", type=Path, default=None)
    return p.parse_args(argv)


# --- the subject, three times: TL bridge, plain HF, HF for nnsight ------------------------------
def load(name: str, n_languages: int) -> tuple[Any, Callable[[], tuple[Any, Any]], ln.Corpus]:
    """The lensneurons model, a loader of independent HF copies, and the counting corpus."""
    if name == "organism":
        model = ln.organism.load()
        texts = dict(list(ln.organism.texts("train").items())[:n_languages])
        corpus = ln.Corpus.from_texts(texts, pack=True, window=128)
        return model, ln.organism.load_hf, corpus
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = ln.models.load(name, dtype=torch.float32, progress=False)
    folder = models.convert_gguf(models.gguf_path(name), progress=False)

    def load_hf() -> tuple[Any, Any]:
        with models._transformers_progress(False):
            hf = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
        return hf.eval(), AutoTokenizer.from_pretrained(str(folder))

    train, _ = real_stats.texts()
    corpus = real_stats.train_corpus({g: train[g] for g in real_stats.LANGUAGES[:n_languages]})
    return model, load_hf, corpus


def decoder_layers(hf: Any) -> Any:
    return hf.model.layers


def readout(hf: Any, h: torch.Tensor) -> torch.Tensor:
    """The HF model's own logits from last-layer hidden states: final norm, lm_head, soft-cap."""
    logits = hf.lm_head(hf.model.norm(h))
    cap = getattr(hf.config, "final_logit_softcapping", None)
    return cap * torch.tanh(logits / cap) if cap else logits


def each(batches: list, forward: Callable[[Any], Any]) -> None:
    """``forward`` over every batch (corpus batches or token tensors), outputs dropped."""
    for batch in batches:
        forward(getattr(batch, "tokens", batch))


# --- counts -------------------------------------------------------------------------------------
def hf_counts(hf: Any, batches: list, n_groups: int) -> torch.Tensor:
    """MLP activity counts [group, layer, unit] with plain forward hooks on the gate projections."""
    layers = decoder_layers(hf)
    width = layers[0].mlp.gate_proj.out_features
    counts = torch.zeros(n_groups, len(layers), width, dtype=torch.int64)
    state: dict[str, torch.Tensor] = {}

    def hook(layer: int) -> Callable:
        def read(module: Any, args: Any, out: torch.Tensor) -> None:
            active = out[state["counted"]].gt(0)  # [counted tokens, unit]
            counts[:, layer].index_add_(0, state["group"], active.long())
            if layer == len(layers) - 1:
                raise _Stop

        return read

    handles = [layers[i].mlp.gate_proj.register_forward_hook(hook(i)) for i in range(len(layers))]
    try:
        with torch.inference_mode():
            for batch in batches:
                state["counted"] = batch.counted
                state["group"] = batch.rows.repeat_interleave(batch.counted.sum(1))
                try:
                    hf.model(batch.tokens)
                except _Stop:
                    pass
    finally:
        for h in handles:
            h.remove()
    return counts


def nnsight_counts(lm: Any, batches: list, n_groups: int) -> torch.Tensor:
    """The same counts with an nnsight trace per batch, stopped after the last layer's gate."""
    layers = lm.model.layers
    n_layers = len(layers)
    width = layers[0].mlp.gate_proj.out_features
    counts = torch.zeros(n_groups, n_layers, width, dtype=torch.int64)
    with torch.inference_mode():
        for batch in batches:
            saved: list[torch.Tensor] = []  # filled in the trace (a comprehension's would be lost)
            with lm.trace(batch.tokens) as tracer:
                for i in range(n_layers):
                    saved.append(layers[i].mlp.gate_proj.output.gt(0).save())
                tracer.stop()
            group = batch.rows.repeat_interleave(batch.counted.sum(1))
            for i, active in enumerate(saved):
                counts[:, i].index_add_(0, group, active[batch.counted].long())
    return counts


# --- lens ---------------------------------------------------------------------------------------
def hf_lens(hf: Any, rows: list[torch.Tensor], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-1 probability and id [layer, prompt] at each prompt's last token, plain HF hooks."""
    layers = decoder_layers(hf)
    width = max(len(r) for r in rows)
    tokens = torch.full((len(rows), width), pad, dtype=torch.long)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = r
    last = torch.tensor([len(r) - 1 for r in rows])
    index = torch.arange(len(rows))
    kept: list[torch.Tensor] = []

    def keep(module: Any, args: Any, out: Any) -> None:
        h = out[0] if isinstance(out, tuple) else out
        kept.append(h[index, last])

    handles = [layer.register_forward_hook(keep) for layer in layers]
    try:
        with torch.inference_mode():
            hf.model(tokens)
            logp = readout(hf, torch.stack(kept)).float().log_softmax(-1)  # [L, B, V]
            top = logp.max(-1)
    finally:
        for h in handles:
            h.remove()
    return top.values.exp(), top.indices


def nnterp_lens(nn_model: Any, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    from nnterp.interventions import logit_lens as nnterp_logit_lens

    with torch.inference_mode():
        probs = nnterp_logit_lens(nn_model, texts)  # [B, L, V]
    top = probs.max(-1)
    return top.values.T, top.indices.T


# --- perplexity -----------------------------------------------------------------------------
def hf_perplexity(hf: Any, batches: list, n_groups: int) -> torch.Tensor:
    """Mean NLL per group of the counted next tokens, an HF forward and ``cross_entropy``."""
    nll = torch.zeros(n_groups, dtype=torch.float64)
    n = torch.zeros(n_groups, dtype=torch.int64)
    with torch.inference_mode():
        for batch in batches:
            logits = hf(batch.tokens).logits
            per_token = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(),
                                        batch.tokens[:, 1:].flatten(), reduction="none")
            scored = batch.counted[:, 1:]
            row_sums = (per_token.view(scored.shape).double() * scored).sum(1)
            nll.index_add_(0, batch.rows, row_sums)
            n.index_add_(0, batch.rows, scored.sum(1))
    return nll / n


# --- the run ----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    works = set(args.works.split(","))
    model, load_hf, corpus = load(args.model, args.languages)
    view = ln.ModelView(model)
    groups = list(corpus.groups)
    tokenized = corpus.tokenize(model).limit(args.tokens)
    batches = list(tokenized.batches(args.batch_size))
    n_groups = len(groups)
    hf, tokenizer = load_hf()
    notes: list[str] = []
    try:
        from nnsight import LanguageModel
        from nnterp import StandardizedTransformer

        lm = LanguageModel(load_hf()[0], tokenizer=tokenizer)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nn_model = StandardizedTransformer(load_hf()[0], tokenizer=tokenizer,
                                               check_attn_probs_with_trace=False)
        tokenizer.padding_side = "left"
    except ImportError as err:
        lm = nn_model = None
        notes.append(f"nnsight/nnterp not installed ({err}); run `make setup-peers`.")

    last_read = ln.get_site(model, "mlp").read_hook(view.n_layers - 1)
    runs: dict[str, Callable[[], Any]] = {}
    if works & {"counts", "perplexity"}:
        runs["hf_forward"] = lambda: each(batches, hf)
        runs["bridge"] = lambda: each(batches, model)
    if "counts" in works:
        runs["hf_base"] = lambda: each(batches, hf.model)
        runs["bridge_blocks"] = lambda: each(batches, lambda t: view.run_until(t, last_read))
        runs["counts_hf"] = lambda: hf_counts(hf, batches, n_groups)
        if lm is not None:
            runs["counts_nnsight"] = lambda: nnsight_counts(lm, batches, n_groups)
        if "value_stats" in inspect.signature(ln.collect).parameters:  # not before it existed
            runs["counts_ln"] = lambda: ln.collect(model, corpus, batch_size=args.batch_size,
                                                   max_tokens_per_group=args.tokens,
                                                   value_stats=False, progress=False)
        runs["counts_ln_all"] = lambda: ln.collect(model, corpus, batch_size=args.batch_size,
                                                   max_tokens_per_group=args.tokens,
                                                   progress=False)
    items = lens_prompts.translation(src="fr", tgt="de", seed=0)[: args.prompts]
    texts = [it.prompt for it in items]
    rows = [model.to_tokens(t)[0].cpu() for t in texts]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    if "lens" in works:
        lens_batch = len(texts)
        padded = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=pad)
        runs["lens_hf_forward"] = lambda: each([padded], hf)
        # The bridge's own cost on the lens's pass: its blocks against HF's base model.
        runs["lens_hf_base"] = lambda: each([padded], hf.model)
        runs["lens_bridge_blocks"] = lambda: view.run_until(
            padded, f"blocks.{view.n_layers - 1}.hook_resid_post")
        runs["lens_hf"] = lambda: hf_lens(hf, rows, pad)
        if nn_model is not None:
            runs["lens_nnterp"] = lambda: nnterp_lens(nn_model, texts)
        runs["lens_ln"] = lambda: ln.logit_lens(model, texts, top_k=1, batch_size=lens_batch)
    if "perplexity" in works:
        runs["ppl_hf"] = lambda: hf_perplexity(hf, batches, n_groups)
        runs["ppl_ln"] = lambda: ln.perplexity(model, corpus, batch_size=args.batch_size,
                                               max_tokens_per_group=args.tokens, progress=False)
    if "generation" in works:
        stats = ln.collect(model, corpus, batch_size=args.batch_size,
                           max_tokens_per_group=args.tokens, progress=False)
        sets = ln.lape(stats, top_rate=0.05)
        # Amplification by 1: every hook does its full work and the continuations must stay
        # the same, so both arms generate the same tokens (steering would change their length).
        hooks = ln.amplify(sets[groups[0]], 1.0)
        runs["gen_ln_bare"] = lambda: generate(model, GEN_PROMPTS, [],
                                               max_new_tokens=args.new_tokens)
        runs["gen_ln_hooks"] = lambda: generate(model, GEN_PROMPTS, hooks,
                                                max_new_tokens=args.new_tokens)

    with torch.inference_mode():
        results = {name: fn() for name, fn in runs.items()}  # warm-up, and the compared results
    wall: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for r in range(args.rounds):
        # Each round starts one run later, so no tool always follows the same neighbour (a run
        # after one that freed gigabytes pays page faults the others do not).
        for name in names[r % len(names):] + names[: r % len(names)]:
            with torch.inference_mode():
                w, c = timed(runs[name])
            wall[name].append(w)
            cpu[name].append(c)
    med = {k: statistics.median(v) for k, v in wall.items()}

    checks: dict[str, Any] = {}
    if "counts" in works:
        ours = results.get("counts_ln", results["counts_ln_all"]).active
        checks["counts: lensneurons vs HF hooks, max |count difference|"] = int(
            (ours - results["counts_hf"]).abs().max())
        if "counts_ln" in results:
            checks["counts: lensneurons, every statistic vs counts only, equal"] = bool(
                torch.equal(ours, results["counts_ln_all"].active))
        if "counts_nnsight" in results:
            checks["counts: nnsight vs HF hooks, max |count difference|"] = int(
                (results["counts_nnsight"] - results["counts_hf"]).abs().max())
    if "lens" in works:
        ours = results["lens_ln"]
        p_hf, id_hf = results["lens_hf"]
        checks["lens: max |top-1 p| lensneurons vs HF"] = float(
            (ours.top_probs[..., 0] - p_hf).abs().max())
        checks["lens: same top-1 token, lensneurons vs HF"] = float(
            (ours.top_ids[..., 0] == id_hf).float().mean())
        if "lens_nnterp" in results:
            p_nn, id_nn = results["lens_nnterp"]
            full = [i for i, r in enumerate(rows) if len(r) == max(len(r) for r in rows)]
            checks["lens: max |top-1 p| nnterp vs HF (unpadded prompts)"] = float(
                (p_nn[:, full] - p_hf[:, full]).abs().max())
    if "generation" in works:
        checks["generation: same continuations with and without the hooks"] = (
            results["gen_ln_bare"] == results["gen_ln_hooks"])
    if "perplexity" in works:
        ours = torch.tensor(results["ppl_ln"].table()["mean_nll"].to_numpy())
        checks["perplexity: max |mean NLL difference| lensneurons vs HF"] = float(
            (ours - results["ppl_hf"]).abs().max())

    n_tokens = int(sum(b.tokens.numel() for b in batches))
    ratios: dict[str, dict[str, Any]] = {}

    def ratio(name: str, base: str, key: str | None = None) -> None:
        """Ratio of medians; the median and range of the per-round ratios (both ran in the
        same round, seconds apart, so slow drifts of a shared machine cancel); CPU seconds."""
        if name in med and base in med:
            paired = [a / b for a, b in zip(wall[name], wall[base])]
            ratios[key or f"{name} / {base}"] = {
                "wall": med[name] / med[base],
                "paired": statistics.median(paired),
                "paired_min": min(paired),
                "paired_max": max(paired),
                "cpu": statistics.median(cpu[name]) / statistics.median(cpu[base]),
            }

    for name, base in [("bridge", "hf_forward"), ("bridge_blocks", "hf_base"),
                       ("counts_hf", "hf_base"), ("counts_nnsight", "hf_base"),
                       ("counts_ln", "hf_base"), ("counts_ln", "bridge_blocks"),
                       ("counts_ln_all", "bridge_blocks"), ("counts_nnsight", "counts_ln"),
                       ("lens_bridge_blocks", "lens_hf_base"),
                       ("lens_hf", "lens_hf_forward"), ("lens_nnterp", "lens_hf_forward"),
                       ("lens_ln", "lens_hf_forward"), ("lens_ln", "lens_hf"),
                       ("ppl_hf", "hf_forward"), ("ppl_ln", "bridge"), ("ppl_ln", "hf_forward"),
                       ("gen_ln_hooks", "gen_ln_bare")]:
        ratio(name, base)
    if "lens_ln" in med and "lens_hf" in med:
        # The target: plain HF hooks' lens times the bridge's own cost on the same pass, round
        # by round (CPU: the ratio of CPU medians).
        paired = [ln_ / (hf_ * b / hb) for ln_, hf_, b, hb in zip(
            wall["lens_ln"], wall["lens_hf"], wall["lens_bridge_blocks"], wall["lens_hf_base"])]

        def cpu_med(name: str) -> float:
            return statistics.median(cpu[name])

        ratios["lens_ln / (lens_hf x bridge overhead)"] = {
            "wall": med["lens_ln"] / (med["lens_hf"] * med["lens_bridge_blocks"]
                                      / med["lens_hf_base"]),
            "paired": statistics.median(paired), "paired_min": min(paired),
            "paired_max": max(paired),
            "cpu": cpu_med("lens_ln") / (cpu_med("lens_hf") * cpu_med("lens_bridge_blocks")
                                         / cpu_med("lens_hf_base")),
        }
    report = {"model": args.model, "threads": torch.get_num_threads(), "rounds": args.rounds,
              "groups": groups, "batches": len(batches), "batch_size": args.batch_size,
              "tokens_per_pass": n_tokens, "lens_prompts": len(texts),
              "torch": torch.__version__, "wall_s": med, "rounds_wall_s": wall,
              "rounds_cpu_s": cpu, "ratios": ratios, "checks": checks,
              "notes": notes}
    print(f"## {args.model}: {n_tokens} tokens in {len(batches)} batches of "
          f"{args.batch_size}, {len(texts)} lens prompts, {report['threads']} threads, "
          f"medians of {args.rounds} rounds\n")
    print("| pass | wall s |\n|---|---:|")
    for name, s in med.items():
        print(f"| {name} | {s:.3f} |")
    print("\n| ratio | of medians | per round: median [min, max] | CPU seconds |\n"
          "|---|---:|---:|---:|")
    for name, r in ratios.items():
        print(f"| {name} | {r['wall']:.3f} | {r['paired']:.3f} [{r['paired_min']:.3f}, "
              f"{r['paired_max']:.3f}] | {r['cpu']:.3f} |")
    print("\n| check | value |\n|---|---|")
    for name, v in checks.items():
        print(f"| {name} | {v} |")
    for note in notes:
        print(f"\nNote: {note}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    failed = disagreements(checks, int(tokenized.n_tokens.min()))
    for line in failed:
        print(f"\nDISAGREE: {line}")
    if args.check and failed:
        sys.exit(1)
    return report


def disagreements(checks: dict[str, Any], min_tokens: int) -> list[str]:
    """The checks that show the tools computing different things (not rounding).

    Counts may differ where a pre-activation within rounding of 0 flips its sign (the bridge
    computes the norms in its own code): at most 0.1% of a group's tokens, and 2.
    """
    bad = []
    for name, value in checks.items():
        if "count difference" in name and value > max(2, min_tokens // 1000):
            bad.append(f"{name} = {value}")
        elif "top-1 p" in name and value > 1e-4:
            bad.append(f"{name} = {value}")
        elif "same top-1" in name and value < 1.0:
            bad.append(f"{name} = {value}")
        elif "NLL" in name and value > 1e-4:
            bad.append(f"{name} = {value}")
        elif isinstance(value, bool) and not value:
            bad.append(name)
    return bad


if __name__ == "__main__":
    main()
