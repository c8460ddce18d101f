"""The organism's recipe: its languages, architecture, training data mix and training loop.

:func:`train` rebuilds the shipped organism from scratch (``lensneurons organism train``);
:mod:`lensneurons.subjects.organism` re-exports everything public here and loads the shipped
weights.

Examples:
    >>> from lensneurons.subjects import organism
    >>> organism.TrainConfig().n_layers, organism.LANGUAGES[0]
    (4, 'en')

"""


from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from lensneurons.core.checks import integer, positive_int, real
from lensneurons.corpora.sample import load_sample
from lensneurons.errors import ParameterError
from lensneurons.subjects._organism_data import (
    BOS,
    EOS,
    PAD,
    mixed_batch,
    token_stream,
    train_tokenizer,
    training_text,
)

LANGUAGES: tuple[str, ...] = ("en", "de", "fr", "es", "pt", "ru", "el")
"""Languages of the organism: three scripts (Latin, Cyrillic, Greek), one close pair (es–pt)."""

SAMPLE_SHARE = 0.1
"""Probability that a training window of a language comes from the written sample."""

DEFAULT_STEPS = 2000
"""Optimisation steps of the recipe (the shipped run: 14 minutes in all on one busy CPU core)."""

NAME = "lensneurons-organism"


@dataclass(frozen=True)
class TrainConfig:
    """Architecture and optimisation settings of :func:`train` (defaults: the shipped organism).

    Attributes:
        vocab_size: BPE vocabulary size, special tokens included.
        d_model: Residual stream width.
        n_layers: Transformer blocks.
        n_heads: Attention heads (no grouped-query attention).
        d_mlp: Gated-MLP width (neurons per layer).
        n_ctx: Maximum context (rotary positions).
        seq_len: Tokens per training window.
        windows_per_language: Windows of every language in each batch.
        lr: Peak AdamW learning rate.
        min_lr_ratio: Final learning rate as a fraction of the peak (cosine decay).
        warmup_steps: Linear warm-up steps.
        weight_decay: AdamW weight decay of the matrices (not of norms).
        grad_clip: Gradient-norm clip.
        sample_share: Probability that a window comes from the written sample.
        gettext_chars_per_language: Characters of each language's random catalog subset.
        tokenizer_chars_per_language: Characters per language the tokenizer is trained on.

    Examples:
        >>> TrainConfig(d_model=96, n_layers=2).d_mlp
        2048

    """

    vocab_size: int = 4096
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    d_mlp: int = 2048
    n_ctx: int = 256
    seq_len: int = 64
    windows_per_language: int = 2
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 30
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    sample_share: float = SAMPLE_SHARE
    gettext_chars_per_language: int = 600_000
    tokenizer_chars_per_language: int = 300_000


def _llama(config: TrainConfig, tokenizer: Any) -> Any:
    """Build a freshly initialised ``LlamaForCausalLM`` of the organism's architecture."""
    from transformers import LlamaConfig, LlamaForCausalLM

    hf_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.d_model,
        intermediate_size=config.d_mlp,
        num_hidden_layers=config.n_layers,
        num_attention_heads=config.n_heads,
        num_key_value_heads=config.n_heads,
        max_position_embeddings=config.n_ctx,
        hidden_act="silu",
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(hf_config)


def _token_nll(model: Any, tokens: torch.Tensor) -> torch.Tensor:
    """Per-token next-token NLL, shape ``(batch, seq - 1)``."""
    logits = model(input_ids=tokens[:, :-1]).logits
    return torch.nn.functional.cross_entropy(
        logits.transpose(1, 2).float(), tokens[:, 1:], reduction="none"
    )


