"""Prompts of Wendler et al. (2024): translation, repetition and cloze, from parallel word lists.

Word lists ship with the package (``lensneurons/data/words/<lang>.json``, 96 common concrete nouns
and UI words in en, de, fr, es, pt, ru, el, parallel by an English id, each with a one-blank cloze
sentence). Every builder is seeded and returns :class:`LensItem` values that carry the answer in
every language, which is what :func:`~lensneurons.lens.latent.latent_language` needs.

- translation (4 demonstrations): ``Français: "chien" - Deutsch: "Hund"`` lines, then
  ``Français: "chat" - Deutsch: "``;
- repetition: the same with source = target;
- cloze (2 demonstrations): ``Un "___" aboie la nuit. Réponse: "chien".`` then the query sentence
  ending in ``Réponse: "``.

Examples:
    >>> from lensneurons.lens import prompts
    >>> items = prompts.translation(src="fr", tgt="de", seed=0)
    >>> print(items[0].prompt.splitlines()[-1])
    Français: "chien" - Deutsch: "

"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

from lensneurons.core import checks as _checks
from lensneurons.errors import ParameterError, UnknownLanguageError

#: Languages with a shipped word list.
LANGUAGES: tuple[str, ...] = ("en", "de", "fr", "es", "pt", "ru", "el")


@dataclass(frozen=True)
class WordList:
    """Parallel nouns of one language.

    Attributes:
        language: ISO code (``"fr"``).
        name: the language's name in itself (``"Français"``), used in prompts.
        answer: the word for "Answer" in that language (cloze prompts).
        words: English id -> word.
        cloze: English id -> sentence with one ``___`` blank.

    """

    language: str
    name: str
    answer: str
    words: Mapping[str, str]
    cloze: Mapping[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.words)


@dataclass(frozen=True)
class LensItem:
    """One latent-language prompt and its answer in every language.

    Attributes:
        prompt: the text given to the model; its next token should start the answer.
        task: ``"translation"``, ``"repetition"`` or ``"cloze"``.
        source: language of the query word or sentence.
        target: language of the expected answer.
        id: the English id of the concept.
        words: language -> the concept's word in that language.

    """

    prompt: str
    task: str
    source: str
    target: str
    id: str
    words: Mapping[str, str]


def load_words(language: str) -> WordList:
    """Load the shipped word list of ``language``.

    Raises:
        UnknownLanguageError: no list ships for it (see :data:`LANGUAGES`).

    >>> load_words("de").words["dog"]
    'Hund'

    """
    if not isinstance(language, str) or language not in LANGUAGES:
        raise UnknownLanguageError(
            f"No word list ships for {language!r}; available: {list(LANGUAGES)}. Pass your own "
            "WordList objects through words={lang: WordList(...)}."
        )
    return _load_words(language)


@cache
def _load_words(language: str) -> WordList:
    text = resources.files("lensneurons").joinpath("data", "words", f"{language}.json").read_text(
        encoding="utf-8")
    doc = json.loads(text)
    return WordList(
        language=doc["language"],
        name=doc["name"],
        answer=doc["answer"],
        words={item["id"]: item["word"] for item in doc["items"]},
        cloze={item["id"]: item["cloze"] for item in doc["items"] if item.get("cloze")},
    )


def _options(n_demos: object, seed: object, limit: object) -> tuple[int, int | None]:
    """Checked ``n_demos`` (>= 0) and ``limit`` (None or >= 1); ``seed`` must be an integer."""
    _checks.integer(seed, "seed")
    return (_checks.positive_int(n_demos, "n_demos", minimum=0),
            _checks.optional_positive_int(limit, "limit"))


def _lists(words: Mapping[str, WordList] | None, needed: Sequence[str]) -> dict[str, WordList]:
    for lang in needed:
        if not isinstance(lang, str):
            raise UnknownLanguageError(
                f"A language must be a code such as 'fr', got {lang!r}; available: "
                f"{list(LANGUAGES)}."
            )
    if words is not None and (not isinstance(words, Mapping) or any(
            not isinstance(wl, WordList) for wl in words.values())):
        raise ParameterError(
            f"words must be a dict {{language: WordList}}, got {words!r:.80}; see load_words."
        )
    lists = dict(words or {})
    for lang in set(needed) | ({"en"} if words is None else set()):
        if lang not in lists:
            lists[lang] = load_words(lang)
    if words is None:
        for lang in LANGUAGES:
            lists.setdefault(lang, load_words(lang))
    return lists


def _concepts(lists: Mapping[str, WordList], needed: Sequence[str]) -> list[str]:
    ids = [i for i in lists[needed[0]].words if all(i in lists[lang].words for lang in needed)]
    if len(ids) < 2:
        raise UnknownLanguageError(
            f"The word lists of {list(needed)} share fewer than 2 concepts; nothing to prompt."
        )
    return ids


def _item(lists: Mapping[str, WordList], prompt: str, task: str, src: str, tgt: str,
          concept: str) -> LensItem:
    words = {lang: wl.words[concept] for lang, wl in lists.items() if concept in wl.words}
    return LensItem(prompt=prompt, task=task, source=src, target=tgt, id=concept, words=words)


def translation(words: Mapping[str, WordList] | None = None, *, src: str, tgt: str,
                n_demos: int = 4, seed: int = 0, limit: int | None = None) -> list[LensItem]:
    """Build translation prompts ``{Src}: "w" - {Tgt}: "`` with ``n_demos`` demonstrations.

    Args:
        words: language -> :class:`WordList`; default the shipped lists.
        src: language of the query word.
        tgt: language of the answer.
        n_demos: demonstrations drawn from the other concepts.
        seed: for the demonstrations.
        limit: keep the first ``limit`` concepts.

    Returns:
        One :class:`LensItem` per concept present in both lists.

    >>> len(translation(src="fr", tgt="de")) > 50
    True

    """
    n_demos, limit = _options(n_demos, seed, limit)
    lists = _lists(words, (src, tgt))
    ids = _concepts(lists, (src, tgt))[:limit]
    rng = random.Random(seed)
    s, t = lists[src], lists[tgt]
    items = []
    for concept in ids:
        others = [i for i in _concepts(lists, (src, tgt)) if i != concept]
        demos = rng.sample(others, min(n_demos, len(others)))
        lines = [f'{s.name}: "{s.words[d]}" - {t.name}: "{t.words[d]}"' for d in demos]
        lines.append(f'{s.name}: "{s.words[concept]}" - {t.name}: "')
        task = "repetition" if src == tgt else "translation"
        items.append(_item(lists, "\n".join(lines), task, src, tgt, concept))
    return items


def repetition(words: Mapping[str, WordList] | None = None, *, lang: str, n_demos: int = 4,
               seed: int = 0, limit: int | None = None) -> list[LensItem]:
    """Repetition prompts: translation from ``lang`` into itself.

    >>> repetition(lang="de")[0].prompt.splitlines()[-1]
    'Deutsch: "Hund" - Deutsch: "'
    """
    return translation(words, src=lang, tgt=lang, n_demos=n_demos, seed=seed, limit=limit)


def cloze(words: Mapping[str, WordList] | None = None, *, lang: str, n_demos: int = 2,
          seed: int = 0, limit: int | None = None) -> list[LensItem]:
    """Cloze prompts: ``sentence with "___". Answer: "w".`` demonstrations, then a query.

    Args:
        words: language -> :class:`WordList`; default the shipped lists.
        lang: language of the sentences and of the answer.
        n_demos: demonstrations (Wendler et al. use 2).
        seed: for the demonstrations.
        limit: keep the first ``limit`` concepts.

    >>> cloze(lang="en")[0].prompt.splitlines()[-1]
    'A "___" barks at night. Answer: "'

    """
    n_demos, limit = _options(n_demos, seed, limit)
    lists = _lists(words, (lang,))
    wl = lists[lang]
    ids = [i for i in wl.words if i in wl.cloze][:limit]
    pool = [i for i in wl.words if i in wl.cloze]
    if len(pool) < 2:
        raise UnknownLanguageError(f"The {lang!r} word list has fewer than 2 cloze sentences.")
    rng = random.Random(seed)

    def sentence(concept: str) -> str:
        return wl.cloze[concept].replace("___", '"___"', 1)

    items = []
    for concept in ids:
        demos = rng.sample([i for i in pool if i != concept], min(n_demos, len(pool) - 1))
        lines = [f'{sentence(d)} {wl.answer}: "{wl.words[d]}".' for d in demos]
        lines.append(f'{sentence(concept)} {wl.answer}: "')
        items.append(_item(lists, "\n".join(lines), "cloze", lang, lang, concept))
    return items
