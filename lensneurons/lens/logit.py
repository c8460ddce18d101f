"""The logit lens: read every block's output through the model's own final norm and unembedding.

For block output ``h_l`` (``l = 1..L``; ``l = 0`` is the embedding, on request) the lens gives
``P_l = softmax(transform(unembed(final_norm(h_l))))`` where ``final_norm`` is the model's
``ln_final`` module applied with statistics *recomputed per vector* (the cached-scale shortcut is
wrong) and ``transform`` is the adapter's output transform on TL >= 4 (Gemma soft-caps, logit
scales) or ``cfg.output_logits_soft_cap`` on TL 2.x. The last layer equals the model's output
distribution; every call checks this and raises :class:`ReadoutError` otherwise.

Memory stays bounded: residuals are kept at the asked positions only, logits are made for a chunk
of rows at a time (rows x vocabulary below ``2**24`` numbers), and only entropy, the top-k tokens
and the summed probability of the requested token sets survive. ``[layers, batch, pos, vocab]``
never exists. The lens runs a plain forward pass with capture hooks added *inside* whatever hooks
are active, so ``with model.hooks(fwd_hooks=ln.deactivate(...)):`` applies to it.

Examples:
    >>> import lensneurons as ln
    >>> model = ln.organism.load()
    >>> result = ln.logit_lens(model, ["Le chat dort sur le"], top_k=3)
    >>> result.entropy.shape == (model.cfg.n_layers, 1)  # [layer, batch]
    True

"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Union

import torch
from jaxtyping import Int

from lensneurons.lens.errors import EmptyTokenSetError, PositionOutOfRangeError, ReadoutError
from lensneurons.lens.result import LensResult
from lensneurons.model import ModelView

Inputs = Union[str, Sequence[str], torch.Tensor]  # noqa: UP007
TokenSetSpec = Union[Sequence[int], torch.Tensor, Sequence[Sequence[int]], Any]  # noqa: UP007
Lens = Callable[[torch.Tensor, int], torch.Tensor]

_CHUNK_ELEMENTS = 2**24  # rows x vocabulary per readout chunk (64 MiB of fp32)
_IDENTITY_RTOL = 1e-2  # of the log-prob spread; fp32 readouts measure ~1e-6


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
    try:
        from transformer_lens.tools.analysis import logit_readout
    except ImportError:
        logit_readout = None  # type: ignore[assignment]
    if logit_readout is not None:

        def read_tl4(x: torch.Tensor) -> torch.Tensor:
            try:
                return logit_readout(model, x, return_type="logits", chunk_size=max(len(x), 1),
                                     enable_grad=torch.is_grad_enabled()).values
            except (ValueError, NotImplementedError) as err:
                raise ReadoutError(
                    f"The logit lens cannot read this model: {err} Use a decoder-only model "
                    "whose logits are unembed(ln_final(last block output))."
                ) from err

        return read_tl4
    norm_type = getattr(model.cfg, "normalization_type", None)
    ln_final = getattr(model, "ln_final", None) if norm_type is not None else None
    if norm_type is not None and not isinstance(ln_final, torch.nn.Module):
        raise ReadoutError(
            f"The model declares normalization_type={norm_type!r} but has no ln_final module; "
            "the lens cannot apply the final norm exactly. Load it with an adapter that has one."
        )
    cap = float(getattr(model.cfg, "output_logits_soft_cap", -1.0) or -1.0)

    def read_tl2(x: torch.Tensor) -> torch.Tensor:
        h = ln_final(x.unsqueeze(0)).squeeze(0) if ln_final is not None else x
        logits = model.unembed(h.unsqueeze(0)).squeeze(0)
        return cap * torch.tanh(logits / cap) if cap > 0 else logits

    return read_tl2


def logit_lens(
    model: Any,
    inputs: Inputs,
    *,
    positions: int | Sequence[int] | Int[torch.Tensor, "..."] = -1,
    layers: Sequence[int] | None = None,
    token_sets: Mapping[str, TokenSetSpec] | None = None,
    top_k: int = 10,
    lens: Lens | None = None,
    batch_size: int = 32,
) -> LensResult:
    """Decode block outputs at the asked positions with the model's own readout.

    Args:
        model: a TL 2.x ``HookedTransformer`` or TL >= 3 ``TransformerBridge`` (eval mode).
        inputs: a prompt, a list of prompts (right-padded; negative positions count from each
            prompt's own end, so batched equals one by one) or tokens ``[batch, pos]``/``[pos]``.
        positions: an int, a list of ints (same for every row) or a tensor ``[batch]`` /
            ``[batch, n_pos]`` of per-row positions. Default: the last real token.
        layers: layer indices in ``0..L`` (0 = embeddings, ``l`` = output of block ``l - 1``;
            negative counts from ``L``). Default ``1..L``.
        token_sets: name -> token ids shared by every row, or a list of per-row id collections
            (e.g. Start(w) of each prompt's answer); a :class:`~lensneurons.lens.tokens.TokenSet`
            also works. Their summed probability is kept per layer.
        top_k: how many top tokens to keep per layer and position.
        lens: optional translator ``f(resid [n, d_model], layer) -> resid`` applied before the
            readout (a :class:`~lensneurons.lens.tuned.TunedLens`).
        batch_size: prompts per forward pass.

    Returns:
        A :class:`LensResult` on the CPU; ``[layer, batch]`` shapes for an int ``positions``,
        ``[layer, batch, pos]`` otherwise.

    Raises:
        PositionOutOfRangeError: a position or layer outside the prompt or the model.
        EmptyTokenSetError: a requested token set has no ids.
        ReadoutError: the model's readout is not final norm -> unembed.

    >>> r = logit_lens(model, "Hello", token_sets={"en": [42]})  # doctest: +SKIP
    >>> r.set_probs.shape  # [layer, batch, n_sets]  # doctest: +SKIP

    """
    view = ModelView(model)
    n_layers = view.n_layers
    keep = _resolve_layers(layers, n_layers)
    rows, lengths = _tokenize(model, inputs)
    n_rows = len(rows)
    pos = _resolve_positions(positions, lengths)  # [B, P]
    squeeze = isinstance(positions, int) or (
        isinstance(positions, torch.Tensor) and positions.ndim <= 1
    )
    sets = _resolve_sets(token_sets, n_rows, view.d_vocab)
    read = readout_fn(model)
    entropy, top_ids, top_probs, set_probs = [], [], [], []
    for start in range(0, n_rows, batch_size):
        stop = min(start + batch_size, n_rows)
        resid, final_ok = _capture(model, rows[start:stop], pos[start:stop], keep, n_layers,
                                   read, pad_id=_pad_id(model))
        if not final_ok:
            raise ReadoutError(
                "The lens's last layer does not reproduce the model's logits: the model (or an "
                "active hook on ln_final/unembed) transforms the residual stream before its "
                "logits in a way the lens does not. Remove such hooks, or use a model whose "
                "logits are unembed(ln_final(last block output))."
            )
        sub_sets = [(name, ids[start:stop]) for name, ids in sets]
        out = _read(resid, keep, read, lens, top_k, sub_sets, view.d_vocab)
        entropy.append(out[0])
        top_ids.append(out[1])
        top_probs.append(out[2])
        set_probs.append(out[3])

    def cat(parts: list[torch.Tensor]) -> torch.Tensor:
        t = torch.cat(parts, dim=1)
        return t.squeeze(2) if squeeze else t

    return LensResult(
        layers=keep,
        positions=pos,
        entropy=cat(entropy),
        top_ids=cat(top_ids),
        top_probs=cat(top_probs),
        set_probs=cat(set_probs) if sets else None,
        set_names=[name for name, _ in sets],
        tokenizer=getattr(model, "tokenizer", None),
    )


# --- internals ---------------------------------------------------------------------------------
def _resolve_layers(layers: Sequence[int] | None, n_layers: int) -> list[int]:
    if layers is None:
        return list(range(1, n_layers + 1))
    keep = []
    for layer in layers:
        index = int(layer) + n_layers + 1 if int(layer) < 0 else int(layer)
        if not 0 <= index <= n_layers:
            raise PositionOutOfRangeError(
                f"Layer {layer} does not exist: lens layers are 0 (embeddings) .. {n_layers} "
                "(last block output), negative values count from the end."
            )
        keep.append(index)
    return keep


def _tokenize(model: Any, inputs: Inputs) -> tuple[list[torch.Tensor], list[int]]:
    if isinstance(inputs, torch.Tensor):
        tokens = inputs.unsqueeze(0) if inputs.ndim == 1 else inputs
        if tokens.ndim != 2 or tokens.shape[1] == 0:
            raise PositionOutOfRangeError(
                f"Token inputs must be [batch, pos] with pos >= 1, got {tuple(inputs.shape)}."
            )
        return list(tokens.long()), [tokens.shape[1]] * tokens.shape[0]
    prompts = [inputs] if isinstance(inputs, str) else list(inputs)
    if not prompts:
        raise PositionOutOfRangeError("No prompts were given to the lens.")
    rows = [model.to_tokens(p)[0] for p in prompts]
    return rows, [len(r) for r in rows]


def _pad_id(model: Any) -> int:
    tok = getattr(model, "tokenizer", None)
    pad = getattr(tok, "pad_token_id", None) if tok is not None else None
    return int(pad) if pad is not None else 0


def _resolve_positions(positions: Any, lengths: list[int]) -> torch.Tensor:
    n = len(lengths)
    if isinstance(positions, torch.Tensor):
        pos = positions.long()
        pos = pos.reshape(n, -1) if pos.ndim <= 1 and pos.numel() == n else pos
        if pos.ndim == 0 or pos.shape[0] != n:
            pos = pos.reshape(1, -1).expand(n, -1)
    else:
        flat = [positions] if isinstance(positions, int) else list(positions)
        if not flat:
            raise PositionOutOfRangeError("positions is empty: ask for at least one position.")
        pos = torch.tensor(flat, dtype=torch.long).reshape(1, -1).expand(n, -1)
    length = torch.tensor(lengths, dtype=torch.long).unsqueeze(1)
    absolute = torch.where(pos < 0, pos + length, pos)
    bad = (absolute < 0) | (absolute >= length)
    if bad.any():
        row = int(bad.any(1).nonzero()[0])
        raise PositionOutOfRangeError(
            f"Position(s) {pos[row].tolist()} are outside prompt {row} of {lengths[row]} tokens; "
            f"use 0..{lengths[row] - 1} or negative positions counted from the end."
        )
    return absolute.contiguous()


def _resolve_sets(token_sets: Any, n_rows: int, d_vocab: int) -> list[tuple[str, list]]:
    """Name -> per-row list of LongTensor ids."""
    out: list[tuple[str, list]] = []
    for name, spec in (token_sets or {}).items():
        spec = getattr(spec, "ids", spec)
        if isinstance(spec, torch.Tensor):
            spec = spec.tolist()
        spec = list(spec)
        per_row = bool(spec) and not isinstance(spec[0], int)
        if per_row and len(spec) != n_rows:
            raise EmptyTokenSetError(
                f"Token set {name!r} has {len(spec)} per-row sets for {n_rows} prompts; "
                "give one set per prompt or one shared list of ids."
            )
        rows = [sorted({int(i) for i in getattr(s, "ids", s)}) for s in spec] if per_row \
            else [sorted({int(i) for i in spec})] * n_rows
        for r, ids in enumerate(rows):
            if not ids:
                raise EmptyTokenSetError(
                    f"Token set {name!r} is empty (row {r}); an empty set would read as P = 0. "
                    "Drop the word or build the set with lensneurons.lens.start_tokens."
                )
            if ids[0] < 0 or ids[-1] >= d_vocab:
                raise EmptyTokenSetError(
                    f"Token set {name!r} holds ids outside the vocabulary [0, {d_vocab})."
                )
        out.append((name, [torch.tensor(ids, dtype=torch.long) for ids in rows]))
    return out


def _capture(model: Any, rows: list[torch.Tensor], pos: torch.Tensor, keep: list[int],
             n_layers: int, read: Callable, *, pad_id: int) -> tuple[dict, bool]:
    """One forward pass; residuals at ``pos`` for every kept layer and the final check."""
    width = max(len(r) for r in rows)
    tokens = torch.full((len(rows), width), pad_id, dtype=torch.long)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = r
    device = ModelView(model).input_device
    tokens = tokens.to(device)
    batch_index = torch.arange(len(rows)).unsqueeze(1)
    store: dict[int, torch.Tensor] = {}
    wanted = set(keep) | {n_layers}

    def capture(layer: int) -> Callable:
        def hook(x: torch.Tensor, hook: Any) -> None:
            store[layer] = x[batch_index.to(x.device), pos.to(x.device)].detach()

        return hook

    hooks = [(f"blocks.{layer - 1}.hook_resid_post" if layer else "blocks.0.hook_resid_pre",
              capture(layer)) for layer in sorted(wanted)]
    with torch.no_grad(), model.hooks(fwd_hooks=hooks):
        logits = model(tokens)
    with torch.no_grad():
        theirs = logits[batch_index.to(logits.device), pos.to(logits.device)].float()
        final = store[n_layers]
        ours = read(final.reshape(-1, final.shape[-1])).float().reshape(theirs.shape)
        ours, theirs = ours.log_softmax(-1), theirs.log_softmax(-1)
        spread = (theirs - theirs.mean(-1, keepdim=True)).abs().max().clamp_min(1e-6)
        ok = bool((ours - theirs.to(ours.device)).abs().max() <= _IDENTITY_RTOL * spread)
    return store, ok


def _read(store: dict, keep: list[int], read: Callable, lens: Lens | None, top_k: int,
          sets: list[tuple[str, list]], d_vocab: int) -> tuple[torch.Tensor, ...]:
    """Entropy [l, b, p], top ids/probs [l, b, p, k], set probs [l, b, p, s] for one batch.

    The rows of every kept layer are read together, in chunks of at most ``_CHUNK_ELEMENTS``
    logits: few large readouts instead of one small one per layer.
    """
    n_batch, n_pos, d_model = store[keep[0]].shape
    parts = []
    for layer in keep:
        h = store[layer].reshape(-1, d_model)
        if lens is not None:
            with torch.no_grad():
                h = lens(h, layer)
        parts.append(h)
    rows = torch.cat(parts)  # [layer * batch * pos, d_model]
    n_rows = rows.shape[0]
    entropy = torch.zeros(n_rows)
    top_ids = torch.zeros(n_rows, top_k, dtype=torch.long)
    top_probs = torch.zeros(n_rows, top_k)
    set_probs = torch.zeros(n_rows, len(sets))
    row_batch = torch.arange(n_batch).repeat_interleave(n_pos).repeat(len(keep))
    step = max(1, _CHUNK_ELEMENTS // max(1, d_vocab))
    for s in range(0, n_rows, step):
        with torch.no_grad():
            logp = read(rows[s : s + step]).float().log_softmax(-1)
        probs = logp.exp()
        flat = slice(s, s + step)
        entropy[flat] = (-(probs * logp).nan_to_num().sum(-1) / math.log(2)).cpu()
        k = min(top_k, logp.shape[-1])
        top = probs.topk(k, dim=-1)
        top_ids[flat, :k] = top.indices.cpu()
        top_probs[flat, :k] = top.values.cpu()
        for si, (_, per_row) in enumerate(sets):
            sums = torch.stack([probs[j, per_row[int(b)].to(probs.device)].sum()
                                for j, b in enumerate(row_batch[flat])])
            set_probs[flat, si] = sums.cpu()
    shape = (len(keep), n_batch, n_pos)
    return (entropy.view(shape), top_ids.view(*shape, top_k), top_probs.view(*shape, top_k),
            set_probs.view(*shape, len(sets)))
