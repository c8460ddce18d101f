"""Source code in several programming languages, read from what the machine has installed.

A Python install carries its standard library as source, and a Linux system usually carries C
headers (``/usr/include``), shell scripts, Perl modules, CMake modules, SQL scripts, and the
JavaScript, CSS and HTML of Python packages. Read together they form an offline corpus of code
keyed by programming language, for detecting code-specific units as Kargaran et al. (2025) do.

Files are found by extension (and, for shell and Perl, by the ``#!`` line of extension-less
scripts) under fixed roots per language (:data:`LANGUAGES`), sorted, and sampled with a seed, so
one machine always gives the same texts. Each file is read as UTF-8 (files that are not are
skipped), minified files are skipped, and the text is cut at line ends into chunks of about
``chunk_chars`` characters; the chunks of the sampled files are shuffled with the seed and kept up
to ``max_chars`` characters per language. A language absent from the machine is left out (with a
:class:`MissingLanguagesWarning` when it was asked for by name); fewer than two languages raise.

Example:
    >>> from lensneurons.corpora.code import load_code
    >>> texts = load_code(["python", "c"], max_files=5, max_chars=2_000)  # doctest: +SKIP
    >>> sorted(texts), max(map(len, texts["python"])) <= 400  # doctest: +SKIP
    (['c', 'python'], True)
"""

from __future__ import annotations

import glob
import os
import random
import re
import sysconfig
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from lensneurons.core import checks as _checks
from lensneurons.errors import MissingLanguagesWarning, TooFewGroupsError, UnknownGroupError

__all__ = ["LANGUAGES", "CodeLanguage", "MissingLanguagesWarning", "find_code_files",
           "load_code", "split_code"]


@dataclass(frozen=True)
class CodeLanguage:
    """Where a programming language's files are found.

    Attributes:
        extensions: file name endings (``".py"``).
        roots: folders searched recursively; ``glob`` patterns and ``{stdlib}``, ``{purelib}``,
            ``{include}`` (this Python's folders) are expanded.
        shebangs: words of a ``#!`` line that mark an extension-less script of the language.
        skip_dirs: folder names not entered.
        exclude: a regular expression; files whose text matches it are skipped (C++ inside
            the ``.h`` files of C).
    """

    extensions: tuple[str, ...]
    roots: tuple[str, ...]
    shebangs: tuple[str, ...] = ()
    skip_dirs: tuple[str, ...] = ()
    exclude: str | None = None


# Lines that mark C++ (namespaces, templates, classes, access labels, <vector>-style includes).
_CPLUSPLUS = (r"(?m)^\s*(namespace\b|template\s*<|class\s+\w+[^;]*$|public:"
              r"|#include\s*<[a-z_]+>\s*$)")
_COMMON_SKIP = ("__pycache__", ".git", "node_modules", "test", "tests")

LANGUAGES: dict[str, CodeLanguage] = {
    "python": CodeLanguage((".py",), ("{stdlib}",), skip_dirs=("site-packages", "test",
                                                                "idlelib", "lib2to3")),
    "c": CodeLanguage((".h",), ("/usr/include", "{include}"), skip_dirs=("c++",),
                      exclude=_CPLUSPLUS),
    "cpp": CodeLanguage((".hpp", ".hh", ".hxx", ".cpp", ".cc", ".cxx"),
                        ("/usr/include", "{purelib}")),
    "javascript": CodeLanguage((".js", ".mjs"), ("{purelib}", "/usr/share/javascript")),
    "css": CodeLanguage((".css",), ("{purelib}", "/usr/share/javascript", "{stdlib}")),
    "html": CodeLanguage((".html", ".htm"), ("{purelib}", "/usr/share/doc")),
    "shell": CodeLanguage((".sh", ".bash"), ("/usr/bin", "/usr/sbin", "/etc", "/usr/lib/git-core",
                                             "/usr/share/doc", "{purelib}"),
                          shebangs=("sh", "bash", "dash")),
    "perl": CodeLanguage((".pl", ".pm"), ("/usr/share/perl5", "/usr/share/perl/*",
                                          "/usr/lib/*/perl-base", "/usr/bin"),
                         shebangs=("perl",), skip_dirs=("unicore",)),
    "sql": CodeLanguage((".sql",), ("/usr/share/postgresql*", "{purelib}")),
    "tcl": CodeLanguage((".tcl",), ("/usr/share/tcltk", "/usr/share/tcl*")),
    "cmake": CodeLanguage((".cmake",), ("/usr/share/cmake*", "/usr/lib/*/cmake")),
    "lua": CodeLanguage((".lua",), ("/usr/share/lua*", "/usr/lib/*/lua*", "{purelib}")),
}
"""The programming languages :func:`load_code` knows, and where it looks for them."""

_MAX_BYTES = 200_000  # bytes read per file
_MAX_MEAN_LINE = 200  # files whose mean line is longer are minified or generated


def _roots(spec: CodeLanguage) -> list[Path]:
    paths = sysconfig.get_paths()
    out: list[Path] = []
    for root in spec.roots:
        root = root.format(stdlib=paths["stdlib"], purelib=paths["purelib"],
                           include=paths["include"])
        out.extend(Path(p) for p in sorted(glob.glob(root)))
    return out


def _shebang(path: Path, words: tuple[str, ...]) -> bool:
    try:
        with open(path, "rb") as f:
            first = f.readline(200)
    except OSError:
        return False
    if not first.startswith(b"#!"):
        return False
    parts = first[2:].decode("latin-1").split()
    if not parts:
        return False
    program = Path(parts[0]).name
    if program == "env" and len(parts) > 1:
        program = parts[1]
    return program.rstrip("0123456789.") in words


