"""Statistics of the offline real models, collected once and shipped with the package.

A collection over a real corpus takes minutes on a CPU, so it is done once, by
``scripts/collect_real_stats.py``, and the result is shipped in ``lensneurons/data/real/<model>/``.
Tests, notebooks and benchmarks reuse that one file; everything downstream of it (LAPE, the
perplexity matrix, the lens) is computed live.

The corpus is the machine's gettext catalogs (:mod:`lensneurons.corpora.gettext`; the catalogs
listed in ``data/real/gettext_domains.txt``, so packages installed later change nothing) in
:data:`LANGUAGES` (Latin, Cyrillic, Greek, Han, Kana and Hangul scripts), each language's lines
shuffled with a fixed seed and split into :data:`N_HELDOUT` held-out lines and training lines.
Training lines are packed into windows of :data:`WINDOW` tokens and counted up to
:data:`TOKENS_PER_GROUP` tokens per language. The statistics record a digest of the training
lines, so :func:`heldout` can tell when this machine's catalogs differ from those the statistics
were collected on (then the held-out lines might have been seen in training).

Examples:
    >>> from lensneurons.subjects import real_stats
    >>> real_stats.LANGUAGES[:3]
    ('en', 'de', 'fr')
    >>> stats = real_stats.load("gemma-3-270m")  # doctest: +SKIP
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from lensneurons.corpora.corpus import Corpus
from lensneurons.corpora.gettext import load_gettext, split_heldout, texts_digest
from lensneurons.errors import (
    ModelMismatchError,
    ParameterError,
    ResultNotFoundError,
    UnknownGroupError,
)
from lensneurons.stats import ActivationStats, collect

LANGUAGES = ("en", "de", "fr", "es", "pt", "it", "ru", "uk", "el", "tr", "vi", "ja", "ko", "zh")
N_HELDOUT = 200
SEED = 0
WINDOW = 128
TOKENS_PER_GROUP = 10_000
#: Training lines tokenized per language: enough for TOKENS_PER_GROUP in every script.
MAX_TRAIN_LINES = 4_000


def _real_root() -> Path:
    return Path(str(resources.files("lensneurons"))) / "data" / "real"


def shipped() -> list[str]:
    """Short names with shipped statistics, e.g. ``["gemma-3-270m", "smollm2-135m"]``.

    Examples:
        >>> "gemma-3-270m" in shipped()
        True
    """
    root = _real_root()
    return sorted(p.name for p in root.iterdir() if (p / "stats").is_dir()) if root.is_dir() else []


def data_dir(short_name: str) -> Path:
    """The shipped data of ``short_name`` (``"gemma-3-270m"``): ``stats/``, ``tuned_lens/``."""
    return _real_root() / short_name


def _short_name(name: str) -> str:
    """``name`` as a shipped short name, case-insensitively; else a typed error listing them.

    Raises:
        ResultNotFoundError: no statistics are shipped under that name.
    """
    names = shipped()
    if not isinstance(name, str):
        raise ParameterError(f"Give a model's short name as a string, one of {names}.")
    if name in names:
        return name
    folded = [n for n in names if n.casefold() == name.strip().casefold()]
    if len(folded) == 1:
        return folded[0]
    raise ResultNotFoundError(
        f"No statistics are shipped for {name!r}; shipped: {', '.join(names)}. Pass one of "
        "these short names, or load statistics you saved with ln.ActivationStats.load(folder)."
    )


def domains() -> list[str]:
    """The gettext catalogs (file stems) the shipped statistics were collected on.

    Only these are read, so a package installed later (a browser brings its own catalogs) does
    not change the corpus; a catalog missing here only removes lines, which :func:`heldout`
    notices through the digest.

    Examples:
        >>> "glib20" in domains()
        True
    """
    lines = (_real_root() / "gettext_domains.txt").read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line and not line.startswith("#")]


def texts() -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """``(train, heldout)`` lines per language of :data:`LANGUAGES` from the gettext catalogs."""
    return split_heldout(load_gettext(LANGUAGES, domains=domains()), n_heldout=N_HELDOUT,
                         seed=SEED)


def train_corpus(train: dict[str, list[str]]) -> Corpus:
    """The first :data:`MAX_TRAIN_LINES` training lines in :data:`WINDOW`-token windows."""
    return Corpus.from_texts({g: lines[:MAX_TRAIN_LINES] for g, lines in train.items()},
                             pack=True, window=WINDOW)


def heldout(stats: ActivationStats, languages: list[str] | None = None,
            n_lines: int | None = None) -> Corpus:
    """Held-out lines (one per sequence) of the languages the shipped ``stats`` were made on.

    Args:
        stats: statistics from :func:`load` (or :func:`collect_and_save`).
        languages: a subset of their groups (default: all).
        n_lines: the first ``n_lines`` held-out lines per language (default: all).

    Raises:
        ParameterError: ``stats`` were not collected on this module's corpus (other statistics
            have no held-out lines here).
        UnknownGroupError: a language the statistics do not hold.
        ModelMismatchError: this machine's catalogs differ from the ones the statistics were
            collected on.
    """
    if not isinstance(stats, ActivationStats) or "train_digest" not in stats.meta:
        kind = type(stats).__name__ if not isinstance(stats, ActivationStats) else (
            f"statistics of groups {stats.groups} that record no train_digest")
        raise ParameterError(
            f"heldout() gives the held-out lines of the shipped corpus (gettext catalogs, "
            f"{N_HELDOUT} lines per language), but it was given {kind}: they were not collected "
            "on that corpus, so it has no held-out lines for them. Pass "
            f"real_stats.load(name) with name in {shipped()} (or statistics made by "
            "real_stats.collect_and_save); for your own statistics, keep your own held-out "
            "texts and build ln.Corpus.from_texts(...) from them."
        )
    chosen = list(languages) if languages else list(stats.groups)
    unknown = [g for g in chosen if g not in stats.groups or g not in LANGUAGES]
    if unknown:
        raise UnknownGroupError(
            f"No held-out lines for {unknown}: the statistics hold {stats.groups}. Pass "
            "languages= among those."
        )
    train, held = texts()
    expected = stats.meta.get("train_digest")
    if expected != texts_digest(train):
        raise ModelMismatchError(
            f"This machine's gettext catalogs give other training lines (digest "
            f"{texts_digest(train)}) than the shipped statistics were collected on ({expected}); "
            "held-out lines could overlap. Re-collect with scripts/collect_real_stats.py.")
    return Corpus.from_texts({g: held[g][:n_lines] for g in chosen})


def load(short_name: str, model: Any = None) -> ActivationStats:
    """The shipped statistics of ``short_name``; with ``model``, checked against it.

    The name is matched case-insensitively (``"Gemma-3-270M"`` loads ``"gemma-3-270m"``).

    Raises:
        ResultNotFoundError: no statistics are shipped under that name (the message lists the
            shipped ones).
        ModelMismatchError: ``model`` is not the model they were collected with.
    """
    return ActivationStats.load(data_dir(_short_name(short_name)) / "stats", model=model)


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
