"""Prompt/answer items: the unit of gradient attribution and of CULNIG's cultural questions.

Examples:
    >>> from lensneurons.corpora.items import AttributionItem
    >>> AttributionItem("The capital of France is", " Paris").answer
    ' Paris'
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AttributionItem:
    """One question: a prompt and its answer.

    Attributes:
        prompt: the text the model reads (BOS is prepended as the model expects).
        answer: the answer text, whose *first* token is the target ``y`` (tokenized on its own,
            so write the leading space the prompt expects, e.g. ``" B"`` after ``"Answer:"``),
            or a token id.
    """

    prompt: str
    answer: str | int
