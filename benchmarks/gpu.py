"""One command for a GPU machine: lensneurons on a 7B-shaped random Llama in bf16, and torchrun.

What it measures, in one run on one GPU (ratios against passes of the same run):

1. ``collect`` (counts only, and with every statistic) against the bridge's pass over the
   blocks it needs, and against a full forward pass;
2. ``perplexity`` against a full forward pass;
3. ``logit_lens`` over every layer at the last position of 32 prompts, against a forward pass
   over the same prompts;
4. greedy generation under hooks on 1% of the MLP units (``ln.amplify`` by 1: the same
   continuations) against generation without hooks;
5. ``collect`` under ``torchrun --nproc-per-node 1`` (a process group over NCCL, the counts
   all-reduced through it) on a small model of the same shape family, checked equal to the same
   collection without torchrun (on the CPU: two ranks over gloo, which splits the batches).

The model is a random ``LlamaForCausalLM`` of Llama-2-7B's shape (32 layers, d_model 4096,
d_mlp 11008, 32 heads, vocabulary 32000), made on the GPU in bf16 (13.5 GB), with a byte-level BPE
tokenizer trained in the script: nothing is downloaded. About 3-5 minutes on an H100.

Usage:
    python benchmarks/gpu.py [--json gpu.json]
    python benchmarks/gpu.py --device cpu --layers 2 --d-model 256 --d-mlp 704 --heads 4 \\
        --vocab 4000 --texts 4 --seq-len 64   # a smoke test without a GPU (torchrun over gloo)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import timed  # noqa: E402
from collect_overhead import build_tokenizer, make_texts  # noqa: E402

import lensneurons as ln  # noqa: E402
from lensneurons.evaluate import generate  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--layers", type=int, default=32)
    p.add_argument("--d-model", type=int, default=4096)
    p.add_argument("--d-mlp", type=int, default=11008)
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--groups", type=int, default=4)
    p.add_argument("--texts", type=int, default=32, help="texts per group")
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--torchrun-child", type=Path, default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def build(args: argparse.Namespace, folder: str, *, layers: int | None = None) -> Any:
    """The random Llama (seed 0) in bf16 on ``args.device`` (fp32 on the CPU), as a bridge."""
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer(min(args.vocab, 8000), args.groups, folder)
    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    cfg = LlamaConfig(
        vocab_size=max(args.vocab, len(tokenizer)), hidden_size=args.d_model,
        intermediate_size=args.d_mlp, num_hidden_layers=layers or args.layers,
        num_attention_heads=args.heads, num_key_value_heads=args.heads,
        max_position_embeddings=max(1024, args.seq_len), bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    with torch.device(args.device):
        hf = LlamaForCausalLM(cfg).to(dtype).eval()
    return TransformerBridge.boot_transformers("bench-llama-7b-shape", hf_model=hf,
                                               tokenizer=tokenizer, device=args.device,
                                               dtype=dtype).eval()


def torchrun_check(args: argparse.Namespace, folder: str) -> dict[str, Any]:
    """``collect`` under ``torchrun`` equals it without torchrun.

    On a GPU: one process (one GPU), a process group over NCCL, and the statistics all-reduced
    through it. On the CPU: two processes over gloo, so ``collect`` splits the batches between
    ranks and merges them (its multi-rank path).
    """
    small = argparse.Namespace(**{**vars(args), "layers": 2})
    model = build(small, folder, layers=2)
    corpus = ln.Corpus.from_texts(make_texts(model, small, 8))
    alone = ln.collect(model, corpus, value_stats=False, progress=False, distributed=False)
    out = Path(folder) / "torchrun.json"
    ranks = "1" if args.device.startswith("cuda") else "2"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", ranks, __file__, *sys.argv[1:], "--torchrun-child", str(out)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if run.returncode != 0:
        return {"ok": False, "error": run.stderr[-2000:]}
    child = json.loads(out.read_text())
    return {"ok": child["active"] == alone.active.tolist(), "ranks": int(ranks), **{
        k: child[k] for k in ("backend", "batches_per_rank")}}


def torchrun_child(args: argparse.Namespace) -> None:
    """Inside torchrun: the same small collection over the process group."""
    import torch.distributed as dist

    with tempfile.TemporaryDirectory() as folder:
        small = argparse.Namespace(**{**vars(args), "layers": 2})
        model = build(small, folder, layers=2)
        corpus = ln.Corpus.from_texts(make_texts(model, small, 8))
        if not dist.is_initialized():  # one rank: lensneurons would collect alone
            backend = "nccl" if args.device.startswith("cuda") else "gloo"
            dist.init_process_group(backend=backend)
        stats = ln.collect(model, corpus, value_stats=False, progress=False)
        active = stats.active.to(args.device)
        if dist.get_world_size() == 1:  # one GPU: the merge is an all-reduce over NCCL
            dist.all_reduce(active)
        if dist.get_rank() == 0:
            args.torchrun_child.write_text(json.dumps({
                "active": active.cpu().tolist(), "backend": str(dist.get_backend()),
                "batches_per_rank": stats.meta.get("batches_per_rank")}))
        dist.destroy_process_group()


def lens_forward(model: Any, tokens: torch.Tensor) -> None:
    """A forward pass over the lens's prompts (the lens's reference), output dropped."""
    with torch.inference_mode():
        model(tokens)


def measure(args: argparse.Namespace, folder: str) -> dict[str, Any]:
    """Every timed pass on the 7B-shaped model: medians, ratios, tokens per second."""
    model = build(args, folder)
    view = ln.ModelView(model)
    corpus = ln.Corpus.from_texts(make_texts(model, args, args.texts))
    batches = [b.tokens.to(args.device) for b in corpus.tokenize(model).batches(
        args.batch_size)]
    last = ln.get_site(model, "mlp").read_hook(view.n_layers - 1)
    prompts = [t[:200] for t in next(iter(corpus.items.values()))[:32]]
    prompt_tokens = model.to_tokens(prompts).to(args.device)
    stats = ln.collect(model, corpus, value_stats=False, progress=False)
    hooks = ln.amplify(ln.lape(stats, top_rate=0.01)[corpus.groups[0]], 1.0)
    gen_prompts = prompts[:8]

    def each(forward: Any) -> None:
        with torch.inference_mode():
            for tokens in batches:
                forward(tokens)

    runs = {
        "forward": lambda: each(model),
        "blocks": lambda: each(lambda t: view.run_until(t, last)),
        "collect_counts": lambda: ln.collect(model, corpus, batch_size=args.batch_size,
                                             value_stats=False, progress=False),
        "collect_all": lambda: ln.collect(model, corpus, batch_size=args.batch_size,
                                          progress=False),
        "perplexity": lambda: ln.perplexity(model, corpus, batch_size=args.batch_size,
                                            progress=False),
        "lens_forward": lambda: lens_forward(model, prompt_tokens),
        "lens": lambda: ln.logit_lens(model, prompts, top_k=1, batch_size=len(prompts)),
        "generate": lambda: generate(model, gen_prompts, [], max_new_tokens=args.new_tokens),
        "generate_hooks": lambda: generate(model, gen_prompts, hooks,
                                           max_new_tokens=args.new_tokens),
    }
    outputs = {name: fn() for name, fn in runs.items()}  # warm-up
    same_generation = outputs["generate"] == outputs["generate_hooks"]
    del outputs
    wall: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            wall[name].append(timed(fn, args.device)[0])
    med = {k: statistics.median(v) for k, v in wall.items()}
    ratios = {
        "collect_counts / blocks": med["collect_counts"] / med["blocks"],
        "collect_all / blocks": med["collect_all"] / med["blocks"],
        "collect_counts / forward": med["collect_counts"] / med["forward"],
        "perplexity / forward": med["perplexity"] / med["forward"],
        "lens / lens_forward": med["lens"] / med["lens_forward"],
        "generate_hooks / generate": med["generate_hooks"] / med["generate"],
    }
    n_tokens = sum(int(t.numel()) for t in batches)
    cuda = args.device.startswith("cuda")
    return {"device": torch.cuda.get_device_name() if cuda else "cpu", "layers": args.layers,
            "d_model": args.d_model, "tokens_per_pass": n_tokens, "wall_s": med,
            "ratios": ratios,
            "tokens_per_s": {k: n_tokens / med[k] for k in ("forward", "blocks",
                                                            "collect_counts", "collect_all",
                                                            "perplexity")},
            "same_generation_with_hooks": same_generation,
            "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
            "torch": torch.__version__}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.torchrun_child is not None:
        torchrun_child(args)
        return {}
    with tempfile.TemporaryDirectory() as folder:
        report = measure(args, folder)
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()  # the 7B model is gone with measure's frame
        report["torchrun"] = torchrun_check(args, folder)
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    if not (report["torchrun"]["ok"] and report["same_generation_with_hooks"]):
        sys.exit("gpu.py: torchrun's statistics or the continuations under hooks disagree.")
    return report


if __name__ == "__main__":
    main()
