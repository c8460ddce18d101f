"""The one persistence layer: a result is a folder of ``<kind>.safetensors`` + ``<kind>.json``.

Statistics, neuron sets, tuned lenses and checkpoints are all saved here; no other module opens a
result file. Never pickle.

* **One result per folder, written atomically.** Both files are written into a hidden temporary
  folder next to the target and fsynced; only then does a rename put the folder in place. A crash
  or a kill at any moment leaves either the old result or the new one, never a mix. A folder that
  already holds a result is replaced only with ``overwrite=True``.
* **Metadata first.** The JSON is encoded before any byte is written, so metadata that JSON cannot
  hold (after converting numpy and torch scalars and paths) fails with nothing on disk.
* **Loads verify.** The JSON records each tensor's shape and dtype and a random token that is also
  stored in the safetensors header; a load checks the kind, the format version, the token and every
  shape, so tensors never pair with another save's labels.

Examples:
    >>> import tempfile, torch
    >>> from lensneurons._io import load_result, save_result
    >>> folder = tempfile.mkdtemp() + "/result"
    >>> _ = save_result(folder, "stats", {"x": torch.arange(3)}, {"groups": ["en"]})
    >>> tensors, meta = load_result(folder, "stats")
    >>> tensors["x"].tolist(), meta["groups"]
    ([0, 1, 2], ['en'])
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from lensneurons.errors import (
    CorruptResultError,
    ParameterError,
    ResultExistsError,
    ResultNotFoundError,
    UnwritablePathError,
)

#: Version of the on-disk layout; 1 lacked the shape record and the pairing token.
FORMAT_VERSION = 2
#: The kinds of result this package writes (the file stem of both files).
KINDS = ("stats", "neurons", "tuned_lens", "checkpoint", "attribution", "plnd", "sweep")
_BOOKKEEPING = ("kind", "format_version", "lensneurons_version", "tensors", "token")


class _NotJSON(TypeError):
    """A metadata value JSON cannot hold."""


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if hasattr(value, "tolist") and hasattr(value, "dtype"):  # numpy and torch, any shape
        return value.tolist()
    raise _NotJSON(type(value).__name__)


def _encode(meta: dict[str, Any]) -> str:
    try:
        return json.dumps(meta, indent=1, ensure_ascii=False, default=_json_default)
    except _NotJSON as err:
        raise ParameterError(
            f"Result metadata must be JSON (strings, numbers, lists, dicts); a {err} cannot be "
            "saved. Convert it (e.g. str(value)) before saving; nothing was written."
        ) from None
    except (TypeError, ValueError) as err:
        raise ParameterError(
            f"Result metadata cannot be saved as JSON ({err}); nothing was written."
        ) from None


def _holds_result(folder: Path) -> bool:
    """Whether ``folder`` holds one result and nothing else (so replacing it loses nothing)."""
    names = {p.name for p in folder.iterdir()}
    return any(names == {f"{kind}.json", f"{kind}.safetensors"} for kind in KINDS)


def check_writable(path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Raise now, before any computation, unless a result can be saved at ``path``.

    Args:
        path: the folder a result will be saved into.
        overwrite: whether an existing result there may be replaced.

    Raises:
        ResultExistsError: ``path`` holds a result and ``overwrite`` is false, or holds files
            that are not a lensneurons result.
        UnwritablePathError: ``path`` is a file, or its parent cannot be created or written.

    Examples:
        >>> import tempfile
        >>> check_writable(tempfile.mkdtemp() + "/new").name
        'new'
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise UnwritablePathError(f"{folder} is a file; results are saved into a folder.")
    if folder.is_dir() and any(folder.iterdir()):
        if not _holds_result(folder):
            raise ResultExistsError(
                f"{folder} holds files other than one lensneurons result; save into a new or "
                "empty folder (a result is a folder of its own)."
            )
        if not overwrite:
            raise ResultExistsError(
                f"{folder} already holds a result; pass overwrite=True (--overwrite on the "
                "command line) to replace it, or choose another folder."
            )
    _check_parent(folder)
    return folder


def _check_parent(path: Path) -> None:
    """Create ``path``'s parent if needed and check it can be written."""
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UnwritablePathError(
            f"Cannot create {parent} ({err.strerror}); choose another path."
        ) from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UnwritablePathError(f"{parent} is not writable; choose another path.")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_result(
    path: str | os.PathLike[str],
    kind: str,
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
    *,
    overwrite: bool = False,
) -> Path:
    """Write ``tensors`` and ``meta`` as the folder ``path``, atomically.

    Args:
        path: the result's folder (its parent is created if needed).
        kind: one of :data:`KINDS`; the stem of both files.
        tensors: named tensors (moved to the CPU, made contiguous).
        meta: JSON-able provenance; numpy and torch scalars and paths are converted.
        overwrite: replace a result already at ``path``.

    Raises:
        ResultExistsError: ``path`` holds a result and ``overwrite`` is false.
        UnwritablePathError: the folder cannot be written.
        ParameterError: ``meta`` holds something JSON cannot represent (nothing is written).
    """
    from lensneurons import __version__

    if kind not in KINDS:
        raise ParameterError(f"Unknown result kind {kind!r}; kinds: {KINDS}.")
    folder = check_writable(path, overwrite=overwrite)
    token = uuid.uuid4().hex
    cpu = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
    record = {name: {"shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")}
              for name, t in cpu.items()}
    text = _encode({"kind": kind, "format_version": FORMAT_VERSION,
                    "lensneurons_version": __version__, "token": token, "tensors": record,
                    **meta})
    partial = folder.parent / f".{folder.name}.partial-{token}"
    old = folder.parent / f".{folder.name}.old-{token}"
    try:
        partial.mkdir()
        save_file(cpu, str(partial / f"{kind}.safetensors"),
                  metadata={"token": token, "kind": kind})
        (partial / f"{kind}.json").write_text(text, encoding="utf-8")
        for file in partial.iterdir():
            _fsync(file)
        if folder.is_dir():
            folder.rename(old)  # check_writable allowed it: empty, or a result to overwrite
        partial.rename(folder)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        if not folder.exists() and old.exists():
            old.rename(folder)  # put the previous result back
        raise
    shutil.rmtree(old, ignore_errors=True)
    return folder


