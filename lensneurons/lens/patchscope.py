r"""Patchscope decoding (Ghandeharioun et al. 2024): the model reads its own hidden state back.

The logit lens decodes the residual ``h_d`` at depth ``d`` with the model's final norm and
unembedding, as if the model stopped there. A *patchscope* lets the model decode it instead: the
residual of the source prompt's read position at depth ``d`` replaces the residual stream of a
fixed **target prompt** at its last position and the same depth ``d``, the model runs on from
there, and its next-token distribution at that position is the decoding. With an identity /
repetition target such as ``"cat -> cat\n1135 -> 1135\nhello -> hello\n?"`` the model is
asked to repeat whatever the patched state stands for.

Depths are the lens's (:mod:`lensneurons.lens.logit`): depth 0 patches the embeddings
(``blocks.0.hook_resid_pre``), depth ``d`` the output of block ``d - 1``
(``blocks.{d-1}.hook_resid_post``), captured on the source pass and overwritten on the target
pass at the same hook. At depth ``L`` (the last block's output) nothing is left to run, so the
patchscope equals the logit lens and the model's own output there.

Cost. The target prompt is the same for every row and causal attention never lets the patched
(last) position change the positions before it, so the prefix runs **once** per call and its keys
and values are reused: every row (one per prompt, read position and depth) is a single-token pass
over the cached prefix, stopped after the last block; the final norm and unembedding are the
logit lens's own chunked readout. The prefix cache is the model's own
(:meth:`~lensneurons.core.model.ModelView.prefix_cache`). Every call checks one row
against a plain pass over the whole target prompt; where the two disagree (or the model has no
cache) every row runs the whole target prompt instead, and the result's ``decoder["kv_cache"]``
says which way it ran.

Everything runs as plain TransformerLens hooks inside ``model.hooks(...)`` contexts, added inside
whatever hooks are active, so an intervention applies to the source *and* the target passes.

Examples:
    >>> import lensneurons as ln
    >>> from lensneurons.lens import Patchscope, latent_language, prompts
    >>> model = ln.organism.load()
    >>> r = ln.logit_lens(model, ["Le chat dort sur le"], lens="patchscope", top_k=3)
    >>> r.decoder["name"], r.entropy.shape == (model.cfg.n_layers, 1)
    ('patchscope', True)
    >>> plain = ln.logit_lens(model, ["Le chat dort sur le"], top_k=3)
    >>> bool(torch.allclose(r.entropy[-1], plain.entropy[-1], atol=1e-3))  # depth L: the same
    True
    >>> scope = Patchscope(target="chat -> chat\nlune -> lune\n?")
    >>> curves = latent_language(model, prompts.translation(src="fr", tgt="de", limit=10),
    ...                          lens=scope)
    >>> curves.decoder["target"]
    'chat -> chat\nlune -> lune\n?'

"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from einops import rearrange

from lensneurons.core.model import ModelView, resid_hook
from lensneurons.errors import (
    ContextLengthError,
    InvalidTextError,
    ParameterError,
    PositionOutOfRangeError,
)
from lensneurons.lens._inputs import tokenize

__all__ = ["DEFAULT_TARGET", "Patchscope"]

#: The identity target of the Patchscopes paper's next-token decoding (their Table / §4.1):
#: few-shot repetitions, then the position whose state is replaced.
DEFAULT_TARGET = "cat -> cat\n1135 -> 1135\nhello -> hello\n?"
#: What a model that cannot take the cached prefix raises (then every row runs the whole target).
_NO_CACHE = (RuntimeError, ValueError, TypeError, NotImplementedError, AssertionError,
             AttributeError, IndexError, KeyError)
_CACHE_ELEMENTS = 2**25  # numbers of the per-chunk copy of the prefix's keys and values
_ROW_ELEMENTS = 2**22  # rows x target tokens x d_model per chunk of the uncached fallback


class _Stop(Exception):
    """Raised by the capture hook after the last block: the readout is the lens's own."""


