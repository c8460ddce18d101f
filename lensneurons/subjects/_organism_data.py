"""The organism's training data: text per language and source, tokenizer, token streams, batches.

Private to :mod:`lensneurons.subjects._organism_recipe`, which trains on what this module prepares.
"""


from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from lensneurons.corpora.gettext import load_gettext
from lensneurons.corpora.sample import load_sample

if TYPE_CHECKING:
    from lensneurons.subjects._organism_recipe import TrainConfig

BOS, EOS, PAD = "<s>", "</s>", "<pad>"

# --------------------------------------------------------------------------------------------
# Training recipe
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenStream:
    """One language's token stream from one source, with the sentence starts usable as windows."""

    tokens: torch.Tensor  # (n,) int64: <s> ids </s> <s> ids </s> ...
    starts: torch.Tensor  # positions of <s> that have a full window after them
    n_tokens: int  # tokens of one pass over the text (before repetition)


def training_text(
    languages: Sequence[str], locale_dir: str | Path | None, chars: int, seed: int
) -> dict[str, dict[str, list[str]]]:
    """``{language: {"sample": [...], "gettext": [...]}}``; no catalogs -> sample only.

    Of each language's catalog lines, a seeded random subset of about ``chars`` characters is
    kept (more than a training run reads), so every language gets a pool of similar size.
    """
    sample = load_sample(languages, split="train")
    try:
        catalogs = load_gettext(languages, locale_dir)
    except FileNotFoundError:
        catalogs = {lang: [] for lang in languages}
    rng = random.Random(seed)
    text = {}
    for lang in languages:
        pool = list(catalogs[lang])
        rng.shuffle(pool)
        kept, total = [], 0
        for line in pool:
            if total >= chars:
                break
            kept.append(line)
            total += len(line)
        text[lang] = {"sample": sample[lang], "gettext": kept}
    return text


def train_tokenizer(text: Mapping[str, Mapping[str, list[str]]], config: TrainConfig) -> Any:
    """Train a byte-level BPE on an equal number of characters per language."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    lines: list[str] = []
    for sources in text.values():
        chosen, chars = list(sources["sample"]), sum(map(len, sources["sample"]))
        for line in sources["gettext"]:
            if chars >= config.tokenizer_chars_per_language:
                break
            chosen.append(line)
            chars += len(line)
        lines += chosen
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=config.vocab_size,
        special_tokens=[PAD, BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(lines, trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        model_max_length=config.n_ctx,
    )


def token_stream(
    tokenizer: Any, lines: list[str], window: int, gen: torch.Generator
) -> TokenStream:
    """Concatenate shuffled ``<s> text </s>`` sentences (repeated until >= 8 windows long)."""
    eos = tokenizer.eos_token_id
    encoded = [enc.ids + [eos] for enc in tokenizer.backend_tokenizer.encode_batch(lines)]
    pieces: list[int] = []
    while len(pieces) < 8 * window:
        order = torch.randperm(len(encoded), generator=gen).tolist()
        pieces.extend(token for i in order for token in encoded[i])
    tokens = torch.tensor(pieces, dtype=torch.long)
    starts = torch.nonzero(tokens[: len(tokens) - window] == tokenizer.bos_token_id).flatten()
    return TokenStream(tokens, starts, sum(map(len, encoded)))


def mixed_batch(
    streams: Sequence[Mapping[str, TokenStream]], config: TrainConfig, gen: torch.Generator
) -> torch.Tensor:
    """``windows_per_language`` windows of ``seq_len + 1`` tokens per language, in order."""
    rows = []
    for sources in streams:
        for _ in range(config.windows_per_language):
            use_sample = "gettext" not in sources or (
                torch.rand((), generator=gen).item() < config.sample_share
            )
            stream = sources["sample" if use_sample else "gettext"]
            start = int(stream.starts[torch.randint(len(stream.starts), (), generator=gen)])
            rows.append(stream.tokens[start : start + config.seq_len + 1])
    return torch.stack(rows)
