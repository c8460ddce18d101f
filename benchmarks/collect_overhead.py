"""``lensneurons.collect`` vs a bare forward pass over the same batches, and its memory growth.

Targets (docs/design.md §15): ``collect`` takes at most 1.10x a bare forward pass over the same
tokens, measured in the same run; its peak memory stays flat when the corpus grows 10x.

What runs:

1. A random mid-size Llama (float32, default 8 layers, d_model 1024, d_mlp 2816, 16 query heads,
   4 kv heads, vocabulary 8000) wrapped with ``TransformerBridge.boot_transformers``, and a
   byte-level BPE tokenizer trained here, saved to a temporary folder and reloaded with
   ``AutoTokenizer`` (everything offline).
2. A synthetic corpus of ``--groups`` groups, each a pseudo-language with its own syllables,
   every text cut to ``--seq-len`` tokens; ``lensneurons.Corpus.from_texts``.
3. Timing, interleaved after a warm-up: (a) ``model(batch.tokens)`` under ``inference_mode``
   over exactly the batches of ``corpus.tokenize(model).batches(batch_size)``; (b)
   ``collect(model, corpus)``; (c) ``collect(..., sequence_stats=True)`` (informational); (d)
   ``collect(..., site="resid")``, the residual stream (the statistics of residual directions).
   Medians of ``--repeats`` rounds; the ratios are ``(b)/(a)``, ``(c)/(a)`` and ``(d)/(a)``.
4. Memory: a bare forward pass, then ``collect``, over the corpus and over 10x as many texts of
   the same lengths, each size in a fresh subprocess; the peak resident memory of each pass
   (``VmHWM`` reset through ``/proc/self/clear_refs``; ``ru_maxrss`` where that is unavailable).

Wall-clock ratios need a quiet machine; on a shared one use ``--threads 1`` and read the CPU-time
ratio (see benchmarks/README.md).

Usage:
    python benchmarks/collect_overhead.py [--layers 8] [--d-model 1024] [--seq-len 128]
        [--batch-size 8] [--groups 4] [--repeats 5] [--device cpu] [--threads 0] [--json out.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from _timing import timed

import lensneurons as ln

_SPECIALS = ["<s>", "</s>", "<pad>"]
_CONSONANTS = "bcdfghjklmnpqrstvwxz"
_VOWELS = "aeiouy"


# --- model and tokenizer --------------------------------------------------------------------------
def _syllables(group: int, n: int = 60) -> list[str]:
    """A pseudo-language: ``n`` syllables drawn with a group-specific seed."""
    rng = random.Random(1000 + group)
    out: set[str] = set()
    while len(out) < n:
        out.add(rng.choice(_CONSONANTS) + rng.choice(_VOWELS)
                + rng.choice(["", "", rng.choice(_CONSONANTS)]))
    return sorted(out)


def _raw_texts(group: int, n_texts: int, n_words: int, seed: int) -> list[str]:
    rng = random.Random(seed * 7919 + group)
    sylls = _syllables(group)
    texts = []
    for _ in range(n_texts):
        words = ["".join(rng.choices(sylls, k=rng.randint(1, 3))) for _ in range(n_words)]
        texts.append(" ".join(words) + ".")
    return texts


def build_tokenizer(vocab_size: int, n_groups: int, folder: str) -> Any:
    """Train a byte-level BPE on the groups' pseudo-languages; reload it with ``AutoTokenizer``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=_SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    training = [t for g in range(n_groups) for t in _raw_texts(g, 200, 60, seed=12345)]
    tok.train_from_iterator(training, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>")
    fast.save_pretrained(folder)
    return AutoTokenizer.from_pretrained(folder)


def build_model(args: argparse.Namespace, folder: str) -> Any:
    """A random float32 Llama bridge with the trained tokenizer."""
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer(args.vocab, args.groups, folder)
    vocab = max(args.vocab, len(tokenizer))
    cfg = LlamaConfig(
        vocab_size=vocab, hidden_size=args.d_model, intermediate_size=args.d_mlp,
        num_hidden_layers=args.layers, num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads, max_position_embeddings=max(512, args.seq_len),
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    hf = LlamaForCausalLM(cfg).eval()
    return TransformerBridge.boot_transformers(
        "bench-llama", hf_model=hf, tokenizer=tokenizer, device=args.device, dtype=torch.float32
    ).eval()


# --- corpus ---------------------------------------------------------------------------------------
def make_texts(model: Any, args: argparse.Namespace, texts_per_group: int,
               seed: int = 0) -> dict[str, list[str]]:
    """``texts_per_group`` texts per group, each cut to ``seq_len - 1`` tokens (BOS added later)."""
    tokenizer = model.tokenizer
    n_words = args.seq_len  # a word is at least one token: enough to cut from
    out: dict[str, list[str]] = {}
    for group in range(args.groups):
        raw = _raw_texts(group, texts_per_group, n_words, seed)
        ids = tokenizer(raw, add_special_tokens=False)["input_ids"]
        out[f"lang{group}"] = [tokenizer.decode(i[: args.seq_len - 1]) for i in ids]
    return out


# --- timing ---------------------------------------------------------------------------------------
def bare_forward(model: Any, corpus: ln.Corpus, batch_size: int, device: str) -> None:
    """A bare forward pass over exactly the batches ``collect`` runs."""
    with torch.inference_mode():
        for batch in corpus.tokenize(model).batches(batch_size):
            model(batch.tokens.to(device))


def time_overhead(model: Any, corpus: ln.Corpus, args: argparse.Namespace) -> dict[str, Any]:
    """Interleaved medians of the bare pass, ``collect`` and ``collect(sequence_stats=True)``."""
    runs: dict[str, Callable[[], Any]] = {
        "forward": lambda: bare_forward(model, corpus, args.batch_size, args.device),
        "collect": lambda: ln.collect(model, corpus, batch_size=args.batch_size,
                                      progress=False),
        "collect_seq": lambda: ln.collect(model, corpus, batch_size=args.batch_size,
                                          sequence_stats=True, progress=False),
        "collect_resid": lambda: ln.collect(model, corpus, batch_size=args.batch_size,
                                            site="resid", progress=False),
    }
    for fn in runs.values():  # warm-up (also tokenizes the corpus once; it is cached)
        fn()
    times: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            wall_s, cpu_s = timed(fn, args.device)
            times[name].append(wall_s)
            cpu[name].append(cpu_s)
    med = {name: statistics.median(t) for name, t in times.items()}
    med_cpu = {name: statistics.median(t) for name, t in cpu.items()}
    per_round = [c / f for c, f in zip(times["collect"], times["forward"])]
    tokenized = corpus.tokenize(model)
    return {
        "sequences": len(tokenized.sequences),
        "batches": tokenized.n_batches(args.batch_size),
        "tokens": int(sum(len(s.tokens) for s in tokenized.sequences)),
        "forward_s": med["forward"],
        "collect_s": med["collect"],
        "collect_seq_s": med["collect_seq"],
        "collect_resid_s": med["collect_resid"],
        "ratio": med["collect"] / med["forward"],
        "ratio_resid": med["collect_resid"] / med["forward"],
        "ratio_resid_cpu": med_cpu["collect_resid"] / med_cpu["forward"],
        "ratio_round_median": statistics.median(per_round),
        "ratio_seq": med["collect_seq"] / med["forward"],
        "forward_cpu_s": med_cpu["forward"],
        "collect_cpu_s": med_cpu["collect"],
        "collect_seq_cpu_s": med_cpu["collect_seq"],
        "ratio_cpu": med_cpu["collect"] / med_cpu["forward"],
        "ratio_seq_cpu": med_cpu["collect_seq"] / med_cpu["forward"],
        "ratio_min": min(times["collect"]) / min(times["forward"]),
        "ratio_cpu_min": min(cpu["collect"]) / min(cpu["forward"]),
        "times_s": times,
        "cpu_times_s": cpu,
    }


# --- memory (run in a fresh subprocess per corpus size) -------------------------------------------
def _status_kib(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset the kernel's resident-memory high-water mark (Linux ``clear_refs`` 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_growth(fn: Callable[[], Any]) -> dict[str, Any]:
    """Run ``fn``; the resident memory before it and the peak while it ran (KiB)."""
    gc.collect()
    reset = _reset_peak()
    before = _status_kib("VmRSS") or 0
    result = fn()
    peak = _status_kib("VmHWM") if reset else None
    source = "VmHWM"
    if peak is None:  # no resettable high-water mark: lifetime peak (KiB on Linux)
        peak, source = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "ru_maxrss"
    return {"result": result, "before_kib": before, "peak_kib": peak,
            "growth_kib": peak - before, "source": source}


def memory_child(args: argparse.Namespace) -> dict[str, Any]:
    """Forward, then ``collect``, over ``mem_texts * scale`` texts per group; RSS peaks."""
    torch.set_num_threads(args.threads or torch.get_num_threads())
    with tempfile.TemporaryDirectory(prefix="collect-bench-tok-") as folder:
        model = build_model(args, folder)
        corpus = ln.Corpus.from_texts(make_texts(model, args, args.mem_texts * args.scale))
        tokenized = corpus.tokenize(model)
        # One batch first, so that allocator pools and lazy initialisations are in place.
        first = next(tokenized.batches(args.batch_size))
        with torch.inference_mode():
            model(first.tokens.to(args.device))
        forward = _peak_growth(lambda: bare_forward(model, corpus, args.batch_size, args.device))
        start = time.perf_counter()
        collected = _peak_growth(lambda: ln.collect(model, corpus, batch_size=args.batch_size,
                                                    progress=False))
        elapsed = time.perf_counter() - start
    stats = collected["result"]
    stat_bytes = sum(t.nbytes for t in (stats.n_tokens, stats.active, stats.sum, stats.sum_sq,
                                        stats.max) if t is not None)
    return {
        "scale": args.scale,
        "texts": len(corpus),
        "tokens": int(stats.n_tokens.sum()),
        "collect_s": elapsed,
        "rss_before_mib": collected["before_kib"] / 1024,
        "peak_mib": collected["peak_kib"] / 1024,
        "growth_mib": collected["growth_kib"] / 1024,
        "forward_growth_mib": forward["growth_kib"] / 1024,
        "forward_peak_mib": forward["peak_kib"] / 1024,
        "over_forward_mib": (collected["peak_kib"] - forward["peak_kib"]) / 1024,
        "peak_source": collected["source"],
        "stats_bytes": stat_bytes,
    }


def measure_memory(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Run :func:`memory_child` for the corpus and for 10x the corpus in fresh subprocesses."""
    rows = []
    for scale in (1, 10):
        cmd = [sys.executable, os.path.abspath(__file__), "--memory-child", "--scale", str(scale),
               *_forwarded(args)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    return rows


def _forwarded(args: argparse.Namespace) -> list[str]:
    """The options a memory subprocess needs, as command-line arguments."""
    keys = ("layers", "d_model", "d_mlp", "heads", "kv_heads", "vocab", "seq_len", "batch_size",
            "groups", "device", "mem_texts", "threads")
    return [f"--{k.replace('_', '-')}={getattr(args, k)}" for k in keys]


# --- report ---------------------------------------------------------------------------------------
def markdown(config: dict[str, Any], timing: dict[str, Any] | None,
             memory: list[dict[str, Any]] | None) -> str:
    """The results as a small Markdown report."""
    lines = [
        f"Model: random Llama {config['layers']} layers, d_model {config['d_model']}, "
        f"d_mlp {config['d_mlp']}, {config['heads']}/{config['kv_heads']} heads, vocabulary "
        f"{config['vocab']}, float32, {config['device']} ({config['threads']} threads). "
        f"Corpus: {config['groups']} groups, {config['seq_len']}-token texts, "
        f"batch size {config['batch_size']}.",
        "",
    ]
    if timing is not None:
        lines += [
            "| pass | wall (median) | ratio | CPU time (median) | ratio |",
            "|---|---:|---:|---:|---:|",
            f"| bare forward ({timing['batches']} batches, {timing['tokens']} tokens) "
            f"| {timing['forward_s']:.3f} s | 1.00 | {timing['forward_cpu_s']:.3f} s | 1.00 |",
            f"| `collect` | {timing['collect_s']:.3f} s | **{timing['ratio']:.3f}** "
            f"| {timing['collect_cpu_s']:.3f} s | **{timing['ratio_cpu']:.3f}** |",
            f"| `collect(sequence_stats=True)` | {timing['collect_seq_s']:.3f} s "
            f"| {timing['ratio_seq']:.3f} | {timing['collect_seq_cpu_s']:.3f} s "
            f"| {timing['ratio_seq_cpu']:.3f} |",
            f"| `collect(site='resid')` | {timing['collect_resid_s']:.3f} s "
            f"| {timing['ratio_resid']:.3f} | | {timing['ratio_resid_cpu']:.3f} |",
            "",
            f"Medians of {config['repeats']} interleaved rounds after a warm-up; median of the "
            f"per-round wall ratios: {timing['ratio_round_median']:.3f}; ratio of the fastest "
            f"rounds: wall {timing['ratio_min']:.3f}, CPU {timing['ratio_cpu_min']:.3f}. "
            "Target: ratio <= 1.10.",
            "",
        ]
    if memory is not None:
        lines += [
            "| corpus | texts | tokens | peak, bare forward | peak, `collect` "
            "| `collect` - forward | growth in `collect` | stats tensors |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in memory:
            lines.append(
                f"| {row['scale']}x | {row['texts']} | {row['tokens']} "
                f"| {row['forward_peak_mib']:.0f} MiB | {row['peak_mib']:.0f} MiB "
                f"| {row['over_forward_mib']:+.1f} MiB | {row['growth_mib']:+.1f} MiB "
                f"| {row['stats_bytes'] / 2**20:.2f} MiB |"
            )
        lines += [
            "",
            f"Peak resident memory ({memory[0]['peak_source']}) during a bare forward pass over "
            "the corpus, then during `collect` over it, in a fresh process per size; growth: "
            "`collect`'s peak above the resident memory just before it. Target: flat from 1x "
            "to 10x.",
        ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command-line options (``--d-mlp`` defaults to 2.75 x ``--d-model``, rounded to 64)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--d-model", type=int, default=1024)
    parser.add_argument("--d-mlp", type=int, default=None, help="default: 2.75 x d_model")
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--kv-heads", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--groups", type=int, default=4)
    parser.add_argument("--texts", type=int, default=2, help="texts per group (timing)")
    parser.add_argument("--mem-texts", type=int, default=2,
                        help="texts per group of the 1x memory corpus (10x: ten times as many)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--scale", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.d_mlp is None:
        args.d_mlp = int(round(args.d_model * 2.75 / 64)) * 64
    if args.mem_texts * args.groups < args.batch_size and not args.memory_child:
        print(f"warning: the 1x memory corpus ({args.mem_texts * args.groups} texts) fills no "
              f"batch of {args.batch_size}; the 10x one does, so its peak is higher for that "
              "reason alone.", file=sys.stderr)
    return args


def main(argv: list[str] | None = None) -> None:
    """Run the timing, then the memory subprocesses; print (and optionally save) the results."""
    args = parse_args(argv)
    if args.memory_child:
        print(json.dumps(memory_child(args)))
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    config = {k: getattr(args, k) for k in ("layers", "d_model", "d_mlp", "heads", "kv_heads",
                                             "vocab", "seq_len", "batch_size", "groups",
                                             "texts", "mem_texts", "repeats", "device")}
    config["threads"] = torch.get_num_threads()
    config["torch"] = torch.__version__
    timing = None
    if not args.skip_timing:
        with tempfile.TemporaryDirectory(prefix="collect-bench-tok-") as folder:
            model = build_model(args, folder)
            corpus = ln.Corpus.from_texts(make_texts(model, args, args.texts))
            timing = time_overhead(model, corpus, args)
        del model
    memory = None if args.skip_memory else measure_memory(args)
    print(markdown(config, timing, memory))
    if args.json is not None:
        args.json.write_text(json.dumps({"config": config, "timing": timing, "memory": memory},
                                        indent=2) + "\n")


if __name__ == "__main__":
    main()
