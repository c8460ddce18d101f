"""The logit lens: read every block's output through the model's own final norm and unembedding.

The lens reads the residual stream at a **depth** ``d``: depth 0 is the embeddings (on request),
depth ``d = 1..L`` the output of block ``d - 1``. A depth is *not* a block index (interventions'
``layers=`` count blocks): ``depths=[1]`` reads the output of block 0. For the residual ``h_d``
at depth ``d`` the lens gives ``P_d = softmax(transform(unembed(final_norm(h_d))))`` where
``final_norm`` is the model's ``ln_final`` module applied with statistics *recomputed per
vector* (the cached-scale shortcut is wrong) and ``transform`` is the adapter's output transform
on TL >= 4 (Gemma soft-caps, logit scales) or ``cfg.output_logits_soft_cap`` on TL 2.x. The last
depth (``L``) equals the model's output distribution; every call checks this and raises
:class:`ReadoutError` otherwise.

Memory stays bounded: residuals are kept at the asked positions only, logits are made for a chunk
of rows at a time (rows x vocabulary below ``2**24`` numbers), and only entropy, the top-k tokens
and the summed probability of the requested token sets survive. ``[depth, batch, pos, vocab]``
never exists. The lens runs a plain forward pass with capture hooks added *inside* whatever hooks
are active, so ``with model.hooks(fwd_hooks=ln.deactivate(...)):`` applies to it.

``lens=`` picks the decoder: ``None`` (this logit lens), a translator such as a
:class:`~lensneurons.lens.tuned.TunedLens` (applied to each residual before the readout), or
``"patchscope"`` / a :class:`~lensneurons.lens.patchscope.Patchscope` (each residual patched into
a target prompt and read where the model has run on from it). The result's ``decoder`` says which.

Examples:
    >>> import lensneurons as ln
    >>> model = ln.organism.load()
    >>> result = ln.logit_lens(model, ["Le chat dort sur le"], top_k=3)
    >>> result.entropy.shape == (model.cfg.n_layers, 1)  # [depth, batch]
    True
    >>> result.depths == list(range(1, model.cfg.n_layers + 1))  # the output of every block
    True

"""

from __future__ import annotations

import math
import numbers
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Union

import torch
from einops import rearrange, repeat
from jaxtyping import Int

from lensneurons.core import checks as _checks
from lensneurons.core.boot import tl_logit_readout
from lensneurons.core.model import ModelView, resid_hook
from lensneurons.errors import ParameterError, ReadoutError
from lensneurons.lens._inputs import (
    pad_id,
    resolve_depths,
    resolve_positions,
    resolve_sets,
    tokenize,
)
from lensneurons.lens.patchscope import BoundPatchscope, Patchscope
from lensneurons.lens.result import LensResult

Inputs = Union[  # noqa: UP007
    str, Sequence[str], Int[torch.Tensor, "batch pos"], Int[torch.Tensor, " pos"]
]
TokenSetSpec = Union[Sequence[int], torch.Tensor, Sequence[Sequence[int]], Any]  # noqa: UP007
Lens = Callable[[torch.Tensor, int], torch.Tensor]
#: What ``lens=`` takes: a translator, ``"patchscope"``, a :class:`Patchscope` or ``None``.
LensSpec = Union[Lens, Patchscope, str, None]  # noqa: UP007

_CHUNK_ELEMENTS = 2**24  # rows x vocabulary per readout chunk (64 MiB of fp32)
_IDENTITY_RTOL = 1e-2  # of the log-prob spread; fp32 readouts measure ~1e-6
_CANNOT_READ = ("The logit lens cannot read this model: {err} Use a decoder-only model whose "
                "logits are unembed(ln_final(last block output)).")
#: Per model: may the lens's pass hand only the read positions past the last block?
_NARROWS: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


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


