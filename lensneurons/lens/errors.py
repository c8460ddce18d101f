"""Typed errors of the lens subpackage; each message says what to do about it.

All derive from :class:`lensneurons.errors.LensNeuronsError` and from the built-in exception a
Python user would expect, so ``except ValueError`` keeps working.

Examples:
    >>> from lensneurons.lens.errors import PositionOutOfRangeError
    >>> issubclass(PositionOutOfRangeError, IndexError)
    True

"""

from __future__ import annotations

from lensneurons.errors import LensNeuronsError


class EmptyTokenSetError(LensNeuronsError, ValueError):
    """A word has no Start(w) tokens (empty word, or the tokenizer maps it to ``<unk>``)."""


class VocabularyUnavailableError(LensNeuronsError, TypeError):
    """The tokenizer cannot list its vocabulary, so Start(w) sets cannot be built."""


class PositionOutOfRangeError(LensNeuronsError, IndexError):
    """A requested position or layer lies outside the prompt or the model."""


class ReadoutError(LensNeuronsError, ValueError):
    """The model's logits are not ``unembed(final_norm(last residual))``, so a lens would lie."""


class NoItemsLeftError(LensNeuronsError, ValueError):
    """Every latent-language item was dropped by the Start(w) filters."""


class UnknownLanguageError(LensNeuronsError, KeyError):
    """A language has no shipped word list, or an item lacks the word in that language."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable.
        return str(self.args[0]) if self.args else ""
