"""The built-in written sample: parallel everyday sentences in several languages.

The package ships ``lensneurons/data/sample_texts.json``: 160 sentences about everyday life
(weather, family, food, travel, work, health…), written for this project and translated into
English, German, French, Spanish, Portuguese (European), Russian and Greek. Row ``i`` of every
language is the same sentence, so the sample is a small parallel corpus.

A deterministic split holds out every fifth sentence (indices 4, 9, 14, …): the ``"heldout"``
split (32 sentences per language) is never used to train the model organism and serves as its
evaluation text; ``"train"`` is the other 128.

Example:
    >>> from lensneurons.corpora.sample import load_sample
    >>> heldout = load_sample(["en", "fr"], split="heldout")
    >>> len(heldout["fr"])
    32

"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import lru_cache
from importlib import resources
from typing import Literal

from lensneurons.errors import ParameterError, UnknownGroupError

__all__ = ["HELDOUT_EVERY", "SAMPLE_LANGUAGES", "Split", "load_sample"]

Split = Literal["train", "heldout", "all"]

HELDOUT_EVERY = 5
"""Every ``HELDOUT_EVERY``-th sentence (the last of each group of five) is held out."""

SAMPLE_LANGUAGES = ("en", "de", "fr", "es", "pt", "ru", "el")
"""Languages of the written sample, in file order."""


@lru_cache(maxsize=1)
def _read() -> dict[str, tuple[str, ...]]:
    """Read the shipped JSON file once."""
    path = resources.files("lensneurons") / "data" / "sample_texts.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    return {lang: tuple(sentences) for lang, sentences in data.items()}


def load_sample(
    languages: Iterable[str] | None = None, split: Split = "all"
) -> dict[str, list[str]]:
    """Load the written parallel sample.

    Args:
        languages: Language codes to return (default: all of :data:`SAMPLE_LANGUAGES`).
        split: ``"train"`` (4 of every 5 sentences), ``"heldout"`` (every 5th) or ``"all"``.

    Returns:
        ``{language: [sentence, ...]}``, parallel across languages.

    Raises:
        UnknownGroupError: a language is not in the sample.
        ParameterError: ``split`` is unknown.

    Examples:
        >>> load_sample(["de"], split="train")["de"][0]
        'Das Wetter ist heute schön, also gehen wir in den Park.'

    """
    if split not in ("train", "heldout", "all"):
        raise ParameterError(f"split must be 'train', 'heldout' or 'all', not {split!r}.")
    data = _read()
    wanted = list(languages) if languages is not None else list(data)
    missing = [lang for lang in wanted if lang not in data]
    if missing:
        raise UnknownGroupError(
            f"Languages not in the written sample: {missing}; it has {list(data)}."
        )

    def keep(i: int) -> bool:
        heldout = i % HELDOUT_EVERY == HELDOUT_EVERY - 1
        return split == "all" or heldout == (split == "heldout")

    return {lang: [s for i, s in enumerate(data[lang]) if keep(i)] for lang in wanted}
