"""The shipped cultural questions: multiple choice per culture, control and country-name items.

``lensneurons/data/culture/questions.json`` holds 40 multiple-choice questions for each of six
cultures (Japan, Mexico, India, France, Egypt, Brazil), written for this project on food,
festivals, geography, customs, famous places and language, each with four options and the letter
of the right one; and, per culture, ten short passages that name the country, asking which
country is mentioned (the country-name items of CULNIG's exclusion step). The source and the
script that builds the file are ``scripts/culture_questions_src.py`` and
``scripts/make_culture_data.py``.

Three kinds of :class:`~lensneurons.detect.attribution.AttributionItem` come out, for
:func:`lensneurons.attribution`:

* ``"questions"``: ``Question: ...`` then the options ``A.``..``D.`` and ``Answer:``; the answer
  is the letter with a leading space (``" B"``);
* ``"control"``: the same items with the question text removed (only the options), which
  captures what answering any multiple-choice item takes;
* ``"countries"``: a passage naming the country, the question and the country options.

Example:
    >>> from lensneurons.corpora.culture import CULTURES, culture_items
    >>> japan = culture_items(["Japan"], kind="questions")["Japan"]
    >>> len(japan), japan[0].answer in (" A", " B", " C", " D")
    (40, True)
    >>> CULTURES
    ('Japan', 'Mexico', 'India', 'France', 'Egypt', 'Brazil')
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import lru_cache
from importlib import resources
from typing import Any

from lensneurons.corpora.items import AttributionItem
from lensneurons.errors import ParameterError, UnknownGroupError

__all__ = ["CULTURES", "KINDS", "TOPICS", "culture_items", "culture_questions", "mcq_prompt"]

CULTURES = ("Japan", "Mexico", "India", "France", "Egypt", "Brazil")
TOPICS = ("food", "festivals", "geography", "customs", "places", "language")
KINDS = ("questions", "control", "countries")


@lru_cache(maxsize=1)
def _data() -> dict[str, Any]:
    path = resources.files("lensneurons") / "data" / "culture" / "questions.json"
    return json.loads(path.read_text(encoding="utf-8"))


def culture_questions() -> dict[str, Any]:
    """The raw file: ``{"cultures": {name: [item]}, "countries": {name: [item]}}``.

    An item is ``{"topic" or "passage", "question", "options": [4 strings], "answer": letter}``.
    """
    return json.loads(json.dumps(_data()))  # a copy the caller may edit


def mcq_prompt(question: str | None, options: list[str], passage: str | None = None) -> str:
    """The prompt of one multiple-choice item (no question line when ``question`` is None).

    Example:
        >>> print(mcq_prompt("2 + 2?", ["3", "4"]))
        Question: 2 + 2?
        A. 3
        B. 4
        Answer:
    """
    lines = [passage] if passage else []
    lines.append(f"Question: {question}" if question else "Choose one of the options.")
    lines += [f"{letter}. {option}" for letter, option in zip("ABCD", options)]
    return "\n".join([*lines, "Answer:"])


def culture_items(
    cultures: Iterable[str] | None = None, *, kind: str = "questions",
    topics: Iterable[str] | None = None,
) -> dict[str, list[AttributionItem]]:
    """Attribution items per culture.

    Args:
        cultures: which cultures (default: all six).
        kind: ``"questions"``, ``"control"`` (the questions without their text) or
            ``"countries"`` (country-name passages).
        topics: keep only questions of these topics (not for ``"countries"``).

    Raises:
        UnknownGroupError: an unknown culture.
        ParameterError: an unknown kind or topic.
    """
    if kind not in KINDS:
        raise ParameterError(f"kind must be one of {KINDS}, got {kind!r}.")
    names = list(CULTURES if cultures is None else cultures)
    unknown = [c for c in names if c not in CULTURES]
    if unknown:
        raise UnknownGroupError(f"No shipped questions for {unknown}; cultures: {CULTURES}.")
    wanted = set(TOPICS if topics is None else topics)
    if not wanted <= set(TOPICS):
        raise ParameterError(f"Unknown topics {sorted(wanted - set(TOPICS))}; topics: {TOPICS}.")
    data = _data()
    out = {}
    for name in names:
        if kind == "countries":
            rows = data["countries"][name]
            out[name] = [AttributionItem(mcq_prompt(r["question"], r["options"], r["passage"]),
                                         " " + r["answer"]) for r in rows]
            continue
        rows = [r for r in data["cultures"][name] if r["topic"] in wanted]
        out[name] = [AttributionItem(
            mcq_prompt(r["question"] if kind == "questions" else None, r["options"]),
            " " + r["answer"]) for r in rows]
    return out