def log_prob_readout(model: Any) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """The model's readout as fp32 log-probabilities ``[n, vocab]`` and entropies ``[n]`` (nats).

    On TL >= 4 ``logit_readout`` computes both in its one pass over each chunk of logits (it
    always computes the entropy), so the lens does not log-softmax the logits a second time;
    elsewhere both come from :func:`readout_fn`. Rows whose entropy is not finite (a ``-inf``
    logit) are recomputed with ``0 * log 0 = 0``.

    Args:
        model: a TransformerLens model.

    Returns:
        A function ``Float[n, d_model] -> (Float[n, vocab], Float[n])``, without autograd.

    Raises:
        ReadoutError: the model's readout is not ``ln_final -> unembed``.

    >>> logp, entropy = log_prob_readout(model)(torch.zeros(2, model.cfg.d_model))  # doctest: +SKIP
    """
    logit_readout = tl_logit_readout()
    read = readout_fn(model)

    def entropy_of(logp: torch.Tensor) -> torch.Tensor:
        return -(logp.exp() * logp).nan_to_num().sum(-1)

    if logit_readout is None:

        def read_tl2(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            with torch.no_grad():
                logp = read(x).float().log_softmax(-1)
            return logp, entropy_of(logp)

        return read_tl2

    def read_tl4(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            out = logit_readout(model, x, return_type="log_probs", chunk_size=max(len(x), 1))
        except (ValueError, NotImplementedError) as err:
            raise ReadoutError(_CANNOT_READ.format(err=err)) from err
        logp, entropy = out.values.float(), out.entropy.float()
        bad = ~torch.isfinite(entropy)
        if bool(bad.any()):
            entropy[bad] = entropy_of(logp[bad])
        return logp, entropy

    return read_tl4


def logit_lens(
    model: Any,
    inputs: Inputs,
    *,
    positions: int | Sequence[int] | Int[torch.Tensor, ""] | Int[torch.Tensor, " _n"]
    | Int[torch.Tensor, "batch n_pos"] = -1,
    depths: Sequence[int] | int | None = None,
    token_sets: Mapping[str, TokenSetSpec] | None = None,
    top_k: int = 10,
    lens: LensSpec = None,
    batch_size: int = 32,
) -> LensResult:
    """Decode the residual stream at the asked depths and positions with the model's own readout.

    Args:
        model: a TL 2.x ``HookedTransformer`` or TL >= 3 ``TransformerBridge`` (eval mode).
        inputs: a prompt, a list of prompts (right-padded; negative positions count from each
            prompt's own end, so batched equals one by one) or tokens ``[batch, pos]``/``[pos]``.
        positions: an int, a list of ints (same for every row) or a tensor ``[batch]`` /
            ``[batch, n_pos]`` of per-row positions. Default: the last real token.
        depths: where to read, in ``0..L``: 0 = the embeddings, ``d`` = the output of block
            ``d - 1`` (so not block indices); negative counts from ``L`` (``-1`` = the last
            block's output). Default ``1..L``, every block's output.
        token_sets: name -> token ids shared by every row, or a list of per-row id collections
            (e.g. Start(w) of each prompt's answer); a :class:`~lensneurons.lens.tokens.TokenSet`
            also works. Their summed probability is kept per depth.
        top_k: how many top tokens to keep per depth and position (1 .. vocabulary size).
        lens: the decoder. ``None``: the logit lens. A translator ``f(resid [n, d_model],
            depth) -> resid`` applied before the readout (a
            :class:`~lensneurons.lens.tuned.TunedLens`, checked to fit the model).
            ``"patchscope"`` or a :class:`~lensneurons.lens.patchscope.Patchscope`: each
            residual patched into the target prompt at the same depth, read at the target's
            next-token distribution. ``"logit"`` is ``None``.
        batch_size: prompts per forward pass.

    Returns:
        A :class:`LensResult` on the CPU; ``[depth, batch]`` shapes for an int ``positions``,
        ``[depth, batch, pos]`` otherwise.

    Raises:
        PositionOutOfRangeError: a position or depth outside the prompt or the model, no
            position at all, or a patchscope position outside its target prompt.
        EmptyTokenSetError: a requested token set has no ids.
        VocabularyError: a token id (of ``inputs`` or a token set) outside the vocabulary.
        InvalidTextError: a prompt is not a string.
        ContextLengthError: a prompt (or the patchscope's target prompt) is longer than the
            model's context.
        ParameterError: ``top_k`` or ``batch_size`` is not an integer in range, ``depths`` is
            empty or not ints, or ``lens`` is an unknown name or neither callable nor a
            :class:`Patchscope`.
        ShapeMismatchError: a tuned ``lens`` was trained for another number of layers or
            another width.
        ReadoutError: the model's readout is not final norm -> unembed.

    >>> r = logit_lens(model, "Hello", token_sets={"en": [42]})  # doctest: +SKIP
    >>> r.set_probs.shape  # [depth, batch, n_sets]  # doctest: +SKIP

    """
    view = ModelView(model)
    n_layers = view.n_layers
    top_k = _checks.positive_int(top_k, "top_k")
    if top_k > view.d_vocab:
        raise ParameterError(
            f"top_k={top_k} exceeds the vocabulary of {view.d_vocab} tokens; use at most that."
        )
    batch_size = _checks.positive_int(batch_size, "batch_size")
    translator, scope, decoder = _decoder(lens, model)
    keep = resolve_depths(depths, n_layers)
    rows, lengths = tokenize(model, inputs, view.d_vocab, view.n_ctx)
    n_rows = len(rows)
    pos = resolve_positions(positions, lengths)  # [B, P]
    squeeze = (isinstance(positions, numbers.Integral) and not isinstance(positions, bool)) or (
        isinstance(positions, torch.Tensor) and positions.ndim <= 1
    )
    sets = resolve_sets(token_sets, n_rows, view.d_vocab)
    read = readout_fn(model)
    read_lp = log_prob_readout(model)
    entropy, top_ids, top_probs, set_probs = [], [], [], []
    for start in range(0, n_rows, batch_size):
        stop = min(start + batch_size, n_rows)
        resid, final_ok = _capture(model, rows[start:stop], pos[start:stop], keep, n_layers,
                                   read, pad_id=pad_id(model))
        if not final_ok:
            raise ReadoutError(
                "The lens's last depth (the last layer's output) does not reproduce the model's "
                "logits: the model (or an active hook on ln_final/unembed) transforms the "
                "residual stream before its logits in a way the lens does not. Remove such "
                "hooks, or use a model whose logits are unembed(ln_final(last block output))."
            )
        if scope is not None:
            resid = scope.decode(resid, keep)
        sub_sets = [(name, ids[start:stop]) for name, ids in sets]
        out = _read(resid, keep, read_lp, translator, top_k, sub_sets, view.d_vocab)
        entropy.append(out[0])
        top_ids.append(out[1])
        top_probs.append(out[2])
        set_probs.append(out[3])

    def cat(parts: list[torch.Tensor]) -> torch.Tensor:
        t = torch.cat(parts, dim=1)
        return t.squeeze(2) if squeeze else t

    return LensResult(
        depths=keep,
        positions=pos,
        entropy=cat(entropy),
        top_ids=cat(top_ids),
        top_probs=cat(top_probs),
        set_probs=cat(set_probs) if sets else None,
        set_names=[name for name, _ in sets],
        tokenizer=getattr(model, "tokenizer", None),
        fingerprint=view.fingerprint(),
        decoder=scope.meta if scope is not None else decoder,
    )


# --- internals ---------------------------------------------------------------------------------
_NAMES = {"logit": None, "logit_lens": None, "patchscope": Patchscope}


def _decoder(lens: Any, model: Any) -> tuple[Lens | None, BoundPatchscope | None, dict]:
    """The translator or the bound patchscope ``lens=`` names, and the result's ``decoder``.

    A translator must be callable; one that can check its fit to the model does so. A
    patchscope is tokenized for the model (its position checked) before any forward pass.
    """
    if isinstance(lens, str):
        if lens not in _NAMES:
            raise ParameterError(
                f"Unknown lens {lens!r}: pass None (the logit lens), 'patchscope' (or a "
                "Patchscope(target=...)), or a translator f(resid, depth) such as a TunedLens."
            )
        lens = _NAMES[lens]() if _NAMES[lens] is not None else None
    if lens is None:
        return None, None, {"name": "logit_lens"}
    if isinstance(lens, Patchscope):
        return None, lens.bind(model), {}
    if not callable(lens):
        raise ParameterError(
            f"lens must be a translator f(resid, depth) such as a TunedLens, 'patchscope' or "
            f"None, got {type(lens).__name__}."
        )
    check = getattr(lens, "check_model", None)
    if callable(check):
        check(model)
    kind = getattr(lens, "kind", None)
    return lens, None, ({"name": "tuned_lens"} if kind == "tuned_lens"
                        else {"name": "translator", "type": type(lens).__name__})


def _capture(model: Any, rows: list[torch.Tensor], pos: torch.Tensor, keep: list[int],
             n_layers: int, read: Callable, *, pad_id: int) -> tuple[dict, bool]:
    """One forward pass; residuals at ``pos`` for every kept depth and the final check.

    The hook on the last block's output keeps the read positions and, where the architecture
    allows it, hands *only those* on to the rest of the model: the model's own final norm,
    unembedding and output transform (and any hook on them) then produce its logits at exactly
    the read positions, so the check compares the lens with the model's readout without
    building logits at every position (on a 262k-word vocabulary, more work than the blocks).
    The norm and the unembedding act per position, so these are the logits a full pass gives
    there. Models whose code after the last block needs every position (HF GPT-2 reshapes to
    the input's length) run the full pass instead, remembered per model.
    """
    width = max(len(r) for r in rows)
    tokens = torch.full((len(rows), width), pad_id, dtype=torch.long)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = r
    device = ModelView(model).input_device
    tokens = tokens.to(device)
    batch_index = torch.arange(len(rows)).unsqueeze(1)
    store: dict[int, torch.Tensor] = {}
    wanted = sorted(set(keep) | {n_layers})

    def capture(depth: int, narrow: bool) -> Callable:
        def hook(x: torch.Tensor, hook: Any) -> torch.Tensor | None:
            picked = x[batch_index.to(x.device), pos.to(x.device)]
            store[depth] = picked.detach()
            return picked if narrow and depth == n_layers else None

        return hook

    theirs = None
    if _NARROWS.get(model, True):
        try:
            with torch.no_grad(), model.hooks(fwd_hooks=[(resid_hook(d), capture(d, True))
                                                         for d in wanted]):
                logits = model(tokens)
            if logits.shape[:2] == pos.shape:
                theirs = logits.float()
        except RuntimeError:  # the model's code after the last block needs every position
            pass
        _NARROWS[model] = theirs is not None
    if theirs is None:
        with torch.no_grad(), model.hooks(fwd_hooks=[(resid_hook(d), capture(d, False))
                                                     for d in wanted]):
            logits = model(tokens)
        theirs = logits[batch_index.to(logits.device), pos.to(logits.device)].float()
    with torch.no_grad():
        final = store[n_layers]
        ours = read(rearrange(final, "batch pos d_model -> (batch pos) d_model")).float()
        ours = rearrange(ours, "(batch pos) vocab -> batch pos vocab", batch=final.shape[0])
        ours, theirs = ours.log_softmax(-1), theirs.log_softmax(-1)
        spread = (theirs - theirs.mean(-1, keepdim=True)).abs().max().clamp_min(1e-6)
        ok = bool((ours - theirs.to(ours.device)).abs().max() <= _IDENTITY_RTOL * spread)
    return store, ok


def _read(store: dict, keep: list[int], read: Callable[[torch.Tensor], tuple[torch.Tensor, ...]],
          lens: Lens | None, top_k: int,
          sets: list[tuple[str, list]], d_vocab: int) -> tuple[torch.Tensor, ...]:
    """Entropy [d, b, p], top ids/probs [d, b, p, k], set probs [d, b, p, s] for one batch.

    The rows of every kept depth are read together, in chunks of at most ``_CHUNK_ELEMENTS``
    logits: few large readouts instead of one small one per depth.
    """
    n_batch, n_pos, _ = store[keep[0]].shape
    parts = []
    for depth in keep:
        h = rearrange(store[depth], "batch pos d_model -> (batch pos) d_model")
        if lens is not None:
            with torch.no_grad():
                h = lens(h, depth)
        parts.append(h)
    rows = torch.cat(parts)  # [depth * batch * pos, d_model]
    n_rows = rows.shape[0]
    entropy = torch.zeros(n_rows)
    top_ids = torch.zeros(n_rows, top_k, dtype=torch.long)
    top_probs = torch.zeros(n_rows, top_k)
    set_probs = torch.zeros(n_rows, len(sets))
    row_batch = repeat(torch.arange(n_batch), "batch -> (depth batch pos)", depth=len(keep),
                       pos=n_pos)
    step = max(1, _CHUNK_ELEMENTS // max(1, d_vocab))
    for s in range(0, n_rows, step):
        with torch.no_grad():
            logp, ent = read(rows[s : s + step])
        flat = slice(s, s + step)
        entropy[flat] = (ent / math.log(2)).cpu()
        k = min(top_k, logp.shape[-1])
        top = logp.topk(k, dim=-1)
        top_ids[flat, :k] = top.indices.cpu()
        top_probs[flat, :k] = top.values.exp().cpu()
        for si, (_, per_row) in enumerate(sets):
            sums = torch.stack([logp[j, per_row[int(b)].to(logp.device)].exp().sum()
                                for j, b in enumerate(row_batch[flat])])
            set_probs[flat, si] = sums.cpu()
    rows_to = "(depth batch pos) ... -> depth batch pos ..."
    return tuple(rearrange(t, rows_to, depth=len(keep), batch=n_batch)
                 for t in (entropy, top_ids, top_probs, set_probs))
