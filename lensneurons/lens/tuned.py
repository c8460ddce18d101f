"""The tuned lens (Belrose et al. 2023): per-depth affine translators before the model's readout.

Translator ``d`` maps the residual at lens depth ``d`` (0 = embeddings, ``d`` = output of block
``d - 1``) as ``h + A_d h + b_d``; ``A_d`` and ``b_d`` start at zero, so an untrained lens *is* the
logit lens. Training minimises KL(p_final || p_d) at the same position over a text corpus, one
depth's graph at a time, with the model frozen. The last depth (``L``) needs no translator.

Large vocabularies (Gemma 3: 262,144 tokens) make the exact loss expensive: every step reads every
depth through the whole unembedding, forward and backward. ``fit(..., vocab_subset=K)`` trains on a
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
``latent_language(model, items, lens=tuned)``. It is a result like the others: ``.table()`` gives
per depth the translator's norms and the training loss, ``.plot()`` draws them. Saved through the
persistence layer as ``tuned_lens.safetensors`` plus ``tuned_lens.json`` holding the model
fingerprint, checked on load (``save(path, dtype=torch.bfloat16)`` halves the file; loading always
gives fp32). Caveat for the English-pivot
question: the lens is trained toward the final prediction and can optimise the pivot away; read it
as a robustness check, trained on multilingual text.

Examples:
    >>> from lensneurons.lens import TunedLens, logit_lens
    >>> tuned = TunedLens.fit(model, texts, steps=50)  # doctest: +SKIP
    >>> tuned.save("lens_dir"); tuned = TunedLens.load("lens_dir", model)  # doctest: +SKIP
    >>> tuned.table()  # per depth: weight_norm, bias_norm, loss  # doctest: +SKIP
    >>> logit_lens(model, "Le chat", lens=tuned)  # doctest: +SKIP

"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from einops import rearrange
from jaxtyping import Float, Int
from torch import nn

from lensneurons.core import checks as _checks
from lensneurons.core.figures import axes
from lensneurons.core.model import ModelView, resid_hook
from lensneurons.core.persistence import save_result
from lensneurons.core.result import Result
from lensneurons.errors import (
    CorruptResultError,
    EmptyTokenizationError,
    ParameterError,
    PositionOutOfRangeError,
    ShapeMismatchError,
)
from lensneurons.lens._inputs import check_fit_options
from lensneurons.lens._subset import subset_step
from lensneurons.lens.readout import readout_fn, subset_readout

__all__ = ["TunedLens", "subset_readout"]

_ROWS = 256  # rows per full-vocabulary readout chunk (batched: the weight streaming dominates)
_LAST_STEPS = 10  # the per-depth training loss is the mean over this many last steps


class TunedLens(nn.Module, Result):
    """Identity-initialised affine translators, one per lens depth ``0..L-1``.

    Depth ``d`` is the residual after block ``d - 1`` (0: the embeddings); the last depth ``L``
    is read as it is.

    Args:
        d_model: residual width.
        n_layers: number of blocks ``L`` of the model.
        fingerprint: the model's :meth:`ModelView.fingerprint`, stored on save.

    Attributes:
        history: mean training loss (nats) per step.
        meta: free-form JSON-able record saved with the lens (``fit`` puts its settings under
            ``"training"``, with the per-depth loss of the last steps as ``"depth_loss"``).

    A result (:class:`~lensneurons.core.result.Result`): ``.table()``, ``.plot()``,
    ``.save(path)``, ``TunedLens.load(path, model)``.
    """

    kind = "tuned_lens"

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
        self, h: Float[torch.Tensor, "*rows d_model"], depth: int
    ) -> Float[torch.Tensor, "*rows d_model"]:
        """Translate residuals read at lens depth ``depth`` (identity at the last depth, ``L``).

        Raises:
            PositionOutOfRangeError: ``depth`` outside ``0..L``.
            ShapeMismatchError: ``h`` is not ``d_model`` wide.
        """
        if not 0 <= depth <= self.n_layers:
            raise PositionOutOfRangeError(
                f"Depth {depth} is outside this tuned lens's depths 0..{self.n_layers}."
            )
        if h.shape[-1] != self.d_model:
            raise ShapeMismatchError(
                f"The tuned lens translates residuals of width {self.d_model}, got "
                f"{h.shape[-1]}: it was trained on another model."
            )
        if depth == self.n_layers:
            return h
        t: nn.Linear = self.translators[depth]  # type: ignore[assignment]
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
        depth_losses: list[list[float]] = []  # per step, the loss of every depth
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
                    losses = []
                    for depth in range(lens.n_layers):
                        logp = read(lens(resid[depth][rows.to(resid[depth].device)],
                                         depth)).float().log_softmax(-1)
                        kl = (target.exp() * (target - logp)).sum(-1).mean()
                        kl.backward()
                        losses.append(kl.item())
                else:
                    losses, n_ids = subset_step(model, lens, tokens, resid, final, rows,
                                                 vocab_subset, extra, tail_samples, gen,
                                                 check=step == 0)
                    subset_sizes.append(n_ids)
                total = sum(losses)
                depth_losses.append(losses)
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
            "depth_loss": [sum(step[d] for step in depth_losses[-_LAST_STEPS:])
                           / len(depth_losses[-_LAST_STEPS:]) for d in range(lens.n_layers)],
            "loss": "KL(p_final || p_lens) over the full vocabulary" if vocab_subset is None
            else "KL(p_final || p_lens) renormalised over V' = top-K of p_final per position "
                 "+ next tokens + frequent tokens" + (" + a sampled tail bucket"
                                                      if tail_samples else ""),
        }
        return lens.eval()

    # -- the result convention ----------------------------------------------------------------
    def table(self) -> pd.DataFrame:
        """Per translated depth ``0..L-1``: the translator's norms and its training loss.

        Columns ``weight_norm`` (Frobenius norm of ``A_d``; 0 for the identity) and
        ``bias_norm`` (of ``b_d``), and ``loss``: the mean KL (nats) at that depth over the
        last training steps (NaN for a lens trained before it was recorded, or not trained).
        """
        with torch.no_grad():
            weight = [float(t.weight.detach().float().norm()) for t in self.translators]
            bias = [float(t.bias.detach().float().norm()) for t in self.translators]
        loss = (self.meta.get("training") or {}).get("depth_loss")
        if not isinstance(loss, list) or len(loss) != self.n_layers:
            loss = [float("nan")] * self.n_layers
        return pd.DataFrame({"weight_norm": weight, "bias_norm": bias,
                             "loss": [float(v) for v in loss]},
                            index=pd.RangeIndex(self.n_layers, name="depth"))

    def summary_line(self) -> str:
        """The lens's size and how long it was trained, in one line."""
        steps = (self.meta.get("training") or {}).get("steps")
        trained = f"trained {steps} steps" if steps else "untrained"
        return f"TunedLens: {self.n_layers} translators of width {self.d_model}, {trained}"

    def plot(self, ax: Any = None) -> Any:
        """Per depth, the translator's weight norm (bars) and training loss (line)."""
        table = self.table()
        fig, ax = axes(ax, (6.5, 3.5))
        ax.bar(table.index, table["weight_norm"], color="tab:gray", label="|A_d| (Frobenius)")
        ax.set_xlabel("depth (0 = embeddings, d = output of block d - 1)")
        ax.set_ylabel("translator weight norm")
        if table["loss"].notna().any():
            twin = ax.twinx()
            twin.plot(table.index, table["loss"], "o-", color="tab:blue",
                      label="KL to the final distribution")
            twin.set_ylabel("training KL (nats)", color="tab:blue")
            twin.set_ylim(bottom=0)
        ax.set_title(self.summary_line())
        fig.tight_layout()
        return fig

    # -- storage ---------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False,
             dtype: torch.dtype | None = None) -> Path:
        """Save as the folder ``path`` (``tuned_lens.safetensors`` + ``.json``), atomically.

        Args:
            path: the folder.
            overwrite: replace a result already at ``path``.
            dtype: store the weights in this dtype (``torch.bfloat16`` halves the file);
                default: as trained (fp32). :meth:`load` always returns fp32.

        Returns:
            The folder written.

        Raises:
            ResultExistsError: ``path`` holds a result and ``overwrite`` is false.
            ParameterError: ``dtype`` is not a floating torch dtype.

        """
        if dtype is not None and (not isinstance(dtype, torch.dtype)
                                  or not dtype.is_floating_point):
            raise ParameterError(
                f"dtype must be a floating torch dtype such as torch.bfloat16, got {dtype!r}."
            )
        tensors, meta = self._record(dtype)
        return save_result(path, self.kind, tensors, meta, overwrite=overwrite,
                           model=self._model())

    def _model(self) -> Any:
        return self  # a module: its parameters' dtype and device enter the environment

    def _record(self, dtype: torch.dtype | None = None,
                ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        state = {k: v.detach().to(dtype or v.dtype) for k, v in self.state_dict().items()}
        stored = next(iter(state.values())).dtype
        meta = {"d_model": self.d_model, "n_layers": self.n_layers,
                "fingerprint": self.fingerprint, "history": self.history[-20:],
                "dtype": str(stored).removeprefix("torch."), "meta": self.meta}
        return state, meta

    @classmethod
    def _from_record(cls, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> TunedLens:
        try:
            lens = cls(int(meta["d_model"]), int(meta["n_layers"]), meta.get("fingerprint"))
            lens.load_state_dict({k: v.float() for k, v in tensors.items()})
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise CorruptResultError(
                f"The tuned lens is damaged ({type(err).__name__}: {err}); train and save it "
                "again."
            ) from None
        lens.history = list(meta.get("history", []))
        lens.meta = dict(meta.get("meta", {}))
        return lens.eval()

    def _check_model(self, model: Any) -> None:
        """Refuse another model's lens, even one saved without a fingerprint."""
        ModelView(model).check_fingerprint(self.fingerprint, "This tuned lens")

    @classmethod
    def load(cls, path: str | os.PathLike[str], model: Any | None = None) -> TunedLens:
        """Load a saved lens (fp32, whatever it was stored in).

        With ``model``, refuse a lens of another model and move the lens to its device.

        Raises:
            ModelMismatchError: the lens was trained on another model.
            CorruptResultError: the files are damaged or do not match each other.

        """
        lens = super().load(path, model)
        if model is not None:
            lens = lens.to(ModelView(model).input_device)
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
    """Residuals of lens depths ``0..L`` as ``[n, d]`` rows and the model's logits ``[n, V]``.

    With ``logits=False`` the forward pass stops after the last block (``None`` for logits).
    """
    n_layers = ModelView(model).n_layers
    store: dict[int, torch.Tensor] = {}

    def capture(depth: int) -> Any:
        def hook(x: torch.Tensor, hook: Any) -> None:
            store[depth] = rearrange(x.detach(), "batch pos d_model -> (batch pos) d_model")
            if depth == n_layers and not logits:
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
