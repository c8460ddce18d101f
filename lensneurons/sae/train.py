"""A short trainer for small sparse autoencoders on one TransformerLens hook point.

It gathers the hook's activations on the counted tokens of a corpus once (one forward pass per
batch, stopped at the hook), then trains in memory:

* ``activation="relu"``: ``f = relu((x − b_dec) W_enc + b_enc)``, loss = squared error summed
  over dimensions + ``l1`` · Σ_j f_j ‖W_dec[j]‖ (the decoder-norm-weighted L1 of Anthropic's
  April 2024 update, so shrinking decoder rows cannot cheat the penalty);
* ``activation="topk"``: only the ``k`` largest pre-activations are kept; loss = squared error.

Activations are scaled to mean norm ``sqrt(d_in)`` while training and the scale is folded back into
the weights, so the saved SAE reads raw activations (``normalize_activations="none"``). The
encoder starts as the transposed decoder, ``b_dec`` at the data mean. Meant for the organism and
small models (everything fits in memory), not as a replacement for SAELens's trainer.

Examples:
    >>> import lensneurons as ln
    >>> model = ln.organism.load()
    >>> texts = {g: t[:4] for g, t in ln.organism.texts("train").items()}
    >>> sae = ln.sae.train_sae(model, ln.Corpus.from_texts(texts), "blocks.1.hook_resid_post",
    ...                        d_sae=64, steps=20, progress=False)
    >>> sae.d_in, sae.d_sae
    (128, 64)
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from tqdm.auto import tqdm

from lensneurons.core import checks as _checks
from lensneurons.core.model import ModelView
from lensneurons.core.sites import flatten_heads
from lensneurons.corpora.corpus import Corpus
from lensneurons.errors import ParameterError, UnknownSiteError
from lensneurons.sae.sae import SAE


def gather(model: Any, corpus: Corpus, hook_name: str, *, batch_size: int = 16,
           max_tokens: int | None = None) -> torch.Tensor:
    """The activations ``[token, d_in]`` (float32, CPU) at ``hook_name`` on the counted tokens."""
    view = ModelView(model)
    if hook_name not in view.model.hook_dict:
        raise UnknownSiteError(f"{view.architecture} has no hook point {hook_name!r}; see "
                               "model.hook_dict for the names.")
    rows: list[torch.Tensor] = []
    counted: list[torch.Tensor] = []

    def keep(x: torch.Tensor, *, hook: Any) -> None:
        rows.append(flatten_heads(x).detach().float().cpu())

    tokenized = corpus.tokenize(view).limit(max_tokens)
    with torch.inference_mode(), view.model.hooks(fwd_hooks=[(hook_name, keep)]):
        for batch in tokenized.batches(batch_size):
            view.run_until(batch.tokens.to(view.input_device), hook_name)
            counted.append(batch.counted)
    return torch.cat([x[mask] for x, mask in zip(rows, counted)])


def train_sae(
    model: Any, corpus: Corpus, hook_name: str, *, d_sae: int = 1024,
    activation: Literal["relu", "topk"] = "relu", l1: float = 5.0, k: int = 32,
    steps: int = 3000, batch_size: int = 512, lr: float = 1e-3, seed: int = 0,
    name: str | None = None, progress: bool = True,
) -> SAE:
    """Train an SAE on the activations at ``hook_name`` over ``corpus``'s counted tokens.

    Args:
        model: a TransformerLens model.
        corpus: the training texts.
        hook_name: the TL hook point, e.g. ``"blocks.2.hook_resid_post"``.
        d_sae: number of latents.
        activation: ``"relu"`` (L1 penalty ``l1``) or ``"topk"`` (``k`` latents per token).
        l1: the sparsity coefficient of ReLU SAEs (on activations scaled to norm ``sqrt(d_in)``).
        k: latents kept per token by top-k SAEs.
        steps: optimiser steps (Adam), each on ``batch_size`` random tokens.
        batch_size: tokens per step.
        lr: learning rate, decayed linearly to zero over the last fifth of the steps.
        seed: seed of the initialisation and the token order.
        name: the SAE's name (default: the hook name).
        progress: show a progress bar.

    Returns:
        The trained :class:`SAE`, with its final mean L0, explained variance and dead-latent
        fraction in ``sae.cfg["metadata"]["training"]``.
    """
    if activation not in ("relu", "topk"):
        raise ParameterError(f"activation must be 'relu' or 'topk', got {activation!r}.")
    for value, what in ((d_sae, "d_sae"), (k, "k"), (steps, "steps"), (batch_size, "batch_size")):
        _checks.positive_int(value, what)
    for value, what in ((l1, "l1"), (lr, "lr")):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ParameterError(f"{what} must be a positive number, got {value!r}.")
    _checks.flag(progress, "progress")
    data = gather(model, corpus, hook_name)
    scale = data.shape[1] ** 0.5 / data.norm(dim=1).mean()
    data = data * scale
    gen = torch.Generator().manual_seed(seed)
    d_in = data.shape[1]
    w_dec = torch.randn(d_sae, d_in, generator=gen)
    w_dec = 0.1 * w_dec / w_dec.norm(dim=1, keepdim=True)
    params = {"W_dec": w_dec, "W_enc": w_dec.t().clone(), "b_enc": torch.zeros(d_sae),
              "b_dec": data.mean(0)}
    for p in params.values():
        p.requires_grad_(True)
    opt = torch.optim.Adam(params.values(), lr=lr, betas=(0.9, 0.999))
    decay = max(1, steps // 5)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (steps - s) / decay))
    for _ in tqdm(range(steps), desc="train SAE", disable=not progress):
        x = data[torch.randint(0, len(data), (batch_size,), generator=gen)]
        f, recon = _forward(params, x, activation, k)
        loss = (recon - x).square().sum(1).mean()
        if activation == "relu":
            loss = loss + l1 * (f * params["W_dec"].norm(dim=1)).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        f, recon = _forward(params, data, activation, k)
        report = {"tokens": len(data), "steps": steps, "l0": f.gt(0).sum(1).float().mean().item(),
                  "explained_variance": 1 - ((recon - data).square().sum()
                                             / (data - data.mean(0)).square().sum()).item(),
                  "dead_fraction": f.gt(0).sum(0).eq(0).float().mean().item()}
        p = {key: v.detach() for key, v in params.items()}
    meta = {"hook_name": hook_name, "model_name": ModelView(model).architecture,
            "training": {**report, "activation": activation, "l1": l1, "k": k, "seed": seed}}
    # Fold the training scale back: x' = s·x, so W_enc = s·W_enc', W_dec = W_dec'/s, b_dec/s.
    return SAE(p["W_enc"] * scale, p["b_enc"], p["W_dec"] / scale, p["b_dec"] / scale,
               hook_name=hook_name, activation=activation,
               k=k if activation == "topk" else None, name=name,
               cfg={"metadata": meta})


def _forward(p: dict[str, torch.Tensor], x: torch.Tensor, activation: str,
             k: int) -> tuple[torch.Tensor, torch.Tensor]:
    pre = (x - p["b_dec"]) @ p["W_enc"] + p["b_enc"]
    if activation == "topk":
        top = pre.topk(k, dim=-1)
        f = torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu())
    else:
        f = pre.relu()
    return f, f @ p["W_dec"] + p["b_dec"]
