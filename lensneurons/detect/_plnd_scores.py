"""PLND importance scores of one batch of documents, from the tensors its hooks read.

Every function takes the tensors of one layer for a batch of right-padded documents and returns
one score per document and unit, ``[batch, unit]``; only *counted* positions ``t`` (the rows of
the attention pattern, the positions of the MLP) enter the norms. ``variant="paper"`` is Zhao
et al.'s math (an exact ablation effect); ``"reference-code"`` the released code's scores.

Examples:
    >>> import torch
    >>> h = torch.tensor([[[3.0, 0.0], [4.0, 1.0]]])            # [batch, pos, unit]
    >>> counted = torch.tensor([[True, True]])
    >>> ffn_scores(h, counted, torch.tensor([2.0, 1.0])).tolist()  # ||H[:,k]|| * ||W_down[k]||
    [[10.0, 1.0]]
"""

from __future__ import annotations

import torch
from einops import rearrange, reduce
from jaxtyping import Bool, Float

from lensneurons.errors import UnsupportedModelError

#: Elements of the largest temporary ``[batch, chunk, pos, pos]`` tensor of the Q/K scores.
CHUNK_ELEMENTS = 2**24


def _weights(counted: Bool[torch.Tensor, "batch pos"], like: torch.Tensor) -> torch.Tensor:
    return counted.to(device=like.device, dtype=like.dtype)


def ffn_scores(
    h: Float[torch.Tensor, "batch pos unit"], counted: Bool[torch.Tensor, "batch pos"],
    w_out_norm: Float[torch.Tensor, " unit"],
) -> Float[torch.Tensor, "batch unit"]:
    """FFN importance ``||H[:,k]||_2 * ||W_down[k,:]||_2`` over the counted positions.

    It is the norm of the MLP output's change when unit ``k`` (the input of ``W_down``,
    ``hook_post``) is zeroed.
    """
    squares = (h.float() ** 2 * _weights(counted, h.float())[..., None]).sum(1)
    return squares.sqrt() * w_out_norm.to(squares)


def ffn_reference(
    up: Float[torch.Tensor, "batch pos unit"], counted: Bool[torch.Tensor, "batch pos"],
) -> Float[torch.Tensor, "batch unit"]:
    """The released code's FFN score ``sum_t |u_{t,k}|`` (the up projection alone)."""
    return (up.float().abs() * _weights(counted, up.float())[..., None]).sum(1)


def v_scores(
    z: Float[torch.Tensor, "batch pos head d_head"], counted: Bool[torch.Tensor, "batch pos"],
    n_kv_heads: int, variant: str,
) -> Float[torch.Tensor, "batch unit"]:
    """V importance of value dimension ``(g, j)``: ``||A_h V[:, g, j]||`` over its heads.

    The norm of the per-head outputs' change (``hook_z``, before ``W_O``) when the dimension is
    zeroed, over every query head ``h`` reading kv head ``g`` (all of them under grouped-query
    attention).

    The reference variant sums ``|z|`` (L1), as the released code does over the concatenated
    head outputs; under grouped-query attention the heads of one kv head are summed.
    """
    z = z.float()
    weight = _weights(counted, z)[..., None, None]
    per = (z ** 2 if variant == "paper" else z.abs()) * weight
    total = reduce(per, "b t (g r) d -> b (g d)", "sum", g=n_kv_heads)
    return total.sqrt() if variant == "paper" else total


def fit_scale(
    q: Float[torch.Tensor, "batch pos head d_head"], k: Float[torch.Tensor, "batch pos kv d_head"],
    scores: Float[torch.Tensor, "batch head pos pos"], where: str,
) -> float:
    """The factor ``c`` with ``scores = c * q k^T`` on unmasked entries, checked to hold.

    Raises:
        UnsupportedModelError: the scores are not a scaled product of these ``q`` and ``k`` (soft
            caps, ALiBi, or hooks that do not hold the vectors the scores are made of).
    """
    raw = torch.einsum("bthd,bshd->bhts", q.float(), _expand(k.float(), q.shape[2]))
    s = scores.float()
    free = s > torch.finfo(scores.dtype).min / 2
    num, den = (s[free] * raw[free]).sum(), (raw[free] ** 2).sum()
    scale = float(num / den) if float(den) > 0 else 0.0
    tol = (1e-2 if scores.dtype in (torch.float16, torch.bfloat16) else 1e-4) * (
        float(s[free].abs().max()) + 1e-6) if bool(free.any()) else 0.0
    if not bool(free.any()) or scale <= 0 or float((s[free] - scale * raw[free]).abs().max()) > tol:
        raise UnsupportedModelError(
            f"PLND's Q/K scores need attention scores that are a scaled product of the queries "
            f"and keys read at {where}; on this model they are not (soft-capped or biased "
            "scores, or rotary applied outside these hooks). Use sites=('mlp', 'attn.v')."
        )
    return scale