@dataclass(frozen=True)
class Patchscope:
    r"""A patchscope decoder for :func:`~lensneurons.lens.logit_lens` and ``latent_language``.

    Pass it (or the string ``"patchscope"`` for the default) as ``lens=``.

    Args:
        target: the target prompt (tokenized as the model tokenizes prompts, BOS included where
            the model prepends one). Default :data:`DEFAULT_TARGET`, the paper's identity prompt.
        position: the target token whose residual is replaced and where the next-token
            distribution is read; negative counts from the end (default ``-1``, the ``?``).
            Tokens after it cannot influence it and are not run.

    Raises:
        InvalidTextError: ``target`` is not a string.
        ParameterError: ``target`` is empty or blank, or ``position`` is not an integer.

    >>> Patchscope(target="dog -> dog\n?").position
    -1
    """

    target: str = DEFAULT_TARGET
    position: int = -1

    def __post_init__(self) -> None:
        if not isinstance(self.target, str):
            raise InvalidTextError(
                f"The patchscope's target prompt must be a string, got "
                f"{type(self.target).__name__}; pass e.g. Patchscope(target={DEFAULT_TARGET!r})."
            )
        if not self.target.strip():
            raise ParameterError(
                "The patchscope's target prompt is empty: give a prompt that ends where the "
                f"hidden state goes, e.g. Patchscope(target={DEFAULT_TARGET!r}), or leave "
                "target out for that default."
            )
        if isinstance(self.position, bool) or not isinstance(self.position, numbers.Integral):
            raise ParameterError(
                f"The patchscope's position must be an integer token index into the target "
                f"prompt (-1 = its last token), got {self.position!r}."
            )

    def bind(self, model: Any) -> BoundPatchscope:
        """Tokenize the target for ``model`` and check the position (no forward pass yet).

        Raises:
            PositionOutOfRangeError: ``position`` lies outside the tokenized target prompt.
            ContextLengthError: the target prompt is longer than the model's context.
        """
        view = ModelView(model)
        try:
            (tokens,), (length,) = tokenize(model, [self.target], view.d_vocab, view.n_ctx)
        except ContextLengthError as err:
            raise ContextLengthError(
                f"The patchscope's target prompt is longer than the model's context of "
                f"{view.n_ctx} tokens ({err}); use a shorter target prompt."
            ) from None
        index = self.position + length if self.position < 0 else self.position
        if not 0 <= index < length:
            raise PositionOutOfRangeError(
                f"Position {self.position} is outside the patchscope's target prompt of {length} "
                f"tokens; use 0..{length - 1} or a negative position counted from its end "
                "(-1, the default, is its last token)."
            )
        return BoundPatchscope(self, model, tokens[: index + 1].cpu())