@torch.no_grad()
def _mean_nll(model: Any, tokenizer: Any, sentences: Mapping[str, list[str]]) -> dict[str, float]:
    """Mean NLL per token (nats) of each language's sentences, each encoded as ``<s> text``."""
    model.eval()
    result = {}
    for lang, lines in sentences.items():
        enc = tokenizer(lines, padding=True, return_tensors="pt")
        ids, mask = enc["input_ids"], enc["attention_mask"]
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
        nll = torch.nn.functional.cross_entropy(
            logits.transpose(1, 2).float(), ids[:, 1:], reduction="none"
        )
        weights = mask[:, 1:].float()
        result[lang] = round(float((nll * weights).sum() / weights.sum()), 4)
    model.train()
    return result


def _schedule(config: TrainConfig, steps: int) -> Any:
    """Linear warm-up, then cosine decay to ``min_lr_ratio`` of the peak."""

    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress = (step - config.warmup_steps) / max(1, steps - config.warmup_steps)
        cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return config.min_lr_ratio + (1 - config.min_lr_ratio) * cosine

    return factor


def _calibrate_steps(model: Any, batch: torch.Tensor, seconds: float) -> int:
    """How many optimisation steps fit in ``seconds`` (timed forward+backward passes)."""
    for i in range(3):
        if i == 1:
            begin = time.monotonic()
        _token_nll(model, batch).mean().backward()
    model.zero_grad(set_to_none=True)
    per_step = (time.monotonic() - begin) / 2 * 1.05  # + optimiser step and sampling
    return max(1, int(seconds / per_step))


