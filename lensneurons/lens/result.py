"""The value a logit-lens call returns: entropy, top tokens and token-set probabilities per layer.

Everything is on the CPU and small: no vocabulary-sized tensor is kept.

Examples:
    >>> r = ln.logit_lens(model, "Le chat", top_k=3)  # doctest: +SKIP
    >>> r.to_dataframe().columns[:4].tolist()  # doctest: +SKIP
    ['layer', 'batch', 'position', 'entropy_bits']

"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float, Int

from lensneurons.core import checks as _checks
from lensneurons.errors import UnknownLanguageError


@dataclass
class LensResult:
    """Logit-lens readings at the asked layers and positions.

    Shapes below are for one position per row (the default ``positions=-1``); with several
    positions a ``pos`` axis follows ``batch``.

    Attributes:
        layers: lens layer indices (0 = embeddings, ``l`` = output of block ``l - 1``).
        positions: absolute positions read, ``[batch, n_pos]``.
        entropy: entropy of the next-token distribution in bits, ``[layer, batch]``.
        top_ids: ids of the most probable tokens, ``[layer, batch, k]``.
        top_probs: their probabilities, ``[layer, batch, k]``.
        set_probs: summed probability of each token set, ``[layer, batch, n_sets]`` (or None).
        set_names: names of the token sets, in order.
        tokenizer: used to decode ``top_tokens``.

    """

    layers: list[int]
    positions: Int[torch.Tensor, "batch n_pos"]
    entropy: Float[torch.Tensor, "layer batch *pos"]
    top_ids: Int[torch.Tensor, "layer batch *pos k"]
    top_probs: Float[torch.Tensor, "layer batch *pos k"]
    set_probs: Float[torch.Tensor, "layer batch *pos n_sets"] | None = None
    set_names: list[str] = field(default_factory=list)
    tokenizer: Any = field(default=None, repr=False)

    def __repr__(self) -> str:
        return (f"LensResult(layers={self.layers}, entropy={tuple(self.entropy.shape)}, "
                f"top_k={self.top_ids.shape[-1]}, sets={self.set_names})")

    @property
    def multi_position(self) -> bool:
        """Whether the tensors carry a ``pos`` axis."""
        return self.entropy.ndim == 3

    def set_prob(self, name: str) -> Float[torch.Tensor, "layer batch *pos"]:
        """Return the summed probability of one token set.

        Raises:
            UnknownLanguageError: no token set of that name was requested (a ``KeyError``).

        """
        if self.set_probs is None or name not in self.set_names:
            raise UnknownLanguageError(
                f"No token set {name!r}; the call asked for {self.set_names}. Pass "
                "token_sets={name: ids} to logit_lens."
            )
        return self.set_probs[..., self.set_names.index(name)]

    def top_tokens(self, k: int | None = None) -> list:
        """Decode the top tokens with probabilities, nested ``[layer][batch](+[pos])[(str, p)]``.

        Args:
            k: how many (at most the ``top_k`` of the call); default all kept.

        Raises:
            ParameterError: ``k`` is not an integer >= 1.

        Examples:
            >>> r.top_tokens(2)[-1][0]  # doctest: +SKIP
            [(' chat', 0.41), (' chien', 0.12)]

        """
        kept = self.top_ids.shape[-1]
        k = kept if k is None else min(_checks.positive_int(k, "k"), kept)

        def name(i: int) -> str:
            return self.tokenizer.decode([i]) if self.tokenizer is not None else str(i)

        def walk(ids: torch.Tensor, probs: torch.Tensor) -> list:
            if ids.ndim == 1:
                return [(name(int(i)), float(p)) for i, p in zip(ids[:k], probs[:k], strict=True)]
            return [walk(a, b) for a, b in zip(ids, probs, strict=True)]

        return walk(self.top_ids, self.top_probs)

    def to_dataframe(self) -> Any:
        """One row per (layer, batch, position): entropy, top-1 token and each set's probability.

        >>> r.to_dataframe().head()  # doctest: +SKIP
        """
        import pandas as pd

        ent = self.entropy if self.multi_position else self.entropy.unsqueeze(-1)
        ids = self.top_ids if self.multi_position else self.top_ids.unsqueeze(2)
        probs = self.top_probs if self.multi_position else self.top_probs.unsqueeze(2)
        sets = None
        if self.set_probs is not None:
            sets = self.set_probs if self.multi_position else self.set_probs.unsqueeze(2)
        records = []
        for li, layer in enumerate(self.layers):
            for b in range(ent.shape[1]):
                for p in range(ent.shape[2]):
                    tid = int(ids[li, b, p, 0])
                    row = {
                        "layer": layer,
                        "batch": b,
                        "position": int(self.positions[b, p]),
                        "entropy_bits": float(ent[li, b, p]),
                        "top_token": self.tokenizer.decode([tid]) if self.tokenizer else str(tid),
                        "top_prob": float(probs[li, b, p, 0]),
                    }
                    for si, set_name in enumerate(self.set_names):
                        row[f"p_{set_name}"] = float(sets[li, b, p, si])  # type: ignore[index]
                    records.append(row)
        return pd.DataFrame.from_records(records)

    def plot(self, ax: Any = None, *, batch: int | None = None) -> Any:
        """Per-layer token-set probabilities and entropy (mean over rows), or a top-token grid.

        Args:
            ax: a matplotlib axes to draw in; a new figure otherwise.
            batch: plot one row only.

        Returns:
            The matplotlib figure.

        """
        from lensneurons.lens.plots import plot_lens_result

        return plot_lens_result(self, ax=ax, batch=batch)
