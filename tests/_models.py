"""Tiny random TransformerLens models for the test-suite, built fully offline.

On TransformerLens >= 3 every architecture in :data:`ARCHS` is a tiny *random* Hugging Face model
(built from its config class) wrapped with ``TransformerBridge.boot_transformers(..., hf_model=,
tokenizer=)``, which exercises the real architecture adapters. Under TransformerLens 2.x (no
bridge) the archs are ``HookedTransformer(HookedTransformerConfig(...))`` models (``ht_*``).

All models share one byte-level BPE tokenizer (:func:`tokenizer`) trained in code on a few
multilingual sentences, so every script tokenizes. Models are float32, CPU, eval mode, and
deterministic given ``seed``; they are cached per ``(arch, seed)`` for the process.

Public API: ``ARCHS``, ``GATED``, ``TRUE_ACT_FN``, ``N_KV_HEADS``, ``TL_MAJOR``, ``SENTENCES``,
``build(arch, *, seed=0)``, ``hf_model(arch, *, seed=0)``, ``hf_down_proj(arch, layer, *, seed=0)``,
``tokenizer()``.
"""

from __future__ import annotations

import atexit
import functools
import importlib.metadata
import shutil
import tempfile
from typing import Any

import torch

TL_MAJOR: int = int(importlib.metadata.version("transformer-lens").split(".")[0])

D_MODEL = 64
N_LAYERS = 2
N_HEADS = 4
D_HEAD = D_MODEL // N_HEADS
N_CTX = 64

#: A few sentences per script; the tokenizer is trained on them and tests may reuse them.
SENTENCES: dict[str, list[str]] = {
    "en": ["Hello world, this is a short English sentence.", "The cat sleeps on the warm mat."],
    "de": ["Hallo Welt, das ist ein kurzer deutscher Satz.", "Die Katze schläft auf der Matte."],
    "fr": ["Bonjour le monde, c'est une phrase française.", "Le chat dort sur le tapis chaud."],
    "ru": ["Привет мир, это короткое русское предложение.", "Кошка спит на тёплом коврике."],
    "el": ["Γειά σου κόσμε, αυτή είναι μια ελληνική πρόταση.", "Η γάτα κοιμάται στο χαλί."],
    "zh": ["你好世界，这是一个简短的中文句子。", "猫在温暖的垫子上睡觉。"],
    "ja": ["こんにちは世界、これは短い日本語の文です。", "猫は暖かいマットの上で寝ている。"],
    "ar": ["مرحبا بالعالم، هذه جملة عربية قصيرة.", "القطة تنام على السجادة الدافئة."],
    "hi": ["नमस्ते दुनिया, यह एक छोटा हिंदी वाक्य है।", "बिल्ली गर्म चटाई पर सोती है।"],
}

_SPECIAL = ("<s>", "</s>", "<pad>")

# ---------------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------------

_TMP_DIRS: list[str] = []


@atexit.register
def _cleanup() -> None:
    for d in _TMP_DIRS:
        shutil.rmtree(d, ignore_errors=True)


