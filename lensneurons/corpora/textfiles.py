r"""Text files given on the command line as ``GROUP=FILE``: one text per line, UTF-8.

Several files may name the same group (``en=wiki.txt en=news.txt``): their lines are merged, in
the order given, as shards of one group. A group is named as :class:`~lensneurons.Corpus` names
it: without surrounding whitespace, in Unicode NFC, so ``" en=a.txt"`` (a quoted shell word) and
``en=b.txt`` are one group, and so are ``français`` typed and pasted from a macOS file name
(NFD). The same file twice for one group would count every line twice and is refused. Blank
lines are skipped; a file that holds nothing else, is missing, is a folder, or is not UTF-8
text (a binary file, UTF-16) raises :class:`InputFileError` naming the file, before any model
is loaded.

Examples:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "a.txt").write_text("One.\n\nTwo.\n", encoding="utf-8")
    >>> _ = (folder / "b.txt").write_text("Three.\n", encoding="utf-8")
    >>> read_texts([f"en={folder / 'a.txt'}", f"en={folder / 'b.txt'}"])
    {'en': ['One.', 'Two.', 'Three.']}
"""

from __future__ import annotations

import stat
from collections.abc import Sequence
from pathlib import Path

from lensneurons.core.checks import group_label
from lensneurons.errors import InputFileError, ParameterError


def read_texts(pairs: Sequence[str], option: str = "--texts") -> dict[str, list[str]]:
    """``{group: [line, ...]}`` from ``GROUP=FILE`` pairs; files of one group are merged.

    Args:
        pairs: ``"GROUP=FILE"`` strings (the file path may itself contain ``=``); ``GROUP`` is
            stripped and composed (NFC), so names that print alike are one group.
        option: the option's name, for messages.

    Raises:
        ParameterError: a pair is not ``GROUP=FILE``, or one file is given twice for a group.
        InputFileError: a file is missing, a folder, not UTF-8 text, or holds no text.
    """
    texts: dict[str, list[str]] = {}
    seen: dict[str, set[Path]] = {}
    for pair in pairs:
        group, sep, name = pair.partition("=")
        if not sep or not group.strip() or not name:
            raise ParameterError(
                f"{option} takes GROUP=FILE pairs (e.g. en=en.txt fr=fr.txt), got {pair!r}."
            )
        group = group_label(group)
        file = Path(name).expanduser()
        key = file.resolve()
        if key in seen.setdefault(group, set()):
            raise ParameterError(
                f"{file} is given twice for group {group!r}: each of its lines would be counted "
                "twice. Give each file once."
            )
        seen[group].add(key)
        texts.setdefault(group, []).extend(read_lines(file, group))
    return texts


def read_lines(file: str | Path, group: str = "") -> list[str]:
    r"""The non-blank lines of the UTF-8 text file ``file`` (a byte-order mark is dropped).

    Lines end at ``\n`` only (with an optional ``\r``): a text may hold other Unicode line
    separators. A named pipe is read too (``en=<(zcat en.txt.gz)`` in bash).

    Raises:
        InputFileError: ``file`` is missing, a folder or a device, unreadable, not UTF-8 text
            (or holds NUL bytes, as UTF-16 does), or holds no text.
    """
    file = Path(file)
    where = f"{file} (group {group!r})" if group else str(file)
    if not file.exists():
        raise InputFileError(f"Text file {where} does not exist; check the path.")
    if file.is_dir():
        raise InputFileError(
            f"{where} is a folder; give a text file with one text per line."
        )
    if not (file.is_file() or stat.S_ISFIFO(file.stat().st_mode)):
        raise InputFileError(f"{where} is not a regular file; give a text file.")
    try:
        data = file.read_bytes()
    except OSError as err:
        raise InputFileError(f"Cannot read {where}: {err.strerror}.") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise InputFileError(
            f"{where} is not UTF-8 text (byte {err.start}, line {line}): a binary file or "
            "another encoding. Convert it to UTF-8 (e.g. iconv -t utf-8)."
        ) from None
    if "\x00" in text:
        raise InputFileError(
            f"{where} holds NUL bytes: a binary file, or UTF-16 text. Convert it to UTF-8 "
            "(e.g. iconv -f utf-16 -t utf-8)."
        )
    lines = [line for line in (raw.removesuffix("\r") for raw in text.split("\n"))
             if line.strip()]
    if not lines:
        raise InputFileError(
            f"{where} holds no text (it is empty or blank); give one text per line."
        )
    return lines
