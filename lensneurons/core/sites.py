"""Sites: where a statistic is read and where an intervention writes.

A site names a family of units in every layer. ``"mlp"`` are the MLP neurons (docs/design.md §4):

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

``"resid"`` is the residual stream after each block (``hook_resid_post``, ``d_model`` dimensions
per layer): read and written at the same point, the value is the stream itself. Its per-group
means are what residual directions (:mod:`lensneurons.detect.directions`) are made of; its
"active" counts (a dimension above zero) exist for uniformity and mean little.

Examples:
    >>> import lensneurons as ln
    >>> site = ln.get_site(ln.organism.load(), "mlp")
    >>> site.read_point, site.write_point, site.width == ln.ModelView(ln.organism.load()).d_mlp
    ('mlp.hook_pre', 'mlp.hook_post', True)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from einops import rearrange
from jaxtyping import Float

from lensneurons.core.model import ModelView
from lensneurons.errors import HookShapeError, UnknownSiteError

SITES = ("mlp", "attn.q", "attn.k", "attn.v", "resid")
#: The sites whose units are the model's neurons and attention dimensions (what the neuron
#: detectors score); ``"resid"`` is the residual stream, a baseline for directions.
UNIT_SITES = ("mlp", "attn.q", "attn.k", "attn.v")
#: Per site: the hook point (without ``blocks.{l}.``) read for statistics, the one written by
#: interventions, and the up projection of gated MLPs. The only table of these names.
POINTS: dict[str, tuple[str, str, str | None]] = {
    "mlp": ("mlp.hook_pre", "mlp.hook_post", "mlp.hook_pre_linear"),
    "attn.q": ("attn.hook_q", "attn.hook_q", None),
    "attn.k": ("attn.hook_k", "attn.hook_k", None),
    "attn.v": ("attn.hook_v", "attn.hook_v", None),
    "resid": ("hook_resid_post", "hook_resid_post", None),
}


@dataclass(frozen=True)
class SiteFamily:
    """Sites named ``"<prefix>:<name>"`` that a plugin adds (``lensneurons.sae`` adds ``"sae:"``).

    The foundation knows no plugin: a plugin registers its family with :func:`register_family`
    when it is imported, and :func:`check_site_name`, :func:`get_site` and the provenance check
    of neuron sets ask the family.

    Attributes:
        prefix: the part before ``":"``.
        check: raises :class:`~lensneurons.errors.UnknownSiteError` unless the name is
            registered in this session.
        get: the :class:`Site` of a registered name on a model view.
        check_fingerprint: raises :class:`~lensneurons.errors.ModelMismatchError` when a result's
            fingerprint records other weights than those registered under the name now
            (arguments: site name, fingerprint, what the result is).
        how: how to register a name, for error messages.
    """

    prefix: str
    check: Callable[[str], object]
    get: Callable[[ModelView, str], Site]
    check_fingerprint: Callable[[str, Any, str], None]
    how: str


_FAMILIES: dict[str, SiteFamily] = {}


def register_family(family: SiteFamily) -> None:
    """Make the sites ``"<family.prefix>:<name>"`` known (a plugin calls it when imported)."""
    _FAMILIES[family.prefix] = family


def site_family(name: str) -> SiteFamily | None:
    """The registered family of a ``"<prefix>:<name>"`` site; ``None`` for the model's own."""
    prefix, sep, _ = name.partition(":") if isinstance(name, str) else ("", "", "")
    return _FAMILIES.get(prefix) if sep else None


