"""Logit lens over all layers at the last position vs a bare forward pass, in the same run.

Target (docs/design.md §15): ratio <= 1.5. Models: a mid-size random Llama bridge (8 layers,
d_model 512, vocabulary 32k) and the organism when its weights are present.

Decoders (``--decoders``): ``latent_language`` on the same translation prompts with the logit
lens, the patchscope (``lens="patchscope"``) and a tuned lens (the shipped one for a real model
that has it, else an untrained one: the same cost), timed in interleaved rounds of the same run
and reported as ratios to the logit lens. Target: patchscope <= 2x the logit lens.

Usage:
    python benchmarks/lens_overhead.py [--repeats 5]
    python benchmarks/lens_overhead.py --decoders [--model organism|gemma-3-270m] [--items 32]
        [--threads 1] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

import torch
from _timing import median_seconds, timed

from lensneurons.lens import TunedLens, latent_language, logit_lens, prompts


def _tokenizer_folder() -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "</s>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(["The cat sleeps on the mat."] * 4, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>")
    folder = tempfile.mkdtemp(prefix="lens-bench-tok-")
    fast.save_pretrained(folder)
    return folder


def random_llama(vocab: int = 32_000, d_model: int = 512, n_layers: int = 8):
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=vocab, hidden_size=d_model, intermediate_size=4 * d_model,
                      num_hidden_layers=n_layers, num_attention_heads=8, num_key_value_heads=8,
                      max_position_embeddings=512, bos_token_id=0, eos_token_id=1,
                      pad_token_id=2)
    torch.manual_seed(0)
    hf = LlamaForCausalLM(cfg).eval()
    tok = AutoTokenizer.from_pretrained(_tokenizer_folder())
    return TransformerBridge.boot_transformers("bench-llama", hf_model=hf, tokenizer=tok,
                                               device="cpu", dtype=torch.float32).eval()


def measure(name: str, model, *, batch: int, seq: int, repeats: int) -> dict:
    vocab = int(model.cfg.d_vocab)
    tokens = torch.randint(3, min(vocab, 4000), (batch, seq))
    depths = list(range(1, model.cfg.n_layers + 1))  # every block's output
    with torch.no_grad():
        bare = median_seconds(lambda: model(tokens), repeats)
        lens = median_seconds(lambda: logit_lens(model, tokens, depths=depths, top_k=10,
                                                  token_sets={"s": [5, 6, 7]}), repeats)
    return {"model": name, "layers": model.cfg.n_layers, "vocab": vocab, "batch": batch,
            "seq": seq, "forward_s": bare, "lens_s": lens, "ratio": lens / bare}


def decoders(name: str, model, *, items: int, repeats: int, batch_size: int = 8) -> dict:
    """``latent_language`` with the logit lens, the patchscope and a tuned lens, same prompts."""
    from lensneurons.subjects import real_stats

    pool = prompts.translation(src="fr", tgt="de", seed=0)[:items]
    tuned, tuned_kind = TunedLens.from_model(model), "untrained"
    try:
        folder = real_stats.data_dir(name) / "tuned_lens"
        if folder.exists():
            tuned, tuned_kind = TunedLens.load(folder, model), "shipped"
    except Exception:  # noqa: BLE001 - no shipped data for this model: the untrained lens
        pass
    runs = {"logit lens": None, "patchscope": "patchscope", f"tuned lens ({tuned_kind})": tuned}

    def call(lens):
        return latent_language(model, pool, lens=lens, batch_size=batch_size)

    for lens in runs.values():  # warm-up
        result = call(lens)
    wall: dict[str, list[float]] = {k: [] for k in runs}
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(repeats):  # interleaved rounds
        for key, lens in runs.items():
            w, c = timed(lambda lens=lens: call(lens))
            wall[key].append(w)
            cpu[key].append(c)
    lengths = [len(model.to_tokens(it.prompt)[0]) for it in result.items]
    row = {"model": name, "layers": model.cfg.n_layers, "vocab": int(model.cfg.d_vocab),
           "items": result.n_items, "prompt_tokens": statistics.mean(lengths),
           "threads": torch.get_num_threads()}
    for what, times in (("wall", wall), ("cpu", cpu)):
        median = {k: statistics.median(v) for k, v in times.items()}
        row[what] = median
        row[f"{what}_ratio"] = {k: v / median["logit lens"] for k, v in median.items()}
    return row


def print_decoders(row: dict) -> None:
    print(f"\n{row['model']}: {row['layers']} layers, vocabulary {row['vocab']}, {row['items']} "
          f"prompts of {row['prompt_tokens']:.0f} tokens on average, {row['threads']} thread(s)")
    print(f"{'decoder':28s} {'wall s':>8s} {'ratio':>6s} {'CPU s':>8s} {'ratio':>6s}")
    for key in row["wall"]:
        print(f"{key:28s} {row['wall'][key]:8.3f} {row['wall_ratio'][key]:6.2f} "
              f"{row['cpu'][key]:8.3f} {row['cpu_ratio'][key]:6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--decoders", action="store_true",
                        help="only the decoder comparison (logit lens, patchscope, tuned lens)")
    parser.add_argument("--model", default="organism")
    parser.add_argument("--items", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.decoders:
        import lensneurons as ln

        model = (ln.organism.load() if args.model == "organism"
                 else ln.models.load(args.model, progress=False))
        print_decoders(decoders(args.model, model, items=args.items, repeats=args.repeats))
        return
    rows = [measure("random llama 8x512, 32k vocab", random_llama(), batch=8, seq=128,
                    repeats=args.repeats)]
    try:
        from lensneurons.subjects import organism

        if list(organism.organism_dir().glob("*.safetensors")):
            rows.append(measure("organism", organism.load(), batch=8, seq=64,
                                repeats=args.repeats))
        else:
            print("(organism weights not present: skipped)")
    except ImportError:
        print("(lensneurons.subjects.organism missing: skipped)")
    print(f"{'model':34s} {'L':>3s} {'vocab':>6s} {'B x T':>8s} {'forward':>9s} {'lens':>9s} "
          f"{'ratio':>6s}")
    for r in rows:
        print(f"{r['model']:34s} {r['layers']:3d} {r['vocab']:6d} {r['batch']:>3d} x {r['seq']:<3d}"
              f" {r['forward_s'] * 1e3:7.1f}ms {r['lens_s'] * 1e3:7.1f}ms {r['ratio']:6.2f}")


if __name__ == "__main__":
    main()