class BoundPatchscope:
    """A :class:`Patchscope` tokenized for one model; decodes the residuals of one lens call.

    :func:`~lensneurons.lens.logit_lens` builds one per call: :meth:`decode` turns each batch's
    captured residuals into the target's final residuals, which the lens reads like its own.
    """

    def __init__(self, scope: Patchscope, model: Any, tokens: torch.Tensor) -> None:
        self.scope, self.model, self.tokens = scope, model, tokens
        self.view = ModelView(model)
        self._prefix: Any = None  # the prefix's cache, built by the first decode
        self._cached: bool | None = None  # None until the first decode's check

    @property
    def meta(self) -> dict[str, Any]:
        """What the result records as its ``decoder``."""
        return {"name": "patchscope", "target": self.scope.target,
                "position": len(self.tokens) - 1, "target_tokens": len(self.tokens),
                "patched_into": "the same depth of the target prompt",
                "kv_cache": bool(self._cached)}

    def decode(self, store: dict[int, torch.Tensor],
               depths: list[int]) -> dict[int, torch.Tensor]:
        """The target's residual after the last block, for every residual in ``store``.

        Args:
            store: depth -> captured residuals ``[batch, pos, d_model]`` (the lens's source pass).
            depths: the depths to decode.

        Returns:
            depth -> ``[batch, pos, d_model]``: the target prompt's final residual at its patched
            position, with that depth's residual patched in. Depth ``L`` is returned as it is.
        """
        n_layers = self.view.n_layers
        out = {d: store[d] for d in depths if d == n_layers}
        todo = sorted({d for d in depths if d != n_layers})
        if not todo:
            return out
        n_batch, n_pos, d_model = store[todo[0]].shape
        rows = torch.cat([rearrange(store[d], "batch pos d_model -> (batch pos) d_model")
                          for d in todo])
        row_depth = torch.tensor(todo).repeat_interleave(n_batch * n_pos)
        final = self._run(rows, row_depth)
        for i, d in enumerate(todo):
            part = final[i * n_batch * n_pos:(i + 1) * n_batch * n_pos]
            out[d] = rearrange(part, "(batch pos) d_model -> batch pos d_model", batch=n_batch)
        return out

    # --- the target passes ---------------------------------------------------------------
    def _run(self, rows: torch.Tensor, row_depth: torch.Tensor) -> torch.Tensor:
        if self._cached is None:
            self._cached = self._check(rows, row_depth)
        run, step = (self._run_cached, self._cached_step()) if self._cached else (
            self._run_full, max(1, _ROW_ELEMENTS // (len(self.tokens) * self.view.d_model)))
        return torch.cat([run(rows[s:s + step], row_depth[s:s + step])
                          for s in range(0, len(rows), step)])

    def _check(self, rows: torch.Tensor, row_depth: torch.Tensor) -> bool:
        """Whether the cached prefix gives the plain pass's answer (one row, the lowest depth)."""
        if len(self.tokens) < 2:
            return False
        try:
            self._prefix = self.view.prefix_cache(self.tokens[:-1])
        except _NO_CACHE:
            self._prefix = None
        if self._prefix is None:
            return False
        one = slice(0, 1)  # depth-major rows: the first row has the lowest depth
        try:
            cached = self._run_cached(rows[one], row_depth[one]).float()
        except _NO_CACHE:
            return False
        full = self._run_full(rows[one], row_depth[one]).float()
        tol = 1e-3 if rows.dtype in (torch.float32, torch.float64) else 5e-2
        return bool((cached - full).norm() <= tol * full.norm().clamp_min(1e-6))

    def _cached_step(self) -> int:
        per_row = ((len(self.tokens) - 1) * self.view.n_layers * 2 * self.view.n_kv_heads
                   * self.view.d_head)
        return max(1, _CACHE_ELEMENTS // max(1, per_row))

    def _run_cached(self, rows: torch.Tensor, row_depth: torch.Tensor) -> torch.Tensor:
        n = len(rows)
        last = self.tokens[-1:].expand(n, 1).to(self.view.input_device)
        return self._pass(last, rows, row_depth, **self._prefix.inputs(n, last))

    def _run_full(self, rows: torch.Tensor, row_depth: torch.Tensor) -> torch.Tensor:
        tokens = self.tokens.expand(len(rows), -1).to(self.view.input_device)
        return self._pass(tokens, rows, row_depth)

    def _pass(self, tokens: torch.Tensor, rows: torch.Tensor, row_depth: torch.Tensor,
              **kwargs: Any) -> torch.Tensor:
        """One target pass: patch each row's state at its depth, stop after the last block."""
        got: dict[str, torch.Tensor] = {}

        def patch(index: torch.Tensor, values: torch.Tensor) -> Callable:
            def hook(x: torch.Tensor, hook: Any) -> torch.Tensor:
                x = x.clone()
                x[index.to(x.device), -1] = values.to(x.device, x.dtype)
                return x

            return hook

        def grab(x: torch.Tensor, hook: Any) -> None:
            got["final"] = x[:, -1].detach()
            raise _Stop

        hooks = []
        for depth in torch.unique(row_depth).tolist():
            index = (row_depth == depth).nonzero().squeeze(1)
            hooks.append((resid_hook(int(depth)), patch(index, rows[index])))
        hooks.append((resid_hook(self.view.n_layers), grab))
        with torch.no_grad(), self.model.hooks(fwd_hooks=hooks):
            try:
                self.model(tokens, **kwargs)
            except _Stop:
                pass
        if "final" not in got:
            raise RuntimeError("The patchscope's target pass never reached the last block.")
        return got["final"]


