"""Corpus: texts or (prompt, response) examples per group, tokenized into counted batches.

A group is a language, a culture, a programming language: any label whose tokens should be
counted together. Tokenization happens lazily, once per tokenizer, when a model first asks for
batches. Each token carries a *counted* flag: BOS (unless ``count_bos=True``), prompt tokens of
examples and padding are never counted; every statistic and every perplexity uses only counted
tokens.

Batches are length-bucketed and right-padded. With causal attention a real token never attends to
padding on its right, so no attention mask is needed and padding cannot change a counted value.

Group names are normalized when the corpus is built: surrounding whitespace is stripped and
Unicode is composed (NFC), so names that print alike (``"français"`` typed, or read from a macOS
file name in NFD; ``" fr"``) are one group, their texts merged in the order given.

Texts are checked when the corpus is built: a text that is not a string (``None``, a number,
bytes) raises :class:`~lensneurons.errors.InvalidTextError`; an empty or whitespace-only text (a
blank line of a file) is *dropped with a warning*, since it holds nothing to count, and a group left
with no text raises :class:`~lensneurons.errors.EmptyGroupError`. Examples are handled alike, by
their response.

Texts can also come from a Hugging Face dataset (:meth:`Corpus.from_dataset`, read by
:mod:`lensneurons.corpora.hf`: a budget per group, streams read only as far as needed), and
``filter_language=True`` keeps a text only where the offline language identifier agrees with its
group (:mod:`lensneurons.corpora.language_filter`); what it dropped stays on the corpus
(``corpus.language_report``, ``corpus.dropped``).

Examples:
    >>> import lensneurons as ln
    >>> corpus = ln.Corpus.from_texts({"en": ["The cat sleeps."], "fr": ["Le chat dort."]})
    >>> corpus.groups
    ['en', 'fr']
    >>> tokenized = corpus.tokenize(ln.organism.load())
    >>> batch = next(tokenized.batches(batch_size=2))
    >>> batch.tokens.shape[0], batch.n_counted.tolist() == tokenized.n_tokens.tolist()
    (2, True)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool, Int

from lensneurons.core import checks as _checks
from lensneurons.core.model import ModelView
from lensneurons.corpora import hf
from lensneurons.corpora._texts import clean_items, group_name
from lensneurons.corpora.language_filter import LanguageFilter
from lensneurons.errors import (
    ContextLengthError,
    EmptyTokenizationError,
    NoGroupsError,
    ParameterError,
)

_DEFAULT_MAX_WINDOW = 1024


@dataclass(frozen=True)
class TokenSequence:
    """One model input: token ids and which of them are counted."""

    group: int
    tokens: Int[torch.Tensor, " pos"]
    counted: Bool[torch.Tensor, " pos"]


@dataclass(frozen=True)
class Batch:
    """A right-padded batch whose rows are ordered by group.

    Attributes:
        tokens: token ids, padding filled with the pad id.
        counted: which positions are counted (never padding).
        rows: the group index of every row (non-decreasing).
        n_counted: counted tokens per group of the corpus (zeros for absent groups).
        segments: ``(group, start, end)`` ranges of the batch's counted tokens, flattened in
            row-major order, one range per group present.
    """

    tokens: Int[torch.Tensor, "batch pos"]
    counted: Bool[torch.Tensor, "batch pos"]
    rows: Int[torch.Tensor, " batch"]
    n_counted: Int[torch.Tensor, " group"]
    segments: tuple[tuple[int, int, int], ...]


class TokenizedCorpus:
    """Token sequences of every group for one tokenizer, and the batches made from them."""

    def __init__(self, groups: list[str], sequences: list[TokenSequence], pad_id: int) -> None:
        self.groups = groups
        self.sequences = sequences
        self.pad_id = pad_id

    def __repr__(self) -> str:
        counts = ", ".join(f"{g}={n}" for g, n in zip(self.groups, self.n_tokens.tolist()))
        return f"TokenizedCorpus({len(self.sequences)} sequences; counted tokens: {counts})"

    @property
    def n_tokens(self) -> Int[torch.Tensor, " group"]:
        """Counted tokens per group."""
        totals = torch.zeros(len(self.groups), dtype=torch.int64)
        for seq in self.sequences:
            totals[seq.group] += int(seq.counted.sum())
        return totals

    def limit(self, max_tokens_per_group: int | None) -> TokenizedCorpus:
        """The first sequences of each group, up to ``max_tokens_per_group`` counted tokens.

        The last sequence taken is cut so that each group reaches the cap exactly when it can.

        Raises:
            ParameterError: ``max_tokens_per_group`` is not ``None`` or an integer >= 1.
        """
        if max_tokens_per_group is None:
            return self
        max_tokens_per_group = _checks.positive_int(max_tokens_per_group, "max_tokens_per_group")
        budget = [max_tokens_per_group] * len(self.groups)
        kept = []
        for seq in self.sequences:
            left = budget[seq.group]
            if left <= 0:
                continue
            n = int(seq.counted.sum())
            if n > left:
                cut = int(torch.nonzero(seq.counted.cumsum(0) == left)[0]) + 1
                seq = TokenSequence(seq.group, seq.tokens[:cut], seq.counted[:cut])
                n = left
            budget[seq.group] = left - n
            kept.append(seq)
        return TokenizedCorpus(self.groups, kept, self.pad_id)

    def n_batches(self, batch_size: int) -> int:
        """How many batches :meth:`batches` yields.

        Raises:
            ParameterError: ``batch_size`` is not an integer >= 1.
        """
        return math.ceil(len(self.sequences) / _checks.positive_int(batch_size, "batch_size"))

    def batches(self, batch_size: int = 8, *, skip: int = 0) -> Iterator[Batch]:
        """Length-bucketed, right-padded batches, longest first, rows ordered by group.

        The list is deterministic; ``skip`` leaves out its first batches without building them
        (a resumed collection).

        Raises:
            ParameterError: ``batch_size`` is not an integer >= 1 (raised at the call, before
                iteration).
        """
        return self._batches(_checks.positive_int(batch_size, "batch_size"), skip)

    def _batches(self, batch_size: int, skip: int = 0) -> Iterator[Batch]:
        order = sorted(range(len(self.sequences)), key=lambda i: -len(self.sequences[i].tokens))
        for start in range(skip * batch_size, len(order), batch_size):
            chunk = sorted((self.sequences[i] for i in order[start:start + batch_size]),
                           key=lambda s: s.group)
            yield self._pad(chunk)

    def _pad(self, chunk: list[TokenSequence]) -> Batch:
        width = max(len(seq.tokens) for seq in chunk)
        tokens = torch.full((len(chunk), width), self.pad_id, dtype=torch.int64)
        counted = torch.zeros((len(chunk), width), dtype=torch.bool)
        n_counted = torch.zeros(len(self.groups), dtype=torch.int64)
        for row, seq in enumerate(chunk):
            tokens[row, : len(seq.tokens)] = seq.tokens
            counted[row, : len(seq.tokens)] = seq.counted
            n_counted[seq.group] += int(seq.counted.sum())
        rows = torch.tensor([seq.group for seq in chunk], dtype=torch.int64)
        segments, start = [], 0
        for group in rows.unique_consecutive().tolist():
            end = start + int(n_counted[group])
            segments.append((group, start, end))
            start = end
        return Batch(tokens, counted, rows, n_counted, tuple(segments))


class Corpus:
    """Texts or (prompt, response) examples per group; see the module docstring.

    Build one with :meth:`from_texts`, :meth:`from_dataset` or :meth:`from_examples`.

    Attributes:
        items: ``{group: [text, ...]}`` (or ``[(prompt, response), ...]``), as kept.
        language_report: with ``filter_language=True``, the filter's table per group (texts
            kept, dropped, share dropped, languages found in the dropped texts); else ``None``.
        dropped: with ``filter_language=True``, ``{group: [(text, identified language), ...]}``
            of the texts the filter dropped; else ``{}``.
    """

    def __init__(
        self,
        items: Mapping[str, Sequence[str] | Sequence[tuple[str, str]]],
        *,
        examples: bool,
        pack: bool = False,
        window: int | None = None,
        count_bos: bool = False,
        filter_language: bool | LanguageFilter = False,
    ) -> None:
        form = "{group: [(prompt, response), ...]}" if examples else "{group: [text, ...]}"
        _checks.mapping(items, "The corpus", form)
        if not items:
            raise NoGroupsError(f"The corpus has no groups. Pass {form}.")
        if window is not None:
            window = _checks.positive_int(window, "window", minimum=2)
        merged: dict[str, list[Any]] = {}  # names that print alike: one group, merged first
        for group, group_items in items.items():
            name = _checks.group_label(group_name(group))
            if isinstance(group_items, (str, bytes)) or hasattr(group_items, "keys"):
                clean_items(name, group_items, examples)  # raises the typed error
            try:
                merged.setdefault(name, []).extend(group_items)
            except TypeError:
                clean_items(name, group_items, examples)  # raises the typed error
        self.items: dict[str, list[Any]] = {name: clean_items(name, merged_items, examples)
                                            for name, merged_items in merged.items()}
        self.language_report: Any = None
        self.dropped: dict[str, list[tuple[str, str]]] = {}
        if isinstance(filter_language, LanguageFilter):  # applied while reading (from_dataset)
            language_filter: LanguageFilter | None = filter_language
        elif _checks.flag(filter_language, "filter_language"):
            if examples:
                raise ParameterError("filter_language applies to texts, not to examples.")
            language_filter = LanguageFilter(self.items)
            self.items = {g: language_filter.split(g, texts) for g, texts in self.items.items()}
            language_filter.finish(stacklevel=4)
        else:
            language_filter = None
        if language_filter is not None:
            self.language_report = language_filter.report().loc[self.groups]
            self.dropped = {g: language_filter.dropped[g] for g in self.groups}
        self.examples = examples
        self.pack = _checks.flag(pack, "pack")
        self.window = window
        self.count_bos = _checks.flag(count_bos, "count_bos")
        self._cache: dict[int, TokenizedCorpus] = {}

    @classmethod
    def from_texts(
        cls,
        texts: Mapping[str, Sequence[str]],
        *,
        pack: bool = False,
        window: int | None = None,
        count_bos: bool = False,
        filter_language: bool = False,
    ) -> Corpus:
        """A corpus of plain texts; every token after BOS is counted.

        Args:
            texts: ``{group: [text, ...]}``. Group names are stripped and composed (NFC);
                names that become equal are one group, their texts merged in order.
            pack: concatenate each group's token stream and cut it into ``window``-token
                sequences (Tang et al.'s packed windows) instead of one text per sequence.
            window: sequence length in tokens, BOS included (default: the model's context,
                at most 1024; at most the model's context). Longer texts are split into several
                sequences, never truncated.
            count_bos: also count the BOS token.
            filter_language: keep a text only when the offline language identifier names it in
                its group's language (group names must then be language codes, e.g. ``"fr"``,
                ``"fra"``, ``"pt_BR"``); what was dropped is in :attr:`language_report` and
                :attr:`dropped` (:mod:`~lensneurons.corpora.language_filter`).

        Raises:
            NoGroupsError: ``texts`` is empty.
            EmptyGroupError: a group has no texts, or only empty or whitespace-only ones, or
                none left by the language filter.
            InvalidTextError: a text is not a string, or a group is one string, not a list.
            ParameterError: a group name is not a non-empty string, or ``window`` is not an
                integer >= 2.
            UnknownLanguageError: ``filter_language=True`` and a group name is not a language
                code the identifier knows.

        Warns:
            UserWarning: empty or whitespace-only texts were dropped (the count per group); the
                language filter dropped more than a fifth of a group's texts.

        Examples:
            >>> import lensneurons as ln
            >>> corpus = ln.Corpus.from_texts({"en": ["A cat.", "  ", "A dog."]})
            >>> len(corpus)  # the blank text was dropped, with a warning
            2
            >>> ln.Corpus.from_texts({"fr": ["Un."], " fr ": ["Deux."]}).items
            {'fr': ['Un.', 'Deux.']}
            >>> corpus = ln.Corpus.from_texts(
            ...     {"fr": ["Le chat dort sur le tapis.", "Il pleut depuis ce matin.",
            ...             "Nous partons demain à la mer.", "Elle lit un livre au jardin.",
            ...             "The cat sleeps on the mat."]},
            ...     filter_language=True)
            >>> corpus.dropped
            {'fr': [('The cat sleeps on the mat.', 'en')]}
        """
        return cls(texts, examples=False, pack=pack, window=window, count_bos=count_bos,
                   filter_language=filter_language)

    @classmethod
    def from_dataset(
        cls,
        dataset: Any,
        *,
        text: str = "text",
        group: str | None = "lang",
        split: str | None = None,
        groups: Sequence[str] | None = None,
        max_texts_per_group: int | None = None,
        max_tokens_per_group: int | None = None,
        tokenizer: Any = None,
        split_lines: bool = False,
        filter_language: bool = False,
        pack: bool = False,
        window: int | None = None,
        count_bos: bool = False,
    ) -> Corpus:
        """A corpus of plain texts read from a Hugging Face dataset (``pip install datasets``).

        The texts are those of :meth:`from_texts` with ``{group: [text of each row, ...]}``,
        rows in order; see :mod:`lensneurons.corpora.hf` for the forms and the early stops.

        Args:
            dataset: a ``datasets.Dataset`` or ``IterableDataset`` (``streaming=True``) with a
                text column and a group column; a ``DatasetDict`` / ``IterableDatasetDict`` (one
                split is read, see ``split``); or, with ``group=None``, a ``{group: dataset}``
                dict (plain or ``DatasetDict``) whose every row belongs to its key.
            text: the column of texts (strings).
            group: the column naming each row's group (strings, or a ``ClassLabel``); ``None``
                for a ``{group: dataset}`` dict.
            split: the split of a ``DatasetDict`` to read (needed when it has several).
            groups: keep only these groups, in this order (default: every group, in the order
                of their first row). Needed for a stream to stop early.
            max_texts_per_group: stop reading a group's rows once it has this many texts.
            max_tokens_per_group: stop reading a group's rows once its texts hold at least this
                many tokens of ``tokenizer`` (the counted tokens; ``collect`` with the same
                ``max_tokens_per_group`` then cuts exactly).
            tokenizer: the model (or its tokenizer) tokens are counted with; needed by
                ``max_tokens_per_group``.
            split_lines: cut each row's text at newlines, every non-blank line one text
                (paragraphs of Wikipedia articles); budgets and the filter count lines.
            filter_language: keep a text only when the offline language identifier names it in
                its group's language, while reading (budgets count kept texts); see
                :meth:`from_texts`.
            pack: as for :meth:`from_texts`.
            window: as for :meth:`from_texts`.
            count_bos: as for :meth:`from_texts`.

        Raises:
            MissingDependencyError: ``datasets`` is not installed.
            ParameterError: ``dataset`` is not a dataset; a column is missing (the message
                lists the columns it has); a DatasetDict without ``split=`` or without that
                split; a budget is not an integer >= 1; ``max_tokens_per_group`` without
                ``tokenizer``; a group value is not a name.
            InvalidTextError: the text column holds something else than strings.
            UnknownLanguageError: ``filter_language=True`` and a group is not a language code.
            NoGroupsError: the dataset has no rows.
            EmptyGroupError: a group of ``groups=`` has no row, or no text is left in a group.

        Warns:
            UserWarning: as for :meth:`from_texts`.

        Examples:
            >>> import lensneurons as ln
            >>> from datasets import Dataset
            >>> ds = Dataset.from_dict({
            ...     "text": ["Le chat dort.", "The cat sleeps.", "Il pleut.", "It rains."],
            ...     "lang": ["fr", "en", "fr", "en"]})
            >>> ln.Corpus.from_dataset(ds).items
            {'fr': ['Le chat dort.', 'Il pleut.'], 'en': ['The cat sleeps.', 'It rains.']}
            >>> ln.Corpus.from_dataset(ds, groups=["en"], max_texts_per_group=1)
            Corpus(texts: en=1)
        """
        texts, language_filter = hf.read_dataset(
            dataset, text=text, group=group, split=split, groups=groups,
            max_texts_per_group=max_texts_per_group, max_tokens_per_group=max_tokens_per_group,
            tokenizer=tokenizer, split_lines=split_lines, filter_language=filter_language)
        return cls(texts, examples=False, pack=pack, window=window, count_bos=count_bos,
                   filter_language=language_filter or False)

    @classmethod
    def from_examples(
        cls,
        examples: Mapping[str, Sequence[tuple[str, str]]],
        *,
        count_bos: bool = False,
    ) -> Corpus:
        """A corpus of ``(prompt, response)`` pairs in which only response tokens are counted.

        This is Zhang et al.'s response-only probability, computed in one pass instead of by
        subtracting a prompt-only pass. A token is a response token when it starts at or after
        the first character of the response.

        Raises:
            NoGroupsError: ``examples`` is empty.
            EmptyGroupError: a group has no examples, or only ones with a blank response.
            InvalidTextError: an example is not a ``(prompt, response)`` pair of strings.

        Warns:
            UserWarning: examples whose response is empty or whitespace-only were dropped.

        Examples:
            >>> import lensneurons as ln
            >>> corpus = ln.Corpus.from_examples({"fr": [("Q: 2+2? A:", " quatre")]})
            >>> corpus
            Corpus(examples: fr=1)
        """
        return cls(examples, examples=True, count_bos=count_bos)

    @property
    def groups(self) -> list[str]:
        """Group names, in the order given."""
        return list(self.items)

    def __len__(self) -> int:
        return sum(len(group_items) for group_items in self.items.values())

    def __repr__(self) -> str:
        kind = "examples" if self.examples else "texts"
        sizes = ", ".join(f"{g}={len(v)}" for g, v in self.items.items())
        return f"Corpus({kind}: {sizes}{', packed' if self.pack else ''})"

    def tokenize(self, model: Any) -> TokenizedCorpus:
        """Token sequences for ``model``'s tokenizer (cached per tokenizer).

        Raises:
            EmptyTokenizationError: a group's texts tokenize to no counted token.
            ContextLengthError: ``window`` is longer than the model's context (``n_ctx``).
        """
        view = model if isinstance(model, ModelView) else ModelView(model)
        key = id(view.tokenizer)
        if key not in self._cache:
            self._cache[key] = self._tokenize(view)
        return self._cache[key]

    def _tokenize(self, view: ModelView) -> TokenizedCorpus:
        tokenizer, bos = view.tokenizer, view.bos_token_id
        if self.window is not None and self.window > view.n_ctx:
            raise ContextLengthError(
                f"window={self.window} is longer than the model's context of {view.n_ctx} "
                f"tokens; the positions past it do not exist. Use window <= {view.n_ctx}, or "
                "leave window=None (the model's context, at most 1024)."
            )
        window = self.window or min(view.n_ctx, _DEFAULT_MAX_WINDOW)
        body = window - (bos is not None)
        sequences: list[TokenSequence] = []
        for index, (group, group_items) in enumerate(self.items.items()):
            if self.examples:
                pieces = [_encode_example(tokenizer, p, r, body, group) for p, r in group_items]
            else:
                texts = list(group_items)
                pieces = [(ids, [True] * len(ids)) for ids in _encode_texts(tokenizer, texts)]
            if self.pack:
                stream = [t for ids, _ in pieces for t in ids]
                pieces = [(stream, [True] * len(stream))]
            group_seqs = [
                _sequence(index, ids[s:s + body], flags[s:s + body], bos, self.count_bos)
                for ids, flags in pieces for s in range(0, len(ids), body)
            ]
            group_seqs = [seq for seq in group_seqs if seq.counted.any()]
            if not group_seqs:
                raise EmptyTokenizationError(
                    f"Every {'response' if self.examples else 'text'} of group {group!r} "
                    "tokenizes to nothing that can be counted (a response merged into its "
                    "prompt's last token?). Check the texts of this group, e.g. end each prompt "
                    "with a space or a separator."
                )
            sequences.extend(group_seqs)
        pad_id = tokenizer.pad_token_id
        if pad_id is None:
            pad_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
        return TokenizedCorpus(self.groups, sequences, int(pad_id))


def _encode_texts(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    return [list(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


def _encode_example(
    tokenizer: Any, prompt: str, response: str, body: int, group: str
) -> tuple[list[int], list[bool]]:
    text = prompt + response
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        flags = [start >= len(prompt) for start, _ in enc["offset_mapping"]]
    else:
        p_ids = _encode_texts(tokenizer, [prompt])[0]
        r_ids = _encode_texts(tokenizer, [response])[0]
        ids, flags = p_ids + r_ids, [False] * len(p_ids) + [True] * len(r_ids)
    if len(ids) > body:
        warnings.warn(
            f"An example of group {group!r} has {len(ids)} tokens, more than the window "
            f"({body}); it is truncated to its first {body} tokens.",
            stacklevel=4,
        )
        ids, flags = ids[:body], flags[:body]
    return ids, flags


def _sequence(
    group: int, ids: list[int], flags: list[bool], bos: int | None, count_bos: bool
) -> TokenSequence:
    if bos is not None:
        ids, flags = [bos, *ids], [count_bos, *flags]
    return TokenSequence(
        group, torch.tensor(ids, dtype=torch.int64), torch.tensor(flags, dtype=torch.bool)
    )
