"""The language-ID filter of a corpus: keep a line only where the identifier agrees with its group.

Web text labelled French holds English quotes, navigation menus, code and lines in no language at
all; counted as French they blur the very statistics that tell French units from English ones.
With ``filter_language=True`` (:meth:`~lensneurons.Corpus.from_texts`,
:meth:`~lensneurons.Corpus.from_dataset`) every text (a line, a sentence, a dataset row) is
named by the package's offline identifier (:mod:`lensneurons.corpora.langid`, fastText
``lid.176``, every language it knows) and kept only when the answer is its group's language. A
text too short to identify (fewer than 3 non-space characters, or no letter) is
:data:`~lensneurons.corpora.langid.UNKNOWN` and dropped too.

Group names must then be language codes the identifier knows, in any spelling
:func:`~lensneurons.corpora.langid.normalize` accepts (``"fr"``, ``"fra"``, ``"pt_BR"``,
``"zh-Hans"``); the corpus keeps the names as given. Other names raise
:class:`~lensneurons.errors.UnknownLanguageError` listing them.

What was dropped is reported, never silent: :meth:`LanguageFilter.report` is a table per group
(texts kept, dropped, the share dropped and the languages found in the dropped texts), and
:attr:`LanguageFilter.dropped` holds every dropped text with its identified language; a corpus
keeps both as ``corpus.language_report`` and ``corpus.dropped``. A group that loses more than
:data:`WARN_SHARE` of its texts warns (its column may name the wrong language), and a group that
loses every text raises :class:`~lensneurons.errors.EmptyGroupError`.

The identifier is weakest on one or two words and between close languages (pt read as es, uk as
ru: ``docs/methods/langid.md``); whole sentences are identified correctly about 98 % of the time.

Examples:
    >>> f = LanguageFilter(["fr", "en"])
    >>> f.split("fr", ["Le chat dort sur le canapé.", "The cat sleeps on the sofa."])
    ['Le chat dort sur le canapé.']
    >>> f.keep("en", "The dog barks at the postman.")
    True
    >>> f.report().to_dict("index")["fr"]
    {'language': 'fr', 'kept': 1, 'dropped': 1, 'dropped_share': 0.5, 'dropped_as': 'en 1'}
    >>> f.dropped["fr"]
    [('The cat sleeps on the sofa.', 'en')]
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from lensneurons.corpora import langid
from lensneurons.errors import EmptyGroupError, UnknownLanguageError

__all__ = ["WARN_SHARE", "LanguageFilter"]

WARN_SHARE = 0.2
"""A group that loses more than this share of its texts to the filter warns."""


class LanguageFilter:
    """Decides text by text whether a group keeps it, and counts what each group kept and dropped.

    Args:
        groups: the group names known so far (more may come with :meth:`add`); each must be a
            language code the identifier knows.

    Raises:
        UnknownLanguageError: a group name is not such a code (every such name is listed).

    Attributes:
        languages: ``{group: normalized language code}``.
        kept: ``{group: texts kept}``.
        dropped: ``{group: [(text, identified language), ...]}``, in the order read.
    """

    def __init__(self, groups: Iterable[str] = ()) -> None:
        self.languages: dict[str, str] = {}
        self.kept: dict[str, int] = {}
        self.dropped: dict[str, list[tuple[str, str]]] = {}
        self.add(groups)

    def add(self, groups: Iterable[str]) -> None:
        """Accept new groups (a stream names its groups as it goes).

        Raises:
            UnknownLanguageError: a group name is not a language code the identifier knows.
        """
        groups = [g for g in dict.fromkeys(groups) if g not in self.languages]
        codes = {g: langid.normalize(g) for g in groups}
        unknown = [g for g, code in codes.items() if code not in langid.supported()]
        if unknown:
            names = ", ".join(repr(g) for g in unknown)
            raise UnknownLanguageError(
                f"filter_language=True keeps a text only when the language identifier agrees with "
                f"its group, so group names must be language codes it knows; not languages: "
                f"{names}. Pass filter_language=False, or rename the groups to language codes "
                "('fr', 'fra', 'pt_BR', 'zh-Hans'; see lensneurons.corpora.langid.supported())."
            )
        for g in groups:
            self.languages[g] = codes[g]
            self.kept[g] = 0
            self.dropped[g] = []

    def split(self, group: str, texts: Sequence[str]) -> list[str]:
        """The texts of ``group`` that the identifier names its language, in order.

        Raises:
            UnknownLanguageError: ``group`` is not a language code (a new group is accepted
                as by :meth:`add`).
        """
        self.add([group])
        language = self.languages[group]
        kept = []
        for text, found in zip(texts, langid.identify(texts)):
            if found == language:
                kept.append(text)
            else:
                self.dropped[group].append((text, found))
        self.kept[group] += len(kept)
        return kept

    def keep(self, group: str, text: str) -> bool:
        """Whether the identifier names ``text`` in ``group``'s language (counted either way)."""
        return bool(self.split(group, [text]))

    def report(self) -> Any:
        """What the filter kept and dropped: a DataFrame indexed by ``group``.

        Columns: ``language`` (the group's normalized code), ``kept``, ``dropped``,
        ``dropped_share`` and ``dropped_as`` (the languages found in the dropped texts, most
        frequent first, e.g. ``"en 3, unknown 1"``).
        """
        import pandas as pd

        rows = []
        for group, language in self.languages.items():
            kept, dropped = self.kept[group], len(self.dropped[group])
            found = Counter(lang for _, lang in self.dropped[group]).most_common()
            rows.append({"group": group, "language": language, "kept": kept, "dropped": dropped,
                         "dropped_share": dropped / (kept + dropped) if kept + dropped else 0.0,
                         "dropped_as": ", ".join(f"{lang} {n}" for lang, n in found)})
        columns = ["group", "language", "kept", "dropped", "dropped_share", "dropped_as"]
        return pd.DataFrame(rows, columns=columns).set_index("group")

    def finish(self, groups: Iterable[str] | None = None, *, stacklevel: int = 4) -> None:
        """Check what is left: raise for an emptied group, warn for one that lost much.

        Args:
            groups: the groups to check (default: every group seen).
            stacklevel: of the warnings, so that they point at the user's call.

        Raises:
            EmptyGroupError: the filter dropped every text of a group.

        Warns:
            UserWarning: a group lost more than :data:`WARN_SHARE` of its texts.
        """
        table = self.report()
        for group in self.languages if groups is None else groups:
            row = table.loc[group]
            if row["dropped"] and not row["kept"]:
                raise EmptyGroupError(
                    f"Group {group!r} is empty after the language filter: none of its "
                    f"{row['dropped']} texts was identified as {row['language']!r} (found: "
                    f"{row['dropped_as']}). Check that the group names the language of its "
                    "texts, or pass filter_language=False."
                )
            if row["dropped_share"] > WARN_SHARE:
                warnings.warn(
                    f"The language filter dropped {row['dropped']} of the "
                    f"{row['kept'] + row['dropped']} texts of group {group!r} "
                    f"({row['dropped_share']:.0%}; found: {row['dropped_as']}). Check that the "
                    "group names the language of its texts; see corpus.language_report and "
                    "corpus.dropped.",
                    stacklevel=stacklevel,
                )
