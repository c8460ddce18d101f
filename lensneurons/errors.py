"""Typed errors: each says what was wrong and what to do about it.

Every error raised on purpose by lensneurons derives from :class:`LensNeuronsError`, so
``except ln.LensNeuronsError`` catches them all. Subclasses also derive from the built-in
exception a Python user would expect (``ValueError``, ``KeyError``), so generic handlers work too.

Examples:
    >>> import lensneurons as ln
    >>> try:
    ...     ln.Corpus.from_texts({})
    ... except ln.NoGroupsError as err:
    ...     print(type(err).__name__)
    NoGroupsError
"""

from __future__ import annotations


class LensNeuronsError(Exception):
    """Base class of every error lensneurons raises on purpose."""


class NoGroupsError(LensNeuronsError, ValueError):
    """A corpus or a set of statistics has no groups at all."""


class EmptyGroupError(LensNeuronsError, ValueError):
    """A group (language, culture, ...) has no texts or examples."""


class EmptyTokenizationError(LensNeuronsError, ValueError):
    """Every text of a group tokenizes to nothing that can be counted."""


class TooFewGroupsError(LensNeuronsError, ValueError):
    """A detector that compares groups was given fewer than two."""


class NegativeCountError(LensNeuronsError, ValueError):
    """Activation or token counts are negative."""


class ShapeMismatchError(LensNeuronsError, ValueError):
    """A tensor (neuron set, values, counts) does not fit the model or the other inputs."""


class ModelMismatchError(LensNeuronsError, ValueError):
    """Saved statistics or neuron sets were made with another model."""


class UnknownSiteError(LensNeuronsError, KeyError):
    """A site name (where statistics are read and interventions write) is not known."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable.
        return str(self.args[0]) if self.args else ""


class PositionError(LensNeuronsError, IndexError):
    """An intervention's ``positions`` do not exist in the forward pass it acts on."""


class HookShapeError(LensNeuronsError, RuntimeError):
    """A hook saw a tensor of another width than its site promises (an adapter gap)."""


class UnknownGroupError(LensNeuronsError, KeyError):
    """A group name was asked for that the statistics or neuron sets do not hold."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class MissingStatisticError(LensNeuronsError, ValueError):
    """A statistic (sums, maxima, per-sequence means) was not collected or not loaded."""


class UnsupportedModelError(LensNeuronsError, TypeError):
    """The object is not a TransformerLens model, or its architecture is not supported."""


class ModelNotInstalledError(LensNeuronsError, ImportError):
    """A short model name was asked for whose registry package is not installed."""


class ModelSourceError(LensNeuronsError, ValueError):
    """A path or name is neither a Hugging Face folder, a GGUF file nor a known model."""


class ChecksumError(LensNeuronsError, ValueError):
    """A model file's sha256 is not the one its package promises."""


class ModelCacheError(LensNeuronsError, OSError):
    """A converted-model cache folder is incomplete or damaged."""


class InsufficientMemoryError(LensNeuronsError, MemoryError):
    """Loading a model in the requested dtype needs more memory than is free."""


class MissingTokenizerError(LensNeuronsError, ValueError):
    """A model folder or file carries no tokenizer."""


class SearchBoundWarning(UserWarning):
    """An automatic parameter search stopped at the bound of its range: widen the range."""
