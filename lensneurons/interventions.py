"""Interventions as plain TransformerLens hooks: deactivate, amplify, set, add, steer.

Every factory returns ``fwd_hooks``, a list of ``(hook_name, hook_fn)`` pairs, for
``model.hooks(fwd_hooks=...)``, ``model.run_with_hooks(..., fwd_hooks=...)`` or concatenation with
any other hooks. Hooks edit activations, never weights; they act on every batch row and every
position (or the ``positions`` given), also during ``model.generate`` with the KV cache.
``positions`` index the positions of each forward pass: with the KV cache, every generation step
after the prompt is a pass of one position, so a slice also edits each generated token, and
``positions=-1`` is the newest token.

Semantics are the papers' (DESIGN.md §3): on the ``"mlp"`` site they write at ``hook_post``,
the input of ``W_down``, ``h = act(g) * u`` on gated MLPs. Zeroing and scaling edit ``h``
(``a_j *= s`` is ``h_j *= s``). Setting or adding an activation value edits ``a = act(g)``
before the product: ``h_j := c * u_j`` or ``h_j += c * u_j``, with ``u`` read from
``hook_pre_linear`` in the same forward pass; on non-gated MLPs ``h = a`` is written directly.

Examples:
    >>> import torch, lensneurons as ln
    >>> model = ln.organism.load()
    >>> mask = torch.zeros(model.cfg.n_layers, model.cfg.d_mlp, dtype=torch.bool)
    >>> mask[0, :5] = True
    >>> hooks = ln.deactivate(ln.NeuronSet.from_mask(mask))
    >>> hooks[0][0]
    'blocks.0.mlp.hook_post'
    >>> with model.hooks(fwd_hooks=hooks):
    ...     logits = model("Hello")
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import torch

from lensneurons.errors import LensNeuronsError, PositionError, ShapeMismatchError
from lensneurons.model import ModelView
from lensneurons.neurons import NeuronSet, NeuronSets
from lensneurons.stats import ActivationStats

HookList = list[tuple[str, Callable[..., Any]]]
Values = float | torch.Tensor
Positions = int | Sequence[int] | slice | None
_WRITE_POINTS = {"mlp": "mlp.hook_post", "attn.q": "attn.hook_q", "attn.k": "attn.hook_k",
                 "attn.v": "attn.hook_v"}


class NeuronHook:
    """A TL hook that edits some units of one layer; ``repr`` says what it does.

    Args:
        layer: the layer it belongs to.
        index: unit indices edited.
        op: ``"zero"``, ``"scale"``, ``"set"`` or ``"add"``.
        values: one value or one per unit in ``index``.
        width: units per layer of the neuron set (checked on the first call).
        positions: positions edited (``None``: all).
        up: on gated MLPs for ``"set"``/``"add"``, the capture of ``u`` from the same pass.
    """

    def __init__(self, layer: int, index: torch.Tensor, op: str, values: torch.Tensor,
                 width: int, positions: Positions, up: _UpCapture | None) -> None:
        self.layer, self.index, self.op, self.values = layer, index, op, values
        self.width, self.positions, self.up = width, positions, up
        self._on: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def __repr__(self) -> str:
        where = "all positions" if self.positions is None else f"positions {self.positions}"
        return f"NeuronHook({self.op} {len(self.index)} units of layer {self.layer}, {where})"

    def _placed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.device not in self._on:
            self._on[x.device] = (self.index.to(x.device), self.values.to(x.device))
        index, values = self._on[x.device]
        return index, values.to(x.dtype)

    def __call__(self, x: torch.Tensor, *, hook: Any) -> torch.Tensor:
        """Edit ``x`` (the write point's tensor) and return it."""
        flat = x.flatten(-2) if x.dim() == 4 else x
        if flat.shape[-1] != self.width:
            raise ShapeMismatchError(
                f"Hook {hook.name!r}: a neuron set of width {self.width} was applied to a layer "
                f"with {flat.shape[-1]} units. Use sets detected on this model and site."
            )
        index, values = self._placed(flat)
        pos = slice(None) if self.positions is None else _position_index(self.positions,
                                                                        flat.shape[1])
        region = flat[:, pos][..., index]
        if self.op == "zero":
            region = torch.zeros_like(region)
        elif self.op == "scale":
            region = region * values
        else:
            coeff = values if self.up is None else values * self.up.take(pos)
            region = coeff.expand_as(region) if self.op == "set" else region + coeff
        if self.positions is None:
            flat[..., index] = region
        else:
            sub = flat[:, pos]
            sub[..., index] = region
            flat[:, pos] = sub
        return flat.view(x.shape)


class _UpCapture:
    """Stores ``u[..., index]`` from ``hook_pre_linear`` for the ``hook_post`` hook of the pass."""

    def __init__(self, index: torch.Tensor) -> None:
        self.index = index
        self.value: torch.Tensor | None = None
        self._on: dict[torch.device, torch.Tensor] = {}

    def __repr__(self) -> str:
        return f"capture u of {len(self.index)} units"

    def __call__(self, x: torch.Tensor, *, hook: Any) -> None:
        if x.device not in self._on:
            self._on[x.device] = self.index.to(x.device)
        self.value = x[..., self._on[x.device]]

    def take(self, pos: Any) -> torch.Tensor:
        """The captured ``u`` at ``pos`` (once per forward pass)."""
        if self.value is None:
            raise LensNeuronsError("The up projection was not captured before hook_post fired.")
        value, self.value = self.value[:, pos], None
        return value


def _position_index(positions: Positions, length: int) -> torch.Tensor:
    all_positions = torch.arange(length)
    try:
        if isinstance(positions, int):
            return all_positions[[positions]]
        return all_positions[positions]  # type: ignore[index]
    except IndexError:
        raise PositionError(
            f"positions={positions!r} does not exist in a forward pass of {length} positions. "
            "Positions index each forward pass; during generation with the KV cache every step "
            "after the prompt sees one position, so use positions=None (all) or -1 there."
        ) from None


def _gated(neurons: NeuronSet, model: Any) -> bool:
    if model is not None:
        return ModelView(model).gated
    if neurons.gated is None:
        raise LensNeuronsError(
            "Setting or adding activation values needs to know whether the MLP is gated "
            "(h = act(g) * u). Pass model=your_model, or use sets detected by lensneurons."
        )
    return neurons.gated


def _hooks(neurons: NeuronSet, op: str, values: Values, *, layers: Iterable[int] | None,
           positions: Positions, model: Any = None) -> HookList:
    if not isinstance(neurons, NeuronSet):
        raise TypeError(f"Expected a NeuronSet (e.g. neurons['fr']), got {type(neurons).__name__}.")
    values = torch.as_tensor(values, dtype=torch.float32)
    if values.dim() not in (0, 2) or (values.dim() == 2 and values.shape != neurons.mask.shape):
        raise ShapeMismatchError(
            f"Values must be one number or a [layer, unit] tensor of shape "
            f"{tuple(neurons.mask.shape)}, got shape {tuple(values.shape)}."
        )
    needs_up = op in ("set", "add") and neurons.site == "mlp" and _gated(neurons, model)
    keep = None if layers is None else set(layers)
    hooks: HookList = []
    for layer, index in enumerate(neurons.indices):
        if len(index) == 0 or (keep is not None and layer not in keep):
            continue
        layer_values = values if values.dim() == 0 else values[layer, index]
        up = _UpCapture(index) if needs_up else None
        if up is not None:
            hooks.append((f"blocks.{layer}.mlp.hook_pre_linear", up))
        hook = NeuronHook(layer, index, op, layer_values, neurons.shape[1], positions, up)
        hooks.append((f"blocks.{layer}.{_WRITE_POINTS[neurons.site]}", hook))
    return hooks


def deactivate(neurons: NeuronSet, *, layers: Iterable[int] | None = None,
               positions: Positions = None) -> HookList:
    """Zero the units' contributions (``a_j := 0``, exact zero-ablation; Tang et al.)."""
    return _hooks(neurons, "zero", 0.0, layers=layers, positions=positions)


def amplify(neurons: NeuronSet, factor: Values, *, layers: Iterable[int] | None = None,
            positions: Positions = None) -> HookList:
    """Scale the units' activations by ``factor`` (one number or ``[layer, unit]``)."""
    return _hooks(neurons, "scale", factor, layers=layers, positions=positions)


def set_activation(neurons: NeuronSet, values: Values, *, layers: Iterable[int] | None = None,
                   positions: Positions = None, model: Any = None) -> HookList:
    """Set ``a_j := c`` (so ``h_j := c * u_j`` on gated MLPs), e.g. ``c = stats.mean("fr")``."""
    return _hooks(neurons, "set", values, layers=layers, positions=positions, model=model)


def add_activation(neurons: NeuronSet, values: Values, *, layers: Iterable[int] | None = None,
                   positions: Positions = None, model: Any = None) -> HookList:
    """Add ``c`` to the activations: ``a_j += c`` (``h_j += c * u_j`` on gated MLPs)."""
    return _hooks(neurons, "add", values, layers=layers, positions=positions, model=model)


def steer(
    neurons: NeuronSets,
    stats: ActivationStats,
    source: str | None,
    target: str,
    *,
    method: Literal["additive", "replacement", "diffmean"] = "additive",
    alpha: float = 1.0,
    beta: float = 0.0,
    layers: Iterable[int] | None = None,
    positions: Positions = None,
    model: Any = None,
) -> HookList:
    """Steer from ``source`` to ``target`` language (Gurgurov et al.'s language arithmetic).

    First the source units are set to ``beta`` (``0``: deactivated; ``-1``, ``-1.5`` as in the
    paper); then the target units get ``a += alpha * mu_tgt`` (``"additive"``), ``a := mu_tgt``
    (``"replacement"``, Tang et al.'s reconstructed steering baseline) or
    ``a += alpha * (mu_tgt - mean over the other groups of mu)`` (``"diffmean"``), with ``mu`` the
    mean activation over all tokens of a group (``stats.mean``).

    Args:
        neurons: sets per group (``source`` may be ``None`` to skip deactivation).
        stats: statistics with sums (from :func:`lensneurons.collect`).
        source: group whose units are deactivated first, or ``None``.
        target: group whose units are activated.
        method: ``"additive"``, ``"replacement"`` or ``"diffmean"``.
        alpha: strength of the additive methods.
        beta: value the source units are set to.
        layers: restrict to these layers.
        positions: restrict to these positions.
        model: the model, if the sets do not record whether its MLP is gated.
    """
    options = dict(layers=layers, positions=positions, model=model)
    hooks: HookList = []
    if source is not None:
        hooks += (deactivate(neurons[source], layers=layers, positions=positions) if beta == 0
                  else set_activation(neurons[source], beta, **options))
    mu = stats.mean(target)
    if method == "additive":
        hooks += add_activation(neurons[target], alpha * mu, **options)
    elif method == "replacement":
        hooks += set_activation(neurons[target], mu, **options)
    elif method == "diffmean":
        others = torch.stack([stats.mean(g) for g in stats.groups if g != target]).mean(0)
        hooks += add_activation(neurons[target], alpha * (mu - others), **options)
    else:
        raise ValueError(f"method must be additive, replacement or diffmean, got {method!r}.")
    return hooks


def random_like(neurons: NeuronSet, seed: int = 0) -> NeuronSet:
    """A random set with the same number of units per layer, disjoint from ``neurons`` if possible.

    The baseline for every deactivation: a set of the same size and layer profile.
    """
    generator = torch.Generator().manual_seed(seed)
    mask = torch.zeros_like(neurons.mask)
    for layer, count in enumerate(neurons.per_layer()):
        if count == 0:
            continue
        pool = (~neurons.mask[layer]).nonzero().squeeze(1)
        if len(pool) < count:
            pool = torch.arange(neurons.shape[1])
        mask[layer, pool[torch.randperm(len(pool), generator=generator)[:count]]] = True
    return NeuronSet(mask, site=neurons.site, gated=neurons.gated)
