"""Results on disk: a folder with ``<stem>.safetensors`` (tensors) and ``<stem>.json`` (metadata).

Never pickle. The JSON records the lensneurons version, the kind of result and, when known, the
model fingerprint, so loading against another model fails loudly instead of silently.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

FORMAT_VERSION = 1


def save_result(
    path: str | os.PathLike[str], stem: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> Path:
    """Write ``tensors`` and ``meta`` into the folder ``path`` (created if needed)."""
    from lensneurons import __version__

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()},
              str(folder / f"{stem}.safetensors"))
    meta = {"kind": stem, "format_version": FORMAT_VERSION, "lensneurons_version": __version__,
            **meta}
    tmp = folder / f"{stem}.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1, ensure_ascii=False))
    tmp.replace(folder / f"{stem}.json")
    return folder


def load_result(
    path: str | os.PathLike[str], stem: str
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read what :func:`save_result` wrote.

    Raises:
        FileNotFoundError: the folder does not hold a ``stem`` result.
    """
    folder = Path(path)
    tensor_file, meta_file = folder / f"{stem}.safetensors", folder / f"{stem}.json"
    if not tensor_file.exists() or not meta_file.exists():
        raise FileNotFoundError(
            f"{folder} holds no saved {stem} (expected {tensor_file.name} and {meta_file.name})."
        )
    return load_file(str(tensor_file)), json.loads(meta_file.read_text())
