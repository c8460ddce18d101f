"""Typed errors: each says what was wrong and what to do about it.

Every error raised on purpose by lensneurons derives from :class:`LensNeuronsError`, so
``except ln.LensNeuronsError`` catches them all; this module is their one home (``ln.errors``),
warnings included. ``docs/errors.md`` lists every bad input the tests try and what it raises.
Subclasses also derive from the built-in exception a Python user would expect (``ValueError``,
``KeyError``), so generic handlers work too.

Examples:
    >>> import lensneurons as ln
    >>> try:
    ...     ln.Corpus.from_texts({})
    ... except ln.errors.NoGroupsError as err:
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


class MissingDependencyError(LensNeuronsError, ImportError):
    """An optional package a function needs is not installed; the message names the extra."""


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


class ParameterError(LensNeuronsError, ValueError):
    """A parameter is out of its range (a rate outside (0, 1], a NaN factor, a zero batch size)."""


class InvalidTextError(LensNeuronsError, TypeError):
    """A text is not a string (``None``, a number, bytes) or holds nothing but whitespace."""


class LayerIndexError(LensNeuronsError, IndexError):
    """A layer index does not exist in the model or the neuron set."""


class ContextLengthError(LensNeuronsError, ValueError):
    """A window or a sequence is longer than the model's context."""


class VocabularyError(LensNeuronsError, IndexError):
    """A token id lies outside the model's vocabulary."""


class ResultExistsError(LensNeuronsError, FileExistsError):
    """A save would replace an existing result: pass ``overwrite=True`` or choose another folder."""


class CorruptResultError(LensNeuronsError, ValueError):
    """A saved result is truncated, edited or half-written: its files do not belong together."""


class ResultNotFoundError(LensNeuronsError, FileNotFoundError):
    """A folder holds no saved result of the kind asked for."""


class CheckpointMismatchError(LensNeuronsError, ValueError):
    """A checkpoint was written by a run on another model, corpus, site or settings."""


class UnwritablePathError(LensNeuronsError, OSError):
    """An output path cannot be written (checked before any computation starts)."""


class SAEFormatError(LensNeuronsError, ValueError):
    """A sparse autoencoder's files or config are not a supported SAELens SAE."""


class GradientUnavailableError(LensNeuronsError, RuntimeError):
    """A gradient pass cannot run: the model's weights are inference tensors."""


class ShortDocumentError(LensNeuronsError, ValueError):
    """A document of a per-document detector (PLND) has fewer than 2 counted tokens."""


class MissingLanguagesWarning(UserWarning):
    """Programming languages asked for have no readable source files on this machine."""


# --- the lens -----------------------------------------------------------------------------
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


class EvaluationInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped :func:`~lensneurons.perplexity_matrix`; ``partial`` holds the finished rows.

    A ``KeyboardInterrupt`` (so the program still stops, and ``except Exception`` does not
    swallow it), deliberately *not* a :class:`LensNeuronsError`. Catch it to keep the work::

        try:
            matrix = ln.perplexity_matrix(model, corpus, neurons)
        except ln.errors.EvaluationInterrupted as stop:
            matrix = stop.partial  # the rows finished before Ctrl-C, per sequence too

    Attributes:
        partial: the :class:`~lensneurons.evaluate.PerplexityMatrix` of the finished rows (maybe
            empty).
        finished: their names.
        stopped_at: the row that was running.
    """

    def __init__(self, message: str, partial: object, finished: list[str],
                 stopped_at: str) -> None:
        super().__init__(message)
        self.partial = partial
        self.finished = finished
        self.stopped_at = stopped_at


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped :func:`~lensneurons.sweep`; ``partial`` holds the values already measured.

    A ``KeyboardInterrupt``, deliberately *not* a :class:`LensNeuronsError`. With ``out=`` the
    finished values are also on disk::

        try:
            result = ln.sweep(model, make_hooks, values, prompts=prompts, target="fr")
        except ln.errors.SweepInterrupted as stop:
            result = stop.partial  # a SweepResult of the finished values

    Attributes:
        partial: a :class:`~lensneurons.evaluate.SweepResult` of the finished values.
        stopped_at: the value that was running.
        out: the file the finished values were written to, or ``None``.
    """

    def __init__(self, message: str, partial: object, stopped_at: object,
                 out: object = None) -> None:
        super().__init__(message)
        self.partial = partial
        self.stopped_at = stopped_at
        self.out = out


