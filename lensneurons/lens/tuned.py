"""The tuned lens (Belrose et al. 2023): per-layer affine translators before the model's readout.

Translator ``l`` maps lens layer ``l`` (0 = embeddings, ``l`` = output of block ``l - 1``) as
``h + A_l h + b_l``; ``A_l`` and ``b_l`` start at zero, so an untrained lens *is* the logit lens.
Training minimises KL(p_final || p_l) at the same position over a text corpus, one layer's graph
at a time, with the model frozen. The last layer needs no translator.

Use it wherever the logit lens runs: ``logit_lens(model, x, lens=tuned)`` or
``latent_language(model, items, lens=tuned)``. Saved as ``tuned_lens.safetensors`` plus
``tuned_lens.json`` holding the model fingerprint, checked on load. Caveat for the English-pivot
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
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import nn

from lensneurons.lens.logit import readout_fn
from lensneurons.model import ModelView

WEIGHTS_FILE = "tuned_lens.safetensors"
CONFIG_FILE = "tuned_lens.json"


class TunedLens(nn.Module):
    """Identity-initialised affine translators, one per lens layer ``0..L-1``.

    Args:
        d_model: residual width.
        n_layers: number of blocks ``L`` of the model.
        fingerprint: the model's :meth:`ModelView.fingerprint`, stored on save.

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
            max_seconds: float = 300.0, seed: int = 0) -> TunedLens:
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
            seed: for window sampling.

        Returns:
            The trained lens; ``lens.history`` holds the mean KL (nats) per step.

        Raises:
            ValueError: the texts give fewer than ``seq_len`` tokens.

        """
        lens = cls.from_model(model)
        windows = _windows(model, texts, seq_len)
        opt = torch.optim.AdamW(lens.parameters(), lr=lr, weight_decay=weight_decay)
        read = readout_fn(model)
        gen = torch.Generator().manual_seed(seed)
        frozen = [p for p in model.parameters() if p.requires_grad]
        for p in frozen:
            p.requires_grad_(False)
        start = time.perf_counter()
        try:
            for _ in range(steps):
                pick = torch.randint(0, len(windows), (min(batch_size, len(windows)),),
                                     generator=gen)
                resid, target = _targets(model, windows[pick].to(ModelView(model).input_device))
                opt.zero_grad()
                total = 0.0
                for layer in range(lens.n_layers):
                    h = resid[layer]
                    logp = read(lens(h, layer)).float().log_softmax(-1)
                    kl = (target.exp() * (target - logp)).sum(-1).mean()
                    kl.backward()
                    total += kl.item()
                opt.step()
                lens.history.append(total / lens.n_layers)
                if time.perf_counter() - start > max_seconds:
                    break
        finally:
            for p in frozen:
                p.requires_grad_(True)
        return lens.eval()

    def save(self, path: str | Path) -> Path:
        """Write ``tuned_lens.safetensors`` and ``tuned_lens.json`` into directory ``path``."""
        from safetensors.torch import save_file

        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(folder / WEIGHTS_FILE))
        meta = {"d_model": self.d_model, "n_layers": self.n_layers,
                "fingerprint": self.fingerprint, "history": self.history[-20:],
                "format": "lensneurons.tuned_lens/1"}
        (folder / CONFIG_FILE).write_text(json.dumps(meta, indent=1))
        return folder

    @classmethod
    def load(cls, path: str | Path, model: Any | None = None) -> TunedLens:
        """Load a saved lens; with ``model``, check it was trained on that model.

        Raises:
            ModelMismatchError: the lens was trained on another model.

        """
        from safetensors.torch import load_file

        folder = Path(path)
        meta = json.loads((folder / CONFIG_FILE).read_text())
        lens = cls(int(meta["d_model"]), int(meta["n_layers"]), meta.get("fingerprint"))
        lens.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))
        lens.history = list(meta.get("history", []))
        if model is not None:
            view = ModelView(model)
            view.check_fingerprint(lens.fingerprint, "This tuned lens")
            lens = lens.to(view.input_device)
        return lens.eval()


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


def _targets(model: Any, tokens: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Residuals of lens layers 0..L-1 as ``[n, d]`` rows and final log-probs ``[n, vocab]``."""
    n_layers = ModelView(model).n_layers
    store: dict[int, torch.Tensor] = {}

    def capture(layer: int) -> Any:
        def hook(x: torch.Tensor, hook: Any) -> None:
            store[layer] = x.detach().reshape(-1, x.shape[-1])

        return hook

    hooks = [("blocks.0.hook_resid_pre", capture(0))]
    hooks += [(f"blocks.{i - 1}.hook_resid_post", capture(i)) for i in range(1, n_layers)]
    with torch.no_grad(), model.hooks(fwd_hooks=hooks):
        logits = model(tokens)
    target = logits.reshape(-1, logits.shape[-1]).float().log_softmax(-1)
    return [store[i] for i in range(n_layers)], target
