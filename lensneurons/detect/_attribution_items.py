"""The items of :func:`lensneurons.attribution`: a prompt and an answer, checked and tokenized."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lensneurons.core.model import ModelView
from lensneurons.corpora.items import AttributionItem
from lensneurons.errors import (
    ContextLengthError,
    EmptyGroupError,
    EmptyTokenizationError,
    InvalidTextError,
    VocabularyError,
)


def pad_id(view: ModelView) -> int:
    tokenizer = view.tokenizer
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if candidate is not None:
            return int(candidate)
    return 0


def encode(view: ModelView, items: Any) -> list[tuple[list[int], int]]:
    """Token ids of each prompt (BOS first when the model expects one) and the answer's id."""
    if isinstance(items, (str, bytes, AttributionItem)) or not isinstance(items, Sequence):
        raise InvalidTextError(
            f"items must be a list of AttributionItem or (prompt, answer) pairs, got "
            f"{type(items).__name__}."
        )
    if len(items) == 0:
        raise EmptyGroupError("attribution got no items; pass at least one (prompt, answer).")
    tokenizer, bos = view.tokenizer, view.bos_token_id
    encoded = []
    for index, item in enumerate(items):
        if isinstance(item, tuple) and len(item) == 2:
            item = AttributionItem(*item)
        if not isinstance(item, AttributionItem) or not isinstance(item.prompt, str):
            raise InvalidTextError(
                f"Item {index} is {item!r}; each item must be an AttributionItem(prompt, answer) "
                "or a (prompt, answer) pair of strings."
            )
        ids = list(tokenizer(item.prompt, add_special_tokens=False)["input_ids"])
        ids = ([bos] if bos is not None else []) + ids
        if not ids:
            raise EmptyTokenizationError(
                f"Item {index} has an empty prompt and the model prepends no BOS token: there "
                "is no position to read P(answer) at. Give the item a prompt."
            )
        if len(ids) > view.n_ctx:
            raise ContextLengthError(
                f"Item {index}'s prompt has {len(ids)} tokens, more than the model's context "
                f"({view.n_ctx}). Shorten it."
            )
        encoded.append((ids, _answer_id(view, item.answer, index)))
    return encoded


def _answer_id(view: ModelView, answer: Any, index: int) -> int:
    tokenizer = view.tokenizer
    if isinstance(answer, bool) or not isinstance(answer, (str, int)):
        raise InvalidTextError(
            f"Item {index}'s answer is {answer!r}; give the answer text or its token id."
        )
    if isinstance(answer, str):
        ids = list(tokenizer(answer, add_special_tokens=False)["input_ids"])
        if not ids:
            raise EmptyTokenizationError(
                f"Item {index}'s answer {answer!r} tokenizes to nothing, so there is no answer "
                "token y. Give a non-empty answer (e.g. ' B' after 'Answer:')."
            )
        answer = ids[0]
    if not 0 <= answer < view.d_vocab:
        raise VocabularyError(
            f"Item {index}'s answer id {answer} is outside the vocabulary (0..{view.d_vocab - 1})."
        )
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is not None and answer == unk:
        raise VocabularyError(
            f"Item {index}'s answer is the unknown token ({unk}): the tokenizer does not know "
            "it, so P(answer) would measure <unk>. Spell the answer as the tokenizer does "
            "(e.g. with or without a leading space)."
        )
    return int(answer)