def train(
    out_dir: str | Path,
    *,
    steps: int = DEFAULT_STEPS,
    minutes: float | None = 14.0,
    seed: int = 0,
    config: TrainConfig | None = None,
    languages: Sequence[str] = LANGUAGES,
    locale_dir: str | Path | None = None,
    threads: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Train the organism from scratch and save it (model, tokenizer, ``training.json``).

    Reads the training text (written sample ``"train"`` split + installed gettext catalogs),
    trains a byte-level BPE tokenizer, then a ``LlamaForCausalLM`` with AdamW and a cosine
    schedule on batches holding ``windows_per_language`` windows of every language.

    The run is deterministic given ``seed``, ``steps``, the catalogs and the torch build. On a
    machine too slow for ``steps`` within ``minutes`` (timed on the first passes), the schedule
    is shortened to the steps that fit; the record says how many were run. Pass
    ``minutes=None`` to always run all ``steps``.

    Args:
        out_dir: Folder to write (created if missing; files in it are overwritten).
        steps: Optimisation steps (each ``windows_per_language * len(languages)`` windows of
            ``seq_len`` tokens).
        minutes: Time budget of the whole run (tokenizer and data included), or None.
        seed: Seeds the data subsets, the model initialisation and the batches.
        config: Architecture and optimisation settings (default: the shipped organism's).
        languages: Language codes (must be in the written sample).
        locale_dir: Where the gettext catalogs are (default: found automatically; none found
            means training on the written sample alone).
        threads: torch CPU threads during the run (restored afterwards). One thread makes
            runs repeatable across machines and, on a busy machine, is several times faster
            than two threads competing for cores.
        progress: Show a tqdm progress bar.

    Returns:
        The training record also written to ``out_dir/training.json``: data sizes per language,
        steps, tokens seen, final training loss per language and held-out NLL per language.

    Raises:
        ParameterError: ``steps`` or ``threads`` is not an integer >= 1, ``minutes`` is not a
            number > 0 (or None), or ``seed`` is not an integer; checked before any work.

    Example:
        >>> record = train("/tmp/organism", steps=50, minutes=None)  # doctest: +SKIP
        >>> sorted(record["heldout_nll"])  # doctest: +SKIP
        ['de', 'el', 'en', 'es', 'fr', 'pt', 'ru']
    """
    steps = positive_int(steps, "steps")
    if minutes is not None and real(minutes, "minutes") <= 0:
        raise ParameterError(f"minutes must be > 0 (a time budget) or None, got {minutes!r}.")
    seed, threads = integer(seed, "seed"), positive_int(threads, "threads")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _train(
            Path(out_dir),
            steps=steps,
            minutes=minutes,
            seed=seed,
            config=config or TrainConfig(),
            languages=languages,
            locale_dir=locale_dir,
            progress=progress,
        )
    finally:
        torch.set_num_threads(previous)


def _train(
    out: Path,
    *,
    steps: int,
    minutes: float | None,
    seed: int,
    config: TrainConfig,
    languages: Sequence[str],
    locale_dir: str | Path | None,
    progress: bool,
) -> dict[str, Any]:
    """Run :func:`train` with torch's thread count already set."""
    begin = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)

    text = training_text(languages, locale_dir, config.gettext_chars_per_language, seed)
    tokenizer = train_tokenizer(text, config)
    window = config.seq_len + 1
    streams = [
        {
            source: token_stream(tokenizer, lines, window, gen)
            for source, lines in sources.items()
            if lines
        }
        for sources in text.values()
    ]
    model = _llama(config, tokenizer)
    model.train()
    requested = steps
    if minutes is not None:
        probe = mixed_batch(streams, config, torch.Generator().manual_seed(seed + 1))
        remaining = minutes * 60 - (time.monotonic() - begin) - 30  # evaluation and saving
        steps = min(steps, _calibrate_steps(model, probe, remaining))

    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    groups: list[dict[str, Any]] = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay},
    ]
    optimizer = torch.optim.AdamW(
        groups,
        lr=config.lr,
        betas=(0.9, 0.95),
        weight_decay=0.0,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(config, steps))
    languages = list(text)
    per_language = torch.zeros(len(languages))
    tail = max(1, min(100, steps // 5))
    bar = tqdm(range(steps), desc="organism", disable=not progress)
    for step in bar:
        batch = mixed_batch(streams, config, gen)
        row_loss = _token_nll(model, batch).mean(dim=1)
        row_loss.mean().backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if step >= steps - tail:
            per_language += row_loss.detach().view(len(languages), -1).mean(dim=1) / tail
        bar.set_postfix(loss=f"{row_loss.mean().item():.3f}")

    model.eval()
    record = {
        "name": NAME,
        "seed": seed,
        "threads": torch.get_num_threads(),
        "steps": steps,
        "steps_requested": requested,
        "tokens_seen": steps * config.windows_per_language * len(languages) * config.seq_len,
        "minutes": round((time.monotonic() - begin) / 60, 2),
        "config": asdict(config),
        "languages": languages,
        "data": {
            lang: {
                source: {
                    "lines": len(text[lang][source]),
                    "chars": sum(map(len, text[lang][source])),
                    "tokens": stream.n_tokens,
                }
                for source, stream in sources.items()
            }
            for lang, sources in zip(languages, streams, strict=True)
        },
        "final_train_loss": {
            lang: round(float(loss), 4) for lang, loss in zip(languages, per_language, strict=True)
        },
        "heldout_nll": _mean_nll(model, tokenizer, load_sample(languages, split="heldout")),
        "versions": {pkg: metadata.version(pkg) for pkg in ("torch", "transformers", "tokenizers")},
    }
    _save(model, tokenizer, record, out)
    return record


def _save(model: Any, tokenizer: Any, record: Mapping[str, Any], out: Path) -> None:
    """Write weights (fp32 if they fit in 20 MB, else fp16), tokenizer, config and record."""
    n_bytes = sum(p.numel() for p in model.parameters()) * 4
    if n_bytes > 20 * 2**20:
        model = model.half()
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    # Readable by transformers 4.x too (5.x writes its own backend class and no special map).
    tokenizer_config = json.loads((out / "tokenizer_config.json").read_text())
    tokenizer_config["tokenizer_class"] = "PreTrainedTokenizerFast"
    special = {"bos_token": BOS, "eos_token": EOS, "pad_token": PAD}
    for name, content in (
        ("tokenizer_config.json", tokenizer_config | special),
        ("special_tokens_map.json", special),
    ):
        (out / name).write_text(json.dumps(content, indent=2) + "\n")
    (out / "training.json").write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
