"""Hugging Face datasets as corpus texts: columns to groups, a budget per group, early stops.

:meth:`~lensneurons.Corpus.from_dataset` reads here. What it accepts:

- a ``datasets.Dataset`` (in memory, or memory-mapped by ``load_from_disk``) or an
  ``IterableDataset`` (``streaming=True``) with a text column (``text=``) and a group column
  (``group=``) naming each row's group (a string, or a ``ClassLabel``, read as its name);
- a ``DatasetDict`` / ``IterableDatasetDict`` (what ``load_dataset`` returns without
  ``split=``): one of its splits is read, ``split=`` (needed when it has several);
- with ``group=None``, a ``{group: dataset}`` dict (a plain ``dict`` or a ``DatasetDict``): every
  row of ``dataset`` belongs to ``group``. This is the form for per-language configurations
  (FLORES+, Wikipedia: one dataset per language).

Rows are read in order, and a group's rows stop being read once it has its budget:
``max_texts_per_group`` texts, or ``max_tokens_per_group`` tokens of ``tokenizer`` (a model or
its tokenizer; the counted tokens of :meth:`~lensneurons.Corpus.tokenize`, so a group holds at
least that many and ``collect(..., max_tokens_per_group=N)`` cuts exactly N). Reading stops as
soon as every group is full: at once for a ``{group: dataset}`` dict (each dataset is read only
until its group is full), and for a single dataset when the groups are known, from ``groups=``
or, for a ``Dataset``, from its group column. A stream without ``groups=`` cannot know that no
other group follows, so it is read to its end: pass ``groups=`` with a stream. A stream is never
materialised; only the texts kept are held.

``groups=`` keeps only those groups, in that order (otherwise groups come in the order of their
first row). ``split_lines=True`` cuts each row's text at newlines, every non-blank line one text
(Wikipedia articles: a line is a paragraph, and a budget counts lines). ``filter_language=True``
applies :class:`~lensneurons.corpora.language_filter.LanguageFilter` while reading, so budgets
count kept texts only.

``datasets`` is imported only when a dataset is read; without it the call raises
:class:`~lensneurons.errors.MissingDependencyError` naming the extra
(``pip install 'lensneurons[datasets]'``).

Examples:
    >>> from datasets import Dataset
    >>> ds = Dataset.from_dict({"text": ["Un.", "One.", "Deux.", "Two."],
    ...                         "lang": ["fr", "en", "fr", "en"]})
    >>> read_dataset(ds)[0]
    {'fr': ['Un.', 'Deux.'], 'en': ['One.', 'Two.']}
    >>> read_dataset({"en": ds}, group=None, max_texts_per_group=2)[0]
    {'en': ['Un.', 'One.']}
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from lensneurons.core import checks as _checks
from lensneurons.corpora.language_filter import LanguageFilter
from lensneurons.errors import (
    EmptyGroupError,
    InvalidTextError,
    MissingDependencyError,
    NoGroupsError,
    ParameterError,
)

__all__ = ["read_dataset"]

_STRING_TYPES = ("string", "large_string")
_ACCEPTED = (*_STRING_TYPES, "null")  # null: an empty column, or one of None only (rows say)
_BATCH = 1000  # rows per read of an in-memory Dataset (a stream is read row by row)


def import_datasets() -> Any:
    """The ``datasets`` package.

    Raises:
        MissingDependencyError: it is not installed.
    """
    try:
        import datasets
    except ImportError as err:
        raise MissingDependencyError(
            "Corpus.from_dataset reads Hugging Face datasets, and the package `datasets` is not "
            "installed: pip install 'lensneurons[datasets]' (or pip install datasets)."
        ) from err
    return datasets


def read_dataset(
    dataset: Any,
    *,
    text: str = "text",
    group: str | None = "lang",
    split: str | None = None,
    groups: Any = None,
    max_texts_per_group: int | None = None,
    max_tokens_per_group: int | None = None,
    tokenizer: Any = None,
    split_lines: bool = False,
    filter_language: bool = False,
) -> tuple[dict[str, list[str]], LanguageFilter | None]:
    """``{group: [text, ...]}`` read from ``dataset``, and the language filter used (or ``None``).

    The arguments are those of :meth:`~lensneurons.Corpus.from_dataset` (see the module
    docstring). Blank texts are passed on (the corpus drops them with a warning) and count for
    no budget.

    Raises:
        MissingDependencyError: ``datasets`` is not installed.
        ParameterError: ``dataset`` is not a dataset, a column is missing, the split is missing
            or not given, a budget is not an integer >= 1, ``max_tokens_per_group`` without
            ``tokenizer``, a group value that is not a name.
        InvalidTextError: the text column holds something else than strings.
        UnknownLanguageError: ``filter_language=True`` and a group is not a language code.
        NoGroupsError: the dataset has no rows.
        EmptyGroupError: a group of ``groups=`` has no row, a dataset of a ``{group: dataset}``
            dict has no row, or the language filter dropped every text of a group.
    """
    text = _column_name(text, "text")
    group = None if group is None else _column_name(group, "group")
    if split is not None and (not isinstance(split, str) or not split):
        raise ParameterError(f"split must be a split name such as 'train', got {split!r}.")
    wanted = _wanted_groups(groups)
    max_texts = _checks.optional_positive_int(max_texts_per_group, "max_texts_per_group")
    max_tokens = _checks.optional_positive_int(max_tokens_per_group, "max_tokens_per_group")
    count = _token_counter(tokenizer) if max_tokens is not None else None
    split_lines = _checks.flag(split_lines, "split_lines")
    filter_language = _checks.flag(filter_language, "filter_language")
    ds = import_datasets()

    sources = list(_sources(ds, dataset, group, split, wanted))
    language_filter = LanguageFilter() if filter_language else None
    if language_filter is not None:  # the groups known before reading are checked at once
        language_filter.add(wanted or [name for name, _ in sources if name is not None])
    reader = _Reader(text, max_texts, max_tokens, count, split_lines, language_filter)
    for name, source in sources:
        reader.read(ds, source, group, name, wanted)
        if wanted is not None and reader.full(wanted):
            break
    return reader.result(wanted), reader.filter


class _Reader:
    """Reads rows into ``{group: [text, ...]}`` while keeping count of the budgets."""

    def __init__(self, text: str, max_texts: int | None, max_tokens: int | None,
                 count: Callable[[str], int] | None, split_lines: bool,
                 language_filter: LanguageFilter | None) -> None:
        self.text, self.split_lines, self.filter = text, split_lines, language_filter
        self.max_texts, self.max_tokens, self.count = max_texts, max_tokens, count
        self.texts: dict[str, list[str]] = {}
        self.n_texts: dict[str, int] = {}
        self.n_tokens: dict[str, int] = {}
        self.rows = 0

    def full(self, groups: Any) -> bool:
        """Whether every group of ``groups`` has its budget (never, without a budget)."""
        if self.max_texts is None and self.max_tokens is None:
            return False
        return all(self._full(g) for g in groups)

    def _full(self, group: str) -> bool:
        return ((self.max_texts is not None and self.n_texts.get(group, 0) >= self.max_texts)
                or (self.max_tokens is not None
                    and self.n_tokens.get(group, 0) >= self.max_tokens))

    def read(self, ds: Any, source: Any, group: str | None, fixed: str | None,
             wanted: list[str] | None) -> None:
        """Read ``source``'s rows; ``fixed``: the group of every row (``group`` is then None)."""
        columns = [self.text] if fixed is not None else [self.text, group]
        where = "the dataset" if fixed is None else f"the dataset of group {fixed!r}"
        source, label = _checked_columns(ds, source, columns, where, self.text, group)
        if fixed is not None:
            known: list[str] | None = [fixed]
            self._start(fixed)
        else:
            known = wanted
            if known is None and isinstance(source, ds.Dataset) and (
                    self.filter is not None or self.max_texts or self.max_tokens):
                known = [_group_label(label(v), group, None, where)
                         for v in source.unique(group)]
            if known is not None and self.filter is not None:
                self.filter.add(known)  # every group checked before any row is read
        rows_before = self.rows
        for row_text, raw_group in _rows(ds, source, columns, where):
            self.rows += 1
            name = fixed if fixed is not None else _group_label(
                label(raw_group), group, self.rows - 1 - rows_before, where)
            if wanted is not None and name not in wanted:
                continue
            self._start(name)
            if not self._full(name):
                self._add(name, row_text, self.rows - 1 - rows_before, where)
            if known is not None and self.full(known):
                break
        if fixed is not None and self.rows == rows_before:
            raise EmptyGroupError(
                f"The dataset of group {fixed!r} has no rows. Remove the group or give it a "
                "dataset with rows.")

    def _start(self, name: str) -> None:
        if name not in self.texts:
            self.texts[name], self.n_texts[name], self.n_tokens[name] = [], 0, 0

    def _add(self, name: str, value: Any, index: int, where: str) -> None:
        if not isinstance(value, str):
            hint = (" Decode bytes first." if isinstance(value, (bytes, bytearray)) else
                    f" Drop such rows first: ds.filter(lambda row: isinstance(row[{self.text!r}], "
                    "str)).")
            raise InvalidTextError(
                f"Row {index} of {where} (group {name!r}) has {type(value).__name__} "
                f"{value!r:.60} in text column {self.text!r}, not a string.{hint}")
        pieces = [p.removesuffix("\r") for p in value.split("\n")] if self.split_lines else [value]
        for piece in pieces:
            if not piece.strip():
                if not self.split_lines:
                    self.texts[name].append(piece)  # the corpus drops it, with its warning
                continue
            if self.filter is not None and not self.filter.keep(name, piece):
                continue
            self.texts[name].append(piece)
            self.n_texts[name] += 1
            if self.count is not None:
                self.n_tokens[name] += self.count(piece)
            if self._full(name):
                return

    def result(self, wanted: list[str] | None) -> dict[str, list[str]]:
        """The texts per group, checked: no rows, groups asked for but absent, emptied groups."""
        if self.rows == 0:
            raise NoGroupsError(
                "The dataset has no rows, so the corpus would have no groups. Check the dataset "
                "(and split=) you passed.")
        if wanted is not None:
            absent = [g for g in wanted if g not in self.texts]
            if absent:
                found = ", ".join(repr(g) for g in self.texts) or "none of them"
                raise EmptyGroupError(
                    f"groups= asks for {', '.join(repr(g) for g in absent)}, but the dataset has "
                    f"no row of {'that group' if len(absent) == 1 else 'those groups'}. Groups "
                    f"read: {found}. Check the names (e.g. 'fr' against 'fra') or remove them.")
        order = wanted if wanted is not None else list(self.texts)
        if self.filter is not None:
            self.filter.finish([g for g in order if g in self.filter.languages], stacklevel=5)
        return {g: self.texts[g] for g in order}


