"""Interventions as plain TransformerLens hooks: deactivate, amplify, set, add, steer.

Every factory returns ``fwd_hooks``, a list of ``(hook_name, hook_fn)`` pairs, for
``model.hooks(fwd_hooks=...)``, ``model.run_with_hooks(..., fwd_hooks=...)`` or concatenation with
any other hooks. Hooks edit activations, never weights; they act on every batch row and every
position (or the ``positions`` given), also during ``model.generate`` with the KV cache.
``positions`` index the positions of each forward pass: with the KV cache, every generation step
after the prompt is a pass of one position, so a slice also edits each generated token, and
``positions=-1`` is the newest token.

Shapes are checked before anything runs: with ``model=`` at once, else when the hooks are
registered. With ``model=``, a set detected on another model (it records the fingerprint of the
model its statistics came from) is refused too, even when the shapes agree. Each list starts
with a :class:`LayerCheck`, a TL name filter that registers nothing and raises
:class:`~lensneurons.errors.ShapeMismatchError` if the model has another number of blocks than
the set; each hook checks the width of its layer at the first call. ``layers`` accepts negative
indices (``-1``: the last block).

Semantics are the papers' (docs/design.md §4): on the ``"mlp"`` site they write at ``hook_post``,
the input of ``W_down``, ``h = act(g) * u`` on gated MLPs. Zeroing and scaling edit ``h``
(``a_j *= s`` is ``h_j *= s``). Setting or adding an activation value edits ``a = act(g)``
before the product: ``h_j := c * u_j`` or ``h_j += c * u_j``, with ``u`` read from
``hook_pre_linear`` in the same forward pass; on non-gated MLPs ``h = a`` is written directly.

Examples:
    >>> import torch, lensneurons as ln
    >>> model = ln.organism.load()
    >>> mask = torch.zeros(model.cfg.n_layers, model.cfg.d_mlp, dtype=torch.bool)
    >>> mask[0, :5] = True
    >>> hooks = ln.deactivate(ln.NeuronSet.from_mask(mask), model=model)
    >>> [name for name, _ in hooks if isinstance(name, str)]
    ['blocks.0.mlp.hook_post']
    >>> with model.hooks(fwd_hooks=hooks):
    ...     logits = model("Hello")
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import torch
from jaxtyping import Float, Int

from lensneurons.core.model import ModelView, block_hook
from lensneurons.core.sites import (
    check_site_name,
    flatten_heads,
    site_family,
    unflatten_heads,
)
from lensneurons.errors import (
    EmptyInterventionWarning,
    LensNeuronsError,
    ParameterError,
    PositionError,
    ShapeMismatchError,
    TooFewGroupsError,
)
from lensneurons.neurons import NeuronSet, NeuronSets
from lensneurons.neurons.neuron_set import check_provenance, common_fingerprint
from lensneurons.stats.activation_stats import ActivationStats

HookName = str | Callable[[str], bool]  # a hook point's name, or a TL name filter
HookList = list[tuple[HookName, Callable[..., Any]]]
# one number, or one per unit of the set (``stats.mean("fr")``)
Values = float | Float[torch.Tensor, ""] | Float[torch.Tensor, "layer unit"]
Positions = int | Sequence[int] | slice | Int[torch.Tensor, "*pos"] | None
_BLOCK = re.compile(r"blocks\.(\d+)\.")


class LayerCheck:
    """A TL hook-name filter that matches nothing and checks the model's number of blocks.

    TransformerLens calls a filter with every hook name of the model when hooks are registered;
    this one raises as soon as a name shows a block the set lacks, or when the block names end
    before the set's last layer. It goes first in every list, so it runs before TL looks up the
    set's own hook names.
    """

    def __init__(self, n_layers: int, width: int, site: str, what: str = "A neuron set") -> None:
        self.n_layers, self.width, self.site, self.what = n_layers, width, site, what
        self._first: str | None = None
        self._reset()

    def _reset(self) -> None:
        self._seen, self._in_blocks, self._checked = -1, False, False

    def __repr__(self) -> str:
        return f"LayerCheck({self.n_layers} layers x {self.width} units on {self.site!r})"

    def _mismatch(self, model_layers: str) -> ShapeMismatchError:
        return ShapeMismatchError(
            f"{self.what} of {self.n_layers} layers was applied to a model with {model_layers} "
            "blocks. Use what was made on this model (sets detected on it, or one list per "
            "layer)."
        )

    def __call__(self, name: str) -> bool:
        """Look at one hook name of the model; never match it."""
        if self._first is None:
            self._first = name
        elif name == self._first:  # the model's first hook name again: a new registration
            self._reset()
        found = _BLOCK.match(name)
        if found:
            layer = int(found.group(1))
            if layer >= self.n_layers:
                raise self._mismatch(f"at least {layer + 1}")
            self._seen, self._in_blocks = max(self._seen, layer), True
        elif self._in_blocks and not self._checked:  # the first run of block names ended
            self._in_blocks, self._checked = False, True
            if self._seen + 1 != self.n_layers:
                raise self._mismatch(str(self._seen + 1))
        return False


def _noop(x: torch.Tensor, *, hook: Any) -> None:
    """Never called: :class:`LayerCheck` matches no hook point."""


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

    def __init__(self, layer: int, index: Int[torch.Tensor, " n"], op: str,
                 values: Float[torch.Tensor, ""] | Float[torch.Tensor, " n"],
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

    def __call__(self, x: Float[torch.Tensor, "batch pos *shape"], *,
                 hook: Any) -> Float[torch.Tensor, "batch pos *shape"]:
        """Edit ``x`` (the write point's tensor) and return it."""
        flat = flatten_heads(x)
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
        return unflatten_heads(flat, x)


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


def _check_positions(positions: Positions) -> Positions:
    """``positions`` as an int, a list of ints or a slice; refuse what selects nothing."""
    if positions is None or isinstance(positions, slice):
        return positions
    if isinstance(positions, torch.Tensor):
        if positions.is_floating_point() or positions.dtype == torch.bool or positions.dim() > 1:
            raise ParameterError("positions must be ints (a 1-d integer tensor, list or slice).")
        positions = positions.tolist()
    if isinstance(positions, bool) or isinstance(positions, (str, bytes, float)):
        raise ParameterError(f"positions must be an int, a list of ints or a slice, not "
                             f"{positions!r}.")
    if isinstance(positions, int):
        return positions
    chosen = list(positions)
    if not chosen:
        raise ParameterError("positions=[] selects no position, so the hooks would change "
                             "nothing; pass None for every position.")
    if any(isinstance(p, bool) or not isinstance(p, int) for p in chosen):
        raise ParameterError(f"positions must hold ints, got {chosen!r}.")
    return chosen


def _check_values(values: Values, what: str) -> torch.Tensor:
    tensor = torch.as_tensor(values, dtype=torch.float32)
    if not torch.isfinite(tensor).all():
        raise ParameterError(
            f"{what} holds NaN or inf, which would make every logit NaN; pass finite numbers."
        )
    return tensor


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


#: Writes one layer's edit: ``(layer, units, op, values, positions) -> hooks``.
LayerWriter = Callable[[int, torch.Tensor, str, torch.Tensor, Positions], HookList]
#: Makes a site's writer: ``(neurons, op, model) -> (hooks placed first, LayerWriter)``.
WriterFactory = Callable[[NeuronSet, str, Any], tuple[HookList, LayerWriter]]

_WRITERS: dict[str, WriterFactory] = {}


def register_writer(prefix: str, factory: WriterFactory) -> None:
    """Let the factories write to the sites ``"<prefix>:<name>"`` of a plugin.

    ``lensneurons.sae`` registers the writer of its latents (``"sae"``) when it is imported; the
    model's own sites need none.
    """
    _WRITERS[prefix] = factory


def _unit_writer(neurons: NeuronSet, op: str, model: Any) -> tuple[HookList, LayerWriter]:
    """The writer of the model's own sites: edit the units at the site's write point."""
    _, write, linear = check_site_name(neurons.site)
    up_needed = op in ("set", "add") and linear is not None and _gated(neurons, model)

    def write_layer(layer: int, index: torch.Tensor, op: str, values: torch.Tensor,
                    positions: Positions) -> HookList:
        up = _UpCapture(index) if up_needed else None
        hooks: HookList = [] if up is None else [(block_hook(layer, linear), up)]  # type: ignore
        hook = NeuronHook(layer, index, op, values, neurons.shape[1], positions, up)
        return [*hooks, (block_hook(layer, write), hook)]

    return [(LayerCheck(*neurons.shape, neurons.site), _noop)], write_layer


def _hooks(neurons: NeuronSet, op: str, values: Values, *, layers: Iterable[int] | int | None,
           positions: Positions, model: Any = None) -> HookList:
    if not isinstance(neurons, NeuronSet):
        raise ParameterError(
            f"Expected a NeuronSet (e.g. neurons['fr']), got {type(neurons).__name__}."
        )
    check_site_name(neurons.site)
    if model is not None:
        neurons.check_model(model)
    values = _check_values(values, "The factor or value" if op != "zero" else "values")
    if values.dim() not in (0, 2) or (values.dim() == 2 and values.shape != neurons.mask.shape):
        raise ShapeMismatchError(
            f"Values must be one number or a [layer, unit] tensor of shape "
            f"{tuple(neurons.mask.shape)}, got shape {tuple(values.shape)}."
        )
    positions = _check_positions(positions)
    family = site_family(neurons.site)  # None: the model's own sites
    make = _unit_writer if family is None else _WRITERS[family.prefix]
    first, write_layer = make(neurons, op, model)
    chosen = neurons.resolve_layers(layers)
    hooks: HookList = list(first)
    indices = neurons.indices
    for layer in chosen:
        index = indices[layer]
        if len(index) == 0:
            continue
        layer_values = values if values.dim() == 0 else values[layer, index]
        hooks += write_layer(layer, index, op, layer_values, positions)
    if len(hooks) == len(first):
        warnings.warn(
            f"The set has no units in layers {chosen}: these hooks change nothing.",
            EmptyInterventionWarning, stacklevel=3,
        )
    return hooks


def deactivate(neurons: NeuronSet, *, layers: Iterable[int] | int | None = None,
               positions: Positions = None, model: Any = None) -> HookList:
    """Zero the units' contributions (``a_j := 0``, exact zero-ablation; Tang et al.).

    Args:
        neurons: the units (``sets["fr"]``).
        layers: restrict to these layers (negative: from the last block).
        positions: restrict to these positions of each forward pass.
        model: check the set against this model now (else at registration).

    Raises:
        ShapeMismatchError: the set does not fit ``model``.
        ModelMismatchError: the set was detected on another model than ``model``.
        LayerIndexError: a layer in ``layers`` does not exist.
        ParameterError: ``layers`` or ``positions`` select nothing or are not ints.
    """
    return _hooks(neurons, "zero", 0.0, layers=layers, positions=positions, model=model)


def amplify(neurons: NeuronSet, factor: Values, *, layers: Iterable[int] | int | None = None,
            positions: Positions = None, model: Any = None) -> HookList:
    """Scale the units' activations by ``factor`` (one finite number or ``[layer, unit]``)."""
    return _hooks(neurons, "scale", factor, layers=layers, positions=positions, model=model)


def set_activation(neurons: NeuronSet, values: Values, *,
                   layers: Iterable[int] | int | None = None,
                   positions: Positions = None, model: Any = None) -> HookList:
    """Set ``a_j := c`` (so ``h_j := c * u_j`` on gated MLPs), e.g. ``c = stats.mean("fr")``."""
    return _hooks(neurons, "set", values, layers=layers, positions=positions, model=model)


def add_activation(neurons: NeuronSet, values: Values, *,
                   layers: Iterable[int] | int | None = None,
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
    layers: Iterable[int] | int | None = None,
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
        model: the model: the sets and statistics are checked against it now (shape, and the
            model they were made on), and it tells whether the MLP is gated.

    Raises:
        ParameterError: an unknown method, a non-finite ``alpha`` or ``beta``, one set instead
            of :class:`NeuronSets`, or ``stats`` that are not :class:`ActivationStats`.
        TooFewGroupsError: ``"diffmean"`` with statistics of fewer than two groups.
        ModelMismatchError: sets and statistics of different models, or of another model than
            ``model``.
    """
    if method not in ("additive", "replacement", "diffmean"):
        raise ParameterError(
            f"method must be additive, replacement or diffmean, got {method!r}."
        )
    for name, number in (("alpha", alpha), ("beta", beta)):
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(
                number):
            raise ParameterError(f"{name} must be a finite number, got {number!r}.")
    if not isinstance(neurons, NeuronSets):
        raise ParameterError(f"steer needs NeuronSets (all groups), got {type(neurons).__name__}.")
    if not isinstance(stats, ActivationStats):
        raise ParameterError(
            f"steer reads mean activations from ActivationStats, got {type(stats).__name__}; "
            "pass the statistics the sets were detected from (ln.collect(model, corpus))."
        )
    if method == "diffmean" and len([g for g in stats.groups if g != target]) < 1:
        raise TooFewGroupsError(
            f"method='diffmean' adds mu_target minus the mean of the other groups' mu, but the "
            f"statistics hold only {stats.groups}. Collect at least two groups (the target and "
            "one to contrast it with), or use method='additive'."
        )
    stats_fingerprint = stats.meta.get("fingerprint")
    stats_fingerprint = stats_fingerprint if isinstance(stats_fingerprint, dict) else None
    common_fingerprint([stats_fingerprint, *(neurons[g].fingerprint for g in neurons)],
                       "steer with statistics and")
    if model is not None:
        check_provenance(stats_fingerprint, ModelView(model), stats.site, "The ActivationStats",
                         advice="Pass the statistics collected on this model "
                                "(ln.collect(model, corpus)).")
    options = dict(layers=layers, positions=positions, model=model)
    hooks: HookList = []
    if source is not None:
        hooks += (deactivate(neurons[source], layers=layers, positions=positions, model=model)
                  if beta == 0 else set_activation(neurons[source], beta, **options))
    mu = stats.mean(target)
    if method == "additive":
        hooks += add_activation(neurons[target], alpha * mu, **options)
    elif method == "replacement":
        hooks += set_activation(neurons[target], mu, **options)
    else:
        others = torch.stack([stats.mean(g) for g in stats.groups if g != target]).mean(0)
        hooks += add_activation(neurons[target], alpha * (mu - others), **options)
    return hooks

