"""Speed and memory of lensneurons on a real model (default Gemma 3 270M), ratios in one run.

What runs, over the same batches of the shipped real-model corpus (gettext training lines packed
into 128-token windows, ``--languages`` languages, ``--tokens`` counted tokens each):

1. ``forward``: a full TL forward pass (logits over the 262k-word vocabulary) per batch;
2. ``collect``: ``lensneurons.collect``, which stops each pass after the last layer's read hook;
3. ``blocks``: the same pass stopped there with no statistic (the floor ``collect`` can reach);
4. ``perplexity``: ``lensneurons.perplexity`` (true-token log-probabilities, one row at a time);
5. ``lens``: ``logit_lens`` over every layer at the last position of Wendler-style translation
   prompts, against a forward pass over the same prompts.

Interleaved rounds after a warm-up; medians of wall-clock and process CPU time. Peak resident
memory of each step (``VmHWM`` reset before it). Ratios are against ``forward`` in the same run.

Usage:
    python benchmarks/real_model.py [--model gemma-3-270m] [--languages 4] [--tokens 2048]
        [--batch-size 8] [--repeats 3] [--threads 0] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import timed  # noqa: E402
from collect_overhead import _peak_growth  # noqa: E402

import lensneurons as ln  # noqa: E402
from lensneurons.lens import logit_lens, prompts  # noqa: E402
from lensneurons.subjects import real_stats  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="gemma-3-270m")
    p.add_argument("--languages", type=int, default=4)
    p.add_argument("--tokens", type=int, default=2048, help="counted tokens per language")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--prompts", type=int, default=32, help="lens prompts")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--device", default=None)
    p.add_argument("--json", type=Path, default=None)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = ln.models.load(args.model, device=args.device, progress=False)
    view = ln.ModelView(model)
    device = str(view.input_device)
    train, _ = real_stats.texts()
    langs = list(real_stats.LANGUAGES[: args.languages])
    corpus = real_stats.train_corpus({g: train[g] for g in langs})
    tokenized = corpus.tokenize(model).limit(args.tokens)
    batches = [b.tokens.to(device) for b in tokenized.batches(args.batch_size)]
    n_tokens = int(sum(int(b.numel()) for b in batches))
    last_read = ln.get_site(model, "mlp").read_hook(view.n_layers - 1)
    items = prompts.translation(src="fr", tgt="de", seed=0)[: args.prompts]
    lens_prompts = [it.prompt for it in items]
    lens_tokens = sum(len(model.to_tokens(p)[0]) for p in lens_prompts)

    def forward() -> None:
        with torch.inference_mode():
            for tokens in batches:
                model(tokens)

    def blocks() -> None:
        with torch.inference_mode():
            for tokens in batches:
                view.run_until(tokens, last_read)

    def lens_forward() -> None:
        with torch.inference_mode():
            for start in range(0, len(lens_prompts), args.batch_size):
                model(model.to_tokens(lens_prompts[start:start + args.batch_size]))

    runs: dict[str, Callable[[], Any]] = {
        "forward": forward,
        "blocks": blocks,
        "collect": lambda: ln.collect(model, corpus, batch_size=args.batch_size,
                                      max_tokens_per_group=args.tokens, progress=False),
        "perplexity": lambda: ln.perplexity(model, corpus, batch_size=args.batch_size,
                                            max_tokens_per_group=args.tokens, progress=False),
        "lens_forward": lens_forward,
        "lens": lambda: logit_lens(model, lens_prompts, top_k=1, batch_size=args.batch_size),
    }
    peaks = {name: _peak_growth(fn) for name, fn in runs.items()}  # also the warm-up
    wall: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            w, c = timed(fn, device)
            wall[name].append(w)
            cpu[name].append(c)
    med = {k: statistics.median(v) for k, v in wall.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    counted = int(tokenized.n_tokens.sum())
    report = {
        "model": args.model, "device": device, "threads": torch.get_num_threads(),
        "tokens_per_pass": n_tokens, "counted_tokens": counted, "lens_prompts": len(lens_prompts),
        "lens_tokens": lens_tokens,
        "wall_s": med, "cpu_s": med_cpu,
        "ratio": {k: med[k] / med["forward"] for k in ("blocks", "collect", "perplexity")}
        | {"lens": med["lens"] / med["lens_forward"]},
        "ratio_cpu": {k: med_cpu[k] / med_cpu["forward"] for k in ("blocks", "collect",
                                                                     "perplexity")}
        | {"lens": med_cpu["lens"] / med_cpu["lens_forward"]},
        "tokens_per_s": {k: n_tokens / med[k] for k in ("forward", "blocks", "collect",
                                                        "perplexity")}
        | {"lens": lens_tokens / med["lens"]},
        "peak_mib": {k: v["peak_kib"] / 1024 for k, v in peaks.items()},
        "growth_mib": {k: v["growth_kib"] / 1024 for k, v in peaks.items()},
    }
    print(f"## {args.model} on {device}, {report['threads']} threads, {n_tokens} tokens per pass "
          f"({len(batches)} batches of {args.batch_size}), medians of {args.repeats} rounds\n")
    print("| step | wall s | ratio (wall) | ratio (CPU) | tokens/s | peak RSS MiB |")
    print("|---|---|---|---|---|---|")
    for name in runs:
        base = "lens_forward" if name == "lens" else "forward"
        print(f"| {name} | {med[name]:.2f} | {med[name] / med[base]:.2f}x | "
              f"{med_cpu[name] / med_cpu[base]:.2f}x | "
              f"{(lens_tokens if name.startswith('lens') else n_tokens) / med[name]:.0f} | "
              f"{report['peak_mib'][name]:.0f} |")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
