"""Statistics of the offline real models, collected once and shipped with the package.

A collection over a real corpus takes minutes on a CPU, so it is done once, by
``scripts/collect_real_stats.py``, and the result is shipped in ``lensneurons/data/real/<model>/``.
Tests, notebooks and benchmarks reuse that one file; everything downstream of it (LAPE, the
perplexity matrix, the lens) is computed live.

The corpus is the machine's gettext catalogs (:mod:`lensneurons.corpora.gettext`) in
:data:`LANGUAGES` (Latin, Cyrillic, Greek, Han, Kana and Hangul scripts), each language's lines
shuffled with a fixed seed and split into :data:`N_HELDOUT` held-out lines and training lines.
Training lines are packed into windows of :data:`WINDOW` tokens and counted up to
:data:`TOKENS_PER_GROUP` tokens per language. The statistics record a digest of the training
lines, so :func:`heldout` can tell when this machine's catalogs differ from those the statistics
were collected on (then the held-out lines might have been seen in training).

Examples:
    >>> from lensneurons import real_stats
    >>> real_stats.LANGUAGES[:3]
    ('en', 'de', 'fr')
    >>> stats = real_stats.load("gemma-3-270m")  # doctest: +SKIP
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from lensneurons.corpora.gettext import load_gettext, split_heldout, texts_digest
from lensneurons.corpus import Corpus
from lensneurons.errors import ModelMismatchError
from lensneurons.stats import ActivationStats, collect

LANGUAGES = ("en", "de", "fr", "es", "pt", "it", "ru", "uk", "el", "tr", "vi", "ja", "ko", "zh")
N_HELDOUT = 200
SEED = 0
WINDOW = 128
TOKENS_PER_GROUP = 10_000
#: Training lines tokenized per language: enough for TOKENS_PER_GROUP in every script.
MAX_TRAIN_LINES = 4_000


def data_dir(short_name: str) -> Path:
    """The shipped data of ``short_name`` (``"gemma-3-270m"``): ``stats/``, ``tuned_lens/``."""
    return Path(str(resources.files("lensneurons"))) / "data" / "real" / short_name


def texts() -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """``(train, heldout)`` lines per language of :data:`LANGUAGES` from the gettext catalogs."""
    return split_heldout(load_gettext(LANGUAGES), n_heldout=N_HELDOUT, seed=SEED)


def train_corpus(train: dict[str, list[str]]) -> Corpus:
    """The first :data:`MAX_TRAIN_LINES` training lines in :data:`WINDOW`-token windows."""
    return Corpus.from_texts({g: lines[:MAX_TRAIN_LINES] for g, lines in train.items()},
                             pack=True, window=WINDOW)


def heldout(stats: ActivationStats, languages: list[str] | None = None,
            n_lines: int | None = None) -> Corpus:
    """Held-out lines (one per sequence) of the languages the shipped ``stats`` were made on.

    Args:
        stats: statistics from :func:`load`.
        languages: a subset of their groups (default: all).
        n_lines: the first ``n_lines`` held-out lines per language (default: all).

    Raises:
        ModelMismatchError: this machine's catalogs differ from the ones the statistics were
            collected on.
    """
    train, held = texts()
    expected = stats.meta.get("train_digest")
    if expected != texts_digest(train):
        raise ModelMismatchError(
            f"This machine's gettext catalogs give other training lines (digest "
            f"{texts_digest(train)}) than the shipped statistics were collected on ({expected}); "
            "held-out lines could overlap. Re-collect with scripts/collect_real_stats.py.")
    languages = languages or list(stats.groups)
    return Corpus.from_texts({g: held[g][:n_lines] for g in languages})


def load(short_name: str, model: Any = None) -> ActivationStats:
    """The shipped statistics of ``short_name``; with ``model``, checked against it."""
    return ActivationStats.load(data_dir(short_name) / "stats", model=model)


def collect_and_save(model: Any, short_name: str, *,
                     tokens_per_group: int = TOKENS_PER_GROUP,
                     keep: tuple[str, ...] = ("sum", "sum_sq", "max"),
                     out: Path | None = None) -> ActivationStats:
    """Collect the statistics of ``model`` on the training lines and save them.

    Args:
        model: the TransformerLens model.
        short_name: its short name; the folder is ``data_dir(short_name) / "stats"`` unless
            ``out`` is given (an existing result there is replaced).
        tokens_per_group: counted tokens per language.
        keep: optional statistics to keep besides the counts (fewer make a smaller file).
        out: another folder to save in.
    """
    train, _ = texts()
    stats = collect(model, train_corpus(train), max_tokens_per_group=tokens_per_group)
    for name in ("sum", "sum_sq", "max"):
        if name not in keep:
            setattr(stats, name, None)
    stats.meta.update({"train_digest": texts_digest(train), "languages": list(LANGUAGES),
                       "n_heldout": N_HELDOUT, "seed": SEED, "window": WINDOW,
                       "source": "gettext catalogs"})
    stats.save(out or data_dir(short_name) / "stats", overwrite=True)
    return stats
