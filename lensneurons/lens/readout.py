"""The model's readout (final norm, unembedding, output transform) and what the lens keeps of it.

Three views of one function ``transform(ln_final(x) @ W_U + b_U)``, with the final norm's
statistics recomputed per vector and ``transform`` the adapter's output transform on TL >= 4
(Gemma soft-caps, logit scales) or ``cfg.output_logits_soft_cap`` on TL 2.x:

* :func:`readout_fn`: every logit of every row (TransformerLens's ``logit_readout`` on TL >= 4),
  with autograd when enabled; the tuned lens and attribution train or differentiate through it.
* :func:`subset_readout`: the logits of a vocabulary subset only (its rows of ``W_U``).
* :func:`summarize`: what the lens keeps of each row (entropy, top-``k`` log-probabilities, the
  log-probability of token sets), computed in **one pass over the unembedding** in slices of
  :data:`SLICE_COLUMNS` tokens with a running log-sum-exp, entropy and top-``k`` (the online
  softmax). No row's full distribution exists at once, and ``W_U`` is read once per
  ``SLICE_ELEMENTS // SLICE_COLUMNS`` (1,024) rows instead of once per 64: on Gemma 3 (262,144
  tokens, a 671 MB ``W_U``) 576 rows take 1.5 s, against 1.8 s for plain ``lm_head`` +
  ``log_softmax`` + ``max`` over all rows at once. Deviation from TransformerLens's
  ``logit_readout`` (which the lens called before): the same pieces (``ln_final``, ``W_U``,
  ``b_U``, the output transform) composed by hand; the lens checks them every call against the
  model's own logits (``reference=``).

Examples:
    >>> import lensneurons as ln
    >>> import torch
    >>> from lensneurons.lens.readout import readout_fn, summarize
    >>> model = ln.organism.load()
    >>> x = torch.randn(3, model.cfg.d_model)
    >>> kept = summarize(model, x, top_k=2)
    >>> logp = readout_fn(model)(x).log_softmax(-1)
    >>> bool((kept.top_ids[:, 0] == logp.argmax(-1)).all())
    True
    >>> bool(torch.allclose(kept.top_log_probs[:, 0], logp.max(-1).values, atol=1e-5))
    True

"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from jaxtyping import Float, Int
from torch import nn

from lensneurons.core.boot import tl_logit_readout
from lensneurons.errors import ReadoutError

#: Tokens per slice of the unembedding in :func:`summarize` (a row's result does not depend on
#: how many other rows are read with it).
SLICE_COLUMNS = 4096
#: Rows x tokens of logits per slice (16 MiB of fp32): rows beyond it are read in row chunks.
SLICE_ELEMENTS = 2**22
#: Tolerance of a readout against the model's own log-probabilities, as a fraction of their
#: spread; fp32 readouts measure ~1e-6.
IDENTITY_RTOL = 1e-2
_FLOOR = -80.0  # of the shifted logits in the online softmax; exp(x) is subnormal below -87.3
_CANNOT_READ = ("The logit lens cannot read this model: {err} Use a decoder-only model whose "
                "logits are unembed(ln_final(last block output)).")


def readout_fn(model: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """Build the model's own readout ``d_model -> logits`` (final norm, unembed, output transform).

    On TL >= 4 it is ``transformer_lens.tools.analysis.logit_readout``; on TL 2.x the ``ln_final``
    module (statistics recomputed per vector), ``unembed`` and the configured soft-cap.

    Args:
        model: a TransformerLens model.

    Returns:
        A function ``Float[n, d_model] -> Float[n, d_vocab]`` (grad flows when enabled).

    Raises:
        ReadoutError: the model's readout is not ``ln_final -> unembed``.

    >>> logits = readout_fn(model)(torch.zeros(2, model.cfg.d_model))  # doctest: +SKIP

    """
    logit_readout = tl_logit_readout()
    if logit_readout is not None:

        def read_tl4(x: torch.Tensor) -> torch.Tensor:
            try:
                return logit_readout(model, x, return_type="logits", chunk_size=max(len(x), 1),
                                     enable_grad=torch.is_grad_enabled()).values
            except (ValueError, NotImplementedError) as err:
                raise ReadoutError(_CANNOT_READ.format(err=err)) from err

        return read_tl4
    ln_final = final_norm(model)
    cap = float(getattr(model.cfg, "output_logits_soft_cap", -1.0) or -1.0)

    def read_tl2(x: torch.Tensor) -> torch.Tensor:
        h = ln_final(x.unsqueeze(0)).squeeze(0) if ln_final is not None else x
        logits = model.unembed(h.unsqueeze(0)).squeeze(0)
        return cap * torch.tanh(logits / cap) if cap > 0 else logits

    return read_tl2


def subset_readout(model: Any, ids: Int[torch.Tensor, " n_ids"],
                   ) -> Callable[[torch.Tensor], torch.Tensor]:
    """The model's readout restricted to vocabulary ``ids``: only those unembedding rows.

    ``transform(ln_final(x) @ W_U[:, ids] + b_U[ids])``. Columns equal those of
    :func:`readout_fn` as long as the transform acts token by token; a transform that does not
    (up to a per-row shift, which no softmax sees) is refused.

    Args:
        model: a TransformerLens model.
        ids: token ids to read (``[n_ids]``, any order).

    Returns:
        A function ``Float[n, d_model] -> Float[n, n_ids]`` (grad flows when enabled).

    Raises:
        ReadoutError: no ``ln_final`` module for a declared final norm, or an output transform
            that mixes tokens.

    >>> read = subset_readout(model, torch.tensor([3, 7]))  # doctest: +SKIP
    >>> read(torch.zeros(1, model.cfg.d_model)).shape  # doctest: +SKIP
    torch.Size([1, 2])

    """
    ln_final = final_norm(model)
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


class Summary(NamedTuple):
    """What :func:`summarize` keeps of each row's next-token distribution (fp32, on the CPU)."""

    entropy: Float[torch.Tensor, " n"]  # nats
    top_ids: Int[torch.Tensor, "n k"]
    top_log_probs: Float[torch.Tensor, "n k"]
    set_log_probs: Float[torch.Tensor, "n n_sets"]  # log of each set's summed probability
    #: Largest deviation from the reference's log-probabilities over its spread (0 without one).
    mismatch: float


