"""Steering with a residual direction: add ``strength x RMS norm x unit vector`` after a block.

The hook adds ``strength * directions.resid_norm[layer] * directions.vectors[layer]`` to
``blocks.{layer}.hook_resid_post`` at every position (or the ``positions`` given, which index
each forward pass exactly as for the neuron hooks of :mod:`lensneurons.intervene.hooks`). The
strength is in units of the residual stream's RMS norm at that layer, measured on the corpus the
directions were made from, so ``strength=1`` adds a vector as long as a typical residual vector
there. It is an ordinary TL hook: ``model.hooks(fwd_hooks=...)``, ``run_with_hooks``,
``ln.forcing_rate`` and ``ln.sweep`` take it, and it composes with any other hook.

Examples:
    >>> import lensneurons as ln
    >>> model = ln.organism.load()
    >>> corpus = ln.Corpus.from_texts(ln.organism.texts("heldout"))
    >>> fr = ln.diffmean_directions(ln.collect(model, corpus, site="resid", progress=False), "fr")
    >>> hooks = ln.add_direction(fr, 0.5, layer=1, model=model)
    >>> [name for name, _ in hooks if isinstance(name, str)]
    ['blocks.1.hook_resid_post']
    >>> with model.hooks(fwd_hooks=hooks):
    ...     steered = model("Hello")
"""

from __future__ import annotations

import math
from typing import Any

import torch

from lensneurons.core.model import ModelView, block_hook
from lensneurons.detect.directions import Directions
from lensneurons.errors import LayerIndexError, ParameterError, ShapeMismatchError
from lensneurons.intervene.hooks import (
    HookList,
    LayerCheck,
    Positions,
    _check_positions,
    _noop,
    _position_index,
)


class DirectionHook:
    """A TL hook adding one vector to the residual stream at some positions; ``repr`` says which.

    Args:
        layer: the block whose output it edits.
        vector: the vector added, ``[d_model]``.
        positions: positions edited (``None``: all).
    """

    def __init__(self, layer: int, vector: torch.Tensor, positions: Positions) -> None:
        self.layer, self.vector, self.positions = layer, vector, positions
        self._on: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    def __repr__(self) -> str:
        where = "all positions" if self.positions is None else f"positions {self.positions}"
        return (f"DirectionHook(add a vector of norm {float(self.vector.norm()):.3g} after block "
                f"{self.layer}, {where})")

    def __call__(self, x: torch.Tensor, *, hook: Any) -> torch.Tensor:
        """Add the vector to ``x`` (``[batch, pos, d_model]``) and return it."""
        if x.shape[-1] != self.vector.shape[0]:
            raise ShapeMismatchError(
                f"Hook {hook.name!r}: a direction of width {self.vector.shape[0]} was added to a "
                f"residual stream of width {x.shape[-1]}. Use directions made on this model.")
        key = (x.device, x.dtype)
        if key not in self._on:
            self._on[key] = self.vector.to(device=x.device, dtype=x.dtype)
        vector = self._on[key]
        if self.positions is None:
            return x + vector
        pos = _position_index(self.positions, x.shape[1]).to(x.device)
        x = x.clone()
        x[:, pos] += vector
        return x


def add_direction(directions: Directions, strength: float, *, layer: int,
                  positions: Positions = None, model: Any = None) -> HookList:
    """Hooks that push the residual stream after block ``layer`` along a language direction.

    Args:
        directions: from :func:`~lensneurons.diffmean_directions` or
            :func:`~lensneurons.pca_directions`.
        strength: the length added, in RMS norms of the residual stream at ``layer``
            (negative: away from the target).
        layer: the block whose output is edited (negative counts from the last).
        positions: positions of each forward pass to edit (``None``: all; ``-1``: the newest
            token, i.e. only what is generated once the prompt has passed).
        model: the model: the directions are checked against it now (layers, width, and the
            weights they were made on).

    Raises:
        ParameterError: not :class:`Directions`, a non-finite ``strength``, bad ``positions``.
        LayerIndexError: ``layer`` outside the directions' layers.
        ShapeMismatchError, ModelMismatchError: directions of another model.
    """
    if not isinstance(directions, Directions):
        raise ParameterError(f"add_direction needs Directions (ln.diffmean_directions or "
                             f"ln.pca_directions), got {type(directions).__name__}.")
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not math.isfinite(
            strength):
        raise ParameterError(f"strength must be a finite number, got {strength!r}.")
    if isinstance(layer, bool) or not isinstance(layer, int) or not (
            -directions.n_layers <= layer < directions.n_layers):
        raise LayerIndexError(
            f"layer={layer!r} is not one of the directions' {directions.n_layers} layers "
            f"(0..{directions.n_layers - 1}, or negative from the end).")
    layer %= directions.n_layers
    positions = _check_positions(positions)
    if model is not None:
        directions.check_model(model if isinstance(model, ModelView) else ModelView(model))
    vector = strength * directions.resid_norm[layer] * directions.vectors[layer]
    return [(LayerCheck(directions.n_layers, directions.d_model, "resid", "A direction"), _noop),
            (block_hook(layer, "hook_resid_post"), DirectionHook(layer, vector.float(), positions))]
