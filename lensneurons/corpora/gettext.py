"""Multilingual text from the machine's installed gettext catalogs.

Most Linux systems ship translated user-interface strings as compiled gettext catalogs
(``/usr/share/locale/<locale>/LC_MESSAGES/<domain>.mo``: glib, gtk, coreutils, the ISO code lists
and many more). Read together, they form an offline, parallel corpus: every ``msgstr`` is a
translation of its ``msgid``, which is English. This module reads them with the standard library's
:mod:`gettext` parser and cleans them into plain sentences (mnemonics, format directives and markup
removed; empty, untranslated and duplicate strings dropped).

Example:
    >>> from lensneurons.corpora.gettext import load_gettext
    >>> texts = load_gettext(["en", "de", "ru"])  # doctest: +SKIP
    >>> sorted(texts), len(texts["de"]) > 1000  # doctest: +SKIP
    (['de', 'en', 'ru'], True)

"""

from __future__ import annotations

import gettext as _gettext
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from lensneurons.errors import ParameterError

__all__ = [
    "ENGLISH",
    "clean_string",
    "find_locale_dir",
    "load_gettext",
    "read_catalog",
    "split_heldout",
    "texts_digest",
]

ENGLISH = "en"
"""Language code whose text is taken from the catalogs' ``msgid`` strings."""

_FORMAT = re.compile(
    r"%(?:\([^)]*\))?[-+ #0'I]*(?:\d+\$)?[\d*]*(?:\.[\d*]+)?"
    r"(?:hh|h|ll|l|L|q|j|z|t|I64)?[diouxXeEfFgGaAcspnmSC%]"
    r"|%<[^>]+>|%[A-Za-z]"  # %<PRIu64>, custom one-letter directives
    r"|\$\{[^}]*\}|\{[^{}]*\}"  # ${var}, {0}, {name}
)
_MARKUP = re.compile(r"</?[A-Za-z][^<>]*>|&(?:amp|lt|gt|quot|apos|nbsp);")
_MNEMONIC = re.compile(r"_(?=[^\W\d_])")
_QUOTES = "\"'`«»„“”‘’‚‹›"
_EMPTY_PAIR = re.compile(rf"[{_QUOTES}(\[]\s*[{_QUOTES})\]]|\(\s*\)|\[\s*\]|<\s*>")
_SPACES = re.compile(r"\s+")
_EDGE = " \t:;,-–—|/\\=*"


def find_locale_dir(candidates: Iterable[str | Path] | None = None) -> Path:
    """Return the first directory that holds compiled gettext catalogs.

    Args:
        candidates: Directories to try, in order. Defaults to ``<sys.prefix>/share/locale``,
            ``/usr/share/locale`` and ``/usr/local/share/locale``.

    Returns:
        The first candidate containing at least one ``*/LC_MESSAGES/*.mo`` file.

    Raises:
        FileNotFoundError: If no candidate holds a catalog.

    Example:
        >>> find_locale_dir()  # doctest: +SKIP
        PosixPath('/usr/share/locale')

    """
    if candidates is None:
        candidates = [
            Path(sys.prefix) / "share" / "locale",
            Path("/usr/share/locale"),
            Path("/usr/local/share/locale"),
        ]
    tried = [Path(c) for c in candidates]
    for path in tried:
        if path.is_dir() and next(path.glob("*/LC_MESSAGES/*.mo"), None) is not None:
            return path
    raise FileNotFoundError(
        "no gettext catalogs (*/LC_MESSAGES/*.mo) found in "
        + ", ".join(str(p) for p in tried)
        + "; install some translations (e.g. the 'iso-codes' or 'libgtk2.0-common' package) "
        "or pass locale_dir="
    )


def clean_string(text: str) -> list[str]:
    r"""Turn one catalog string into clean lines of natural text.

    Removes message contexts, keyboard mnemonics (``_File``), printf/brace format directives
    (``%s``, ``%1$d``, ``{0}``), XML markup and entities, and quote pairs left empty by those
    removals; splits on newlines and collapses whitespace.

    Args:
        text: A ``msgid`` or ``msgstr``.

    Returns:
        The non-empty cleaned lines (possibly none).

    Example:
        >>> clean_string("Attribut »%s« wurde im <b>selben</b> Element _verwendet\n")
        ['Attribut wurde im selben Element verwendet']

    """
    text = text.rsplit("\x04", 1)[-1]
    text = _MARKUP.sub("", text)
    text = _FORMAT.sub("", text)
    text = _MNEMONIC.sub("", text)
    text = _EMPTY_PAIR.sub("", text)
    lines = (_SPACES.sub(" ", line).strip(_EDGE) for line in text.split("\n"))
    return [line for line in lines if line]


def _is_prose(line: str, min_chars: int) -> bool:
    """Whether a cleaned line looks like natural language rather than code or a bare symbol."""
    if len(line) < min_chars or " " not in line:
        return False
    letters = sum(ch.isalpha() for ch in line)
    return letters >= 0.7 * len(line.replace(" ", ""))


def read_catalog(path: str | Path) -> Iterator[tuple[str, str]]:
    """Yield the ``(msgid, msgstr)`` pairs of one compiled ``.mo`` catalog.

    The header entry is skipped; of a plural entry, only the singular forms are yielded.

    Args:
        path: A ``.mo`` file.

    Yields:
        Raw (uncleaned) English message and its translation.

    Example:
        >>> path = "/usr/share/locale/de/LC_MESSAGES/glib20.mo"
        >>> pairs = dict(read_catalog(path))  # doctest: +SKIP

    """
    with open(path, "rb") as f:
        catalog = _gettext.GNUTranslations(f)._catalog  # type: ignore[attr-defined]
    for key, value in catalog.items():
        if isinstance(key, tuple):
            key, form = key
            if form != 0:
                continue
        if key and value:
            yield key, value


