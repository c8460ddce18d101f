"""The tuned lens (Belrose et al. 2023): per-layer affine translators before the model's readout.

Translator ``l`` maps lens layer ``l`` (0 = embeddings, ``l`` = output of block ``l - 1``) as
``h + A_l h + b_l``; ``A_l`` and ``b_l`` start at zero, so an untrained lens *is* the logit lens.
Training minimises KL(p_final || p_l) at the same position over a text corpus, one layer's graph
at a time, with the model frozen. The last layer needs no translator.

Large vocabularies (Gemma 3: 262,144 tokens) make the exact loss expensive: every step reads every
layer through the whole unembedding, forward and backward. ``fit(..., vocab_subset=K)`` trains on a
documented approximation instead: per step the candidate set ``V'`` is the union over the step's
positions of the top-``K`` tokens of the final distribution, the true next tokens and optionally
the ``frequent_tokens`` most frequent training tokens; both distributions are renormalised over
``V'`` and the KL is taken there. Only the ``V'`` rows of the unembedding are multiplied
(:func:`subset_readout`). With ``V'`` = the whole vocabulary the loss is the exact KL (tested).
Renormalising ignores how much mass the lens puts *outside* ``V'``; ``tail_samples=M`` adds one
"rest of the vocabulary" bucket to both distributions (exact for the final distribution, a uniform
sample of ``M`` outside tokens for the lens), which penalises that mass too.
``positions_per_step`` subsamples positions after the forward pass.

Use it wherever the logit lens runs: ``logit_lens(model, x, lens=tuned)`` or
``latent_language(model, items, lens=tuned)``. Saved as ``tuned_lens.safetensors`` plus
``tuned_lens.json`` holding the model fingerprint, checked on load (``save(path,
dtype=torch.bfloat16)`` halves the file; loading always gives fp32). Caveat for the English-pivot
question: the lens is trained toward the final prediction and can optimise the pivot away; read it
as a robustness check, trained on multilingual text.

Examples:
    >>> from lensneurons.lens import TunedLens, logit_lens
    >>> tuned = TunedLens.fit(model, texts, steps=50)  # doctest: +SKIP
    >>> tuned.save("lens_dir"); tuned = TunedLens.load("lens_dir", model)  # doctest: +SKIP
    >>> logit_lens(model, "Le chat", lens=tuned)  # doctest: +SKIP

"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from einops import rearrange
from jaxtyping import Float, Int
from torch import nn

from lensneurons.core import checks as _checks
from lensneurons.core.model import ModelView, resid_hook
from lensneurons.core.persistence import load_result, save_result
from lensneurons.errors import (
    CorruptResultError,
    EmptyTokenizationError,
    ParameterError,
    PositionOutOfRangeError,
    ShapeMismatchError,
)
from lensneurons.lens._inputs import check_fit_options
from lensneurons.lens._subset import subset_readout, subset_step
from lensneurons.lens.logit import readout_fn

__all__ = ["TunedLens", "subset_readout"]

_ROWS = 256  # rows per full-vocabulary readout chunk (batched: the weight streaming dominates)


class TunedLens(nn.Module):
    """Identity-initialised affine translators, one per lens layer ``0..L-1``.

    Args:
        d_model: residual width.
        n_layers: number of blocks ``L`` of the model.
        fingerprint: the model's :meth:`ModelView.fingerprint`, stored on save.

    Attributes:
        history: mean training loss (nats) per step.
        meta: free-form JSON-able record saved with the lens (``fit`` puts its settings under
            ``"training"``).

    """

    def __init__(self, d_model: int, n_layers: int, fingerprint: dict | None = None) -> None:
        super().__init__()
        d_model = _checks.positive_int(d_model, "d_model")
        n_layers = _checks.positive_int(n_layers, "n_layers")
        self.d_model, self.n_layers = d_model, n_layers
        self.fingerprint = fingerprint or {}
        translators = [nn.Linear(d_model, d_model) for _ in range(n_layers)]
        for t in translators:
            nn.init.zeros_(t.weight)
            nn.init.zeros_(t.bias)
        self.translators = nn.ModuleList(translators)
        self.history: list[float] = []
        self.meta: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"TunedLens(d_model={self.d_model}, n_layers={self.n_layers})"

    @classmethod
    def from_model(cls, model: Any) -> TunedLens:
        """Build an untrained (identity) lens sized for ``model``."""
        view = ModelView(model)
        lens = cls(view.d_model, view.n_layers, view.fingerprint())
        return lens.to(view.input_device)

    def check_model(self, model: Any) -> None:
        """Raise unless this lens fits ``model``: as many layers and the same width.

        :func:`~lensneurons.lens.logit_lens` calls it, so a lens trained for fewer layers is
        never applied as the identity on the rest.

        Raises:
            ShapeMismatchError: another number of layers or another residual width.
        """
        view = ModelView(model)
        if (self.n_layers, self.d_model) != (view.n_layers, view.d_model):
            raise ShapeMismatchError(
                f"This tuned lens was trained for {self.n_layers} layers of width "
                f"{self.d_model}; the model has {view.n_layers} of width {view.d_model}. Train "
                "a lens on this model: TunedLens.fit(model, texts)."
            )

    def forward(
        self, h: Float[torch.Tensor, "*rows d_model"], layer: int
    ) -> Float[torch.Tensor, "*rows d_model"]:
        """Translate residuals of lens layer ``layer`` (identity at the last layer, ``L``).

        Raises:
            PositionOutOfRangeError: ``layer`` outside ``0..L``.
            ShapeMismatchError: ``h`` is not ``d_model`` wide.
        """
        if not 0 <= layer <= self.n_layers:
            raise PositionOutOfRangeError(
                f"Layer {layer} is outside this tuned lens's layers 0..{self.n_layers}."
            )
        if h.shape[-1] != self.d_model:
            raise ShapeMismatchError(
                f"The tuned lens translates residuals of width {self.d_model}, got "
                f"{h.shape[-1]}: it was trained on another model."
            )
        if layer == self.n_layers:
            return h
        t: nn.Linear = self.translators[layer]  # type: ignore[assignment]
        x = h.to(t.weight.device, t.weight.dtype)
        return (x + t(x)).to(h.device, h.dtype)

    @classmethod
    def fit(cls, model: Any, texts: Sequence[str], *, steps: int = 150, lr: float = 1e-3,
            batch_size: int = 8, seq_len: int = 64, weight_decay: float = 1e-3,
            max_seconds: float = 300.0, seed: int = 0, vocab_subset: int | None = None,
            frequent_tokens: int = 0, tail_samples: int = 0,
            positions_per_step: int | None = None, lr_decay: bool = False,
            callback: Callable[[int, float], None] | None = None) -> TunedLens:
        """Train a lens on ``texts`` (KL to the model's final distribution, same position).

        Args:
            model: the TransformerLens model (left unchanged; frozen during training).
            texts: training texts, packed into windows of ``seq_len`` tokens.
            steps: optimiser steps (Adam).
            lr: learning rate.
            batch_size: windows per step.
            seq_len: tokens per window.
            weight_decay: pulls translators toward the identity.
            max_seconds: stop early after this much wall time.
            seed: for window, position and tail sampling.
            vocab_subset: ``None`` (default): exact KL over the whole vocabulary. ``K``: KL over
                the step's candidate set ``V'`` (top-``K`` final tokens of every position, the
                true next tokens, the ``frequent_tokens``), both distributions renormalised
                there; only the ``V'`` rows of the unembedding are computed.
            frequent_tokens: with ``vocab_subset``, also put this many most frequent tokens
                of the training windows into every ``V'``.
            tail_samples: with ``vocab_subset``, add a "rest of the vocabulary" bucket (the
                final distribution's exact mass outside ``V'``; the lens's estimated from this
                many uniformly sampled outside tokens). 0: plain renormalisation.
            positions_per_step: read only this many random positions of the step's
                ``batch_size * seq_len`` (default: all).
            lr_decay: decay the learning rate linearly to 0 at whichever comes first, ``steps``
                or ``max_seconds`` (default: constant).
            callback: called as ``callback(step, loss)`` after every step.

        Returns:
            The trained lens; ``lens.history`` holds the mean loss (nats) per step and
            ``lens.meta["training"]`` the settings.

        Raises:
            EmptyTokenizationError: the texts give fewer than ``seq_len`` tokens.
            InvalidTextError: ``texts`` is one string, or holds something else than strings.
            ParameterError: an option out of its range (``steps``, ``batch_size``, ``seq_len``
                below 1 or 2, ``lr`` not positive, a NaN, a negative count, a non-bool flag).
            ContextLengthError: ``seq_len`` is longer than the model's context.
            ReadoutError: with ``vocab_subset``, the restricted readout does not reproduce the
                model's own logits (its output transform is not per token).

        """
        check_fit_options(model, texts, steps=steps, lr=lr, batch_size=batch_size, seq_len=seq_len,
                          weight_decay=weight_decay, max_seconds=max_seconds, seed=seed,
                          vocab_subset=vocab_subset, frequent_tokens=frequent_tokens,
                          tail_samples=tail_samples, positions_per_step=positions_per_step,
                          lr_decay=lr_decay, callback=callback)
        lens = cls.from_model(model)
        windows = _windows(model, texts, seq_len)
        opt = torch.optim.AdamW(lens.parameters(), lr=lr, weight_decay=weight_decay)
        read = readout_fn(model)
        gen = torch.Generator().manual_seed(seed)
        device = ModelView(model).input_device
        extra = _frequent(windows, frequent_tokens, _vocab_size(model)).to(device)
        frozen = [p for p in model.parameters() if p.requires_grad]
        for p in frozen:
            p.requires_grad_(False)
        start = time.perf_counter()
        subset_sizes: list[int] = []
        try:
            for step in range(steps):
                pick = torch.randint(0, len(windows), (min(batch_size, len(windows)),),
                                     generator=gen)
                tokens = windows[pick].to(device)
                # The restricted loss needs final logits at the read rows only: after the first
                # step (which checks the restricted readout against the model's own logits) the
                # forward pass stops before the model unembeds every position.
                subset_only = vocab_subset is not None and step > 0
                resid, logits = _forward(model, tokens, logits=not subset_only)
                rows = _rows(tokens.numel(), positions_per_step, gen)
                if logits is None:
                    with torch.no_grad():
                        last = resid[-1][rows.to(resid[-1].device)]
                        final = torch.cat([read(last[s : s + _ROWS]).float()
                                           for s in range(0, len(last), _ROWS)])
                else:
                    final = logits[rows.to(logits.device)].float()
                opt.zero_grad()
                if vocab_subset is None:
                    target = final.log_softmax(-1)
                    total = 0.0
                    for layer in range(lens.n_layers):
                        logp = read(lens(resid[layer][rows.to(resid[layer].device)],
                                         layer)).float().log_softmax(-1)
                        kl = (target.exp() * (target - logp)).sum(-1).mean()
                        kl.backward()
                        total += kl.item()
                else:
                    total, n_ids = subset_step(model, lens, tokens, resid, final, rows,
                                                vocab_subset, extra, tail_samples, gen,
                                                check=step == 0)
                    subset_sizes.append(n_ids)
                opt.step()
                if lr_decay:
                    done = max((step + 1) / steps, (time.perf_counter() - start) / max_seconds)
                    for group in opt.param_groups:
                        group["lr"] = lr * max(0.0, 1.0 - done)
                lens.history.append(total / lens.n_layers)
                if callback is not None:
                    callback(step, lens.history[-1])
                if time.perf_counter() - start > max_seconds:
                    break
        finally:
            for p in frozen:
                p.requires_grad_(True)
        lens.meta["training"] = {
            "steps": len(lens.history), "lr": lr, "batch_size": batch_size, "seq_len": seq_len,
            "weight_decay": weight_decay, "seed": seed, "vocab_subset": vocab_subset,
            "frequent_tokens": frequent_tokens if vocab_subset else 0,
            "tail_samples": tail_samples if vocab_subset else 0,
            "positions_per_step": positions_per_step, "lr_decay": lr_decay,
            "n_windows": len(windows),
            "seconds": round(time.perf_counter() - start, 1),
            "mean_subset_size": (round(sum(subset_sizes) / len(subset_sizes), 1)
                                 if subset_sizes else None),
            "loss": "KL(p_final || p_lens) over the full vocabulary" if vocab_subset is None
            else "KL(p_final || p_lens) renormalised over V' = top-K of p_final per position "
                 "+ next tokens + frequent tokens" + (" + a sampled tail bucket"
                                                      if tail_samples else ""),
        }
        return lens.eval()

    def save(self, path: str | Path, *, dtype: torch.dtype | None = None,
             overwrite: bool = False) -> Path:
        """Save as the folder ``path`` (``tuned_lens.safetensors`` + ``.json``), atomically.

        Args:
            path: the folder.
            dtype: store the weights in this dtype (``torch.bfloat16`` halves the file);
                default: as trained (fp32). :meth:`load` always returns fp32.
            overwrite: replace a result already at ``path``.

        Raises:
            ResultExistsError: ``path`` holds a result and ``overwrite`` is false.
            ParameterError: ``dtype`` is not a floating torch dtype.

        """
        if dtype is not None and (not isinstance(dtype, torch.dtype)
                                  or not dtype.is_floating_point):
            raise ParameterError(
                f"dtype must be a floating torch dtype such as torch.bfloat16, got {dtype!r}."
            )
        state = {k: v.detach().to(dtype or v.dtype) for k, v in self.state_dict().items()}
        stored = next(iter(state.values())).dtype
        meta = {"d_model": self.d_model, "n_layers": self.n_layers,
                "fingerprint": self.fingerprint, "history": self.history[-20:],
                "dtype": str(stored).removeprefix("torch."), "meta": self.meta}
        return save_result(path, "tuned_lens", state, meta, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | Path, model: Any | None = None) -> TunedLens:
        """Load a saved lens (fp32, whatever it was stored in); with ``model``, check the model.

        Raises:
            ModelMismatchError: the lens was trained on another model.
            CorruptResultError: the files are damaged or do not match each other.

        """
        tensors, meta = load_result(path, "tuned_lens")
        try:
            lens = cls(int(meta["d_model"]), int(meta["n_layers"]), meta.get("fingerprint"))
            lens.load_state_dict({k: v.float() for k, v in tensors.items()})
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise CorruptResultError(
                f"The tuned lens in {path} is damaged ({type(err).__name__}: {err}); train and "
                "save it again."
            ) from None
        lens.history = list(meta.get("history", []))
        lens.meta = dict(meta.get("meta", {}))
        if model is not None:
            view = ModelView(model)
            view.check_fingerprint(lens.fingerprint, "This tuned lens")
            lens = lens.to(view.input_device)
        return lens.eval()


# --- internals ---------------------------------------------------------------------------------
def _vocab_size(model: Any) -> int:
    return int(model.W_U.shape[-1])


def _windows(model: Any, texts: Sequence[str], seq_len: int) -> Int[torch.Tensor, "window pos"]:
    ids: list[int] = []
    for text in texts:
        ids.extend(int(i) for i in model.to_tokens(text, truncate=False)[0])
    n = len(ids) // seq_len
    if n == 0:
        raise EmptyTokenizationError(
            f"The texts give {len(ids)} tokens, fewer than one window of seq_len={seq_len}; "
            "pass more text or a smaller seq_len."
        )
    flat = torch.tensor(ids[: n * seq_len], dtype=torch.long)
    return rearrange(flat, "(window pos) -> window pos", pos=seq_len)


def _frequent(windows: torch.Tensor, n: int, d_vocab: int) -> torch.Tensor:
    if n <= 0:
        return torch.zeros(0, dtype=torch.long)
    counts = torch.bincount(windows.reshape(-1), minlength=d_vocab)
    top = counts.topk(min(n, d_vocab))
    return top.indices[top.values > 0]


def _rows(n: int, keep: int | None, gen: torch.Generator) -> torch.Tensor:
    if keep is None or keep >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=gen)[:keep].sort().values


class _StopForward(Exception):
    """Raised by the last block's capture hook: the unembedding of every position is skipped."""


def _forward(
    model: Any, tokens: Int[torch.Tensor, "batch pos"], *, logits: bool = True,
) -> tuple[list[Float[torch.Tensor, "rows d_model"]], Float[torch.Tensor, "rows vocab"] | None]:
    """Residuals of lens layers ``0..L`` as ``[n, d]`` rows and the model's logits ``[n, V]``.

    With ``logits=False`` the forward pass stops after the last block (``None`` for logits).
    """
    n_layers = ModelView(model).n_layers
    store: dict[int, torch.Tensor] = {}

    def capture(layer: int) -> Any:
        def hook(x: torch.Tensor, hook: Any) -> None:
            store[layer] = rearrange(x.detach(), "batch pos d_model -> (batch pos) d_model")
            if layer == n_layers and not logits:
                raise _StopForward

        return hook

    hooks = [(resid_hook(i), capture(i)) for i in range(n_layers + 1)]
    out = None
    with torch.no_grad(), model.hooks(fwd_hooks=hooks):
        try:
            out = model(tokens)
        except _StopForward:
            pass
    resid = [store[i] for i in range(n_layers + 1)]
    return resid, None if out is None else rearrange(out, "batch pos vocab -> (batch pos) vocab")
