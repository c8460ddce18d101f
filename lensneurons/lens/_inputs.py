"""The lens's inputs, checked and resolved: depths, prompts or tokens, positions, token sets.

Every bad input fails here, before a forward pass, with a typed error that says what to pass:
a depth outside ``0..L`` or a position outside a prompt (:class:`PositionOutOfRangeError`), a token
id outside the vocabulary (:class:`VocabularyError`), a prompt that is not a string
(:class:`InvalidTextError`), a prompt longer than the model's context
(:class:`ContextLengthError`), wrong types or empty lists (:class:`ParameterError`).

Examples:
    >>> resolve_depths([-1, 0], n_layers=4)
    [4, 0]
    >>> resolve_positions([-1], [3, 5]).tolist()
    [[2], [4]]
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from lensneurons.core import checks as _checks
from lensneurons.core.model import ModelView
from lensneurons.errors import (
    ContextLengthError,
    EmptyTokenSetError,
    InvalidTextError,
    ParameterError,
    PositionOutOfRangeError,
    VocabularyError,
)


def resolve_depths(depths: Any, n_layers: int) -> list[int]:
    """Lens depths as indices in ``0..L``; negative values count from ``L`` (``-1`` = ``L``).

    Depth ``0`` reads the embeddings, depth ``d`` the output of block ``d - 1``; it is not a
    block index.

    Raises:
        ParameterError: ``depths`` is not an int or a list of ints, or is empty.
        PositionOutOfRangeError: a depth outside ``-(L + 1)..L``.
    """
    if depths is None:
        return list(range(1, n_layers + 1))
    if isinstance(depths, numbers.Integral) and not isinstance(depths, bool):
        depths = [depths]
    if isinstance(depths, (str, bytes)) or not isinstance(depths, (Sequence, range, torch.Tensor)):
        raise ParameterError(
            f"depths must be an int or a list of ints in 0..{n_layers} (negative counts from "
            f"the end), got {depths!r}."
        )
    if len(depths) == 0:
        raise ParameterError(
            "depths is empty: pass None for every block output, or some depths.")
    keep = []
    for depth in depths:
        value = _checks.integer(depth, "each depth")
        index = value + n_layers + 1 if value < 0 else value
        if not 0 <= index <= n_layers:
            raise PositionOutOfRangeError(
                f"Depth {value} does not exist: lens depths are 0 (embeddings) .. {n_layers} "
                f"(output of the last block, {n_layers - 1}), negative values count from the "
                "end."
            )
        keep.append(index)
    return keep


def tokenize(model: Any, inputs: Any, d_vocab: int, n_ctx: int) -> tuple[list[torch.Tensor],
                                                                            list[int]]:
    """Rows of token ids and their lengths, from prompts or a token tensor.

    Raises:
        InvalidTextError: a prompt is not a string.
        ParameterError: no prompt, an empty token tensor, or one of a non-integer dtype.
        VocabularyError: a token id outside ``[0, d_vocab)``.
        ContextLengthError: a prompt longer than the model's context.
    """
    if isinstance(inputs, torch.Tensor):
        tokens = inputs.unsqueeze(0) if inputs.ndim == 1 else inputs
        if tokens.ndim != 2 or tokens.shape[0] == 0 or tokens.shape[1] == 0:
            raise ParameterError(
                f"Token inputs must be [batch, pos] with batch, pos >= 1, got "
                f"{tuple(inputs.shape)}."
            )
        if tokens.dtype == torch.bool or tokens.is_floating_point() or tokens.is_complex():
            raise ParameterError(
                f"Token inputs must be integer ids, got a {tokens.dtype} tensor; pass "
                "model.to_tokens(text) or a LongTensor."
            )
        bad = (tokens < 0) | (tokens >= d_vocab)
        if bad.any():
            raise VocabularyError(
                f"Token id {int(tokens[bad][0])} is outside the model's vocabulary [0, "
                f"{d_vocab}); pass ids from this model's tokenizer (model.to_tokens(text))."
            )
        rows, lengths = list(tokens.long()), [tokens.shape[1]] * tokens.shape[0]
    else:
        prompts = [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(prompts, Sequence) or isinstance(prompts, bytes):
            raise InvalidTextError(
                f"inputs must be a prompt, a list of prompts or a token tensor, got "
                f"{type(inputs).__name__}."
            )
        prompts = list(prompts)
        if not prompts:
            raise ParameterError("No prompts were given to the lens; pass at least one.")
        for i, prompt in enumerate(prompts):
            if not isinstance(prompt, str):
                raise InvalidTextError(
                    f"Prompt {i} is {type(prompt).__name__} {prompt!r}, not a string."
                )
        rows = [model.to_tokens(p, truncate=False)[0] for p in prompts]
        lengths = [len(r) for r in rows]
    if max(lengths) > n_ctx:
        raise ContextLengthError(
            f"A prompt has {max(lengths)} tokens, more than the model's context of {n_ctx}; "
            "shorten it."
        )
    return rows, lengths


def pad_id(model: Any) -> int:
    """The tokenizer's pad id (0 without one)."""
    tok = getattr(model, "tokenizer", None)
    pad = getattr(tok, "pad_token_id", None) if tok is not None else None
    return int(pad) if pad is not None else 0


