"""The KL step of :meth:`TunedLens.fit` over a vocabulary subset (``vocab_subset=K``).

Per step the candidate set ``V'`` is the union of the top-``K`` final tokens of every read
position, the true next tokens and the ``frequent_tokens``; both distributions are renormalised
over ``V'`` (optionally with one "rest of the vocabulary" bucket), and only the ``V'`` rows of the
unembedding are multiplied (:func:`subset_readout`). See :mod:`lensneurons.lens.tuned`.

Examples:
    >>> losses, n_ids = subset_step(model, lens, tokens, resid, final, rows, 64, extra,
    ...                             0, gen, check=True)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from lensneurons.errors import ReadoutError
from lensneurons.lens.readout import IDENTITY_RTOL, subset_readout


# --- internals ---------------------------------------------------------------------------------
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
    if (ours - theirs).abs().max() > IDENTITY_RTOL * spread:
        raise ReadoutError(
            "The restricted readout (ln_final, the V' rows of W_U, the output transform) does "
            "not reproduce the model's logits on V'; the model's readout is not final norm -> "
            "unembed -> a per-token transform. Train without vocab_subset."
        )
