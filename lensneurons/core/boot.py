"""Wrap a Hugging Face causal LM into the TransformerLens class the installed version has.

Part of :mod:`lensneurons.core.model`, the one package that knows TransformerLens versions: TL >= 3
``TransformerBridge``, TL 2.x ``HookedTransformer``.

Examples:
    >>> from lensneurons.core.model import boot, has_bridge
    >>> isinstance(has_bridge(), bool)
    True
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from typing import Any

import torch

from lensneurons.errors import UnsupportedModelError


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
        >>> from lensneurons.subjects import organism
        >>> from lensneurons.core.model import ModelView
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


def tl_logit_readout() -> Callable[..., Any] | None:
    """TL >= 4's ``transformer_lens.tools.analysis.logit_readout``; ``None`` where TL lacks it."""
    try:
        from transformer_lens.tools.analysis import logit_readout
    except ImportError:
        return None
    return logit_readout  # type: ignore[no-any-return]
