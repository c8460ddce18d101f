"""Sites: where a statistic is read and where an intervention writes.

A site names a family of units in every layer. ``"mlp"`` are the MLP neurons (DESIGN.md §3):

* *active* means ``act(g) > 0``, read as the sign of the gate pre-activation at ``hook_pre``
  (equal for SiLU, GELU and ReLU; never ``h != 0`` and never the MLP output);
* the *activation value* is ``a = act(g)``, computed from ``hook_pre`` with the model's own
  activation function;
* interventions write at ``hook_post`` (the input of ``W_down``), and on gated MLPs read the up
  projection ``u`` from ``hook_pre_linear`` in the same forward pass, so that setting ``a := c``
  becomes ``h := c * u`` exactly as in the papers.

``"attn.q"``, ``"attn.k"``, ``"attn.v"`` are the query/key/value dimensions (heads flattened;
keys and values in kv-head space under grouped-query attention); there the value is the
projection itself and an intervention edits it in place.

Examples:
    >>> import lensneurons as ln
    >>> site = ln.get_site(ln.organism.load(), "mlp")
    >>> site.read_point, site.write_point, site.width == ln.ModelView(ln.organism.load()).d_mlp
    ('mlp.hook_pre', 'mlp.hook_post', True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float

from lensneurons.errors import HookShapeError, UnknownSiteError
from lensneurons.model import ModelView

SITES = ("mlp", "attn.q", "attn.k", "attn.v")


@dataclass(frozen=True)
class Site:
    """One family of units per layer, with the hooks that read and write them.

    Attributes:
        name: the site's name, e.g. ``"mlp"``.
        read_point: hook point (without ``blocks.{l}.``) where statistics are read.
        write_point: hook point where interventions write.
        linear_point: on gated MLPs, the hook point of the up projection ``u``; else ``None``.
        width: units per layer.
        view: the model view the site belongs to.
    """

    name: str
    read_point: str
    write_point: str
    linear_point: str | None
    width: int
    view: ModelView

    @property
    def is_mlp(self) -> bool:
        """True for the MLP-neuron site."""
        return self.name == "mlp"

    def read_hook(self, layer: int) -> str:
        """Full hook name where layer ``layer`` is read."""
        return self.view.hook_name(layer, self.read_point)

    def write_hook(self, layer: int) -> str:
        """Full hook name where layer ``layer`` is written."""
        return self.view.hook_name(layer, self.write_point)

    def linear_hook(self, layer: int) -> str | None:
        """Full hook name of the up projection of layer ``layer`` (gated MLPs only)."""
        return None if self.linear_point is None else self.view.hook_name(layer, self.linear_point)

    def units(
        self, x: torch.Tensor, hook_name: str
    ) -> Float[torch.Tensor, "*lead width"]:
        """``x`` as ``[..., width]`` (attention heads flattened), checked against the site's width.

        Raises:
            HookShapeError: the hook delivered a tensor of another width (an adapter gap).
        """
        if not self.is_mlp and x.dim() == 4:
            x = x.flatten(-2)
        if x.shape[-1] != self.width:
            raise HookShapeError(
                f"Hook {hook_name!r} gave a tensor of width {x.shape[-1]}, but site "
                f"{self.name!r} of {self.view.architecture} has {self.width} units per layer. "
                "The TransformerLens adapter exposes another tensor under this name; "
                "use another site, or report the gap to TransformerLens."
            )
        return x

    def values(self, read: torch.Tensor) -> torch.Tensor:
        """Activation values from the tensor read at ``read_point`` (``act(g)`` for ``"mlp"``)."""
        return self.view.act_fn(read) if self.is_mlp else read


def get_site(model: Any, name: str = "mlp") -> Site:
    """The :class:`Site` called ``name`` on ``model``.

    Args:
        model: a TransformerLens model or a :class:`ModelView`.
        name: one of ``"mlp"``, ``"attn.q"``, ``"attn.k"``, ``"attn.v"``.

    Raises:
        UnknownSiteError: ``name`` is not a known site.
    """
    view = model if isinstance(model, ModelView) else ModelView(model)
    if name == "mlp":
        linear = "mlp.hook_pre_linear" if view.gated else None
        return Site(name, "mlp.hook_pre", "mlp.hook_post", linear, view.d_mlp, view)
    if name in ("attn.q", "attn.k", "attn.v"):
        heads = view.n_heads if name == "attn.q" else view.n_kv_heads
        point = f"attn.hook_{name[-1]}"
        return Site(name, point, point, None, heads * view.d_head, view)
    hint = " SAE sites ('sae:<id>') are not available yet." if name.startswith("sae:") else ""
    raise UnknownSiteError(f"Unknown site {name!r}; known sites: {', '.join(SITES)}.{hint}")
