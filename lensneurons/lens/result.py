"""The value a logit-lens call returns: entropy, top tokens and token-set probabilities per depth.

Everything is on the CPU and small: no vocabulary-sized tensor is kept. Depth ``0`` is the
embeddings, depth ``d`` the output of block ``d - 1`` (see :mod:`lensneurons.lens.logit`).

Examples:
    >>> import lensneurons as ln
    >>> model = ln.organism.load()
    >>> r = ln.logit_lens(model, "Le chat", top_k=3)
    >>> r.table().columns[:4].tolist()
    ['depth', 'batch', 'position', 'entropy_bits']

"""

from __future__ import annotations

from dataclasses import InitVar, dataclass, field
from typing import Any

import pandas as pd
import torch
from jaxtyping import Float, Int

from lensneurons.core import checks as _checks
from lensneurons.core.result import Result
from lensneurons.errors import UnknownLanguageError


@dataclass
class LensResult(Result):
    """Logit-lens readings at the asked depths and positions.

    Shapes below are for one position per row (the default ``positions=-1``); with several
    positions a ``pos`` axis follows ``batch``.

    Attributes:
        depths: where the lens read: 0 = the embeddings, ``d`` = the output of block ``d - 1``
            (not block indices).
        positions: absolute positions read, ``[batch, n_pos]``.
        entropy: entropy of the next-token distribution in bits, ``[depth, batch]``.
        top_ids: ids of the most probable tokens, ``[depth, batch, k]``.
        top_probs: their probabilities, ``[depth, batch, k]``.
        set_probs: summed probability of each token set, ``[depth, batch, n_sets]`` (or None).
        set_names: names of the token sets, in order.
        vocab: token id -> text of every id in ``top_ids``, decoded once by the ``tokenizer``
            given at construction (which is not kept), so a saved and loaded result shows the
            same tokens; ids it lacks read as their number.
        fingerprint: the model's fingerprint (:meth:`ModelView.fingerprint`): ``load(path,
            model)`` refuses the result of another model.
        decoder: how the residuals were decoded: ``{"name": "logit_lens"}``, ``"tuned_lens"``,
            ``"translator"`` or ``"patchscope"`` (with its target prompt, patched position and
            whether the target's prefix was cached); empty for results made by hand.

    ``.table()`` has one row per (depth, batch, position); ``.plot()`` the per-depth curves.
    """

    depths: list[int]
    positions: Int[torch.Tensor, "batch n_pos"]
    entropy: Float[torch.Tensor, "depth batch *pos"]
    top_ids: Int[torch.Tensor, "depth batch *pos k"]
    top_probs: Float[torch.Tensor, "depth batch *pos k"]
    set_probs: Float[torch.Tensor, "depth batch *pos n_sets"] | None = None
    set_names: list[str] = field(default_factory=list)
    tokenizer: InitVar[Any] = None
    vocab: dict[int, str] = field(default_factory=dict, repr=False)
    fingerprint: dict[str, Any] = field(default_factory=dict, repr=False)
    decoder: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self, tokenizer: Any) -> None:
        if tokenizer is None:
            return
        ids = [i for i in torch.unique(self.top_ids).tolist() if i not in self.vocab]
        batch_decode = getattr(tokenizer, "batch_decode", None)
        texts = (batch_decode([[i] for i in ids]) if callable(batch_decode) and ids
                 else [tokenizer.decode([i]) for i in ids])
        self.vocab = {**self.vocab, **dict(zip(ids, texts, strict=True))}

    def __repr__(self) -> str:
        return (f"LensResult(depths={self.depths}, entropy={tuple(self.entropy.shape)}, "
                f"top_k={self.top_ids.shape[-1]}, sets={self.set_names})")

    def _token(self, i: int) -> str:
        return self.vocab.get(i, str(i))

    @property
    def multi_position(self) -> bool:
        """Whether the tensors carry a ``pos`` axis."""
        return self.entropy.ndim == 3

    def set_prob(self, name: str) -> Float[torch.Tensor, "depth batch *pos"]:
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
        """Decode the top tokens with probabilities, nested ``[depth][batch](+[pos])[(str, p)]``.

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

        def walk(ids: torch.Tensor, probs: torch.Tensor) -> list:
            if ids.ndim == 1:
                return [(self._token(int(i)), float(p))
                        for i, p in zip(ids[:k], probs[:k], strict=True)]
            return [walk(a, b) for a, b in zip(ids, probs, strict=True)]

        return walk(self.top_ids, self.top_probs)

    def table(self) -> pd.DataFrame:
        """One row per (depth, batch, position): entropy, top-1 token and each set's probability.

        Columns ``depth``, ``batch``, ``position``, ``entropy_bits``, ``top_token``,
        ``top_prob`` and ``p_<set>`` per token set.

        >>> r.table().head()  # doctest: +SKIP
        """
        ent = self.entropy if self.multi_position else self.entropy.unsqueeze(-1)
        ids = self.top_ids if self.multi_position else self.top_ids.unsqueeze(2)
        probs = self.top_probs if self.multi_position else self.top_probs.unsqueeze(2)
        sets = None
        if self.set_probs is not None:
            sets = self.set_probs if self.multi_position else self.set_probs.unsqueeze(2)
        records = []
        for li, depth in enumerate(self.depths):
            for b in range(ent.shape[1]):
                for p in range(ent.shape[2]):
                    row = {
                        "depth": depth,
                        "batch": b,
                        "position": int(self.positions[b, p]),
                        "entropy_bits": float(ent[li, b, p]),
                        "top_token": self._token(int(ids[li, b, p, 0])),
                        "top_prob": float(probs[li, b, p, 0]),
                    }
                    for si, set_name in enumerate(self.set_names):
                        row[f"p_{set_name}"] = float(sets[li, b, p, si])  # type: ignore[index]
                    records.append(row)
        return pd.DataFrame.from_records(records)

    def plot(self, ax: Any = None, *, batch: int | None = None) -> Any:
        """Per-depth token-set probabilities and entropy (mean over rows), or top-1 tokens.

        Args:
            ax: a matplotlib axes to draw in; a new figure otherwise.
            batch: plot one row only.

        Returns:
            The matplotlib figure (``ax.figure`` when ``ax`` is given).

        """
        from lensneurons.lens.plots import plot_lens_result

        return plot_lens_result(self, ax=ax, batch=batch)
