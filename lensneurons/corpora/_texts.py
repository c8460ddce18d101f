"""Checks of a corpus's group names, texts and examples, before anything is tokenized.

A text must be a string: ``None``, numbers and bytes raise :class:`InvalidTextError` (they were
once stringified to ``"None"`` and counted). Empty or whitespace-only texts hold nothing to count:
they are dropped with a warning, and a group left with none raises :class:`EmptyGroupError`.

Examples:
    >>> clean_items("en", ["A cat.", "A dog."], examples=False)
    ['A cat.', 'A dog.']
    >>> try:
    ...     clean_items("en", ["A cat.", None], examples=False)
    ... except InvalidTextError as err:
    ...     print(err)
    Text 1 of group 'en' is NoneType None, not a string. Remove it or convert it to text.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

from lensneurons.errors import EmptyGroupError, InvalidTextError, ParameterError


def group_name(group: Any) -> str:
    """``group`` if it is a non-empty string.

    Raises:
        ParameterError: it is not (a number, ``None``, ``""``).
    """
    if not isinstance(group, str) or not group.strip():
        raise ParameterError(
            f"Group names must be non-empty strings (a language code, a label), got {group!r}. "
            "Name the groups, e.g. {'en': [...], 'fr': [...]}."
        )
    return group


def clean_items(group: str, group_items: Any, examples: bool) -> list[Any]:
    """The group's texts (or ``(prompt, response)`` examples) as a list; blank ones dropped.

    Raises:
        InvalidTextError: ``group_items`` is one string or not a list, or an item is not a
            string (not a pair of strings, for examples).
        EmptyGroupError: no item, or none that is not blank.

    Warns:
        UserWarning: blank texts (or examples with a blank response) were dropped.
    """
    what = "examples" if examples else "texts"
    if isinstance(group_items, (str, bytes)) or hasattr(group_items, "keys"):
        raise InvalidTextError(
            f"Group {group!r} must be a list of {what}, not one {type(group_items).__name__}: "
            f"pass {{{group!r}: [...]}}."
        )
    try:
        items = list(group_items)
    except TypeError:
        raise InvalidTextError(
            f"Group {group!r} must be a list of {what}, got {type(group_items).__name__}."
        ) from None
    if not items:
        raise EmptyGroupError(
            f"Group {group!r} has no {what}. Remove the group or give it at least one."
        )
    for i, item in enumerate(items):
        pieces = item if examples else (item,)
        if examples and (isinstance(item, (str, bytes)) or not isinstance(item, Sequence)
                         or len(item) != 2):
            raise InvalidTextError(
                f"Example {i} of group {group!r} is {item!r}; each example must be a "
                "(prompt, response) pair of strings."
            )
        for piece in pieces:
            if not isinstance(piece, str):
                hint = " Decode bytes first: text.decode('utf-8')." if isinstance(
                    piece, (bytes, bytearray)) else " Remove it or convert it to text."
                raise InvalidTextError(
                    f"Text {i} of group {group!r} is {type(piece).__name__} {piece!r}, not a "
                    f"string.{hint}"
                )
    kept = [item for item in items if (item[1] if examples else item).strip()]
    if not kept:
        raise EmptyGroupError(
            f"Every {'response' if examples else 'text'} of group {group!r} is empty or "
            "whitespace; nothing would be counted. Check the group's texts."
        )
    if len(kept) < len(items):
        warnings.warn(
            f"Dropped {len(items) - len(kept)} of the {len(items)} {what} of group {group!r}: "
            f"their {'response' if examples else 'text'} is empty or whitespace only.",
            stacklevel=4,
        )
    return [tuple(item) for item in kept] if examples else kept
