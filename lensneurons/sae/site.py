"""SAE sites: the latents of sparse autoencoders as units, ``"sae:<name>"``.

:func:`sae_site` registers one SAE (or one per block) under a name and returns the site name
``"sae:<name>"``. Everything that takes a site then works on the latents: ``collect`` reads the
SAE's hook point, encodes the activations and counts a latent *active* when it is ``> 0``, with the
latent itself as the activation value; ``lape`` and ``ternary`` run unchanged on those statistics;
and the intervention factories edit latents (:func:`latent_writer`).

The site's "layers" are its SAEs, in forward order: layer ``i`` of the statistics and of the
neuron sets is the ``i``-th SAE (a single SAE gives one layer), its units are that SAE's latents.

A site is known by its name only within one Python process, so statistics collected on it record
the digest of its SAEs' weights (:attr:`SAE.digest`) in their model fingerprint (``"sae"``),
which detectors pass on to their neuron sets and saving keeps. Latent interventions compare it
with the SAEs registered under the name now and refuse other weights with
:class:`~lensneurons.errors.ModelMismatchError`.

Examples:
    >>> import lensneurons as ln
    >>> model = ln.organism.load()
    >>> site = ln.sae_site(ln.SAE.load(ln.sae.ORGANISM_SAE))
    >>> site
    'sae:organism-l2'
    >>> where = ln.get_site(model, site)
    >>> where.n_layers, where.width, where.read_hook(0)
    (1, 1024, 'blocks.2.hook_resid_post')
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from jaxtyping import Float

from lensneurons.core.model import ModelView
from lensneurons.core.sites import Site, SiteFamily, flatten_heads, register_family
from lensneurons.errors import (
    ModelMismatchError,
    ParameterError,
    ShapeMismatchError,
    UnknownSiteError,
)
from lensneurons.sae.sae import SAE

PREFIX = "sae:"
_REGISTRY: dict[str, tuple[SAE, ...]] = {}
#: Hook points (without ``blocks.{l}.``) whose width the model's config tells before a pass.
_D_MODEL = ("hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out",
            "hook_mlp_out")
_D_MLP = ("mlp.hook_pre", "mlp.hook_post", "mlp.hook_pre_linear")


def sae_site(saes: SAE | Sequence[SAE], name: str | None = None, *,
             replace: bool = False) -> str:
    """Register ``saes`` as a site and return its name ``"sae:<name>"``.

    Args:
        saes: one SAE, or one per block (same number of latents, blocks in increasing order).
        name: the site's name after ``"sae:"`` (default: the first SAE's ``name``).
        replace: register other SAEs under a name already taken (statistics and sets made with
            the old ones record their digest and are refused on the new ones).

    Raises:
        ParameterError: no SAE, SAEs of different widths or out of block order, or ``name`` taken
            by other SAEs.

    Examples:
        >>> import lensneurons as ln
        >>> ln.sae_site(ln.SAE.load(ln.sae.ORGANISM_SAE), "demo")
        'sae:demo'
    """
    group = (saes,) if isinstance(saes, SAE) else tuple(saes)
    if not group or not all(isinstance(s, SAE) for s in group):
        raise ParameterError("sae_site needs an SAE or a non-empty list of SAEs "
                             "(ln.SAE.load(folder)).")
    if len({s.d_sae for s in group}) > 1:
        raise ParameterError(f"The SAEs of one site must have the same number of latents, got "
                             f"{[s.d_sae for s in group]}; register them as separate sites.")
    blocks = [s.hook_layer for s in group]
    if len(group) > 1 and (None in blocks or blocks != sorted(set(blocks))):  # type: ignore
        raise ParameterError(f"The SAEs of one site must sit in increasing blocks, one per block; "
                             f"got hooks {[s.hook_name for s in group]}.")
    name = group[0].name if name is None else name
    if not isinstance(name, str) or not name or ":" in name:
        raise ParameterError(f"An SAE site name must be a non-empty string without ':', "
                             f"got {name!r}.")
    old = _REGISTRY.get(name)
    if old is not None and not replace and not _same(old, group):
        raise ParameterError(f"Site 'sae:{name}' is already registered with other SAEs; pass "
                             "another name= or replace=True.")
    _REGISTRY[name] = group
    return PREFIX + name


def registered(site: str) -> tuple[SAE, ...]:
    """The SAEs of site ``"sae:<name>"``.

    Raises:
        UnknownSiteError: nothing is registered under that name.
    """
    group = _REGISTRY.get(site.removeprefix(PREFIX))
    if group is None:
        raise UnknownSiteError(
            f"No SAE is registered as site {site!r} in this session; register it first with "
            f"ln.sae_site(ln.SAE.load(folder), name={site.removeprefix(PREFIX)!r}).")
    return group


def saes_digest(saes: Sequence[SAE]) -> str:
    """One SAE's :attr:`SAE.digest`, or a digest of the digests of several, in block order."""
    if len(saes) == 1:
        return saes[0].digest
    return hashlib.sha256(" ".join(s.digest for s in saes).encode()).hexdigest()[:16]