@functools.cache
def _tokenizer_dir() -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=list(_SPECIAL),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    texts = [s for sents in SENTENCES.values() for s in sents]
    tok.train_from_iterator(texts * 4, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    # TransformerLens reloads a passed tokenizer from its name_or_path (with add_bos_token=True),
    # so an in-memory tokenizer fails boot: save it and load it back from the folder.
    folder = tempfile.mkdtemp(prefix="lensneurons-tok-")
    _TMP_DIRS.append(folder)
    fast.save_pretrained(folder)
    return folder


@functools.cache
def tokenizer() -> Any:
    """The shared tiny byte-level BPE tokenizer (``<s>``=0, ``</s>``=1, ``<pad>``=2)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(_tokenizer_dir())


def _vocab() -> int:
    return len(tokenizer())


# ---------------------------------------------------------------------------------------------
# Hugging Face configs (bridge archs)
# ---------------------------------------------------------------------------------------------

_IDS = {"bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 2}


def _hf_config(arch: str) -> tuple[Any, Any]:
    import transformers as tf

    v = _vocab()
    if arch in ("llama", "qwen2", "mistral"):
        cfg_cls, model_cls = {
            "llama": (tf.LlamaConfig, tf.LlamaForCausalLM),
            "qwen2": (tf.Qwen2Config, tf.Qwen2ForCausalLM),
            "mistral": (tf.MistralConfig, tf.MistralForCausalLM),
        }[arch]
        kw: dict[str, Any] = dict(
            vocab_size=v,
            hidden_size=D_MODEL,
            intermediate_size=128,
            num_hidden_layers=N_LAYERS,
            num_attention_heads=N_HEADS,
            # Mistral-style GQA: 2 kv heads for 4 query heads.
            num_key_value_heads=2 if arch == "mistral" else N_HEADS,
            max_position_embeddings=N_CTX,
            **_IDS,
        )
        if arch == "mistral":
            kw["sliding_window"] = None
        return cfg_cls(**kw), model_cls
    if arch == "gemma":
        return (
            tf.GemmaConfig(
                vocab_size=v,
                hidden_size=D_MODEL,
                intermediate_size=192,
                num_hidden_layers=N_LAYERS,
                num_attention_heads=N_HEADS,
                num_key_value_heads=N_HEADS,
                head_dim=D_HEAD,
                hidden_activation="gelu_pytorch_tanh",
                hidden_act="gelu_pytorch_tanh",
                max_position_embeddings=N_CTX,
                **_IDS,
            ),
            tf.GemmaForCausalLM,
        )
    if arch == "gpt2":
        return (
            tf.GPT2Config(
                vocab_size=v,
                n_positions=N_CTX,
                n_embd=D_MODEL,
                n_layer=N_LAYERS,
                n_head=N_HEADS,
                n_inner=256,
                activation_function="gelu_new",
                **_IDS,
            ),
            tf.GPT2LMHeadModel,
        )
    if arch == "neox":
        return (
            tf.GPTNeoXConfig(
                vocab_size=v,
                hidden_size=D_MODEL,
                num_hidden_layers=N_LAYERS,
                num_attention_heads=N_HEADS,
                intermediate_size=256,
                hidden_act="gelu",
                rotary_pct=0.25,
                max_position_embeddings=N_CTX,
                use_parallel_residual=True,
                **_IDS,
            ),
            tf.GPTNeoXForCausalLM,
        )
    if arch == "bloom":
        # BLOOM's MLP width is fixed at 4 * hidden_size = 256.
        return (
            tf.BloomConfig(
                vocab_size=v, hidden_size=D_MODEL, n_layer=N_LAYERS, n_head=N_HEADS, **_IDS
            ),
            tf.BloomForCausalLM,
        )
    raise KeyError(arch)


_BRIDGE_ARCHS = ("llama", "qwen2", "mistral", "gemma", "gpt2", "neox", "bloom")
_HT_ARCHS = ("ht_llama", "ht_gpt2")

#: Architectures with a gated MLP (hook_pre = gate, hook_pre_linear = up, hook_post = act(g)*u).
GATED = frozenset({"llama", "qwen2", "mistral", "gemma", "ht_llama"})

#: The activation function each tiny model really applies (TL ``act_fn`` spelling). It can differ
#: from ``model.cfg.act_fn``: TL 4.3's BLOOM adapter reports ``"relu"`` for BLOOM's GELU-tanh.
TRUE_ACT_FN = {
    "llama": "silu",
    "qwen2": "silu",
    "mistral": "silu",
    "gemma": "gelu_pytorch_tanh",
    "gpt2": "gelu_new",
    "neox": "gelu",
    "bloom": "gelu_new",
    "ht_llama": "silu",
    "ht_gpt2": "gelu_new",
}

#: Number of key/value heads of each tiny model (GQA where < 4).
N_KV_HEADS = {"mistral": 2, "ht_llama": 2}


def _hooked_transformer_available() -> bool:
    try:
        from transformer_lens import HookedTransformer  # noqa: F401
    except (ImportError, AttributeError):
        return False
    return True


def _available() -> tuple[str, ...]:
    archs: tuple[str, ...] = ()
    if TL_MAJOR >= 3:
        archs += _BRIDGE_ARCHS
    if _hooked_transformer_available():
        archs += _HT_ARCHS
    return archs


#: Architecture ids available in the running environment.
ARCHS: tuple[str, ...] = _available()

# ---------------------------------------------------------------------------------------------
# Builders
# ---------------------------------------------------------------------------------------------


@functools.cache
def _build_hf(arch: str, seed: int) -> Any:
    cfg, model_cls = _hf_config(arch)
    cfg._attn_implementation = "eager"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_cls(cfg)
    return model.to(torch.float32).eval()


def _build_ht(arch: str, seed: int) -> Any:
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    common: dict[str, Any] = dict(
        n_layers=N_LAYERS,
        d_model=D_MODEL,
        d_head=D_HEAD,
        n_heads=N_HEADS,
        n_ctx=N_CTX,
        d_vocab=_vocab(),
        seed=seed,
        device="cpu",
        dtype=torch.float32,
        tokenizer_prepends_bos=None,
    )
    if arch == "ht_llama":
        kw = dict(
            common,
            d_mlp=128,
            act_fn="silu",
            gated_mlp=True,
            normalization_type="RMS",
            positional_embedding_type="rotary",
            rotary_dim=D_HEAD,
            final_rms=True,
        )
        fields = getattr(HookedTransformerConfig, "__dataclass_fields__", {})
        if "n_key_value_heads" in fields:  # GQA (TL >= 1.16)
            kw["n_key_value_heads"] = 2
    elif arch == "ht_gpt2":
        kw = dict(
            common,
            d_mlp=256,
            act_fn="gelu_new",
            normalization_type="LN",
            positional_embedding_type="standard",
        )
    else:
        raise KeyError(arch)
    fields = getattr(HookedTransformerConfig, "__dataclass_fields__", {})
    kw = {k: val for k, val in kw.items() if k in fields}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = HookedTransformer(HookedTransformerConfig(**kw), tokenizer=tokenizer())
    return model.eval()


_MODELS: dict[tuple[str, int], Any] = {}


def build(arch: str, *, seed: int = 0) -> Any:
    """Return the tiny TL model for ``arch`` (eval, float32, CPU; cached per ``(arch, seed)``).

    The model is shared within the process: a test that edits weights must restore them.
    """
    key = (arch, int(seed))
    if key in _MODELS:
        return _MODELS[key]
    if arch not in ARCHS:
        raise KeyError(f"arch {arch!r} not available here; ARCHS = {ARCHS}")
    if arch.startswith("ht_"):
        model = _build_ht(arch, seed)
    else:
        from transformer_lens.model_bridge import TransformerBridge

        model = TransformerBridge.boot_transformers(
            f"local-{arch}",
            hf_model=_build_hf(arch, seed),
            tokenizer=tokenizer(),
            device="cpu",
            dtype=torch.float32,
        )
    _MODELS[key] = model = model.eval()
    return model


def hf_model(arch: str, *, seed: int = 0) -> Any:
    """The Hugging Face module wrapped by ``build(arch, seed=seed)`` (bridge archs only).

    It is the very object the bridge runs, so editing its weights changes the bridge's output.
    """
    if arch.startswith("ht_"):
        raise KeyError(f"{arch!r} is a HookedTransformer: it has no underlying HF model")
    build(arch, seed=seed)
    return _build_hf(arch, seed)


def hf_down_proj(arch: str, layer: int, *, seed: int = 0) -> tuple[torch.Tensor, int]:
    """The MLP output weight (W_down) of ``layer`` in the HF model, and its neuron axis.

    Neuron ``k``'s contribution disappears when ``weight.index_select(axis, k)`` is zeroed
    (``nn.Linear``: axis 1 of ``[d_model, d_mlp]``; GPT-2's ``Conv1D``: axis 0 of
    ``[d_mlp, d_model]``). Edit it under ``torch.no_grad()`` and restore it afterwards: the
    model is cached and shared between tests.
    """
    hf = hf_model(arch, seed=seed)
    if arch in ("llama", "qwen2", "mistral", "gemma"):
        return hf.model.layers[layer].mlp.down_proj.weight, 1
    if arch == "gpt2":
        return hf.transformer.h[layer].mlp.c_proj.weight, 0
    if arch == "neox":
        return hf.gpt_neox.layers[layer].mlp.dense_4h_to_h.weight, 1
    if arch == "bloom":
        return hf.transformer.h[layer].mlp.dense_4h_to_h.weight, 1
    raise KeyError(arch)
