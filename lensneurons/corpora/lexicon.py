"""Bilingual word lexicons built offline, for word-level code-mixing.

A :class:`Lexicon` maps words of a *base* language to words of a *mixed-in* language. It is built
from two parallel sources available without network:

- ``"sample"``: the package's written sample, whose row ``i`` is the same sentence in every
  language (:func:`lensneurons.corpora.sample.load_sample`);
- ``"gettext"``: the machine's compiled gettext catalogs. A catalog entry pairs an English
  ``msgid`` with its translation; two non-English languages are paired through the ``msgid``
  they share within the same catalog. Only short entries are kept: 1 to 3 words on each side,
  the same number of words on both sides (user-interface labels such as ``"Open"`` or ``"New
  folder"``). The ISO name lists (``iso_*``) and untranslated entries are skipped.

Word alignment, for each source separately:

1. Texts are cut into words: runs of letters, with inner apostrophes kept (``don't``,
   ``aujourd'hui``); digits, punctuation and spaces are not words. Words are lowercased.
2. Association: the Dice coefficient ``2 c(x, y) / (c(x) + c(y))`` over aligned pairs, where
   ``c`` counts the pairs containing a word (or both words).
3. Competitive linking within each pair: candidate word pairs are taken in decreasing Dice order
   (ties by the words, alphabetically) and linked when neither word is linked yet in that pair
   and Dice is at least ``min_dice``. So each word links to at most one word per pair, while the
   whole lexicon may map several base words to one word (``le``, ``la`` -> ``the``).
4. An entry ``x -> y`` is kept when ``y`` is the word most often linked to ``x``, the link was
   made in at least ``min_links`` pairs, and in at least ``min_share`` of the pairs holding ``x``.
   Entries mapping a word to itself are dropped: they cannot mix anything.

The sources are merged in the order given (by default the sample first, since its everyday
sentences match the texts usually mixed; the catalogs fill the words it lacks). Each entry
records its source, ``"sample+gettext"`` when both agree.

The replacement is stored in its usual written form (``Haus``, not ``haus``): the most frequent
form of the word where it does not start a sentence, in the sample, else in the catalog strings of
four or more words; a word seen only at sentence starts stays lowercase.

Examples:
    >>> lex = build_lexicon("fr", "en", sources=("sample",))
    >>> lex["nous"], lex.source("nous")
    ('we', 'sample')
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from lensneurons.core import checks as _checks
from lensneurons.core.figures import axes
from lensneurons.core.result import Result
from lensneurons.corpora.gettext import ENGLISH, clean_string, find_locale_dir, read_catalog
from lensneurons.corpora.sample import SAMPLE_LANGUAGES, Split, load_sample
from lensneurons.errors import ParameterError, UnknownLanguageError

__all__ = ["SOURCES", "WORD", "Lexicon", "build_lexicon", "is_sentence_start", "words"]

SOURCES = ("sample", "gettext")
"""The offline parallel sources a lexicon can be built from."""

WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")
"""A word: a run of letters, inner apostrophes included (``don't``, ``aujourd'hui``)."""

_NAME_LISTS = "iso_"  # catalogs of country, region, language and currency names
_CODE = re.compile(r"[A-Za-z]{2,3}(?:_[A-Za-z]{2})?")
_SENTENCE_END = ".!?…"
_OPENERS = "\"'«»„“”‘’‚‹›([{¿¡-–— \t\n"

Pair = tuple[frozenset[str], frozenset[str]]


def words(text: str) -> list[str]:
    """The lowercased words of ``text``, in order (see :data:`WORD`).

    Examples:
        >>> words("Don't forget: 3 apples, l'eau!")
        ["don't", 'forget', 'apples', "l'eau"]
    """
    return [m.group().lower() for m in WORD.finditer(text)]


def is_sentence_start(text: str, start: int) -> bool:
    """Whether the word at ``start`` begins ``text`` or follows ``.``, ``!``, ``?`` or ``…``.

    Opening quotes, brackets, dashes and spaces in between are skipped.

    Examples:
        >>> is_sentence_start("Il pleut. « Le vent", 12), is_sentence_start("a b", 2)
        (True, False)
    """
    before = text[:start].rstrip(_OPENERS)
    return not before or before[-1] in _SENTENCE_END


class Lexicon(Mapping[str, str], Result):
    """Words of a base language (lowercase keys) and the word that replaces each.

    Args:
        base: the language whose texts are mixed.
        mixed: the language whose words are mixed in.
        entries: ``{base word: replacement}``; keys are single words (:data:`WORD`) and are
            lowercased; replacements are kept as written. Entries mapping a word to itself
            (ignoring case) are dropped.
        sources: where each entry came from (default ``"user"``).

    Raises:
        ParameterError: an empty language name, a key that is not one word, a blank
            replacement, or two keys equal up to case with different replacements.

    Examples:
        >>> lex = Lexicon("fr", "en", {"chat": "cat", "Chien": "dog", "taxi": "taxi"})
        >>> dict(lex), lex.source("chat")
        ({'chat': 'cat', 'chien': 'dog'}, 'user')
    """

    def __init__(
        self, base: str, mixed: str, entries: Mapping[str, str],
        sources: Mapping[str, str] | None = None,
    ) -> None:
        for name, lang in (("base", base), ("mixed", mixed)):
            if not isinstance(lang, str) or not lang.strip():
                raise ParameterError(f"{name} must be a language code such as 'fr', got {lang!r}.")
        if not hasattr(entries, "items"):
            raise ParameterError(
                f"entries must be a dict {{base word: replacement}}, got {type(entries).__name__}."
            )
        self.base, self.mixed = base, mixed
        self._entries: dict[str, str] = {}
        self._sources: dict[str, str] = {}
        for word, replacement in entries.items():
            if not isinstance(word, str) or WORD.fullmatch(word) is None:
                raise ParameterError(
                    f"Lexicon keys must be single words (letters, inner apostrophes), got "
                    f"{word!r}. Split phrases into words or drop them."
                )
            if not isinstance(replacement, str) or not replacement.strip():
                raise ParameterError(
                    f"The replacement of {word!r} must be a non-blank string, got "
                    f"{replacement!r}."
                )
            key = word.lower()
            if self._entries.get(key, replacement) != replacement:
                raise ParameterError(
                    f"{word!r} and another key are the same word up to case but map to "
                    f"{replacement!r} and {self._entries[key]!r}; keep one."
                )
            if replacement.lower() != key:
                self._entries[key] = replacement
                self._sources[key] = (sources or {}).get(word, "user")

    def __getitem__(self, word: str) -> str:
        return self._entries[word]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        counts = ", ".join(f"{s} {n}" for s, n in sorted(Counter(self._sources.values()).items()))
        return f"Lexicon({self.base}->{self.mixed}, {len(self)} entries: {counts or 'none'})"

    def source(self, word: str) -> str:
        """Where the entry of ``word`` came from (``"sample"``, ``"gettext"``, ...).

        Raises:
            KeyError: ``word`` has no entry.
        """
        return self._sources[word]

    def table(self) -> pd.DataFrame:
        """One row per entry: ``word``, ``replacement``, ``source``, sorted by word.

        Examples:
            >>> Lexicon("fr", "en", {"chat": "cat"}).table().values.tolist()
            [['chat', 'cat', 'user']]
        """
        rows = [(w, r, self._sources[w]) for w, r in sorted(self._entries.items())]
        return pd.DataFrame(rows, columns=["word", "replacement", "source"])

    def plot(self, ax: Any = None) -> Any:
        """Entries per source."""
        fig, ax = axes(ax, (4.5, 3.0))
        counts = Counter(self._sources.values())
        ax.bar(list(counts), list(counts.values()), color="tab:blue")
        ax.set_ylabel("entries")
        ax.set_title(f"Lexicon {self.base}→{self.mixed}: {len(self)} entries")
        fig.tight_layout()
        return fig

    def summary_line(self) -> str:
        """One line for the notebook view."""
        return repr(self)

    def _record(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return {}, {"base": self.base, "mixed": self.mixed, "entries": self._entries,
                    "sources": self._sources}

    @classmethod
    def _from_record(cls, tensors: dict[str, Any], meta: dict[str, Any]) -> Lexicon:
        return cls(meta["base"], meta["mixed"], meta["entries"], meta["sources"])


def build_lexicon(
    base: str,
    mixed: str,
    *,
    sources: Sequence[str] = SOURCES,
    split: Split = "all",
    min_links: int = 2,
    min_share: float = 0.5,
    min_dice: float = 0.2,
    locale_dir: str | Path | None = None,
) -> Lexicon:
    """Build a ``base -> mixed`` lexicon from the offline parallel sources (module docstring).

    Args:
        base: the language whose words are replaced (``"fr"``).
        mixed: the language mixed in (``"en"``).
        sources: which of ``"sample"`` and ``"gettext"`` to use, in order of precedence. A
            source that does not hold both languages contributes nothing (the result's
            :meth:`Lexicon.table` shows each entry's source).
        split: the part of the sample to align (``"train"`` keeps the held-out sentences
            unseen, to mix them with a lexicon that never saw them).
        min_links: pairs in which ``x`` must be linked to ``y`` (an integer >= 1).
        min_share: share of the pairs holding ``x`` in which it is linked to ``y``, in (0, 1].
        min_dice: the Dice coefficient below which two words are never linked, in [0, 1).
        locale_dir: where the catalogs are (found with
            :func:`~lensneurons.corpora.gettext.find_locale_dir` when omitted).

    Returns:
        The lexicon; entries from earlier sources take precedence.

    Raises:
        ParameterError: ``base == mixed``, an unknown source, or a threshold out of range.
        UnknownLanguageError: no requested source holds both languages.

    Examples:
        >>> lex = build_lexicon("de", "en", sources=("sample",))
        >>> lex["wetter"], lex["und"]
        ('weather', 'and')
    """
    for name, lang in (("base", base), ("mixed", mixed)):
        if not isinstance(lang, str) or _CODE.fullmatch(lang) is None:
            raise ParameterError(
                f"{name} must be a language code such as 'fr' or 'pt_BR', got {lang!r}.")
    if base == mixed:
        raise ParameterError(f"base and mixed are both {base!r}; mix in another language.")
    if isinstance(sources, str) or not all(s in SOURCES for s in sources) or not sources:
        raise ParameterError(f"sources must be a non-empty list from {SOURCES}, got {sources!r}.")
    min_links = _checks.positive_int(min_links, "min_links")
    min_share = _checks.rate(min_share, "min_share")
    min_dice = _checks.percentile(min_dice, "min_dice")
    merged: dict[str, str] = {}
    origin: dict[str, str] = {}
    served = []
    for source in dict.fromkeys(sources):
        pairs = (_sample_pairs(base, mixed, split) if source == "sample"
                 else _gettext_pairs(base, mixed, locale_dir))
        if pairs is None:
            continue
        served.append(source)
        found = _entries(pairs, min_links=min_links, min_share=min_share, min_dice=min_dice)
        for word, replacement in found.items():
            if word not in merged:
                merged[word], origin[word] = replacement, source
            elif merged[word] == replacement:
                origin[word] += f"+{source}"
    if not served:
        raise UnknownLanguageError(
            f"No source in {list(sources)} holds both {base!r} and {mixed!r}. The sample has "
            f"{list(SAMPLE_LANGUAGES)}; gettext needs catalogs of both under the locale "
            "directory (English is their msgid). Pass Lexicon(base, mixed, entries) to use a "
            "dictionary of your own."
        )
    forms = _surface_forms(mixed, base, served, locale_dir)
    return Lexicon(base, mixed, {w: forms.get(r, r) for w, r in merged.items()}, origin)


def _entries(pairs: list[Pair], *, min_links: int, min_share: float,
             min_dice: float) -> dict[str, str]:
    """Competitive linking within each pair, then the kept entries (module docstring)."""
    count_x: Counter[str] = Counter()
    count_y: Counter[str] = Counter()
    count_xy: Counter[tuple[str, str]] = Counter()
    for xs, ys in pairs:
        count_x.update(xs)
        count_y.update(ys)
        count_xy.update((x, y) for x in xs for y in ys)
    links: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for xs, ys in pairs:
        scored = sorted(((2 * count_xy[x, y] / (count_x[x] + count_y[y]), x, y)
                         for x in xs for y in ys), key=lambda t: (-t[0], t[1], t[2]))
        linked_x, linked_y = set(), set()
        for dice, x, y in scored:
            if dice < min_dice:
                break
            if x not in linked_x and y not in linked_y:
                linked_x.add(x)
                linked_y.add(y)
                links[x][y] += 1
    found = {}
    for x, targets in links.items():
        y, n = min(targets.items(), key=lambda t: (-t[1], t[0]))
        if n >= min_links and n >= min_share * count_x[x] and x != y:
            found[x] = y
    return found


def _sample_pairs(base: str, mixed: str, split: Split) -> list[Pair] | None:
    """Word sets of the sample's parallel sentences, or ``None`` without both languages."""
    if base not in SAMPLE_LANGUAGES or mixed not in SAMPLE_LANGUAGES:
        return None
    texts = load_sample([base, mixed], split=split)
    return [(frozenset(words(a)), frozenset(words(b)))
            for a, b in zip(texts[base], texts[mixed])]


def _gettext_pairs(base: str, mixed: str, locale_dir: str | Path | None) -> list[Pair] | None:
    """Short aligned catalog entries as word sets, or ``None`` without catalogs of both."""
    aligned = _aligned_strings(base, mixed, locale_dir)
    if aligned is None:
        return None
    seen: set[tuple[tuple[str, ...], tuple[str, ...]]] = set()
    for a, b in aligned:
        a_lines, b_lines = clean_string(a), clean_string(b)
        if len(a_lines) == 1 and len(b_lines) == 1:
            xs, ys = words(a_lines[0]), words(b_lines[0])
            if 1 <= len(xs) <= 3 and len(xs) == len(ys):
                seen.add((tuple(xs), tuple(ys)))
    return [(frozenset(a), frozenset(b)) for a, b in sorted(seen)]


def _aligned_strings(base: str, mixed: str,
                     locale_dir: str | Path | None) -> list[tuple[str, str]] | None:
    """Raw ``(base text, mixed text)`` of every catalog entry translated into both languages.

    English is the ``msgid``; two other languages are joined on the ``msgid`` of one domain.
    ``None`` when the catalogs of a language are missing.
    """
    root = _root(locale_dir)
    if root is None:
        return None
    tables = {lang: _catalogs(root, lang) for lang in (base, mixed) if lang != ENGLISH}
    if not all(tables.values()):
        return None
    if ENGLISH in (base, mixed):
        (other, catalogs), = tables.items()
        pairs = [(msgid, text) for domain in sorted(catalogs)
                 for msgid, text in sorted(catalogs[domain].items())]
        return pairs if other == mixed else [(b, a) for a, b in pairs]
    pairs = []
    for domain in sorted(tables[base].keys() & tables[mixed].keys()):
        here, there = tables[base][domain], tables[mixed][domain]
        pairs += [(here[m], there[m]) for m in sorted(here.keys() & there.keys())]
    return pairs


def _root(locale_dir: str | Path | None) -> Path | None:
    """The catalog directory, or ``None`` when the machine has none."""
    if locale_dir is not None:
        return Path(locale_dir)
    try:
        return find_locale_dir()
    except FileNotFoundError:
        return None


@lru_cache(maxsize=16)
def _catalogs(root: Path, lang: str) -> dict[str, dict[str, str]]:
    """``{domain: {msgid: translation}}`` of one non-English language.

    A domain is read from ``<lang>/`` first, else from the first regional directory
    (``pt_BR/``...) that has it. Skipped: the ISO name lists (``iso_*``: countries, regions,
    languages, currencies; proper names whose parts align with common words), untranslated
    entries (translation equal to the msgid) and catalogs that cannot be parsed.
    """
    dirs = [root / lang, *sorted(d for d in root.glob(f"{lang}_*") if "@" not in d.name)]
    catalogs: dict[str, dict[str, str]] = {}
    for folder in dirs:
        for path in sorted(folder.glob("LC_MESSAGES/*.mo")):
            if path.stem in catalogs or path.stem.startswith(_NAME_LISTS):
                continue
            try:
                catalogs[path.stem] = {m: t for m, t in read_catalog(path)
                                       if t.strip() != m.strip()}
            except (OSError, UnicodeDecodeError, ValueError):
                continue
    return catalogs


def _surface_forms(lang: str, other: str, sources: Iterable[str],
                   locale_dir: str | Path | None) -> dict[str, str]:
    """``{lowercase word: most frequent form where it does not start a sentence}`` of ``lang``.

    Read from the sample, else from the catalog strings of four or more words in ``lang`` (for
    English, the msgids of ``other``'s catalogs).
    """
    forms: dict[str, str] = {}
    root = _root(locale_dir) if "gettext" in sources else None
    if root is not None:
        catalogs = _catalogs(root, other if lang == ENGLISH else lang).values()
        strings = (m if lang == ENGLISH else t for c in catalogs for m, t in c.items())
        forms.update(_usual_forms(text for text in strings if text.count(" ") >= 3))
    if "sample" in sources and lang in SAMPLE_LANGUAGES:
        forms.update(_usual_forms(load_sample([lang])[lang]))
    return forms


def _usual_forms(texts: Iterable[str]) -> dict[str, str]:
    """``{lowercase word: its most frequent form where it does not start a sentence}``."""
    forms: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for text in texts:
        for m in WORD.finditer(text):
            if not is_sentence_start(text, m.start()):
                forms[m.group().lower()][m.group()] += 1
    return {w: min(c.items(), key=lambda t: (-t[1], t[0]))[0] for w, c in forms.items()}