def load_result(
    path: str | os.PathLike[str], kind: str
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read what :func:`save_result` wrote, checking that its files belong together.

    Returns:
        The tensors and the metadata given to :func:`save_result` (bookkeeping removed).

    Raises:
        ResultNotFoundError: ``path`` holds no ``kind`` result.
        CorruptResultError: a file is truncated or edited, or the two files come from
            different saves, or the format is newer than this lensneurons.
    """
    folder = Path(path)
    tensor_file, meta_file = folder / f"{kind}.safetensors", folder / f"{kind}.json"
    if not tensor_file.exists() or not meta_file.exists():
        others = [k for k in KINDS if (folder / f"{k}.json").exists()]
        hint = f" It holds a {others[0]} result." if others else ""
        interrupted = sorted(folder.parent.glob(f".{folder.name}.old-*"))
        if interrupted:
            hint += (f" A save was killed while replacing it: the previous result is in "
                     f"{interrupted[-1]}; rename that folder back to {folder.name}.")
        raise ResultNotFoundError(
            f"{folder} holds no saved {kind} (expected {tensor_file.name} and "
            f"{meta_file.name}).{hint}"
        )
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise CorruptResultError(
            f"{meta_file} is not valid JSON ({err}); the result is damaged: save it again."
        ) from None
    if not isinstance(meta, dict) or meta.get("kind", kind) != kind:
        raise CorruptResultError(f"{meta_file} does not describe a {kind} result.")
    version = meta.get("format_version", 1)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CorruptResultError(
            f"{folder} was written in format {version!r}; this lensneurons reads up to "
            f"{FORMAT_VERSION}. Upgrade lensneurons."
        )
    try:
        tensors = load_file(str(tensor_file))
        with safe_open(str(tensor_file), "pt") as handle:
            header = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise CorruptResultError(
            f"{tensor_file} cannot be read ({err}); it is truncated or damaged: save it again."
        ) from None
    if version >= 2:
        _verify(folder, meta, header, tensors)
    return tensors, {k: v for k, v in meta.items() if k not in _BOOKKEEPING}


def _verify(folder: Path, meta: dict[str, Any], header: dict[str, str],
            tensors: dict[str, torch.Tensor]) -> None:
    if header.get("token") != meta.get("token"):
        raise CorruptResultError(
            f"The two files in {folder} come from different saves (their tokens differ); the "
            "result was assembled by hand or half-copied. Save it again."
        )
    record = meta.get("tensors", {})
    found = {name: {"shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")}
             for name, t in tensors.items()}
    if found != record:
        raise CorruptResultError(
            f"The tensors in {folder} do not match the shapes its JSON records "
            f"({sorted(found)} vs {sorted(record)}); save the result again."
        )


def check_writable_output(
    path: str | os.PathLike[str], *, overwrite: bool = False, folder: bool = False
) -> Path:
    """Raise now, before any computation, unless a plain output can be written at ``path``.

    For outputs that are not a :func:`save_result` folder: a file (a CSV, a figure) or, with
    ``folder=True``, a folder of files another library writes (a trained model). Results use
    :func:`check_writable`.

    Args:
        path: the file (or folder) to be written.
        overwrite: whether an existing file (or a non-empty folder) may be replaced.
        folder: ``path`` is a folder, not a file.

    Raises:
        ResultExistsError: ``path`` exists (a non-empty folder) and ``overwrite`` is false.
        UnwritablePathError: ``path`` is a folder where a file is expected (or the reverse),
            cannot be replaced, or its parent cannot be created or written.

    Examples:
        >>> import tempfile
        >>> check_writable_output(tempfile.mkdtemp() + "/matrix.csv").name
        'matrix.csv'
    """
    target = Path(path)
    want, other = ("folder", "file") if folder else ("file", "folder")
    if target.exists():
        if target.is_dir() != folder:
            raise UnwritablePathError(f"{target} is a {other}; give the path of a {want}.")
        if (not folder or any(target.iterdir())) and not overwrite:
            raise ResultExistsError(
                f"{target} already exists; pass overwrite=True (--overwrite on the command "
                "line) to replace it, or choose another path."
            )
        if not os.access(target, os.W_OK | (os.X_OK if folder else 0)):
            raise UnwritablePathError(f"{target} is not writable; choose another path.")
    _check_parent(target)
    return target