def resolve_positions(positions: Any, lengths: list[int]) -> torch.Tensor:
    """Absolute positions ``[batch, n_pos]``.

    An int or a list of ints applies to every row; a tensor is per row: ``[]`` (one position
    for all), ``[batch]`` (one per row) or ``[batch, n_pos]``. A 1-d tensor whose length is not
    the batch is read as positions shared by every row.

    Raises:
        PositionOutOfRangeError: no position, a tensor of another dtype or row count, or a
            position outside its prompt.
    """
    n = len(lengths)
    if isinstance(positions, torch.Tensor):
        if positions.dtype == torch.bool or positions.is_floating_point():
            raise PositionOutOfRangeError(
                f"positions must hold integer positions, got a {positions.dtype} tensor."
            )
        if positions.numel() == 0:
            raise PositionOutOfRangeError(
                "positions is empty: ask for at least one position (e.g. -1, the last token)."
            )
        pos = positions.long().cpu()
        if pos.ndim == 0:
            pos = pos.reshape(1, 1).expand(n, 1)
        elif pos.ndim == 1:
            pos = pos.reshape(n, 1) if pos.numel() == n else pos.reshape(1, -1).expand(n, -1)
        elif pos.ndim != 2 or pos.shape[0] != n:
            raise PositionOutOfRangeError(
                f"A positions tensor must be [batch] or [batch, n_pos] with batch = {n} "
                f"prompts, got shape {tuple(positions.shape)}."
            )
    else:
        flat = [positions] if isinstance(positions, numbers.Integral) else positions
        if isinstance(flat, (str, bytes)) or not isinstance(flat, Sequence):
            raise PositionOutOfRangeError(
                f"positions must be an int, a list of ints or a tensor, got {positions!r}."
            )
        if not flat:
            raise PositionOutOfRangeError("positions is empty: ask for at least one position.")
        try:
            values = [_checks.integer(p, "each position") for p in flat]
        except ParameterError as err:
            raise PositionOutOfRangeError(str(err)) from None
        pos = torch.tensor(values, dtype=torch.long).reshape(1, -1).expand(n, -1)
    length = torch.tensor(lengths, dtype=torch.long).unsqueeze(1)
    absolute = torch.where(pos < 0, pos + length, pos)
    bad = (absolute < 0) | (absolute >= length)
    if bad.any():
        row = int(bad.any(1).nonzero()[0])
        raise PositionOutOfRangeError(
            f"Position(s) {pos[row].tolist()} are outside prompt {row} of {lengths[row]} tokens; "
            f"use 0..{lengths[row] - 1} or negative positions counted from the end."
        )
    return absolute.contiguous()


