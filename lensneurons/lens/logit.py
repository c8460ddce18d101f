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

Memory stays bounded: residuals are kept at the asked positions only, the readout streams the
vocabulary in slices (:func:`~lensneurons.lens.readout.summarize`: one pass over the unembedding
for all rows, an online softmax), and only entropy, the top-k tokens and the summed probability of
the requested token sets survive. ``[depth, batch, pos, vocab]`` never exists. The lens runs a
plain forward pass with capture hooks added *inside* whatever hooks are active, so
``with model.hooks(fwd_hooks=ln.deactivate(...)):`` applies to it.

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
from lensneurons.lens.readout import IDENTITY_RTOL, summarize
from lensneurons.lens.result import LensResult

Inputs = Union[  # noqa: UP007
    str, Sequence[str], Int[torch.Tensor, "batch pos"], Int[torch.Tensor, " pos"]
]
TokenSetSpec = Union[Sequence[int], torch.Tensor, Sequence[Sequence[int]], Any]  # noqa: UP007
Lens = Callable[[torch.Tensor, int], torch.Tensor]
#: What ``lens=`` takes: a translator, ``"patchscope"``, a :class:`Patchscope` or ``None``.
LensSpec = Union[Lens, Patchscope, str, None]  # noqa: UP007

#: Per model: may the lens's pass hand only the read positions past the last block?
_NARROWS: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


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
    entropy, top_ids, top_probs, set_probs = [], [], [], []
    for start in range(0, n_rows, batch_size):
        stop = min(start + batch_size, n_rows)
        resid, theirs = _capture(model, rows[start:stop], pos[start:stop], keep, n_layers,
                                 pad_id=pad_id(model))
        final = resid[n_layers]  # what the model's own logits ``theirs`` were read from
        if scope is not None:
            resid = scope.decode(resid, keep)
        sub_sets = [ids[start:stop] for _, ids in sets]
        out = _read(model, resid, keep, translator, top_k, sub_sets,
                    check=(final, theirs, n_layers if scope is None else None))
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
             n_layers: int, *, pad_id: int) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
    """One forward pass: the residuals at ``pos`` (kept depths and the last), the model's logits.

    The logits are the model's own, fp32, at the read positions: ``[batch, pos, vocab]``.

    The hook on the last block's output keeps the read positions and, where the architecture
    allows it, hands *only those* on to the rest of the model: the model's own final norm,
    unembedding and output transform (and any hook on them) then produce its logits at exactly
    the read positions, without building logits at every position (on a 262k-word vocabulary,
    more work than the blocks). The norm and the unembedding act per position, so these are the
    logits a full pass gives there. Models whose code after the last block needs every position
    (HF GPT-2 reshapes to the input's length) run the full pass instead, remembered per model.
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
    return store, theirs


def _read(model: Any, store: dict[int, torch.Tensor], keep: list[int], lens: Lens | None,
          top_k: int, sets: list[list[torch.Tensor]],
          check: tuple[torch.Tensor, torch.Tensor, int | None]) -> tuple[torch.Tensor, ...]:
    """Entropy [d, b, p], top ids/probs [d, b, p, k], set probs [d, b, p, s] for one batch.

    The rows of every kept depth are read together in one pass over the unembedding
    (:func:`~lensneurons.lens.readout.summarize`). ``check``: the last block's output
    ``[b, p, d_model]``, the model's own logits there and, when ``store`` holds that output
    untranslated, its depth. Those rows' readout must reproduce the model's log-probabilities
    (else :class:`ReadoutError`); they are read among the others when ``store`` has them.
    """
    final, theirs, final_depth = check
    n_batch, n_pos, _ = final.shape
    parts = []
    for depth in keep:
        h = rearrange(store[depth], "batch pos d_model -> (batch pos) d_model")
        if lens is not None:
            with torch.no_grad():
                h = lens(h, depth)
        parts.append(h)
    per_depth = n_batch * n_pos
    if lens is None and final_depth in keep:
        first = keep.index(final_depth) * per_depth
    else:  # the last block's output, untranslated, read after the kept rows
        first = len(keep) * per_depth
        parts.append(rearrange(final, "batch pos d_model -> (batch pos) d_model"))
    rows = torch.cat(parts)  # [depth * batch * pos (+ batch * pos), d_model]
    row_batch = repeat(torch.arange(n_batch), "batch -> (depth batch pos)",
                       depth=len(parts), pos=n_pos)
    reference = (torch.arange(first, first + per_depth),
                 rearrange(theirs, "batch pos vocab -> (batch pos) vocab"))
    kept = summarize(model, rows, top_k=top_k, sets=sets, groups=row_batch, reference=reference)
    if not kept.mismatch <= IDENTITY_RTOL:  # NaN too
        raise ReadoutError(
            "The lens's last depth (the last layer's output) does not reproduce the model's "
            "logits: the model (or an active hook on ln_final/unembed) transforms the "
            "residual stream before its logits in a way the lens does not. Remove such "
            "hooks, or use a model whose logits are unembed(ln_final(last block output))."
        )
    n_read = len(keep) * per_depth
    rows_to = "(depth batch pos) ... -> depth batch pos ..."
    return tuple(rearrange(t[:n_read], rows_to, depth=len(keep), batch=n_batch)
                 for t in (kept.entropy / math.log(2), kept.top_ids, kept.top_log_probs.exp(),
                           kept.set_log_probs.exp()))