def find_code_files(language: str, roots: Sequence[str | os.PathLike[str]] | None = None
                    ) -> list[Path]:
    """The files of ``language`` on this machine, sorted (real paths, no duplicates).

    Args:
        language: a key of :data:`LANGUAGES`.
        roots: folders to search instead of the language's own.

    Raises:
        UnknownGroupError: ``language`` is not in :data:`LANGUAGES`.

    Example:
        >>> find_code_files("python")[0].suffix
        '.py'
    """
    if language not in LANGUAGES:
        raise UnknownGroupError(
            f"Unknown programming language {language!r}; known: {sorted(LANGUAGES)}.")
    spec = LANGUAGES[language]
    skip = set(spec.skip_dirs) | set(_COMMON_SKIP)
    found: set[Path] = set()
    for root in (_roots(spec) if roots is None else [Path(r) for r in roots]):
        if root.is_file():
            found.add(root.resolve())
            continue
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d not in skip)
            for name in files:
                path = Path(folder) / name
                if name.endswith(spec.extensions) and not name.endswith(".min.js"):
                    pass
                elif spec.shebangs and "." not in name and _shebang(path, spec.shebangs):
                    pass
                else:
                    continue
                if path.is_file():
                    found.add(path.resolve())
    return sorted(found)


def split_code(text: str, chunk_chars: int = 400) -> list[str]:
    r"""Cut ``text`` at line ends into chunks of at most ``chunk_chars`` characters.

    Lines longer than ``chunk_chars`` are cut; chunks holding only whitespace are dropped.

    Example:
        >>> split_code("a = 1\nb = 2\nc = 3\n", chunk_chars=12)
        ['a = 1\nb = 2\n', 'c = 3\n']
    """
    chunks, current = [], ""
    for line in text.splitlines(keepends=True):
        while len(line) > chunk_chars:
            if current:
                chunks.append(current)
                current = ""
            chunks.append(line[:chunk_chars])
            line = line[chunk_chars:]
        if len(current) + len(line) > chunk_chars:
            chunks.append(current)
            current = ""
        current += line
    chunks.append(current)
    return [c for c in chunks if c.strip()]


def _read(path: Path, exclude: str | None) -> str | None:
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_BYTES)
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    lines = text.count("\n") + 1
    if "\x00" in text or len(text) / lines > _MAX_MEAN_LINE:
        return None
    if exclude is not None and re.search(exclude, text):
        return None
    return text


def load_code(
    languages: Iterable[str] | None = None,
    *,
    max_files: int = 60,
    max_chars: int = 40_000,
    chunk_chars: int = 400,
    seed: int = 0,
    roots: Mapping[str, Sequence[str | os.PathLike[str]]] | None = None,
) -> dict[str, list[str]]:
    """Code chunks per programming language, from the files installed on this machine.

    Args:
        languages: keys of :data:`LANGUAGES` (default: all of them; those missing here are left
            out silently).
        max_files: files sampled per language (seeded, from the sorted list of its files).
        max_chars: characters kept per language, over all its chunks.
        chunk_chars: the most characters of one chunk (cut at line ends).
        seed: the sampling seed.
        roots: ``{language: [folder, ...]}`` to search instead of the default roots.

    Returns:
        ``{language: [chunk, ...]}`` for the languages found, in the order asked; which were
        found is the keys.

    Raises:
        UnknownGroupError: a language is not in :data:`LANGUAGES`.
        ParameterError: a count that is not a positive integer.
        TooFewGroupsError: fewer than two languages have readable files.

    Warns:
        MissingLanguagesWarning: languages asked for by name that have no readable file here.

    Example:
        >>> texts = load_code(["python", "c"], max_files=3, max_chars=1_000)  # doctest: +SKIP
        >>> sum(map(len, texts["python"])) <= 1_000  # doctest: +SKIP
        True
    """
    max_files = _checks.positive_int(max_files, "max_files")
    max_chars = _checks.positive_int(max_chars, "max_chars")
    chunk_chars = _checks.positive_int(chunk_chars, "chunk_chars")
    seed = _checks.integer(seed, "seed")
    asked = languages is not None
    wanted = list(languages) if asked else list(LANGUAGES)
    unknown = [lang for lang in wanted if lang not in LANGUAGES]
    if unknown:
        raise UnknownGroupError(
            f"Unknown programming languages {unknown}; known: {sorted(LANGUAGES)}.")
    roots = dict(roots or {})
    out: dict[str, list[str]] = {}
    for lang in dict.fromkeys(wanted):
        files = find_code_files(lang, roots.get(lang))
        rng = random.Random(f"{seed}:{lang}")
        chunks: list[str] = []
        n_read = 0
        for path in rng.sample(files, len(files)):  # a seeded order; stop after max_files read
            text = _read(path, LANGUAGES[lang].exclude)
            pieces = split_code(text, chunk_chars) if text is not None else []
            if not pieces:
                continue
            chunks.extend(pieces)
            n_read += 1
            if n_read == max_files:
                break
        rng.shuffle(chunks)
        kept, total = [], 0
        for chunk in chunks:
            if total + len(chunk) > max_chars:
                continue
            kept.append(chunk)
            total += len(chunk)
        if kept:
            out[lang] = kept
    missing = [lang for lang in dict.fromkeys(wanted) if lang not in out]
    if missing and asked:
        warnings.warn(f"No readable files of {missing} on this machine; loaded {list(out)}.",
                      MissingLanguagesWarning, stacklevel=2)
    if len(out) < 2:
        raise TooFewGroupsError(
            f"Found code of {list(out)} only (of {list(dict.fromkeys(wanted))}); at least two "
            "languages are needed. Install some (e.g. C headers with libc6-dev, Perl) or pass "
            "roots={language: [folder, ...]} pointing at folders of source files."
        )
    return out
