"""Interventions on SAE latents as plain TransformerLens hooks.

At the SAE's hook point the activation ``x`` is encoded, the chosen latents are edited
(``f → f'``), and only the change of the reconstruction is written back:

    x' = x + (f' − f) @ W_dec

so the SAE's error term ``x − decode(f)`` is kept and latents that were not edited change
nothing. An untouched SAE site therefore leaves the model's output exactly as it was, and zeroing
latent ``j`` gives ``decode(f with f_j = 0) + (x − decode(f))``, the usual "edit the
reconstruction, keep the error" ablation. Only the edited latents are encoded (all of them for
top-k SAEs, whose latents depend on each other).

:func:`lensneurons.deactivate` and the other factories call :func:`latent_writer` when a set's
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

from collections.abc import Callable
from typing import Any

import torch
from jaxtyping import Float

from lensneurons.core.model import ModelView
from lensneurons.core.sites import flatten_heads, unflatten_heads
from lensneurons.intervene.hooks import NeuronHook, register_writer
from lensneurons.neurons import NeuronSet, check_shape
from lensneurons.sae.sae import SAE
from lensneurons.sae.site import PREFIX, check_sae_digest, checked, get_sae_site, registered


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


def latent_writer(neurons: NeuronSet, op: str, model: Any = None
                  ) -> tuple[list[tuple[str, Any]], Callable[..., list[tuple[str, Any]]]]:
    """The writer of the intervention factories on an SAE site (registered for ``"sae:"``).

    Each layer's edit becomes a :class:`LatentHook` at its SAE's hook: a ``NeuronHook`` over the
    chosen latents, written back as the change of the SAE's output (the error term is kept).

    Raises:
        UnknownSiteError: the set's SAE site is not registered (or ``model`` lacks its hooks).
        ShapeMismatchError: the set does not fit the site's SAEs.
        ModelMismatchError: the set records other SAE weights than those registered now.
    """
    group = registered(neurons.site)
    check_shape(neurons.shape, (len(group), group[0].d_sae), f"site {neurons.site!r}")
    check_sae_digest(neurons.site, neurons.fingerprint, "This latent set")
    if model is not None:
        get_sae_site(ModelView(model), neurons.site)

    def write_layer(layer: int, index: torch.Tensor, op: str, values: torch.Tensor,
                    positions: Any) -> list[tuple[str, Any]]:
        edit = NeuronHook(layer, torch.arange(len(index)), op, values, len(index), positions,
                          None)
        sae = group[layer]
        return [(sae.hook_name, LatentHook(sae, index, edit))]

    return [], write_layer


register_writer(PREFIX.rstrip(":"), latent_writer)
