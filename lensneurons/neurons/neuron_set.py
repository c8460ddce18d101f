"""One neuron set: a mask ``[layer, unit]`` on a site; its algebra, layer selection, shape check.

A set detected by lensneurons (``sets["fr"]`` of ``ln.lape(stats)``) carries the fingerprint of
the model its statistics came from (on SAE sites also the digest of the SAE weights), kept
through saving and loading; wherever a model is given (``deactivate(..., model=m)``,
``steer(..., model=m)``, ``check_model``) the set is refused on another model with
:class:`~lensneurons.errors.ModelMismatchError`, even one of the same shape. A set built by hand
from a mask or index lists carries none and fits any model of its shape.

Examples:
    >>> import torch
    >>> from lensneurons.neurons import NeuronSet
    >>> mask = torch.zeros(2, 8, dtype=torch.bool); mask[1, [3, 5]] = True
    >>> fr = NeuronSet.from_mask(mask)
    >>> len(fr), fr.per_layer(), fr.resolve_layers(-1)
    (2, [0, 2], [1])
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from jaxtyping import Bool, Int, Shaped

from lensneurons.core.model import ModelView, same_fingerprint
from lensneurons.core.sites import site_family
from lensneurons.errors import (
    LayerIndexError,
    ModelMismatchError,
    ParameterError,
    ShapeMismatchError,
)

# One layer's unit indices: ints, or an empty tensor of any dtype (``torch.tensor([])``).
UnitIndices = Sequence[int] | Int[torch.Tensor, " _n"] | Shaped[torch.Tensor, " 0"]


class NeuronSet:
    """A set of units per layer of one site, stored as a boolean mask ``[layer, unit]``.

    Args:
        mask: ``[layer, unit]``, true for members.
        site: the site the units belong to.
        gated: whether the model's MLP is gated, when known (detectors copy it from the
            statistics); interventions that set or add activation values need it, or a model.
        fingerprint: the fingerprint of the model the set was detected on
            (:meth:`ModelView.fingerprint`, plus ``"sae"``, the SAE digest, on SAE sites), or
            ``None`` for a set that fits any model of its shape. :class:`NeuronSets` gives its
            sets the fingerprint it records.
    """

    def __init__(
        self, mask: Bool[torch.Tensor, "layer unit"], *, site: str = "mlp",
        gated: bool | None = None, fingerprint: dict[str, Any] | None = None,
    ) -> None:
        if mask.dim() != 2:
            raise ShapeMismatchError(
                f"A neuron mask must be [layer, unit], got {tuple(mask.shape)}."
            )
        self.mask = mask.to(torch.bool).cpu()
        self.site = site
        self.gated = gated
        self.fingerprint = fingerprint if isinstance(fingerprint, dict) and fingerprint else None

    def with_fingerprint(self, fingerprint: dict[str, Any] | None) -> NeuronSet:
        """The same units recording ``fingerprint`` (``None``: the set fits any model of its shape).

        Examples:
            >>> s = NeuronSet(torch.ones(2, 4, dtype=torch.bool)).with_fingerprint({"n_layers": 2})
            >>> s.fingerprint, s.with_fingerprint(None).fingerprint
            ({'n_layers': 2}, None)
        """
        return NeuronSet(self.mask, site=self.site, gated=self.gated, fingerprint=fingerprint)

    @classmethod
    def from_mask(
        cls, mask: Bool[torch.Tensor, "layer unit"], *, site: str = "mlp",
        gated: bool | None = None,
    ) -> NeuronSet:
        """The set whose members are the true entries of ``mask`` ``[layer, unit]``."""
        return cls(mask, site=site, gated=gated)

    @classmethod
    def from_indices(
        cls, indices: Sequence[UnitIndices], *, width: int,
        n_layers: int | None = None, site: str = "mlp", gated: bool | None = None,
    ) -> NeuronSet:
        """The set holding ``indices[l]`` in layer ``l`` (the papers' per-layer index lists).

        Args:
            indices: one list of unit indices per layer (an empty list for a layer without).
            width: units per layer.
            n_layers: the model's number of layers, when known; ``indices`` must have as many.
            site: the site the units belong to.
            gated: whether the model's MLP is gated, when known.

        Raises:
            ShapeMismatchError: a flat list (not one list per layer), another number of layers
                than ``n_layers``, or a unit index outside ``0..width-1``.
        """
        if isinstance(indices, (str, bytes, torch.Tensor)) or not isinstance(indices, Sequence):
            raise ShapeMismatchError(
                f"Expected one list of unit indices per layer, got {type(indices).__name__}."
            )
        if n_layers is not None and len(indices) != n_layers:
            raise ShapeMismatchError(
                f"The index lists cover {len(indices)} layers but the model has {n_layers}; "
                "give one list per layer (empty for layers without units)."
            )
        mask = torch.zeros(len(indices), width, dtype=torch.bool)
        for layer, idx in enumerate(indices):
            if isinstance(idx, (int, float, str, bytes)) or (
                    isinstance(idx, torch.Tensor) and idx.dim() != 1):
                raise ShapeMismatchError(
                    f"Entry {layer} is {idx!r}, not a list of unit indices: the format is one "
                    "list per layer, e.g. {'fr': [[3, 5], [], [7]]} for a 3-layer model."
                )
            idx = torch.as_tensor(idx)
            if idx.numel() and (idx.is_floating_point() or idx.dtype == torch.bool):
                raise ShapeMismatchError(f"Layer {layer} holds non-integer unit indices.")
            idx = idx.to(torch.int64)
            if idx.numel() and (int(idx.max()) >= width or int(idx.min()) < 0):
                bad = int(idx.max()) if int(idx.max()) >= width else int(idx.min())
                raise ShapeMismatchError(
                    f"Layer {layer} names unit {bad}, but layers have units 0..{width - 1}."
                )
            mask[layer, idx] = True
        return cls(mask, site=site, gated=gated)

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_layers, units per layer)``."""
        return int(self.mask.shape[0]), int(self.mask.shape[1])

    @property
    def indices(self) -> list[Int[torch.Tensor, " _n"]]:
        """Sorted unit indices per layer."""
        return [row.nonzero().squeeze(1) for row in self.mask]

    def per_layer(self) -> list[int]:
        """Number of units per layer."""
        return self.mask.sum(1).tolist()

    def __len__(self) -> int:
        return int(self.mask.sum())

    def __repr__(self) -> str:
        layers = [layer for layer, n in enumerate(self.per_layer()) if n]
        return f"NeuronSet({len(self)} units on {self.site!r}, layers {layers})"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, NeuronSet) and self.site == other.site
                and self.shape == other.shape and torch.equal(self.mask, other.mask))

    def __hash__(self) -> int:
        return hash((self.site, self.shape, len(self)))

    def _combine(self, other: NeuronSet, op: Any) -> NeuronSet:
        if not isinstance(other, NeuronSet):
            return NotImplemented
        if self.shape != other.shape or self.site != other.site:
            raise ShapeMismatchError(
                f"Cannot combine a {self.shape} set on {self.site!r} with a {other.shape} set "
                f"on {other.site!r}."
            )
        gated = self.gated if self.gated is not None else other.gated
        fingerprint = common_fingerprint([self.fingerprint, other.fingerprint], "combine")
        return NeuronSet(op(self.mask, other.mask), site=self.site, gated=gated,
                         fingerprint=fingerprint)

    def __or__(self, other: NeuronSet) -> NeuronSet:
        return self._combine(other, torch.logical_or)

    def __and__(self, other: NeuronSet) -> NeuronSet:
        return self._combine(other, torch.logical_and)

    def __sub__(self, other: NeuronSet) -> NeuronSet:
        return self._combine(other, lambda a, b: a & ~b)

    def check_model(self, model: Any) -> None:
        """Raise unless the set fits ``model``'s site and, when it records one, was made on it.

        Raises:
            ShapeMismatchError: the set does not fit the model's site.
            ModelMismatchError: the set was detected on another model (or, on an SAE site, with
                other SAE weights than those registered now).
        """
        from lensneurons.core.sites import get_site

        view = ModelView(model)
        site = get_site(view, self.site)
        check_shape(self.shape, (site.n_layers, site.width), f"site {self.site!r}")
        check_provenance(self.fingerprint, view, self.site, "This neuron set")

    def resolve_layers(self, layers: Iterable[int] | int | None) -> list[int]:
        """The layers ``layers`` names, as sorted indices ``0..n_layers-1``.

        Negative indices count from the last layer, as in Python (``-1`` is the last block).

        Raises:
            ParameterError: ``layers`` is not an int or a collection of ints, or is empty.
            LayerIndexError: a layer does not exist.

        Examples:
            >>> import torch
            >>> NeuronSet(torch.zeros(4, 8, dtype=torch.bool)).resolve_layers([-1, 0])
            [0, 3]
        """
        n_layers = self.shape[0]
        if layers is None:
            return list(range(n_layers))
        if isinstance(layers, int) and not isinstance(layers, bool):
            layers = [layers]
        if isinstance(layers, (str, bytes)) or not isinstance(layers, Iterable):
            raise ParameterError(
                f"layers must be an int or a list of ints, got {layers!r}."
            )
        chosen = list(layers.tolist() if isinstance(layers, torch.Tensor) else layers)
        if not chosen:
            raise ParameterError("layers=[] selects no layer; pass None for every layer.")
        out = set()
        for layer in chosen:
            if isinstance(layer, bool) or not isinstance(layer, int):
                raise ParameterError(f"layers must hold ints, got {layer!r}.")
            if not -n_layers <= layer < n_layers:
                raise LayerIndexError(
                    f"Layer {layer} does not exist: the set has layers 0..{n_layers - 1} "
                    f"(or -{n_layers}..-1 from the end)."
                )
            out.add(layer % n_layers)
        return sorted(out)


