"""Interventions on SAE latents as plain TransformerLens hooks.

At the SAE's hook point the activation ``x`` is encoded, the chosen latents are edited
(``f → f'``), and only the change of the reconstruction is written back:

    x' = x + (f' − f) @ W_dec

so the SAE's error term ``x − decode(f)`` is kept and latents that were not edited change
nothing. An untouched SAE site therefore leaves the model's output exactly as it was, and zeroing
latent ``j`` gives ``decode(f with f_j = 0) + (x − decode(f))``, the usual "edit the
reconstruction, keep the error" ablation. Only the edited latents are encoded (all of them for
top-k SAEs, whose latents depend on each other).

:func:`lensneurons.deactivate` and the other factories call :func:`latent_hooks` when a set's
site is an SAE site, so they work unchanged on sets from ``lape`` over SAE statistics.

Examples:
    >>> import torch, lensneurons as ln
    >>> model = ln.organism.load()
    >>> site = ln.sae_site(ln.SAE.load(ln.sae.ORGANISM_SAE))
    >>> mask = torch.zeros(1, 1024, dtype=torch.bool)
    >>> mask[0, :3] = True
    >>> hooks = ln.deactivate(ln.NeuronSet.from_mask(mask, site=site), model=model)
    >>> [name for name, _ in hooks]
    ['blocks.2.hook_resid_post']
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch
from jaxtyping import Float

from lensneurons.errors import EmptyInterventionWarning
from lensneurons.neurons import NeuronSet, check_shape
from lensneurons.sae.sae import SAE
from lensneurons.sae.site import check_sae_digest, checked, get_sae_site, registered
from lensneurons.sites import flatten_heads, unflatten_heads


class LatentHook:
    """A TL hook that edits some latents of one SAE and writes back the change of its output.

    Args:
        sae: the SAE at the hook point.
        index: the latents edited.
        edit: edits a ``[batch, pos, n]`` tensor of those latents (a ``NeuronHook`` over them).
    """

    def __init__(self, sae: SAE, index: torch.Tensor, edit: Callable[..., torch.Tensor]) -> None:
        self.sae, self.index, self.edit = sae, index, edit

    def __repr__(self) -> str:
        return f"LatentHook({self.sae.name!r}: {self.edit!r})"

    @property
    def positions(self) -> Any:
        """The positions the edit acts on (``None``: all), as on the package's neuron hooks."""
        return getattr(self.edit, "positions", None)

    def __call__(self, x: Float[torch.Tensor, "batch pos *shape"], *,
                 hook: Any) -> Float[torch.Tensor, "batch pos *shape"]:
        """Return ``x + (f' − f) @ W_dec[index]``."""
        flat = checked(self.sae, flatten_heads(x))
        index = self.index.to(x.device)
        latents = self.sae.encode(flat, index)
        change = self.edit(latents.clone(), hook=hook) - latents
        w_dec = self.sae.weights(x.device)["W_dec"][index]
        out = flat + (change @ w_dec).to(flat.dtype)
        return unflatten_heads(out, x)


def latent_hooks(neurons: NeuronSet, op: str, values: torch.Tensor, *,
                 layers: Iterable[int] | int | None, positions: Any,
                 model: Any = None) -> list[tuple[str, Any]]:
    """The hooks of the intervention factories on an SAE site.

    Called by ``deactivate``, ``amplify``, ``set_activation`` and ``add_activation`` (``values``
    and ``positions`` already checked there).

    Raises:
        UnknownSiteError: the set's SAE site is not registered (or ``model`` lacks its hooks).
        ShapeMismatchError: the set does not fit the site's SAEs.
        ModelMismatchError: the set records other SAE weights than those registered now.
    """
    from lensneurons.interventions import NeuronHook

    group = registered(neurons.site)
    check_shape(neurons.shape, (len(group), group[0].d_sae), f"site {neurons.site!r}")
    check_sae_digest(neurons.site, neurons.fingerprint, "This latent set")
    if model is not None:
        from lensneurons.model import ModelView

        get_sae_site(ModelView(model), neurons.site)
    chosen = neurons.resolve_layers(layers)
    hooks: list[tuple[str, Any]] = []
    indices = neurons.indices
    for layer in chosen:
        index = indices[layer]
        if len(index) == 0:
            continue
        layer_values = values if values.dim() == 0 else values[layer, index]
        edit = NeuronHook(layer, torch.arange(len(index)), op, layer_values, len(index),
                          positions, None)
        sae = group[layer]
        hooks.append((sae.hook_name, LatentHook(sae, index, edit)))
    if not hooks:
        warnings.warn(f"The set has no latents in layers {chosen}: these hooks change nothing.",
                      EmptyInterventionWarning, stacklevel=4)
    return hooks