def _expand(k: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Keys or values ``[batch, pos, kv, d]`` repeated to the query heads (GQA-correct)."""
    return k.repeat_interleave(n_heads // k.shape[2], dim=2)


def qk_scores(
    q: Float[torch.Tensor, "batch pos head d_head"], k: Float[torch.Tensor, "batch pos kv d_head"],
    v: Float[torch.Tensor, "batch pos kv d_head"],
    scores: Float[torch.Tensor, "batch head pos pos"], counted: Bool[torch.Tensor, "batch pos"],
    scale: float, variant: str,
) -> tuple[Float[torch.Tensor, "batch qunit"], Float[torch.Tensor, "batch kvunit"]]:
    """Q/K importance: the attention output's change when a dimension leaves the scores.

    Dimension ``(h, j)`` is removed as ``S' = S - c * q[:, h, j] k[:, g, j]^T`` (``g`` the kv
    head of ``h``; the model's mask is already in ``S`` and is applied once).

    ``"paper"``: ``||(A - A') V_g||_F`` over counted rows (the change of head ``h``'s output);
    a key dimension ``(g, j)`` removes the same term from every head reading ``g``, so its score
    is the norm over those heads. ``"reference-code"``: ``sum_{t,s} (A' - A)^2`` with the
    unscaled term ``q k^T`` (no ``c``); a key dimension sums its heads.
    """
    dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
    batch, pos, n_heads, d_head = q.shape
    n_kv = k.shape[2]
    n_rep = n_heads // n_kv
    s = scores.to(dtype)
    s = s.masked_fill(s <= torch.finfo(scores.dtype).min / 2, float("-inf"))
    a = s.softmax(-1)
    qf = rearrange(q.to(dtype), "b t h d -> b h d t")
    kf = rearrange(k.to(dtype), "b t g d -> b g d t")
    vf = rearrange(v.to(dtype), "b t g d -> b g t d")
    # ||dA V||^2 row by row: directly (t*s*d per dimension) or through the Gram matrix V V^T
    # (t*s*s), whichever is cheaper.
    gram = vf @ vf.transpose(-1, -2) if pos < d_head else None           # [b, g, s, s]
    weight = _weights(counted, qf)[:, None]                             # [b, 1, t]
    factor = scale if variant == "paper" else 1.0
    chunk = max(1, CHUNK_ELEMENTS // (batch * pos * max(pos, d_head)))
    out = torch.empty(batch, n_heads, d_head, dtype=dtype, device=q.device)
    for h in range(n_heads):
        g = h // n_rep
        for lo in range(0, d_head, chunk):
            hi = min(lo + chunk, d_head)
            c = hi - lo
            delta = factor * qf[:, h, lo:hi, :, None] * kf[:, g, lo:hi, None, :]  # [b, c, t, s]
            diff = a[:, h, None] - (s[:, h, None] - delta).softmax(-1)
            if variant != "paper":
                out[:, h, lo:hi] = ((diff ** 2).sum(-1) * weight).sum(-1)
                continue
            flat = rearrange(diff, "b c t s -> b (c t) s")
            if gram is None:
                rows = ((flat @ vf[:, g]) ** 2).sum(-1)                    # [b, c*t]
            else:
                rows = ((flat @ gram[:, g]) * flat).sum(-1).clamp(min=0)
            out[:, h, lo:hi] = (rearrange(rows, "b (c t) -> b c t", c=c) * weight).sum(-1)
    out = rearrange(out, "b h d -> b (h d)")
    per_head = rearrange(out, "b (h d) -> b h d", h=n_heads)
    kv = reduce(per_head, "b (g r) d -> b (g d)", "sum", g=n_kv)
    if variant == "paper":
        return out.sqrt().float(), kv.sqrt().float()
    return out.float(), kv.float()