def check_shape(found: tuple[int, int], expected: tuple[int, int], what: str) -> None:
    """The one check that a ``(layers, units)`` shape fits a model's ``what``.

    Raises:
        ShapeMismatchError: the shapes differ; the message says which and what to do.
    """
    if tuple(found) != tuple(expected):
        raise ShapeMismatchError(
            f"This neuron set is {tuple(found)} (layers, units) but the model's {what} is "
            f"{tuple(expected)}. Use sets detected on this model (or give one list per layer)."
        )


def common_fingerprint(fingerprints: Iterable[dict[str, Any] | None],
                       action: str) -> dict[str, Any] | None:
    """The one fingerprint the given ones share (``None`` when none is recorded).

    Raises:
        ModelMismatchError: two of them name different models.
    """
    found: dict[str, Any] | None = None
    for fingerprint in fingerprints:
        if not isinstance(fingerprint, dict) or not fingerprint:
            continue
        if found is None:
            found = fingerprint
        elif not same_fingerprint(found, fingerprint):
            raise ModelMismatchError(
                f"Cannot {action} neuron sets detected on different models "
                f"({found.get('architecture')} and {fingerprint.get('architecture')}, or other "
                "weights or SAEs). Use sets detected on one model."
            )
    return found


_SET_ADVICE = ("Use sets detected on this model (ln.lape(ln.collect(model, corpus))); to apply "
               "these units to this model knowingly, drop the record first: "
               "s.with_fingerprint(None).")


