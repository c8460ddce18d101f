"""The one persistence layer: a result is a folder of ``<kind>.safetensors`` + ``<kind>.json``.

Statistics, neuron sets, tuned lenses and checkpoints are all saved here; no other module opens a
result file. Never pickle.

* **One result per folder, written atomically.** Both files are written into a hidden temporary
  folder next to the target and fsynced; only then does a rename put the folder in place. A crash
  or a kill at any moment leaves either the old result or the new one, never a mix. A folder that
  already holds a result is replaced only with ``overwrite=True``.
* **Metadata first.** The JSON is encoded before any byte is written, so metadata that JSON cannot
  hold (after converting numpy and torch scalars and paths) fails with nothing on disk.
* **The layer's own keys are namespaced.** The JSON holds the caller's metadata at the top level
  and the layer's bookkeeping under one key, ``"lensneurons"`` (kind, version, pairing token,
  tensor record, environment, digest), next to ``"format_version"``; metadata cannot overwrite
  them (a metadata key ``"kind"`` is the caller's own, e.g. a ternary set's ``"specific"``).
* **Loads verify.** The JSON records each tensor's shape and dtype and a random token that is also
  stored in the safetensors header, and a sha256 **digest** over the canonical JSON (sorted keys,
  the digest itself left out) and the bytes of the safetensors file. A load checks the kind, the
  format version, the token, the digest and every shape, so tensors never pair with another
  save's labels and a hand-edited file (groups reordered, a flag flipped, values reversed) is
  refused with :class:`~lensneurons.errors.CorruptResultError`. Results written before the digest
  (format 1 and 2, such as the shipped real-model statistics) load without one.
* **The environment is recorded.** Every save records the versions of lensneurons, torch,
  transformers, transformer-lens and numpy, torch's thread count, the CPU instruction set, the
  GPU's name when CUDA is available and, where the result knows them, the model's dtype and
  device. It is data, not identity: a file saved on another machine loads here. It lies inside
  the digest, so editing it is detected. A load returns it as ``meta["environment"]`` (so
  ``stats.meta["environment"]``, ``sets.meta["environment"]``); a save records its own, whatever
  that key holds.

Examples:
    >>> import tempfile, torch
    >>> from lensneurons.core.persistence import load_result, save_result
    >>> folder = tempfile.mkdtemp() + "/result"
    >>> _ = save_result(folder, "stats", {"x": torch.arange(3)}, {"groups": ["en"], "kind": "mine"})
    >>> tensors, meta = load_result(folder, "stats")
    >>> tensors["x"].tolist(), meta["groups"], meta["kind"]
    ([0, 1, 2], ['en'], 'mine')
    >>> sorted(meta["environment"]["packages"])
    ['lensneurons', 'numpy', 'torch', 'transformer-lens', 'transformers']
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from lensneurons.core import __version__
from lensneurons.errors import (
    CorruptResultError,
    ParameterError,
    ResultExistsError,
    ResultNotFoundError,
    UnwritablePathError,
)

#: Version of the on-disk layout: 1 lacked the shape record and the pairing token; 2 kept the
#: bookkeeping at the top level (where metadata could overwrite it) and had no digest; 3 keeps it
#: under :data:`NAMESPACE`, with the digest and the environment.
FORMAT_VERSION = 3
#: The kinds of result this package writes (the file stem of both files).
KINDS = ("stats", "neurons", "tuned_lens", "checkpoint", "attribution", "plnd", "sweep", "result",
         "sae", "card")
#: Files a kind writes beside its two (a model card's page); each is named by the caller.
COMPANIONS = {"card": ("index.html",)}
#: The JSON key holding the layer's own bookkeeping (format 3).
NAMESPACE = "lensneurons"
#: Top-level JSON keys metadata may not use.
RESERVED = ("format_version", NAMESPACE)
#: The key under which a load returns the recorded environment (a save records its own).
ENVIRONMENT = "environment"
#: Top-level bookkeeping of formats 1 and 2, removed from their metadata on load.
_LEGACY_BOOKKEEPING = ("kind", "format_version", "lensneurons_version", "tensors", "token")
#: Packages whose versions the environment records.
_PACKAGES = ("lensneurons", "torch", "transformers", "transformer-lens", "numpy")
#: Where a kind's metadata records the dtype of the model it was made with.
_MODEL_DTYPE_AT = {"stats": ("dtype",), "checkpoint": ("identity", "dtype")}


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
    return any(names - set(COMPANIONS.get(kind, ())) == {f"{kind}.json", f"{kind}.safetensors"}
               for kind in KINDS)


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


@functools.cache
def _versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    found["lensneurons"] = __version__
    return found


def environment(model: Any = None) -> dict[str, Any]:
    """What this process runs on, as a save records it (data, not identity).

    Args:
        model: the model a result was made with (a torch module), or a mapping that already holds
            ``model_dtype`` / ``model_device``; their dtype and device are recorded. ``None``:
            unknown (recorded as ``None``).

    Examples:
        >>> env = environment()
        >>> env["packages"]["torch"] == torch.__version__, env["model_dtype"]
        (True, None)
    """
    dtype = device = None
    if isinstance(model, Mapping):
        dtype, device = model.get("model_dtype"), model.get("model_device")
    elif model is not None:
        try:
            param = next(model.parameters())
            dtype, device = param.dtype, param.device
        except (AttributeError, StopIteration, TypeError):
            pass
    capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: None)()
    gpu = None
    if torch.cuda.is_available():
        index = None
        try:
            where = torch.device(device) if device is not None else None
            index = where if where is not None and where.type == "cuda" else None
        except (RuntimeError, TypeError):
            pass
        try:
            gpu = torch.cuda.get_device_name(index)
        except (RuntimeError, AssertionError):
            gpu = None
    return {
        "packages": dict(_versions()),
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": capability,
        "gpu": gpu,
        "model_dtype": None if dtype is None else str(dtype).removeprefix("torch."),
        "model_device": None if device is None else str(device),
    }


def _model_dtype_in(kind: str, meta: dict[str, Any]) -> Any:
    value: Any = meta
    for key in _MODEL_DTYPE_AT.get(kind, ()):
        value = value.get(key) if isinstance(value, dict) else None
    return value if kind in _MODEL_DTYPE_AT else None


def _canonical(document: dict[str, Any]) -> bytes:
    """The JSON document as the digest sees it: sorted keys, no spaces, the digest left out."""
    own = dict(document.get(NAMESPACE) or {})
    own.pop("digest", None)
    return json.dumps({**document, NAMESPACE: own}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def _digest(document: dict[str, Any], tensor_file: Path) -> str:
    """sha256 over the canonical JSON and the bytes of the safetensors file."""
    digest = hashlib.sha256(_canonical(document))
    digest.update(b"\0")
    with tensor_file.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def save_result(
    path: str | os.PathLike[str],
    kind: str,
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
    *,
    overwrite: bool = False,
    model: Any = None,
    companions: dict[str, bytes] | None = None,
) -> Path:
    """Write ``tensors`` and ``meta`` as the folder ``path``, atomically.

    Args:
        path: the result's folder (its parent is created if needed).
        kind: one of :data:`KINDS`; the stem of both files.
        tensors: named tensors (moved to the CPU, made contiguous).
        meta: JSON-able provenance; numpy and torch scalars and paths are converted. Any key but
            :data:`RESERVED`; an ``"environment"`` key is replaced by this save's environment.
        overwrite: replace a result already at ``path``.
        companions: files written in the same folder, in the same atomic swap (names among
            ``COMPANIONS[kind]``, e.g. a card's ``index.html``); the caller records their
            digests in ``meta`` if a load should check them.
        model: the model the result was made with, when the caller has it (or a mapping with
            ``model_dtype`` / ``model_device``): its dtype and device enter the environment.

    Raises:
        ResultExistsError: ``path`` holds a result and ``overwrite`` is false.
        UnwritablePathError: the folder cannot be written.
        ParameterError: ``meta`` holds something JSON cannot represent, or a reserved key
            (nothing is written).
    """
    if kind not in KINDS:
        raise ParameterError(f"Unknown result kind {kind!r}; kinds: {KINDS}.")
    extra = dict(companions or {})
    if set(extra) - set(COMPANIONS.get(kind, ())):
        raise ParameterError(f"A {kind} result writes no files {sorted(extra)} beside its own; "
                             f"allowed: {list(COMPANIONS.get(kind, ()))}.")
    taken = [key for key in RESERVED if key in meta]
    if taken:
        raise ParameterError(
            f"Result metadata may not use the keys {taken}: the persistence layer keeps its own "
            "bookkeeping there. Rename them; nothing was written."
        )
    folder = check_writable(path, overwrite=overwrite)
    token = uuid.uuid4().hex
    cpu = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
    record = {name: {"shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")}
              for name, t in cpu.items()}
    user = {k: v for k, v in meta.items() if k != ENVIRONMENT}
    env = environment(model)
    if env["model_dtype"] is None and _model_dtype_in(kind, user) is not None:
        env["model_dtype"] = str(_model_dtype_in(kind, user)).removeprefix("torch.")
    own = {"kind": kind, "version": __version__, "token": token, "tensors": record,
           "environment": env}
    # Encoded (so checked) before a byte is written; the parsed form is what a load will see.
    document = json.loads(_encode({"format_version": FORMAT_VERSION, NAMESPACE: own, **user}))

    def write(partial: Path) -> None:
        tensor_file = partial / f"{kind}.safetensors"
        save_file(cpu, str(tensor_file), metadata={"token": token, "kind": kind})
        document[NAMESPACE]["digest"] = _digest(document, tensor_file)
        text = json.dumps(document, indent=1, ensure_ascii=False)
        (partial / f"{kind}.json").write_text(text, encoding="utf-8")
        for name, data in extra.items():
            (partial / name).write_bytes(data)

    return write_folder(folder, write, token)


def write_folder(folder: Path, write: Callable[[Path], None], token: str | None = None) -> Path:
    """Fill ``folder`` atomically: ``write`` fills a hidden folder beside it, then a rename.

    The one place a folder is swapped in: :func:`save_result` uses it, and so do outputs in a
    format of another library (an SAE in the SAELens layout). ``folder`` must have passed
    :func:`check_writable` or :func:`check_writable_output`. A failure at any moment leaves the
    old folder (or none), never a mix.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> out = Path(tempfile.mkdtemp()) / "out"
        >>> _ = write_folder(out, lambda tmp: (tmp / "a.txt").write_text("x"))
        >>> sorted(p.name for p in out.iterdir())
        ['a.txt']
    """
    token = token or uuid.uuid4().hex
    partial = folder.parent / f".{folder.name}.partial-{token}"
    old = folder.parent / f".{folder.name}.old-{token}"
    try:
        partial.mkdir()
        write(partial)
        for file in partial.iterdir():
            _fsync(file)
        if folder.is_dir():
            folder.rename(old)  # the caller's check allowed it: empty, or a result to overwrite
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
        The tensors and the metadata given to :func:`save_result` (bookkeeping removed), with
        the recorded environment as ``meta["environment"]`` (format 3 and later).

    Raises:
        ResultNotFoundError: ``path`` holds no ``kind`` result.
        CorruptResultError: a file is truncated or edited (its digest no longer matches), or
            the two files come from different saves, or the format is newer than this
            lensneurons.
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
        document = json.loads(meta_file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise CorruptResultError(
            f"{meta_file} is not valid JSON ({err}); the result is damaged: save it again."
        ) from None
    if not isinstance(document, dict):
        raise CorruptResultError(f"{meta_file} does not describe a {kind} result.")
    version = document.get("format_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version > FORMAT_VERSION:
        raise CorruptResultError(
            f"{folder} was written in format {version!r}; this lensneurons reads up to "
            f"{FORMAT_VERSION}. Upgrade lensneurons."
        )
    own = document.get(NAMESPACE) if version >= 3 else None
    if version >= 3 and (not isinstance(own, dict) or own.get("kind") != kind):
        raise CorruptResultError(
            f"{meta_file} does not describe a {kind} result (its {NAMESPACE!r} record is "
            "missing or names another kind); the file was edited or damaged: save it again."
        )
    try:
        tensors = load_file(str(tensor_file))
        with safe_open(str(tensor_file), "pt") as handle:
            header = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise CorruptResultError(
            f"{tensor_file} cannot be read ({err}); it is truncated or damaged: save it again."
        ) from None
    if own is not None:
        _verify(folder, own, header, tensors)
        if own.get("digest") != _digest(document, tensor_file):
            raise CorruptResultError(
                f"{folder} was edited or damaged after it was saved: its metadata and tensors "
                "no longer match the digest recorded at save (a value, a label or the order of "
                "groups changed). Run the computation again and save it, or restore the "
                "original files."
            )
        meta = {k: v for k, v in document.items() if k not in RESERVED}
        if isinstance(own.get("environment"), dict):
            meta[ENVIRONMENT] = own["environment"]
        return tensors, meta
    # Formats 1 and 2: bookkeeping at the top level, where metadata could overwrite "kind"; the
    # safetensors header (format 2) names the true kind.
    if document.get("kind", kind) != kind and header.get("kind") != kind:
        raise CorruptResultError(f"{meta_file} does not describe a {kind} result.")
    if version >= 2:
        _verify(folder, document, header, tensors)
    meta = {k: v for k, v in document.items() if k not in _LEGACY_BOOKKEEPING}
    if document.get("kind", kind) != kind:  # the metadata's own "kind" had overwritten it
        meta["kind"] = document["kind"]
    return tensors, meta


def _verify(folder: Path, own: dict[str, Any], header: dict[str, str],
            tensors: dict[str, torch.Tensor]) -> None:
    if header.get("token") != own.get("token"):
        raise CorruptResultError(
            f"The two files in {folder} come from different saves (their tokens differ); the "
            "result was assembled by hand or half-copied. Save it again."
        )
    record = own.get("tensors", {})
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