def _column_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ParameterError(f"{what} must be a column name (a string), got {value!r}.")
    return value


def _wanted_groups(groups: Any) -> list[str] | None:
    """``groups=`` as checked, normalized group labels in order (``None``: every group)."""
    if groups is None:
        return None
    if isinstance(groups, str) or not hasattr(groups, "__iter__"):
        raise ParameterError(
            f"groups must be a list of group names, got {groups!r}: e.g. groups=['en', 'fr'].")
    names = [_group_label(g) for g in groups]
    if not names:
        raise ParameterError("groups is empty: pass None (every group) or some group names.")
    return list(dict.fromkeys(names))


def _group_label(value: Any, column: str | None = None, row: int | None = None,
                 where: str = "the dataset") -> str:
    """A group name as the corpus keys it, or the typed error naming the row it came from."""
    if not isinstance(value, str) or not value.strip():
        if column is None:
            raise ParameterError(
                f"Group names must be non-empty strings (a language code, a label), got {value!r}.")
        at = f"Row {row} of {where}" if row is not None else f"A row of {where}"
        raise ParameterError(
            f"{at} has {type(value).__name__} {value!r} in group column {column!r}, not a group "
            "name (a non-empty string). Map it to names first (ds.map, or ds.cast_column with a "
            "ClassLabel), drop such rows (ds.filter), or name another column with group=.")
    return _checks.group_label(value)


