"""Train the shipped tuned lens of Gemma 3 270M (run once; about 15 minutes on a 2-core CPU).

    LENSNEURONS_CACHE=/tmp/lncache .venv/bin/python scripts/train_gemma_tuned_lens.py

Trains :class:`lensneurons.lens.TunedLens` on the training lines of the gettext catalogs
(:func:`lensneurons.subjects.real_stats.texts`, 14 languages) with the vocabulary-restricted KL
(``vocab_subset``: Gemma's 262,144-token unembedding makes the exact loss ~45 s per step here),
then measures the per-layer KL(p_final || p_layer) over the *full* vocabulary on held-out lines for
the logit lens and the tuned lens, and saves the lens in bf16 with the settings and those figures
in its JSON (``lensneurons/data/real/gemma-3-270m/tuned_lens/``).

``--validate`` evaluates on training lines that training did not use instead of the held-out
lines and saves nothing: use it to choose settings without looking at the held-out text.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch

import lensneurons.subjects.models
from lensneurons.corpora.gettext import texts_digest
from lensneurons.lens import TunedLens, readout_fn
from lensneurons.lens.tuned import _forward
from lensneurons.subjects import real_stats

NAME = "gemma-3-270m"


def parse() -> argparse.Namespace:
    """Command-line settings (the defaults are the shipped lens's)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--train-minutes", type=float, default=10.0,
                   help="stop training after this much wall time, whatever --steps says")
    p.add_argument("--lr", type=float, default=1e-3, help="decayed linearly to 0")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--positions", type=int, default=256, help="positions read per step")
    p.add_argument("--vocab-subset", type=int, default=64, help="top-K of p_final per position")
    p.add_argument("--frequent", type=int, default=1024, help="most frequent tokens in every V'")
    p.add_argument("--tail-samples", type=int, default=2048)
    p.add_argument("--lines", type=int, default=600, help="training lines per language")
    p.add_argument("--eval-positions", type=int, default=20, help="per language")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--validate", action="store_true",
                   help="evaluate on unused training lines, save nothing")
    p.add_argument("--out", type=Path, default=real_stats.data_dir(NAME) / "tuned_lens")
    return p.parse_args()


def training_lines(train: dict[str, list[str]], n: int, seed: int) -> list[str]:
    """The first ``n`` training lines of every language, shuffled together (mixed windows)."""
    lines = [line for lang in real_stats.LANGUAGES for line in train[lang][:n]]
    random.Random(seed).shuffle(lines)
    return lines


def evaluate(model, lens: TunedLens, lines: dict[str, list[str]], per_language: int,
             chunk: int = 256) -> dict:
    """Mean full-vocabulary KL(p_final || p_layer) per lens layer, logit lens vs ``lens``.

    Every line is its own sequence (BOS + line); all positions but BOS are read, the lines of
    each language in order until ``per_language`` positions. The residuals of all positions are
    read together (streaming the 262k-row unembedding is the cost, so rows are batched).
    """
    read = readout_fn(model)
    n_layers = lens.n_layers
    resid: list[list[torch.Tensor]] = [[] for _ in range(n_layers)]
    targets = []
    for lang in real_stats.LANGUAGES:
        left = per_language
        for line in lines[lang]:
            if left <= 0:
                break
            tokens = model.to_tokens(line)[:, : left + 1]
            if tokens.shape[1] < 2:
                continue
            states, logits = _forward(model, tokens)
            for layer in range(n_layers):
                resid[layer].append(states[layer][1:])
            targets.append(logits[1:].float().log_softmax(-1))
            left -= tokens.shape[1] - 1
    target = torch.cat(targets)
    count = len(target)
    sums = {"logit": torch.zeros(n_layers), "tuned": torch.zeros(n_layers)}
    with torch.no_grad():
        for layer in range(n_layers):
            h = torch.cat(resid[layer])
            for name, x in (("logit", h), ("tuned", lens(h, layer))):
                for s in range(0, count, chunk):
                    logq = read(x[s : s + chunk]).float().log_softmax(-1)
                    t = target[s : s + chunk]
                    sums[name][layer] += (t.exp() * (t - logq)).sum()
    return {
        "what": "mean KL(p_final || p_layer) in nats over the full vocabulary; layer l = input of "
                "block l (0 = embeddings); every line its own sequence, all positions but BOS",
        "layers": list(range(n_layers)),
        "logit": [round(float(v / count), 4) for v in sums["logit"]],
        "tuned": [round(float(v / count), 4) for v in sums["tuned"]],
        "n_positions": count,
        "positions_per_language": per_language,
        "languages": list(real_stats.LANGUAGES),
    }


def main() -> None:
    """Train, evaluate, save."""
    args = parse()
    torch.set_num_threads(2)
    start = time.monotonic()
    train, heldout = real_stats.texts()
    model = lensneurons.subjects.models.load(NAME, dtype=torch.float32)
    lines = training_lines(train, args.lines, args.seed)
    print(f"{len(lines)} training lines; loaded in {time.monotonic() - start:.0f} s", flush=True)

    def progress(step: int, loss: float) -> None:
        if step % 5 == 0:
            print(f"step {step:4d}  loss {loss:.4f}  {time.monotonic() - start:6.0f} s", flush=True)

    lens = TunedLens.fit(model, lines, steps=args.steps, lr=args.lr, batch_size=args.batch_size,
                         seq_len=args.seq_len, max_seconds=60 * args.train_minutes,
                         seed=args.seed, vocab_subset=args.vocab_subset,
                         frequent_tokens=args.frequent, tail_samples=args.tail_samples,
                         positions_per_step=args.positions, lr_decay=True, callback=progress)
    info = lens.meta["training"]
    print(f"trained {info['steps']} steps in {info['seconds']:.0f} s, mean |V'| "
          f"{info['mean_subset_size']}", flush=True)
    if args.validate:
        evaluation = {lang: train[lang][args.lines:] for lang in real_stats.LANGUAGES}
    else:
        evaluation = heldout
    t0 = time.monotonic()
    kl = evaluate(model, lens, evaluation, args.eval_positions)
    kl["split"] = "unused training lines (validation)" if args.validate else \
        "held-out lines of lensneurons.subjects.real_stats.texts()"
    kl["seconds"] = round(time.monotonic() - t0, 1)
    print(f"\n{kl['split']}: {kl['n_positions']} positions, {kl['seconds']:.0f} s")
    print(f"{'layer':>5} {'logit':>9} {'tuned':>9}")
    for layer, a, b in zip(kl["layers"], kl["logit"], kl["tuned"], strict=True):
        print(f"{layer:5d} {a:9.3f} {b:9.3f}")
    info.update({"lines_per_language": args.lines, "train_digest": texts_digest(train),
                 "source": "gettext catalogs (ln.real_stats.texts, training lines)",
                 "threads": torch.get_num_threads()})
    lens.meta["heldout_kl"] = kl
    print(f"total {time.monotonic() - start:.0f} s")
    if args.validate:
        print(json.dumps(info))
        return
    lens.save(args.out, dtype=torch.bfloat16, overwrite=True)
    size = sum(f.stat().st_size for f in args.out.iterdir())
    print(f"saved {args.out} ({size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
