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

import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import nn

from lensneurons.lens.errors import ReadoutError
from lensneurons.lens.logit import _IDENTITY_RTOL, readout_fn
from lensneurons.model import ModelView

WEIGHTS_FILE = "tuned_lens.safetensors"
CONFIG_FILE = "tuned_lens.json"
_FORMAT = "lensneurons.tuned_lens/1"
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

    def forward(self, h: Float[torch.Tensor, "... d_model"], layer: int) -> torch.Tensor:
        """Translate residuals of lens layer ``layer`` (identity at the last layer)."""
        if layer >= self.n_layers:
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
            ValueError: the texts give fewer than ``seq_len`` tokens, or a bad option.
            ReadoutError: with ``vocab_subset``, the restricted readout does not reproduce the
                model's own logits (its output transform is not per token).

        """
        if vocab_subset is not None and vocab_subset < 1:
            raise ValueError(f"vocab_subset must be a positive top-K, got {vocab_subset}.")
        if positions_per_step is not None and positions_per_step < 1:
            raise ValueError(f"positions_per_step must be positive, got {positions_per_step}.")
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
                    total, n_ids = _subset_step(model, lens, tokens, resid, final, rows,
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

    def save(self, path: str | Path, *, dtype: torch.dtype | None = None) -> Path:
        """Write ``tuned_lens.safetensors`` and ``tuned_lens.json`` into directory ``path``.

        Args:
            path: the folder (created if missing).
            dtype: store the weights in this dtype (``torch.bfloat16`` halves the file);
                default: as trained (fp32). :meth:`load` always returns fp32.

        """
        from safetensors.torch import save_file

        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().to(dtype or v.dtype).cpu().contiguous()
                 for k, v in self.state_dict().items()}
        save_file(state, str(folder / WEIGHTS_FILE))
        stored = next(iter(state.values())).dtype
        meta = {"d_model": self.d_model, "n_layers": self.n_layers,
                "fingerprint": self.fingerprint, "history": self.history[-20:],
                "dtype": str(stored).removeprefix("torch."), "meta": self.meta,
                "format": _FORMAT}
        (folder / CONFIG_FILE).write_text(json.dumps(meta, indent=1))
        return folder

    @classmethod
    def load(cls, path: str | Path, model: Any | None = None) -> TunedLens:
        """Load a saved lens (fp32, whatever it was stored in); with ``model``, check the model.

        Raises:
            ModelMismatchError: the lens was trained on another model.

        """
        from safetensors.torch import load_file

        folder = Path(path)
        meta = json.loads((folder / CONFIG_FILE).read_text())
        lens = cls(int(meta["d_model"]), int(meta["n_layers"]), meta.get("fingerprint"))
        state = {k: v.float() for k, v in load_file(str(folder / WEIGHTS_FILE)).items()}
        lens.load_state_dict(state)
        lens.history = list(meta.get("history", []))
        lens.meta = dict(meta.get("meta", {}))
        if model is not None:
            view = ModelView(model)
            view.check_fingerprint(lens.fingerprint, "This tuned lens")
            lens = lens.to(view.input_device)
        return lens.eval()


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
    transform = _output_transform(model)
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
def _vocab_size(model: Any) -> int:
    return int(model.W_U.shape[-1])


def _output_transform(model: Any) -> Callable[[torch.Tensor], torch.Tensor] | None:
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
    n = _vocab_size(model)
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


def _windows(model: Any, texts: Sequence[str], seq_len: int) -> torch.Tensor:
    ids: list[int] = []
    for text in texts:
        ids.extend(int(i) for i in model.to_tokens(text)[0])
    n = len(ids) // seq_len
    if n == 0:
        raise ValueError(
            f"The texts give {len(ids)} tokens, fewer than one window of seq_len={seq_len}; "
            "pass more text or a smaller seq_len."
        )
    return torch.tensor(ids[: n * seq_len], dtype=torch.long).reshape(n, seq_len)


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


def _forward(model: Any, tokens: torch.Tensor, *, logits: bool = True,
             ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """Residuals of lens layers ``0..L`` as ``[n, d]`` rows and the model's logits ``[n, V]``.

    With ``logits=False`` the forward pass stops after the last block (``None`` for logits).
    """
    n_layers = ModelView(model).n_layers
    store: dict[int, torch.Tensor] = {}

    def capture(layer: int) -> Any:
        def hook(x: torch.Tensor, hook: Any) -> None:
            store[layer] = x.detach().reshape(-1, x.shape[-1])
            if layer == n_layers and not logits:
                raise _StopForward

        return hook

    hooks = [("blocks.0.hook_resid_pre", capture(0))]
    hooks += [(f"blocks.{i - 1}.hook_resid_post", capture(i)) for i in range(1, n_layers + 1)]
    out = None
    with torch.no_grad(), model.hooks(fwd_hooks=hooks):
        try:
            out = model(tokens)
        except _StopForward:
            pass
    resid = [store[i] for i in range(n_layers + 1)]
    return resid, None if out is None else out.reshape(-1, out.shape[-1])


def _candidates(logits: torch.Tensor, tokens: torch.Tensor, rows: torch.Tensor, k: int,
                extra: torch.Tensor) -> torch.Tensor:
    """Sorted ``V'``: top-``k`` final tokens of every row, the next tokens, ``extra``."""
    top = logits.topk(min(k, logits.shape[-1]), dim=-1).indices.reshape(-1)
    seq_len = tokens.shape[1]
    flat = tokens.reshape(-1).to(rows.device)
    has_next = (rows % seq_len) < seq_len - 1
    nxt = flat[rows[has_next] + 1]
    return torch.unique(torch.cat([top, nxt.to(top.device), extra.to(top.device)]))


def _subset_step(model: Any, lens: TunedLens, tokens: torch.Tensor, resid: list[torch.Tensor],
                 final: torch.Tensor, rows: torch.Tensor, k: int, extra: torch.Tensor,
                 tail_samples: int, gen: torch.Generator, *, check: bool) -> tuple[float, int]:
    """Backward of the restricted KL at every layer; returns (summed loss, |V'|).

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
    total = 0.0
    for layer in range(lens.n_layers):
        z = read(lens(resid[layer][rows.to(resid[layer].device)], layer)).float()
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
        total += kl.item()
    return total, len(ids)


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