def _safe_pairs(path: Path) -> list[tuple[str, str]]:
    """Return the pairs of one catalog, or none if it cannot be parsed (bad encoding...)."""
    try:
        return list(read_catalog(path))
    except (OSError, UnicodeDecodeError, ValueError):
        return []


def _locale_dirs(locale_dir: Path, language: str) -> list[Path]:
    """Locale directories of one language: ``xx`` and regional variants ``xx_YY`` (not ``@``)."""
    dirs = [d for d in locale_dir.glob(f"{language}_*") if "@" not in d.name]
    return sorted([locale_dir / language, *dirs])


def load_gettext(
    languages: Iterable[str],
    locale_dir: str | Path | None = None,
    *,
    min_chars: int = 12,
    domains: Iterable[str] | None = None,
) -> dict[str, list[str]]:
    """Read the installed gettext catalogs as a multilingual corpus.

    For each non-English language ``xx``, every catalog under ``xx/`` and ``xx_*/`` (e.g.
    ``pt`` and ``pt_BR``) contributes its translations, cleaned with :func:`clean_string`;
    strings equal to their ``msgid`` (untranslated names) and catalogs that cannot be parsed
    are skipped. English (``"en"``) is
    the cleaned ``msgid`` text of the same catalogs (of every installed catalog if English is the
    only language asked for). Lines are deduplicated per language, in first-seen order over
    catalogs sorted by path, so the result is deterministic.

    Args:
        languages: Language codes, e.g. ``["en", "de", "fr", "es", "pt", "ru"]``.
        locale_dir: Directory holding ``<locale>/LC_MESSAGES/*.mo``; found with
            :func:`find_locale_dir` when omitted.
        min_chars: Shortest line kept (characters). Lines must also contain a space and be
            mostly letters, which drops bare words, options and code.
        domains: Only read these catalogs (file stems such as ``"glib20"``); all by default.

    Returns:
        ``{language: [line, ...]}`` for every requested language (possibly empty lists).

    Raises:
        FileNotFoundError: If no locale directory with catalogs is found.

    Examples:
        >>> texts = load_gettext(["en", "fr"], domains=["glib20", "gtk20"])  # doctest: +SKIP
        >>> texts["fr"][0]  # doctest: +SKIP
        'Marque-page introuvable pour l’URI'

    """
    languages = list(dict.fromkeys(languages))
    root = Path(locale_dir) if locale_dir is not None else find_locale_dir()
    if not root.is_dir():
        raise FileNotFoundError(f"locale directory not found: {root}")
    wanted = set(domains) if domains is not None else None

    def catalogs(dirs: Iterable[Path]) -> list[Path]:
        files = (f for d in dirs for f in d.glob("LC_MESSAGES/*.mo"))
        return sorted(f for f in files if wanted is None or f.stem in wanted)

    seen: dict[str, dict[str, None]] = {lang: {} for lang in languages}
    english = seen.get(ENGLISH)
    others = [lang for lang in languages if lang != ENGLISH]
    for lang in others:
        for path in catalogs(_locale_dirs(root, lang)):
            for msgid, msgstr in _safe_pairs(path):
                if msgstr.strip() == msgid.strip():
                    continue
                for line in clean_string(msgstr):
                    if _is_prose(line, min_chars):
                        seen[lang][line] = None
                if english is not None:
                    for line in clean_string(msgid):
                        if _is_prose(line, min_chars):
                            english[line] = None
    if english is not None and not others:
        for path in catalogs(root.glob("*")):
            for msgid, _msgstr in _safe_pairs(path):
                for line in clean_string(msgid):
                    if _is_prose(line, min_chars):
                        english[line] = None
    return {lang: list(lines) for lang, lines in seen.items()}


def split_heldout(
    texts: dict[str, list[str]], *, n_heldout: int, seed: int = 0
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Split each group's lines into training and held-out lines, deterministically.

    Each group's lines are shuffled with ``seed`` (the same permutation on every machine for the
    same lines); the first ``n_heldout`` are held out, the rest are for training.

    Args:
        texts: ``{group: [line, ...]}``, e.g. from :func:`load_gettext`.
        n_heldout: held-out lines per group.
        seed: the shuffle's seed.

    Returns:
        ``(train, heldout)`` with the same groups.

    Raises:
        ParameterError: a group has no more than ``n_heldout`` lines.

    Example:
        >>> train, heldout = split_heldout({"en": [f"line {i}" for i in range(10)]}, n_heldout=3)
        >>> len(train["en"]), len(heldout["en"]), set(train["en"]) & set(heldout["en"])
        (7, 3, set())

    """
    import random

    train, heldout = {}, {}
    for group, lines in texts.items():
        if len(lines) <= n_heldout:
            raise ParameterError(
                f"{group!r} has {len(lines)} lines, not more than n_heldout={n_heldout}; "
                "ask for fewer held-out lines or add text.")
        order = list(lines)
        random.Random(f"{seed}:{group}").shuffle(order)
        heldout[group], train[group] = order[:n_heldout], order[n_heldout:]
    return train, heldout


def texts_digest(texts: dict[str, list[str]]) -> str:
    """A short sha256 of groups and lines, to recognise a corpus on another machine.

    Example:
        >>> texts_digest({"en": ["a b"]}) == texts_digest({"en": ["a b"]})
        True

    """
    import hashlib

    digest = hashlib.sha256()
    for group in sorted(texts):
        digest.update(f"\0{group}\0".encode())
        for line in texts[group]:
            digest.update(line.encode() + b"\n")
    return digest.hexdigest()[:16]