def resolve_sets(token_sets: Any, n_rows: int, d_vocab: int) -> list[tuple[str, list]]:
    """Name -> per-row list of LongTensor ids.

    Raises:
        ParameterError: ``token_sets`` is not a dict, or a set is a string or holds non-ints.
        EmptyTokenSetError: a set (or a row's set) is empty, or per-row sets do not match the
            prompts.
        VocabularyError: an id outside ``[0, d_vocab)``.
    """
    if token_sets is not None and not isinstance(token_sets, Mapping):
        raise ParameterError(
            f"token_sets must be a dict {{name: token ids}}, got {type(token_sets).__name__}."
        )
    out: list[tuple[str, list]] = []
    for name, spec in (token_sets or {}).items():
        spec = getattr(spec, "ids", spec)
        if isinstance(spec, torch.Tensor):
            spec = spec.tolist()
        if isinstance(spec, (str, bytes)) or not isinstance(spec, (Sequence, set, frozenset)):
            raise ParameterError(
                f"Token set {name!r} must be token ids, got {spec!r}; build the ids of a word "
                "with lensneurons.lens.start_tokens(model.tokenizer, word)."
            )
        spec = list(spec)
        per_row = bool(spec) and not isinstance(spec[0], numbers.Integral)
        if per_row and len(spec) != n_rows:
            raise EmptyTokenSetError(
                f"Token set {name!r} has {len(spec)} per-row sets for {n_rows} prompts; "
                "give one set per prompt or one shared list of ids."
            )
        rows = [_ids(name, getattr(s, "ids", s)) for s in spec] if per_row \
            else [_ids(name, spec)] * n_rows
        for r, ids in enumerate(rows):
            if not ids:
                raise EmptyTokenSetError(
                    f"Token set {name!r} is empty (row {r}); an empty set would read as P = 0. "
                    "Drop the word or build the set with lensneurons.lens.start_tokens."
                )
            if ids[0] < 0 or ids[-1] >= d_vocab:
                raise VocabularyError(
                    f"Token set {name!r} holds ids outside the vocabulary [0, {d_vocab}); "
                    "build it from this model's tokenizer (lensneurons.lens.start_tokens)."
                )
        out.append((name, [torch.tensor(ids, dtype=torch.long) for ids in rows]))
    return out


def _ids(name: str, ids: Any) -> list[int]:
    if isinstance(ids, (str, bytes)) or not hasattr(ids, "__iter__"):
        raise ParameterError(f"Token set {name!r} must hold token ids, got {ids!r}.")
    try:
        return sorted({_checks.integer(i, f"each id of token set {name!r}") for i in ids})
    except TypeError:
        raise ParameterError(f"Token set {name!r} must hold token ids, got {ids!r}.") from None


def check_fit_options(model: Any, texts: Any, **options: Any) -> None:
    """Check :meth:`TunedLens.fit`'s options before the model is touched.

    Raises:
        InvalidTextError: ``texts`` is not a list of strings.
        ParameterError: an option out of its range.
        ContextLengthError: ``seq_len`` is longer than the model's context.
    """
    if isinstance(texts, (str, bytes)) or not isinstance(texts, Sequence):
        raise InvalidTextError(
            f"texts must be a list of strings, got {type(texts).__name__}; pass [text, ...]."
        )
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidTextError(f"Text {i} is {type(text).__name__} {text!r}, not a string.")
    for name in ("steps", "batch_size"):
        _checks.positive_int(options[name], name)
    seq_len = _checks.positive_int(options["seq_len"], "seq_len", minimum=2)
    n_ctx = ModelView(model).n_ctx
    if seq_len > n_ctx:
        raise ContextLengthError(
            f"seq_len={seq_len} is longer than the model's context of {n_ctx} tokens; use "
            f"seq_len <= {n_ctx}."
        )
    for name in ("lr", "max_seconds"):
        if _checks.real(options[name], name) <= 0:
            raise ParameterError(f"{name} must be positive, got {options[name]!r}.")
    if _checks.real(options["weight_decay"], "weight_decay") < 0:
        raise ParameterError(f"weight_decay must be >= 0, got {options['weight_decay']!r}.")
    for name in ("seed", "frequent_tokens", "tail_samples"):
        _checks.positive_int(options[name], name, minimum=0)
    _checks.optional_positive_int(options["vocab_subset"], "vocab_subset")
    _checks.optional_positive_int(options["positions_per_step"], "positions_per_step")
    _checks.flag(options["lr_decay"], "lr_decay")
    if options["callback"] is not None and not callable(options["callback"]):
        raise ParameterError(
            f"callback must be a function callback(step, loss), got {options['callback']!r}."
        )