def check_site_name(name: str) -> tuple[str, str, str | None]:
    """The hook points of site ``name`` (read, write, up projection).

    A plugin's site (``"sae:<name>"``) reads and writes at hooks of its own: its points are
    ``("", "", None)`` once its family confirms the name.

    Raises:
        UnknownSiteError: ``name`` is not a known site.
    """
    family = site_family(name)
    if family is not None:
        family.check(name)
        return ("", "", None)
    if name not in POINTS:
        known = ", ".join([*SITES, *(f"'{f.prefix}:<name>' ({f.how})" for f in _FAMILIES.values())])
        raise UnknownSiteError(f"Unknown site {name!r}; known sites: {known}.")
    return POINTS[name]


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

    @property
    def n_layers(self) -> int:
        """Layers of the site (the model's blocks; one per SAE on SAE sites)."""
        return self.view.n_layers

    def identity(self) -> dict[str, str]:
        """What a model fingerprint must also record so results of this site name its units.

        Nothing for the model's own sites; an SAE site records which SAE weights it reads.
        """
        return {}

    def layer_device(self, layer: int) -> torch.device:
        """The device of the block that layer ``layer`` of the site belongs to."""
        return self.view.layer_device(layer)

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
        self, x: Float[torch.Tensor, "batch pos *unit"], hook_name: str
    ) -> Float[torch.Tensor, "batch pos width"]:
        """``x`` as ``[..., width]`` (attention heads flattened), checked against the site's width.

        Raises:
            HookShapeError: the hook delivered a tensor of another width (an adapter gap).
        """
        x = flatten_heads(x)
        if x.shape[-1] != self.width:
            raise HookShapeError(
                f"Hook {hook_name!r} gave a tensor of width {x.shape[-1]}, but site "
                f"{self.name!r} of {self.view.architecture} has {self.width} units per layer. "
                "The TransformerLens adapter exposes another tensor under this name; "
                "use another site, or report the gap to TransformerLens."
            )
        return x

    def values(self, read: Float[torch.Tensor, "*shape"]) -> Float[torch.Tensor, "*shape"]:
        """Activation values from the tensor read at ``read_point`` (``act(g)`` for ``"mlp"``)."""
        return self.view.act_fn(read) if self.is_mlp else read


def flatten_heads(
    x: Float[torch.Tensor, "batch pos head d_head"] | Float[torch.Tensor, "batch pos unit"],
) -> Float[torch.Tensor, "batch pos unit"]:
    """Attention hooks give ``[batch, pos, head, d_head]``: flatten the heads into units.

    Other tensors (MLP ``[batch, pos, d_mlp]``) are returned as they are. The result is a view,
    so editing it edits ``x``.

    Examples:
        >>> import torch
        >>> flatten_heads(torch.zeros(2, 5, 4, 8)).shape
        torch.Size([2, 5, 32])
    """
    return rearrange(x, "b p head d -> b p (head d)") if x.dim() == 4 else x


def unflatten_heads(
    flat: Float[torch.Tensor, "batch pos unit"], like: Float[torch.Tensor, "batch pos *shape"],
) -> Float[torch.Tensor, "batch pos *shape"]:
    """Undo :func:`flatten_heads` for a tensor shaped like ``like``."""
    return rearrange(flat, "b p (head d) -> b p head d", head=like.shape[2]) if (
        like.dim() == 4) else flat


def get_site(model: Any, name: str = "mlp") -> Site:
    """The :class:`Site` called ``name`` on ``model``.

    Args:
        model: a TransformerLens model or a :class:`ModelView`.
        name: one of ``"mlp"``, ``"attn.q"``, ``"attn.k"``, ``"attn.v"``, ``"resid"``, or
            ``"sae:<name>"``
            registered with :func:`lensneurons.sae_site`.

    Raises:
        UnknownSiteError: ``name`` is not a known site.
    """
    read, write, linear = check_site_name(name)
    view = model if isinstance(model, ModelView) else ModelView(model)
    family = site_family(name)
    if family is not None:
        return family.get(view, name)
    if name == "mlp":
        return Site(name, read, write, linear if view.gated else None, view.d_mlp, view)
    if name == "resid":
        return Site(name, read, write, None, view.d_model, view)
    heads = view.n_heads if name == "attn.q" else view.n_kv_heads
    return Site(name, read, write, None, heads * view.d_head, view)
