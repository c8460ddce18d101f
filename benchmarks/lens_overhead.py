"""Logit lens over all layers at the last position vs a bare forward pass, in the same run.

Target (docs/design.md §15): ratio <= 1.5. Models: a mid-size random Llama bridge (8 layers,
d_model 512, vocabulary 32k) and the organism when its weights are present.

Usage: python benchmarks/lens_overhead.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import tempfile

import torch
from _timing import median_seconds

from lensneurons.lens import logit_lens


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
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
