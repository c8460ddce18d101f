"""The vocabulary-restricted readout and KL step of :meth:`TunedLens.fit` (``vocab_subset=K``).

Per step the candidate set ``V'`` is the union of the top-``K`` final tokens of every read
position, the true next tokens and the ``frequent_tokens``; both distributions are renormalised
over ``V'`` (optionally with one "rest of the vocabulary" bucket), and only the ``V'`` rows of the
unembedding are multiplied (:func:`subset_readout`). See :mod:`lensneurons.lens.tuned`.

Examples:
    >>> read = subset_readout(model, torch.tensor([3, 7]))  # doctest: +SKIP
    >>> read(torch.zeros(1, model.cfg.d_model)).shape  # doctest: +SKIP
    torch.Size([1, 2])
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from jaxtyping import Int
from torch import nn

from lensneurons.errors import ReadoutError
from lensneurons.lens.logit import _IDENTITY_RTOL


def subset_readout(model: Any, ids: Int[torch.Tensor, " n_ids"],
                   ) -> Callable[[torch.Tensor], torch.Tensor]:
    """The model's readout restricted to vocabulary ``ids``: only those unembedding rows.

    ``transform(ln_final(x) @ W_U[:, ids] + b_U[ids])`` with the final norm's statistics
    recomputed per vector; ``transform`` is the adapter's output transform on TL >= 4 (soft-caps,
    logit scales) or ``cfg.output_logits_soft_cap`` on TL 2.x. Columns equal those of
    :func:`~lensneurons.lens.logit.readout_fn` as long as the transform acts token by token;
    a transform that does not (up to a per-row shift, which no softmax sees) is refused.

    Args:
        model: a TransformerLens model.
        ids: token ids to read (``[n_ids]``, any order).

    Returns:
        A function ``Float[n, d_model] -> Float[n, n_ids]`` (grad flows when enabled).

    Raises:
        ReadoutError: no ``ln_final`` module for a declared final norm, or an output transform
            that mixes tokens.

    """
    norm_type = getattr(model.cfg, "normalization_type", None)
    ln_final = getattr(model, "ln_final", None) if norm_type is not None else None
    if norm_type is not None and not isinstance(ln_final, nn.Module):
        raise ReadoutError(
            f"The model declares normalization_type={norm_type!r} but has no ln_final module; "
            "the restricted readout cannot apply the final norm exactly."
        )
    transform = output_transform(model)
    w_u = model.W_U
    ids = ids.to(w_u.device)
    rows = w_u.detach().T.index_select(0, ids)  # [n_ids, d_model]
    b_u = getattr(model, "b_U", None)
    bias = b_u.detach().index_select(0, ids) if b_u is not None else None

    def read(x: torch.Tensor) -> torch.Tensor:
        h = x.to(rows.device, rows.dtype)
        if ln_final is not None:
            h = ln_final(h.unsqueeze(0)).squeeze(0)
        logits = nn.functional.linear(h, rows, bias)
        return transform(logits) if transform is not None else logits

    return read


# --- internals ---------------------------------------------------------------------------------
def output_transform(model: Any) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The post-unembedding transform, checked to act token by token."""
    adapter = getattr(model, "adapter", None)
    transform = getattr(adapter, "apply_output_logits_transform", None)
    if not callable(transform):
        cap = float(getattr(model.cfg, "output_logits_soft_cap", -1.0) or -1.0)
        if cap <= 0:
            return None

        def soft_cap(logits: torch.Tensor) -> torch.Tensor:
            return cap * torch.tanh(logits / cap)

        return soft_cap
    n = int(model.W_U.shape[-1])
    probe = torch.randn(2, n, generator=torch.Generator().manual_seed(0)) * 30
    cols = torch.randperm(n, generator=torch.Generator().manual_seed(1))[: max(1, n // 3)]
    with torch.no_grad():
        whole = transform(probe)[:, cols].float().log_softmax(-1)
        part = transform(probe[:, cols]).float().log_softmax(-1)
    if not torch.allclose(whole, part, atol=1e-4, rtol=1e-4):
        raise ReadoutError(
            f"{type(adapter).__name__}.apply_output_logits_transform mixes tokens, so logits "
            "of a vocabulary subset cannot be computed alone; train this model's tuned lens "
            "without vocab_subset (exact KL over the full vocabulary)."
        )
    return transform


def _candidates(logits: torch.Tensor, tokens: torch.Tensor, rows: torch.Tensor, k: int,
                extra: torch.Tensor) -> torch.Tensor:
    """Sorted ``V'``: top-``k`` final tokens of every row, the next tokens, ``extra``."""
    top = logits.topk(min(k, logits.shape[-1]), dim=-1).indices.reshape(-1)
    seq_len = tokens.shape[1]
    flat = tokens.reshape(-1).to(rows.device)
    has_next = (rows % seq_len) < seq_len - 1
    nxt = flat[rows[has_next] + 1]
    return torch.unique(torch.cat([top, nxt.to(top.device), extra.to(top.device)]))


def subset_step(model: Any, lens: Any, tokens: torch.Tensor, resid: list[torch.Tensor],
                 final: torch.Tensor, rows: torch.Tensor, k: int, extra: torch.Tensor,
                 tail_samples: int, gen: torch.Generator, *, check: bool,
                 ) -> tuple[list[float], int]:
    """Backward of the restricted KL at every depth; returns (the loss of each depth, |V'|).

    ``final``: the model's logits ``[P, V]`` at ``rows`` of the flattened ``tokens``.
    """
    ids = _candidates(final, tokens, rows, k, extra)
    n_vocab = final.shape[-1]
    target = final.log_softmax(-1)
    tail: torch.Tensor | None = None
    tail_target: torch.Tensor | None = None
    outside = n_vocab - len(ids)
    if tail_samples > 0 and outside > 0:
        mask = torch.ones(n_vocab, dtype=torch.bool, device=ids.device)
        mask[ids] = False
        rest = mask.nonzero().squeeze(1)
        tail = rest[torch.randperm(len(rest), generator=gen)[:tail_samples].to(rest.device)]
        tail_target = target[:, rest].logsumexp(-1)  # log p_final(outside V'), exact
        in_target = target[:, ids]
        log_scale = math.log(outside / len(tail))
    else:
        in_target = final[:, ids].log_softmax(-1)
    read = subset_readout(model, ids if tail is None else torch.cat([ids, tail]))
    if check:
        _check_subset(read, resid[-1][rows.to(resid[-1].device)], final[:, ids], len(ids))
    losses = []
    for depth in range(lens.n_layers):
        z = read(lens(resid[depth][rows.to(resid[depth].device)], depth)).float()
        z = z.to(in_target.device)
        if tail is None or tail_target is None:
            logq = z.log_softmax(-1)
            kl = (in_target.exp() * (in_target - logq)).sum(-1).mean()
        else:
            z_in, z_out = z[:, : len(ids)], z[:, len(ids):]
            log_tail = z_out.logsumexp(-1, keepdim=True) + log_scale
            log_z = torch.cat([z_in, log_tail], -1).logsumexp(-1, keepdim=True)
            kl_in = (in_target.exp() * (in_target - (z_in - log_z))).sum(-1)
            kl_out = tail_target.exp() * (tail_target - (log_tail - log_z).squeeze(-1))
            kl = (kl_in + kl_out).mean()
        kl.backward()
        losses.append(kl.item())
    return losses, len(ids)


def _check_subset(read: Callable[[torch.Tensor], torch.Tensor], final_resid: torch.Tensor,
                  theirs: torch.Tensor, n_ids: int) -> None:
    """The restricted readout of the last block's output must give the model's own logits."""
    with torch.no_grad():
        ours = read(final_resid).float()[:, :n_ids].log_softmax(-1)
    theirs = theirs.log_softmax(-1).to(ours.device)
    spread = (theirs - theirs.mean(-1, keepdim=True)).abs().max().clamp_min(1e-6)
    if (ours - theirs).abs().max() > _IDENTITY_RTOL * spread:
        raise ReadoutError(
            "The restricted readout (ln_final, the V' rows of W_U, the output transform) does "
            "not reproduce the model's logits on V'; the model's readout is not final norm -> "
            "unembed -> a per-token transform. Train without vocab_subset."
        )