def check_provenance(fingerprint: dict[str, Any] | None, view: ModelView, site: str,
                     what: str, *, advice: str = _SET_ADVICE) -> None:
    """Raise unless ``fingerprint`` (if any) names ``view``'s model and the SAEs of ``site``.

    ``advice`` ends the message (what to do); the default is for neuron sets.

    Raises:
        ModelMismatchError: the fingerprint names another model, or other SAE weights.
    """
    if not isinstance(fingerprint, dict) or not fingerprint:
        return
    try:
        view.check_fingerprint(fingerprint, what)
    except ModelMismatchError as err:
        found = str(err).split(". ")[0]
        raise ModelMismatchError(f"{found}. {advice}") from None
    family = site_family(site)
    if family is not None:
        family.check_fingerprint(site, fingerprint, what)


def random_like(neurons: NeuronSet, seed: int = 0, *, disjoint: bool = True) -> NeuronSet:
    """A random set with the same units per layer as ``neurons``, disjoint from it.

    The baseline for every intervention: a set of the same size and layer profile.

    Args:
        neurons: the set to imitate.
        seed: the random seed.
        disjoint: refuse when a layer has too few units outside ``neurons`` (the baseline would
            share units with the set it is compared to). ``False`` draws those layers from all
            their units, overlap included.

    Raises:
        ParameterError: ``disjoint`` and a layer has fewer units outside ``neurons`` than in
            it, so no disjoint set of the same profile exists.

    Examples:
        >>> import torch
        >>> mask = torch.zeros(2, 8, dtype=torch.bool); mask[1, :3] = True
        >>> other = random_like(NeuronSet(mask))
        >>> other.per_layer(), len(other & NeuronSet(mask))
        ([0, 3], 0)
    """
    generator = torch.Generator().manual_seed(seed)
    mask = torch.zeros_like(neurons.mask)
    for layer, count in enumerate(neurons.per_layer()):
        if count == 0:
            continue
        pool = (~neurons.mask[layer]).nonzero().squeeze(1)
        if len(pool) < count:
            if disjoint:
                raise ParameterError(
                    f"Layer {layer} has {count} units in the set and only {len(pool)} outside "
                    "it, so a random set of the same profile must overlap it (with a full-layer "
                    "set it is the set itself). Use a smaller set, or disjoint=False to accept "
                    "the overlap knowingly."
                )
            pool = torch.arange(neurons.shape[1])
        mask[layer, pool[torch.randperm(len(pool), generator=generator)[:count]]] = True
    return NeuronSet(mask, site=neurons.site, gated=neurons.gated,
                     fingerprint=neurons.fingerprint)