# --- warnings -------------------------------------------------------------------------------
class EmptyInterventionWarning(UserWarning):
    """Intervention hooks that select no unit: applying them changes nothing."""


class EmptySetWarning(UserWarning):
    """A detector gave a group no unit: its set would change nothing; loosen the threshold."""


class KVCacheError(LensNeuronsError, RuntimeError):
    """The KV cache was asked for, but here cached decoding disagrees with the forward pass.

    Raised by :func:`~lensneurons.evaluate.generate` for ``use_past_kv_cache=True`` when the
    one-time check of the model (:func:`~lensneurons.evaluate.check_kv_cache`) found that cached
    greedy decoding does not reproduce the greedy argmax of the full forward pass.
    """


class InputFileError(LensNeuronsError, OSError):
    """An input file (a text file on the command line) is missing, a folder, binary or empty."""


class CollectInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped :func:`~lensneurons.collect`; ``partial`` holds the finished batches.

    A ``KeyboardInterrupt`` (so the program still stops), deliberately *not* a
    :class:`LensNeuronsError`. The batch that was running is not counted; with ``checkpoint=``
    the finished batches are also on disk, and ``collect(..., resume=True)`` continues::

        try:
            stats = ln.collect(model, corpus, checkpoint="runs/ckpt")
        except ln.errors.CollectInterrupted as stop:
            stats = stop.partial  # the statistics of stop.batches_done batches (or None)

    Attributes:
        partial: :class:`~lensneurons.ActivationStats` of the finished batches (groups with no
            finished token left out), or ``None`` when no batch finished.
        batches_done: batches finished (in the order ``collect`` runs them).
        n_batches: batches of the whole run.
        checkpoint: the folder the finished batches were saved to, or ``None``.
    """

    def __init__(self, message: str, partial: object, batches_done: int, n_batches: int,
                 checkpoint: object = None) -> None:
        super().__init__(message)
        self.partial = partial
        self.batches_done = batches_done
        self.n_batches = n_batches
        self.checkpoint = checkpoint


class PLNDInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped :func:`~lensneurons.plnd`; ``partial`` holds the finished documents.

    A ``KeyboardInterrupt`` (so the program still stops), deliberately *not* a
    :class:`LensNeuronsError`. The batch that was running is not counted::

        try:
            result = ln.plnd(model, corpus)
        except ln.errors.PLNDInterrupted as stop:
            result = stop.partial  # document frequencies over stop.docs_done documents (or None)

    Attributes:
        partial: :class:`~lensneurons.detect.plnd.PLNDResult` of the finished documents (groups
            without a finished document left out), or ``None`` when no batch finished.
        docs_done: documents finished.
        n_docs: documents of the whole run.
        batches_done: batches finished (in the order ``plnd`` runs them: longest first).
        n_batches: batches of the whole run.
    """

    def __init__(self, message: str, partial: object, docs_done: int, n_docs: int,
                 batches_done: int, n_batches: int) -> None:
        super().__init__(message)
        self.partial = partial
        self.docs_done = docs_done
        self.n_docs = n_docs
        self.batches_done = batches_done
        self.n_batches = n_batches


class BatchSplitWarning(UserWarning):
    """A batch ran out of accelerator memory; it was split and retried (counts stay exact)."""


class SearchBoundWarning(UserWarning):
    """An automatic parameter search stopped at the bound of its range: widen the range."""