def _token_counter(tokenizer: Any) -> Callable[[str], int]:
    """Counts the tokens of a text as :meth:`Corpus.tokenize` does (no special tokens)."""
    if tokenizer is None:
        raise ParameterError(
            "max_tokens_per_group counts tokens, so it needs the tokenizer they are counted with: "
            "pass tokenizer=model (the model you will collect with) or its tokenizer; or cap "
            "texts with max_texts_per_group.")
    inner = getattr(tokenizer, "tokenizer", None)
    tok = inner if inner is not None else tokenizer
    if not callable(tok):
        raise ParameterError(
            f"tokenizer must be a model with a tokenizer or a Hugging Face tokenizer, got "
            f"{type(tokenizer).__name__}.")

    def count(piece: str) -> int:
        return len(tok(piece, add_special_tokens=False)["input_ids"])

    return count


def _is_dataset(ds: Any, value: Any) -> bool:
    return isinstance(value, (ds.Dataset, ds.IterableDataset))


def _not_a_dataset(value: Any) -> ParameterError:
    kind = type(value).__name__
    if isinstance(value, Mapping) and value and all(
            isinstance(v, (list, tuple)) for v in value.values()):
        hint = " For {group: [text, ...]} use Corpus.from_texts."
    elif hasattr(value, "to_dict") and hasattr(value, "columns"):
        hint = " For a pandas DataFrame use datasets.Dataset.from_pandas(df) first."
    else:
        hint = ""
    return ParameterError(
        f"Corpus.from_dataset reads a Hugging Face datasets.Dataset, IterableDataset, "
        f"DatasetDict or {{group: dataset}} dict, got {kind}.{hint}")