def summarize(
    model: Any,
    x: Float[torch.Tensor, "n d_model"],
    *,
    top_k: int,
    sets: Sequence[Sequence[torch.Tensor]] = (),
    groups: Int[torch.Tensor, " n"] | None = None,
    reference: tuple[Int[torch.Tensor, " c"], Float[torch.Tensor, "c d_vocab"]] | None = None,
) -> Summary:
    """Entropy, top-``k`` and token-set log-probabilities of each row's readout, in one pass.

    Args:
        model: a TransformerLens model (eval mode).
        x: residual-stream rows ``[n, d_model]``.
        top_k: how many top tokens to keep (1 .. vocabulary size).
        sets: per token set, its ids per group (sorted, unique LongTensors).
        groups: the group of each row (an index into each set's list); default all 0.
        reference: ``(rows, logits)``: the model's own logits for those rows of ``x``; their
            largest log-probability deviation (over the spread) is returned as ``mismatch``.

    Returns:
        A :class:`Summary`.

    Raises:
        ReadoutError: no ``ln_final`` module for a declared final norm, or an output transform
            that mixes tokens.

    >>> summarize(model, torch.zeros(2, model.cfg.d_model), top_k=5).top_ids.shape  # doctest: +SKIP
    torch.Size([2, 5])

    """
    ln_final = final_norm(model)
    transform = output_transform(model)
    w_u, b_u = model.W_U.detach(), getattr(model, "b_U", None)
    b_u = b_u.detach() if b_u is not None else None
    n = x.shape[0]
    groups = torch.zeros(n, dtype=torch.long) if groups is None else groups.cpu()
    check_rows, check_logits = reference if reference is not None else (None, None)
    step = max(1, SLICE_ELEMENTS // SLICE_COLUMNS)
    parts, mismatches = [], [0.0]
    for s in range(0, n, step):
        h = x[s : s + step].to(w_u.device, w_u.dtype)
        with torch.no_grad():
            h = ln_final(h.unsqueeze(0)).squeeze(0) if ln_final is not None else h
            local = None
            if check_rows is not None and check_logits is not None:
                inside = (check_rows >= s) & (check_rows < s + step)
                if bool(inside.any()):
                    local = (check_rows[inside] - s, check_logits[inside.to(check_logits.device)])
            state = _stream(h, w_u, b_u, transform, top_k, local)
            set_lp = _set_log_probs(h, w_u, b_u, transform, sets, groups[s : s + step],
                                    state.shift, state.log_total)
        parts.append((state, set_lp))
        mismatches.append(state.mismatch)
    return Summary(
        entropy=torch.cat([p.entropy for p, _ in parts]).cpu(),
        top_ids=torch.cat([p.top_ids for p, _ in parts]).cpu(),
        top_log_probs=torch.cat([p.top_log_probs for p, _ in parts]).cpu(),
        set_log_probs=torch.cat([lp for _, lp in parts]).cpu(),
        mismatch=float(torch.tensor(mismatches).max()),  # NaN stays NaN
    )


def final_norm(model: Any) -> nn.Module | None:
    """The model's ``ln_final`` module, ``None`` for a model without a final norm.

    Raises:
        ReadoutError: the model declares a final norm but has no ``ln_final`` module.
    """
    norm_type = getattr(model.cfg, "normalization_type", None)
    if norm_type is None:
        return None
    ln_final = getattr(model, "ln_final", None)
    if not isinstance(ln_final, nn.Module):
        raise ReadoutError(
            f"The model declares normalization_type={norm_type!r} but has no ln_final module; "
            "the lens cannot apply the final norm exactly. Load it with an adapter that has one."
        )
    return ln_final


def output_transform(model: Any) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The post-unembedding transform, checked to act token by token (``None``: identity).

    Raises:
        ReadoutError: the adapter's transform mixes tokens.
    """
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
            f"{type(adapter).__name__}.apply_output_logits_transform mixes tokens, so the logits "
            "of part of the vocabulary cannot be computed alone (tuned-lens training with "
            "vocab_subset, the lens's one-pass readout)."
        )
    return transform


# --- internals ---------------------------------------------------------------------------------
class _Streamed(NamedTuple):
    entropy: torch.Tensor
    top_ids: torch.Tensor
    top_log_probs: torch.Tensor
    shift: torch.Tensor  # log Z = shift + log_total
    log_total: torch.Tensor
    mismatch: float


def _logits(h: torch.Tensor, w_u: torch.Tensor, b_u: torch.Tensor | None,
            transform: Callable | None, cols: slice | torch.Tensor) -> torch.Tensor:
    """fp32 logits of ``h`` at the vocabulary columns ``cols``."""
    z = h @ w_u[:, cols]
    if b_u is not None:
        z += b_u[cols]
    return (transform(z) if transform is not None else z).float()


def _stream(h: torch.Tensor, w_u: torch.Tensor, b_u: torch.Tensor | None,
            transform: Callable | None, top_k: int,
            reference: tuple[torch.Tensor, torch.Tensor] | None) -> _Streamed:
    """One pass over the vocabulary in slices: the online softmax's shift, sums and top-k.

    Per row, with ``c`` the running shift (the largest logit so far): ``S = sum exp(z - c)``
    and ``T = sum exp(z - c) (z - c)``; entropy ``= log S - T / S`` and ``log Z = c + log S``.
    """
    n, d_vocab = h.shape[0], w_u.shape[1]
    dev = h.device
    if reference is not None:
        reference = (reference[0].to(dev), reference[1])
    seen = torch.full((n,), -torch.inf, device=dev)
    shift = torch.zeros(n, device=dev)
    total = torch.zeros(n, device=dev)
    moment = torch.zeros(n, device=dev)
    top_v = torch.empty(n, 0, device=dev)
    top_i = torch.empty(n, 0, dtype=torch.long, device=dev)
    high = torch.full((n,), -torch.inf, device=dev)  # deviation from the reference, max and min
    low = torch.full((n,), torch.inf, device=dev)
    for v0 in range(0, d_vocab, SLICE_COLUMNS):
        cols = slice(v0, min(v0 + SLICE_COLUMNS, d_vocab))
        z = _logits(h, w_u, b_u, transform, cols)
        if reference is not None:
            rows, theirs = reference
            dev_z = z[rows] - theirs[:, cols].to(dev).float()
            high[rows] = torch.maximum(high[rows], dev_z.amax(-1))
            low[rows] = torch.minimum(low[rows], dev_z.amin(-1))
        vals, idx = z.topk(min(top_k, z.shape[1]), dim=-1)
        top_v, pick = torch.cat([top_v, vals], 1).topk(min(top_k, top_v.shape[1] + vals.shape[1]),
                                                       dim=-1)
        top_i = torch.cat([top_i, idx + v0], 1).gather(1, pick)
        seen = torch.maximum(seen, vals[:, 0])  # the largest logit so far; -inf: none finite
        new = torch.where(torch.isfinite(seen), seen, 0.0)
        keep = torch.where(total > 0, torch.exp(shift - new), 0.0)
        # Terms below e^FLOOR (< 2e-35 each, beside the row's largest term e^0 = 1) change no
        # fp32 sum; clamping keeps exp() off subnormal numbers, 13x slower on x86, and turns a
        # -inf logit (a token the model never predicts) into such a term.
        z.sub_(new[:, None]).clamp_(min=_FLOOR)
        e = z.exp()
        moment = keep * (moment + (shift - new) * total) + torch.bmm(e.unsqueeze(1),
                                                                     z.unsqueeze(2)).view(n)
        total = torch.where(torch.isfinite(seen), keep * total + e.sum(-1), 0.0)
        shift = new
    log_total = total.log()
    log_norm = shift + log_total
    mismatch = 0.0
    if reference is not None:
        rows, theirs = reference
        theirs = theirs.to(dev).float()
        gap = log_norm[rows] - theirs.logsumexp(-1)  # the log-prob shift between the two
        worst = torch.maximum(high[rows] - gap, gap - low[rows]).max()
        spread = (theirs - theirs.mean(-1, keepdim=True)).abs().max().clamp_min(1e-6)
        mismatch = float(worst / spread)
    # (z - c) - log S, not z - (c + log S): the first difference is exact, the second would lose
    # the precision of |z| (Gemma's logits reach hundreds) to rounding.
    return _Streamed(entropy=log_total - moment / total, top_ids=top_i,
                     top_log_probs=(top_v - shift[:, None]) - log_total[:, None],
                     shift=shift, log_total=log_total, mismatch=mismatch)


def _set_log_probs(h: torch.Tensor, w_u: torch.Tensor, b_u: torch.Tensor | None,
                   transform: Callable | None, sets: Sequence[Sequence[torch.Tensor]],
                   groups: torch.Tensor, shift: torch.Tensor, log_total: torch.Tensor,
                   ) -> torch.Tensor:
    """``log sum_{t in set} p(t)`` per row and set: only the sets' columns are computed."""
    out = torch.empty(h.shape[0], len(sets), device=h.device)
    for g in groups.unique().tolist():
        rows = (groups == g).nonzero().squeeze(1).to(h.device)
        for si, per_group in enumerate(sets):
            z = _logits(h[rows], w_u, b_u, transform, per_group[g].to(w_u.device))
            out[rows, si] = (z - shift[rows, None]).logsumexp(-1) - log_total[rows]
    return out
