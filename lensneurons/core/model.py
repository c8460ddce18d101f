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

import copy
import inspect
from collections.abc import Callable
from functools import cached_property
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Int

from lensneurons.core.boot import boot, check_bootable, has_bridge, hf_architecture, tl_version
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


class PrefixCache:
    """The keys and values of a prompt prefix, to continue ``n`` rows from it in one pass.

    Made by :meth:`ModelView.prefix_cache`; :meth:`inputs` gives the keyword arguments of a
    forward pass over the rows' next tokens (TL 2: a zero-copy expanded view of TransformerLens's
    cache; TL >= 3: a copy of the Hugging Face cache repeated per row).
    """

    def __init__(self, kind: str, cache: Any) -> None:
        self.kind, self.cache = kind, cache

    def inputs(self, n: int, last: torch.Tensor) -> dict[str, Any]:
        """Keyword arguments continuing ``n`` rows (``last``: their ``[n, 1]`` next tokens)."""
        if self.kind == "tl":
            cache = self.cache
            entries = [type(e)(past_keys=e.past_keys.expand(n, -1, -1, -1),
                               past_values=e.past_values.expand(n, -1, -1, -1), frozen=True)
                       for e in cache.entries]
            frozen = type(cache)(entries=entries, frozen=True,
                                 previous_attention_mask=cache.previous_attention_mask.expand(
                                     n, -1))
            return {"past_kv_cache": frozen, "attention_mask": torch.ones_like(last)}
        cache = copy.deepcopy(self.cache)
        cache.batch_repeat_interleave(n)
        return {"past_key_values": cache}


def block_hook(layer: int, point: str) -> str:
    """The TL hook name of ``point`` in block ``layer`` (the one place these names are built).

    Examples:
        >>> block_hook(3, "mlp.hook_post")
        'blocks.3.mlp.hook_post'
    """
    return f"blocks.{layer}.{point}"


def resid_hook(depth: int) -> str:
    """The residual-stream hook at readout depth ``d`` (0: embeddings; else after block ``d-1``).

    Examples:
        >>> resid_hook(0), resid_hook(2)
        ('blocks.0.hook_resid_pre', 'blocks.1.hook_resid_post')
    """
    return block_hook(depth - 1, "hook_resid_post") if depth else block_hook(
        0, "hook_resid_pre")


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
        name = block_hook(layer, point)
        if name not in self.model.hook_dict:
            raise UnknownSiteError(
                f"{self.architecture} has no hook point {name!r} (a TransformerLens adapter gap). "
                "Use another site, or report it to TransformerLens with the model name."
            )
        return name

    def run_until(self, tokens: Int[torch.Tensor, "batch pos"], hook_name: str) -> None:
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

    def prefix_cache(self, prefix: Int[torch.Tensor, " pos"]) -> PrefixCache | None:
        """The keys and values of ``prefix`` (one sequence), in the cache this model takes.

        ``HookedTransformer`` (TL 2) takes TransformerLens's own ``past_kv_cache`` (its pass
        stops after the last block); the bridge (TL >= 3) hands back the Hugging Face cache with
        ``return_type="logits_and_cache"`` and takes it as ``past_key_values``. ``None`` for a
        model with neither. Callers check the cached pass against a plain one before trusting it
        (some transformers versions decode wrongly from their cache).
        """
        params = inspect.signature(self.model.forward).parameters
        tokens = prefix[None].to(self.input_device)
        with torch.no_grad():
            if "past_kv_cache" in params:
                from transformer_lens.past_key_value_caching import HookedTransformerKeyValueCache

                cache = HookedTransformerKeyValueCache.init_cache(self.cfg, self.input_device, 1)
                with self.model.hooks(fwd_hooks=[(block_hook(self.n_layers - 1,
                                                             "hook_resid_post"), _stop_forward)]):
                    try:
                        self.model(tokens, past_kv_cache=cache,
                                   attention_mask=torch.ones_like(tokens))
                    except _ForwardStopped:
                        pass
                return PrefixCache("tl", cache)
            if "past_key_values" in params:
                out = self.model(tokens, return_type="logits_and_cache", use_past_kv_cache=True)
                cache = out[1] if isinstance(out, tuple) and len(out) == 2 else None
                if hasattr(cache, "batch_repeat_interleave"):
                    return PrefixCache("hf", cache)
        return None

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
        for key in _SIZES:
            if saved.get(key) != mine[key]:
                raise ModelMismatchError(
                    f"{what} was made with a model with {key}={saved.get(key)} "
                    f"({saved.get('architecture')}), this one has {key}={mine[key]} "
                    f"({mine['architecture']}). Load it against the model it was made with."
                )
        if not _same_slice(saved.get("embedding_slice"), mine["embedding_slice"]):
            raise ModelMismatchError(
                f"{what} was made with a model of the same shape but other weights "
                f"({saved.get('architecture')}). Load it against the model it was made with, "
                "or pass model=None to skip the check."
            )


_SIZES = ("n_layers", "d_model", "d_mlp", "d_vocab")


def _same_slice(first: Any, second: Any) -> bool:
    """Two embedding slices equal up to bf16 rounding (so bf16 and fp32 weights match)."""
    try:
        a = torch.tensor(first if first is not None else [], dtype=torch.float32)
        b = torch.tensor(second if second is not None else [], dtype=torch.float32)
    except (TypeError, ValueError):
        return False
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=1e-2, atol=1e-3))


def same_fingerprint(first: Any, second: Any) -> bool:
    """Whether two fingerprints (:meth:`ModelView.fingerprint`) can name one model.

    The tolerance of :meth:`ModelView.check_fingerprint`: sizes equal, the embedding slices
    equal up to bf16 rounding (the same weights in bf16 and fp32 match, other weights do not),
    and the SAE digests equal where both record one. A missing fingerprint matches anything
    (results built by hand carry none); something that is not a fingerprint matches only itself.

    Examples:
        >>> a = {"n_layers": 2, "embedding_slice": [[0.1234567, -2.0]]}
        >>> same_fingerprint(a, {"n_layers": 2, "embedding_slice": [[0.1235, -2.0]]})  # bf16
        True
        >>> same_fingerprint(a, {"n_layers": 2, "embedding_slice": [[0.5, -2.0]]})
        False
        >>> same_fingerprint(a, None)
        True
    """
    if not first or not second or first is second:
        return True
    if not isinstance(first, dict) or not isinstance(second, dict):
        return bool(first == second)
    if any(first.get(key) != second.get(key) for key in _SIZES):
        return False
    if first.get("sae") and second.get("sae") and first["sae"] != second["sae"]:
        return False
    return _same_slice(first.get("embedding_slice"), second.get("embedding_slice"))


__all__ = ["ModelView", "boot", "check_bootable", "has_bridge", "hf_architecture",
           "same_fingerprint", "tl_version"]