def _sources(ds: Any, dataset: Any, group: str | None, split: str | None,
             wanted: list[str] | None) -> Iterator[tuple[str | None, Any]]:
    """``(group or None, dataset)`` pairs to read, in order."""
    if _is_dataset(ds, dataset):
        if split is not None:
            raise ParameterError(
                f"split={split!r} picks a split of a DatasetDict, but this is one "
                f"{type(dataset).__name__}: leave split out.")
        if group is None:
            raise ParameterError(
                "group=None needs a {group: dataset} dict. With one dataset, name its group "
                "column, e.g. group='lang' (the column that says each row's language).")
        yield None, dataset
        return
    if not isinstance(dataset, Mapping) or not dataset or not all(
            _is_dataset(ds, v) for v in dataset.values()):
        if isinstance(dataset, Mapping) and not dataset:
            raise NoGroupsError(
                "The dataset dict is empty, so the corpus would have no groups. Pass "
                "{group: dataset} with at least one dataset.")
        raise _not_a_dataset(dataset)
    keys = list(dataset)
    if group is None:
        if split is not None:
            raise ParameterError(
                f"split={split!r} with group=None: the dict's keys are the groups, not splits. "
                "Pick the split when loading each dataset (load_dataset(..., split=...)), or "
                "name a group column with group=.")
        names = {_group_label(k): k for k in keys}
        for name in wanted if wanted is not None else names:
            if name in names:
                yield name, dataset[names[name]]
        return
    if split is None:
        if len(keys) > 1:
            raise ParameterError(
                f"The DatasetDict has the splits {', '.join(repr(k) for k in keys)}: pass "
                f"split={keys[0]!r} (or another of them). If its keys are the groups, pass "
                "group=None.")
        split = keys[0]
    if split not in dataset:
        raise ParameterError(
            f"The DatasetDict has no split {split!r}; its splits: "
            f"{', '.join(repr(k) for k in keys)}. Pass one of them as split=.")
    yield None, dataset[split]


