"""Word-level code-mixing of texts with a :class:`~lensneurons.corpora.lexicon.Lexicon`.

**Rate.** ``rate`` is the share of *all* words of a text to replace, not of the words the lexicon
covers. A text of ``n`` words (:data:`~lensneurons.corpora.lexicon.WORD`) of which ``c`` have an
entry gets ``k = min(floor(rate * n + v), c)`` replacements, with ``v`` uniform in ``[0, 1)``
(rounding at random, so that ``k`` is ``rate * n`` on average instead of being rounded the same way
in every short text). The positions are the first ``k`` of a random order of the covered words.
Both draws come from a generator seeded by ``(seed, index of the text)``, so

- a result depends only on the text, the lexicon, the rate and the seed;
- for one seed, the words replaced at a lower rate are also replaced at every higher rate;
- ``rate=0`` returns the texts unchanged and ``rate=1`` replaces every covered word.

The achieved rate ``k / n`` falls short of the request wherever the text's coverage ``c / n`` is
below it; :func:`coverage` measures that ceiling and :class:`MixResult` reports what was reached.

**Form.** Only the letters of a word change: punctuation, digits and spacing stay. A replacement
keeps the lexicon's written form (``Haus``), except that it is capitalised where the replaced word
starts a sentence with a capital, and written in capitals where the replaced word is (``EAU``).

Examples:
    >>> from lensneurons.corpora import Lexicon, code_mix
    >>> lex = Lexicon("fr", "en", {"chat": "cat", "dort": "sleeps"})
    >>> mixed = code_mix(["Le chat dort."], lex, 1.0)
    >>> mixed.texts, mixed.rates
    (['Le cat sleeps.'], [0.6666666666666666])
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from lensneurons.core import checks as _checks
from lensneurons.core.figures import axes
from lensneurons.core.result import Result
from lensneurons.corpora.lexicon import WORD, Lexicon, is_sentence_start
from lensneurons.errors import EmptyGroupError, InvalidTextError, ParameterError

__all__ = ["Coverage", "MixResult", "code_mix", "coverage", "mixed_group"]


@dataclass(frozen=True)
class MixResult(Result):
    """Mixed texts and how much of each was replaced.

    Attributes:
        texts: the mixed texts, in input order.
        rates: achieved rate per text, ``n_mixed / n_words`` (0 for a text without words).
        n_words: words per text.
        n_mixed: words replaced per text.
        requested: the rate asked for.
    """

    texts: list[str]
    rates: list[float]
    n_words: list[int]
    n_mixed: list[int]
    requested: float

    @property
    def rate(self) -> float:
        """Achieved rate over all texts: words replaced / words (0 when there are none)."""
        total = sum(self.n_words)
        return sum(self.n_mixed) / total if total else 0.0

    def table(self) -> pd.DataFrame:
        """One row per text: the mixed text, its words, the words replaced, the rate reached."""
        return pd.DataFrame({"text": self.texts, "n_words": self.n_words,
                             "n_mixed": self.n_mixed, "rate": self.rates})

    def plot(self, ax: Any = None) -> Any:
        """The rate each text reached, against the rate asked for."""
        fig, ax = axes(ax, (5.0, 3.2))
        ax.hist(self.rates, bins=20, range=(0, 1), color="tab:blue")
        ax.axvline(self.requested, color="black", linestyle="--", label="requested")
        ax.axvline(self.rate, color="tab:red", label="achieved (all words)")
        ax.set_xlabel("share of words replaced")
        ax.set_ylabel("texts")
        ax.legend(fontsize="small")
        fig.tight_layout()
        return fig


@dataclass(frozen=True)
class Coverage(Result):
    """How much of some texts a lexicon covers: the most a mixing rate can reach.

    Attributes:
        tokens: share of word tokens that have an entry.
        types: share of distinct (lowercased) words that have an entry.
        n_tokens: word tokens in the texts.
        n_types: distinct words in the texts.
    """

    tokens: float
    types: float
    n_tokens: int
    n_types: int

    def table(self) -> pd.DataFrame:
        """Shares covered, of word tokens and of distinct words, with their counts."""
        return pd.DataFrame({"covered": [self.tokens, self.types],
                             "count": [self.n_tokens, self.n_types]},
                            index=pd.Index(["tokens", "types"], name="words"))

    def plot(self, ax: Any = None) -> Any:
        """The two shares covered, as bars."""
        fig, ax = axes(ax, (3.5, 3.0))
        ax.bar(["tokens", "types"], [self.tokens, self.types], color="tab:blue")
        ax.set_ylim(0, 1)
        ax.set_ylabel("share covered by the lexicon")
        fig.tight_layout()
        return fig


def _texts(texts: object) -> list[str]:
    """``texts`` as a list of strings.

    Raises:
        InvalidTextError: one string, not a list, or an item that is not a string.
        EmptyGroupError: no text.
    """
    if isinstance(texts, (str, bytes)) or not isinstance(texts, Sequence):
        raise InvalidTextError(
            f"texts must be a list of strings, got {type(texts).__name__}; wrap one text in a "
            "list: [text]."
        )
    if not texts:
        raise EmptyGroupError("texts is empty; pass at least one text.")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidTextError(
                f"Text {i} is {type(text).__name__} {text!r}, not a string. Remove it or "
                "convert it to text."
            )
    return list(texts)


def _lexicon(lexicon: object) -> Lexicon:
    if not isinstance(lexicon, Lexicon):
        raise ParameterError(
            f"lexicon must be a Lexicon, got {type(lexicon).__name__}; build one with "
            "build_lexicon(base, mixed) or Lexicon(base, mixed, {word: replacement})."
        )
    return lexicon


def _replacement(text: str, start: int, word: str, replacement: str) -> str:
    """``replacement`` in the case the replaced ``word`` had at ``start`` of ``text``."""
    if len(word) > 1 and word.isupper():
        return replacement.upper()
    if word[0].isupper() and is_sentence_start(text, start):
        return replacement[0].upper() + replacement[1:]
    return replacement


def code_mix(
    texts: Sequence[str], lexicon: Lexicon, rate: float, *, seed: int = 0,
) -> MixResult:
    """Replace a ``rate`` share of the words of each text by their lexicon entries.

    The rule, the rounding and the seeding are in the module docstring.

    Args:
        texts: texts in the lexicon's base language.
        lexicon: the words to mix in (:func:`~lensneurons.corpora.build_lexicon`).
        rate: share of all words to replace, in ``[0, 1]``.
        seed: seeds the random choice (an integer >= 0).

    Returns:
        The mixed texts with their achieved rates.

    Raises:
        InvalidTextError: ``texts`` is one string or holds a non-string.
        EmptyGroupError: ``texts`` is empty.
        ParameterError: ``rate`` outside ``[0, 1]``, a bad ``seed``, or no :class:`Lexicon`.

    Examples:
        >>> from lensneurons.corpora import Lexicon
        >>> lex = Lexicon("de", "en", {"hund": "dog", "katze": "cat"})
        >>> result = code_mix(["Der Hund und die Katze.", "Katze!"], lex, 1.0)
        >>> result.texts, result.rates
        (['Der dog und die cat.', 'Cat!'], [0.4, 1.0])
    """
    texts = _texts(texts)
    lexicon = _lexicon(lexicon)
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0 <= rate <= 1:
        raise ParameterError(
            f"rate must be a number in [0, 1] (the share of all words to replace), got {rate!r}."
        )
    seed = _checks.positive_int(seed, "seed", minimum=0)
    out, rates, n_words, n_mixed = [], [], [], []
    for i, text in enumerate(texts):
        matches = list(WORD.finditer(text))
        covered = [m for m in matches if m.group().lower() in lexicon]
        rng = np.random.default_rng([seed, i])
        nudge = rng.random()
        order = rng.permutation(len(covered))
        k = min(math.floor(float(rate) * len(matches) + nudge), len(covered))
        chosen = sorted((covered[j] for j in order[:k]), key=lambda m: m.start())
        pieces, end = [], 0
        for m in chosen:
            word = m.group()
            pieces += [text[end:m.start()],
                       _replacement(text, m.start(), word, lexicon[word.lower()])]
            end = m.end()
        out.append("".join(pieces) + text[end:])
        n_words.append(len(matches))
        n_mixed.append(k)
        rates.append(k / len(matches) if matches else 0.0)
    return MixResult(out, rates, n_words, n_mixed, float(rate))


def coverage(texts: Sequence[str], lexicon: Lexicon) -> Coverage:
    """Share of the word tokens and word types of ``texts`` that ``lexicon`` covers.

    No mixing rate can replace more than the token share.

    Raises:
        InvalidTextError: ``texts`` is one string, holds a non-string, or holds no word.
        EmptyGroupError: ``texts`` is empty.
        ParameterError: ``lexicon`` is not a :class:`Lexicon`.

    Examples:
        >>> from lensneurons.corpora import Lexicon
        >>> cov = coverage(["Le chat, le chien."], Lexicon("fr", "en", {"chat": "cat"}))
        >>> cov.tokens, cov.types
        (0.25, 0.3333333333333333)
    """
    texts = _texts(texts)
    lexicon = _lexicon(lexicon)
    tokens = [m.group().lower() for text in texts for m in WORD.finditer(text)]
    if not tokens:
        raise InvalidTextError("The texts hold no word (letters) to cover.")
    types = set(tokens)
    return Coverage(
        tokens=sum(w in lexicon for w in tokens) / len(tokens),
        types=sum(w in lexicon for w in types) / len(types),
        n_tokens=len(tokens), n_types=len(types),
    )


def mixed_group(base: str, mixed: str, rate: float) -> str:
    """The group name of ``base`` texts mixed with ``mixed`` at ``rate``: ``"fr+en@0.25"``.

    :func:`~lensneurons.detect.plot_specialisation` reads the languages and the rate back
    from names of this form.

    Examples:
        >>> mixed_group("fr", "en", 0.25)
        'fr+en@0.25'
    """
    return f"{base}+{mixed}@{float(rate):g}"