def site_digest(site: str) -> str | None:
    """The digest of the SAEs registered as ``site`` now (``None``: nothing registered)."""
    group = _REGISTRY.get(site.removeprefix(PREFIX))
    return None if group is None else saes_digest(group)


def check_sae_digest(site: str, fingerprint: dict | None, what: str) -> None:
    """Raise unless the SAEs registered as ``site`` are the ones ``fingerprint`` records.

    Nothing to check when the fingerprint records no SAE (sets built by hand, results saved
    before SAE digests) or nothing is registered (using the site raises then).

    Raises:
        ModelMismatchError: other SAE weights are registered under the site's name.
    """
    recorded = fingerprint.get("sae") if isinstance(fingerprint, dict) else None
    current = site_digest(site)
    if recorded is None or current is None or recorded == current:
        return
    raise ModelMismatchError(
        f"{what} was made with other SAE weights (digest {recorded}) than the SAE registered "
        f"now as {site!r} (digest {current}). Register the SAE it was made with: "
        f"ln.sae_site(ln.SAE.load(its_folder), name={site.removeprefix(PREFIX)!r}, "
        "replace=True), or collect and detect again on the SAE registered now."
    )


@dataclass(frozen=True)
class SAESite(Site):
    """A site whose units are the latents of one SAE per layer of the site."""

    saes: tuple[SAE, ...] = field(default=())

    @property
    def n_layers(self) -> int:
        """One layer per SAE."""
        return len(self.saes)

    def identity(self) -> dict[str, str]:
        """The digest of the SAEs: the site's name means nothing outside this process."""
        return {"sae": saes_digest(self.saes)}

    def layer_device(self, layer: int) -> torch.device:
        """The device of the block the ``layer``-th SAE reads."""
        return self.view.layer_device(self.saes[layer].hook_layer or 0)

    def read_hook(self, layer: int) -> str:
        """The hook of the ``layer``-th SAE."""
        return self.saes[layer].hook_name

    def write_hook(self, layer: int) -> str:
        """The hook of the ``layer``-th SAE (latent edits are written back there)."""
        return self.saes[layer].hook_name

    def units(self, x: Float[torch.Tensor, "batch pos *unit"],
              hook_name: str) -> Float[torch.Tensor, "batch pos width"]:
        """The latents of the activations ``x`` read at ``hook_name``."""
        sae = next(s for s in self.saes if s.hook_name == hook_name)
        return sae.encode(checked(sae, flatten_heads(x)))

    def values(self, read: Float[torch.Tensor, "*shape"]) -> Float[torch.Tensor, "*shape"]:
        """Latents are their own activation values."""
        return read


def get_sae_site(view: ModelView, name: str) -> SAESite:
    """The :class:`SAESite` ``name`` on ``view``, its hooks checked against the model.

    Raises:
        UnknownSiteError: the site is not registered, or the model lacks an SAE's hook.
        ShapeMismatchError: an SAE's ``d_in`` is not the width of its hook on this model.
    """
    group = registered(name)
    for sae in group:
        if sae.hook_name not in view.model.hook_dict:
            raise UnknownSiteError(
                f"SAE {sae.name!r} reads hook {sae.hook_name!r}, which {view.architecture} does "
                "not have; it was trained for another model (see model.hook_dict for names).")
        width = _hook_width(view, sae.hook_name)
        if width is not None and width != sae.d_in:
            raise ShapeMismatchError(
                f"SAE {sae.name!r} expects d_in={sae.d_in} at {sae.hook_name!r}, but that hook "
                f"has width {width} on {view.architecture}; use an SAE trained on this model.")
    return SAESite(name, "", "", None, group[0].d_sae, view, saes=group)


def checked(sae: SAE, flat: torch.Tensor) -> torch.Tensor:
    """``flat`` unless its width differs from the SAE's ``d_in`` (then a typed error)."""
    if flat.shape[-1] != sae.d_in:
        raise ShapeMismatchError(
            f"SAE {sae.name!r} expects d_in={sae.d_in} at {sae.hook_name!r}, but the hook gave "
            f"width {flat.shape[-1]}; use an SAE trained on this model.")
    return flat


def _hook_width(view: ModelView, hook_name: str) -> int | None:
    point = hook_name.split(".", 2)[-1] if hook_name.startswith("blocks.") else hook_name
    if point in _D_MODEL or point == "hook_embed":
        return view.d_model
    if point in _D_MLP:
        return view.d_mlp
    if point in ("attn.hook_z", "attn.hook_q"):
        return view.n_heads * view.d_head
    return None


def _same(old: tuple[SAE, ...], new: tuple[SAE, ...]) -> bool:
    if len(old) != len(new):
        return False
    return all(a is b or (a.hook_name == b.hook_name and a.activation == b.activation
                          and a.W_enc.shape == b.W_enc.shape
                          and all(torch.equal(getattr(a, n), getattr(b, n))
                                  for n in ("W_enc", "b_enc", "W_dec", "b_dec")))
               for a, b in zip(old, new))


register_family(SiteFamily(
    prefix=PREFIX.rstrip(":"), check=registered, get=get_sae_site,
    check_fingerprint=check_sae_digest, how="after ln.sae_site(sae)"))
