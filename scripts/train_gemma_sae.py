"""Train the shipped SAE on one layer of Gemma 3 270M and measure its reconstruction.

Trains a top-k SAE (2048 latents, k = 32) on ``blocks.12.hook_resid_post`` (the residual stream
after block 12 of 18, the same kind of hook as the organism SAE's) with the package's trainer
``ln.sae.train_sae``, over the real-statistics *training* lines of all 14 languages
(``real_stats.texts()[0]``: each language's first lines, one line per sequence, until it has
``--tokens-per-language`` tokens). It saves the SAE in the SAELens format to
``lensneurons/data/sae/gemma-3-270m-l12/`` with the weights stored in float16 (``SAE.load``
reads them back as float32), then reports on held-out lines (``real_stats.texts()[1]``, never
trained on):

* fraction of variance explained (around the held-out mean), mean L0, dead latents;
* the mean next-token NLL with the SAE's reconstruction *without* its error term spliced in at
  every position after BOS, against the model's own NLL and a mean-ablation baseline (the
  fraction of the NLL increase of mean ablation that the reconstruction recovers);
* the same with the error term kept (the package's latent hook with no latent edited):
  identical to the model's own output, bit for bit.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/train_gemma_sae.py [--overwrite] [--report-only]

About 12 minutes on one CPU core (gathering and training 8 min, evaluation 4 min).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors.torch import load_file, save_file

import lensneurons as ln
from lensneurons.sae.hooks import LatentHook
from lensneurons.sae.sae import WEIGHTS_FILE
from lensneurons.sae.train import gather
from lensneurons.subjects import real_stats

LAYER = 12
HOOK = f"blocks.{LAYER}.hook_resid_post"
SAE_DIR = Path(ln.__file__).resolve().parent / "data" / "sae" / f"gemma-3-270m-l{LAYER}"
#: Held-out lines per language for the reconstruction and NLL report.
N_EVAL_LINES = 50


def first_lines(lines: list[str], tokenizer: Any, budget: int) -> list[str]:
    """The first ``lines`` whose tokens (without BOS) add up to at least ``budget``."""
    total = 0
    for n, line in enumerate(lines, 1):
        total += len(tokenizer(line, add_special_tokens=False)["input_ids"])
        if total >= budget:
            return lines[:n]
    return list(lines)


def save_half(sae: ln.SAE, folder: Path, *, overwrite: bool) -> None:
    """Save ``sae`` with ``SAE.save`` and store its weights as float16 (half the size)."""
    sae.save(folder, overwrite=overwrite)
    path = folder / WEIGHTS_FILE
    tensors = load_file(str(path))
    for key, value in tensors.items():
        if value.abs().max() >= torch.finfo(torch.float16).max:
            raise SystemExit(f"{key} does not fit in float16; save it in float32.")
    save_file({k: v.half().contiguous() for k, v in tensors.items()}, str(path))


def splice(sae: ln.SAE, replacement: torch.Tensor | None = None):
    """A hook that replaces the activation after BOS by the SAE's reconstruction (no error term).

    With ``replacement`` (a ``[d_in]`` vector) it writes that vector instead (mean ablation).
    Position 0 (BOS) keeps its activation: the SAE was not trained on it.
    """
    def hook(x: torch.Tensor, *, hook: Any) -> torch.Tensor:
        out = x.clone()
        if replacement is None:
            out[:, 1:] = sae.decode(sae.encode(x[:, 1:])).to(x.dtype)
        else:
            out[:, 1:] = replacement.to(x.dtype)
        return out
    return hook


def reconstruction(sae: ln.SAE, acts: torch.Tensor, groups: torch.Tensor,
                   names: list[str]) -> dict[str, Any]:
    """Fraction of variance explained (pooled and per group), mean L0 and latents never active."""
    f = sae.encode(acts)
    err = (sae.decode(f) - acts).square().sum(1)
    var = (acts - acts.mean(0)).square().sum(1)
    per_group = {g: 1 - (err[groups == i].sum() / var[groups == i].sum()).item()
                 for i, g in enumerate(names)}
    return {"tokens": len(acts), "fve": 1 - (err.sum() / var.sum()).item(),
            "fve_per_language": per_group, "l0": f.gt(0).sum(1).float().mean().item(),
            "never_active": int(f.gt(0).sum(0).eq(0).sum())}


def heldout_activations(model: Any, held: dict[str, list[str]]) -> tuple[torch.Tensor,
                                                                           torch.Tensor]:
    """The hook's activations on the held-out lines and each token's language index."""
    acts, groups = [], []
    for i, lines in enumerate(held.values()):
        x = gather(model, ln.Corpus.from_texts({"g": lines}), HOOK)
        acts.append(x)
        groups.append(torch.full((len(x),), i))
    return torch.cat(acts), torch.cat(groups)


def main() -> None:
    """Train, save (float16), and report reconstruction and NLL on held-out lines."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens-per-language", type=int, default=8000)
    parser.add_argument("--d-sae", type=int, default=2048)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--report-only", action="store_true", help="skip training")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.time()
    model = ln.models.load("gemma-3-270m", dtype=torch.float32, progress=False)
    train, held = real_stats.texts()
    trained = None
    if not args.report_only:
        lines = {g: first_lines(train[g], model.tokenizer, args.tokens_per_language)
                 for g in real_stats.LANGUAGES}
        print("training lines per language:", {g: len(v) for g, v in lines.items()})
        began = time.time()
        sae = ln.sae.train_sae(model, ln.Corpus.from_texts(lines), HOOK, d_sae=args.d_sae,
                               activation="topk", k=args.k, steps=args.steps, lr=args.lr,
                               name=SAE_DIR.name, progress=False)
        meta = sae.cfg["metadata"]
        meta["model_name"] = "google/gemma-3-270m"  # the TL / HF name, as SAELens writes it
        meta["training"].pop("l1")  # the trainer records it; a top-k SAE has no L1 penalty
        meta["training"].update(
            lr=args.lr, batch_size=512,
            corpus=(f"real_stats.texts()[0] (training lines), each language's first lines up to "
                    f"{args.tokens_per_language} tokens, one line per sequence"),
            lines_per_language={g: len(v) for g, v in lines.items()},
            weights_dtype="float16")
        print(f"trained in {time.time() - began:.0f} s: {meta['training']}")
        save_half(sae, SAE_DIR, overwrite=args.overwrite)
        trained = sae
    sae = ln.SAE.load(SAE_DIR)
    size = sum(p.stat().st_size for p in SAE_DIR.iterdir())
    print(f"{sae}; folder {size / 1e6:.2f} MB")

    began = time.time()
    held = {g: held[g][:N_EVAL_LINES] for g in real_stats.LANGUAGES}
    acts, groups = heldout_activations(model, held)
    report = reconstruction(sae, acts, groups, list(held))
    print(f"held-out ({N_EVAL_LINES} lines per language, {report['tokens']} tokens): "
          f"FVE {report['fve']:.3f}, L0 {report['l0']:.1f}, "
          f"latents never active {report['never_active']} of {sae.d_sae}")
    print("FVE per language:", {g: round(v, 3) for g, v in report["fve_per_language"].items()})
    if trained is not None:
        full = reconstruction(trained, acts, groups, list(held))
        print(f"float32 weights before saving: FVE {full['fve']:.4f} (float16: "
              f"{report['fve']:.4f})")

    corpus = ln.Corpus.from_texts(held)
    identity = LatentHook(sae, torch.arange(sae.d_sae), lambda f, *, hook: f)
    runs = {"model": [], "error term kept": [(HOOK, identity)],
            "reconstruction": [(HOOK, splice(sae))],
            "mean ablation": [(HOOK, splice(sae, acts.mean(0)))]}
    results = {name: ln.perplexity(model, corpus, fwd_hooks=hooks, progress=False).table()
               for name, hooks in runs.items()}
    table = pd.DataFrame({name: r["mean_nll"] for name, r in results.items()})
    n_tok = results["model"]["n_tokens"]
    pooled = {k: float((v * n_tok).sum() / n_tok.sum()) for k, v in table.items()}
    print("mean NLL per language (nats):")
    print(table.round(4).to_string())
    print("pooled:", {k: round(v, 4) for k, v in pooled.items()})
    recovered = ((pooled["mean ablation"] - pooled["reconstruction"])
                 / (pooled["mean ablation"] - pooled["model"]))
    print(f"ΔNLL reconstruction {pooled['reconstruction'] - pooled['model']:+.4f}, "
          f"error term kept {pooled['error term kept'] - pooled['model']:+.6f}, "
          f"mean ablation {pooled['mean ablation'] - pooled['model']:+.4f}; "
          f"NLL increase recovered {recovered:.3f}")

    tokens = model.to_tokens(["Le chat dort sur le canapé.", "Кошка спит на диване."])
    with torch.inference_mode():
        plain = model(tokens)
        with model.hooks(fwd_hooks=[(HOOK, identity)]):
            kept = model(tokens)
    print(f"error term kept: max |Δlogit| {float((kept - plain).abs().max()):.2e}")
    print(f"evaluation {time.time() - began:.0f} s; whole script {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
