"""One face over TransformerLens models: TL >= 3 ``TransformerBridge``, TL 2 ``HookedTransformer``.

Only this module knows TransformerLens versions. Everything else asks a :class:`ModelView` for
sizes, hook names, the activation function, the device of a layer and the tokenizer, and calls
:func:`boot` to wrap a Hugging Face model into the TL class the installed version has. The view is
duck-typed on TL's hook protocol (``hook_dict``, ``hooks()``, ``run_with_hooks()``, ``cfg``), so
any model that speaks it works; ``HookedTransformer`` is imported only by :func:`boot` on TL 2.x
(on TL 4.x even touching it raises).

Examples:
    >>> import lensneurons as ln
    >>> view = ln.ModelView(ln.organism.load())
    >>> view.hook_name(0, "mlp.hook_pre")
    'blocks.0.mlp.hook_pre'
    >>> view.gated, view.act_fn_name
    (True, 'silu')
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from functools import cached_property
from typing import Any

import torch
import torch.nn.functional as F

from lensneurons.errors import ModelMismatchError, UnknownSiteError, UnsupportedModelError

_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "silu": F.silu,
    "swish": F.silu,
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_fast": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
}

#: Architectures whose HF config does not name the activation their code applies.
_FIXED_ACTIVATIONS = {"BloomForCausalLM": "gelu_new"}

_FINGERPRINT_SLICE = 8


def tl_version() -> str:
    """The installed TransformerLens version string (``"0"`` when unknown)."""
    try:
        return importlib.metadata.version("transformer-lens")
    except importlib.metadata.PackageNotFoundError:
        return "0"


def has_bridge() -> bool:
    """True when the installed TransformerLens has ``TransformerBridge`` (TL >= 3)."""
    return int(tl_version().split(".")[0]) >= 3


def hf_architecture(hf_config: Any) -> str:
    """The Hugging Face causal-LM class name of a config (``"Gemma3ForCausalLM"``).

    Configs read from GGUF files name no ``architectures``; then the class ``transformers``
    would build for the config's type.
    """
    names = list(getattr(hf_config, "architectures", None) or [])
    if names:
        return str(names[0])
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING

    try:
        model_class: Any = MODEL_FOR_CAUSAL_LM_MAPPING[type(hf_config)]
        return str(model_class.__name__)
    except KeyError:
        return f"<model_type {getattr(hf_config, 'model_type', '?')!r}>"


def check_bootable(hf_config: Any, name: str) -> None:
    """Raise :class:`UnsupportedModelError` unless :func:`boot` can wrap this architecture.

    TL >= 3 bridges every architecture its adapter factory lists; TL 2.x knows its official model
    names, and Llama-architecture models of any name (built from the config, as the organism is).

    Args:
        hf_config: the Hugging Face config of the model.
        name: the model's hub name (TL 2.x looks it up in its list of official names).
    """
    if has_bridge():
        from transformer_lens.factories.architecture_adapter_factory import (
            SUPPORTED_ARCHITECTURES,
        )
        from transformer_lens.model_bridge.sources._hf_format import (
            determine_architecture_from_hf_config,
        )

        architecture = hf_architecture(hf_config)
        if architecture not in SUPPORTED_ARCHITECTURES:
            try:
                architecture = determine_architecture_from_hf_config(hf_config)
            except ValueError:
                pass
        if architecture not in SUPPORTED_ARCHITECTURES:
            raise UnsupportedModelError(
                f"TransformerLens {tl_version()} cannot bridge {architecture}. Bridged "
                f"architectures: transformer_lens.factories.architecture_adapter_factory."
                "SUPPORTED_ARCHITECTURES; upgrade transformer-lens or use a model of one of them."
            )
        return
    if hf_architecture(hf_config) != "LlamaForCausalLM" and not _tl2_official(name):
        raise UnsupportedModelError(
            f"TransformerLens {tl_version()} (HookedTransformer) knows neither {name!r} nor "
            f"its architecture {hf_architecture(hf_config)}. Install transformer-lens>=3 "
            "(TransformerBridge bridges far more architectures)."
        )


def boot(hf_model: Any, tokenizer: Any, *, name: str,
         device: str | torch.device | None = None) -> Any:
    """Wrap a Hugging Face causal LM into the installed TransformerLens's model class.

    TL >= 3: ``TransformerBridge.boot_transformers(name, hf_model=..., tokenizer=...)`` (raw HF
    weights: activations equal the HF model's). TL 2.x: ``HookedTransformer`` loaded without
    weight processing (no LayerNorm folding or centering, so every hook sees the HF model's
    values), from its official config where TL knows ``name``, else from the HF config for Llama
    architectures.

    Args:
        hf_model: the HF model (eval mode, in the dtype and on the device wanted).
        tokenizer: its tokenizer, loaded from a folder (TL re-loads it by ``name_or_path``).
        name: the model's hub name (``"google/gemma-3-270m"``) or folder.
        device: where the model lives (default: where ``hf_model`` is).

    Returns:
        A TransformerLens model with ``tokenizer`` attached.

    Raises:
        UnsupportedModelError: the installed TransformerLens cannot wrap this architecture.

    Examples:
        >>> from lensneurons import organism
        >>> hf_model, tokenizer = organism.load_hf()
        >>> model = boot(hf_model, tokenizer, name=organism.NAME)
        >>> ModelView(model).n_layers
        4
    """
    check_bootable(hf_model.config, name)
    if device is None:
        device = next(hf_model.parameters()).device
    if has_bridge():
        from transformer_lens.model_bridge import TransformerBridge

        dtype = next(hf_model.parameters()).dtype
        return TransformerBridge.boot_transformers(name, hf_model=hf_model, tokenizer=tokenizer,
                                                   device=device, dtype=dtype)
    if _tl2_official(name):
        from transformer_lens import HookedTransformer

        model = HookedTransformer.from_pretrained_no_processing(
            name, hf_model=hf_model, tokenizer=tokenizer, device=str(device),
            dtype=next(hf_model.parameters()).dtype)
        return model.eval()
    return _tl2_llama(hf_model, tokenizer, name, device)


def _tl2_official(name: str) -> bool:
    """Whether TL 2.x knows ``name`` among its official models (or their aliases)."""
    try:
        from transformer_lens.loading_from_pretrained import get_official_model_name
    except ImportError:
        return False
    try:
        get_official_model_name(name)
    except ValueError:
        return False
    return True


def _tl2_llama(hf_model: Any, tokenizer: Any, name: str, device: str | torch.device) -> Any:
    """A TL 2.x ``HookedTransformer`` equal to a Llama-architecture ``hf_model``.

    The weights go through TL's own ``convert_llama_weights`` and are loaded unprocessed, so
    every hook sees the same values as in the HF model.
    """
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions import convert_llama_weights

    hc = hf_model.config
    d_head = getattr(hc, "head_dim", None) or hc.hidden_size // hc.num_attention_heads
    n_kv = hc.num_key_value_heads
    cfg = HookedTransformerConfig(
        model_name=name,
        d_model=hc.hidden_size,
        d_head=d_head,
        n_heads=hc.num_attention_heads,
        n_key_value_heads=n_kv if n_kv != hc.num_attention_heads else None,
        d_mlp=hc.intermediate_size,
        n_layers=hc.num_hidden_layers,
        n_ctx=hc.max_position_embeddings,
        d_vocab=hc.vocab_size,
        act_fn=hc.hidden_act,
        gated_mlp=True,
        normalization_type="RMS",
        eps=hc.rms_norm_eps,
        positional_embedding_type="rotary",
        rotary_dim=d_head,
        rotary_base=int(_rope_theta(hc)),
        rotary_adjacent_pairs=False,
        final_rms=True,
        original_architecture="LlamaForCausalLM",
        default_prepend_bos=bool(getattr(tokenizer, "add_bos_token", True)),
        device=str(device),
        dtype=next(hf_model.parameters()).dtype,
    )
    model = HookedTransformer(cfg, tokenizer=tokenizer, move_to_device=False)
    model.load_and_process_state_dict(
        convert_llama_weights(hf_model, cfg),
        fold_ln=False,
        center_writing_weights=False,
        center_unembed=False,
        fold_value_biases=False,
        refactor_factored_attn_matrices=False,
    )
    return model.to(device).eval()


def _rope_theta(hf_config: Any) -> float:
    """Return the rotary base of a Llama config (``rope_theta`` or ``rope_parameters``)."""
    params = getattr(hf_config, "rope_parameters", None) or {}
    return float(params.get("rope_theta", getattr(hf_config, "rope_theta", 10_000.0)))


class _ForwardStopped(Exception):
    """Raised by :meth:`ModelView.run_until`'s hook to end a pass early (never escapes it)."""


def _stop_forward(x: torch.Tensor, *, hook: Any) -> None:
    raise _ForwardStopped


class ModelView:
    """Sizes, hook names, activation function, devices and identity of a TransformerLens model.

    Args:
        model: a ``TransformerBridge`` (TL >= 3) or ``HookedTransformer`` (TL 2.x), or any module
            with ``hook_dict``, ``hooks()``, ``run_with_hooks()`` and a ``cfg`` holding
            ``n_layers``, ``d_model``, ``d_mlp``, ``act_fn``.

    Raises:
        UnsupportedModelError: the object does not speak TL's hook protocol, or its activation
            function is unknown.
    """

    def __init__(self, model: Any) -> None:
        if isinstance(model, ModelView):
            model = model.model  # type: ignore[has-type]
        missing = [name for name in ("hook_dict", "hooks", "run_with_hooks", "cfg")
                   if not hasattr(model, name)]
        if missing:
            raise UnsupportedModelError(
                f"{type(model).__name__} is not a TransformerLens model (it lacks {missing}). "
                "Load one with TransformerBridge.boot_transformers(name) (TL >= 3) or "
                "HookedTransformer.from_pretrained(name) (TL 2.x)."
            )
        self.model = model
        self.cfg = model.cfg

    def __repr__(self) -> str:
        return (f"ModelView({self.architecture}, n_layers={self.n_layers}, d_model={self.d_model}, "
                f"d_mlp={self.d_mlp}, gated={self.gated}, act_fn={self.act_fn_name!r})")

    # --- sizes -------------------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        """Number of transformer blocks."""
        return int(self.cfg.n_layers)

    @property
    def d_model(self) -> int:
        """Width of the residual stream."""
        return int(self.cfg.d_model)

    @property
    def d_mlp(self) -> int:
        """Number of MLP neurons per layer."""
        if getattr(self.cfg, "d_mlp", None) is None:
            raise UnsupportedModelError(
                f"{self.architecture} has no d_mlp in its config (attention-only or MoE model); "
                "use an attention site such as site='attn.v'."
            )
        return int(self.cfg.d_mlp)

    @property
    def d_vocab(self) -> int:
        """Vocabulary size of the unembedding."""
        return int(self.cfg.d_vocab)

    @property
    def n_heads(self) -> int:
        """Number of query heads."""
        return int(self.cfg.n_heads)

    @property
    def d_head(self) -> int:
        """Width of one attention head."""
        return int(self.cfg.d_head)

    @property
    def n_kv_heads(self) -> int:
        """Number of key/value heads (fewer than ``n_heads`` under grouped-query attention)."""
        return int(getattr(self.cfg, "n_key_value_heads", None) or self.n_heads)

    @property
    def n_ctx(self) -> int:
        """Longest context the model accepts."""
        return int(self.cfg.n_ctx)

    @property
    def gated(self) -> bool:
        """Whether the MLP is gated (``act(gate) * up``, Llama-style)."""
        return bool(getattr(self.cfg, "gated_mlp", False))

    @property
    def architecture(self) -> str:
        """The architecture name (HF class name on bridges, TL's ``original_architecture``)."""
        for key in ("architecture", "original_architecture", "model_name"):
            value = getattr(self.cfg, key, None)
            if value:
                return str(value)
        return type(self.model).__name__

    @property
    def is_bridge(self) -> bool:
        """True for TL >= 3 ``TransformerBridge`` models."""
        return type(self.model).__name__ == "TransformerBridge"

    # --- activation function -------------------------------------------------------------------
    @property
    def act_fn_name(self) -> str:
        """The name of the MLP activation function the model really applies.

        On bridges the wrapped Hugging Face config is the authority (TL 4.3's BLOOM adapter, for
        one, reports ``"relu"`` for BLOOM's tanh-approximated GELU); else TL's ``cfg.act_fn``.
        """
        hf_config = getattr(getattr(self.model, "original_model", None), "config", None)
        if hf_config is not None:
            for key in ("hidden_activation", "hidden_act", "activation_function"):
                value = getattr(hf_config, key, None)
                if isinstance(value, str):
                    return value
            if self.architecture in _FIXED_ACTIVATIONS:
                return _FIXED_ACTIVATIONS[self.architecture]
        return str(self.cfg.act_fn)

    @cached_property
    def act_fn(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The MLP activation function, applied to ``hook_pre`` it gives the activation ``a``."""
        name = self.act_fn_name
        if name in _ACTIVATIONS:
            return _ACTIVATIONS[name]
        try:
            from transformers.activations import ACT2FN

            return ACT2FN[name]
        except (ImportError, KeyError):
            raise UnsupportedModelError(
                f"Unknown MLP activation function {name!r}; known: {sorted(_ACTIVATIONS)}. "
                "Open an issue with the model name."
            ) from None

    # --- hooks, devices, tokenizer -------------------------------------------------------------
    def hook_name(self, layer: int, point: str) -> str:
        """The TL hook name of ``point`` (e.g. ``"mlp.hook_pre"``) in block ``layer``.

        Raises:
            UnknownSiteError: the model has no such hook point.
        """
        if not 0 <= layer < self.n_layers:
            raise UnknownSiteError(f"Layer {layer} does not exist: the model has {self.n_layers}.")
        name = f"blocks.{layer}.{point}"
        if name not in self.model.hook_dict:
            raise UnknownSiteError(
                f"{self.architecture} has no hook point {name!r} (a TransformerLens adapter gap). "
                "Use another site, or report it to TransformerLens with the model name."
            )
        return name

    def run_until(self, tokens: torch.Tensor, hook_name: str) -> None:
        """Run a forward pass that stops right after ``hook_name`` has fired.

        Everything after that hook point (later blocks, the unembedding) is not computed, so a
        pass that only reads activations skips the work no statistic needs; on a 262k-word
        vocabulary the unembedding is most of a forward pass. The stop is an exception raised by
        a hook registered after every other hook on that point (so those run first) and caught
        here; hooks registered with ``model.hooks`` are removed as usual.

        Raises:
            RuntimeError: the pass ended without reaching ``hook_name``.
        """
        with self.model.hooks(fwd_hooks=[(hook_name, _stop_forward)]):
            try:
                self.model(tokens)
            except _ForwardStopped:
                return
        raise RuntimeError(f"The forward pass never reached {hook_name!r}.")

    def layer_device(self, layer: int) -> torch.device:
        """The device holding block ``layer``'s weights (accumulators for that layer live there)."""
        for param in self.model.blocks[layer].parameters():
            return param.device
        return torch.device(getattr(self.cfg, "device", None) or "cpu")

    @property
    def input_device(self) -> torch.device:
        """The device the model expects its input tokens on."""
        return self.layer_device(0)

    @property
    def tokenizer(self) -> Any:
        """The model's Hugging Face tokenizer.

        Raises:
            UnsupportedModelError: the model was built without one.
        """
        tokenizer = getattr(self.model, "tokenizer", None)
        if tokenizer is None:
            raise UnsupportedModelError(
                "The model has no tokenizer. Pass one when loading it "
                "(boot_transformers(..., tokenizer=tok) or HookedTransformer(cfg, tokenizer=tok))."
            )
        return tokenizer

    @property
    def bos_token_id(self) -> int | None:
        """The BOS id the model expects first in a sequence, or ``None`` if it prepends none."""
        if not getattr(self.cfg, "default_prepend_bos", True):
            return None
        return self.tokenizer.bos_token_id

    # --- identity ------------------------------------------------------------------------------
    def fingerprint(self) -> dict[str, Any]:
        """Architecture, sizes and a small slice of the embedding, to recognise the model later."""
        w_e = self.model.W_E.detach()[:_FINGERPRINT_SLICE, :_FINGERPRINT_SLICE]
        return {
            "architecture": self.architecture,
            "n_layers": self.n_layers,
            "d_model": self.d_model,
            "d_mlp": getattr(self.cfg, "d_mlp", None),
            "d_vocab": self.d_vocab,
            "embedding_slice": w_e.float().cpu().tolist(),
        }

    def check_fingerprint(self, saved: dict[str, Any], what: str) -> None:
        """Raise :class:`ModelMismatchError` if ``saved`` was not made with this model.

        Sizes must match exactly; the embedding slice up to bf16 rounding (so results collected
        in bf16 on a GPU load against the same model in fp32 on a CPU).
        """
        mine = self.fingerprint()
        for key in ("n_layers", "d_model", "d_mlp", "d_vocab"):
            if saved.get(key) != mine[key]:
                raise ModelMismatchError(
                    f"{what} was made with a model with {key}={saved.get(key)} "
                    f"({saved.get('architecture')}), this one has {key}={mine[key]} "
                    f"({mine['architecture']}). Load it against the model it was made with."
                )
        saved_slice = torch.tensor(saved.get("embedding_slice", []), dtype=torch.float32)
        mine_slice = torch.tensor(mine["embedding_slice"], dtype=torch.float32)
        if saved_slice.shape != mine_slice.shape or not torch.allclose(
            saved_slice, mine_slice, rtol=1e-2, atol=1e-3
        ):
            raise ModelMismatchError(
                f"{what} was made with a model of the same shape but other weights "
                f"({saved.get('architecture')}). Load it against the model it was made with, "
                "or pass model=None to skip the check."
            )
