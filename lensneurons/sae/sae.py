"""A sparse autoencoder read from (and written in) the SAELens on-disk format.

A SAELens SAE is a folder with ``cfg.json`` and ``sae_weights.safetensors`` holding ``W_enc``
``[d_in, d_sae]``, ``b_enc`` ``[d_sae]``, ``W_dec`` ``[d_sae, d_in]``, ``b_dec`` ``[d_in]`` (and
``threshold`` ``[d_sae]`` for JumpReLU). The config is read in both layouts SAELens has used:
before 6.0 the hook and the activation sit at the top level (``hook_name``, ``hook_layer``,
``activation_fn_str``); from 6.0 on, ``architecture`` names the encoder (``"standard"``,
``"topk"`` with ``k``, ``"jumprelu"``) and the hook sits in ``metadata.hook_name``.

The encoder is ``f = act((x - b_dec·apply_b_dec_to_input) @ W_enc + b_enc)`` and the decoder
``x̂ = f @ W_dec + b_dec``. Input normalisation (``normalize_activations`` other than ``"none"``)
is refused rather than half-supported.

Examples:
    >>> import lensneurons as ln
    >>> sae = ln.SAE.load(ln.sae.ORGANISM_SAE)
    >>> sae.hook_name, sae.d_in, sae.d_sae
    ('blocks.2.hook_resid_post', 128, 1024)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float, Int
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from lensneurons.core import persistence
from lensneurons.errors import ParameterError, ResultNotFoundError, SAEFormatError

CFG_FILE, WEIGHTS_FILE = "cfg.json", "sae_weights.safetensors"
ACTIVATIONS = ("relu", "topk", "jumprelu")
_BLOCK = re.compile(r"blocks\.(\d+)\.")


class SAE:
    """A sparse autoencoder attached at one TransformerLens hook point.

    Args:
        W_enc: encoder ``[d_in, d_sae]``.
        b_enc: encoder bias ``[d_sae]``.
        W_dec: decoder ``[d_sae, d_in]``.
        b_dec: decoder bias ``[d_in]``.
        hook_name: the TL hook point it reads, e.g. ``"blocks.2.hook_resid_post"``.
        activation: ``"relu"``, ``"topk"`` (needs ``k``) or ``"jumprelu"`` (needs ``threshold``).
        k: latents kept per token by ``"topk"``.
        threshold: per-latent thresholds of ``"jumprelu"``.
        apply_b_dec_to_input: subtract ``b_dec`` from the input before encoding (SAELens default).
        name: the name its site is registered under (default: the folder name, else the hook).
        cfg: the rest of the config, written back unchanged by :meth:`save`.
    """

    def __init__(
        self, W_enc: Float[torch.Tensor, "d_model latent"], b_enc: Float[torch.Tensor, " latent"],
        W_dec: Float[torch.Tensor, "latent d_model"], b_dec: Float[torch.Tensor, " d_model"], *,
        hook_name: str, activation: str = "relu", k: int | None = None,
        threshold: Float[torch.Tensor, " latent"] | None = None,
        apply_b_dec_to_input: bool = True, name: str | None = None,
        cfg: dict[str, Any] | None = None,
    ) -> None:
        d_in, d_sae = W_enc.shape
        shapes = {"W_enc": (W_enc, (d_in, d_sae)), "b_enc": (b_enc, (d_sae,)),
                  "W_dec": (W_dec, (d_sae, d_in)), "b_dec": (b_dec, (d_in,))}
        if threshold is not None:
            shapes["threshold"] = (threshold, (d_sae,))
        for key, (tensor, shape) in shapes.items():
            if tuple(tensor.shape) != shape:
                raise SAEFormatError(
                    f"SAE weight {key} has shape {tuple(tensor.shape)}, expected {shape} for "
                    f"d_in={d_in}, d_sae={d_sae}; the weights file is not a SAELens SAE.")
        if activation not in ACTIVATIONS:
            raise SAEFormatError(f"Unknown SAE activation {activation!r}; supported: "
                                 f"{', '.join(ACTIVATIONS)}.")
        if activation == "topk" and (not isinstance(k, int) or not 0 < k <= d_sae):
            raise SAEFormatError(f"A top-k SAE needs k in 1..{d_sae}, got {k!r}.")
        if activation == "jumprelu" and threshold is None:
            raise SAEFormatError("A JumpReLU SAE needs its 'threshold' weights.")
        if not isinstance(hook_name, str) or not hook_name:
            raise SAEFormatError(f"The SAE's hook_name must be a TL hook name, got {hook_name!r}.")
        self.W_enc, self.b_enc = W_enc.detach().float(), b_enc.detach().float()
        self.W_dec, self.b_dec = W_dec.detach().float(), b_dec.detach().float()
        self.threshold = None if threshold is None else threshold.detach().float()
        self.hook_name, self.activation, self.k = hook_name, activation, k
        self.apply_b_dec_to_input = bool(apply_b_dec_to_input)
        self.name = name or hook_name
        self.cfg = dict(cfg or {})
        self._on: dict[torch.device, dict[str, torch.Tensor]] = {}
        self._digest: str | None = None

    def __repr__(self) -> str:
        kind = f"top-{self.k}" if self.activation == "topk" else self.activation
        return f"SAE({self.name!r}: {self.hook_name}, {self.d_in} -> {self.d_sae}, {kind})"

    @property
    def d_in(self) -> int:
        """Width of the hook's activations."""
        return self.W_enc.shape[0]

    @property
    def d_sae(self) -> int:
        """Number of latents."""
        return self.W_enc.shape[1]

    @property
    def hook_layer(self) -> int | None:
        """The block the hook belongs to (``None`` for hooks outside the blocks)."""
        found = _BLOCK.match(self.hook_name)
        return None if found is None else int(found.group(1))

    @property
    def digest(self) -> str:
        """A short sha256 of what the SAE computes: hook, activation, ``k`` and every weight.

        Statistics and neuron sets on an SAE site record it, so a set is refused when other
        weights are registered under its site's name. Computed once (the weights are treated as
        fixed once the SAE is built).

        Examples:
            >>> import lensneurons as ln
            >>> len(ln.SAE.load(ln.sae.ORGANISM_SAE).digest)
            16
        """
        if self._digest is None:
            found = hashlib.sha256(json.dumps(
                [self.hook_name, self.activation, self.k, self.apply_b_dec_to_input]).encode())
            for name in ("W_enc", "b_enc", "W_dec", "b_dec", "threshold"):
                tensor = getattr(self, name)
                found.update(name.encode())
                if tensor is not None:
                    found.update(tensor.detach().cpu().float().contiguous().numpy().tobytes())
            self._digest = found.hexdigest()[:16]
        return self._digest

    @property
    def elementwise(self) -> bool:
        """Whether each latent depends on its own pre-activation only (not ``"topk"``)."""
        return self.activation != "topk"

    def weights(self, device: torch.device) -> dict[str, torch.Tensor]:
        """The weights on ``device`` (moved once per device, then cached)."""
        if device not in self._on:
            names = ("W_enc", "b_enc", "W_dec", "b_dec", "threshold")
            self._on[device] = {n: getattr(self, n).to(device) for n in names
                                if getattr(self, n) is not None}
        return self._on[device]

    def encode(
        self, x: Float[torch.Tensor, "*batch d_model"],
        index: Int[torch.Tensor, " n"] | None = None,
    ) -> Float[torch.Tensor, "*batch latent"]:
        """Latent activations of ``x`` (float32), all of them or only the latents in ``index``.

        Examples:
            >>> import torch, lensneurons as ln
            >>> sae = ln.SAE.load(ln.sae.ORGANISM_SAE)
            >>> f = sae.encode(torch.randn(3, 128))
            >>> f.shape, bool((f >= 0).all())
            (torch.Size([3, 1024]), True)
        """
        if x.shape[-1] != self.d_in:
            raise ParameterError(f"SAE {self.name!r} encodes vectors of width {self.d_in}, got "
                                 f"width {x.shape[-1]}.")
        w = self.weights(x.device)
        sae_in = x.float() - w["b_dec"] if self.apply_b_dec_to_input else x.float()
        if index is not None and self.elementwise:
            index = index.to(x.device)
            pre = sae_in @ w["W_enc"][:, index] + w["b_enc"][index]
            threshold = w["threshold"][index] if self.threshold is not None else None
            return _activate(pre, self.activation, threshold)
        pre = sae_in @ w["W_enc"] + w["b_enc"]
        if self.activation == "topk":
            assert self.k is not None
            top = pre.topk(self.k, dim=-1)
            latents = torch.zeros_like(pre).scatter_(-1, top.indices, top.values.relu())
        else:
            latents = _activate(pre, self.activation, w.get("threshold"))
        return latents if index is None else latents[..., index.to(x.device)]

    def decode(
        self, f: Float[torch.Tensor, "*batch latent"]
    ) -> Float[torch.Tensor, "*batch d_model"]:
        """The reconstruction ``f @ W_dec + b_dec``."""
        w = self.weights(f.device)
        return f.float() @ w["W_dec"] + w["b_dec"]

    # --- the SAELens format -------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike[str], *, name: str | None = None) -> SAE:
        """Read a SAELens SAE folder (``cfg.json`` + ``sae_weights.safetensors``).

        Args:
            path: the folder.
            name: the name to register its site under (default: the folder's name).

        Raises:
            ResultNotFoundError: a file is missing.
            SAEFormatError: the config or the weights are not a supported SAELens SAE.
        """
        folder = Path(path)
        cfg_file, weights_file = folder / CFG_FILE, folder / WEIGHTS_FILE
        for file in (cfg_file, weights_file):
            if not file.is_file():
                raise ResultNotFoundError(
                    f"{folder} is not a SAELens SAE folder: {file.name} is missing (a SAELens "
                    f"SAE is {CFG_FILE} + {WEIGHTS_FILE}, as written by SAE.save_model).")
        try:
            cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
            weights = load_file(str(weights_file))
        except (ValueError, UnicodeDecodeError, SafetensorError, OSError) as err:
            raise SAEFormatError(f"The SAE in {folder} cannot be read ({err}).") from None
        if not isinstance(cfg, dict):
            raise SAEFormatError(f"{cfg_file} holds no config object.")
        missing = [k for k in ("W_enc", "b_enc", "W_dec", "b_dec") if k not in weights]
        if missing:
            raise SAEFormatError(f"{weights_file} lacks {missing}; not a SAELens SAE.")
        return cls(weights["W_enc"], weights["b_enc"], weights["W_dec"], weights["b_dec"],
                   threshold=weights.get("threshold"), name=name or folder.name,
                   cfg=cfg, **read_config(cfg, folder))

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the SAE as a SAELens 6 folder that ``sae_lens.SAE.load_from_disk`` reads.

        The folder is swapped in atomically by the persistence layer
        (:func:`lensneurons.core.persistence.write_folder`); an existing one is refused unless
        ``overwrite=True``. Returns the folder.
        """
        folder = persistence.check_writable_output(path, overwrite=overwrite, folder=True)
        meta = dict(self.cfg.get("metadata") or {})
        meta.update(hook_name=self.hook_name, hook_head_index=None)
        meta.setdefault("sae_lens_version", "6.0.0")
        meta.setdefault("sae_lens_training_version", "6.0.0")
        cfg = {**{k: v for k, v in self.cfg.items() if k not in _OLD_KEYS},
               "architecture": {"relu": "standard"}.get(self.activation, self.activation),
               "d_in": self.d_in, "d_sae": self.d_sae, "dtype": "float32", "device": "cpu",
               "apply_b_dec_to_input": self.apply_b_dec_to_input,
               "normalize_activations": "none", "reshape_activations": "none", "metadata": meta}
        if self.activation == "topk":
            cfg["k"] = self.k
        tensors = {"W_enc": self.W_enc, "b_enc": self.b_enc, "W_dec": self.W_dec,
                   "b_dec": self.b_dec}
        if self.threshold is not None:
            tensors["threshold"] = self.threshold

        def write(partial: Path) -> None:
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(partial / WEIGHTS_FILE))
            (partial / CFG_FILE).write_text(json.dumps(cfg, indent=1), encoding="utf-8")

        return persistence.write_folder(folder, write)


_OLD_KEYS = ("hook_name", "hook_layer", "hook_point", "activation_fn_str", "activation_fn",
             "activation_fn_kwargs", "hook_head_index")


def read_config(cfg: dict[str, Any], where: Path | str) -> dict[str, Any]:
    """The SAE's settings from a SAELens config of either layout (before or after 6.0).

    Raises:
        SAEFormatError: an unsupported activation, normalisation or architecture.
    """
    meta = cfg.get("metadata") if isinstance(cfg.get("metadata"), dict) else {}
    hook = meta.get("hook_name") or cfg.get("hook_name") or cfg.get("hook_point")
    if not isinstance(hook, str) or not hook:
        raise SAEFormatError(f"The config of {where} names no hook_name; add the TL hook "
                             "point the SAE was trained on.")
    if meta.get("hook_head_index", cfg.get("hook_head_index")) is not None:
        raise SAEFormatError(f"The SAE in {where} reads one attention head (hook_head_index); "
                             "per-head SAEs are not supported.")
    norm = cfg.get("normalize_activations", "none")
    if norm not in ("none", None, False):
        raise SAEFormatError(
            f"The SAE in {where} normalises its input (normalize_activations={norm!r}); only "
            "'none' is supported. Fold the scaling into the weights first (SAELens: "
            "fold_activation_norm_scaling_factor) and save it again.")
    if cfg.get("reshape_activations", "none") not in ("none", "hook_z"):
        raise SAEFormatError(f"Unknown reshape_activations {cfg['reshape_activations']!r}.")
    arch = cfg.get("architecture", "standard")
    act = cfg.get("activation_fn_str", cfg.get("activation_fn", "relu"))
    kwargs = cfg.get("activation_fn_kwargs") or {}
    k = cfg.get("k", kwargs.get("k"))
    if arch == "topk" or act == "topk":
        activation = "topk"
        if cfg.get("rescale_acts_by_decoder_norm"):
            raise SAEFormatError(f"The top-k SAE in {where} rescales by decoder norms; "
                                 "not supported.")
    elif arch == "jumprelu":
        activation = "jumprelu"
    elif arch == "standard" and act == "relu":
        activation = "relu"
    else:
        raise SAEFormatError(
            f"Unsupported SAE in {where}: architecture {arch!r} with activation {act!r}. "
            "Supported: standard (relu), topk, jumprelu.")
    return dict(hook_name=hook, activation=activation, k=k,
                apply_b_dec_to_input=bool(cfg.get("apply_b_dec_to_input", True)))


def _activate(pre: torch.Tensor, activation: str, threshold: torch.Tensor | None) -> torch.Tensor:
    if activation == "jumprelu":
        assert threshold is not None
        return pre.relu() * (pre > threshold)
    return pre.relu()
