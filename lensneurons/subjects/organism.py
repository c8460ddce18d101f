"""The model organism: a small multilingual Llama-style model trained by the package itself.

No weights can be downloaded offline, so ``lensneurons`` builds and ships its own subject for
demos, notebooks and integration tests: a 4-layer ``LlamaForCausalLM`` (gated SiLU MLP, RMSNorm,
rotary attention; d_model 128, d_mlp 2048 — a wide MLP, so that each language gets neurons of
its own —, 4 heads, context 256; 4.5 M parameters) with a 4096-token byte-level BPE tokenizer,
trained from scratch on English, German, French, Spanish, Portuguese, Russian and Greek.
Weights, tokenizer, HF config and a ``training.json`` record of the run live in
``lensneurons/data/organism/``.

Training text (all offline):

* the written parallel sample (:mod:`lensneurons.corpora.sample`), ``"train"`` split only; the
  ``"heldout"`` split (32 sentences per language) is never trained on and is the evaluation text;
* the machine's gettext catalogs (:mod:`lensneurons.corpora.gettext`): translated UI and error
  strings of glib, gtk, coreutils, git, PostgreSQL, the ISO code lists and others; English is
  their ``msgid`` text.

Every batch holds the same number of windows per language; within a language a window comes from
the written sample with probability :data:`SAMPLE_SHARE`, else from the catalogs. The exact data
sizes, step count and final losses of the shipped weights are in ``training.json`` and
``docs/organism.md``.

Examples:
    >>> from lensneurons.subjects import organism
    >>> model = organism.load()  # a TransformerBridge (TL >= 3) or HookedTransformer (TL 2.x)
    >>> heldout = organism.texts("heldout")
    >>> sorted(heldout) == sorted(organism.LANGUAGES)
    True

"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import torch

from lensneurons.core.model import boot
from lensneurons.corpora.sample import Split, load_sample
from lensneurons.subjects._organism_recipe import (
    DEFAULT_STEPS,
    LANGUAGES,
    NAME,
    SAMPLE_SHARE,
    TrainConfig,
    train,
)

#: LAPE's top_rate on the organism. 1% of its 4 x 2048 MLP neurons is 82 neurons, too few to move
#: the held-out NLL of the Latin-script languages measurably; at 10% (819 neurons) deactivating each
#: language's set raises its own NLL >= 3x the mean rise elsewhere, and more than a random set does.
TOP_RATE = 0.10

__all__ = [
    "DEFAULT_STEPS",
    "LANGUAGES",
    "SAMPLE_SHARE",
    "TOP_RATE",
    "TrainConfig",
    "load",
    "load_hf",
    "organism_dir",
    "texts",
    "train",
]


def organism_dir() -> Path:
    """Return the folder of the shipped organism (weights, tokenizer, config, training record).

    Examples:
        >>> (organism_dir() / "config.json").is_file()
        True

    """
    return Path(str(resources.files("lensneurons") / "data" / "organism"))


def texts(split: Split = "heldout") -> dict[str, list[str]]:
    """Return the organism's languages' text from the built-in written sample.

    Only the shipped parallel sample is used (never the machine's gettext catalogs), so results
    on it are the same on every machine. ``"heldout"`` was never trained on: evaluate there.
    ``"train"`` is what the organism saw (as part of its training data): use it to collect
    activation statistics.

    Args:
        split: ``"train"`` (128 sentences per language), ``"heldout"`` (32) or ``"all"``.

    Returns:
        ``{language: [sentence, ...]}`` for every language in :data:`LANGUAGES`.

    Examples:
        >>> len(texts("heldout")["ru"])
        32

    """
    return load_sample(LANGUAGES, split=split)


def load_hf(
    *, device: str | torch.device = "cpu", path: str | Path | None = None
) -> tuple[Any, Any]:
    """Load the organism as a Hugging Face model and tokenizer.

    Args:
        device: Where to put the model.
        path: An organism folder (default: the shipped one, :func:`organism_dir`).

    Returns:
        ``(LlamaForCausalLM in eval mode, PreTrainedTokenizerFast)``. The tokenizer prepends
        ``<s>`` to every text.

    Examples:
        >>> hf_model, tokenizer = load_hf()
        >>> tokenizer("Hallo Welt")["input_ids"][0] == tokenizer.bos_token_id
        True

    """
    from transformers import AutoTokenizer, LlamaForCausalLM

    from lensneurons.subjects.models import _transformers_progress

    folder = Path(path) if path is not None else organism_dir()
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    with _transformers_progress(False):  # 39 small tensors: no "Loading weights" bar
        hf_model: Any = LlamaForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    return hf_model.to(device).eval(), tokenizer


def load(*, device: str | torch.device = "cpu", path: str | Path | None = None) -> Any:
    """Load the organism as a TransformerLens model.

    On TransformerLens >= 3 this is a ``TransformerBridge`` around the HF model; on TL 2.x a
    ``HookedTransformer`` with the same architecture and the converted weights (unprocessed:
    no weight folding, so activations equal the HF model's). Either way the hook names of
    ``blocks.{l}.mlp.hook_pre`` / ``hook_pre_linear`` / ``hook_post`` are the same.

    Args:
        device: Where to put the model.
        path: An organism folder (default: the shipped one).

    Returns:
        A TransformerLens model with the organism's tokenizer attached.

    Examples:
        >>> model = load()
        >>> model.to_tokens("Bonjour")[0, 0].item() == model.tokenizer.bos_token_id
        True

    """
    hf_model, tokenizer = load_hf(device=device, path=path)
    return boot(hf_model, tokenizer, name=NAME, device=device)