def _checked_columns(ds: Any, source: Any, columns: list[Any], where: str, text: str,
                     group: str | None) -> tuple[Any, Callable[[Any], Any]]:
    """``source`` restricted to ``columns`` (when it knows its columns), and the group labeller.

    Raises:
        ParameterError: a column is missing, or the group column holds no names.
        InvalidTextError: the text column's feature is not a string.
    """
    names = source.column_names
    features = getattr(source, "features", None)
    if names is not None:
        missing = [c for c in columns if c not in names]
        if missing:
            raise _missing_columns(missing, names, features, where, text, group)
        source = source.select_columns(columns)
    label: Callable[[Any], Any] = _identity
    if features is not None:
        feature = features.get(text)
        dtype = getattr(feature, "dtype", None)
        if feature is not None and dtype not in _ACCEPTED:
            shown = dtype if dtype is not None else type(feature).__name__
            raise InvalidTextError(
                f"The text column {text!r} of {where} holds {shown}, not strings. Name the "
                f"column of texts with text={_text_columns(features, group) or '...'}.")
        feature = features.get(group) if group is not None and group in columns else None
        if isinstance(feature, ds.ClassLabel):
            label = feature.int2str
        elif feature is not None and getattr(feature, "dtype", None) not in _ACCEPTED:
            raise ParameterError(
                f"The group column {group!r} of {where} holds "
                f"{getattr(feature, 'dtype', type(feature).__name__)}, not group names. Map it to "
                "names first (ds.map, or ds.cast_column with a ClassLabel), or name another "
                "column with group=.")
    return source, label


def _identity(value: Any) -> Any:
    return value


def _text_columns(features: Any, group: str | None) -> str:
    """Up to three string columns other than the group column, as ``'a' or 'b'``."""
    found = [repr(n) for n, f in features.items()
             if n != group and getattr(f, "dtype", None) in _STRING_TYPES]
    return " or ".join(found[:3])


def _missing_columns(missing: list[str], names: list[str], features: Any, where: str, text: str,
                     group: str | None) -> ParameterError:
    has = ", ".join(repr(n) for n in names) or "none"
    what = " and ".join(repr(c) for c in missing)
    fixes = []
    if text in missing:
        candidates = _text_columns(features, group) if features is not None else ""
        fixes.append(f"text= the column of texts{f' ({candidates})' if candidates else ''}")
    if group is not None and group in missing:
        fixes.append("group= the column naming each row's group (or group=None with a "
                     "{group: dataset} dict)")
    return ParameterError(
        f"{where[0].upper()}{where[1:]} has no column {what}; its columns: {has}. Pass "
        f"{'; and '.join(fixes)}.")


def _rows(ds: Any, source: Any, columns: list[Any], where: str) -> Iterator[tuple[Any, Any]]:
    """``(text, group value or None)`` per row; an in-memory Dataset is read in batches."""
    text, group = columns[0], (columns[1] if len(columns) > 1 else None)
    if isinstance(source, ds.Dataset):
        for batch in source.iter(batch_size=_BATCH):
            groups = batch[group] if group is not None else [None] * len(batch[text])
            yield from zip(batch[text], groups)
        return
    for row in source:
        if text not in row or (group is not None and group not in row):
            missing = [c for c in columns if c not in row]
            raise _missing_columns(missing, list(row), None, where, text, group)
        yield row[text], (row[group] if group is not None else None)
